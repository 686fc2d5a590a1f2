"""ISO 15118 certificates on PlugStream Cloud (C07, M01, M02, M06, A02 V2G): the OCTT's CSMS
test cases played by a bare 2.0.1 station against a real cloud on loopback, whose V2G PKI
and OCSP responder answer them, and a contract certificate pool (tests/peers) that answers
the EV's certificate requests; the responder on its own; the REST routes of issued and
revoked certificates; and their storage."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from plugstream.cloud.certificates.contract_pool import (
    ContractPool,
    ContractPoolFailure,
    forward,
)
from plugstream.cloud.certificates.v2g import issued_record
from plugstream.cloud.storage import IdTokenRecord, Store
from plugstream.cloud.storage.certificate_status import IssuedCertificate as IssuedRow
from plugstream.pki.authority import CertificateAuthority, IssuedCertificate
from plugstream.pki.ocsp import hash_data_of
from plugstream.pki.v2g import V2GAuthority, init_v2g, ocsp_url_of
from tests.cloud.v2g_station import api, cloud_with_pki, station201
from tests.peers.contract_pool import ContractCertificatePool, contract_pool
from tests.support import Cloud, free_port, running_cloud, until

EMAID = "DEPSTC1234567X"
NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


@dataclass
class V2G:
    cloud: Cloud
    authority: V2GAuthority
    ocsp_url: str

    async def contract(self, emaid: str = EMAID, *, recorded: bool = True) -> IssuedCertificate:
        """A contract certificate of the sub-CA (CN the eMAID), known to the responder."""
        issued = self.authority.issue_contract(emaid, ocsp_url=self.ocsp_url)
        if recorded:
            await self.cloud.store.certificate_status.record_issued(
                issued_record(
                    issued.certificate,
                    self.authority.sub_ca.certificate,
                    "ContractCertificate",
                    None,
                    dt.datetime.now(dt.UTC),
                )
            )
        return issued

    def hash_data(self, cert: x509.Certificate, issuer: x509.Certificate) -> dict[str, str]:
        return {**hash_data_of(cert, issuer), "responderURL": self.ocsp_url}


@pytest.fixture
async def v2g(tmp_path: Path) -> AsyncIterator[V2G]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/ocsp"
    authority = init_v2g(tmp_path / "pki", "PlugStream Test CPO", ocsp_url=url)
    async with cloud_with_pki(tmp_path, tmp_path / "pki", port=port) as cloud:
        await cloud.store.id_tokens.put(IdTokenRecord(EMAID, token_type="eMAID"))
        yield V2G(cloud, authority, url)


def _v2g_csr() -> tuple[str, ec.EllipticCurvePrivateKey]:
    """The CSR of TC_A_12_CSMS: C, O, OU and CN of the station's SECC."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PlugStream Test CPO"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "SECC"),
            x509.NameAttribute(NameOID.COMMON_NAME, "NLPSTE1234"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def _verify_signed_by(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    public = issuer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert response.signature_hash_algorithm is not None
    public.verify(
        response.signature,
        response.tbs_response_bytes,
        ec.ECDSA(response.signature_hash_algorithm),
    )


async def _ask(client: httpx.AsyncClient, cert: x509.Certificate, issuer: x509.Certificate) -> Any:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    answer = await client.post(
        "/ocsp",
        content=request.public_bytes(serialization.Encoding.DER),
        headers={"Content-Type": "application/ocsp-request"},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(answer.content)


# -- A02 / TC_A_12: a V2G certificate signed ---------------------------------------------


@pytest.mark.socket
async def test_tc_a_12_csms_v2g_certificate_is_signed_by_the_v2g_sub_ca(v2g: V2G) -> None:
    async with station201(v2g.cloud, "CS-A12") as cs, api(v2g.cloud) as client:
        triggered = await client.post("/api/v1/stations/CS-A12/certificates/renew-v2g")
        assert triggered.status_code == 202, triggered.text
        assert cs.calls("TriggerMessage") == [{"requestedMessage": "SignV2GCertificate"}]

        csr, key = _v2g_csr()
        answer = await cs.call("SignCertificate", {"csr": csr, "certificateType": "V2GCertificate"})
        assert answer["status"] == "Accepted"
        signed = await until(lambda: cs.calls("CertificateSigned"), "CertificateSigned")

        assert signed[0]["certificateType"] == "V2GCertificate"
        chain = x509.load_pem_x509_certificates(signed[0]["certificateChain"].encode())
        leaf, sub_ca = chain
        assert leaf.public_key() == key.public_key()
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "NLPSTE1234"
        leaf.verify_directly_issued_by(v2g.authority.sub_ca.certificate)
        sub_ca.verify_directly_issued_by(v2g.authority.root.certificate)
        assert ocsp_url_of(leaf) == v2g.ocsp_url
        # kept, so that the responder vouches for it
        issued = (await client.get("/api/v1/certificates/issued?station_id=CS-A12")).json()
        assert [i["serial_number"] for i in issued] == [format(leaf.serial_number, "x")]
        response = await _ask(client, leaf, sub_ca)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


@pytest.mark.socket
async def test_a_v2g_csr_with_an_rsa_key_is_rejected_and_nothing_sent(v2g: V2G) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "X")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    async with station201(v2g.cloud, "CS-RSA") as cs:
        answer = await cs.call("SignCertificate", {"csr": csr, "certificateType": "V2GCertificate"})
        assert answer["status"] == "Rejected"
        assert answer["statusInfo"]["reasonCode"] == "InvalidCSR"
        heartbeat = await cs.call("Heartbeat", {})  # the answer to the CSR is behind us
        assert heartbeat["currentTime"]
        assert cs.calls("CertificateSigned") == []


# -- M06 / TC_M_24: GetCertificateStatus --------------------------------------------------


@pytest.mark.socket
async def test_tc_m_24_csms_get_certificate_status_of_the_sub_ca(v2g: V2G) -> None:
    sub_ca, root = v2g.authority.sub_ca.certificate, v2g.authority.root.certificate
    async with station201(v2g.cloud, "CS-M24") as cs:
        for _ in range(2):  # "one or more subsequent" requests
            answer = await cs.call(
                "GetCertificateStatus", {"ocspRequestData": v2g.hash_data(sub_ca, root)}
            )
            assert answer["status"] == "Accepted"
            response = ocsp.load_der_ocsp_response(base64.b64decode(answer["ocspResult"]))
            assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
            assert response.serial_number == sub_ca.serial_number
            assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
            _verify_signed_by(response, root)


@pytest.mark.socket
async def test_get_certificate_status_fails_when_the_responder_does_not_answer(
    v2g: V2G,
) -> None:
    sub_ca, root = v2g.authority.sub_ca.certificate, v2g.authority.root.certificate
    nobody = f"http://127.0.0.1:{free_port()}/ocsp"
    async with station201(v2g.cloud, "CS-M06") as cs:
        answer = await cs.call(
            "GetCertificateStatus",
            {"ocspRequestData": {**v2g.hash_data(sub_ca, root), "responderURL": nobody}},
        )
        assert answer["status"] == "Failed"  # M06.FR.04
        assert "ocspResult" not in answer
        not_http = {**v2g.hash_data(sub_ca, root), "responderURL": "file:///etc/passwd"}
        answer = await cs.call("GetCertificateStatus", {"ocspRequestData": not_http})
        assert answer["status"] == "Failed"


# -- M01, M02 / TC_M_26, TC_M_28: Get15118EVCertificate ----------------------------------

SCHEMA_15118_2 = "urn:iso:15118:2:2013:MsgDef"
#: an EV's EXI CertificateInstallationReq / CertificateUpdateReq, as the station relays it
EXI_INSTALL = base64.b64encode(b"\x80\x98\x02\x10" + bytes(range(64)) * 8).decode()
EXI_UPDATE = base64.b64encode(b"\x80\x98\x02\x11" + bytes(range(64, 128)) * 8).decode()
#: what the mobility operator signed for that EV and deposited at the pool
EXI_INSTALL_RES = base64.b64encode(b"\x80\x98\x02\x20" + bytes(range(256)) * 16).decode()
EXI_UPDATE_RES = base64.b64encode(b"\x80\x98\x02\x21" + bytes(range(255, -1, -1)) * 16).decode()


def _get_15118(action: str, exi: str) -> dict[str, str]:
    return {"iso15118SchemaVersion": SCHEMA_15118_2, "action": action, "exiRequest": exi}


@contextlib.asynccontextmanager
async def _pool_cloud(
    tmp_path: Path, pool: ContractCertificatePool, **overrides: Any
) -> AsyncIterator[Cloud]:
    """A cloud that forwards Get15118EVCertificate to ``pool``, registering stations."""
    async with running_cloud(
        tmp_path, auto_register_unsecured=True, contract_pool_url=pool.url, **overrides
    ) as cloud:
        yield cloud


@pytest.mark.socket
async def test_tc_m_26_csms_certificate_installation_ev_success(tmp_path: Path) -> None:
    with contract_pool() as pool:
        pool.deposit(EXI_INSTALL, EXI_INSTALL_RES)
        async with _pool_cloud(tmp_path, pool) as cloud, station201(cloud, "CS-M26") as cs:
            answer = await cs.call("Get15118EVCertificate", _get_15118("Install", EXI_INSTALL))
            assert answer["status"] == "Accepted"
            assert answer["exiResponse"] == EXI_INSTALL_RES  # the raw answer, base64
            assert "statusInfo" not in answer
        assert [r.body for r in pool.received] == [_get_15118("Install", EXI_INSTALL)]
        assert pool.received[0].authorization is None  # no token configured


@pytest.mark.socket
async def test_tc_m_28_csms_certificate_update_ev_success(tmp_path: Path) -> None:
    with contract_pool() as pool:
        pool.deposit(EXI_UPDATE, EXI_UPDATE_RES)
        async with _pool_cloud(tmp_path, pool) as cloud, station201(cloud, "CS-M28") as cs:
            answer = await cs.call("Get15118EVCertificate", _get_15118("Update", EXI_UPDATE))
            assert answer["status"] == "Accepted"
            assert answer["exiResponse"] == EXI_UPDATE_RES
        assert [r.body for r in pool.received] == [_get_15118("Update", EXI_UPDATE)]


@pytest.mark.socket
@pytest.mark.parametrize("action", ["Install", "Update"])
async def test_get_15118_ev_certificate_without_a_contract_pool_is_failed_with_the_reason(
    v2g: V2G, action: str
) -> None:
    """Answered at once, never NotSupported: the EV is told FAILED within its 5 s."""
    async with station201(v2g.cloud, f"CS-NOPOOL-{action}") as cs:
        answer = await cs.call("Get15118EVCertificate", _get_15118(action, EXI_INSTALL))
        assert answer["status"] == "Failed"
        assert answer["exiResponse"] == ""
        assert answer["statusInfo"]["reasonCode"] == "NoContractPool"
        assert "no contract certificate pool" in answer["statusInfo"]["additionalInfo"]


@pytest.mark.socket
async def test_get_15118_ev_certificate_fails_within_the_timeout_of_a_pool_that_holds_it(
    tmp_path: Path,
) -> None:
    timeout = 1.0
    with contract_pool() as pool:
        pool.deposit(EXI_INSTALL, EXI_INSTALL_RES)  # it has the answer, but is slow
        pool.hold = True
        async with (
            _pool_cloud(tmp_path, pool, contract_pool_timeout=timeout) as cloud,
            station201(cloud, "CS-SLOWPOOL") as cs,
        ):
            loop = asyncio.get_running_loop()
            sent = loop.time()
            call = asyncio.create_task(
                cs.call("Get15118EVCertificate", _get_15118("Install", EXI_INSTALL))
            )
            await until(lambda: pool.held == 1 or call.done(), "the request held by the pool")
            answer = await call
            took = loop.time() - sent
            assert pool.held == 1  # the pool still holds it: the answer did not wait
            assert answer["status"] == "Failed"
            assert answer["statusInfo"]["reasonCode"] == "PoolTimeout"
            assert "1 s" in answer["statusInfo"]["additionalInfo"]
            assert timeout <= took < timeout + 2.0  # well inside the EV's 5 s
            assert (await cs.call("Heartbeat", {}))["currentTime"]  # the station is served


@pytest.mark.socket
async def test_get_15118_ev_certificate_fails_when_the_pool_fails_or_has_nothing(
    tmp_path: Path,
) -> None:
    with contract_pool() as pool:
        pool.deposit(EXI_INSTALL, EXI_INSTALL_RES)
        async with _pool_cloud(tmp_path, pool) as cloud, station201(cloud, "CS-POOL5XX") as cs:
            for status in (500, 503):
                pool.fail_with = status
                answer = await cs.call("Get15118EVCertificate", _get_15118("Install", EXI_INSTALL))
                assert answer["status"] == "Failed"
                assert answer["exiResponse"] == ""
                info = answer["statusInfo"]
                assert info["reasonCode"] == "PoolError"
                assert f"HTTP {status}" in info["additionalInfo"]
                assert "bad day" in info["additionalInfo"]  # what the pool said
            pool.fail_with = None
            answer = await cs.call("Get15118EVCertificate", _get_15118("Update", EXI_UPDATE))
            assert answer["status"] == "Failed"  # nothing deposited for this EV: 404
            assert answer["statusInfo"]["reasonCode"] == "NotFound"
            answer = await cs.call("Get15118EVCertificate", _get_15118("Install", EXI_INSTALL))
            assert answer["status"] == "Accepted"  # the pool is well again
        assert len(pool.received) == 4


@pytest.mark.socket
async def test_get_15118_ev_certificate_fails_when_the_pool_is_unreachable(
    tmp_path: Path,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/v1/ccp/certificates"
    async with (
        running_cloud(tmp_path, auto_register_unsecured=True, contract_pool_url=nobody) as cloud,
        station201(cloud, "CS-NOBODY") as cs,
    ):
        answer = await cs.call("Get15118EVCertificate", _get_15118("Install", EXI_INSTALL))
        assert answer["status"] == "Failed"
        assert answer["statusInfo"]["reasonCode"] == "PoolUnreachable"
        assert "refused" in answer["statusInfo"]["additionalInfo"].lower()


@pytest.mark.socket
async def test_get_15118_ev_certificate_from_a_tls_pool_verified_with_our_pki(
    tmp_path: Path,
) -> None:
    """The pool's certificate is checked against the configured CA (the project PKI's
    root), the token goes along as a bearer token; the system's store does not know
    that CA, so without it the pool is refused."""
    ca = CertificateAuthority.create("PlugStream Test Pool Root")
    pki = tmp_path / "pool-pki"
    pki.mkdir()
    ca.write_root(pki / "root.pem")
    ca.issue_server().write(pki / "pool.pem", pki / "pool.key")  # localhost, 127.0.0.1
    with contract_pool(tls=(pki / "pool.pem", pki / "pool.key"), token="s3cret-pool") as pool:
        assert pool.url.startswith("https://")
        pool.deposit(EXI_INSTALL, EXI_INSTALL_RES)
        async with (
            _pool_cloud(
                tmp_path,
                pool,
                contract_pool_ca=pki / "root.pem",
                contract_pool_token="s3cret-pool",
            ) as cloud,
            station201(cloud, "CS-TLSPOOL") as cs,
        ):
            answer = await cs.call("Get15118EVCertificate", _get_15118("Install", EXI_INSTALL))
            assert answer["status"] == "Accepted"
            assert answer["exiResponse"] == EXI_INSTALL_RES
        assert [r.authorization for r in pool.received] == ["Bearer s3cret-pool"]

        stranger = CertificateAuthority.create("Someone Else")
        stranger.write_root(pki / "stranger.pem")
        for ca_file in (None, pki / "stranger.pem"):  # the system's store; another CA
            config = ContractPool(pool.url, token="s3cret-pool", ca_file=ca_file)
            with pytest.raises(ContractPoolFailure) as refused:
                await forward(config, SCHEMA_15118_2, "Install", EXI_INSTALL)
            assert refused.value.reason_code == "PoolUnreachable"
            assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        assert len(pool.received) == 1  # nothing was sent to a pool not verified
        wrong = ContractPool(pool.url, token="guess", ca_file=pki / "root.pem")
        with pytest.raises(ContractPoolFailure) as unauthorized:
            await forward(wrong, SCHEMA_15118_2, "Install", EXI_INSTALL)
        assert unauthorized.value.reason_code == "PoolError"
        assert "HTTP 401" in str(unauthorized.value)


# -- C07 / TC_C_50, TC_C_51, TC_C_52: Authorize with contract certificates ----------------


def _tx_authorized(emaid: str) -> dict[str, Any]:
    return {
        "eventType": "Started",
        "timestamp": dt.datetime.now(dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "TX-C50"},
        "idToken": {"idToken": emaid, "type": "eMAID"},
        "evse": {"id": 1, "connectorId": 1},
    }


@pytest.mark.socket
async def test_tc_c_50_csms_authorize_with_certificate_hash_data_accepted(v2g: V2G) -> None:
    contract = await v2g.contract()
    sub_ca, root = v2g.authority.sub_ca.certificate, v2g.authority.root.certificate
    async with station201(v2g.cloud, "CS-C50") as cs:
        answer = await cs.call(
            "Authorize",
            {
                "idToken": {"idToken": EMAID, "type": "eMAID"},
                "iso15118CertificateHashData": [
                    v2g.hash_data(contract.certificate, sub_ca),
                    v2g.hash_data(sub_ca, root),
                ],
            },
        )
        assert answer["idTokenInfo"]["status"] == "Accepted"
        assert answer["certificateStatus"] == "Accepted"
        event = await cs.call("TransactionEvent", _tx_authorized(EMAID))
        assert event["idTokenInfo"]["status"] == "Accepted"


@pytest.mark.socket
async def test_tc_c_51_csms_authorize_with_a_revoked_contract_certificate(v2g: V2G) -> None:
    contract = await v2g.contract()
    serial = format(contract.certificate.serial_number, "x")
    async with api(v2g.cloud) as client:
        revoked = await client.post(
            f"/api/v1/certificates/issued/{serial}/revoke", json={"reason": "key_compromise"}
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revocation_reason"] == "key_compromise"
    sub_ca = v2g.authority.sub_ca.certificate
    async with station201(v2g.cloud, "CS-C51") as cs:
        answer = await cs.call(
            "Authorize",
            {
                "idToken": {"idToken": EMAID, "type": "eMAID"},
                "iso15118CertificateHashData": [v2g.hash_data(contract.certificate, sub_ca)],
            },
        )
        assert answer["certificateStatus"] == "CertificateRevoked"  # C07.FR.16
        assert answer["idTokenInfo"]["status"] == "Invalid"


@pytest.mark.socket
async def test_tc_c_52_csms_central_contract_validation_accepted(v2g: V2G) -> None:
    contract = await v2g.contract()
    chain = (contract.cert_pem + v2g.authority.sub_ca.cert_pem).decode()  # one sub-CA at least
    async with station201(v2g.cloud, "CS-C52") as cs:
        answer = await cs.call(
            "Authorize", {"idToken": {"idToken": EMAID, "type": "eMAID"}, "certificate": chain}
        )
        assert answer["idTokenInfo"]["status"] == "Accepted"
        assert answer["certificateStatus"] == "Accepted"
        event = await cs.call("TransactionEvent", _tx_authorized(EMAID))
        assert event["idTokenInfo"]["status"] == "Accepted"


@pytest.mark.socket
async def test_central_validation_refuses_a_chain_of_a_root_the_cloud_does_not_trust(
    v2g: V2G,
) -> None:
    stranger = V2GAuthority.create("Stranger", ocsp_url=v2g.ocsp_url)
    contract = stranger.issue_contract(EMAID, ocsp_url=v2g.ocsp_url)
    chain = (contract.cert_pem + stranger.sub_ca.cert_pem).decode()
    async with station201(v2g.cloud, "CS-C17") as cs:
        answer = await cs.call(
            "Authorize", {"idToken": {"idToken": EMAID, "type": "eMAID"}, "certificate": chain}
        )
        assert answer["certificateStatus"] == "CertChainError"  # C07.FR.17
        assert answer["idTokenInfo"]["status"] == "Invalid"


@pytest.mark.socket
async def test_a_valid_contract_of_a_blocked_emaid_is_contract_cancelled(v2g: V2G) -> None:
    await v2g.cloud.store.id_tokens.put(
        IdTokenRecord("DEPSTBLOCKED1", "Blocked", token_type="eMAID")
    )
    contract = await v2g.contract("DEPSTBLOCKED1")
    sub_ca = v2g.authority.sub_ca.certificate
    unknown = await v2g.contract("DEPSTUNKNOWN1", recorded=False)
    async with station201(v2g.cloud, "CS-C13") as cs:
        answer = await cs.call(
            "Authorize",
            {
                "idToken": {"idToken": "DEPSTBLOCKED1", "type": "eMAID"},
                "iso15118CertificateHashData": [v2g.hash_data(contract.certificate, sub_ca)],
            },
        )
        assert answer["certificateStatus"] == "ContractCancelled"  # C07.FR.13
        assert answer["idTokenInfo"]["status"] == "Blocked"
        answer = await cs.call(
            "Authorize",
            {
                "idToken": {"idToken": EMAID, "type": "eMAID"},
                "iso15118CertificateHashData": [v2g.hash_data(unknown.certificate, sub_ca)],
            },
        )
        assert answer["certificateStatus"] == "CertChainError"  # unknown to the responder
        assert answer["idTokenInfo"]["status"] == "Invalid"


# -- the OCSP responder ------------------------------------------------------------------


@pytest.mark.socket
async def test_the_ocsp_responder_answers_good_revoked_and_unknown(v2g: V2G) -> None:
    sub_ca = v2g.authority.sub_ca.certificate
    good = await v2g.contract("DEPSTGOOD0001")
    revoked = await v2g.contract("DEPSTREVOKED1")
    unknown = await v2g.contract("DEPSTUNKNOWN2", recorded=False)
    async with api(v2g.cloud) as client:
        serial = format(revoked.certificate.serial_number, "x")
        assert (
            await client.post(f"/api/v1/certificates/issued/{serial}/revoke", json={})
        ).is_success

        answer = await _ask(client, good.certificate, sub_ca)
        assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
        _verify_signed_by(answer, sub_ca)
        assert answer.responder_key_hash is not None
        assert (
            answer.next_update_utc is not None and answer.next_update_utc > answer.this_update_utc
        )

        answer = await _ask(client, revoked.certificate, sub_ca)
        assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason is x509.ReasonFlags.unspecified
        assert answer.revocation_time_utc is not None

        answer = await _ask(client, unknown.certificate, sub_ca)
        assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


@pytest.mark.socket
async def test_the_ocsp_responder_over_get_with_a_nonce(v2g: V2G) -> None:
    good = await v2g.contract("DEPSTGOOD0002")
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(good.certificate, v2g.authority.sub_ca.certificate, hashes.SHA256())
        .add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
        .build()
    )
    encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
    async with api(v2g.cloud) as client:
        got = await client.get(f"/ocsp/{httpx.URL(encoded).raw_path.decode()}")
        assert got.status_code == 200
        response = ocsp.load_der_ocsp_response(got.content)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        nonce = response.extensions.get_extension_for_class(x509.OCSPNonce).value
        assert nonce.nonce == b"0123456789abcdef"


@pytest.mark.socket
async def test_the_ocsp_responder_refuses_foreign_issuers_and_garbage(v2g: V2G) -> None:
    other = CertificateAuthority.create("Someone Else")
    leaf = other.issue_client("X")
    async with api(v2g.cloud) as client:
        response = await _ask(client, leaf.certificate, other.root.certificate)
        assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
        garbage = await client.post("/ocsp", content=b"not DER")
        assert garbage.status_code == 200
        parsed = ocsp.load_der_ocsp_response(garbage.content)
        assert parsed.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.socket
async def test_the_ocsp_responder_needs_no_token_but_the_revocation_does(tmp_path: Path) -> None:
    port = free_port()
    authority = init_v2g(tmp_path / "pki", "Op", ocsp_url=f"http://127.0.0.1:{port}/ocsp")
    async with (
        cloud_with_pki(tmp_path, tmp_path / "pki", port=port, api_token="s3cret") as cloud,
        api(cloud) as client,
    ):
        sub_ca, root = authority.sub_ca.certificate, authority.root.certificate
        response = await _ask(client, sub_ca, root)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        serial = format(sub_ca.serial_number, "x")
        refused = await client.post(f"/api/v1/certificates/issued/{serial}/revoke", json={})
        assert refused.status_code == 401
        revoked = await client.post(
            f"/api/v1/certificates/issued/{serial}/revoke",
            json={"reason": "ca_compromise"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert revoked.status_code == 200
        assert revoked.json()["certificate_type"] == "V2GSubCA"
        response = await _ask(client, sub_ca, root)
        assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_reason is x509.ReasonFlags.ca_compromise


# -- REST ----------------------------------------------------------------------------------


@pytest.mark.socket
async def test_the_rest_routes_of_issued_certificates(v2g: V2G) -> None:
    contract = await v2g.contract()
    serial = format(contract.certificate.serial_number, "x")
    async with api(v2g.cloud) as client:
        one = await client.get(f"/api/v1/certificates/issued/{serial.upper()}")
        assert one.status_code == 200 and one.json()["revoked_at"] is None
        assert (await client.get("/api/v1/certificates/issued/abc")).status_code == 404
        bad = await client.get("/api/v1/certificates/issued/not-hex")
        assert bad.status_code == 422 and "hex" in bad.json()["detail"]
        wrong = await client.post(
            f"/api/v1/certificates/issued/{serial}/revoke", json={"reason": "bored"}
        )
        assert wrong.status_code == 422
        assert (
            await client.post("/api/v1/certificates/issued/abc/revoke", json={})
        ).status_code == 404
        first = await client.post(
            f"/api/v1/certificates/issued/{serial}/revoke", json={"reason": "superseded"}
        )
        again = await client.post(
            f"/api/v1/certificates/issued/{serial}/revoke", json={"reason": "key_compromise"}
        )
        assert (
            again.json()["revocation_reason"] == "superseded" == first.json()["revocation_reason"]
        )
        listed = (await client.get("/api/v1/certificates/issued?revoked=true")).json()
        assert [i["serial_number"] for i in listed] == [serial]
        root = await client.get("/api/v1/certificates/v2g-root")
        assert root.status_code == 200
        assert x509.load_pem_x509_certificate(root.content) == v2g.authority.root.certificate
        offline = await client.post("/api/v1/stations/NOBODY/certificates/renew-v2g")
        assert offline.status_code in (404, 409)
        doc = (await client.get("/api/v1/openapi.json")).json()
        for path in (
            "/api/v1/certificates/issued",
            "/api/v1/certificates/issued/{serial}/revoke",
            "/api/v1/certificates/v2g-root",
            "/api/v1/stations/{station_id}/certificates/renew-v2g",
            "/ocsp",
        ):
            assert path in doc["paths"], path


# -- storage -------------------------------------------------------------------------------


@pytest.mark.unit
async def test_issued_certificates_are_kept_and_revoked_once(store: Store) -> None:
    row = IssuedRow(
        "ab" * 32, "1f", "V2GCertificate", "CN=X", "CS1", NOW, NOW + dt.timedelta(days=1)
    )
    await store.certificate_status.record_issued(row)
    await store.certificate_status.record_issued(row)  # again: one row
    assert await store.certificate_status.get("ab" * 32, 0x1F) == row
    assert await store.certificate_status.get("cd" * 32, 0x1F) is None
    later = NOW + dt.timedelta(hours=1)
    revoked = await store.certificate_status.revoke("ab" * 32, "001F", later, "key_compromise")
    assert revoked is not None and revoked.revoked_at == later
    again = await store.certificate_status.revoke(
        "ab" * 32, 0x1F, later + dt.timedelta(hours=1), "x"
    )
    assert (
        again is not None
        and again.revoked_at == later
        and again.revocation_reason == "key_compromise"
    )
    assert await store.certificate_status.revoke("ab" * 32, 0x2F, later, "x") is None
    assert [r.serial_number for r in await store.certificate_status.listing(revoked=True)] == ["1f"]
    assert await store.certificate_status.listing(revoked=False) == []
    assert await store.certificate_status.find("1F") == [again]


@pytest.mark.unit
def test_the_ocsp_url_is_the_pkis_else_the_public_urls(tmp_path: Path) -> None:
    from plugstream.cloud.certificates.v2g import ocsp_url, v2g_authority
    from plugstream.cloud.config import CloudConfig

    public = CloudConfig(public_url="https://cloud.example/", pki_dir=tmp_path / "pki")
    assert v2g_authority(public) is None  # no V2G PKI yet: V2G CSRs are refused
    assert ocsp_url(public) == "https://cloud.example/ocsp"
    assert ocsp_url(CloudConfig()) is None
    init_v2g(tmp_path / "pki", "Op", ocsp_url="http://ocsp.example/v2g")
    assert ocsp_url(public) == "http://ocsp.example/v2g"
    assert v2g_authority(public) is not None
