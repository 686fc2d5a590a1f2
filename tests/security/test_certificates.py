"""Certificate management end to end: a real PlugStream Cloud with a PKI (``PKIStore``,
as ``plugstream pki init`` makes it) serving OCPP over mutual TLS on loopback, and real
Station16 / Station201 at security profile 3.

- Remote renewal of the station's client certificate (2.0.1 part 2 A02, 1.6 Security
  Whitepaper A02; OCTT TC_A_11_CS / TC_A_11_CSMS style): the operator asks through the
  REST API, the station sends a CSR, the cloud signs it, the station installs the
  certificate and reconnects with it.
- CertificateSigned with a certificate that is not the station's (A02.FR.06/07,
  TC_A_14_CS): Rejected, nothing installed, a security event.
- InstallCertificate / GetInstalledCertificateIds / DeleteCertificate through the
  cloud's command API (M03, M04, M05; TC_M_*).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from plugstream.ocpp import Handlers, OcppEndpoint, OcppVersion, on
from plugstream.ocpp.datetimes import format_time
from plugstream.pki.authority import CertificateAuthority
from plugstream.pki.keystore import PKIStore
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT, hash_data, matches
from plugstream.station.certmgmt import (
    InvalidCertificate,
    check_certificate_chain,
    make_csr,
    renew_if_expiring,
    renewal_due,
)
from plugstream.station.clock import ManualClock
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.runtime import Station
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.support import Cloud, running_cloud, until

OPERATOR = "PlugStream"
TOKEN = "t0ken-for-the-certificate-tests"
VERSIONS = ["1.6", "2.0.1"]


@dataclass
class Setup:
    pki: PKIStore
    cloud: Cloud
    admitted: list[tuple[str, int | None]]  # (station id, client certificate serial) per TLS login

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.cloud.port}/api/v1"

    def http(self) -> httpx.AsyncClient:
        context = ssl.create_default_context(cafile=str(self.pki.directory / "csms-root.pem"))
        return httpx.AsyncClient(
            verify=context, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )


def _serial_of(scope: dict[str, Any]) -> int | None:
    chain = (scope.get("extensions", {}).get("tls") or {}).get("client_cert_chain") or []
    if not chain:
        return None
    return x509.load_pem_x509_certificate(chain[0].encode()).serial_number


async def _cloud(tmp_path: Path, *, signs: bool) -> AsyncIterator[Setup]:
    pki = PKIStore(tmp_path / "pki")
    pki.init(OPERATOR)
    cert, key = pki.issue_server("localhost", ips=["127.0.0.1"])
    async with running_cloud(
        tmp_path,
        tls_cert=cert,
        tls_key=key,
        tls_client_ca=pki.directory / "csms-root.pem",
        tls_client_organization=OPERATOR,
        pki_dir=pki.directory if signs else None,
        api_token=TOKEN,
    ) as cloud:
        for station_id in ("CS16", "CS201"):
            await cloud.store.stations.register(station_id, security_profile=3)
        admitted: list[tuple[str, int | None]] = []
        admit = cloud.gateway._admit

        async def observed(scope: Any, send: Any, station_id: str) -> bool | None:
            # An observer only: which client certificate each login presented.
            admitted.append((station_id, _serial_of(scope)))
            return await admit(scope, send, station_id)

        cloud.gateway._admit = observed  # type: ignore[method-assign]
        yield Setup(pki, cloud, admitted)


@pytest.fixture
async def signing(tmp_path: Path) -> AsyncIterator[Setup]:
    """The cloud with its PKI: it signs CSRs."""
    async for setup in _cloud(tmp_path, signs=True):
        yield setup


@pytest.fixture
async def not_signing(tmp_path: Path) -> AsyncIterator[Setup]:
    """The same cloud without --pki: it answers SignCertificate with Rejected."""
    async for setup in _cloud(tmp_path, signs=False):
        yield setup


def make_station(version: str, setup: Setup, data_dir: Path) -> Station:
    """A profile-3 station holding certificate #1 (issued at the factory) and the CSMS root."""
    station_id = "CS16" if version == "1.6" else "CS201"
    backoff = ReconnectBackoff(0.2, 0.0, 0, random.Random(1))
    station: Station
    if version == "1.6":
        station = Station16(
            station_id,
            PLUGSTREAM_7,
            data_dir,
            config_defaults={"SecurityProfile": "3"},
            backoff=backoff,
            call_timeout=10,
        )
    else:
        station = Station201(
            station_id,
            PLUGSTREAM_7,
            data_dir,
            device_model_defaults={
                "SecurityCtrlr.SecurityProfile": "3",
                "SecurityCtrlr.OrganizationName": OPERATOR,
            },
            backoff=backoff,
            call_timeout=10,
        )
    authority = setup.pki.csms_root()
    first = authority.issue_client(station_id, organization=OPERATOR)
    station.certificates.add_root(CSMS_ROOT, authority.root_pem)
    station.certificates.set_station_certificate(first.cert_pem, first.key_pem)
    return station


async def started(station: Station, setup: Setup) -> asyncio.Task[None]:
    task = asyncio.create_task(station.run(f"wss://127.0.0.1:{setup.cloud.port}/ocpp"))
    try:
        await until(
            lambda: station.online and setup.cloud.gateway.is_connected(station.station_id),
            f"{station.station_id} connected",
        )
    except AssertionError as exc:
        await stopped(task, station)
        raise AssertionError(
            f"{station.station_id} did not connect: {station.tls_rejected}"
        ) from exc
    return task


async def stopped(task: asyncio.Task[None], station: Station) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    station.close()


def station_serial(station: Station) -> int:
    return station.certificates.station_chain()[0].serial_number


def recorded_events(station: Station, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The security events the station raises (its hook, still called through)."""
    seen: list[tuple[str, str]] = []
    original = station.security_event

    def hook(kind: str, tech_info: str | None = None) -> None:
        seen.append((kind, tech_info or ""))
        original(kind, tech_info)

    monkeypatch.setattr(station, "security_event", hook)
    return seen


def recorded_answers(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, dict[str, Any]]]:
    """The answers the station gets to its CALLs (its ``call``, still called through):
    a test waits for the one that must come before what it checks."""
    seen: list[tuple[str, dict[str, Any]]] = []
    original = station.call

    async def call(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await original(action, payload)
        seen.append((action, answer))
        return answer

    monkeypatch.setattr(station, "call", call)
    return seen


# -- remote renewal --------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_A_11_CS_and_CSMS_renewal_requested_through_the_cloud(
    signing: Setup, tmp_path: Path, version: str
) -> None:
    """A02.FR.02-08 / A02.FR.11: renew -> Trigger -> SignCertificate (new key, CSR) ->
    signed by the CSMS root -> CertificateSigned -> installed -> reconnect with it."""
    station = make_station(version, signing, tmp_path / version)
    first = station_serial(station)
    first_key = station.certificates.station_key_path.read_bytes()
    task = await started(station, signing)
    try:
        assert signing.admitted[-1] == (station.station_id, first)
        logins = len(signing.admitted)
        async with signing.http() as http:
            answer = await http.post(
                f"{signing.base}/stations/{station.station_id}/certificates/renew"
            )
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "Accepted"
        assert body["requested_message"] == (
            "SignChargePointCertificate" if version == "1.6" else "SignChargingStationCertificate"
        )
        # the station reconnects on its own, presenting certificate #2
        await until(
            lambda: len(signing.admitted) > logins and station.online, "reconnected with #2"
        )
        second = station_serial(station)
        assert second != first
        assert signing.admitted[-1] == (station.station_id, second)
        assert signing.cloud.gateway.is_connected(station.station_id)
        # a new key, made on the station: the old one is kept as a fallback only
        assert station.certificates.station_key_path.read_bytes() != first_key
        assert (station.certificates.directory / "station.previous.key").read_bytes() == first_key
        assert not station.certificates.pending_key_path.exists()
        assert station.certificates.station_key_path.stat().st_mode & 0o777 == 0o600
        # what the cloud signed: CN the station id, O the operator; kept in the PKI directory
        leaf = station.certificates.station_chain()[0]
        subject = {a.oid: a.value for a in leaf.subject}
        assert subject[NameOID.COMMON_NAME] == station.station_id
        assert subject[NameOID.ORGANIZATION_NAME] == OPERATOR
        issued = signing.pki.directory / "stations" / f"{station.station_id}.pem"
        assert x509.load_pem_x509_certificate(issued.read_bytes()).serial_number == second
        async with signing.http() as http:
            signed = await http.get(
                f"{signing.base}/stations/{station.station_id}/certificates/signed"
            )
        assert signed.status_code == 200
        assert signed.json()["serial_number"] == format(second, "x")
        assert signed.json()["not_valid_after"] == f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        assert signing.cloud.gateway.failed_logins[station.station_id] == 0
    finally:
        await stopped(task, station)


@pytest.mark.socket
async def test_renew_a_station_that_is_not_connected_is_409(signing: Setup) -> None:
    async with signing.http() as http:
        answer = await http.post(f"{signing.base}/stations/CS16/certificates/renew")
        unknown = await http.post(f"{signing.base}/stations/NOPE/certificates/renew")
        anonymous = await http.post(
            f"{signing.base}/stations/CS16/certificates/renew", headers={"Authorization": ""}
        )
    assert answer.status_code == 409 and "not connected" in answer.json()["detail"]
    assert unknown.status_code == 409
    assert anonymous.status_code == 401


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_A_15_CS_cloud_without_pki_rejects_the_csr(
    not_signing: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """A02.FR.12: a CSMS that cannot sign answers Rejected; the station keeps certificate #1
    and stays connected."""
    station = make_station(version, not_signing, tmp_path / version)
    first = station_serial(station)
    answers = recorded_answers(station, monkeypatch)
    task = await started(station, not_signing)
    try:
        async with not_signing.http() as http:
            answer = await http.post(
                f"{not_signing.base}/stations/{station.station_id}/certificates/renew"
            )
        assert answer.status_code == 202 and answer.json()["status"] == "Accepted"
        await until(lambda: station.certificates.pending_key() is not None, "a CSR made")
        # the station has the Rejected (and has done what it does with it)
        await until(
            lambda: ("SignCertificate", {"status": "Rejected"}) in answers, "the CSR answered"
        )
        assert station_serial(station) == first
        assert station.online
    finally:
        await stopped(task, station)


# -- a certificate that is not the station's ------------------------------------------


def _csr_for_pending(station: Station, common_name: str) -> bytes:
    """The CSR the station sent, rebuilt from its pending key (what the OCTT signs)."""
    key = station.certificates.pending_key()
    assert key is not None
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("wrong", ["untrusted issuer", "not the CSR's key", "another CN"])
@pytest.mark.socket
async def test_TC_A_14_CS_invalid_certificate_is_rejected_with_a_security_event(
    not_signing: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    version: str,
    wrong: str,
) -> None:
    """A02.FR.06/07: Rejected, the certificate discarded, InvalidChargingStationCertificate
    (1.6: InvalidChargePointCertificate); the station keeps using certificate #1."""
    station = make_station(version, not_signing, tmp_path / version)
    first = station_serial(station)
    events = recorded_events(station, monkeypatch)
    task = await started(station, not_signing)
    try:
        sid = station.station_id
        async with not_signing.http() as http:
            await http.post(f"{not_signing.base}/stations/{sid}/certificates/renew")
            await until(lambda: station.certificates.pending_key() is not None, "a CSR made")
            ours = not_signing.pki.csms_root()
            if wrong == "untrusted issuer":
                stranger = CertificateAuthority.create("Stranger Root CA", organization="Stranger")
                cert = stranger.sign_csr(_csr_for_pending(station, sid))
            elif wrong == "not the CSR's key":
                cert = ours.issue_client(sid, organization=OPERATOR).certificate
            else:
                cert = ours.sign_csr(_csr_for_pending(station, "CS-OTHER"))
            pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            payload: dict[str, Any] = {"certificateChain": pem}
            if version == "2.0.1":
                payload["certificateType"] = "ChargingStationCertificate"
            answer = await http.post(
                f"{not_signing.base}/stations/{sid}/commands/CertificateSigned", json=payload
            )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "Rejected"
        expected = (
            "InvalidChargePointCertificate"
            if version == "1.6"
            else "InvalidChargingStationCertificate"
        )
        certificate_events = [(k, info) for k, info in events if "Certificate" in k]
        assert [kind for kind, _ in certificate_events] == [expected]
        reason = certificate_events[0][1]
        assert {
            "untrusted issuer": "Stranger",
            "not the CSR's key": "key",
            "another CN": "CS-OTHER",
        }[wrong] in reason
        # no reconnect, nothing installed: once nothing is left in flight (a disconnect to
        # present a new certificate would be) and the event has reached the cloud, after
        # the Rejected on the same connection
        await until(
            lambda: station.settled and not station.security_log.pending(), "the station idle"
        )
        assert station_serial(station) == first
        assert station.online and len(not_signing.admitted) == 1
        assert not (station.certificates.directory / "station.previous.pem").exists()
    finally:
        await stopped(task, station)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_a_csr_for_another_station_is_not_signed(
    signing: Setup, tmp_path: Path, version: str
) -> None:
    """A station asking for another identity's certificate: Rejected, not signed, and kept
    as a security event of the cloud (source gateway)."""
    station = make_station(version, signing, tmp_path / version)
    task = await started(station, signing)
    try:
        csr, _ = make_csr("CS-VICTIM", OPERATOR)
        payload: dict[str, Any] = {"csr": csr.decode()}
        if version == "2.0.1":
            payload["certificateType"] = "ChargingStationCertificate"
        assert await station.call("SignCertificate", payload) == {"status": "Rejected"}
        events = [
            e for e in await signing.cloud.store.security.list_events() if e.source == "gateway"
        ]
        assert [(e.station_id, e.type, e.source) for e in events] == [
            (station.station_id, "InvalidChargingStationCertificate", "gateway")
        ]
        assert "CS-VICTIM" in (events[0].tech_info or "")
        assert not (signing.pki.directory / "stations" / "CS-VICTIM.pem").exists()
    finally:
        await stopped(task, station)


# -- the roots: install, list, delete -------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_M_01_07_12_20_22_23_CS_install_list_delete_roots_via_the_command_api(
    signing: Setup, tmp_path: Path, version: str
) -> None:
    """M05 InstallCertificate, M03 GetInstalledCertificateIds, M04 DeleteCertificate."""
    station = make_station(version, signing, tmp_path / version)
    task = await started(station, signing)
    csms = "CentralSystemRootCertificate" if version == "1.6" else "CSMSRootCertificate"
    sid = station.station_id
    commands = f"{signing.base}/stations/{sid}/commands"
    ours = x509.load_pem_x509_certificate(signing.pki.csms_root().root_pem)
    extra = CertificateAuthority.create("Second CSMS Root", organization=OPERATOR)
    try:
        async with signing.http() as http:

            async def command(action: str, payload: dict[str, Any]) -> dict[str, Any]:
                answer = await http.post(f"{commands}/{action}", json=payload)
                assert answer.status_code == 200, answer.text
                result: dict[str, Any] = answer.json()
                return result

            async def listed() -> list[dict[str, Any]]:
                answer = await http.get(
                    f"{signing.base}/stations/{sid}/certificates",
                    params={"certificate_type": csms},
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                if version == "1.6":
                    return list(body.get("certificateHashData", []))
                return [c["certificateHashData"] for c in body.get("certificateHashDataChain", [])]

            assert await listed() == [hash_data(ours)]
            install = {"certificateType": csms, "certificate": extra.root_pem.decode()}
            assert await command("InstallCertificate", install) == {"status": "Accepted"}
            # the same one again: replaced, not doubled (M05.FR.17)
            assert await command("InstallCertificate", install) == {"status": "Accepted"}
            both = await listed()
            assert sorted(h["serialNumber"] for h in both) == sorted(
                format(c.serial_number, "x") for c in (ours, extra.root.certificate)
            )
            assert all(h["hashAlgorithm"] == "SHA256" for h in both)
            # not a CA, not PEM: Rejected (M05.FR.07)
            leaf = signing.pki.csms_root().issue_client("X").cert_pem.decode()
            for bad in (leaf, "not a certificate"):
                refused = await command(
                    "InstallCertificate", {"certificateType": csms, "certificate": bad}
                )
                assert refused == {"status": "Rejected"}
            assert len(station.certificates.roots(CSMS_ROOT)) == 2
            # delete the extra root; then the last one is refused (the connection needs it)
            gone = hash_data(extra.root.certificate)
            assert await command("DeleteCertificate", {"certificateHashData": gone}) == {
                "status": "Accepted"
            }
            assert await listed() == [hash_data(ours)]
            assert await command("DeleteCertificate", {"certificateHashData": gone}) == {
                "status": "NotFound"
            }
            last = {"certificateHashData": hash_data(ours)}
            assert await command("DeleteCertificate", last) == {"status": "Failed"}
            # the station's own certificate cannot be deleted (M04.FR.06, 1.6 M04.FR.05)
            own = station.certificates.station_chain()[0]
            assert await command(
                "DeleteCertificate", {"certificateHashData": hash_data(own, ours)}
            ) == {"status": "Failed"}
            # a manufacturer root: another type, listed separately
            maker = signing.pki.manufacturer_root().root_pem.decode()
            assert await command(
                "InstallCertificate",
                {"certificateType": "ManufacturerRootCertificate", "certificate": maker},
            ) == {"status": "Accepted"}
            assert await listed() == [hash_data(ours)]
        assert station.online
    finally:
        await stopped(task, station)


# -- A02.FR.17-19: the CSR is sent again while its certificate does not come ----------


class _SilentCsms(Handlers):
    """An OCTT-like CSMS (TC_A_23_CS): accepts every CSR and never signs one; each kept
    with the time ``elapsed()`` says it came."""

    def __init__(self, elapsed: Callable[[], float]) -> None:
        self.elapsed = elapsed
        self.csrs: list[tuple[float, str]] = []

    @on("BootNotification")
    def boot(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "currentTime": format_time(datetime.now(UTC)),
            "interval": 300,
            "status": "Accepted",
        }

    @on("StatusNotification")
    def status(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    @on("Heartbeat")
    def heartbeat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"currentTime": format_time(datetime.now(UTC))}

    @on("SecurityEventNotification")
    def security_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    @on("SignCertificate")
    def sign_certificate(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.csrs.append((self.elapsed(), payload["csr"]))
        return {"status": "Accepted"}


@pytest.mark.socket
async def test_TC_A_23_CS_csr_resent_with_doubling_back_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A02.FR.17/18/19: resent after CertSigningWaitMinimum, then twice that, then no more
    than CertSigningRepeatTimes times. The station's time is a manual clock: the test
    moves it, and reads when each CSR came on it."""
    clock = ManualClock()
    csms = _SilentCsms(clock.elapsed)
    endpoints: list[OcppEndpoint] = []

    async def handler(ws: ServerConnection) -> None:
        endpoint = OcppEndpoint(ws, OcppVersion.V201, csms, call_timeout=5)
        endpoints.append(endpoint)
        await endpoint.run()

    async with serve(handler, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp2.0.1")]) as server:
        port = server.sockets[0].getsockname()[1]
        station = Station201(
            "CS201",
            PLUGSTREAM_7,
            tmp_path / "cs",
            device_model_defaults={
                "SecurityCtrlr.CertSigningWaitMinimum": "1",
                "SecurityCtrlr.CertSigningRepeatTimes": "2",
            },
            clock=clock,
            call_timeout=5,
        )
        answers = recorded_answers(station, monkeypatch)

        def csrs_answered() -> int:
            return sum(1 for action, _ in answers if action == "SignCertificate")

        task = asyncio.create_task(station.run(f"ws://127.0.0.1:{port}/ocpp"))
        try:
            await until(lambda: station.online and bool(endpoints), "the station online")
            trigger = {"requestedMessage": "SignChargingStationCertificate"}
            assert await endpoints[0].call("TriggerMessage", trigger) == {"status": "Accepted"}
            # Once the station has a CSR's answer, the wait for the next one is set (the
            # station sets it before it looks at anything else): then the clock moves.
            await until(lambda: csrs_answered() == 1, "the first CSR answered")
            await clock.advance(1.0)
            await until(lambda: csrs_answered() == 2, "the CSR sent again after 1 s")
            await clock.advance(2.0)
            await until(lambda: csrs_answered() == 3, "the CSR sent again after 2 s more")
            # the next wait would be 4 s: well past it, none is due, none comes (a round
            # trip on the connection after the clock moved: a CSR sent would be before it)
            await clock.advance(10.0)
            await endpoints[0].call("TriggerMessage", {"requestedMessage": "Heartbeat"})
            assert len(csms.csrs) == 3
            times = [t for t, _ in csms.csrs]
            assert 0.8 <= times[1] - times[0] <= 1.8
            assert 1.8 <= times[2] - times[1] <= 2.8
            assert len({csr for _, csr in csms.csrs}) == 1  # the same CSR, the same key
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            station.close()


# -- the sans-I/O checks ---------------------------------------------------------------


@pytest.mark.unit
def test_certificate_hash_data_is_computed_as_the_spec_defines() -> None:
    """2.0.1 part 2 CertificateHashDataType / 1.6 whitepaper 6.1: SHA256 of the issuer's DER
    name, of the issuer's public key bits (no tag, no length), the serial in hex without
    0x or leading zeroes."""
    root = CertificateAuthority.create("Hash Root", organization=OPERATOR)
    leaf = root.issue_client("CS1").certificate
    issuer = root.root.certificate
    key_bits = issuer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    data = hash_data(leaf, issuer)
    assert data == {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": hashlib.sha256(issuer.subject.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.sha256(key_bits).hexdigest(),
        "serialNumber": format(leaf.serial_number, "x"),
    }
    assert not data["serialNumber"].startswith("0")
    # a CSMS may write the serial in upper case, with leading zeroes (M04.FR.07: the same
    # algorithm; the rest compared as values)
    loose = {**data, "serialNumber": "00" + data["serialNumber"].upper()}
    assert matches(loose, leaf, issuer)
    assert not matches({**data, "hashAlgorithm": "SHA384"}, leaf, issuer)
    assert matches(hash_data(leaf, issuer, "SHA384"), leaf, issuer)


@pytest.mark.unit
def test_signed_certificate_checks_validity_by_the_stations_clock() -> None:
    """A02.FR.06: expired by the station's clock is refused; valid from later is accepted
    (the station switches to it then, A02.FR.08)."""
    root = CertificateAuthority.create("Clock Root", organization=OPERATOR)
    csr, key_pem = make_csr("CS1", OPERATOR)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    later = root.sign_csr(csr, now=now + timedelta(days=3))
    pem = later.public_bytes(serialization.Encoding.PEM).decode()
    roots = [root.root.certificate]
    assert check_certificate_chain(pem, key, roots, "CS1", now)[0] == later
    with pytest.raises(InvalidCertificate, match="expired"):
        check_certificate_chain(pem, key, roots, "CS1", now + timedelta(days=400))
    with pytest.raises(InvalidCertificate, match="no certificate signing request"):
        check_certificate_chain(pem, None, roots, "CS1", now)
    with pytest.raises(InvalidCertificate, match="not PEM"):
        check_certificate_chain("garbage", key, roots, "CS1", now)
    with pytest.raises(InvalidCertificate, match="limit 100"):
        check_certificate_chain(pem, key, roots, "CS1", now, max_chars=100)
    # a server certificate from the right root, for the right key, is still not a station's
    server = root._build(
        later.subject,
        key.public_key(),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [],
        30,
    )
    with pytest.raises(InvalidCertificate, match="EKU"):
        check_certificate_chain(
            server.public_bytes(serialization.Encoding.PEM).decode(), key, roots, "CS1", now
        )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_A03_station_renews_a_certificate_that_expires_within_a_month(
    signing: Setup, tmp_path: Path, version: str
) -> None:
    """A03.FR.02/03: one month before expiry the station sends a CSR on its own; the cloud
    signs it and the station reconnects with the new certificate. A certificate with longer
    to live is left alone."""
    station = make_station(version, signing, tmp_path / version)
    task = await started(station, signing)
    try:
        assert await renew_if_expiring(station) is None  # 397 days to live
        assert station.certificates.pending_key() is None
        short = signing.pki.csms_root().issue_client(
            station.station_id, organization=OPERATOR, days=10
        )
        station.certificates.set_station_certificate(short.cert_pem, short.key_pem)
        logins = len(signing.admitted)
        assert await renew_if_expiring(station) == "Accepted"
        await until(
            lambda: len(signing.admitted) > logins and station.online, "reconnected, renewed"
        )
        renewed = station.certificates.station_chain()[0]
        assert renewed.serial_number != short.certificate.serial_number
        assert signing.admitted[-1] == (station.station_id, renewed.serial_number)
        assert not renewal_due(renewed, station.now())
    finally:
        await stopped(task, station)


@pytest.mark.socket
async def test_extended_trigger_message_16(signing: Setup, tmp_path: Path) -> None:
    """1.6 whitepaper ExtendedTriggerMessage: the core messages and the firmware status are
    sent on request, an unknown connector is Rejected, logs are NotImplemented here."""
    station = make_station("1.6", signing, tmp_path / "cs")
    task = await started(station, signing)
    try:
        async with signing.http() as http:

            async def trigger(payload: dict[str, Any]) -> str:
                answer = await http.post(
                    f"{signing.base}/stations/CS16/commands/ExtendedTriggerMessage", json=payload
                )
                assert answer.status_code == 200, answer.text
                return str(answer.json()["status"])

            assert await trigger({"requestedMessage": "Heartbeat"}) == "Accepted"
            assert await trigger({"requestedMessage": "StatusNotification"}) == "Accepted"
            assert await trigger({"requestedMessage": "LogStatusNotification"}) == "NotImplemented"
            assert await trigger({"requestedMessage": "Heartbeat", "connectorId": 7}) == "Rejected"
            firmware = await trigger({"requestedMessage": "FirmwareStatusNotification"})
            assert firmware == ("Accepted" if hasattr(station, "firmware") else "NotImplemented")
    finally:
        await stopped(task, station)
