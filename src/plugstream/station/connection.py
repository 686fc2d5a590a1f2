"""The station's connection state, sans-I/O: registration, heartbeat and reconnection.

:class:`ConnectionState` takes events (a connection opened or closed, a
BootNotification answered, a CALL sent, a Reset, a changed security setting) with the
time they happened, as seconds of station time, and answers with actions (send a
BootNotification, the station is registered, close the connection, reconnect at ...)
and due times. It never reads a clock, sleeps or sends: the runtime's asyncio shell
(:class:`~plugstream.station.runtime.StationRuntime`) feeds it and carries the actions out.

The rules (OCPP 1.6 §4.2 / 4.6 and OCPP 2.0.1 B01-B03, G02, part 4 §5.3):

- BootNotification on the first connection of a process, after a Reset (or a firmware
  installation), when the boot data changed, and until one was Accepted; a plain
  reconnect goes straight on ("after start-up").
- Pending or Rejected: the next BootNotification after ``interval`` seconds, or
  :data:`DEFAULT_BOOT_RETRY_S` when the answer gives 0; nothing else is sent meanwhile.
- Heartbeat after the heartbeat interval without any other CALL (G02.FR.05), and at
  least once a day however busy the link is (G02.FR.07).
- After a connection closed or an attempt failed, the next attempt after the
  :class:`~plugstream.station.backoff.ReconnectBackoff` delay; a successful connection
  resets it. A connection closed to move to another link reconnects at once.
- A changed security setting (password, security profile) closes the connection once
  the CALL that changed it is answered, so the next one uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from plugstream.station.backoff import ReconnectBackoff

__all__ = [
    "DEFAULT_BOOT_RETRY_S",
    "MAX_HEARTBEAT_GAP_S",
    "BootAnswered",
    "BootFailed",
    "CallAnswered",
    "CloseConnection",
    "ConnectFailed",
    "Connected",
    "ConnectionAction",
    "ConnectionEvent",
    "ConnectionState",
    "Disconnected",
    "HeartbeatSent",
    "MessageSent",
    "Reconnect",
    "Registered",
    "ResetRequested",
    "SecurityChanged",
    "SendBootNotification",
]

DEFAULT_BOOT_RETRY_S = 30.0  # when a Pending/Rejected answer gives interval 0
MAX_HEARTBEAT_GAP_S = 86_400.0  # G02.FR.07: one Heartbeat a day even on a busy link
POWER_UP = "PowerUp"  # the BootReason of a (re)start (2.0.1)


# -- events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """A WebSocket connection to the CSMS opened. ``boot_data`` is what the
    BootNotification would say of the station (vendor, model, firmware...)."""

    at: float
    boot_data: object


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection closed. ``at_once``: closed to move to another link, no back-off."""

    at: float
    at_once: bool = False


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """A connection attempt failed (refused, unreachable, no network yet)."""

    at: float


@dataclass(frozen=True, slots=True)
class BootAnswered:
    """The CSMS answered a BootNotification that said ``boot_data``."""

    at: float
    status: str  # RegistrationStatus: Accepted, Pending, Rejected
    interval: int
    boot_data: object


@dataclass(frozen=True, slots=True)
class BootFailed:
    """A BootNotification got a CALLERROR or no answer."""

    at: float


@dataclass(frozen=True, slots=True)
class MessageSent:
    """Any CALL went to the CSMS: the heartbeat timer starts again."""

    at: float


@dataclass(frozen=True, slots=True)
class HeartbeatSent:
    """A Heartbeat went to the CSMS (the daily one is due a day later)."""

    at: float


@dataclass(frozen=True, slots=True)
class ResetRequested:
    """A BootNotification is due on the next connection, with ``reason`` (2.0.1
    BootReason: RemoteReset, FirmwareUpdate...)."""

    reason: str = "RemoteReset"


@dataclass(frozen=True, slots=True)
class SecurityChanged:
    """A security setting changed by a CALL: reconnect once that CALL is answered."""


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The station answered a CALL of the CSMS."""


ConnectionEvent = (
    Connected
    | Disconnected
    | ConnectFailed
    | BootAnswered
    | BootFailed
    | MessageSent
    | HeartbeatSent
    | ResetRequested
    | SecurityChanged
    | CallAnswered
)


# -- actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendBootNotification:
    """Send a BootNotification now."""


@dataclass(frozen=True, slots=True)
class Registered:
    """Other messages than BootNotification may go now. ``booted``: after an Accepted
    BootNotification (with the CSMS's heartbeat ``interval``, 0: keep ours), not a plain
    reconnect: every connector's status goes out, a new firmware proved itself."""

    booted: bool
    interval: int = 0


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the connection: the next one uses the changed security settings."""


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Make the next connection attempt ``delay`` seconds after the event, at ``at``."""

    at: float
    delay: float


ConnectionAction = SendBootNotification | Registered | CloseConnection | Reconnect


class ConnectionState:
    """Whether the station is registered, and when it must boot, beat or reconnect."""

    def __init__(self, at: float, backoff: ReconnectBackoff) -> None:
        self.backoff = backoff
        """The reconnect back-off (replaceable: 2.0.1 configures it at run time)."""
        self.connected = False
        self.registered = False
        """BootNotification accepted (or not needed) on the current connection."""
        self.registration: str | None = None
        """The status of the last BootNotification answer."""
        self.boot_needed = True  # a process start: BootNotification on the first connection
        self.boot_reason = POWER_UP
        self.accepted_boot: object | None = None  # the boot data last Accepted
        self.boot_retry_at: float | None = None  # the next BootNotification, while connected
        self.reconnect_due = False
        self.last_sent = at  # any CALL to the CSMS: resets the heartbeat timer
        self.last_heartbeat = at

    def boot_due(self, boot_data: object) -> bool:
        """BootNotification on a new connection? After a (re)start or a Reset, when the
        boot data changed, or while not yet Accepted; a plain reconnect: no."""
        return self.boot_needed or self.accepted_boot != boot_data

    def handle(self, event: ConnectionEvent) -> list[ConnectionAction]:
        """Take ``event``; the actions it calls for."""
        match event:
            case Connected(at, boot_data):
                self.connected = True
                self.registered = False
                self.backoff.reset()
                if self.boot_due(boot_data):
                    self.boot_retry_at = at
                    return [SendBootNotification()]
                self.boot_retry_at = None
                self.registered = True
                return [Registered(booted=False)]
            case Disconnected(at, at_once):
                self.connected = False
                self.registered = False
                self.boot_retry_at = None
                return [Reconnect(at, 0.0) if at_once else self._reconnect(at)]
            case ConnectFailed(at):
                return [self._reconnect(at)]
            case BootAnswered(at, status, interval, boot_data):
                self.registration = status
                if status == "Accepted":
                    self.boot_needed = False
                    self.boot_reason = POWER_UP
                    self.accepted_boot = boot_data
                    self.last_heartbeat = at  # the answer carried the time
                    self.boot_retry_at = None
                    self.registered = self.connected
                    return [Registered(booted=True, interval=max(interval, 0))]
                self.boot_needed = True
                delay = interval if interval > 0 else DEFAULT_BOOT_RETRY_S
                self.boot_retry_at = at + delay
                return []
            case BootFailed(at):
                self.boot_retry_at = at + DEFAULT_BOOT_RETRY_S
                return []
            case MessageSent(at):
                self.last_sent = at
                return []
            case HeartbeatSent(at):
                self.last_heartbeat = at
                return []
            case ResetRequested(reason):
                self.boot_needed = True
                self.boot_reason = reason
                return []
            case SecurityChanged():
                self.reconnect_due = True
                return []
            case CallAnswered():
                if self.reconnect_due:
                    self.reconnect_due = False
                    return [CloseConnection()]
                return []
        raise TypeError(f"not a connection event: {event!r}")

    def boot_retry_in(self, now: float) -> float | None:
        """Seconds until the next BootNotification (0: now), None when none is due."""
        if self.boot_retry_at is None or self.registered:
            return None
        return max(0.0, self.boot_retry_at - now)

    def heartbeat_due_at(self, interval: float) -> float | None:
        """When the next Heartbeat is due with heartbeat ``interval`` (0: heartbeats off,
        None): ``interval`` after the last CALL, at the latest a day after the last
        Heartbeat."""
        if interval <= 0:
            return None
        return min(self.last_sent + interval, self.last_heartbeat + MAX_HEARTBEAT_GAP_S)

    def _reconnect(self, at: float) -> Reconnect:
        delay = self.backoff.next_delay()
        return Reconnect(at + delay, delay)
