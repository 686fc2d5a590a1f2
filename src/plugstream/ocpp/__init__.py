"""OCPP-J protocol core, sans I/O: frames, schema validation, call correlation, spec error codes.

Knows no socket, no clock and no database; :mod:`plugstream.ocpp.endpoint` is
the thin asyncio shell that runs it over any text transport.
"""

from plugstream.ocpp.actions import csms_actions, station_actions
from plugstream.ocpp.endpoint import OcppEndpoint, Transport
from plugstream.ocpp.errors import CallTimeout, ConnectionLost, ErrorCode, OcppError
from plugstream.ocpp.frames import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    Frame,
    FrameError,
    MessageType,
    Send,
    decode,
    encode,
)
from plugstream.ocpp.routing import Handlers, after, on
from plugstream.ocpp.schemas import Schemas, schemas
from plugstream.ocpp.session import (
    CallCompleted,
    CallFailed,
    CallReceived,
    Event,
    ProtocolViolation,
    RpcSession,
    SendReceived,
    Transmit,
)
from plugstream.ocpp.version import SUBPROTOCOLS, OcppVersion

__all__ = [
    "SUBPROTOCOLS",
    "Call",
    "CallCompleted",
    "CallError",
    "CallFailed",
    "CallReceived",
    "CallResult",
    "CallResultError",
    "CallTimeout",
    "ConnectionLost",
    "ErrorCode",
    "Event",
    "Frame",
    "FrameError",
    "Handlers",
    "MessageType",
    "OcppEndpoint",
    "OcppError",
    "OcppVersion",
    "ProtocolViolation",
    "RpcSession",
    "Schemas",
    "Send",
    "SendReceived",
    "Transmit",
    "Transport",
    "after",
    "csms_actions",
    "decode",
    "encode",
    "on",
    "schemas",
    "station_actions",
]
