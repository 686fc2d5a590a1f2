"""What a station's OCPP handlers work with, given to them when they are made.

The gateway makes one :class:`HandlersFactory` product per connection and hands it a
:class:`HandlerContext`: the store, the configuration, the clock, the way to send a
station a CALL (:class:`CommandSender`) and where to report what the cloud finds
(:class:`EventSink`). Handlers see the gateway only through these Protocols, so no
handler module imports the gateway and the gateway imports no handler module: the
application registers the handlers of each OCPP version with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.stations import StationOffline
from plugstream.ocpp import Handlers, OcppVersion

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

__all__ = [
    "CloudClock",
    "CommandSender",
    "EventSink",
    "HandlerContext",
    "HandlersFactory",
    "SecurityEvent",
    "utc_now",
]

#: what the cloud stamps what it receives with; injected so that a demo whose stations
#: run on a scaled clock runs the cloud on the same one (no TimeInFuture of its own making)
CloudClock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """A refused connection or CSR, named as the OCPP security events are where one fits
    (``InvalidChargingStationCertificate``, A00.FR.408), else ``FailedToAuthenticate``."""

    timestamp: datetime
    station_id: str
    type: str
    tech_info: str


class CommandSender(Protocol):
    """Sends a connected station a CALL (the gateway): a station's payload depends on its
    OCPP version, so the sender also tells which stations it reaches, in which version."""

    def is_connected(self, station_id: str) -> bool: ...

    def version_of(self, station_id: str) -> OcppVersion | None: ...

    async def call(
        self,
        station_id: str,
        action: str,
        payload: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The CALLRESULT payload; OcppError, CallTimeout or :class:`StationOffline`."""
        ...


class EventSink(Protocol):
    """Where handlers report what the cloud itself found, once it is stored (the gateway
    keeps the newest in memory with its own refusals), and what stations reported, for
    other services (:mod:`plugstream.cloud.bus.events`)."""

    def security_event(self, event: SecurityEvent) -> None: ...

    async def publish(self, kind: str, station_id: str, data: dict[str, Any]) -> None:
        """Publish an event (``kind`` of :data:`plugstream.cloud.bus.events.KINDS`) of what
        the station reported, already stored; returns once the event is durable (it will
        reach the bus even if this node dies now). Nothing without a bus."""
        ...


class NoStations:
    """A :class:`CommandSender` that reaches no station: handlers run without a gateway
    (in tests, or to replay what stations sent)."""

    def is_connected(self, station_id: str) -> bool:
        return False

    def version_of(self, station_id: str) -> OcppVersion | None:
        return None

    async def call(
        self,
        station_id: str,
        action: str,
        payload: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        raise StationOffline(station_id)


class NoEvents:
    """An :class:`EventSink` that keeps nothing beyond what the store has."""

    def security_event(self, event: SecurityEvent) -> None:
        return None

    async def publish(self, kind: str, station_id: str, data: dict[str, Any]) -> None:
        return None


NO_STATIONS = NoStations()
NO_EVENTS = NoEvents()


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """The services a station's handlers use; one per gateway, shared by its connections.

    ``HandlerContext(store, config, clock=clock)`` is a context without a gateway: no
    station is reached and events are only stored."""

    store: Store
    config: CloudConfig
    clock: CloudClock = utc_now
    commands: CommandSender = NO_STATIONS
    events: EventSink = NO_EVENTS


class HandlersFactory(Protocol):
    """The handlers of one station's connection (a handler class is one)."""

    def __call__(self, station_id: str, context: HandlerContext) -> Handlers: ...
