"""Handshakes that TLS refuses at PlugStream Cloud are security events too (OCPP 2.0.1
part 2 A00.FR.407/408: log InvalidChargingStationCertificate; A00.FR.418 / A00.FR.425:
the TLS version and cipher suite cases), though the gateway never sees those stations.

Real TLS on loopback with certificates from the project's CA; the cloud in-process
(asyncio's loop, as pytest runs it) and as ``plugstream cloud serve`` (uvloop)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from plugstream.cloud.serve import READY
from plugstream.cloud.tlsaudit import RefusalLimiter
from plugstream.pki.authority import CertificateAuthority, IssuedCertificate
from tests.support import (
    WAIT,
    Cloud,
    basic_auth,
    cloud_serve_argv,
    free_port,
    running_cloud,
    stop_process,
    until,
)

V201 = "ocpp2.0.1"
PASSWORD = "correct-horse-battery-staple"
REFUSED = (ssl.SSLError, ConnectionError, InvalidMessage)


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture
def root(tmp_path: Path, ca: CertificateAuthority) -> Path:
    ca.write_root(tmp_path / "root.pem")
    ca.issue_server().write(tmp_path / "server.pem", tmp_path / "server.key")
    return tmp_path / "root.pem"


@pytest.fixture
async def cloud(tmp_path: Path, root: Path) -> AsyncIterator[Cloud]:
    async with running_cloud(
        tmp_path,
        tls_cert=tmp_path / "server.pem",
        tls_key=tmp_path / "server.key",
        tls_client_ca=root,
        tls_client_organization="PlugStream",
    ) as cloud:
        await cloud.store.stations.register("CP2", password=PASSWORD, security_profile=2)
        await cloud.store.stations.register("CP3", security_profile=3)
        yield cloud


def station_context(root: Path, issued: IssuedCertificate | None = None) -> ssl.SSLContext:
    """A station's TLS context: trusts the CSMS root, presents ``issued`` if given."""
    context = ssl.create_default_context(cafile=str(root))
    if issued is not None:
        cert, key = root.parent / "station.pem", root.parent / "station.key"
        issued.write(cert, key)
        context.load_cert_chain(cert, key)
    return context


def expired_client(ca: CertificateAuthority, common_name: str) -> IssuedCertificate:
    """A station certificate of the right CA and organization that expired yesterday."""
    issued = ca.issue_client(common_name, organization="PlugStream")
    fresh = issued.certificate
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(fresh.subject)
        .issuer_name(fresh.issuer)
        .public_key(fresh.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
    )
    for extension in fresh.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return IssuedCertificate(builder.sign(ca.root.key, hashes.SHA256()), issued.key)


async def connects(
    port: int, station_id: str, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> int:
    """101 when the station got its WebSocket, else the HTTP status it was refused with."""
    try:
        async with connect(
            f"wss://127.0.0.1:{port}/ocpp/{station_id}",
            subprotocols=[V201],  # type: ignore[list-item]
            ssl=context,
            additional_headers=headers,
            open_timeout=WAIT,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def security_events(
    port: int, root: Path, *, wait_for: int = 0, token: str | None = None
) -> list[dict[str, Any]]:
    """GET /api/v1/security-events, as an operator does; polled until it lists ``wait_for``
    events: a TLS refusal is stored in a task, after the handshake failed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(verify=station_context(root), headers=headers) as http:

        async def listed() -> list[dict[str, Any]] | None:
            answer = await http.get(
                f"https://127.0.0.1:{port}/api/v1/security-events", timeout=WAIT
            )
            assert answer.status_code == 200, answer.text
            events: list[dict[str, Any]] = answer.json()
            return events if len(events) >= wait_for else None

        found = await until(listed, f"{wait_for} security event(s) listed")
    return found


@pytest.mark.parametrize("tls", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.socket
async def test_TC_A_08_CSMS_a_certificate_from_an_unknown_ca_is_a_security_event(
    cloud: Cloud, root: Path, tls: ssl.TLSVersion
) -> None:
    """A00.FR.407: the handshake fails; A00.FR.408: InvalidChargingStationCertificate is
    logged with OpenSSL's reason and where the station came from."""
    stranger = CertificateAuthority.create("Stranger Root CA", organization="Stranger")
    context = station_context(root, stranger.issue_client("CP3", organization="PlugStream"))
    context.maximum_version = tls
    with pytest.raises(REFUSED):
        await connects(cloud.port, "CP3", context)
    [event] = await security_events(cloud.port, root, wait_for=1)
    assert event["type"] == "InvalidChargingStationCertificate"
    assert event["source"] == "gateway"
    assert event["station_id"] == ""  # TLS stopped it before it could say who it is
    assert "unable to get local issuer certificate" in event["tech_info"]
    assert "peer 127.0.0.1:" in event["tech_info"]
    assert cloud.gateway.security_events[-1].type == "InvalidChargingStationCertificate"
    assert not cloud.gateway.is_connected("CP3")


@pytest.mark.socket
async def test_TC_A_08_CSMS_an_expired_certificate_is_a_security_event(
    cloud: Cloud, root: Path, ca: CertificateAuthority
) -> None:
    context = station_context(root, expired_client(ca, "CP3"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(REFUSED):
        await connects(cloud.port, "CP3", context)
    [event] = await security_events(cloud.port, root, wait_for=1)
    assert event["type"] == "InvalidChargingStationCertificate"
    assert "certificate has expired" in event["tech_info"]


@pytest.mark.socket
async def test_TC_A_06_CSMS_tls_1_1_is_refused_and_recorded_then_tls_1_2_connects(
    cloud: Cloud, root: Path
) -> None:
    """A00.FR.418: the CSMS terminates a TLS 1.1 connection (logged as InvalidTLSVersion);
    the same station then connects with TLS 1.2 (the rest of TC_A_06)."""
    old = station_context(root)
    with warnings.catch_warnings():  # the client is old on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(REFUSED):
        await connects(cloud.port, "CP2", old, basic_auth("CP2", PASSWORD))
    [event] = await security_events(cloud.port, root, wait_for=1)
    assert event["type"] == "InvalidTLSVersion"
    assert "below 1.2" in event["tech_info"]

    current = station_context(root)
    current.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await connects(cloud.port, "CP2", current, basic_auth("CP2", PASSWORD)) == 101


@pytest.mark.socket
async def test_only_unlisted_cipher_suites_is_an_invalid_tls_cipher_suite_event(
    cloud: Cloud, root: Path
) -> None:
    """A00.FR.425: a station offering none of the spec's TLS 1.2 suites is refused."""
    unlisted = station_context(root)
    unlisted.maximum_version = ssl.TLSVersion.TLSv1_2
    unlisted.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA256")
    with pytest.raises(REFUSED):
        await connects(cloud.port, "CP2", unlisted, basic_auth("CP2", PASSWORD))
    [event] = await security_events(cloud.port, root, wait_for=1)
    assert event["type"] == "InvalidTLSCipherSuite"
    assert "NO_SHARED_CIPHER" in event["tech_info"]


@pytest.mark.socket
async def test_TC_A_07_CSMS_good_handshakes_record_nothing(
    cloud: Cloud, root: Path, ca: CertificateAuthority
) -> None:
    """Profile 2 without a client certificate and profile 3 with a good one connect as
    before; neither, nor plain HTTP sent to the TLS port, is a security event."""
    assert (
        await connects(cloud.port, "CP2", station_context(root), basic_auth("CP2", PASSWORD)) == 101
    )
    good = station_context(root, ca.issue_client("CP3", organization="PlugStream"))
    assert await connects(cloud.port, "CP3", good) == 101
    reader, writer = await asyncio.open_connection("127.0.0.1", cloud.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.read(), WAIT)  # the server hangs up
    writer.close()
    # A refused login is stored before its 401 is answered, in the store's order: after
    # anything the connections above made the cloud keep. Only it is there.
    assert await connects(cloud.port, "CP2", station_context(root), basic_auth("CP2", "x")) == 401
    events = await security_events(cloud.port, root)
    assert [(e["station_id"], e["type"]) for e in events] == [("CP2", "FailedToAuthenticate")]
    assert [e.station_id for e in cloud.gateway.security_events] == ["CP2"]


@pytest.mark.socket
async def test_repeated_refusals_from_one_address_are_recorded_once(
    cloud: Cloud, root: Path
) -> None:
    """A scanner, or a station retrying with its bad certificate, costs one row per
    minute and reason, not one per attempt."""
    stranger = CertificateAuthority.create("Stranger Root CA", organization="Stranger")
    context = station_context(root, stranger.issue_client("CP3"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    for _ in range(5):
        with pytest.raises(REFUSED):
            await connects(cloud.port, "CP3", context)
    # A refused login is stored before its 401 is answered, in the store's order: after
    # the refusals above. Newest first, it comes before them.
    assert await connects(cloud.port, "CP2", station_context(root), basic_auth("CP2", "x")) == 401
    login, *events = await security_events(cloud.port, root, wait_for=2)
    assert (login["station_id"], login["type"]) == ("CP2", "FailedToAuthenticate")
    assert [e["type"] for e in events] == ["InvalidChargingStationCertificate"]


@pytest.mark.unit
def test_refusal_limiter_keeps_one_per_key_per_window_and_counts_the_rest() -> None:
    limiter = RefusalLimiter(window=60.0, max_keys=2)
    key = ("10.0.0.1", "InvalidTLSVersion", "x")
    assert limiter.admit(key, 0.0) == 0
    assert limiter.admit(key, 1.0) is None
    assert limiter.admit(key, 59.0) is None
    assert limiter.admit(("10.0.0.2", "InvalidTLSVersion", "x"), 2.0) == 0
    assert limiter.admit(("10.0.0.3", "InvalidTLSVersion", "x"), 3.0) is None  # full
    assert limiter.admit(key, 61.0) == 2  # the next record says how many were not
    assert limiter.suppressed == 3


@pytest.mark.socket
async def test_cloud_serve_on_uvloop_records_a_refused_certificate(
    tmp_path: Path, root: Path, ca: CertificateAuthority
) -> None:
    """``plugstream cloud serve`` runs on uvloop, whose SSL protocol also builds its
    connections with the context's ``sslobject_class``: the refusal is recorded there
    too, without the peer address (uvloop does not expose it)."""
    port = free_port()
    proc = subprocess.Popen(
        cloud_serve_argv(
            port,
            tmp_path / "sub.db",
            *["--tls-cert", str(tmp_path / "server.pem")],
            *["--tls-key", str(tmp_path / "server.key")],
            *["--tls-client-ca", str(root), "--tls-client-organization", "PlugStream"],
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PLUGSTREAM_API_TOKEN": "t0ken"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), WAIT)
        assert line.startswith(f"{READY} https://127.0.0.1:{port}"), line
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}",
            verify=station_context(root),
            headers={"Authorization": "Bearer t0ken"},
        ) as http:
            put = await http.put(
                "/api/v1/stations/SUB3", json={"security_profile": 3}, timeout=WAIT
            )
            assert put.status_code in (200, 201), put.text
        good = station_context(root, ca.issue_client("SUB3", organization="PlugStream"))
        assert await connects(port, "SUB3", good) == 101
        stranger = CertificateAuthority.create("Stranger Root CA", organization="Stranger")
        forged = station_context(root, stranger.issue_client("SUB3", organization="PlugStream"))
        forged.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(REFUSED):
            await connects(port, "SUB3", forged)
        [event] = await security_events(port, root, wait_for=1, token="t0ken")
        assert (event["type"], event["source"]) == ("InvalidChargingStationCertificate", "gateway")
        assert "unable to get local issuer certificate" in event["tech_info"]
        assert "peer unknown" in event["tech_info"]  # as uvloop, not asyncio, served it
    finally:
        stop_process(proc)
