"""The firmware repository of PlugStream Cloud: upload (stored, hashed, signed with the
PKI's Firmware Signing key), listing, and downloads with byte ranges, against a real
cloud over TLS on loopback with certificates from ``plugstream pki``; and its storage
on SQLite and (with PLUGSTREAM_TEST_POSTGRES) PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from plugstream.cloud.firmware import api as firmware_api
from plugstream.cloud.firmware.rollouts import pick_percentage
from plugstream.cloud.storage import Store
from plugstream.cloud.storage import firmware as db
from plugstream.pki.firmware import InvalidSignature, verify_firmware
from plugstream.pki.keystore import PKIStore
from tests.support import WAIT, Cloud, count_reads, running_cloud

TOKEN = "firmware-test-token-0123456789"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
IMAGE_SIZE = 3 * (1 << 20) + 12345  # several write chunks and an odd tail


@dataclass
class Pki:
    keystore: PKIStore
    dir: Path

    @property
    def manufacturer_root(self) -> bytes:
        return (self.dir / "manufacturer-root.pem").read_bytes()

    def trusting(self) -> ssl.SSLContext:
        """A client that trusts the CSMS root, as a station or an operator's tool does."""
        return ssl.create_default_context(cafile=str(self.dir / "csms-root.pem"))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    folder = tmp_path / "pki"
    keystore = PKIStore(folder)
    keystore.init("PlugStream Test CPO")
    keystore.issue_server("localhost", ips=["127.0.0.1"])
    return Pki(keystore, folder)


@asynccontextmanager
async def tls_cloud(tmp_path: Path, pki: Pki) -> AsyncIterator[Cloud]:
    """A real PlugStream Cloud serving https/wss on loopback, signing with the PKI."""
    server = pki.dir / "server"
    async with running_cloud(
        tmp_path,
        api_token=TOKEN,
        tls_cert=server / "localhost.pem",
        tls_key=server / "localhost.key",
        pki_dir=pki.dir,
    ) as cloud:
        # Bound to port 0: the URL stations are handed is known only now.
        cloud.config.public_url = f"https://127.0.0.1:{cloud.port}"
        yield cloud


@pytest.fixture
async def cloud(tmp_path: Path, pki: Pki) -> AsyncIterator[Cloud]:
    async with tls_cloud(tmp_path, pki) as served:
        yield served


@pytest.fixture
async def operator(cloud: Cloud, pki: Pki) -> AsyncIterator[httpx.AsyncClient]:
    """The REST API as an operator reaches it: https, bearer token."""
    async with httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{cloud.port}/api/v1",
        verify=pki.trusting(),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=WAIT,
    ) as client:
        yield client


@pytest.fixture
async def anonymous(cloud: Cloud, pki: Pki) -> AsyncIterator[httpx.AsyncClient]:
    """What a station downloads with: https trusting the CSMS root, no API token."""
    async with httpx.AsyncClient(verify=pki.trusting(), timeout=WAIT) as client:
        yield client


@pytest.fixture(scope="module")
def image() -> bytes:
    return os.urandom(IMAGE_SIZE)


def _chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def upload(
    operator: httpx.AsyncClient, data: bytes, version: str = "2.1.0", filename: str = "fw.bin"
) -> dict[str, object]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in _chunks(data):
            yield chunk

    answer = await operator.post(
        "/firmware",
        params={"version": version, "filename": filename},
        content=body(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 201, answer.text
    shown: dict[str, object] = answer.json()
    return shown


# -- upload and listing -----------------------------------------------------------------


@pytest.mark.socket
async def test_upload_is_signed_by_the_firmware_signing_key_and_listed(
    cloud: Cloud, pki: Pki, operator: httpx.AsyncClient, image: bytes
) -> None:
    """L01.FR.09 / L01.FR.11: the image goes out signed, with the Firmware Signing
    certificate a station checks against its Manufacturer root (L01.FR.21)."""
    shown = await upload(operator, image, version="2.1.0", filename="plugstream-2.1.0.bin")
    assert shown["size"] == len(image)
    assert shown["sha256"] == hashlib.sha256(image).hexdigest()
    assert len(str(shown["image_id"])) == 32  # 128 random bits: not guessable
    assert shown["location"] == (
        f"https://127.0.0.1:{cloud.port}/firmware/{shown['image_id']}/plugstream-2.1.0.bin"
    )
    verify_firmware(
        image,
        str(shown["signature"]),
        str(shown["signing_certificate"]),
        pki.manufacturer_root,
        now=datetime.now(UTC),
    )
    with pytest.raises(InvalidSignature):
        verify_firmware(
            image[:-1] + bytes([image[-1] ^ 1]),
            str(shown["signature"]),
            str(shown["signing_certificate"]),
            pki.manufacturer_root,
            now=datetime.now(UTC),
        )

    listed = (await operator.get("/firmware")).json()
    assert [i["image_id"] for i in listed] == [shown["image_id"]]
    assert listed[0]["version"] == "2.1.0"
    one = await operator.get(f"/firmware/{shown['image_id']}")
    assert one.status_code == 200 and one.json() == shown
    # on disk under the image id, no partial file left behind
    folder = firmware_api.firmware_dir(cloud.config)
    assert sorted(p.name for p in folder.iterdir()) == [f"{shown['image_id']}.bin"]


@pytest.mark.socket
async def test_upload_needs_the_pki_and_says_so(tmp_path: Path, image: bytes) -> None:
    async with (
        running_cloud(tmp_path, api_token=TOKEN) as plain,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{plain.port}/api/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client,
    ):
        answer = await client.post(
            "/firmware", params={"version": "1", "filename": "a.bin"}, content=image[:1000]
        )
        assert answer.status_code == 409
        assert "--pki" in answer.json()["detail"]
        assert (await client.get("/firmware")).json() == []


@pytest.mark.socket
async def test_upload_refuses_an_image_over_the_limit_with_413(
    cloud: Cloud, operator: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(firmware_api, "MAX_IMAGE_BYTES", 100_000)

    async def body() -> AsyncIterator[bytes]:  # chunked: no Content-Length to go by
        for _ in range(10):
            yield b"x" * 50_000

    answer = await operator.post(
        "/firmware", params={"version": "1", "filename": "big.bin"}, content=body()
    )
    assert answer.status_code == 413
    declared = await operator.post(
        "/firmware", params={"version": "1", "filename": "big.bin"}, content=b"y" * 200_000
    )
    assert declared.status_code == 413
    assert (await operator.get("/firmware")).json() == []
    folder = firmware_api.firmware_dir(cloud.config)
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.socket
async def test_upload_refuses_bad_names_and_empty_images(operator: httpx.AsyncClient) -> None:
    for name in ("../etc/passwd", ".hidden", "a/b.bin", ""):
        answer = await operator.post(
            "/firmware", params={"version": "1", "filename": name}, content=b"abc"
        )
        assert answer.status_code == 422, name
    empty = await operator.post(
        "/firmware", params={"version": "1", "filename": "e.bin"}, content=b""
    )
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]


@pytest.mark.socket
async def test_repository_api_needs_the_bearer_token(
    cloud: Cloud, pki: Pki, anonymous: httpx.AsyncClient
) -> None:
    base = f"https://127.0.0.1:{cloud.port}/api/v1"
    assert (await anonymous.get(f"{base}/firmware")).status_code == 401
    refused = await anonymous.post(
        f"{base}/firmware", params={"version": "1", "filename": "a.bin"}, content=b"abc"
    )
    assert refused.status_code == 401
    assert (await anonymous.get(f"{base}/rollouts")).status_code == 401


# -- downloads ----------------------------------------------------------------------------


@pytest.mark.socket
async def test_download_whole_image_without_a_token(
    operator: httpx.AsyncClient, anonymous: httpx.AsyncClient, image: bytes
) -> None:
    shown = await upload(operator, image)
    whole = await anonymous.get(str(shown["location"]))
    assert whole.status_code == 200
    assert whole.content == image
    assert whole.headers["content-length"] == str(len(image))
    assert whole.headers["accept-ranges"] == "bytes"
    head = await anonymous.head(str(shown["location"]))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(image))


@pytest.mark.socket
async def test_download_by_byte_ranges(
    operator: httpx.AsyncClient, anonymous: httpx.AsyncClient, image: bytes
) -> None:
    url = str((await upload(operator, image))["location"])
    n = 1_000_003
    tail = await anonymous.get(url, headers={"Range": f"bytes={n}-"})
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes {n}-{len(image) - 1}/{len(image)}"
    assert tail.content == image[n:]

    middle = await anonymous.get(url, headers={"Range": "bytes=10-19"})
    assert middle.status_code == 206
    assert middle.headers["content-range"] == f"bytes 10-19/{len(image)}"
    assert middle.content == image[10:20]

    last = await anonymous.get(url, headers={"Range": f"bytes={len(image) - 1}-"})
    assert last.status_code == 206 and last.content == image[-1:]

    past = await anonymous.get(url, headers={"Range": f"bytes={len(image)}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(image)}"


@pytest.mark.socket
async def test_download_cut_short_resumes_to_the_exact_file(
    operator: httpx.AsyncClient, anonymous: httpx.AsyncClient, image: bytes
) -> None:
    """What ``curl -C -`` and a station's updater do after a dropped link."""
    url = str((await upload(operator, image))["location"])
    got = bytearray()
    async with anonymous.stream("GET", url) as first:
        assert first.status_code == 200
        async for chunk in first.aiter_raw(64 * 1024):
            got += chunk
            if len(got) >= 1_500_000:
                break  # the link drops here
    assert 0 < len(got) < len(image)
    rest = await anonymous.get(url, headers={"Range": f"bytes={len(got)}-"})
    assert rest.status_code == 206
    got += rest.content
    assert bytes(got) == image
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(image).hexdigest()


@pytest.mark.socket
async def test_download_of_an_unknown_or_deleted_image_is_404(
    cloud: Cloud, operator: httpx.AsyncClient, anonymous: httpx.AsyncClient, image: bytes
) -> None:
    shown = await upload(operator, image[:5000], filename="small.bin")
    base = f"https://127.0.0.1:{cloud.port}/firmware"
    assert (await anonymous.get(f"{base}/{shown['image_id']}/other.bin")).status_code == 404
    assert (await anonymous.get(f"{base}/{'0' * 32}/small.bin")).status_code == 404
    assert (await anonymous.get(f"{base}/..%2F..%2Fcloud.db/small.bin")).status_code == 404
    assert (await anonymous.get(str(shown["location"]))).status_code == 200

    assert (await operator.delete(f"/firmware/{shown['image_id']}")).status_code == 204
    assert (await anonymous.get(str(shown["location"]))).status_code == 404
    assert (await operator.get(f"/firmware/{shown['image_id']}")).status_code == 404
    assert (await operator.delete(f"/firmware/{shown['image_id']}")).status_code == 404
    assert list(firmware_api.firmware_dir(cloud.config).iterdir()) == []


# -- storage (SQLite and PostgreSQL) ----------------------------------------------------


def _image(image_id: str, at: datetime) -> db.FirmwareImage:
    return db.FirmwareImage(
        image_id=image_id,
        version="1.0",
        filename="fw.bin",
        size=10,
        sha256="00" * 32,
        signature="c2ln",
        signing_certificate="-----BEGIN CERTIFICATE-----\n",
        uploaded_at=at,
    )


@pytest.mark.unit
async def test_storage_keeps_images_newest_first(store: Store) -> None:
    await store.firmware.add_image(_image("a" * 32, T0))
    await store.firmware.add_image(_image("b" * 32, T0 + timedelta(minutes=1)))
    assert [i.image_id for i in await store.firmware.list_images()] == ["b" * 32, "a" * 32]
    found = await store.firmware.get_image("a" * 32)
    assert found == _image("a" * 32, T0)
    assert await store.firmware.get_image("c" * 32) is None


@pytest.mark.unit
async def test_storage_gives_every_target_a_request_id_never_used_before(store: Store) -> None:
    """L01.FR.10: the station reports with the requestId of its UpdateFirmware, so one
    station's two updates must never share one."""
    await store.firmware.add_image(_image("a" * 32, T0))
    first = await store.firmware.create_rollout(
        image_id="a" * 32,
        station_ids=["CS1", "CS2"],
        selector={"station_ids": ["CS1", "CS2"]},
        retrieve_at=T0,
        install_at=None,
        at=T0,
    )
    second = await store.firmware.create_rollout(
        image_id="a" * 32,
        station_ids=["CS1"],
        selector={"station_ids": ["CS1"], "retries": 3},
        retrieve_at=T0,
        install_at=T0 + timedelta(hours=1),
        at=T0,
    )
    ids = [t.request_id for t in first.targets + second.targets]
    assert len(set(ids)) == 3
    assert all(t.status == db.PENDING for t in first.targets + second.targets)

    again = await store.firmware.get_rollout(second.rollout_id)
    assert again is not None
    assert again.selector == {"station_ids": ["CS1"], "retries": 3}
    assert again.install_at == T0 + timedelta(hours=1)
    assert [r.rollout_id for r in await store.firmware.list_rollouts()] == [
        second.rollout_id,
        first.rollout_id,
    ]
    pending = await store.firmware.pending_targets("CS1")
    assert [(t.rollout_id, i.image_id) for t, _, i in pending] == [
        (second.rollout_id, "a" * 32),
        (first.rollout_id, "a" * 32),
    ]


@pytest.mark.unit
async def test_a_boot_with_no_pending_update_costs_no_read_and_new_rollouts_are_found(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every BootNotification asks for the station's missed updates. The cloud knows
    which stations may have one: the others are answered without a read (a reconnect
    storm of 10,000 stations paid 10,000 reads for "none"), and a rollout made while the
    cloud runs, or before it started, is still found at the next boot."""
    await store.firmware.add_image(_image("a" * 32, T0))

    async def rollout(*ids: str) -> None:
        await store.firmware.create_rollout(
            image_id="a" * 32,
            station_ids=list(ids),
            selector={"station_ids": list(ids)},
            retrieve_at=T0,
            install_at=None,
            at=T0,
        )

    await rollout("CS1")
    restarted = await Store.open(store_url)  # a rollout made before the cloud started
    try:
        reads = count_reads(restarted, monkeypatch)
        assert [t.station_id for t, _, _ in await restarted.firmware.pending_targets("CS1")] == [
            "CS1"
        ]
        before = reads[0]
        for n in range(100):
            assert await restarted.firmware.pending_targets(f"IDLE{n}") == []
        assert reads[0] == before  # none of them read anything
    finally:
        await restarted.close()

    await store.firmware.pending_targets("CS0")  # the set is loaded
    await rollout("CS2")  # made while running
    assert [t.station_id for t, _, _ in await store.firmware.pending_targets("CS2")] == ["CS2"]


@pytest.mark.unit
async def test_a_rollout_made_while_the_pending_set_loads_is_not_missed(store: Store) -> None:
    await store.firmware.add_image(_image("a" * 32, T0))
    made = store.firmware.create_rollout(
        image_id="a" * 32,
        station_ids=["CS3"],
        selector={"station_ids": ["CS3"]},
        retrieve_at=T0,
        install_at=None,
        at=T0,
    )
    first, _ = await asyncio.gather(store.firmware.pending_targets("CS3"), made)
    assert len(first) in (0, 1)  # raced: either is right for the boot under way
    assert [t.station_id for t, _, _ in await store.firmware.pending_targets("CS3")] == ["CS3"]


@pytest.mark.unit
async def test_storage_keeps_a_status_that_overtook_the_answer(store: Store) -> None:
    """The station may report Downloading before its Accepted answer is recorded."""
    await store.firmware.add_image(_image("a" * 32, T0))
    rollout = await store.firmware.create_rollout(
        image_id="a" * 32,
        station_ids=["CS1", "CS2"],
        selector={"percentage": 100},
        retrieve_at=T0,
        install_at=None,
        at=T0,
    )
    cs1 = next(t for t in rollout.targets if t.station_id == "CS1")
    moved = await store.firmware.record_status("CS1", cs1.request_id, "Downloading", T0)
    assert moved is not None and moved.rollout_id == rollout.rollout_id
    await store.firmware.record_answer(rollout.rollout_id, "CS1", "Accepted", T0)
    await store.firmware.record_answer(rollout.rollout_id, "CS2", "Rejected", T0)
    # without a requestId (1.6 FirmwareStatusNotification): the station's newest target
    assert await store.firmware.record_status("CS2", None, "Idle", T0) is not None
    assert await store.firmware.record_status("CS9", 1, "Installed", T0) is None
    found = await store.firmware.get_rollout(rollout.rollout_id)
    assert found is not None
    assert {t.station_id: t.status for t in found.targets} == {
        "CS1": "Downloading",
        "CS2": "Idle",
    }


@pytest.mark.unit
async def test_storage_deletes_an_image_with_its_rollouts(store: Store) -> None:
    await store.firmware.add_image(_image("a" * 32, T0))
    rollout = await store.firmware.create_rollout(
        image_id="a" * 32,
        station_ids=["CS1"],
        selector={"station_ids": ["CS1"]},
        retrieve_at=T0,
        install_at=None,
        at=T0,
    )
    assert await store.firmware.delete_image("a" * 32)
    assert await store.firmware.get_rollout(rollout.rollout_id) is None
    assert await store.firmware.pending_targets("CS1") == []
    assert not await store.firmware.delete_image("a" * 32)


@pytest.mark.unit
def test_percentage_picks_the_same_stations_and_grows_by_adding() -> None:
    stations = [f"CS{i:03d}" for i in range(200)]
    ten = pick_percentage("a" * 32, stations, 10)
    assert len(ten) == 20
    assert pick_percentage("a" * 32, reversed(stations), 10) == ten
    fifty = pick_percentage("a" * 32, stations, 50)
    assert len(fifty) == 100 and set(ten) <= set(fifty)
    assert pick_percentage("a" * 32, stations, 100) == sorted(stations)
    assert len(pick_percentage("a" * 32, stations[:3], 1)) == 1  # rounded up: never none
    assert pick_percentage("b" * 32, stations, 10) != ten  # another image, another sample
