"""Security events end to end: the station's security log and its SecurityEventNotifications
(2.0.1 A04, 1.6 Security Whitepaper §8), the gateway's refusals, and what an operator sees
in ``GET /api/v1/security-events`` -- real TLS, a real cloud, real stations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugstream.cloud.storage import Store
from plugstream.pki.authority import CertificateAuthority
from plugstream.station.security import SecurityLog, event_name
from tests.cloud.conftest import postgres_url, store, store_url  # noqa: F401 (fixtures)
from tests.security.conftest import (
    PASSWORD,
    VERSIONS,
    Pki,
    ShiftedClock,
    TlsSink,
    api_events,
    make_station,
    trusting,
    until_api,
    with_client_cert,
    wss,
)
from tests.support import Cloud, running, until

AUTH_FAILED = {
    "1.6": "FailedToAuthenticationAtCentralSystem",
    "2.0.1": "FailedToAuthenticationAtCsms",
}
BAD_CSMS_CERT = {"1.6": "InvalidCentralSystemCertificate", "2.0.1": "InvalidCsmsCertificate"}


def _from(events: list[dict[str, object]], source: str, kind: str) -> list[dict[str, object]]:
    return [e for e in events if e["source"] == source and e["type"] == kind]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_a_wrong_password_is_refused_and_reported_from_both_sides(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    """The cloud answers 401 and keeps a gateway event (A00.FR.323); the station logs
    FailedToAuthenticationAtCsms (…AtCentralSystem in 1.6) and, once it gets in with the
    right password, reports it -- once, however many attempts failed."""
    await cloud.store.stations.register("CPW", password=PASSWORD, security_profile=2)
    station = trusting(make_station(version, tmp_path / "st", "CPW"), pki)
    station.set_password("not-the-password-at-all")
    station.set_security_profile(2)
    async with running(station, wss(cloud)):
        await until(
            lambda: station.security_log.types().count(AUTH_FAILED[version]) >= 2,
            "two refused logins in the station's log",
        )
        assert not station.online and cloud.gateway.failed_logins["CPW"] >= 2
        refusals = _from(await api_events(cloud, pki), "gateway", "FailedToAuthenticate")
        assert refusals and refusals[0]["station_id"] == "CPW"
        assert refusals[0]["tech_info"] == "wrong credentials"
        station.set_password(PASSWORD)  # the installer puts it right: used on the next attempt
        await until(lambda: station.online, "the station online")
        events = await until_api(
            cloud,
            pki,
            lambda ev: bool(_from(ev, "station", AUTH_FAILED[version])),
            "the station's report of the refusal",
            station_id="CPW",
        )
        # the password change (ReconfigurationOfSecurityParameters) is queued after it
        await until(lambda: not station.security_log.pending(), "every event reported")
    reported = _from(events, "station", AUTH_FAILED[version])
    assert len(reported) == 1 and "HTTP 401" in str(reported[0]["tech_info"])
    assert _from(events, "station", "StartupOfTheDevice")
    assert {e["station_id"] for e in events} == {"CPW"}
    assert station.security_log.pending() == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_a_client_certificate_for_another_id_is_refused(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    """A00.FR.405/407/408: the CN must be the station id; the cloud refuses (401) and keeps
    InvalidChargingStationCertificate; the station logs that the CSMS refused it."""
    await cloud.store.stations.register("CP3", security_profile=3)
    station = with_client_cert(
        trusting(make_station(version, tmp_path / "st", "CP3"), pki), pki, "CP-OTHER"
    )
    station.set_security_profile(3)
    async with running(station, wss(cloud)):
        await until(
            lambda: AUTH_FAILED[version] in station.security_log.types(),
            "the refused login in the station's log",
        )
        assert not station.online and not cloud.gateway.is_connected("CP3")
    events = await api_events(cloud, pki, station_id="CP3")
    refused = _from(events, "gateway", "InvalidChargingStationCertificate")
    assert refused and "CP-OTHER" in str(refused[0]["tech_info"])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_an_untrusted_csms_is_reported_to_the_next_trusted_one_even_after_a_restart(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    """A04.FR.02: a critical event raised while no CSMS can be reached (its certificate is
    from an unknown CA, A00.FR.309) is queued durably: the station process restarts, and
    the event still reaches the trusted CSMS as SecurityEventNotification."""
    stranger = CertificateAuthority.create("Stranger Root CA", organization="Stranger")
    cert, key = pki.write("stranger", stranger.issue_server())
    await cloud.store.stations.register("CPR", password=PASSWORD, security_profile=2)
    first = trusting(make_station(version, tmp_path / "st", "CPR"), pki)
    first.set_password(PASSWORD)
    first.set_security_profile(2)
    async with TlsSink(cert, key) as sink, running(first, sink.url()):
        await until(lambda: first.tls_rejected is not None, "the server refused")
        # the refused connection closed: whatever the station sent on it is in ``received``
        await until(lambda: sink.ended, "the refused connection closed")
    assert sink.received == b""
    # a new process on the same data dir
    second = make_station(version, tmp_path / "st", "CPR")
    assert [e.type for e in second.security_log.pending()].count(BAD_CSMS_CERT[version]) == 1
    async with running(second, wss(cloud)):
        await until(lambda: second.online, "the restarted station online")
        events = await until_api(
            cloud,
            pki,
            lambda ev: bool(_from(ev, "station", BAD_CSMS_CERT[version])),
            "the refusal reported",
            station_id="CPR",
        )
        await until(lambda: not second.security_log.pending(), "every event reported")
        # the second start's StartupOfTheDevice is queued after the refusal: read again
        events = await until_api(
            cloud,
            pki,
            lambda ev: len(_from(ev, "station", "StartupOfTheDevice")) == 2,
            "both starts reported",
            station_id="CPR",
        )
    [reported] = _from(events, "station", BAD_CSMS_CERT[version])
    assert "does not trust" in str(reported["tech_info"])
    # two process starts, both reported; newest first
    assert len(_from(events, "station", "StartupOfTheDevice")) == 2
    # as times, not text: "…:50Z" sorts after "…:50.034000Z" as a string
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_a_station_clock_in_the_past_cannot_authenticate_the_csms_until_it_is_set(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    """A wrong clock cannot authenticate: the cloud's certificate is valid now, but not yet
    by the station's clock (three days behind). Once the clock is set (the NTP hook
    ``clock_changed``), the station connects, and both InvalidCsmsCertificate and
    SettingSystemTime reach the CSMS."""
    await cloud.store.stations.register("CPT", password=PASSWORD, security_profile=2)
    clock = ShiftedClock(timedelta(days=-3))
    station = trusting(make_station(version, tmp_path / "st", "CPT", clock=clock), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    async with running(station, wss(cloud)):
        await until(lambda: station.tls_rejected is not None, "the cloud's certificate refused")
        assert "not yet valid" in station.tls_rejected.reason
        # refused again after its back-off: the first connection is over, and the cloud
        # has had it (and a second one) to see anything the station might have sent
        await until(
            lambda: station.security_log.types().count(BAD_CSMS_CERT[version]) >= 2,
            "a second refusal",
        )
        assert not cloud.gateway.is_connected("CPT") and cloud.gateway.failed_logins["CPT"] == 0
        assert await cloud.store.messages.list("CPT") == []
        old = clock.now()
        clock.offset = timedelta(0)
        station.clock_changed(old, clock.now())
        await until(lambda: station.online, "the station online")
        events = await until_api(
            cloud,
            pki,
            lambda ev: (
                bool(_from(ev, "station", "SettingSystemTime"))
                and bool(_from(ev, "station", BAD_CSMS_CERT[version]))
            ),
            "both events reported",
            station_id="CPT",
        )
    assert "not yet valid" in str(_from(events, "station", BAD_CSMS_CERT[version])[0]["tech_info"])
    assert station.tls_rejected is None


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_reset_and_hook_events_are_reported_while_online(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    """ResetOrReboot on a Reset; the hook the firmware and certificate parts call
    (``station.security_event("InvalidFirmwareSignature", ...)``) reports at once."""
    await cloud.store.stations.register("CPE", password=PASSWORD, security_profile=2)
    station = trusting(make_station(version, tmp_path / "st", "CPE"), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    async with running(station, wss(cloud)):
        await until(lambda: station.online, "the station online")
        station.security_event("InvalidFirmwareSignature", "signature does not verify")
        station.security_event("InvalidChargingStationCertificate", "CN is not CPE")
        payload = {"type": "Hard"} if version == "1.6" else {"type": "Immediate"}
        assert (await cloud.gateway.call("CPE", "Reset", payload))["status"] == "Accepted"
        events = await until_api(
            cloud,
            pki,
            lambda ev: bool(_from(ev, "station", "ResetOrReboot")),
            "the reset reported",
            station_id="CPE",
        )
        await until(lambda: station.online, "the station online again")
    kinds = {e["type"] for e in events if e["source"] == "station"}
    cert_event = (
        "InvalidChargePointCertificate" if version == "1.6" else "InvalidChargingStationCertificate"
    )
    assert {"InvalidFirmwareSignature", cert_event, "ResetOrReboot", "StartupOfTheDevice"} <= kinds


@pytest.mark.socket
async def test_a_csms_without_the_security_extension_does_not_hold_up_transactions(
    tmp_path: Path,
) -> None:
    """A 1.6 Central System without the security extension answers NotImplemented: the
    event stays in the log (marked unsupported), is not retried, and the transaction
    messages flow as before."""
    from plugstream.station.ev import CITY_CAR, Ev
    from tests.station.test_station16 import Server

    server = Server()
    await server.start()
    try:
        station = make_station("1.6", tmp_path / "st", "CPO")
        async with running(station, server.url):
            await until(lambda: station.online, "the station online")
            station.plug_in(Ev(CITY_CAR, soc=30.0))
            assert await station.swipe("TAG-1")
            await until(lambda: server.actions("StartTransaction"), "StartTransaction sent")
            await until(lambda: not station.security_log.pending(), "the event settled")
        assert [e.state for e in station.security_log.entries()] == ["unsupported"]
    finally:
        await server.stop()


@pytest.mark.unit
def test_the_security_log_rolls_over_and_keeps_queued_reports(tmp_path: Path) -> None:
    """A04.FR.04: a rolling log; what is still to be reported survives both a reload and
    the roll-over."""
    path = tmp_path / "security_log.json"
    log = SecurityLog(path, ocpp_version="2.0.1", max_entries=50, sync=False)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    first = log.record("InvalidCsmsCertificate", at, "unknown CA")
    for i in range(80):
        entry = log.record("InvalidMessages", at, f"frame {i}")
        log.delivered(entry.seq)
    again = SecurityLog(path, ocpp_version="2.0.1", max_entries=50)
    assert len(again.entries()) == 50
    assert [e.seq for e in again.pending()] == [first.seq]
    assert again.entries()[-1].tech_info == "frame 79"
    assert json.loads(path.read_text())["next_seq"] == 82


@pytest.mark.unit
def test_event_names_follow_the_version() -> None:
    """The 2.0.1 appendix and the 1.6 whitepaper §8 name four events differently."""
    assert event_name("InvalidCsmsCertificate", "1.6") == "InvalidCentralSystemCertificate"
    assert event_name("InvalidCentralSystemCertificate", "2.0.1") == "InvalidCsmsCertificate"
    assert (
        event_name("FailedToAuthenticateAtCsms", "1.6") == "FailedToAuthenticationAtCentralSystem"
    )
    assert event_name("InvalidChargingStationCertificate", "1.6") == "InvalidChargePointCertificate"
    assert event_name("InvalidFirmwareSignature", "1.6") == "InvalidFirmwareSignature"


@pytest.mark.unit
async def test_the_table_keeps_both_sources_newest_first(store: Store) -> None:  # noqa: F811
    """On SQLite and PostgreSQL: both sources in one list, newest first, per station."""
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    await store.security.add_event("CP1", "StartupOfTheDevice", at, "firmware 1", "station")
    await store.security.add_event(
        "CP2", "FailedToAuthenticate", at, "wrong credentials", "gateway"
    )
    await store.security.add_event("CP1", "X" * 80, at + timedelta(seconds=1), None, "station")
    everything = await store.security.list_events()
    assert [(e.station_id, e.source) for e in everything] == [
        ("CP1", "station"),
        ("CP2", "gateway"),
        ("CP1", "station"),
    ]
    assert everything[0].type == "X" * 50  # the spec's string[50]
    assert everything[1].timestamp == at
    only = await store.security.list_events(station_id="CP1", limit=1)
    assert [e.tech_info for e in only] == [None]
