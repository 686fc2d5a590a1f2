"""Firmware published on a Local Controller (L03): the OCTT's CSMS cases TC_L_17, TC_L_19,
TC_L_20 and TC_L_24 played by a bare 2.0.1 station against a real cloud on loopback, the
REST routes of publishing, and their storage."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugstream.cloud.storage import Store
from plugstream.cloud.storage.firmware import FirmwareImage
from tests.cloud.raw_station201 import RawStation201
from tests.cloud.v2g_station import api, station201
from tests.support import Cloud, running_cloud

NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
IMAGE = b"PlugStream firmware 9.9.9\n" * 1000


@dataclass
class Repo:
    cloud: Cloud
    image: FirmwareImage
    md5: str


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[Repo]:
    async with running_cloud(tmp_path, auto_register_unsecured=True) as cloud:
        image_id = secrets.token_hex(16)
        folder = tmp_path / "firmware"  # firmware_dir: beside the SQLite file
        folder.mkdir()
        (folder / f"{image_id}.bin").write_bytes(IMAGE)
        image = FirmwareImage(
            image_id=image_id,
            version="9.9.9",
            filename="ps-9.9.9.bin",
            size=len(IMAGE),
            sha256=hashlib.sha256(IMAGE).hexdigest(),
            signature="c2ln",
            signing_certificate="-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            uploaded_at=NOW,
        )
        await cloud.store.firmware.add_image(image)
        yield Repo(cloud, image, hashlib.md5(IMAGE, usedforsecurity=False).hexdigest())


async def _publish(repo: Repo, cs: RawStation201, station_id: str) -> int:
    """Steps 1-2: the CSMS sends PublishFirmware (the operator asks), the station accepts."""
    async with api(repo.cloud) as client:
        answer = await client.post(
            f"/api/v1/stations/{station_id}/firmware/publish",
            json={"image_id": repo.image.image_id, "retries": 2, "retry_interval": 30},
        )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "Accepted"
    [sent] = cs.calls("PublishFirmware")
    # Tool validation: location <Configured firmware_location>, and the image's MD5
    assert sent["location"] == body["location"]
    assert sent["location"].endswith(f"/firmware/{repo.image.image_id}/ps-9.9.9.bin")
    assert sent["checksum"] == repo.md5 == body["checksum"]
    assert sent["requestId"] == body["request_id"]
    assert (sent["retries"], sent["retryInterval"]) == (2, 30)
    return int(sent["requestId"])


async def _notify(cs: RawStation201, request_id: int, *statuses: str) -> None:
    for status in statuses:
        payload: dict[str, object] = {"status": status, "requestId": request_id}
        if status == "Published":
            payload["location"] = ["http://lc.local/fw.bin", "ftp://lc.local/fw.bin"]
        assert await cs.call("PublishFirmwareStatusNotification", payload) == {}


async def _status(repo: Repo, station_id: str, request_id: int) -> dict[str, object]:
    async with api(repo.cloud) as client:
        got = await client.get(f"/api/v1/stations/{station_id}/firmware/publish/{request_id}")
    assert got.status_code == 200, got.text
    body: dict[str, object] = got.json()
    return body


@pytest.mark.socket
async def test_tc_l_17_csms_publish_firmware_published(repo: Repo) -> None:
    async with station201(repo.cloud, "LC-17") as cs:
        request_id = await _publish(repo, cs, "LC-17")
        await _notify(cs, request_id, "Downloading", "Downloaded", "ChecksumVerified")
        assert (await _status(repo, "LC-17", request_id))["status"] == "ChecksumVerified"
        await _notify(cs, request_id, "Published")
        status = await _status(repo, "LC-17", request_id)
        assert status["status"] == "Published"
        assert status["published_locations"] == ["http://lc.local/fw.bin", "ftp://lc.local/fw.bin"]
        await _notify(cs, request_id, "Idle")  # L03.FR.10: says nothing new
        assert (await _status(repo, "LC-17", request_id))["status"] == "Published"


@pytest.mark.socket
async def test_tc_l_19_csms_publish_firmware_invalid_checksum(repo: Repo) -> None:
    async with station201(repo.cloud, "LC-19") as cs:
        request_id = await _publish(repo, cs, "LC-19")
        await _notify(cs, request_id, "Downloading", "Downloaded", "InvalidChecksum")
        assert (await _status(repo, "LC-19", request_id))["status"] == "InvalidChecksum"


@pytest.mark.socket
async def test_tc_l_20_csms_publish_firmware_publish_failed(repo: Repo) -> None:
    async with station201(repo.cloud, "LC-20") as cs:
        request_id = await _publish(repo, cs, "LC-20")
        await _notify(cs, request_id, "Downloading", "Downloaded", "ChecksumVerified")
        await _notify(cs, request_id, "PublishFailed")
        status = await _status(repo, "LC-20", request_id)
        assert status["status"] == "PublishFailed" and status["published_locations"] == []


@pytest.mark.socket
async def test_tc_l_24_csms_publish_firmware_download_failed(repo: Repo) -> None:
    async with station201(repo.cloud, "LC-24") as cs:
        request_id = await _publish(repo, cs, "LC-24")
        await _notify(cs, request_id, "Downloading", "DownloadFailed")
        assert (await _status(repo, "LC-24", request_id))["status"] == "DownloadFailed"


@pytest.mark.socket
async def test_unpublish_sends_the_checksum_and_records_it(repo: Repo) -> None:
    answers = {"UnpublishFirmware": {"status": "Unpublished"}}
    async with station201(repo.cloud, "LC-UN", answers) as cs, api(repo.cloud) as client:
        request_id = await _publish(repo, cs, "LC-UN")
        await _notify(cs, request_id, "Published")
        gone = await client.delete(f"/api/v1/stations/LC-UN/firmware/publish/{request_id}")
        assert gone.status_code == 200, gone.text
        assert gone.json()["status"] == "Unpublished"
        assert cs.calls("UnpublishFirmware") == [{"checksum": repo.md5}]
        assert (await _status(repo, "LC-UN", request_id))["status"] == "Unpublished"
        listed = (await client.get("/api/v1/stations/LC-UN/firmware/publish")).json()
        assert [p["request_id"] for p in listed] == [request_id]


@pytest.mark.socket
async def test_a_rejected_publication_and_a_second_one_get_their_own_request_ids(
    repo: Repo,
) -> None:
    answers = {"PublishFirmware": {"status": "Rejected"}}
    async with station201(repo.cloud, "LC-RJ", answers) as cs, api(repo.cloud) as client:
        for expected in (1, 2):
            answer = await client.post(
                "/api/v1/stations/LC-RJ/firmware/publish", json={"image_id": repo.image.image_id}
            )
            assert answer.status_code == 201
            assert (answer.json()["status"], answer.json()["request_id"]) == ("Rejected", expected)
        assert [c["requestId"] for c in cs.calls("PublishFirmware")] == [1, 2]


@pytest.mark.socket
async def test_publishing_refuses_what_it_cannot_do_and_keeps_nothing(repo: Repo) -> None:
    image_id = repo.image.image_id
    async with station201(repo.cloud, "LC-OFF"):
        pass  # registered, now offline
    async with api(repo.cloud) as client:
        offline = await client.post(
            "/api/v1/stations/LC-OFF/firmware/publish", json={"image_id": image_id}
        )
        assert offline.status_code == 409 and "not connected" in offline.json()["detail"]
        assert (await client.get("/api/v1/stations/LC-OFF/firmware/publish")).json() == []
        unknown = await client.post(
            "/api/v1/stations/NOBODY/firmware/publish", json={"image_id": image_id}
        )
        assert unknown.status_code == 404
        no_image = await client.post(
            "/api/v1/stations/LC-OFF/firmware/publish", json={"image_id": "0" * 32}
        )
        assert no_image.status_code == 404 and "image" in no_image.json()["detail"]
        bad = await client.post("/api/v1/stations/LC-OFF/firmware/publish", json={"image_id": "x"})
        assert bad.status_code == 422
        missing = await client.get("/api/v1/stations/LC-OFF/firmware/publish/7")
        assert missing.status_code == 404
        assert (
            await client.delete("/api/v1/stations/LC-OFF/firmware/publish/7")
        ).status_code == 404
        doc = (await client.get("/api/v1/openapi.json")).json()
        assert "/api/v1/stations/{station_id}/firmware/publish" in doc["paths"]
        assert (
            "delete" in doc["paths"]["/api/v1/stations/{station_id}/firmware/publish/{request_id}"]
        )


@pytest.mark.socket
async def test_a_notification_of_a_publication_the_cloud_never_sent_is_answered(
    repo: Repo,
) -> None:
    async with station201(repo.cloud, "LC-ST") as cs:
        await _notify(cs, 42, "Downloading")  # answered; nothing to move
        async with api(repo.cloud) as client:
            assert (await client.get("/api/v1/stations/LC-ST/firmware/publish")).json() == []


@pytest.mark.unit
async def test_publications_are_numbered_per_station_and_move_by_request_id(store: Store) -> None:
    pubs = store.firmware_publications
    first = await pubs.create(
        "LC1", image_id="i", location="u", checksum="c", status="Requested", at=NOW
    )
    second = await pubs.create(
        "LC1", image_id="i", location="u", checksum="c", status="Requested", at=NOW
    )
    other = await pubs.create(
        "LC2", image_id=None, location="u", checksum="c", status="Requested", at=NOW
    )
    assert (first.request_id, second.request_id, other.request_id) == (1, 2, 1)
    later = NOW + dt.timedelta(minutes=1)
    moved = await pubs.record_status("LC1", 1, "Published", later, ["http://x/y"])
    assert moved is not None and moved.published_locations == ["http://x/y"]
    assert moved.updated_at == later and moved.requested_at == NOW
    newest = await pubs.record_status("LC1", None, "Downloading", later)  # no requestId
    assert newest is not None and newest.request_id == 2
    assert await pubs.record_status("LC1", 9, "Downloading", later) is None
    assert await pubs.record_status("LC3", None, "Downloading", later) is None
    assert [p.request_id for p in await pubs.of_station("LC1")] == [2, 1]
    assert await pubs.get("LC1", 1) == moved
