"""A real station updated by a real PlugStream Cloud: the whole L01 path over real TLS.

The operator uploads an image (the cloud signs it with the PKI's Firmware Signing key)
and rolls it out; the station (Station16 / Station201, wss with Basic auth, trusting
the CSMS root and the Manufacturer root of the same ``plugstream pki``) downloads it
from the cloud over https, verifies it, installs it into its other slot, reboots and
reports Installed from the new firmware. The rollout's progress and the station's
record in the REST API show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT, MANUFACTURER_ROOT
from plugstream.station.clock import Clock, ManualClock
from plugstream.station.firmware import build_image, read_header
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.runtime import FIRMWARE_VERSION, StationRuntime
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.cloud import test_firmware_repo as repo
from tests.cloud.test_firmware_repo import Pki, upload
from tests.support import Cloud, until, until_advancing

pytestmark = pytest.mark.socket

pki = repo.pki
cloud = repo.cloud
operator = repo.operator

PASSWORD = "firmware-station-password"


@pytest.fixture
async def station_tasks() -> AsyncIterator[list[tuple[StationRuntime, asyncio.Task[None]]]]:
    made: list[tuple[StationRuntime, asyncio.Task[None]]] = []
    try:
        yield made
    finally:
        for station, task in made:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            station.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_TC_L_01_CS_a_rollout_from_plugstream_cloud_is_installed_by_a_real_station(
    version: str,
    cloud: Cloud,
    pki: Pki,
    operator: httpx.AsyncClient,
    tmp_path: Path,
    station_tasks: list[tuple[StationRuntime, asyncio.Task[None]]],
) -> None:
    sid = "FWC16" if version == "1.6" else "FWC201"
    await cloud.store.stations.register(sid, password=PASSWORD, security_profile=2)
    image = build_image("2.0.0", size=300_000, seed=5)
    shown = await upload(operator, image, version="2.0.0", filename="plugstream-2.0.0.bin")

    data_dir = tmp_path / sid
    station = new_station(version, sid, data_dir, pki)
    url = f"wss://{sid}:{PASSWORD}@127.0.0.1:{cloud.port}/ocpp"
    station_tasks.append((station, asyncio.get_running_loop().create_task(station.run(url))))

    async def registered() -> dict[str, Any] | None:
        answer = await operator.get(f"/stations/{sid}")
        record: dict[str, Any] = answer.json()
        return record if station.online and record.get("firmware_version") else None

    assert (await until(registered, "first boot"))["firmware_version"] == FIRMWARE_VERSION

    answer = await operator.post(
        f"/firmware/{shown['image_id']}/rollouts", json={"station_ids": [sid]}
    )
    assert answer.status_code == 201, answer.text
    rollout_id = answer.json()["rollout_id"]

    async def installed() -> dict[str, Any] | None:
        progress: dict[str, Any] = (await operator.get(f"/rollouts/{rollout_id}")).json()
        [target] = progress["targets"]
        return progress if target["status"] == "Installed" else None

    done = await until(installed, "rollout Installed")
    assert done["counts"] == {"Installed": 1}
    assert station.firmware.version == "2.0.0"
    assert (data_dir / "firmware" / "slot-b").read_bytes() == image

    async def on_record() -> bool:
        record = (await operator.get(f"/stations/{sid}")).json()
        return bool(record.get("firmware_version") == "2.0.0")

    await until(on_record, "the cloud's record shows firmware 2.0.0")


# -- helpers for the cut download and the rollback ---------------------------------------

STATUS_LOG = "%s firmware status %s (request %s)"
KEPT_LOG = "firmware download attempt %d failed (%d bytes kept): %s"


#: the longest pause of :func:`new_station`'s reconnect back-off (0.2 * 2 + 0.1 s)
BACKOFF_MAX_S = 0.5


def new_station(
    version: str, sid: str, data_dir: Path, pki: Pki, clock: Clock | None = None
) -> StationRuntime:
    """A real station trusting the PKI's CSMS root (TLS) and Manufacturer root (signatures)."""
    backoff = ReconnectBackoff(0.2, 0.1, 1, random.Random(3))
    kind = Station16 if version == "1.6" else Station201
    station: StationRuntime = kind(
        sid, PLUGSTREAM_7, data_dir, clock=clock, backoff=backoff, call_timeout=5.0
    )
    station.certificates.add_root(CSMS_ROOT, (pki.dir / "csms-root.pem").read_bytes())
    station.certificates.add_root(MANUFACTURER_ROOT, pki.manufacturer_root)
    return station


async def start_station(
    version: str,
    sid: str,
    cloud: Cloud,
    pki: Pki,
    operator: httpx.AsyncClient,
    data_dir: Path,
    station_tasks: list[tuple[StationRuntime, asyncio.Task[None]]],
    clock: Clock | None = None,
) -> StationRuntime:
    """Register ``sid`` (profile 2), run its station over wss and wait for its first boot."""
    await cloud.store.stations.register(sid, password=PASSWORD, security_profile=2)
    station = new_station(version, sid, data_dir, pki, clock)
    url = f"wss://{sid}:{PASSWORD}@127.0.0.1:{cloud.port}/ocpp"
    station_tasks.append((station, asyncio.get_running_loop().create_task(station.run(url))))

    async def registered() -> bool:
        record = (await operator.get(f"/stations/{sid}")).json()
        return bool(station.online and record.get("firmware_version") == FIRMWARE_VERSION)

    await until(registered, f"{sid}'s first boot")
    return station


async def roll_out(operator: httpx.AsyncClient, image_id: object, sid: str, **options: Any) -> int:
    answer = await operator.post(
        f"/firmware/{image_id}/rollouts", json={"station_ids": [sid], **options}
    )
    assert answer.status_code == 201, answer.text
    rollout_id: int = answer.json()["rollout_id"]
    return rollout_id


async def rollout_ends(
    operator: httpx.AsyncClient, rollout_id: int, status: str, clock: ManualClock | None = None
) -> dict[str, Any]:
    """The rollout's progress once its one target reached ``status``; a station on a
    manual ``clock`` reboots on the way, and the clock moves over its back-off pauses."""

    async def reached() -> dict[str, Any] | None:
        progress: dict[str, Any] = (await operator.get(f"/rollouts/{rollout_id}")).json()
        [target] = progress["targets"]
        return progress if target["status"] == status else None

    what = f"rollout {rollout_id} {status}"
    done: dict[str, Any] | None = await (
        until(reached, what)
        if clock is None
        else until_advancing(clock, reached, what, up_to=BACKOFF_MAX_S)
    )
    assert done is not None
    return done


async def record_shows(operator: httpx.AsyncClient, sid: str, version: str) -> None:
    async def shown() -> bool:
        record = (await operator.get(f"/stations/{sid}")).json()
        return bool(record.get("firmware_version") == version)

    await until(shown, f"the cloud's record of {sid} shows firmware {version}")


def statuses(caplog: pytest.LogCaptureFixture, sid: str, request_id: int) -> list[str]:
    """The firmware statuses ``sid`` entered for ``request_id``, in order (its own log)."""
    return [
        str(r.args[1])
        for r in caplog.records
        if r.name == "plugstream.station.firmware"
        and r.msg == STATUS_LOG
        and isinstance(r.args, tuple)
        and r.args[0] == sid
        and r.args[2] == request_id
    ]


class CuttingRelay:
    """A loopback TCP relay in front of the cloud that cuts its first connection.

    TLS passes through untouched (the station still checks the cloud's certificate for
    127.0.0.1); after ``cut_after`` bytes from the cloud the first connection is reset
    both ways, as a dropped mobile link would. ``relayed`` counts the bytes each
    connection carried from the cloud to the station.
    """

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.relayed: list[int] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> CuttingRelay:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index = len(self.relayed)
        self.relayed.append(0)
        limit = self.cut_after if index == 0 else None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return

        async def to_cloud() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
            if up_writer.can_write_eof():
                up_writer.write_eof()

        async def to_station() -> None:
            while data := await up_reader.read(65536):
                if limit is not None and self.relayed[index] + len(data) >= limit:
                    writer.write(data[: limit - self.relayed[index]])
                    self.relayed[index] = limit
                    await writer.drain()
                    return  # the cut
                writer.write(data)
                self.relayed[index] += len(data)
                await writer.drain()

        upstream = asyncio.ensure_future(to_cloud())
        try:
            await to_station()
        except OSError:
            pass
        finally:
            upstream.cancel()
            await asyncio.gather(upstream, return_exceptions=True)
            up_writer.transport.abort()
            writer.close()  # after the bytes relayed so far: the station sees the link end
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await writer.wait_closed()
            self._tasks.discard(task)


# -- a cut download resumes --------------------------------------------------------------

CUT_IMAGE_SIZE = 1_500_000
CUT_AFTER = 500_000  # bytes of the first connection, TLS handshake included


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_TC_L_01_CS_a_cut_download_from_the_cloud_resumes(
    version: str,
    cloud: Cloud,
    pki: Pki,
    operator: httpx.AsyncClient,
    tmp_path: Path,
    station_tasks: list[tuple[StationRuntime, asyncio.Task[None]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The link to the cloud drops a third of the way into the image: the station keeps
    the bytes it has, asks for the rest with ``Range`` (the cloud answers 206) after the
    retry interval, and the update completes (L01.FR.30: Downloading once per attempt;
    TC_L_01_CS: Downloaded, SignatureVerified, Installing, Installed). The second
    connection carries only the rest: a station on a metered link does not pay twice."""
    caplog.set_level(logging.INFO, logger="plugstream.station.firmware")
    sid = "FWCUT16" if version == "1.6" else "FWCUT201"
    data_dir = tmp_path / sid
    station = await start_station(version, sid, cloud, pki, operator, data_dir, station_tasks)
    image = build_image("2.0.0", size=CUT_IMAGE_SIZE, seed=11)
    shown = await upload(operator, image, version="2.0.0", filename="plugstream-2.0.0.bin")

    async with CuttingRelay(cloud.port, CUT_AFTER) as relay:
        # the location the station is sent goes through the relay
        cloud.config.public_url = f"https://127.0.0.1:{relay.port}"
        rollout_id = await roll_out(operator, shown["image_id"], sid, retries=2, retry_interval=0)
        done = await rollout_ends(operator, rollout_id, "Installed")
        relayed = list(relay.relayed)

    assert done["counts"] == {"Installed": 1}
    [target] = done["targets"]
    assert statuses(caplog, sid, target["request_id"]) == [
        "Downloading",
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    # the first attempt kept what it had; the second carried on from there
    [kept] = [
        int(str(r.args[1]))
        for r in caplog.records
        if r.msg == KEPT_LOG and isinstance(r.args, tuple)
    ]
    assert 0 < kept < CUT_AFTER
    assert len(relayed) == 2 and relayed[0] == CUT_AFTER
    overhead = 64 * 1024  # TLS handshake and record framing
    assert relayed[1] < len(image) - kept + overhead
    assert sum(relayed) < len(image) + 2 * overhead  # far less than two full images
    assert station.firmware.version == "2.0.0"
    assert (data_dir / "firmware" / "slot-b").read_bytes() == image
    assert not (data_dir / "firmware" / "download.part").exists()
    await record_shows(operator, sid, "2.0.0")


# -- a firmware that cannot reach the cloud rolls back -------------------------------------

ROLLBACK_TIMEOUT_S = 3


async def set_rollback_timeout(
    operator: httpx.AsyncClient, version: str, sid: str, seconds: int
) -> None:
    """Through the cloud's command API, as an operator would (1.6 ChangeConfiguration,
    2.0.1 SetVariables)."""
    if version == "1.6":
        answer = await operator.post(
            f"/stations/{sid}/commands/ChangeConfiguration",
            json={"key": "FirmwareRollbackTimeout", "value": str(seconds)},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "Accepted"}
    else:
        answer = await operator.post(
            f"/stations/{sid}/commands/SetVariables",
            json={
                "setVariableData": [
                    {
                        "component": {"name": "FirmwareCtrlr"},
                        "variable": {"name": "RollbackTimeout"},
                        "attributeValue": str(seconds),
                    }
                ]
            },
        )
        assert answer.status_code == 200, answer.text
        [result] = answer.json()["setVariableResult"]
        assert result["attributeStatus"] == "Accepted"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_TC_L_08_CS_firmware_that_cannot_reach_the_cloud_rolls_back(
    version: str,
    cloud: Cloud,
    pki: Pki,
    operator: httpx.AsyncClient,
    tmp_path: Path,
    station_tasks: list[tuple[StationRuntime, asyncio.Task[None]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A signed firmware 3.0.0 installs and boots but cannot open a connection: no
    Accepted BootNotification within FirmwareRollbackTimeout / FirmwareCtrlr.RollbackTimeout,
    so the station boots 2.0.0 again and, connected, reports InstallVerificationFailed
    (L01.FR.29; TC_L_08_CS recommends falling back to the previous firmware). The cloud
    keeps 2.0.0 on the station's record; the rollout shows the failure."""
    caplog.set_level(logging.INFO, logger="plugstream.station.firmware")
    sid = "FWRB16" if version == "1.6" else "FWRB201"
    data_dir = tmp_path / sid
    clock = ManualClock()
    station = await start_station(
        version, sid, cloud, pki, operator, data_dir, station_tasks, clock
    )

    def now() -> str:  # the download is due by the station's clock, not the cloud's
        return clock.now().isoformat()

    good = build_image("2.0.0", size=200_000, seed=12)
    shown = await upload(operator, good, version="2.0.0", filename="plugstream-2.0.0.bin")
    rollout_id = await roll_out(operator, shown["image_id"], sid, retrieve_at=now())
    await rollout_ends(operator, rollout_id, "Installed", clock)
    await record_shows(operator, sid, "2.0.0")

    async def online_on_2() -> bool:  # proved itself and back online: not on probation
        return bool(station.online and not station.firmware.boot.pending_verification)

    await until(online_on_2, "2.0.0 online")
    await set_rollback_timeout(operator, version, sid, ROLLBACK_TIMEOUT_S)

    bad = build_image("3.0.0", network=False, size=200_000, seed=13)
    shown = await upload(operator, bad, version="3.0.0", filename="plugstream-3.0.0.bin")
    rollout_id = await roll_out(operator, shown["image_id"], sid, retrieve_at=now())

    async def on_3_offline() -> bool:
        return station.firmware.version == "3.0.0" and not station.online

    await until(on_3_offline, "3.0.0 booted, offline")
    await clock.advance(ROLLBACK_TIMEOUT_S - 0.5)
    assert await on_3_offline()  # waited for the timeout
    await clock.advance(0.5)
    done = await rollout_ends(operator, rollout_id, "InstallVerificationFailed", clock)
    assert done["counts"] == {"InstallVerificationFailed": 1}
    [target] = done["targets"]
    assert statuses(caplog, sid, target["request_id"]) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "InstallVerificationFailed",
    ]
    assert station.online and station.firmware.version == "2.0.0"
    boot = station.firmware.boot
    assert not boot.pending_verification
    active = read_header(data_dir / "firmware" / f"slot-{boot.active}")
    assert active is not None and active.version == "2.0.0" and active.network
    # the failed image stays in the other slot, never booted again
    assert (data_dir / "firmware" / f"slot-{boot.inactive}").read_bytes() == bad
    record = (await operator.get(f"/stations/{sid}")).json()
    assert record["firmware_version"] == "2.0.0"
