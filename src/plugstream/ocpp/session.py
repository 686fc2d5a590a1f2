"""The RPC session of one OCPP-J connection, sans I/O.

Feed it the text of each received WebSocket message with :meth:`RpcSession.receive`,
start CALLs with :meth:`RpcSession.call`, answer received CALLs with
:meth:`RpcSession.result` / :meth:`RpcSession.error`, and call
:meth:`RpcSession.tick` when the clock passes :meth:`RpcSession.next_deadline`.
Each returns a list of events: text to transmit, calls to handle, answers to
deliver. Nothing here reads a socket or a clock of its own, and ``receive``
never raises: whatever a peer sends becomes events.

OCPP-J allows one outstanding CALL per direction (1.6 §4.1.1, 2.0.1 part 4
§4.1.1); further calls wait in a queue and go out as the previous one is
answered or times out. The peer's CALLs are handed on one at a time, in the
order they came: a peer that sends more before the last is answered has them
wait in a small bounded inbox (tolerance, not a feature), and the answers to
them, refusals included, leave in that same order. Beyond the inbox a CALL is
refused at once, and a peer that keeps on is told to go (:class:`CloseConnection`):
memory per connection is bounded by the inbox, and a flood costs the others nothing
but the reading of it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from plugstream.ocpp.errors import CallTimeout, ConnectionLost, ErrorCode, OcppError
from plugstream.ocpp.frames import (
    UNREADABLE_ID,
    Call,
    CallError,
    CallResult,
    CallResultError,
    Frame,
    FrameError,
    Send,
    call_error,
    decode,
    encode,
)
from plugstream.ocpp.schemas import schemas
from plugstream.ocpp.version import OcppVersion

# --- events -----------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Transmit:
    """Send this text to the peer as one WebSocket text message."""

    text: str


@dataclass(slots=True, frozen=True)
class CallReceived:
    """The peer called us; answer with ``result`` or ``error``.

    ``violation`` is set only in lenient mode: the payload broke the schema
    but is passed on so that the application can use what it can.
    """

    message_id: str
    action: str
    payload: dict[str, Any]
    violation: OcppError | None = None


@dataclass(slots=True, frozen=True)
class SendReceived:
    """2.1: an unconfirmed message from the peer; nothing is to be answered."""

    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(slots=True, frozen=True)
class CallCompleted:
    """Our CALL was answered with a valid CALLRESULT."""

    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(slots=True, frozen=True)
class CallFailed:
    """Our CALL was answered with a CALLERROR, an invalid result, or not at all."""

    message_id: str
    action: str
    error: OcppError

    @property
    def timed_out(self) -> bool:
        return isinstance(self.error, CallTimeout)


@dataclass(slots=True, frozen=True)
class ProtocolViolation:
    """The peer sent something we could not act on and could not answer (logged, counted)."""

    error: OcppError
    text: str


@dataclass(slots=True, frozen=True)
class CloseConnection:
    """Close the connection with this WebSocket close code and reason: the peer floods."""

    code: int
    reason: str


Event = (
    Transmit
    | CallReceived
    | SendReceived
    | CallCompleted
    | CallFailed
    | ProtocolViolation
    | CloseConnection
)

#: CALLs of the peer that may wait behind the one being handled (OCPP-J wants none).
MAX_QUEUED_CALLS = 16
#: CALLs refused for a full inbox, with no pause in between, before the connection is closed.
MAX_REFUSALS = 32
POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1


@dataclass(slots=True)
class _Outgoing:
    message_id: str
    action: str
    payload: dict[str, Any]
    timeout: float
    deadline: float = 0.0


_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if not n:
            return out


class RpcSession:
    """One connection's OCPP-J RPC state: call correlation, queueing, timeouts, errors."""

    def __init__(
        self,
        version: OcppVersion,
        *,
        clock: Callable[[], float],
        call_timeout: float = 30.0,
        supported_actions: Collection[str] | None = None,
        lenient: bool = False,
        validate_outgoing: bool = True,
        rng: random.Random | None = None,
        max_queued_calls: int = MAX_QUEUED_CALLS,
        max_refusals: int = MAX_REFUSALS,
    ) -> None:
        self.version = version
        self.clock = clock
        self.call_timeout = call_timeout
        self.lenient = lenient
        self.validate_outgoing = validate_outgoing
        self._schemas = schemas(version)
        self.supported_actions = (
            frozenset(supported_actions)
            if supported_actions is not None
            else self._schemas.call_actions | self._schemas.send_actions
        )
        # Short ids keep frames small on metered links; a random start keeps
        # them from repeating across reconnects.
        self._next_id = (rng or random.Random()).randrange(36**4, 36**5)
        self._pending: _Outgoing | None = None
        # made at the first CALL that must wait (a deque is 760 bytes; a fleet has 10,000)
        self._queue: deque[_Outgoing] | None = None
        # The peer's CALLs: message id -> action of each we still owe an answer, the one
        # handed on (_handling) and those waiting in _inbox with the refusals between them.
        self._incoming: dict[str, str] = {}
        self._handling: str | None = None
        self._inbox: list[CallReceived | Transmit] = []  # at most max_queued_calls CALLs
        self.max_queued_calls = max_queued_calls
        self.max_refusals = max_refusals
        self._refusals = 0  # refused for a full inbox since it was last empty
        self.violations = 0

    # -- outgoing calls --------------------------------------------------------

    def new_message_id(self) -> str:
        self._next_id += 1
        return _base36(self._next_id)

    def call(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> tuple[str, list[Event]]:
        """Start a CALL; raises OcppError at once when the request itself is invalid.

        ``timeout`` (s, from when the CALL is sent) overrides :attr:`call_timeout` for
        this CALL alone: an operator's command may wait longer than a routine message.
        """
        if action not in self._schemas.call_actions:
            raise OcppError(
                ErrorCode.NotImplemented, f"{action} is not an OCPP {self.version.value} action"
            )
        if self.validate_outgoing:
            problem = self._schemas.validate(action, "request", payload)
            if problem is not None:
                raise problem
        out = _Outgoing(
            self.new_message_id(),
            action,
            payload,
            timeout if timeout is not None else self.call_timeout,
        )
        if self._pending is not None:
            if self._queue is None:
                self._queue = deque()
            self._queue.append(out)
            return out.message_id, []
        return out.message_id, [self._transmit(out)]

    def send(self, action: str, payload: dict[str, Any]) -> list[Event]:
        """2.1 SEND: an unconfirmed message, not subject to the one-CALL rule."""
        if not self.version.has_send or action not in self._schemas.send_actions:
            raise OcppError(
                ErrorCode.NotImplemented, f"{action} is not a SEND of OCPP {self.version.value}"
            )
        if self.validate_outgoing:
            problem = self._schemas.validate(action, "send", payload)
            if problem is not None:
                raise problem
        return [Transmit(encode(Send(self.new_message_id(), action, payload)))]

    def _transmit(self, out: _Outgoing) -> Transmit:
        out.deadline = self.clock() + out.timeout
        self._pending = out
        return Transmit(encode(Call(out.message_id, out.action, out.payload)))

    def _finish_pending(self, events: list[Event]) -> None:
        self._pending = None
        if self._queue:
            events.append(self._transmit(self._queue.popleft()))
            if not self._queue:
                self._queue = None  # 760 bytes less while no CALL waits

    @property
    def pending_calls(self) -> int:
        """Our CALLs not yet answered, the one in flight included."""
        return len(self._queue or ()) + (self._pending is not None)

    def next_deadline(self) -> float | None:
        return self._pending.deadline if self._pending is not None else None

    def tick(self) -> list[Event]:
        """Time out the CALL in flight once its deadline has passed."""
        events: list[Event] = []
        pending = self._pending
        if pending is not None and self.clock() >= pending.deadline:
            error = CallTimeout(pending.action, pending.timeout, pending.message_id)
            events.append(CallFailed(pending.message_id, pending.action, error))
            self._finish_pending(events)
        return events

    def cancel_all(self, reason: str = "connection closed") -> list[Event]:
        """Fail every call we started: the connection is gone."""
        events: list[Event] = []
        waiting = ([self._pending] if self._pending else []) + list(self._queue or ())
        self._pending = None
        self._queue = None
        for out in waiting:
            error = ConnectionLost(out.action, reason, out.message_id)
            events.append(CallFailed(out.message_id, out.action, error))
        self._incoming.clear()
        self._handling = None
        self._inbox.clear()
        return events

    # -- answering the peer's calls -------------------------------------------

    def result(self, message_id: str, payload: dict[str, Any]) -> list[Event]:
        """Answer the received CALL being handled; then the next one is handed on.

        An invalid answer is our bug: the peer gets InternalError.
        """
        action = self._answering(message_id)
        events: list[Event]
        problem = (
            self._schemas.validate(action, "response", payload) if self.validate_outgoing else None
        )
        if problem is not None:
            internal = OcppError(
                ErrorCode.InternalError, f"could not build a valid {action} response"
            )
            events = [
                Transmit(encode(call_error(self.version, internal, message_id))),
                ProtocolViolation(problem, ""),
            ]
        else:
            events = [Transmit(encode(CallResult(message_id, payload)))]
        self._next_call(events)
        return events

    def error(self, message_id: str, error: OcppError) -> list[Event]:
        """Answer the received CALL being handled with a CALLERROR; then the next one."""
        self._answering(message_id)
        events: list[Event] = [Transmit(encode(call_error(self.version, error, message_id)))]
        self._next_call(events)
        return events

    @property
    def queued_calls(self) -> int:
        """The peer's CALLs waiting behind the one being handled."""
        return sum(type(e) is CallReceived for e in self._inbox)

    def _answering(self, message_id: str) -> str:
        if message_id != self._handling:
            raise KeyError(f"no CALL {message_id!r} awaits an answer")
        self._handling = None
        return self._incoming.pop(message_id)

    def _next_call(self, events: list[Event]) -> None:
        """Hand on the next waiting CALL, after the refusals that were queued before it."""
        inbox = self._inbox
        while inbox:
            event = inbox.pop(0)
            events.append(event)
            if type(event) is CallReceived:
                self._handling = event.message_id
                return
        self._refusals = 0  # the peer let us catch up

    def _answer_in_order(self, message_id: str, refusal: list[Event]) -> list[Event]:
        """Send a refusal after the answers to the CALLs that came before it.

        ``refusal`` is a ProtocolViolation and the Transmit of its CALLERROR.
        """
        violation, transmit = refusal
        if self._handling is None and not self._inbox:
            return refusal
        if len(self._inbox) < self.max_queued_calls:
            assert type(transmit) is Transmit
            self._inbox.append(transmit)
            return [violation]
        return [violation, *self._overflow(message_id, transmit)]

    def _overflow(self, message_id: str, answer: Event) -> list[Event]:
        """The inbox is full: refuse at once, or drop when that would answer out of order."""
        self._refusals += 1
        events: list[Event] = []
        if message_id in self._incoming:
            # the CALLERROR would leave before the answer with the same id: 4.2.3 lets
            # us drop a message that is not valid OCPP
            events.append(
                ProtocolViolation(
                    OcppError(
                        ErrorCode.RpcFrameworkError,
                        f"dropped a CALL with MessageId {message_id}: one is being handled"
                        " and the queue is full",
                    ),
                    "",
                )
            )
        else:
            events.append(answer)
        if self._refusals == self.max_refusals + 1:
            events.append(
                CloseConnection(
                    POLICY_VIOLATION,
                    f"more than {self.max_refusals} CALLs refused: one CALL at a time"
                    " (OCPP-J 4.1.1)",
                )
            )
        return events

    # -- receiving ------------------------------------------------------------

    def receive(self, text: str | bytes) -> list[Event]:
        """Everything that one received message causes. Never raises."""
        try:
            frame = decode(text, self.version)
        except FrameError as exc:
            return self._broken_frame(exc, text)
        try:
            return self._dispatch(frame, text)
        except Exception as exc:  # a bug of ours must not kill the connection
            error = OcppError(
                ErrorCode.InternalError, f"{type(exc).__name__} while handling the message"
            )
            events: list[Event] = [ProtocolViolation(error, _as_text(text))]
            if isinstance(frame, Call) and frame.message_id == self._handling:
                events += self.error(frame.message_id, error)
            return events

    def _broken_frame(self, exc: FrameError, text: str | bytes) -> list[Event]:
        self.violations += 1
        events: list[Event] = [ProtocolViolation(exc, _as_text(text))]
        if exc.answerable:
            refusal = Transmit(encode(call_error(self.version, exc)))
            mid = exc.message_id or UNREADABLE_ID
            events = self._answer_in_order(mid, [events[0], refusal])
        elif exc.message_type == 3 and self.version.has_send and exc.message_id != UNREADABLE_ID:
            events.append(Transmit(encode(_result_error(exc))))
        pending = self._pending
        if pending is not None and exc.message_id == pending.message_id and not exc.answerable:
            events.append(CallFailed(pending.message_id, pending.action, exc))
            self._finish_pending(events)
        return events

    def _dispatch(self, frame: Frame, text: str | bytes) -> list[Event]:
        if type(frame) is Call:
            return self._on_call(frame)
        if type(frame) is CallResult:
            return self._on_result(frame, text)
        if type(frame) is Send:
            return self._on_send(frame, text)
        assert isinstance(frame, CallError)
        return self._on_error(frame, text)

    def _on_call(self, call: Call) -> list[Event]:
        mid, action = call.message_id, call.action

        def refuse(code: ErrorCode, why: str) -> list[Event]:
            self.violations += 1
            error = OcppError(code, why)
            return self._answer_in_order(
                mid,
                [
                    ProtocolViolation(error, ""),
                    Transmit(encode(call_error(self.version, error, mid))),
                ],
            )

        if len(self._inbox) >= self.max_queued_calls:
            # checked first: a flood costs no schema validation
            self.violations += 1
            error = OcppError(
                ErrorCode.GenericError,
                f"{self.max_queued_calls} CALLs are waiting already: one CALL at a time"
                " (OCPP-J 4.1.1)",
                {"maxQueuedCalls": self.max_queued_calls},
            )
            answer = Transmit(encode(call_error(self.version, error, mid)))
            return [ProtocolViolation(error, ""), *self._overflow(mid, answer)]
        if mid in self._incoming:
            return refuse(
                ErrorCode.RpcFrameworkError, f"a CALL with MessageId {mid} is being handled already"
            )
        if action not in self._schemas.call_actions:
            return refuse(
                ErrorCode.NotImplemented,
                f"{action} is not a known OCPP {self.version.value} action",
            )
        if action not in self.supported_actions:
            return refuse(ErrorCode.NotSupported, f"{action} is not supported here")
        problem = self._schemas.validate(action, "request", call.payload)
        if problem is not None:
            self.violations += 1
            if not self.lenient:
                return self._answer_in_order(
                    mid,
                    [
                        ProtocolViolation(problem, ""),
                        Transmit(encode(call_error(self.version, problem, mid))),
                    ],
                )
        self._incoming[mid] = action
        received = CallReceived(mid, action, call.payload, problem)
        if self._handling is None and not self._inbox:
            self._handling = mid
            return [received]
        self._inbox.append(received)
        return []

    def _on_send(self, send: Send, text: str | bytes) -> list[Event]:
        if send.action not in self._schemas.send_actions:
            self.violations += 1
            error = OcppError(
                ErrorCode.NotImplemented,
                f"{send.action} is not a SEND of OCPP {self.version.value}",
            )
            return [ProtocolViolation(error, _as_text(text))]
        problem = self._schemas.validate(send.action, "send", send.payload)
        if problem is not None:
            self.violations += 1
            return [ProtocolViolation(problem, _as_text(text))]
        return [SendReceived(send.message_id, send.action, send.payload)]

    def _on_result(self, result: CallResult, text: str | bytes) -> list[Event]:
        pending = self._pending
        if pending is None or pending.message_id != result.message_id:
            self.violations += 1
            error = OcppError(
                ErrorCode.GenericError, f"CALLRESULT {result.message_id} answers no CALL in flight"
            )
            return [ProtocolViolation(error, _as_text(text))]
        events: list[Event] = []
        problem = self._schemas.validate(pending.action, "response", result.payload)
        if problem is not None and not self.lenient:
            self.violations += 1
            problem.message_id = result.message_id
            events.append(CallFailed(pending.message_id, pending.action, problem))
            if self.version.has_send:
                events.append(Transmit(encode(_result_error(problem))))
        else:
            events.append(CallCompleted(pending.message_id, pending.action, result.payload))
        self._finish_pending(events)
        return events

    def _on_error(self, error: CallError, text: str | bytes) -> list[Event]:
        pending = self._pending
        if type(error) is CallResultError:
            # 2.1: the peer could not process one of our CALLRESULTs; nothing to correlate.
            return [ProtocolViolation(error.as_error(), _as_text(text))]
        # A peer that could not read our CALL answers "-1": with one CALL in
        # flight it can only mean that one.
        if pending is None or error.message_id not in (pending.message_id, UNREADABLE_ID):
            self.violations += 1
            unexpected = OcppError(
                ErrorCode.GenericError, f"CALLERROR {error.message_id} answers no CALL in flight"
            )
            return [ProtocolViolation(unexpected, _as_text(text))]
        events: list[Event] = [CallFailed(pending.message_id, pending.action, error.as_error())]
        self._finish_pending(events)
        return events


def _result_error(error: OcppError) -> CallResultError:
    mid = error.message_id or UNREADABLE_ID
    return CallResultError(mid, error.code.value, error.description, error.details)


def _as_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", "replace")
    return text
