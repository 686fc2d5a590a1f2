"""What the station's parts need of the station that runs them.

Certificate management (:mod:`~plugstream.station.certmgmt`) and the firmware updater
(:mod:`~plugstream.station.firmware`) are used by the station runtime and use it back:
they type it as :class:`StationPort`, a protocol of the runtime's public members, and
import no station module. This keeps the import graph of the station one-way.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from plugstream.ocpp import OcppEndpoint, OcppVersion
from plugstream.station.certificates import CertificateStore
from plugstream.station.clock import Clock
from plugstream.station.connector import Connector

__all__ = ["StationPort"]


class StationPort(Protocol):
    """The station as certificate management and the firmware updater see it."""

    # -- who it is, what it has

    @property
    def station_id(self) -> str: ...

    @property
    def ocpp_version(self) -> OcppVersion: ...

    @property
    def config(self) -> Any:
        """Config16 or Config201: the keys differ by version, so the callers ask by version."""

    @property
    def certificates(self) -> CertificateStore: ...

    @property
    def connector(self) -> Connector: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def clock(self) -> Clock: ...

    def now(self) -> datetime: ...

    @property
    def security_profile(self) -> int: ...

    @property
    def call_timeout(self) -> float: ...

    # -- its connection

    @property
    def online(self) -> bool: ...

    @property
    def endpoint(self) -> OcppEndpoint | None: ...

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]: ...

    async def send_triggered(self, message: str, connector_id: int | None = None) -> None: ...

    async def disconnect(self) -> None: ...

    def request_boot(self, reason: str = ...) -> None:
        """A BootNotification is due on the next connection (``reason``: 2.0.1's BootReason)."""

    # -- its housekeeping

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    def security_event(self, kind: str, tech_info: str | None = None) -> None: ...
