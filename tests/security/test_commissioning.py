"""Commissioning through the setup service (the article's ``setup.plugstream.co.uk``):
a station out of the box -- serial number, manufacturer certificate, trust roots, setup
URL -- is refused while unclaimed, provisioned once its owner claims it, and charges on
PlugStream Cloud over security profile 2 (TLS + Basic auth, 1.6 security whitepaper
AuthorizationKey) or 3 (mutual TLS with a certificate signed from its own CSR, 2.0.1
A00.FR.401-405, A02). This is the 1.6 security whitepaper's §2.6.4 "Installation
during manufacturing or installation": unique factory credentials (A00.FR.801, here the
manufacturer-signed certificate, A00.FR.804) are exchanged for the CPO's right after
installation (A00.FR.805), the station's new private key never leaving it (A02.FR.05).
Everything is real: TLS on loopback with the project's PKI,
PlugStream Cloud (uvicorn), Station16 / Station201 and ``plugstream station run``."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography import x509
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from plugstream.cloud.serve import READY
from plugstream.cloud.setup.api import RETRY_AFTER_S
from plugstream.cloud.storage import Store
from plugstream.pki.authority import CertificateAuthority
from plugstream.pki.keystore import PKIStore
from plugstream.station.certificates import CSMS_ROOT, MANUFACTURER_ROOT, CertificateStore
from plugstream.station.clock import ManualClock
from plugstream.station.config import DeviceModel201
from plugstream.station.ev import FAMILY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_22
from plugstream.station.provisioning import (
    NotClaimed,
    SetupError,
    configure_station,
    factory_install,
    load_setup,
    make_station,
    provision,
    provision_until_claimed,
    run_with_setup,
    station_url,
)
from plugstream.station.security import SecurityLog
from plugstream.station.station16 import Station16
from tests.cloud.conftest import postgres_url, store, store_url  # noqa: F401 (fixtures)
from tests.interop.station_process import StationProcess
from tests.support import WAIT, Cloud, cloud_serve_argv, free_port, running, running_cloud, until

TOKEN = "setup-test-token"
OPERATOR = "Acme Charging"
TAG = "04A1B2C3"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = TypeVar("T")


@dataclass
class Pki:
    store: PKIStore
    dir: Path
    server_cert: Path
    server_key: Path

    @property
    def csms_root(self) -> Path:
        return self.dir / "csms-root.pem"

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.csms_root))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    keystore = PKIStore(tmp_path / "pki")
    keystore.init(OPERATOR)
    # the OCPP and setup name on loopback: one certificate from the CSMS root
    cert, key = keystore.issue_server("localhost", ips=["127.0.0.1"])
    return Pki(keystore, tmp_path / "pki", cert, key)


@contextlib.asynccontextmanager
async def cloud_with_pki(
    tmp_path: Path, pki: Pki, name: str, **overrides: Any
) -> AsyncIterator[Cloud]:
    """PlugStream Cloud with --pki on a free port: OCPP (profiles 2 and 3), the REST API
    and the setup service on one TLS port."""
    port = free_port()
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    options: dict[str, Any] = {
        "port": port,
        "tls_cert": pki.server_cert,
        "tls_key": pki.server_key,
        "tls_client_ca": pki.csms_root,
        "tls_client_organization": OPERATOR,
        "pki_dir": pki.dir,
        "api_token": TOKEN,
        "public_url": f"https://127.0.0.1:{port}",
        "heartbeat_interval": 60,
    }
    options.update(overrides)
    async with running_cloud(folder, **options) as cloud:
        yield cloud


def setup_url(cloud: Cloud) -> str:
    return f"https://127.0.0.1:{cloud.port}"


def factory(pki: Pki, data_dir: Path, serial: str, url: str, *, cn: str | None = None) -> None:
    """The factory state of a new station: manufacturer certificate for ``cn`` (default:
    its serial), the CSMS root, the setup URL."""
    maker = pki.store.manufacturer_root()
    issued = maker.issue_client(cn or serial, organization="PlugStream")
    trust = pki.csms_root.read_bytes()
    factory_install(data_dir, serial, issued.cert_pem, issued.key_pem, trust, url)


async def api(cloud: Cloud, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{cloud.port}/api/v1",
        verify=ssl.create_default_context(cafile=str(cloud.config.tls_client_ca)),
        timeout=10,
    ) as http:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        return await http.request(method, path, headers=headers, **kwargs)


async def claim(cloud: Cloud, serial: str, **body: Any) -> httpx.Response:
    return await api(cloud, "PUT", f"/claims/{serial}", json={"owner": "Jane Owner", **body})


def registers(transaction: dict[str, Any]) -> list[dict[str, Any]]:
    """The energy register readings of a transaction as the cloud's API shows it."""
    return [
        s for s in transaction["meter_values"] if s["measurand"] == "Energy.Active.Import.Register"
    ]


async def charge(cloud: Cloud, station: Any, serial: str, clock: ManualClock) -> dict[str, Any]:
    """A driver's session: plug in, swipe a card the cloud knows, charge a few seconds
    (of the station's clock) with meter values every second, unplug. The transaction as
    the cloud's API shows it."""
    assert (await api(cloud, "PUT", f"/id-tokens/{TAG}", json={})).status_code in (200, 201)
    station.plug_in(Ev(FAMILY_CAR))
    assert await station.swipe(TAG)

    async def started() -> list[Any]:
        listed: list[Any] = (
            await api(cloud, "GET", "/transactions", params={"station": serial})
        ).json()
        return listed

    tx_id = (await until(started, "the transaction in the cloud"))[0]["id"]

    async def readings() -> int:
        return len(registers((await api(cloud, "GET", f"/transactions/{tx_id}")).json()))

    for _ in range(2):  # a second of charging, then its reading in the cloud; twice
        before = await readings()
        await clock.advance(1.0)

        async def one_more(before: int = before) -> bool:
            return await readings() > before

        await until(one_more, f"a meter reading in the cloud after {before}")
    station.unplug()

    async def finished() -> dict[str, Any] | None:
        listed = (await api(cloud, "GET", "/transactions", params={"station": serial})).json()
        if not listed or listed[0]["active"]:
            return None
        detail = await api(cloud, "GET", f"/transactions/{listed[0]['id']}")
        return dict(detail.json())

    done: dict[str, Any] = await until(finished, "the finished transaction in the cloud")
    return done


def sample_every_second(station: Any) -> None:
    if isinstance(station, Station16):
        station.config.change("MeterValueSampleInterval", "1")
    else:
        station.config.set_value("SampledDataCtrlr", "TxUpdatedInterval", "1")


# -- from nothing to charging ----------------------------------------------------------


@pytest.mark.parametrize(("ocpp", "profile"), [("1.6", 2), ("2.0.1", 2), ("1.6", 3), ("2.0.1", 3)])
@pytest.mark.socket
async def test_station_is_commissioned_from_its_factory_state_to_charging(
    tmp_path: Path, pki: Pki, ocpp: str, profile: int
) -> None:
    """Factory state -> unclaimed (refused, retried) -> the owner claims it -> provisioned
    -> BootNotification Accepted on PlugStream Cloud over wss at the claimed security
    profile -> a charging session whose meter values reach the cloud."""
    serial = f"PS22-{ocpp.replace('.', '')}-P{profile}"
    data_dir = tmp_path / "station"
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        factory(pki, data_dir, serial, setup_url(cloud))

        with pytest.raises(NotClaimed) as refused:
            await provision(data_dir)
        assert refused.value.reason == f"not claimed yet: ask the owner to claim serial {serial}"
        assert refused.value.retry_after == RETRY_AFTER_S
        assert load_setup(data_dir) is None

        # the station's clock: its waits between calls, and later its charging time, move
        # when the test says (told to wait, it has set its timer: the clock may move)
        clock = ManualClock()
        waits: list[str] = []
        waiting = asyncio.create_task(
            provision_until_claimed(
                data_dir,
                clock=clock,
                retry_max=0.2,
                on_wait=lambda exc, _: waits.append(str(exc)),
            )
        )
        await until(lambda: waits, "the station told to wait")
        await clock.advance(0.2)
        await until(lambda: len(waits) >= 2, "the station calling again while unclaimed")
        assert not waiting.done()
        answer = await claim(cloud, serial, ocpp_version=ocpp, security_profile=profile)
        assert answer.status_code == 200, answer.text
        await clock.advance(0.2)  # its next call
        result = await asyncio.wait_for(waiting, WAIT)

        setup = result.setup
        assert setup.csms_url == f"wss://127.0.0.1:{cloud.port}/ocpp"
        assert (setup.ocpp_version, setup.security_profile) == (ocpp, profile)
        certs = CertificateStore(data_dir / "certs")
        if profile == 2:
            assert result.password is not None and 16 <= len(result.password) <= 40
            assert certs.station_certificate() is None
        else:
            assert result.password is None
            installed = certs.station_certificate()
            assert installed is not None
            leaf = x509.load_pem_x509_certificate(installed[0].read_bytes())
            subject = leaf.subject.rfc4514_string()
            assert f"CN={serial}" in subject and f"O={OPERATOR}" in subject
            leaf.verify_directly_issued_by(pki.store.csms_root().root.certificate)
        claimed = (await api(cloud, "GET", f"/claims/{serial}")).json()
        assert claimed["provisioned_at"] is not None

        station = make_station(data_dir, PLUGSTREAM_22, setup, clock=clock)
        configure_station(station, setup, result.password)
        sample_every_second(station)
        async with running(station, station_url(station, setup)):
            await until(lambda: station.accepted, "BootNotification Accepted")
            assert cloud.gateway.is_connected(serial)
            record = (await api(cloud, "GET", f"/stations/{serial}")).json()
            assert record["security_profile"] == profile
            assert record["ocpp_version"] == ocpp
            tx = await charge(cloud, station, serial, clock)
        assert tx["id_token"] == TAG
        assert Decimal(str(tx["energy_wh"])) > 0
        assert len(registers(tx)) >= 2
        assert cloud.gateway.failed_logins[serial] == 0


# -- following the claim -----------------------------------------------------------------


@pytest.mark.socket
async def test_station_follows_its_claim_to_a_third_party_csms(tmp_path: Path, pki: Pki) -> None:
    """``plugstream station run --setup``'s loop: provisioned to PlugStream Cloud, then the
    owner re-points the claim at another CSMS (a second, independent PlugStream Cloud with
    its own database, where the operator registered the station with the owner's
    password). The setup service runs alone (``cloud serve --setup``) on the cloud's
    database; when the first CSMS goes away the station calls setup again and follows."""
    serial = "PS22-FOLLOW"
    password = "owner-given-password-123"
    data_dir = tmp_path / "station"
    async with (
        cloud_with_pki(tmp_path, pki, "third") as third,
        contextlib.AsyncExitStack() as first,
    ):
        cloud = await first.enter_async_context(cloud_with_pki(tmp_path, pki, "cloud"))
        await third.store.stations.register(serial, password=password, security_profile=2)
        async with running_cloud(
            tmp_path / "cloud",  # the same database file as the cloud
            port=free_port(),
            tls_cert=pki.server_cert,
            tls_key=pki.server_key,
            pki_dir=pki.dir,
            setup_only=True,
            public_url=f"https://127.0.0.1:{cloud.port}",
        ) as setup_service:
            factory(pki, data_dir, serial, setup_url(setup_service))
            assert (await claim(cloud, serial, ocpp_version="2.0.1")).status_code == 200
            read_fd, write_fd = os.pipe()
            out = io.StringIO()
            runner = asyncio.create_task(
                run_with_setup(
                    PLUGSTREAM_22,
                    data_dir,
                    recheck_after=0.5,
                    retry_max=0.2,
                    stdin_fd=read_fd,
                    out=out,
                    err=io.StringIO(),
                )
            )
            try:
                await until(lambda: cloud.gateway.is_connected(serial), "connected to the cloud")
                model = DeviceModel201.load(data_dir / DeviceModel201.FILENAME)
                old_password = model.basic_auth_password
                assert old_password is not None
                assert await cloud.store.stations.check_password(serial, old_password)
                moved = await claim(
                    cloud,
                    serial,
                    csms_url=f"wss://127.0.0.1:{third.port}/ocpp",
                    ocpp_version="1.6",
                    security_profile=2,
                    password=password,
                )
                assert moved.status_code == 200, moved.text
                assert moved.json()["password_set"] is True
                assert "password" not in moved.json()
                assert moved.json()["provisioned_at"] is None  # not followed yet
                await first.aclose()  # the first CSMS goes away: the station is offline
                await until(
                    lambda: third.gateway.is_connected(serial), "connected to the third party"
                )
                assert third.gateway.version_of(serial) is not None
                assert third.gateway.version_of(serial).value == "1.6"  # type: ignore[union-attr]
                setup = load_setup(data_dir)
                assert setup is not None and setup.csms_url.endswith(f":{third.port}/ocpp")
                followed = await setup_service.store.setup.get_claim(serial)
                assert followed is not None and followed.provisioned_at is not None
                # gone from PlugStream Cloud: its credentials there no longer work
                assert not await setup_service.store.stations.check_password(serial, old_password)
                assert f"now wss://127.0.0.1:{third.port}/ocpp" in out.getvalue()
                os.write(write_fd, b"quit\n")
                assert await asyncio.wait_for(runner, WAIT) == 0
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
                os.close(write_fd)
                os.close(read_fd)


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.socket
async def test_setup_refuses_a_station_without_a_manufacturer_certificate(
    tmp_path: Path, pki: Pki
) -> None:
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        await claim(cloud, "PS22-NOCERT")
        async with httpx.AsyncClient(verify=pki.trusting(), timeout=10) as http:
            answer = await http.post(
                f"{setup_url(cloud)}/setup/v1/provision",
                json={
                    "serial_number": "PS22-NOCERT",
                    "model": "PlugStream 22",
                    "firmware_version": "1.0",
                    "ocpp_versions": ["1.6"],
                },
            )
        assert answer.status_code == 403
        assert answer.json()["detail"].startswith("no manufacturer certificate")


@pytest.mark.socket
async def test_setup_refuses_a_certificate_of_an_unknown_manufacturer(
    tmp_path: Path, pki: Pki
) -> None:
    """A certificate from a CA the service does not trust fails the TLS handshake."""
    data_dir = tmp_path / "station"
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        await claim(cloud, "PS22-FORGED")
        stranger = CertificateAuthority.create("Stranger Root CA", organization="Stranger")
        issued = stranger.issue_client("PS22-FORGED")
        factory_install(
            data_dir,
            "PS22-FORGED",
            issued.cert_pem,
            issued.key_pem,
            pki.csms_root.read_bytes(),
            setup_url(cloud),
        )
        with pytest.raises((SetupError, OSError)):
            await provision(data_dir)
        assert load_setup(data_dir) is None
        assert (await api(cloud, "GET", "/claims/PS22-FORGED")).json()["provisioned_at"] is None


@pytest.mark.socket
async def test_setup_refuses_a_station_certificate_that_is_not_the_manufacturers(
    tmp_path: Path, pki: Pki
) -> None:
    """A certificate from the CSMS root (a profile-3 station certificate) is trusted by TLS
    on the combined port but does not identify a new station."""
    data_dir = tmp_path / "station"
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        await claim(cloud, "PS22-CSMSCERT")
        issued = pki.store.csms_root().issue_client("PS22-CSMSCERT", organization=OPERATOR)
        factory_install(
            data_dir,
            "PS22-CSMSCERT",
            issued.cert_pem,
            issued.key_pem,
            pki.csms_root.read_bytes(),
            setup_url(cloud),
        )
        with pytest.raises(SetupError) as refused:
            await provision(data_dir)
        assert refused.value.status == 403
        assert "not issued by the manufacturer root" in refused.value.reason


@pytest.mark.socket
async def test_setup_refuses_a_serial_number_that_is_not_the_certificates(
    tmp_path: Path, pki: Pki
) -> None:
    data_dir = tmp_path / "station"
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        await claim(cloud, "PS22-VICTIM")
        factory(pki, data_dir, "PS22-VICTIM", setup_url(cloud), cn="PS22-ATTACKER")
        with pytest.raises(SetupError) as refused:
            await provision(data_dir)
        assert refused.value.status == 403
        assert refused.value.reason == (
            "serial number mismatch: the certificate is for 'PS22-ATTACKER', "
            "the request says 'PS22-VICTIM'"
        )
        assert await cloud.store.stations.get("PS22-VICTIM") is None


@pytest.mark.socket
async def test_TC_A_08_CSMS_a_manufacturer_certificate_is_not_a_station_certificate(
    tmp_path: Path, pki: Pki
) -> None:
    """TLS on the combined port trusts the manufacturer root (for setup); the OCPP gateway
    still admits only certificates issued by the CSMS root: the certification path of a
    station certificate ends at the CSO's root (A00.FR.403, A00.FR.407; the refusal is a
    security event, A00.FR.408)."""
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        await cloud.store.stations.register("PS22-P3", security_profile=3)
        issued = pki.store.manufacturer_root().issue_client("PS22-P3", organization=OPERATOR)
        (tmp_path / "m.pem").write_bytes(issued.cert_pem)
        (tmp_path / "m.key").write_bytes(issued.key_pem)
        context = pki.trusting()
        context.load_cert_chain(tmp_path / "m.pem", tmp_path / "m.key")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"wss://127.0.0.1:{cloud.port}/ocpp/PS22-P3",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                ssl=context,
                open_timeout=5,
            ):
                pass
        assert refused.value.response.status_code == 401
        event = cloud.gateway.security_events[-1]
        assert (event.type, event.tech_info) == (
            "InvalidChargingStationCertificate",
            "certificate not issued by the CSMS root",
        )


@pytest.mark.socket
async def test_setup_service_alone_refuses_csms_root_certificates_in_tls(
    tmp_path: Path, pki: Pki
) -> None:
    """``cloud serve --setup`` trusts only the manufacturer root: a CSMS-root client
    certificate fails the handshake there; the health check answers without one."""
    data_dir = tmp_path / "station"
    async with running_cloud(
        tmp_path,
        port=free_port(),
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        pki_dir=pki.dir,
        setup_only=True,
    ) as service:
        async with httpx.AsyncClient(verify=pki.trusting(), timeout=10) as http:
            health = await http.get(f"https://127.0.0.1:{service.port}/setup/v1/health")
            assert health.json() == {"status": "ok"}
            # no REST API, no OCPP here
            assert (
                await http.get(f"https://127.0.0.1:{service.port}/api/v1/stations")
            ).status_code == 404
            spec = await http.get(f"https://127.0.0.1:{service.port}/setup/v1/openapi.json")
            assert "/setup/v1/provision" in spec.json()["paths"]
        issued = pki.store.csms_root().issue_client("PS22-X", organization=OPERATOR)
        factory_install(
            data_dir,
            "PS22-X",
            issued.cert_pem,
            issued.key_pem,
            pki.csms_root.read_bytes(),
            f"https://127.0.0.1:{service.port}",
        )
        with pytest.raises((SetupError, OSError)):
            await provision(data_dir)


@pytest.mark.socket
async def test_station_refuses_a_setup_service_it_does_not_trust(tmp_path: Path, pki: Pki) -> None:
    """The station checks the setup service's certificate against its own roots before it
    sends anything (A00.FR.308-310 applied to the setup call)."""
    data_dir = tmp_path / "station"
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        await claim(cloud, "PS22-WARY")
        factory(pki, data_dir, "PS22-WARY", setup_url(cloud))
        other = CertificateAuthority.create("Other Root CA", organization="Other")
        store = CertificateStore(data_dir / "certs")
        for path in store.root_files(CSMS_ROOT):
            path.unlink()
        store.add_root(CSMS_ROOT, other.root_pem)
        from plugstream.pki.tls import ServerRejected

        with pytest.raises(ServerRejected):
            await provision(data_dir)
        assert (await api(cloud, "GET", "/claims/PS22-WARY")).json()["provisioned_at"] is None

        # Run as a station does, it keeps trying (its clock may not be set yet) and logs
        # InvalidCsmsCertificate, to be reported to the CSMS it reaches in the end.
        waits: list[str] = []
        with pytest.raises(ServerRejected):
            await provision_until_claimed(
                data_dir, attempts=2, retry_max=0.01, on_wait=lambda exc, s: waits.append(str(exc))
            )
        assert len(waits) == 1 and "does not trust" in waits[0]
        log = SecurityLog(data_dir / "security_log.json")
        assert [e.type for e in log.entries()] == ["InvalidCsmsCertificate"] * 2
        assert len(log.pending()) == 1  # a repeat is logged, reported once (A00.FR.419 note)


# -- the owners' claims -------------------------------------------------------------------


@pytest.mark.socket
async def test_claims_api_checks_what_a_station_could_not_follow(tmp_path: Path, pki: Pki) -> None:
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"csms_url": "ws://csms.example/ocpp", "password": "x" * 20}, "ws:// is not TLS"),
            ({"ocpp_version": "1.5"}, "ocpp_version"),
            ({"security_profile": 1}, "security_profile"),
            ({"csms_url": "wss://csms.example/ocpp"}, "needs the station's password"),
            ({"csms_url": "wss://csms.example/ocpp", "password": "short"}, "16 to 40"),
            ({"password": "p" * 20}, "PlugStream Cloud makes the station's password"),
            (
                {"csms_url": "wss://csms.example/ocpp", "security_profile": 3},
                "security profile 3 with a third-party CSMS",
            ),
        ]
        for body, reason in cases:
            answer = await claim(cloud, "PS22-CLAIM", **body)
            assert answer.status_code == 422, (body, answer.text)
            assert reason in answer.json()["detail"], (body, answer.json())
        unauthorized = await api(cloud, "GET", "/claims", headers={"Authorization": "Bearer no"})
        assert unauthorized.status_code == 401

        made = await claim(cloud, "PS22-CLAIM", ocpp_version="2.0.1", security_profile=3)
        assert made.status_code == 200
        shown = made.json()
        assert shown["csms_url"] is None and shown["security_profile"] == 3
        assert shown["claimed_at"].endswith("Z") or "+00:00" in shown["claimed_at"]
        assert [c["serial_number"] for c in (await api(cloud, "GET", "/claims")).json()] == [
            "PS22-CLAIM"
        ]
        assert (await api(cloud, "DELETE", "/claims/PS22-CLAIM")).status_code == 204
        missing = await api(cloud, "GET", "/claims/PS22-CLAIM")
        assert missing.status_code == 404
        assert missing.json()["detail"] == "serial 'PS22-CLAIM' is not claimed"


# -- the commands: plugstream pki factory, plugstream station run --setup ------------------


class SetupStationProcess(StationProcess):
    """``plugstream station run --setup URL`` as a real process (no --id, no --csms)."""

    def __init__(self, data_dir: Path, setup: str) -> None:
        super().__init__("(setup)", "", data_dir)
        self.setup = setup

    async def start(self) -> str:
        assert self.proc is None or self.proc.returncode is not None, "already running"
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *["-m", "plugstream.cli", "station", "run", "--model", "22"],
            *["--setup", self.setup, "--setup-retry", "0.2", "--data-dir", str(self.data_dir)],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self.proc.stdout, self.lines)),
            asyncio.create_task(self._pump(self.proc.stderr, self.errors)),
        ]
        return await self.expect(lambda line: line.startswith(("setup: ", "PlugStream 22 station")))


@pytest.mark.socket
async def test_station_run_setup_commissions_and_follows_the_claim_on_its_next_start(
    tmp_path: Path, pki: Pki
) -> None:
    """The commands a factory and an installer use: ``plugstream pki factory`` writes the
    station's factory state; ``plugstream station run --setup`` waits while unclaimed,
    charges on PlugStream Cloud once claimed, and after the owner re-points the claim at
    a third-party CSMS, follows it on its next start."""
    serial = "PS22-CLI"
    data_dir = tmp_path / "station"
    password = "third-party-password-42"
    async with (
        cloud_with_pki(tmp_path, pki, "cloud") as cloud,
        cloud_with_pki(tmp_path, pki, "third") as third,
    ):
        await third.store.stations.register(serial, password=password, security_profile=2)
        made = subprocess.run(
            [
                sys.executable,
                *["-m", "plugstream.cli", "pki", "factory", "--dir", str(pki.dir)],
                *["--serial", serial, "--data-dir", str(data_dir)],
                *["--setup-url", setup_url(cloud)],
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        # it trusts the manufacturer root for firmware signers from the factory on
        shipped = CertificateStore(data_dir / "certs").roots(MANUFACTURER_ROOT)
        assert [r.subject for r in shipped] == [
            PKIStore(pki.dir).manufacturer_root().root.certificate.subject
        ]
        station = SetupStationProcess(data_dir, setup_url(cloud))
        try:
            first = await station.start()
            assert first.startswith(
                f"setup: not claimed yet: ask the owner to claim serial {serial}"
            )
            assert (await claim(cloud, serial, ocpp_version="1.6")).status_code == 200
            banner = await station.expect(lambda line: line.startswith("PlugStream 22 station"))
            assert f"→ wss://127.0.0.1:{cloud.port}/ocpp/{serial}" in banner
            assert "security profile 2" in banner
            await station.wait_status("connected", timeout=WAIT)
            assert cloud.gateway.is_connected(serial)
            assert (await api(cloud, "PUT", f"/id-tokens/{TAG}", json={})).status_code in (200, 201)
            await station.plug()
            assert await station.swipe(TAG)
            await station.wait_status("transaction 1", timeout=WAIT)
            await station.command("unplug", lambda line: line == "unplugged")

            async def stopped() -> list[Any] | None:
                listed = (
                    await api(cloud, "GET", "/transactions", params={"station": serial})
                ).json()
                return listed if listed and not listed[0]["active"] else None

            (tx,) = await until(stopped, "the session in the cloud")
            assert tx["id_token"] == TAG

            moved = await claim(
                cloud,
                serial,
                csms_url=f"wss://127.0.0.1:{third.port}/ocpp",
                ocpp_version="2.0.1",
                password=password,
            )
            assert moved.status_code == 200
            assert await station.quit() == 0
            banner = await station.start()  # provisioned again at once: no "setup:" line
            assert f"→ wss://127.0.0.1:{third.port}/ocpp/{serial} (OCPP 2.0.1" in banner
            await until(lambda: third.gateway.is_connected(serial), "on the third-party CSMS")
            assert third.gateway.version_of(serial).value == "2.0.1"  # type: ignore[union-attr]
            assert await station.quit() == 0
        finally:
            await station.close()


@pytest.mark.unit
async def test_claims_are_kept_with_a_third_party_password_that_is_never_listed(
    store: Store,  # noqa: F811 (the fixture)
) -> None:
    """SQLite and PostgreSQL: a claim, replaced (which clears provisioned_at), provisioned,
    deleted; the owner's password for a third-party CSMS is kept for the station only."""
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    first = await store.setup.put_claim(
        "PS7-1",
        owner="Jane",
        csms_url=None,
        ocpp_version="1.6",
        security_profile=2,
        password=None,
        claimed_at=at,
    )
    assert (first.csms_url, first.password, first.provisioned_at) == (None, None, None)
    await store.setup.mark_provisioned("PS7-1", at + timedelta(minutes=5))
    got = await store.setup.get_claim("PS7-1")
    assert got is not None and got.provisioned_at == at + timedelta(minutes=5)
    moved = await store.setup.put_claim(
        "PS7-1",
        owner="Jane",
        csms_url="wss://csms.example:443/ocpp",
        ocpp_version="2.0.1",
        security_profile=2,
        password="p@ss:word/with%odd-chars",
        claimed_at=at + timedelta(hours=1),
    )
    assert moved.csms_url == "wss://csms.example:443/ocpp"
    assert moved.password == "p@ss:word/with%odd-chars"
    assert moved.provisioned_at is None
    assert [c.serial_number for c in await store.setup.list_claims()] == ["PS7-1"]
    assert await store.setup.delete_claim("PS7-1")
    assert not await store.setup.delete_claim("PS7-1")
    assert await store.setup.get_claim("PS7-1") is None


@pytest.mark.socket
async def test_cloud_serve_setup_is_the_setup_service_alone_on_the_clouds_database(
    tmp_path: Path, pki: Pki
) -> None:
    """``plugstream cloud serve --setup`` as a process: its own port and TLS name, the
    cloud's database; it sends claimed stations to the cloud named by --public-url."""
    serial = "PS7-SETUPD"
    data_dir = tmp_path / "station"
    async with cloud_with_pki(tmp_path, pki, "cloud") as cloud:
        port = free_port()
        # the process that refuses its arguments runs while the other one starts
        refusing = asyncio.create_task(
            asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "plugstream.cli", "cloud", "serve", "--setup"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
        proc = subprocess.Popen(
            cloud_serve_argv(
                port,
                tmp_path / "cloud" / "cloud.db",
                "--setup",
                *["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)],
                *["--pki", str(pki.dir), "--public-url", f"https://127.0.0.1:{cloud.port}"],
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            refused = await refusing
            assert refused.returncode == 2
            assert (
                "--setup needs --tls-cert and --tls-key (for the setup name) and --pki"
                in " ".join(refused.stderr.split())
            )
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), WAIT)
            assert line.strip() == (
                f"{READY} https://127.0.0.1:{port} "
                f"(setup service https://127.0.0.1:{port}/setup/v1/provision)"
            ), proc.stderr.read() if not line and proc.stderr else line
            factory(pki, data_dir, serial, f"https://127.0.0.1:{port}")
            with pytest.raises(NotClaimed):
                await provision(data_dir)
            assert (await claim(cloud, serial, security_profile=3)).status_code == 200
            result = await provision(data_dir)
            assert result.setup.csms_url == f"wss://127.0.0.1:{cloud.port}/ocpp"
            assert result.certificate_chain is not None
            assert (await cloud.store.stations.get(serial)) is not None
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 20) == 0
        finally:
            await asyncio.gather(refusing, return_exceptions=True)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
