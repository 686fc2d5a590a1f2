"""RPC framework error codes, spelled per version, and the exception that carries them.

OCPP-J 1.6 §4.2.3 keeps two misspellings on the wire for compatibility
(``FormationViolation``, ``OccurenceConstraintViolation``; see the 1.6 OCPP-J
errata "known issues that will not be fixed"), and has no ``RpcFrameworkError``
or ``MessageTypeNotSupported``: in 1.6 both are reported as the frame's
formation error. Code works with the one canonical :class:`ErrorCode`; only
the wire sees the version's spelling.
"""

from __future__ import annotations

import enum
from typing import Any

from plugstream.ocpp.version import OcppVersion

MAX_DESCRIPTION = 255  # ErrorDescription is string[255] in 2.0.1 part 4 §4.2.3


class ErrorCode(enum.Enum):
    """Canonical (2.0.1) names of the RPC framework error codes."""

    FormatViolation = "FormatViolation"
    GenericError = "GenericError"
    InternalError = "InternalError"
    MessageTypeNotSupported = "MessageTypeNotSupported"
    NotImplemented = "NotImplemented"
    NotSupported = "NotSupported"
    OccurrenceConstraintViolation = "OccurrenceConstraintViolation"
    PropertyConstraintViolation = "PropertyConstraintViolation"
    ProtocolError = "ProtocolError"
    RpcFrameworkError = "RpcFrameworkError"
    SecurityError = "SecurityError"
    TypeConstraintViolation = "TypeConstraintViolation"

    def spelled(self, version: OcppVersion) -> str:
        """The code as this version writes it on the wire."""
        if version is OcppVersion.V16:
            return _V16_SPELLING.get(self, self.value)
        return self.value

    @classmethod
    def from_wire(cls, text: str) -> ErrorCode:
        """Read any version's spelling; an unknown code becomes GenericError."""
        try:
            return cls(text)
        except ValueError:
            return _FROM_V16.get(text, cls.GenericError)


_V16_SPELLING = {
    ErrorCode.FormatViolation: "FormationViolation",
    ErrorCode.OccurrenceConstraintViolation: "OccurenceConstraintViolation",
    ErrorCode.RpcFrameworkError: "FormationViolation",
    ErrorCode.MessageTypeNotSupported: "FormationViolation",
}
_FROM_V16 = {
    "FormationViolation": ErrorCode.FormatViolation,
    "OccurenceConstraintViolation": ErrorCode.OccurrenceConstraintViolation,
}


class OcppError(Exception):
    """An RPC framework error: raised by handlers, carried by CALLERRORs.

    ``message_id`` is the id of the frame the error answers, when it is known
    (``"-1"`` when the frame could not be read, 2.0.1 part 4 §4.2.3).
    """

    def __init__(
        self,
        code: ErrorCode,
        description: str = "",
        details: dict[str, Any] | None = None,
        *,
        message_id: str | None = None,
    ) -> None:
        super().__init__(f"{code.value}: {description}" if description else code.value)
        self.code = code
        self.description = description[:MAX_DESCRIPTION]
        self.details: dict[str, Any] = details if details is not None else {}
        self.message_id = message_id

    def __repr__(self) -> str:
        return f"OcppError({self.code.value}, {self.description!r}, {self.details!r})"


class CallTimeout(OcppError):
    """Our CALL got no CALLRESULT or CALLERROR within the call timeout."""

    def __init__(self, action: str, timeout: float, message_id: str) -> None:
        super().__init__(
            ErrorCode.GenericError,
            f"{action} got no answer within {timeout:g} s",
            message_id=message_id,
        )
        self.timeout = timeout


class ConnectionLost(OcppError):
    """Our CALL was not answered, or not even sent, because the connection went away.

    The peer may or may not have acted on it; a caller that must know asks again
    on the next connection.
    """

    def __init__(self, action: str, reason: str, message_id: str, *, sent: bool = True) -> None:
        verb = "not answered" if sent else "not sent"
        super().__init__(
            ErrorCode.GenericError, f"{action} {verb}: {reason}", message_id=message_id
        )
        self.reason = reason
        self.sent = sent
