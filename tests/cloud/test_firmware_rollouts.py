"""Firmware rollouts from PlugStream Cloud to stations, over real TLS on loopback.

The stations here are small test stations: a ``websockets`` client over wss (Basic auth,
security profile 2) speaking OCPP-J through :class:`plugstream.ocpp.OcppEndpoint`. One
that is told to update downloads the image from the location it was given (https,
trusting the CSMS root), verifies its signature against the Manufacturer root like a
real station's updater (L01.FR.04, L01.FR.12), then reports each firmware status it is
told to. The test reads the rollout's progress from the REST API after each one.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from plugstream.cloud.firmware import handlers as firmware_handlers
from plugstream.ocpp import Handlers, OcppEndpoint, OcppVersion, on
from plugstream.ocpp.datetimes import format_time
from plugstream.pki.firmware import verify_firmware
from tests.cloud import test_firmware_repo as repo
from tests.cloud.test_firmware_repo import Pki, upload
from tests.support import WAIT, Cloud, until

pytestmark = pytest.mark.socket

# the repository's fixtures: a PKI, a TLS cloud signing with it, the operator's client
pki = repo.pki
cloud = repo.cloud
operator = repo.operator
image = repo.image

PASSWORD = "firmware-station-password"


class TestStation(Handlers):
    """A station's OCPP side: answers an update with ``answer`` and keeps what it got."""

    __test__ = False  # not a pytest class

    def __init__(self, station_id: str, version: OcppVersion, answer: str = "Accepted") -> None:
        self.station_id = station_id
        self.version = version
        self.answer = answer
        self.updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.endpoint: OcppEndpoint | None = None

    @on("UpdateFirmware")
    async def update_firmware(self, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.version is not OcppVersion.V16
        await self.updates.put(payload)
        return {"status": self.answer}

    @on("SignedUpdateFirmware")
    async def signed_update_firmware(self, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.version is OcppVersion.V16
        await self.updates.put(payload)
        return {"status": self.answer}

    async def next_update(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.updates.get(), WAIT)

    async def boot(self) -> dict[str, Any]:
        if self.version is OcppVersion.V16:
            payload: dict[str, Any] = {"chargePointVendor": "Test", "chargePointModel": "T1"}
        else:
            payload = {
                "reason": "PowerUp",
                "chargingStation": {"vendorName": "Test", "model": "T1"},
            }
        return await self.call("BootNotification", payload)

    async def report(self, status: str, request_id: int | None) -> None:
        """FirmwareStatusNotification (2.0.1) / SignedFirmwareStatusNotification (1.6)."""
        payload: dict[str, Any] = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        if self.version is OcppVersion.V16:
            action = "SignedFirmwareStatusNotification" if request_id is not None else None
            action = action or "FirmwareStatusNotification"
        else:
            action = "FirmwareStatusNotification"
        assert await self.call(action, payload) == {}

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.endpoint is not None
        answer: dict[str, Any] = await asyncio.wait_for(self.endpoint.call(action, payload), WAIT)
        return answer


@asynccontextmanager
async def online(
    cloud: Cloud, pki: Pki, station: TestStation, *, boot: bool = True
) -> AsyncIterator[TestStation]:
    """The station connected over wss (profile 2: TLS + Basic auth), booted."""
    auth = base64.b64encode(f"{station.station_id}:{PASSWORD}".encode()).decode()
    async with connect(
        f"wss://127.0.0.1:{cloud.port}/ocpp/{station.station_id}",
        subprotocols=[Subprotocol(station.version.subprotocol)],
        ssl=pki.trusting(),
        additional_headers={"Authorization": f"Basic {auth}"},
        open_timeout=WAIT,
    ) as ws:
        station.endpoint = OcppEndpoint(ws, station.version, station)
        task = asyncio.create_task(station.endpoint.run())
        try:
            if boot:
                assert (await station.boot())["status"] == "Accepted"
            await until(
                lambda: cloud.gateway.is_connected(station.station_id),
                f"{station.station_id} connected",
            )
            yield station
        finally:
            await ws.close()
            await asyncio.wait_for(task, WAIT)
            station.endpoint = None


async def register(cloud: Cloud, *station_ids: str) -> None:
    for sid in station_ids:
        await cloud.store.stations.register(sid, password=PASSWORD, security_profile=2)


async def download_and_verify(update: dict[str, Any], pki: Pki) -> bytes:
    """What a station's updater does with the update: fetch over https, check the signer
    and the signature against its Manufacturer root with its own clock."""
    fw = update["firmware"]
    async with httpx.AsyncClient(verify=pki.trusting(), timeout=WAIT) as http:
        got = await http.get(fw["location"])
    assert got.status_code == 200
    verify_firmware(
        got.content,
        fw["signature"],
        fw["signingCertificate"],
        pki.manufacturer_root,
        now=datetime.now(UTC),
    )
    return got.content


async def progress(operator: httpx.AsyncClient, rollout_id: int) -> dict[str, Any]:
    answer = await operator.get(f"/rollouts/{rollout_id}")
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    return shown


def statuses(rollout: dict[str, Any]) -> dict[str, str]:
    return {t["station_id"]: t["status"] for t in rollout["targets"]}


async def roll_out(operator: httpx.AsyncClient, image_id: str, **body: Any) -> dict[str, Any]:
    answer = await operator.post(f"/firmware/{image_id}/rollouts", json=body)
    assert answer.status_code == 201, answer.text
    shown: dict[str, Any] = answer.json()
    return shown


INSTALL = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting"]


# -- 2.0.1 --------------------------------------------------------------------------------


async def test_TC_L_01_CSMS_secure_update_installation_successful(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    """L01.FR.11: UpdateFirmware carries the Firmware Signing certificate; L01.FR.01 /
    L01.FR.10: each FirmwareStatusNotification, with the same requestId, shows in the
    rollout's progress; after the reboot the new firmware reports Installed (L01.FR.32)."""
    await register(cloud, "CS1")
    shown = await upload(operator, image, version="2.1.0", filename="plugstream-2.1.0.bin")
    station = TestStation("CS1", OcppVersion.V201)
    async with online(cloud, pki, station):
        rollout = await roll_out(operator, str(shown["image_id"]), station_ids=["CS1"])
        assert statuses(rollout) == {"CS1": "Accepted"}
        update = await station.next_update()
        [target] = rollout["targets"]
        assert update["requestId"] == target["request_id"]
        fw = update["firmware"]
        assert fw["location"] == shown["location"]
        assert fw["signingCertificate"] == shown["signing_certificate"]
        assert fw["signature"] == shown["signature"]
        assert abs(datetime.fromisoformat(fw["retrieveDateTime"]) - datetime.now(UTC)) < timedelta(
            minutes=1
        )
        assert "installDateTime" not in fw
        assert await download_and_verify(update, pki) == image

        for status in INSTALL:
            await station.report(status, update["requestId"])
            now = await progress(operator, rollout["rollout_id"])
            assert statuses(now) == {"CS1": status}
    # the reboot: a new connection, a new BootNotification, then Installed
    async with online(cloud, pki, station):
        await station.report("Installed", update["requestId"])
        done = await progress(operator, rollout["rollout_id"])
        assert statuses(done) == {"CS1": "Installed"}
        assert done["counts"] == {"Installed": 1}
        assert station.updates.empty()  # nothing Pending: the boot sent nothing again


async def test_TC_L_02_CSMS_install_scheduled_passes_install_date_and_retries(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    await register(cloud, "CS1")
    shown = await upload(operator, image[:10_000])
    retrieve = datetime.now(UTC) + timedelta(minutes=5)
    install = datetime.now(UTC) + timedelta(hours=2)
    station = TestStation("CS1", OcppVersion.V201)
    async with online(cloud, pki, station):
        rollout = await roll_out(
            operator,
            str(shown["image_id"]),
            station_ids=["CS1"],
            retrieve_at=retrieve.isoformat(),
            install_at=install.isoformat(),
            retries=3,
            retry_interval=60,
        )
        update = await station.next_update()
        assert update["firmware"]["retrieveDateTime"] == format_time(retrieve, always_ms=True)
        assert update["firmware"]["installDateTime"] == format_time(install, always_ms=True)
        assert (update["retries"], update["retryInterval"]) == (3, 60)
        for status in ["DownloadScheduled", "Downloading", "Downloaded", "InstallScheduled"]:
            await station.report(status, update["requestId"])
            assert statuses(await progress(operator, rollout["rollout_id"])) == {"CS1": status}
        assert rollout["install_at"] is not None and rollout["install_at"].endswith("Z")


@pytest.mark.parametrize("answer", ["RevokedCertificate", "InvalidCertificate", "Rejected"])
async def test_TC_L_04_05_CSMS_a_refused_update_shows_the_stations_answer(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes, answer: str
) -> None:
    await register(cloud, "CS1")
    shown = await upload(operator, image[:10_000])
    station = TestStation("CS1", OcppVersion.V201, answer=answer)
    async with online(cloud, pki, station):
        rollout = await roll_out(operator, str(shown["image_id"]), station_ids=["CS1"])
        await station.next_update()
    assert statuses(rollout) == {"CS1": answer}
    assert rollout["counts"] == {answer: 1}


async def test_TC_L_06_07_CSMS_invalid_signature_and_failed_download_are_shown(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    await register(cloud, "CS1", "CS2")
    shown = await upload(operator, image[:10_000])
    one, two = TestStation("CS1", OcppVersion.V201), TestStation("CS2", OcppVersion.V201)
    async with online(cloud, pki, one), online(cloud, pki, two):
        rollout = await roll_out(operator, str(shown["image_id"]), station_ids=["CS1", "CS2"])
        u1, u2 = await one.next_update(), await two.next_update()
        await one.report("Downloading", u1["requestId"])
        await one.report("Downloaded", u1["requestId"])
        await one.report("InvalidSignature", u1["requestId"])
        await two.report("Downloading", u2["requestId"])
        await two.report("DownloadFailed", u2["requestId"])
        now = await progress(operator, rollout["rollout_id"])
    assert statuses(now) == {"CS1": "InvalidSignature", "CS2": "DownloadFailed"}
    assert now["counts"] == {"DownloadFailed": 1, "InvalidSignature": 1}


async def test_TC_L_10_CSMS_a_new_update_cancels_the_ongoing_one(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    """L01.FR.24: the station cancels the running update and answers AcceptedCanceled;
    its notifications then carry the new requestId and move the new rollout only."""
    await register(cloud, "CS1")
    old = await upload(operator, image[:10_000], version="2.0.9")
    new = await upload(operator, image[:20_000], version="2.1.0")
    station = TestStation("CS1", OcppVersion.V201)
    async with online(cloud, pki, station):
        first = await roll_out(operator, str(old["image_id"]), station_ids=["CS1"])
        u1 = await station.next_update()
        await station.report("Downloading", u1["requestId"])
        station.answer = "AcceptedCanceled"
        second = await roll_out(operator, str(new["image_id"]), station_ids=["CS1"])
        u2 = await station.next_update()
        assert u2["requestId"] != u1["requestId"]
        assert statuses(second) == {"CS1": "AcceptedCanceled"}
        for status in ["Downloading", "Downloaded", "SignatureVerified", "Installing"]:
            await station.report(status, u2["requestId"])
        assert statuses(await progress(operator, second["rollout_id"])) == {"CS1": "Installing"}
        assert statuses(await progress(operator, first["rollout_id"])) == {"CS1": "Downloading"}


# -- 1.6 (security extension) -----------------------------------------------------------


async def test_signed_update_firmware_to_a_1_6_charge_point(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    """1.6 Security Whitepaper: SignedUpdateFirmware.req with requestId and the signed
    firmware; SignedFirmwareStatusNotification.req reports with that requestId; a plain
    FirmwareStatusNotification (no requestId) moves the newest target."""
    await register(cloud, "CP16")
    shown = await upload(operator, image)
    station = TestStation("CP16", OcppVersion.V16)
    async with online(cloud, pki, station):
        rollout = await roll_out(operator, str(shown["image_id"]), station_ids=["CP16"])
        assert statuses(rollout) == {"CP16": "Accepted"}
        update = await station.next_update()
        assert update["requestId"] == rollout["targets"][0]["request_id"]
        assert set(update["firmware"]) == {
            "location",
            "retrieveDateTime",
            "signingCertificate",
            "signature",
        }
        assert await download_and_verify(update, pki) == image
        for status in ["Downloading", "Downloaded", "SignatureVerified", "Installing"]:
            await station.report(status, update["requestId"])
            assert statuses(await progress(operator, rollout["rollout_id"])) == {"CP16": status}
        await station.report("Installed", None)
        assert statuses(await progress(operator, rollout["rollout_id"])) == {"CP16": "Installed"}
        await station.report("Idle", None)  # no update running: the outcome stays
        assert statuses(await progress(operator, rollout["rollout_id"])) == {"CP16": "Installed"}


# -- lists, percentages, stations that are away ----------------------------------------


async def test_rollout_to_a_list_sends_now_or_when_the_station_boots(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    await register(cloud, "CS1", "CP2", "CS3")
    shown = await upload(operator, image[:50_000])
    cs1 = TestStation("CS1", OcppVersion.V201)
    cp2 = TestStation("CP2", OcppVersion.V16)
    cs3 = TestStation("CS3", OcppVersion.V201)
    async with online(cloud, pki, cs1), online(cloud, pki, cp2):
        rollout = await roll_out(
            operator, str(shown["image_id"]), station_ids=["CS1", "CP2", "CS3"]
        )
        assert statuses(rollout) == {"CS1": "Accepted", "CP2": "Accepted", "CS3": "Pending"}
        assert rollout["counts"] == {"Accepted": 2, "Pending": 1}
        assert rollout["selector"] == {"station_ids": ["CS1", "CP2", "CS3"]}
        ids = {t["request_id"] for t in rollout["targets"]}
        assert len(ids) == 3
        assert (await cs1.next_update())["requestId"] in ids
        assert (await cp2.next_update())["requestId"] in ids
        # CS3 comes online: its Accepted BootNotification brings the update it missed
        async with online(cloud, pki, cs3):
            update = await cs3.next_update()
            target = next(t for t in rollout["targets"] if t["station_id"] == "CS3")
            assert update["requestId"] == target["request_id"]
            assert await download_and_verify(update, pki) == image[:50_000]

            async def sent() -> dict[str, Any] | None:
                now = await progress(operator, rollout["rollout_id"])
                return now if statuses(now)["CS3"] not in ("Pending", "Sending") else None

            # the answer is recorded after the station has it
            now = await until(sent, "CS3's answer recorded")
            assert statuses(now)["CS3"] == "Accepted"
            await cs3.report("Downloading", update["requestId"])
        listed = (await operator.get("/rollouts")).json()
        assert [r["rollout_id"] for r in listed] == [rollout["rollout_id"]]
        assert statuses(listed[0]) == {"CS1": "Accepted", "CP2": "Accepted", "CS3": "Downloading"}


async def test_a_station_that_was_away_gets_only_the_newest_missed_update(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    await register(cloud, "CS1")
    older = await upload(operator, image[:1000], version="1")
    newer = await upload(operator, image[:2000], version="2")
    first = await roll_out(operator, str(older["image_id"]), station_ids=["CS1"])
    second = await roll_out(operator, str(newer["image_id"]), station_ids=["CS1"])
    station = TestStation("CS1", OcppVersion.V201)
    async with online(cloud, pki, station):
        update = await station.next_update()
        assert update["firmware"]["location"] == newer["location"]

        async def answered() -> bool:
            return statuses(await progress(operator, second["rollout_id"])) == {"CS1": "Accepted"}

        # the answer is recorded after the station has it
        await until(answered, "CS1's answer recorded")
    assert statuses(await progress(operator, second["rollout_id"])) == {"CS1": "Accepted"}
    assert statuses(await progress(operator, first["rollout_id"])) == {"CS1": "Superseded"}
    assert station.updates.empty()


async def test_percentage_rollout_picks_registered_stations_stably(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    everyone = [f"CS{i:02d}" for i in range(10)]
    await register(cloud, *everyone)
    shown = await upload(operator, image[:1000])
    image_id = str(shown["image_id"])
    stations = {sid: TestStation(sid, OcppVersion.V201) for sid in everyone}
    async with online(cloud, pki, stations["CS00"]), online(cloud, pki, stations["CS01"]):
        half = await roll_out(operator, image_id, percentage=50)
        chosen = set(statuses(half))
        assert len(chosen) == 5 and chosen <= set(everyone)
        assert half["selector"] == {"percentage": 50.0}
        for sid in ("CS00", "CS01"):
            expected = "Accepted" if sid in chosen else None
            assert statuses(half).get(sid) == expected
            if expected:
                assert (await stations[sid].next_update())["requestId"] > 0
        away = {sid for sid in chosen if sid not in ("CS00", "CS01")}
        assert {statuses(half)[sid] for sid in away} == {"Pending"}
        again = await roll_out(operator, image_id, percentage=50)
        assert set(statuses(again)) == chosen  # the same five
        more = await roll_out(operator, image_id, percentage=80)
        assert len(statuses(more)) == 8 and chosen <= set(statuses(more))


async def test_rollout_refuses_bad_requests(
    cloud: Cloud, operator: httpx.AsyncClient, image: bytes
) -> None:
    await register(cloud, "CS1")
    image_id = str((await upload(operator, image[:1000]))["image_id"])
    bodies: list[dict[str, Any]] = [
        {},
        {"station_ids": ["CS1"], "percentage": 10},
        {"percentage": 0},
        {"percentage": 101},
        {"station_ids": []},
        {"station_ids": ["CS1"], "retries": -1},
        {"station_ids": ["CS1"], "retrieve_at": "2026-01-01T00:00:00"},  # no offset
    ]
    for body in bodies:
        answer = await operator.post(f"/firmware/{image_id}/rollouts", json=body)
        assert answer.status_code == 422, body
    unknown = await operator.post(
        f"/firmware/{image_id}/rollouts", json={"station_ids": ["CS1", "NOPE"]}
    )
    assert unknown.status_code == 422 and "NOPE" in unknown.json()["detail"]
    missing = await operator.post(f"/firmware/{'0' * 32}/rollouts", json={"station_ids": ["CS1"]})
    assert missing.status_code == 404
    assert (await operator.get("/rollouts/999")).status_code == 404
    assert (await operator.get("/rollouts")).json() == []


async def test_a_stations_notification_about_an_unknown_request_is_still_answered(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient
) -> None:
    """An update some other system started: the CSMS answers (L01.FR.01 needs it to),
    and no rollout changes."""
    await register(cloud, "CS1")
    station = TestStation("CS1", OcppVersion.V201)
    async with online(cloud, pki, station):
        await station.report("Downloading", 4242)
        await station.report("Idle", None)
    assert (await operator.get("/rollouts")).json() == []


class StationWithoutUpdates(TestStation):
    """Knows no UpdateFirmware: answers it with CALLERROR NotImplemented."""

    update_firmware = None  # type: ignore[assignment]


async def test_a_station_that_cannot_update_shows_call_error(
    cloud: Cloud,
    pki: Pki,
    operator: httpx.AsyncClient,
    image: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await register(cloud, "CS1")
    shown = await upload(operator, image[:1000])
    async with online(cloud, pki, StationWithoutUpdates("CS1", OcppVersion.V201)):
        rollout = await roll_out(operator, str(shown["image_id"]), station_ids=["CS1"])
    assert statuses(rollout) == {"CS1": "CallError"}
    # not Pending: its next boot does not send it again
    looked: list[str | None] = []  # what the cloud sent after each boot, once it has
    send_pending = firmware_handlers.send_pending

    async def spied(*args: Any, **kwargs: Any) -> str | None:
        sent = await send_pending(*args, **kwargs)
        looked.append(sent)
        return sent

    monkeypatch.setattr(firmware_handlers, "send_pending", spied)
    again = TestStation("CS1", OcppVersion.V201)
    async with online(cloud, pki, again):
        # An update it was sent would be in its queue by the time the cloud is done.
        await until(lambda: looked, "the cloud done with CS1's boot")
    assert again.updates.empty()
