"""OCPP security profiles 2 (TLS + Basic auth) and 3 (mutual TLS) on PlugStream Cloud, over
real TLS on loopback: certificates from the project's own CA, stations as plain
``websockets`` clients."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from plugstream.cloud.serve import OCPP_TLS12_CIPHERS, READY
from plugstream.pki.authority import CertificateAuthority
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

pytestmark = pytest.mark.socket

V201 = "ocpp2.0.1"
PASSWORD = "correct-horse-battery-staple"


@dataclass
class Pki:
    ca: CertificateAuthority
    dir: Path
    root: Path

    def client(
        self,
        name: str,
        common_name: str,
        ca: CertificateAuthority | None = None,
        organization: str = "PlugStream",
    ) -> ssl.SSLContext:
        """A station's TLS context: trusts the CSMS root, presents a client certificate."""
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        (ca or self.ca).issue_client(common_name, organization=organization).write(cert, key)
        context = self.trusting()
        context.load_cert_chain(cert, key)
        return context

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority.create()
    root = tmp_path / "root.pem"
    ca.write_root(root)
    ca.issue_server().write(tmp_path / "server.pem", tmp_path / "server.key")
    return Pki(ca, tmp_path, root)


@pytest.fixture
async def cloud(tmp_path: Path, pki: Pki) -> AsyncIterator[Cloud]:
    async with running_cloud(
        tmp_path,
        tls_cert=tmp_path / "server.pem",
        tls_key=tmp_path / "server.key",
        tls_client_ca=pki.root,
        tls_client_organization="PlugStream",
    ) as cloud:
        await cloud.store.stations.register("CP2", password=PASSWORD, security_profile=2)
        await cloud.store.stations.register("CP3", security_profile=3)
        # Profile 3 with a password on record: the password alone must not let it in.
        await cloud.store.stations.register("CP3P", password=PASSWORD, security_profile=3)
        yield cloud


async def connects(
    cloud: Cloud, station_id: str, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> int:
    """101 when the station got its WebSocket, else the HTTP status it was refused with."""
    try:
        async with connect(
            f"wss://127.0.0.1:{cloud.port}/ocpp/{station_id}",
            subprotocols=[V201],  # type: ignore[list-item]
            ssl=context,
            additional_headers=headers,
            open_timeout=WAIT,
        ) as ws:
            assert ws.subprotocol == V201
            await until(lambda: cloud.gateway.is_connected(station_id), f"{station_id} connected")
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_profile_2_needs_the_station_password(cloud: Cloud, pki: Pki) -> None:
    assert await connects(cloud, "CP2", pki.trusting(), basic_auth("CP2", PASSWORD)) == 101
    assert await connects(cloud, "CP2", pki.trusting(), basic_auth("CP2", PASSWORD + "x")) == 401
    assert await connects(cloud, "CP2", pki.trusting()) == 401
    # A client certificate for the id does not stand in for the password of a profile-2 station.
    assert await connects(cloud, "CP2", pki.client("cp2", "CP2")) == 401
    assert cloud.gateway.failed_logins["CP2"] == 3
    async with httpx.AsyncClient(verify=pki.trusting()) as http:
        station = await http.get(
            f"https://127.0.0.1:{cloud.port}/api/v1/stations/CP2", timeout=WAIT
        )
    assert station.json()["failed_logins"] == 3


async def test_profile_3_admits_a_certificate_whose_cn_is_the_station_id(
    cloud: Cloud, pki: Pki
) -> None:
    assert await connects(cloud, "CP3", pki.client("cp3", "CP3")) == 101
    assert cloud.gateway.failed_logins["CP3"] == 0


async def test_profile_3_refuses_another_stations_certificate(cloud: Cloud, pki: Pki) -> None:
    assert await connects(cloud, "CP3", pki.client("other", "CP-OTHER")) == 401
    event = cloud.gateway.security_events[-1]
    assert (event.station_id, event.type) == ("CP3", "InvalidChargingStationCertificate")
    assert "CP-OTHER" in event.tech_info
    # what an operator sees: the refusal in the REST API, newest first
    async with httpx.AsyncClient(verify=pki.trusting()) as http:
        listed = await http.get(
            f"https://127.0.0.1:{cloud.port}/api/v1/security-events?limit=1", timeout=WAIT
        )
    assert listed.status_code == 200
    [shown] = listed.json()
    assert (shown["station_id"], shown["type"]) == ("CP3", "InvalidChargingStationCertificate")
    assert "CP-OTHER" in shown["tech_info"] and shown["timestamp"].endswith("Z")


async def test_profile_3_refuses_a_certificate_of_another_organization(
    cloud: Cloud, pki: Pki
) -> None:
    # Signed by the CSMS root for this id, but not owned by the operator (A00.FR.404).
    assert await connects(cloud, "CP3", pki.client("cp3o", "CP3", organization="Acme")) == 401
    assert cloud.gateway.security_events[-1].tech_info == "certificate O 'Acme'"


async def test_profile_3_refuses_basic_auth_without_a_certificate(cloud: Cloud, pki: Pki) -> None:
    assert await connects(cloud, "CP3", pki.trusting()) == 401
    assert await connects(cloud, "CP3P", pki.trusting(), basic_auth("CP3P", PASSWORD)) == 401
    assert [e.tech_info for e in cloud.gateway.security_events] == [
        "no client certificate",
        "no client certificate",
    ]


@pytest.mark.parametrize("tls", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_certificate_from_an_unknown_ca_fails_the_handshake(
    cloud: Cloud, pki: Pki, tls: ssl.TLSVersion
) -> None:
    stranger = CertificateAuthority.create("Stranger Root CA", organization="Stranger")
    context = pki.client("forged", "CP3", ca=stranger)
    context.maximum_version = tls
    # The server's TLS refuses the chain (an alert, then the end of the stream): the client
    # sees its handshake fail (TLS 1.2) or, as it had finished its part of a TLS 1.3
    # handshake, the stream end before the WebSocket handshake's answer.
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage)):
        await connects(cloud, "CP3", context)
    # The gateway never saw the station: TLS stopped it first.
    assert cloud.gateway.failed_logins["CP3"] == 0
    assert not cloud.gateway.is_connected("CP3")


async def test_tls_1_1_is_refused(cloud: Cloud, pki: Pki) -> None:
    context = pki.trusting()
    with warnings.catch_warnings():  # the client is old on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    # The server answers the TLS 1.1 ClientHello with an alert and ends the stream.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await connects(cloud, "CP2", context, basic_auth("CP2", PASSWORD))


async def test_tls_1_2_with_only_the_specs_suites(cloud: Cloud, pki: Pki) -> None:
    unlisted = pki.trusting()
    unlisted.maximum_version = ssl.TLSVersion.TLSv1_2
    unlisted.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA256")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await connects(cloud, "CP2", unlisted, basic_auth("CP2", PASSWORD))
    for suite in OCPP_TLS12_CIPHERS[:2]:  # the server's key is ECDSA
        listed = pki.trusting()
        listed.maximum_version = ssl.TLSVersion.TLSv1_2
        listed.set_ciphers(suite)
        async with connect(
            f"wss://127.0.0.1:{cloud.port}/ocpp/CP2",
            subprotocols=[V201],  # type: ignore[list-item]
            ssl=listed,
            additional_headers=basic_auth("CP2", PASSWORD),
            open_timeout=WAIT,
        ) as ws:
            assert ws.transport.get_extra_info("ssl_object").cipher()[0] == suite


async def test_cloud_serve_with_tls_client_ca_admits_profile_3_stations(
    tmp_path: Path, pki: Pki
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        cloud_serve_argv(
            port,
            tmp_path / "sub.db",
            *["--tls-cert", str(tmp_path / "server.pem")],
            *["--tls-key", str(tmp_path / "server.key")],
            *["--tls-client-ca", str(pki.root), "--tls-client-organization", "PlugStream"],
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
            verify=pki.trusting(),
            headers={"Authorization": "Bearer t0ken"},
        ) as http:
            put = await http.put(
                "/api/v1/stations/SUB3", json={"security_profile": 3}, timeout=WAIT
            )
            assert put.status_code in (200, 201), put.text
            url = f"wss://127.0.0.1:{port}/ocpp/SUB3"
            async with connect(url, subprotocols=[V201], ssl=pki.client("sub3", "SUB3")) as ws:  # type: ignore[list-item]
                assert ws.subprotocol == V201
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, subprotocols=[V201], ssl=pki.client("x", "SUB4")):  # type: ignore[list-item]
                    pass
            assert refused.value.response.status_code == 401
            station = await http.get("/api/v1/stations/SUB3", timeout=WAIT)
            assert station.json()["failed_logins"] == 1
    finally:
        stop_process(proc)
