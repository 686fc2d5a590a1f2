"""Signed firmware updates end to end (2.0.1 L01, 1.6 Security Whitepaper SignedUpdateFirmware).

A real station (Station16 / Station201) against the independent ``ocpp``-library CSMS
on loopback, downloading over real TLS (certificates from plugstream.pki) from an HTTPS
file server written here, which honours ``Range`` and can cut a transfer after N bytes.
Images are simulated (:func:`build_image`); signatures and certificate checks are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import NotSupportedError
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import call as call201
from websockets.asyncio.server import ServerConnection

from plugstream.pki.authority import CertificateAuthority, IssuedCertificate
from plugstream.pki.firmware import sign_firmware
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT, MANUFACTURER_ROOT
from plugstream.station.clock import Clock, ManualClock
from plugstream.station.download import (
    DownloadError,
    parse_content_range,
    parse_head,
    request_head,
)
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.firmware import BUSY_POLL_S, build_image, read_header
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.runtime import FIRMWARE_VERSION, StationRuntime
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.interop.ocpplib_csms import CentralSystem16, CentralSystem201, OcppLibCsms, Received
from tests.interop.ocpplib_csms import on as lib_on
from tests.support import WAIT, until, until_advancing

TAG = "04A2B3C4"
ROLLBACK_S = 3  # the station's rollback timeout in these tests (seconds of station time)
VERSIONS = ("1.6", "2.0.1")


# --------------------------------------------------------------------------- the CSMS


class _Cs16(CentralSystem16):
    """The library's 1.6 central system, with the security extension's firmware status."""

    @lib_on("SignedFirmwareStatusNotification")
    def on_signed_firmware_status(self, **_: Any) -> Any:
        return result16.SignedFirmwareStatusNotification()


class FirmwareCsms(OcppLibCsms):
    """:class:`OcppLibCsms` that also takes SignedFirmwareStatusNotification (1.6)."""

    async def _handle(self, ws: ServerConnection) -> None:
        station_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1] if ws.request else ""
        self._count += 1
        cp: Any = (
            CentralSystem201(station_id, ws, self, self._count)
            if ws.subprotocol == "ocpp2.0.1"
            else _Cs16(station_id, ws, self, self._count)
        )
        self.connections[station_id] = cp
        try:
            with contextlib.suppress(Exception):
                await cp.start()
        finally:
            if self.connections.get(station_id) is cp:
                del self.connections[station_id]

    async def update_firmware(
        self, version: str, station_id: str, request_id: int, firmware: dict[str, Any], **kw: Any
    ) -> dict[str, Any]:
        """SignedUpdateFirmware (1.6) or UpdateFirmware (2.0.1); the station's answer."""
        if version == "1.6":
            return await self._call(
                station_id,
                call16.SignedUpdateFirmware(request_id=request_id, firmware=firmware, **kw),
            )
        return await self._call(
            station_id, call201.UpdateFirmware(request_id=request_id, firmware=firmware, **kw)
        )


def status_action(version: str) -> str:
    return "SignedFirmwareStatusNotification" if version == "1.6" else "FirmwareStatusNotification"


def statuses(csms: OcppLibCsms, version: str, station_id: str) -> list[tuple[str, int | None]]:
    return [
        (p["status"], p.get("requestId")) for p in csms.payloads(station_id, status_action(version))
    ]


def boot_versions(csms: OcppLibCsms, version: str, station_id: str) -> list[str]:
    out = []
    for p in csms.payloads(station_id, "BootNotification"):
        out.append(
            p["firmwareVersion"] if version == "1.6" else p["chargingStation"]["firmwareVersion"]
        )
    return out


def security_events(csms: OcppLibCsms, station_id: str) -> list[dict[str, Any]]:
    return csms.payloads(station_id, "SecurityEventNotification")


async def wait_status(
    csms: OcppLibCsms, version: str, station_id: str, status: str, count: int = 1
) -> list[tuple[str, int | None]]:
    action = status_action(version)
    await csms.wait_for(
        station_id,
        lambda rs: sum(r.action == action and r.payload["status"] == status for r in rs) >= count,
        WAIT,
        what=f"{count} x {action} {status}",
    )
    return statuses(csms, version, station_id)


async def wait_event(csms: OcppLibCsms, station_id: str, kind: str) -> dict[str, Any]:
    found: list[Received] = await csms.wait_for(
        station_id,
        lambda rs: any(
            r.action == "SecurityEventNotification" and r.payload["type"] == kind for r in rs
        ),
        WAIT,
        what=f"security event {kind}",
    )
    return next(
        r.payload
        for r in found
        if r.action == "SecurityEventNotification" and r.payload["type"] == kind
    )


@pytest.fixture
async def csms() -> AsyncIterator[FirmwareCsms]:
    server = FirmwareCsms(heartbeat_interval=60)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# --------------------------------------------------------------------------- the file server


@dataclass
class FileServer:
    """An HTTPS file server on 127.0.0.1: serves ``files``, honours ``Range: bytes=N-``,
    and closes the connection after ``cuts[i]`` body bytes of its i-th response (one
    entry used per response; a negative entry stalls after that many bytes instead)."""

    certificate: IssuedCertificate
    files: dict[str, bytes] = field(default_factory=dict)
    cuts: list[int] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _cert_dir: Path | None = None

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def start(self, cert_dir: Path) -> None:
        cert_dir.mkdir(parents=True, exist_ok=True)
        self.certificate.write(cert_dir / "server.pem", cert_dir / "server.key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_dir / "server.pem", cert_dir / "server.key")
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ssl.SSLError):
                return  # e.g. the station refused our certificate and hung up
            lines = raw.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            self.requests.append({"path": path, **headers})
            data = self.files.get(path)
            if data is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            start = 0
            wanted = headers.get("range", "")
            if wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[6:-1])
                head = (
                    f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(data) - start}\r\n"
                    f"Content-Range: bytes {start}-{len(data) - 1}/{len(data)}\r\n\r\n"
                )
            else:
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n"
            body = data[start:]
            cut = self.cuts.pop(0) if self.cuts else None
            writer.write(head.encode())
            if cut is None:
                writer.write(body)
                await writer.drain()
                return
            writer.write(body[: abs(cut)])
            await writer.drain()
            if cut < 0:  # stall until the station hangs up (a new request, or killed)
                with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
                    await asyncio.wait_for(reader.read(), WAIT)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)


# --------------------------------------------------------------------------- PKI


@dataclass
class Pki:
    csms: CertificateAuthority
    maker: CertificateAuthority
    signer: IssuedCertificate

    def firmware(
        self,
        image: bytes,
        location: str,
        *,
        signer: IssuedCertificate | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """The FirmwareType of an update to ``image`` at ``location``, to fetch now (by
        the station's clock: ``now``, default the wall's)."""
        signer = signer or self.signer
        now = datetime.now(UTC) if now is None else now
        return {
            "location": location,
            "retrieveDateTime": (now - timedelta(minutes=1)).isoformat(),
            "signingCertificate": signer.cert_pem.decode(),
            "signature": sign_firmware(image, signer.key),
        }


@pytest.fixture(scope="module")
def pki() -> Pki:
    maker = CertificateAuthority.create(
        "PlugStream Manufacturer Root", organization="PlugStream Manufacturing"
    )
    return Pki(
        CertificateAuthority.create("PlugStream CSMS Root"),
        maker,
        maker.issue_firmware_signing(),
    )


@pytest.fixture
async def files(pki: Pki, tmp_path: Path) -> AsyncIterator[FileServer]:
    server = FileServer(pki.csms.issue_server(("localhost",), ips=("127.0.0.1",)))
    await server.start(tmp_path / "fileserver")
    try:
        yield server
    finally:
        await server.stop()


# --------------------------------------------------------------------------- the station


def make_station(
    version: str, station_id: str, data_dir: Path, pki: Pki, clock: Clock | None = None
) -> StationRuntime:
    backoff = ReconnectBackoff(0.2, 0.1, 1, random.Random(7))
    station: StationRuntime
    if version == "1.6":
        station = Station16(
            station_id,
            PLUGSTREAM_7,
            data_dir,
            clock=clock,
            backoff=backoff,
            call_timeout=5.0,
            config_defaults={"FirmwareRollbackTimeout": str(ROLLBACK_S)},
        )
    else:
        station = Station201(
            station_id,
            PLUGSTREAM_7,
            data_dir,
            clock=clock,
            backoff=backoff,
            call_timeout=5.0,
            device_model_defaults={"FirmwareCtrlr.RollbackTimeout": str(ROLLBACK_S)},
        )
    station.certificates.add_root(CSMS_ROOT, pki.csms.root_pem)
    station.certificates.add_root(MANUFACTURER_ROOT, pki.maker.root_pem)
    return station


@pytest.fixture
async def stations(
    csms: FirmwareCsms,
) -> AsyncIterator[list[tuple[StationRuntime, asyncio.Task[None]]]]:
    made: list[tuple[StationRuntime, asyncio.Task[None]]] = []
    try:
        yield made
    finally:
        for station, task in made:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            with contextlib.suppress(Exception):
                station.close()  # type: ignore[attr-defined]


async def start(
    made: list[tuple[StationRuntime, asyncio.Task[None]]],
    csms: FirmwareCsms,
    version: str,
    station_id: str,
    data_dir: Path,
    pki: Pki,
    *,
    boots: int = 1,
    clock: Clock | None = None,
) -> StationRuntime:
    station = make_station(version, station_id, data_dir, pki, clock)
    made.append((station, asyncio.get_running_loop().create_task(station.run(csms.url))))
    await csms.wait_action(station_id, "BootNotification", boots, WAIT)
    await csms.wait_connected(station_id)
    await csms.wait_for(station_id, lambda rs: station.online, WAIT, what="online")
    return station


def boot_json(data_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((data_dir / "firmware" / "boot.json").read_text())
    return data


#: the longest pause of :func:`make_station`'s reconnect back-off (0.2 * 2 + 0.1 s)
BACKOFF_MAX_S = 0.5


async def through_reboots(
    clock: ManualClock, csms: OcppLibCsms, version: str, sid: str, status: str
) -> list[tuple[str, int | None]]:
    """:func:`wait_status` for a station on ``clock`` that reboots on the way: before it
    connects again it pauses (its back-off, on its clock), which the clock moves over."""
    action = status_action(version)
    await until_advancing(
        clock,
        lambda: any(
            r.action == action and r.payload["status"] == status for r in csms.messages(sid)
        ),
        f"{action} {status}",
        up_to=BACKOFF_MAX_S,
    )
    return statuses(csms, version, sid)


async def round_trip(csms: OcppLibCsms, version: str, sid: str) -> None:
    """A CALL the station answers: what it sent before answering has arrived by then (one
    connection, in order). The sync point of a check that nothing else was sent."""
    if version == "1.6":
        await csms._call(sid, call16.GetConfiguration(key=["HeartbeatInterval"]))
    else:
        await csms._call(
            sid,
            call201.GetVariables(
                get_variable_data=[
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            ),
        )


def update_failures(data_dir: Path) -> int:
    """Failed download attempts of the update under way (update.json)."""
    path = data_dir / "firmware" / "update.json"
    return int(json.loads(path.read_text()).get("failures", 0)) if path.exists() else 0


# --------------------------------------------------------------------------- journeys


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_L_01_CS_a_cut_download_resumes_with_range_installs_into_the_other_slot_and_reboots(
    version: str, csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """L01.FR.01/04/10/15/28/31/32 (1.6: L01.FR.01/04/10/15): the first transfer is cut
    after 70 000 bytes; the retry asks for ``bytes=70000-``; the image is verified,
    copied into slot b, the station reboots and its new BootNotification says 1.2.0;
    Installed is sent by the new firmware, then the FirmwareUpdated security event."""
    sid = f"FW-OK-{version}"
    image = build_image("1.2.0", size=200_000, seed=1)
    files.files["/fw/1.2.0.bin"] = image
    files.cuts = [70_000]
    data_dir = tmp_path / sid
    clock = ManualClock()
    await start(stations, csms, version, sid, data_dir, pki, clock=clock)
    assert boot_versions(csms, version, sid) == [FIRMWARE_VERSION]

    answer = await csms.update_firmware(
        version,
        sid,
        11,
        pki.firmware(image, files.url("/fw/1.2.0.bin"), now=clock.now()),
        retries=2,
        retry_interval=1,
    )
    assert answer == {"status": "Accepted"}
    # the cut attempt failed (update.json says so before the station waits to retry)
    await until(lambda: update_failures(data_dir) == 1, "the first attempt failed")
    await clock.advance(1)  # the retry interval
    seen = await through_reboots(clock, csms, version, sid, "Installed")

    assert [s for s, _ in seen] == [
        "Downloading",
        "Downloading",  # the retry after the cut (L01.FR.30 remark)
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    assert {rid for _, rid in seen} == {11}
    assert [r.get("range") for r in files.requests] == [None, "bytes=70000-"]
    assert boot_versions(csms, version, sid) == [FIRMWARE_VERSION, "1.2.0"]
    boot = boot_json(data_dir)
    assert (boot["active"], boot["previous"], boot["pending_verification"]) == ("b", "a", False)
    assert (data_dir / "firmware" / "slot-b").read_bytes() == image
    assert not (data_dir / "firmware" / "download.part").exists()
    event = await wait_event(csms, sid, "FirmwareUpdated")
    assert "1.2.0" in event.get("techInfo", "")
    # Installed came on the new firmware's connection, after its BootNotification
    installed = csms.messages(sid, status_action(version))[-1]
    second_boot = csms.messages(sid, "BootNotification")[-1]
    assert installed.connection == second_boot.connection > 1
    if version == "2.0.1":
        assert second_boot.payload["reason"] == "FirmwareUpdate"
        # L01.FR.25: asked for the firmware status after Installed, the station is Idle
        answer = await csms._call(
            sid, call201.TriggerMessage(requested_message="FirmwareStatusNotification")
        )
        assert answer == {"status": "Accepted"}
        assert (await wait_status(csms, version, sid, "Idle"))[-1] == ("Idle", None)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_L_08_CS_an_update_that_cannot_reach_the_csms_rolls_back_to_the_previous_slot(
    version: str, csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """L01.FR.29 / TC_L_08_CS: after a good update to 1.2.0 (slot b), 1.3.0 cannot open
    connections: it is installed into slot a and booted, gets no BootNotification out
    within the rollback timeout, and the station falls back to slot b, boots 1.2.0
    again and reports InstallVerificationFailed for the second request."""
    sid = f"FW-RB-{version}"
    good, bad = build_image("1.2.0", size=50_000), build_image("1.3.0", network=False, size=50_000)
    files.files.update({"/fw/good": good, "/fw/bad": bad})
    data_dir = tmp_path / sid
    clock = ManualClock()
    station = await start(stations, csms, version, sid, data_dir, pki, clock=clock)
    assert await csms.update_firmware(
        version, sid, 1, pki.firmware(good, files.url("/fw/good"), now=clock.now()), retries=0
    ) == {"status": "Accepted"}
    await through_reboots(clock, csms, version, sid, "Installed")
    assert boot_json(data_dir)["active"] == "b"

    assert await csms.update_firmware(
        version, sid, 2, pki.firmware(bad, files.url("/fw/bad"), now=clock.now()), retries=0
    ) == {"status": "Accepted"}
    await until(
        lambda: station.firmware.version == "1.3.0" and not station.online, "1.3.0 booted, offline"
    )
    await clock.advance(ROLLBACK_S)  # no BootNotification got out: the deadline passes
    seen = await through_reboots(clock, csms, version, sid, "InstallVerificationFailed")

    assert [s for s, rid in seen if rid == 2] == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "InstallVerificationFailed",
    ]
    # booted: factory, 1.2.0, then 1.2.0 again after the rollback; 1.3.0 never got out
    assert boot_versions(csms, version, sid) == [FIRMWARE_VERSION, "1.2.0", "1.2.0"]
    boot = boot_json(data_dir)
    assert (boot["active"], boot["pending_verification"]) == ("b", False)
    assert boot["slots"]["a"]["version"] == "1.3.0"  # kept in the inactive slot
    assert read_header(data_dir / "firmware" / "slot-b") == read_header(good)
    # the failure status went out on the rolled-back firmware's connection
    last = csms.messages(sid, status_action(version))[-1]
    assert last.connection == csms.messages(sid, "BootNotification")[-1].connection


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_L_02_03_CS_download_and_install_wait_for_their_date_times(
    version: str, csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """L01.FR.13/16: retrieveDateTime in the future: DownloadScheduled until then;
    installDateTime in the future: InstallScheduled, installed at that time."""
    sid = f"FW-SCHED-{version}"
    image = build_image("1.5.0", size=20_000)
    files.files["/fw/s"] = image
    clock = ManualClock()
    await start(stations, csms, version, sid, tmp_path / sid, pki, clock=clock)
    now = clock.now()
    firmware = pki.firmware(image, files.url("/fw/s"), now=now)
    firmware["retrieveDateTime"] = (now + timedelta(seconds=1.5)).isoformat()
    firmware["installDateTime"] = (now + timedelta(seconds=3)).isoformat()
    assert await csms.update_firmware(version, sid, 31, firmware) == {"status": "Accepted"}
    await wait_status(csms, version, sid, "DownloadScheduled")
    await clock.advance(1.4)
    await round_trip(csms, version, sid)
    # the download waited for retrieveDateTime
    assert [s for s, _ in statuses(csms, version, sid)] == ["DownloadScheduled"]
    await clock.advance(0.1)
    await wait_status(csms, version, sid, "InstallScheduled")
    await clock.advance(1.4)
    await round_trip(csms, version, sid)
    # the install waited for installDateTime
    assert statuses(csms, version, sid)[-1] == ("InstallScheduled", 31)
    await clock.advance(0.1)
    seen = await through_reboots(clock, csms, version, sid, "Installed")
    assert [s for s, _ in seen] == [
        "DownloadScheduled",
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "InstallScheduled",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_L_15_CS_the_install_waits_for_the_running_transaction_to_end(
    version: str, csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """L01.FR.06/33/34: with a car charging the image is downloaded and verified, then
    InstallScheduled; nothing is installed or rebooted until the transaction ended."""
    sid = f"FW-TX-{version}"
    csms.tags[TAG] = "Accepted"
    image = build_image("1.6.0", size=20_000)
    files.files["/fw/t"] = image
    clock = ManualClock()
    station = await start(stations, csms, version, sid, tmp_path / sid, pki, clock=clock)
    station.plug_in(Ev(CITY_CAR, soc=30.0))  # type: ignore[attr-defined]
    assert await station.swipe(TAG)  # type: ignore[attr-defined]
    assert station.transaction is not None  # type: ignore[attr-defined]
    assert await csms.update_firmware(
        version, sid, 41, pki.firmware(image, files.url("/fw/t"), now=clock.now())
    ) == {"status": "Accepted"}
    seen = await wait_status(csms, version, sid, "InstallScheduled")
    await clock.advance(BUSY_POLL_S)  # the station looks again: the car still charges
    await round_trip(csms, version, sid)
    assert [s for s, _ in statuses(csms, version, sid)] == [s for s, _ in seen]
    assert [s for s, _ in seen] == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "InstallScheduled",
    ]
    assert boot_versions(csms, version, sid) == [FIRMWARE_VERSION]

    station.unplug()  # type: ignore[attr-defined]
    await clock.advance(BUSY_POLL_S)  # its next look: the transaction has ended
    await through_reboots(clock, csms, version, sid, "Installed")
    assert boot_versions(csms, version, sid) == [FIRMWARE_VERSION, "1.6.0"]
    # the transaction's last message went out before the installation began
    ended = "StopTransaction" if version == "1.6" else "TransactionEvent"
    sent = csms.messages(sid, ended, status_action(version))
    last_tx = max(i for i, r in enumerate(sent) if r.action == ended)
    installing = next(
        i for i, r in enumerate(sent) if r.action != ended and r.payload["status"] == "Installing"
    )
    assert last_tx < installing


# --------------------------------------------------------------------------- refusals


def _nothing_installed(csms: OcppLibCsms, version: str, sid: str, data_dir: Path) -> None:
    assert boot_versions(csms, version, sid) == [FIRMWARE_VERSION]
    assert not (data_dir / "firmware" / "slot-b").exists()
    assert not (data_dir / "firmware" / "download.part").exists()
    boot_file = data_dir / "firmware" / "boot.json"
    assert not boot_file.exists() or boot_json(data_dir)["active"] == "a"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_L_06_CS_an_image_with_one_flipped_byte_is_refused_with_InvalidSignature(
    version: str, csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """L01.FR.03/04: the signature is over the original; one byte differs in the file
    served: InvalidSignature, security event InvalidFirmwareSignature, nothing installed."""
    sid = f"FW-SIG-{version}"
    image = build_image("1.2.0", size=30_000)
    tampered = bytearray(image)
    tampered[20_000] ^= 0x01
    files.files["/fw/x"] = bytes(tampered)
    data_dir = tmp_path / sid
    await start(stations, csms, version, sid, data_dir, pki)
    assert await csms.update_firmware(
        version, sid, 5, pki.firmware(image, files.url("/fw/x")), retries=0
    ) == {"status": "Accepted"}
    seen = await wait_status(csms, version, sid, "InvalidSignature")
    assert seen == [("Downloading", 5), ("Downloaded", 5), ("InvalidSignature", 5)]
    await wait_event(csms, sid, "InvalidFirmwareSignature")
    _nothing_installed(csms, version, sid, data_dir)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_L_05_CS_a_signer_from_another_manufacturer_root_is_refused_with_InvalidCertificate(
    version: str, csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """2.0.1 L01.FR.02/21/22, 1.6 L01.FR.02/23/24: a valid signature by a signer the
    station's manufacturer root did not issue: InvalidCertificate, security event
    InvalidFirmwareSigningCertificate, nothing downloaded or installed."""
    sid = f"FW-CERT-{version}"
    image = build_image("1.2.0", size=30_000)
    files.files["/fw/x"] = image
    stranger = CertificateAuthority.create("Other Manufacturer Root", organization="Other")
    data_dir = tmp_path / sid
    await start(stations, csms, version, sid, data_dir, pki)
    answer = await csms.update_firmware(
        version,
        sid,
        6,
        pki.firmware(image, files.url("/fw/x"), signer=stranger.issue_firmware_signing()),
    )
    assert answer == {"status": "InvalidCertificate"}
    await wait_event(csms, sid, "InvalidFirmwareSigningCertificate")
    await round_trip(csms, version, sid)  # a download would have said Downloading by now
    assert files.connections == 0
    assert statuses(csms, version, sid) == []
    _nothing_installed(csms, version, sid, data_dir)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_L_07_CS_a_download_server_with_an_untrusted_certificate_gets_no_request(
    version: str, csms: FirmwareCsms, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """The station checks the file server like the CSMS (A00.FR.308-310): a server
    certificate from an unknown CA gets no HTTP request; DownloadFailed and the security
    event InvalidCsmsCertificate (1.6: InvalidCentralSystemCertificate) naming the host."""
    sid = f"FW-TLS-{version}"
    image = build_image("1.2.0", size=30_000)
    rogue = FileServer(CertificateAuthority.create("Rogue Root").issue_server(ips=("127.0.0.1",)))
    rogue.files["/fw/x"] = image
    await rogue.start(tmp_path / "rogue")
    try:
        data_dir = tmp_path / sid
        await start(stations, csms, version, sid, data_dir, pki)
        assert await csms.update_firmware(
            version, sid, 7, pki.firmware(image, rogue.url("/fw/x")), retries=3, retry_interval=1
        ) == {"status": "Accepted"}
        seen = await wait_status(csms, version, sid, "DownloadFailed")
        assert seen == [("Downloading", 7), ("DownloadFailed", 7)]  # no retry: it cannot help
        kind = "InvalidCentralSystemCertificate" if version == "1.6" else "InvalidCsmsCertificate"
        event = await wait_event(csms, sid, kind)
        assert "127.0.0.1" in event.get("techInfo", "")
        assert rogue.connections == 1 and rogue.requests == []
        _nothing_installed(csms, version, sid, data_dir)
    finally:
        await rogue.stop()


@pytest.mark.socket
async def test_at_security_profile_2_a_plain_http_location_is_refused(
    csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """The article: firmware comes over HTTPS with the server verified. A station at
    security profile 2 or 3 does not even connect to an http:// location: DownloadFailed."""
    sid = "FW-HTTP-16"
    image = build_image("1.2.0", size=30_000)
    files.files["/fw/plain"] = image
    data_dir = tmp_path / sid
    station = await start(stations, csms, "1.6", sid, data_dir, pki)
    station.config.set_internal("SecurityProfile", "2")  # type: ignore[attr-defined]
    location = files.url("/fw/plain").replace("https://", "http://")
    assert await csms.update_firmware(
        "1.6", sid, 9, pki.firmware(image, location), retries=3, retry_interval=1
    ) == {"status": "Accepted"}
    seen = await wait_status(csms, "1.6", sid, "DownloadFailed")
    assert seen == [("DownloadFailed", 9)]
    assert files.connections == 0
    _nothing_installed(csms, "1.6", sid, data_dir)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_TC_L_10_CS_a_new_request_cancels_the_download_in_progress(
    version: str, csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """2.0.1 L01.FR.24, 1.6 L01.FR.26: a request while another download runs cancels it
    (AcceptedCanceled); the second image is the one installed."""
    sid = f"FW-CANCEL-{version}"
    first, second = build_image("3.0.0", size=80_000), build_image("3.0.1", size=40_000)
    files.files.update({"/fw/first": first, "/fw/second": second})
    files.cuts = [-10_000]  # the first transfer stalls after 10 000 bytes
    data_dir = tmp_path / sid
    await start(stations, csms, version, sid, data_dir, pki)
    assert await csms.update_firmware(
        version, sid, 21, pki.firmware(first, files.url("/fw/first"))
    ) == {"status": "Accepted"}
    await wait_status(csms, version, sid, "Downloading")
    assert await csms.update_firmware(
        version, sid, 22, pki.firmware(second, files.url("/fw/second"))
    ) == {"status": "AcceptedCanceled"}
    seen = await wait_status(csms, version, sid, "Installed")
    assert seen[0] == ("Downloading", 21)
    assert {rid for _, rid in seen[1:]} == {22}
    assert boot_versions(csms, version, sid) == [FIRMWARE_VERSION, "3.0.1"]
    assert [r["path"] for r in files.requests] == ["/fw/first", "/fw/second"]
    assert files.requests[1].get("range") is None  # nothing of the first image is reused


@pytest.mark.socket
async def test_a_1_6_station_with_signed_updates_refuses_the_unsigned_UpdateFirmware(
    csms: FirmwareCsms, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """1.6 Security Whitepaper L01.FR.20: UpdateFirmware.req gets CALLERROR NotSupported."""
    sid = "FW-UNSIGNED"
    await start(stations, csms, "1.6", sid, tmp_path / sid, pki)
    with pytest.raises(NotSupportedError):
        await csms._call(
            sid,
            call16.UpdateFirmware(
                location="https://127.0.0.1:1/x", retrieve_date="2026-01-01T00:00:00Z"
            ),
        )
    assert not (tmp_path / sid / "firmware" / "update.json").exists()


# --------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_a_download_interrupted_by_a_process_kill_resumes_after_restart(
    version: str, csms: FirmwareCsms, files: FileServer, pki: Pki, tmp_path: Path, stations: Any
) -> None:
    """Durability: the station dies (no clean stop) 40 000 bytes into the image; the next
    process finds update.json and the partial file, and asks for ``bytes=40000-``."""
    sid = f"FW-KILL-{version}"
    image = build_image("2.0.0", size=120_000)
    files.files["/fw/k"] = image
    files.cuts = [-40_000]  # send 40 000 bytes, then stall
    data_dir = tmp_path / sid
    first = await start(stations, csms, version, sid, data_dir, pki)
    assert await csms.update_firmware(
        version, sid, 9, pki.firmware(image, files.url("/fw/k")), retries=1, retry_interval=1
    ) == {"status": "Accepted"}
    part = data_dir / "firmware" / "download.part"
    await until(
        lambda: part.exists() and part.stat().st_size == 40_000, "40 000 bytes in download.part"
    )
    _, task = stations.pop()
    task.cancel()  # the process is gone: no close(), nothing saved on the way out
    await asyncio.gather(task, return_exceptions=True)
    first.journal.close()  # the OS would release the file

    await start(stations, csms, version, sid, data_dir, pki, boots=2)
    await wait_status(csms, version, sid, "Installed")
    assert [r.get("range") for r in files.requests] == [None, "bytes=40000-"]
    assert boot_versions(csms, version, sid)[-1] == "2.0.0"
    assert (data_dir / "firmware" / "slot-b").read_bytes() == image


# --------------------------------------------------------------------------- pure parts


@pytest.mark.unit
def test_an_image_says_its_version_and_whether_it_can_use_the_network() -> None:
    image = build_image("9.9.9", network=False, size=1000, seed=3)
    assert len(image) == 1000 and image == build_image("9.9.9", network=False, size=1000, seed=3)
    header = read_header(image)
    assert header is not None and (header.version, header.network) == ("9.9.9", False)
    assert read_header(b"\x7fELF not ours") is None


@pytest.mark.unit
def test_the_response_head_and_content_range_are_parsed_strictly() -> None:
    head = parse_head(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-9/10\r\nX: a")
    assert (head.status, head.header("content-range")) == (206, "bytes 5-9/10")
    assert parse_content_range("bytes 5-9/10") == (5, 9, 10)
    assert parse_content_range("bytes 0-0/*") == (0, 0, None)
    for bad in ("bytes 9-5/10", "bytes 5-10/10", "items 1-2/3"):
        with pytest.raises(DownloadError):
            parse_content_range(bad)
    with pytest.raises(DownloadError):
        parse_head(b"SSH-2.0-OpenSSH")
    assert b"Range: bytes=42-" in request_head("127.0.0.1", 8443, 443, "/fw", 42)
    assert b"Range" not in request_head("127.0.0.1", 443, 443, "/fw", 0)
