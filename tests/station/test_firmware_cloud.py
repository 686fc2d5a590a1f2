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
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT, MANUFACTURER_ROOT
from plugstream.station.firmware import build_image
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station16 import FIRMWARE_VERSION, Station16, StationRuntime
from plugstream.station.station201 import Station201
from tests.cloud import test_firmware_repo as repo
from tests.cloud.test_firmware_repo import Pki, upload
from tests.cloud.test_gateway import Cloud

pki = repo.pki
cloud = repo.cloud
operator = repo.operator

PASSWORD = "firmware-station-password"
WAIT_S = 30.0


async def until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {WAIT_S}s: {what}")


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
    await cloud.store.register_station(sid, password=PASSWORD, security_profile=2)
    image = build_image("2.0.0", size=300_000, seed=5)
    shown = await upload(operator, image, version="2.0.0", filename="plugstream-2.0.0.bin")

    backoff = ReconnectBackoff(0.2, 0.1, 1, random.Random(3))
    data_dir = tmp_path / sid
    station: StationRuntime = (
        Station16(sid, PLUGSTREAM_7, data_dir, backoff=backoff, call_timeout=5.0)
        if version == "1.6"
        else Station201(sid, PLUGSTREAM_7, data_dir, backoff=backoff, call_timeout=5.0)
    )
    station.certificates.add_root(CSMS_ROOT, (pki.dir / "csms-root.pem").read_bytes())
    station.certificates.add_root(MANUFACTURER_ROOT, pki.manufacturer_root)
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
