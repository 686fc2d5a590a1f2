"""The re-sends of a SignCertificate belong to one station: two stations in one process
share no state (A02.FR.17-19), shown on stations that are only the protocol
certificate management needs (:class:`plugstream.station.ports.StationPort`)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from plugstream.ocpp import OcppEndpoint, OcppVersion
from plugstream.station.certificates import CertificateStore
from plugstream.station.certmgmt import CertificateSigning, request_signing, signing_of
from plugstream.station.clock import ManualClock
from plugstream.station.connector import Connector
from plugstream.station.ports import StationPort

pytestmark = pytest.mark.unit

WAIT_S = 60  # SecurityCtrlr.CertSigningWaitMinimum
REPEAT = 2  # SecurityCtrlr.CertSigningRepeatTimes


class _Config:
    """The SecurityCtrlr variables the CSR and its re-sends read (2.0.1)."""

    def value(self, component: str, variable: str) -> str:
        return "PlugStream" if variable == "OrganizationName" else ""

    def get_int(self, component: str, variable: str) -> int:
        return {"CertSigningWaitMinimum": WAIT_S, "CertSigningRepeatTimes": REPEAT}[variable]


class FakeStation:
    """A 2.0.1 station whose CSMS accepts every SignCertificate and signs nothing."""

    ocpp_version = OcppVersion.V201
    security_profile = 3
    call_timeout = 30.0
    online = True
    endpoint: OcppEndpoint | None = None

    def __init__(self, station_id: str, directory: Path, clock: ManualClock) -> None:
        self.station_id = station_id
        self.config = _Config()
        self.certificates = CertificateStore(directory)
        self.connector = Connector(1)
        self.data_dir = directory
        self.clock = clock
        self.now = clock.now
        self.sent: list[str] = []

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(action)
        return {"status": "Accepted"}

    async def send_triggered(self, message: str) -> None:
        raise AssertionError("not used")

    async def disconnect(self) -> None:
        raise AssertionError("not used")

    def request_boot(self, reason: str = "RemoteReset") -> None:
        raise AssertionError("not used")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        raise AssertionError("not used")

    def security_event(self, kind: str, tech_info: str | None = None) -> None:
        raise AssertionError("not used")


def _station(station_id: str, tmp_path: Path, clock: ManualClock) -> FakeStation:
    station = FakeStation(station_id, tmp_path / station_id, clock)
    port: StationPort = station  # what certificate management needs, nothing more
    assert port is station
    return station


async def test_each_station_has_its_own_certificate_signing(tmp_path: Path) -> None:
    clock = ManualClock()
    a, b = _station("CS-A", tmp_path, clock), _station("CS-B", tmp_path, clock)
    assert signing_of(a) is signing_of(a)
    assert signing_of(a) is not signing_of(b)
    assert isinstance(signing_of(b), CertificateSigning)


async def test_answering_one_station_does_not_stop_the_resends_of_another(
    tmp_path: Path,
) -> None:
    """A CertificateSigned for station A stops A's re-sends only; B sends its CSR again
    after CertSigningWaitMinimum, then after twice that (A02.FR.17/18)."""
    clock = ManualClock()
    a, b = _station("CS-A", tmp_path, clock), _station("CS-B", tmp_path, clock)
    assert await request_signing(a, "ChargingStationCertificate") == "Accepted"
    assert await request_signing(b, "ChargingStationCertificate") == "Accepted"
    signing_of(a).stop_resending()  # what a CertificateSigned does, valid or not (A02.FR.20)

    await clock.advance(WAIT_S)
    assert (a.sent, b.sent) == (["SignCertificate"], ["SignCertificate"] * 2)
    await clock.advance(2 * WAIT_S)
    assert (a.sent, b.sent) == (["SignCertificate"], ["SignCertificate"] * 3)
    await clock.advance(4 * WAIT_S)  # CertSigningRepeatTimes reached: no more
    assert (a.sent, b.sent) == (["SignCertificate"], ["SignCertificate"] * 3)
