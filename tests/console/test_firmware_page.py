"""The console's firmware page in a real browser (issue 16): an operator uploads an image
from the page, rolls it out to one of our own stations and watches the station go through
the firmware statuses to Installed, without reloading the page.

The cloud here signs firmware, so it is made with a PKI (``plugstream pki init``): the
shared ``console`` fixture's cloud has none, and answers an upload 409."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from plugstream.pki.keystore import PKIStore
from plugstream.station.certificates import MANUFACTURER_ROOT
from plugstream.station.firmware import build_image
from tests.cloud.raw_station201 import ocpp_url, our_station
from tests.console.conftest import PHONE, Console, console_with
from tests.support import WAIT, running, until_advancing

pytestmark = pytest.mark.socket

STATION = "FW-PAGE-1"
#: the longest reconnect pause of :func:`our_station` after its reboot (RETRY_AT_ONCE)
RECONNECT_S = 2.0
WAIT_MS = WAIT * 1000


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    """What ``plugstream pki init`` makes: the Firmware Signing key and the roots."""
    folder = tmp_path / "pki"
    PKIStore(folder).init("PlugStream Test CPO")
    return folder


@pytest.fixture
async def signing_console(
    tmp_path: Path, browser: Browser, pki_dir: Path
) -> AsyncIterator[Console]:
    """The ``console`` fixture's cloud and operators, with a PKI to sign firmware."""
    async with console_with(tmp_path, browser, pki_dir=pki_dir) as made:
        yield made


async def test_an_operator_uploads_firmware_and_watches_a_station_install_it(
    signing_console: Console, tmp_path: Path, pki_dir: Path
) -> None:
    console = signing_console
    station, clock = our_station(console.hop, STATION, tmp_path)
    station.certificates.add_root(
        MANUFACTURER_ROOT, (pki_dir / "manufacturer-root.pem").read_bytes()
    )
    # the station's clock a minute ahead of the cloud's: by its time the download is due
    # at once (the rollout's retrieveDateTime is the cloud's now)
    clock.step((datetime.now(UTC) - clock.now()).total_seconds() + 60)
    image = tmp_path / "plugstream 2.0.0.bin"
    image.write_bytes(build_image("2.0.0", size=48 * 1024, seed=3))

    async with running(station, ocpp_url(console.hop), online=True):
        tab = await console.open("otto", "/firmware")
        page = tab.page
        await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

        await page.get_by_label("Image file").set_input_files(image)
        # the API's file name, made from the file's own
        await expect(page.get_by_label("File name stations see")).to_have_value(
            "plugstream-2.0.0.bin"
        )
        await page.get_by_label("Version", exact=True).fill("2.0.0")
        await page.get_by_role("button", name="Upload and sign").click()

        row = page.locator("#fw-images tr.fw-image", has_text="plugstream-2.0.0.bin")
        await expect(row).to_contain_text("Signed")
        [listed] = (await console.api.get("/firmware")).json()
        assert listed["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        assert listed["version"] == "2.0.0"
        await expect(row).to_contain_text(listed["sha256"][:12])
        await expect(row).to_contain_text("48 KiB")

        await expect(page.get_by_label("Image", exact=True)).to_have_value(listed["image_id"])
        await page.get_by_label(STATION).check()
        await page.get_by_role("button", name="Roll out").click()

        target = page.locator(f"#fw-rollouts tr.fw-target[data-station='{STATION}']")
        status = target.locator(".fw-status")
        # the station's answer, then its firmware statuses as they come
        await expect(status).to_have_attribute("data-status", re.compile(r"\w+"))

        # the station reboots into 2.0.0 and waits, on its clock, to connect again: the
        # page shows it there before the test lets its time move on
        await expect(status).to_have_attribute("data-status", "InstallRebooting", timeout=WAIT_MS)

        async def installed_shown() -> bool:
            return await status.get_attribute("data-status") == "Installed"

        shown: bool = await until_advancing(
            clock, installed_shown, "the page shows Installed", up_to=RECONNECT_S
        )
        assert shown
        # what the page saw, live: the station's answer, then its statuses to Installed
        # (steps a station makes within one live update may show as one)
        seen = await target.locator(".fw-seen li").all_text_contents()
        assert seen[-2:] == ["InstallRebooting", "Installed"] and len(seen) >= 3, seen
        await expect(page.locator("#fw-rollouts .fw-rollout").first).to_contain_text("Finished")
        assert await page.evaluate("window.loadedOnce === true")
        assert station.firmware.version == "2.0.0"
        await tab.shot("firmware")

        phone = await console.open("otto", "/firmware", viewport=PHONE)
        await expect(
            phone.page.locator(f"#fw-rollouts tr.fw-target[data-station='{STATION}'] .fw-status")
        ).to_have_attribute("data-status", "Installed")
        fits = await phone.page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
        assert fits
        await phone.shot("firmware-phone")


async def test_an_upload_to_a_cloud_without_a_pki_shows_why_it_was_refused(
    console: Console, tmp_path: Path
) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(build_image("9.9.9", size=4096, seed=1))
    tab = await console.open("ada", "/firmware")
    page = tab.page
    await page.get_by_label("Image file").set_input_files(image)
    await page.get_by_label("Version", exact=True).fill("9.9.9")
    await page.get_by_role("button", name="Upload and sign").click()
    await expect(page.get_by_role("alert").filter(has_text="409")).to_contain_text(
        "firmware signing needs the PKI"
    )
    await expect(page.locator("#fw-images")).to_contain_text("No firmware images yet")
    # Chromium logs the refusal the test asked for as a console error
    tab.refused(409)
    assert (await console.api.get("/firmware")).json() == []


async def test_an_operator_deletes_an_image_from_the_page(signing_console: Console) -> None:
    console = signing_console
    answer = await console.api.post(
        "/firmware",
        params={"version": "1.2.3", "filename": "old-1.2.3.bin"},
        content=build_image("1.2.3", size=4096, seed=2),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 201, answer.text
    tab = await console.open("otto", "/firmware")
    row = tab.page.locator("#fw-images tr.fw-image", has_text="old-1.2.3.bin")
    await row.get_by_role("button", name="Delete firmware 1.2.3 (old-1.2.3.bin)").click()
    await expect(row).to_have_count(0)
    assert (await console.api.get("/firmware")).json() == []
