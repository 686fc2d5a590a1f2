"""Security profiles 2 and 3 on the station side, against a real PlugStream Cloud over real
TLS (1.6 Security Whitepaper §2.4/§2.5, 2.0.1 part 2 A00): the station authenticates the
CSMS with its own trust store and clock, itself with HTTP Basic (profile 2) or its client
certificate (profile 3), and refuses -- before sending a byte -- a CSMS it cannot trust."""

from __future__ import annotations

import asyncio
import ssl
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import pytest

from plugstream.cloud.storage.records import StationRecord
from plugstream.pki.authority import CertificateAuthority
from tests.security.conftest import (
    PASSWORD,
    VERSIONS,
    Pki,
    ShiftedClock,
    ThreadTlsServer,
    TlsSink,
    make_station,
    trusting,
    with_client_cert,
    wss,
)
from tests.support import Cloud, running, running_cloud, until


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_A_04_CS_profile_2_tls_with_basic_auth_boots_accepted(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    """A00.FR.301-303 / A00.FR.201-204: HTTP Basic with the station id and the password of
    AuthorizationKey / SecurityCtrlr.BasicAuthPassword (A01.FR.01), over TLS that the
    station checked against its CSMS root."""
    await cloud.store.stations.register("CP2", password=PASSWORD, security_profile=2)
    station = trusting(make_station(version, tmp_path / "st", "CP2"), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    async with running(station, wss(cloud)):
        await until(lambda: station.online, "the station online")
        assert station.registration == "Accepted"
        assert cloud.gateway.is_connected("CP2")
        assert station.tls_rejected is None
    assert cloud.gateway.failed_logins["CP2"] == 0
    record = await cloud.store.stations.get("CP2")
    assert record is not None and record.ocpp_version == version


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_A_07_CS_profile_3_client_certificate_boots_accepted(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    """A00.FR.401/402: the station's certificate (CN = its id) authenticates it; no
    password goes with it even when one is configured (the cloud refuses Basic credentials
    alone for a profile-3 station, see tests/cloud/test_security_profiles.py)."""
    await cloud.store.stations.register("CP3", security_profile=3)
    station = with_client_cert(
        trusting(make_station(version, tmp_path / "st", "CP3"), pki), pki, "CP3"
    )
    station.set_password(PASSWORD)
    station.set_security_profile(3)
    address, headers = station.connection_target(wss(cloud) + "/CP3")
    assert headers == {} and "@" not in address  # profile 3: no password on the wire
    async with running(station, wss(cloud)):
        await until(lambda: station.online, "the station online")
        assert station.registration == "Accepted"
        assert cloud.gateway.is_connected("CP3")
    assert cloud.gateway.failed_logins["CP3"] == 0


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.unit
async def test_profile_2_and_3_refuse_plain_ws(tmp_path: Path, pki: Pki, version: str) -> None:
    """Profiles 2 and 3 are TLS profiles (A00.FR.311 / A00.FR.415): a ws:// URL is an
    error before any connection, in words an installer can act on."""
    station = with_client_cert(
        trusting(make_station(version, tmp_path / "st", "CPW"), pki), pki, "CPW"
    )
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    with pytest.raises(ValueError, match=r"security profile 2 needs a wss:// CSMS URL"):
        await station.run("ws://127.0.0.1:9/ocpp")
    station.close()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.unit
async def test_TC_A_22_CS_the_security_profile_is_never_lowered(
    tmp_path: Path, pki: Pki, version: str
) -> None:
    """1.6 whitepaper §7.6 / A05.FR.01 (TC_A_22_CS): only a higher profile is taken, and
    only with its prerequisites (A05.FR.02-04 / TC_A_20_CS, TC_A_21_CS); a profile set
    survives a restart."""
    station = make_station(version, tmp_path / "st", "CPL")
    with pytest.raises(ValueError, match="needs a password"):
        station.set_security_profile(1)
    station.set_password(PASSWORD)
    with pytest.raises(ValueError, match="CSMS root"):
        station.set_security_profile(2)
    trusting(station, pki)
    with pytest.raises(ValueError, match="station certificate"):
        station.set_security_profile(3)
    station.set_security_profile(2)
    with pytest.raises(ValueError, match="only be raised"):
        station.set_security_profile(1)
    station.close()
    again = make_station(version, tmp_path / "st", "CPL")
    assert again.security_profile == 2
    assert again.password() == PASSWORD
    assert "ReconfigurationOfSecurityParameters" in again.security_log.types()
    again.close()


@pytest.mark.socket
async def test_TC_A_19_CS_change_configuration_raises_the_profile_and_reconnects(
    tmp_path: Path, pki: Pki, cloud: Cloud
) -> None:
    """1.6 whitepaper A05 (TC_A_19/20/22_CS): ChangeConfiguration SecurityProfile is
    Rejected when lower or equal or without prerequisites; a higher one is Accepted, the
    station disconnects and comes back with it (A05.FR.05-07)."""
    await cloud.store.stations.register("CPU", password=PASSWORD, security_profile=2)
    station = trusting(make_station("1.6", tmp_path / "st", "CPU"), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    async with running(station, wss(cloud)):
        await until(lambda: station.online, "the station online")
        first = cloud.gateway._live["CPU"]
        for value in ("1", "2", "3"):  # lower, equal, and 3 without a station certificate
            answer = await cloud.gateway.call(
                "CPU", "ChangeConfiguration", {"key": "SecurityProfile", "value": value}
            )
            assert answer == {"status": "Rejected"}, value
        with_client_cert(station, pki, "CPU")
        await cloud.store.stations.register("CPU", security_profile=3)
        answer = await cloud.gateway.call(
            "CPU", "ChangeConfiguration", {"key": "SecurityProfile", "value": "3"}
        )
        assert answer == {"status": "Accepted"}
        await until(
            lambda: cloud.gateway._live.get("CPU") not in (None, first) and station.online,
            "back online on a new connection",
        )
        assert station.security_profile == 3


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_A_09_CS_a_new_password_is_used_on_the_next_connection(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    """A01 (1.6 whitepaper and 2.0.1, TC_A_09_CS): ChangeConfiguration AuthorizationKey /
    SetVariables SecurityCtrlr.BasicAuthPassword; once answered the station reconnects with
    the new password, and logs the change without its value (A01.FR.11/12)."""
    await cloud.store.stations.register("CPN", password=PASSWORD, security_profile=2)
    station = trusting(make_station(version, tmp_path / "st", "CPN"), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    new = "another-password-0123456789"
    async with running(station, wss(cloud)):
        await until(lambda: station.online, "the station online")
        first = cloud.gateway._live["CPN"]
        await cloud.store.stations.register("CPN", password=new, security_profile=2)
        if version == "1.6":
            answer = await cloud.gateway.call(
                "CPN", "ChangeConfiguration", {"key": "AuthorizationKey", "value": new}
            )
            assert answer == {"status": "Accepted"}
        else:
            answer = await cloud.gateway.call(
                "CPN",
                "SetVariables",
                {
                    "setVariableData": [
                        {
                            "component": {"name": "SecurityCtrlr"},
                            "variable": {"name": "BasicAuthPassword"},
                            "attributeValue": new,
                        }
                    ]
                },
            )
            assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
        await until(
            lambda: cloud.gateway._live.get("CPN") not in (None, first) and station.online,
            "back online on a new connection",
        )
    assert cloud.gateway.failed_logins["CPN"] == 0
    assert station.password() == new
    log_text = (tmp_path / "st" / "security_log.json").read_text()
    assert "ReconfigurationOfSecurityParameters" in log_text and new not in log_text


# -- the station refuses a CSMS it cannot trust ------------------------------------------


def _unknown_ca(pki: Pki) -> tuple[Path, Path]:
    stranger = CertificateAuthority.create("Stranger Root CA", organization="Stranger")
    return pki.write("stranger-server", stranger.issue_server())


def _localhost_only(pki: Pki) -> tuple[Path, Path]:
    return pki.write("localhost-only", pki.ca.issue_server(["localhost"], ips=[]))


def _one_day(pki: Pki) -> tuple[Path, Path]:
    return pki.write("one-day", pki.ca.issue_server(days=1))


CASES = {
    # name: (server certificate, station clock offset, words of the reason)
    "unknown CA": (_unknown_ca, timedelta(0), "does not trust"),
    "wrong host": (_localhost_only, timedelta(0), "not for '127.0.0.1'"),
    "expired by the station's clock": (_one_day, timedelta(days=3), "expired"),
    "not yet valid by the station's clock": (_one_day, timedelta(days=-3), "not yet valid"),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.socket
async def test_TC_A_05_CS_an_invalid_server_certificate_is_refused_before_anything_is_sent(
    tmp_path: Path, pki: Pki, version: str, case: str
) -> None:
    """A00.FR.307-310 / A00.FR.411-414 (TC_A_05_CS): the certificate is checked against
    the station's CSMS roots and its own clock (the expiry cases: the certificate is valid
    in real time, the station's clock is days off); on failure the station sends nothing --
    no HTTP Upgrade, no password -- records InvalidCsmsCertificate /
    InvalidCentralSystemCertificate and says why in ``tls_rejected``."""
    make_cert, offset, words = CASES[case]
    expected = "InvalidCentralSystemCertificate" if version == "1.6" else "InvalidCsmsCertificate"
    cert, key = make_cert(pki)
    station = trusting(
        make_station(version, tmp_path / "st", "CPX", clock=ShiftedClock(offset)), pki
    )
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    async with TlsSink(cert, key) as sink, running(station, sink.url()):
        # two attempts refused (the station retries), both connections read to their end:
        # every byte the station sent on them is in ``received``
        await until(
            lambda: station.security_log.types().count(expected) >= 2, "two refused attempts"
        )
        await until(lambda: sink.ended >= 2, "both refused connections closed")
        rejected = station.tls_rejected
        assert rejected is not None and words in rejected.reason, rejected
        assert sink.received == b""  # not a byte after the handshake: no Upgrade, no password
        assert not station.online
    entries = [e for e in station.security_log.entries() if e.type == expected]
    assert entries and words in (entries[0].tech_info or "")
    # one report queued however often the station retried
    assert len([e for e in station.security_log.pending() if e.type == expected]) == 1


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("limit", "event"),
    [("cipher", "InvalidTLSCipherSuite"), ("version", "InvalidTLSVersion")],
)
@pytest.mark.socket
async def test_a_csms_with_weak_tls_is_refused_with_its_security_event(
    tmp_path: Path, pki: Pki, version: str, limit: str, event: str
) -> None:
    """A00.FR.315/322 (A00.FR.419/426): a CSMS that allows only TLS 1.1, or only suites
    outside the spec's list, fails the handshake: InvalidTLSVersion / InvalidTLSCipherSuite
    is logged and queued, nothing is sent."""
    cert, key = pki.dir / "server.pem", pki.dir / "server.key"
    station = trusting(make_station(version, tmp_path / "st", "CPS"), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if limit == "cipher":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
    else:
        with warnings.catch_warnings():  # an old server on purpose
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with ThreadTlsServer(context) as server:
        async with running(station, server.url()):
            await until(lambda: event in station.security_log.types(), f"{event} logged")
            assert not station.online
    assert server.received == b"" and server.failures
    assert [e.type for e in station.security_log.pending()].count(event) == 1


@pytest.mark.socket
async def test_a_profile_2_station_sends_nothing_to_a_cloud_with_the_wrong_host(
    tmp_path: Path, pki: Pki
) -> None:
    """The real cloud with a certificate for "localhost" only, reached as 127.0.0.1: it
    never sees the station (no request, no failed login, no message)."""
    cert, key = _localhost_only(pki)
    async with running_cloud(tmp_path, tls_cert=cert, tls_key=key) as cloud:
        await cloud.store.stations.register("CPH", password=PASSWORD, security_profile=2)
        station = trusting(make_station("2.0.1", tmp_path / "st", "CPH"), pki)
        station.set_password(PASSWORD)
        station.set_security_profile(2)
        async with running(station, wss(cloud)):
            await until(lambda: station.tls_rejected is not None, "the cloud's certificate refused")
            # refused again after its back-off: the first connection is over, and the cloud
            # has had it (and a second one) to see anything the station might have sent
            await until(
                lambda: station.security_log.types().count("InvalidCsmsCertificate") >= 2,
                "a second refusal",
            )
            assert not station.online
        assert not cloud.gateway.is_connected("CPH")
        assert cloud.gateway.failed_logins["CPH"] == 0
        assert list(cloud.gateway.security_events) == []
        assert await cloud.store.messages.list("CPH") == []


# -- plugstream station run --------------------------------------------------------------


async def _station_process(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plugstream.cli",
        "station",
        "run",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        assert proc.stdin is not None
        proc.stdin.write(b"quit\n")
        await proc.stdin.drain()
        try:
            return await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("profile", [2, 3])
@pytest.mark.socket
async def test_station_run_connects_with_security_profile_flags(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str, profile: int
) -> None:
    """``plugstream station run --security-profile N --trust ROOT [--password P |
    --client-cert C --client-key K]``: the real process boots Accepted over TLS, and the
    settings are kept in its data dir (the password in its configuration, not a URL)."""
    sid = f"RUN{profile}"
    flags = ["--security-profile", str(profile), "--trust", str(pki.dir / "root.pem")]
    if profile == 2:
        await cloud.store.stations.register(sid, password=PASSWORD, security_profile=2)
        flags += ["--password", PASSWORD]
    else:
        await cloud.store.stations.register(sid, security_profile=3)
        cert, key = pki.write("run3", pki.ca.issue_client(sid, organization="PlugStream"))
        flags += ["--client-cert", str(cert), "--client-key", str(key)]
    data = tmp_path / "data"
    proc = await _station_process(
        "--id", sid, "--model", "7", "--csms", wss(cloud), "--ocpp", version,
        "--data-dir", str(data), *flags, cwd=tmp_path,
    )  # fmt: skip
    try:
        await until(lambda: cloud.gateway.is_connected(sid), "the process connected")

        async def booted() -> StationRecord | None:  # the BootNotification follows
            record = await cloud.store.stations.get(sid)
            return record if record is not None and record.ocpp_version == version else None

        record = await until(booted, "the BootNotification stored")
        assert record is not None and record.ocpp_version == version
    finally:
        assert await _stop(proc) == 0
    assert cloud.gateway.failed_logins[sid] == 0
    config = (data / ("config16.json" if version == "1.6" else "device_model201.json")).read_text()
    assert (PASSWORD in config) == (profile == 2)  # in the configuration (0600), as A01.FR.01
    assert oct((data / "certs").stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (
            ["--csms", "ws://127.0.0.1:9/ocpp", "--security-profile", "2", "--password", PASSWORD],
            "needs a wss:// CSMS URL",
        ),
        (
            ["--csms", "wss://127.0.0.1:9/ocpp", "--security-profile", "2", "--password", PASSWORD],
            "CSMS root certificate",
        ),
        (
            ["--csms", "wss://127.0.0.1:9/ocpp", "--security-profile", "3", "--trust", "ROOT"],
            "station certificate",
        ),
        (["--csms", "wss://127.0.0.1:9/ocpp", "--client-cert", "ROOT"], "together"),
        (["--csms", "wss://127.0.0.1:9/ocpp"], "a wss:// CSMS URL needs a CSMS root"),
        (["--csms", "ws://127.0.0.1:9/ocpp", "--password", "short"], "16 to 40"),
        (["--csms", "ws://127.0.0.1:9/ocpp", "--security-profile", "4"], "--security-profile"),
    ],
)
@pytest.mark.socket
async def test_station_run_bad_security_flags_are_one_line_and_exit_code_2(
    tmp_path: Path, pki: Pki, flags: list[str], words: str
) -> None:
    root = str(pki.dir / "root.pem")
    args = [root if f == "ROOT" else f for f in flags]
    proc = await _station_process(
        "--id", "BAD", "--model", "7", "--data-dir", str(tmp_path / "d"), *args, cwd=tmp_path
    )
    _, err = await asyncio.wait_for(proc.communicate(b""), 30)
    assert proc.returncode == 2, err
    text = err.decode()
    assert words in text, text
    assert "Traceback" not in text
