"""Our own Station201 and PlugStream Cloud, end to end through the V2G certificate: the
station installs the cloud's V2G root (from the REST API), gets its SECC certificate
signed by the V2G sub-CA (SignCertificate / CertificateSigned V2GCertificate), asks the
cloud for its status (GetCertificateStatus, answered by the cloud's OCSP responder), and
sees it revoked once the operator revokes it."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from plugstream.pki.ocsp import hash_data_of
from plugstream.pki.v2g import init_v2g
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station201 import Station201
from tests.cloud.v2g_station import api, cloud_with_pki
from tests.support import Cloud, free_port, until

pytestmark = pytest.mark.socket


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    port = free_port()
    init_v2g(tmp_path / "pki", "PlugStream E2E", ocsp_url=f"http://127.0.0.1:{port}/ocsp")
    async with cloud_with_pki(tmp_path, tmp_path / "pki", port=port) as served:
        yield served


@pytest.fixture
async def station(tmp_path: Path, cloud: Cloud) -> AsyncIterator[Station201]:
    made = Station201(
        "PS-V2G-1",
        PLUGSTREAM_7,
        tmp_path / "station",
        backoff=ReconnectBackoff(0.2, 0.1, 1, random.Random(3)),
        call_timeout=5.0,
    )
    task = asyncio.get_running_loop().create_task(made.run(f"ws://127.0.0.1:{cloud.port}/ocpp"))
    try:
        yield made
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        made.close()


async def test_our_station_gets_a_v2g_certificate_and_its_ocsp_status_from_the_cloud(
    cloud: Cloud, station: Station201
) -> None:
    async with api(cloud) as client:
        root_pem = (await client.get("/api/v1/certificates/v2g-root")).content
        station.certificates.add_root("V2GRootCertificate", root_pem)
        await until(lambda: station.online, "the station online")

        assert await station.v2g_certificates.request() == "Accepted"
        chain = await until(station.v2g_certificates.chain, "the V2G certificate installed")
        leaf, sub_ca = chain
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "PS-V2G-1"
        assert not station.v2g_certificates.pending_key_path.exists()
        issued = (await client.get("/api/v1/certificates/issued?station_id=PS-V2G-1")).json()
        assert [i["serial_number"] for i in issued] == [format(leaf.serial_number, "x")]

        async def status() -> ocsp.OCSPCertStatus:
            request = {
                **hash_data_of(leaf, sub_ca),
                "responderURL": f"http://127.0.0.1:{cloud.port}/ocsp",
            }
            answer = await station.call("GetCertificateStatus", {"ocspRequestData": request})
            assert answer["status"] == "Accepted"
            der = base64.b64decode(answer["ocspResult"])
            return ocsp.load_der_ocsp_response(der).certificate_status

        assert await status() is ocsp.OCSPCertStatus.GOOD
        serial = format(leaf.serial_number, "x")
        revoked = await client.post(
            f"/api/v1/certificates/issued/{serial}/revoke", json={"reason": "superseded"}
        )
        assert revoked.status_code == 200
        assert await status() is ocsp.OCSPCertStatus.REVOKED
        assert station.online  # a V2G certificate never touches the OCPP connection


async def test_our_station_refuses_a_v2g_chain_for_another_key(
    cloud: Cloud, station: Station201
) -> None:
    await until(lambda: station.online, "the station online")
    assert await station.v2g_certificates.request() == "Accepted"
    chain = await until(station.v2g_certificates.chain, "the V2G certificate installed")
    station.v2g_certificates.make_csr()  # a new pending key: the old chain is not its
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    assert station.v2g_certificates.install(pem.decode()) == (
        "the certificate is not for the pending key"
    )
