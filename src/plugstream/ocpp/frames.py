"""OCPP-J frames: the five message types, decoded from text and encoded to compact JSON.

``decode`` checks the RPC envelope only (OCPP-J 1.6 §4, 2.0.1/2.1 part 4 §4);
payloads are checked against the schemas by the session, which knows the
action of a CALLRESULT. Every failure is an :class:`OcppError` carrying the
spec's code and the message id to answer with (``"-1"`` when unreadable).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from plugstream.ocpp.errors import ErrorCode, OcppError
from plugstream.ocpp.version import OcppVersion

MAX_MESSAGE_ID: Final = 36  # MessageId is string[36] (2.0.1 part 4 §4.1.3)
UNREADABLE_ID: Final = "-1"


class MessageType(enum.IntEnum):
    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    CALLRESULTERROR = 5  # 2.1
    SEND = 6  # 2.1


@dataclass(slots=True, frozen=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(slots=True, frozen=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(slots=True, frozen=True)
class CallError:
    """A CALLERROR; ``error_code`` is as written on the wire, ``code`` its canonical form."""

    message_id: str
    error_code: str
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> ErrorCode:
        return ErrorCode.from_wire(self.error_code)

    def as_error(self) -> OcppError:
        return OcppError(self.code, self.description, self.details, message_id=self.message_id)


@dataclass(slots=True, frozen=True)
class CallResultError(CallError):
    """2.1: the answer to a CALLRESULT that could not be processed."""


@dataclass(slots=True, frozen=True)
class Send:
    """2.1: an unconfirmed message; nothing answers it."""

    message_id: str
    action: str
    payload: dict[str, Any]


Frame = Call | CallResult | CallError | CallResultError | Send


class FrameError(OcppError):
    """A frame that breaks the RPC envelope.

    ``answerable`` is False when the broken frame was itself an answer
    (CALLRESULT/CALLERROR): the spec gives no way to answer an answer before
    2.1, so the session reports it instead of replying.
    """

    def __init__(
        self,
        code: ErrorCode,
        description: str,
        message_id: str = UNREADABLE_ID,
        *,
        answerable: bool = True,
        message_type: int | None = None,
    ) -> None:
        super().__init__(code, description, message_id=message_id)
        self.answerable = answerable
        self.message_type = message_type


def _fail(code: ErrorCode, why: str, mid: str, mt: int | None = None) -> FrameError:
    answerable = mt not in (
        MessageType.CALLRESULT,
        MessageType.CALLERROR,
        MessageType.CALLRESULTERROR,
    )
    return FrameError(code, why, mid, answerable=answerable, message_type=mt)


def decode(text: str | bytes, version: OcppVersion) -> Frame:
    """Parse one WebSocket text message into a frame, or raise :class:`FrameError`."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _fail(
            ErrorCode.RpcFrameworkError, f"message is not valid JSON: {exc}", UNREADABLE_ID
        ) from None
    if type(msg) is not list or not msg:
        raise _fail(
            ErrorCode.RpcFrameworkError, "message is not a non-empty JSON array", UNREADABLE_ID
        )
    mt = msg[0]
    n = len(msg)
    mid = msg[1] if n > 1 and type(msg[1]) is str else None
    # An id longer than string[36] is not one: an answer could not carry it (a CALLERROR's
    # MessageId is string[36] too), so it is answered as unreadable, with "-1" (4.2.3).
    too_long = mid is not None and len(mid) > MAX_MESSAGE_ID
    answer_id = mid if mid is not None and not too_long else UNREADABLE_ID
    if type(mt) is not int:
        raise _fail(ErrorCode.RpcFrameworkError, "MessageTypeId is not an integer", answer_id)
    # Plain int literals below: comparing with IntEnum members costs several times more.
    if (mt == 5 or mt == 6) and not version.has_send:
        raise _fail(
            ErrorCode.MessageTypeNotSupported,
            f"message type {mt} does not exist in OCPP {version.value}",
            answer_id,
        )
    if mt not in (2, 3, 4, 5, 6):
        raise _fail(ErrorCode.MessageTypeNotSupported, f"unknown message type {mt}", answer_id)
    if mid is None:
        raise _fail(
            ErrorCode.RpcFrameworkError, "MessageId is missing or not a string", UNREADABLE_ID, mt
        )
    if too_long:
        raise _fail(
            ErrorCode.RpcFrameworkError,
            f"MessageId of {len(mid)} characters is longer than {MAX_MESSAGE_ID}",
            UNREADABLE_ID,
            mt,
        )
    if mt == 2 or mt == 6:
        if n != 4:
            raise _fail(
                ErrorCode.RpcFrameworkError,
                f"a {MessageType(mt).name} has 4 elements, not {n}",
                mid,
                mt,
            )
        action = msg[2]
        if type(action) is not str or not action:
            raise _fail(ErrorCode.RpcFrameworkError, "Action is not a non-empty string", mid, mt)
        payload = msg[3]
        if type(payload) is not dict:
            raise _fail(
                ErrorCode.FormatViolation, f"{action} payload is not a JSON object", mid, mt
            )
        return Call(mid, action, payload) if mt == 2 else Send(mid, action, payload)
    if mt == 3:
        if n != 3:
            raise _fail(
                ErrorCode.RpcFrameworkError, f"a CALLRESULT has 3 elements, not {n}", mid, mt
            )
        payload = msg[2]
        if type(payload) is not dict:
            raise _fail(
                ErrorCode.FormatViolation, "CALLRESULT payload is not a JSON object", mid, mt
            )
        return CallResult(mid, payload)
    # CALLERROR / CALLRESULTERROR
    if n != 5:
        raise _fail(
            ErrorCode.RpcFrameworkError,
            f"a {MessageType(mt).name} has 5 elements, not {n}",
            mid,
            mt,
        )
    code, description, details = msg[2], msg[3], msg[4]
    if type(code) is not str or type(description) is not str or type(details) is not dict:
        raise _fail(
            ErrorCode.RpcFrameworkError, f"malformed {MessageType(mt).name} fields", mid, mt
        )
    cls = CallError if mt == 4 else CallResultError
    return cls(mid, code, description, details)


def encode(frame: Frame) -> str:
    """Compact JSON text of a frame, ready for a WebSocket text message."""
    kind = type(frame)  # exact types: CallResultError is a CallError subclass
    body: list[Any]
    if kind is CallResult:
        body = [3, frame.message_id, frame.payload]  # type: ignore[union-attr]
    elif kind is Call or kind is Send:
        body = [2 if kind is Call else 6, frame.message_id, frame.action, frame.payload]  # type: ignore[union-attr]
    else:
        assert isinstance(frame, CallError)
        mt = 5 if kind is CallResultError else 4
        body = [mt, frame.message_id, frame.error_code, frame.description, frame.details]
    return orjson.dumps(body).decode()


def call_error(version: OcppVersion, error: OcppError, message_id: str | None = None) -> CallError:
    """The CALLERROR that answers ``error``, spelled for ``version``."""
    mid = message_id or error.message_id or UNREADABLE_ID
    return CallError(mid, error.code.spelled(version), error.description, error.details)
