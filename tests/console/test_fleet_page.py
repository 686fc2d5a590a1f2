"""The fleet page in a real browser (issue 16): every station with its model, versions,
connection and connectors, the counts at the top, search and filters, a connector's
change shown live without a reload, and the overview's chart."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from fastapi import FastAPI
from playwright.async_api import Locator, Page, Route, expect
from websockets.asyncio.client import ClientConnection

from plugstream.cloud.console import live as live_module
from plugstream.cloud.console.live import LiveHub
from plugstream.station.ev import CITY_CAR, Ev
from tests.cloud.raw_station201 import BOOT, RawStation201, ocpp_url, our_station, station201
from tests.console.conftest import PHONE, Console
from tests.support import WAIT, booted16, running, until

pytestmark = pytest.mark.socket

MS = WAIT * 1000  # Playwright's timeouts are in milliseconds


def boot(model: str, vendor: str, firmware: str) -> dict[str, Any]:
    return {
        **BOOT,
        "chargingStation": {"model": model, "vendorName": vendor, "firmwareVersion": firmware},
    }


async def call16(ws: ClientConnection, action: str, payload: dict[str, Any]) -> None:
    """A CALL of a raw 1.6 station, and its CALLRESULT awaited."""
    await ws.send(orjson.dumps([2, f"{action}-1", action, payload]).decode())
    while True:
        frame = orjson.loads(await ws.recv())
        if frame[0] == 3 and frame[1] == f"{action}-1":
            return


@contextlib.asynccontextmanager
async def mixed_fleet(console: Console) -> AsyncIterator[RawStation201]:
    """Four stations: two 2.0.1 (one Faulted), a 1.6 one Charging, and one that came and
    went (Offline); the body gets the Faulted one."""
    hop = console.hop
    async with station201(hop, "CS-GONE", boot=boot("Gone-1", "Oldco", "0.9")):
        pass
    await until(lambda: not hop.cloud.gateway.is_connected("CS-GONE"), "CS-GONE offline")
    async with (
        station201(hop, "CS-ACME", boot=boot("AC-22", "Acme", "1.2.3")) as acme,
        station201(hop, "CS-FAULT", boot=boot("DC-150", "Volta", "4.0.1")) as fault,
        booted16(hop.cloud.url("CS-16")) as old,
    ):
        now = datetime.now(UTC)
        await acme.status("Available", now)
        await fault.status("Faulted", now)
        await call16(
            old,
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Charging"},
        )
        yield fault


def row(page: Page, station_id: str) -> Locator:
    return page.locator(f"tr[data-station='{station_id}']")


def count(page: Page, key: str) -> Locator:
    return page.locator(f"ul.counts li[data-count='{key}'] .n")


async def visible_rows(page: Page) -> list[str]:
    ids: list[str] = await page.locator("tbody tr:not([hidden])").evaluate_all(
        "rows => rows.map(r => r.dataset.station)"
    )
    return ids


async def test_an_operator_sees_the_fleet_with_models_versions_and_counts(
    console: Console,
) -> None:
    async with mixed_fleet(console):
        tab = await console.open("ada", "/")
        page = tab.page
        acme = row(page, "CS-ACME")
        await expect(acme).to_contain_text("Acme AC-22", timeout=MS)
        await expect(acme).to_contain_text("2.0.1")
        await expect(acme).to_contain_text("1.2.3")
        await expect(acme.locator(".badge", has_text="Connected")).to_be_visible()
        await expect(acme.locator(".badge", has_text="1: Available")).to_be_visible()
        await expect(acme.get_by_role("link", name="CS-ACME")).to_have_attribute(
            "href", "/stations/CS-ACME"
        )
        await expect(row(page, "CS-FAULT").locator(".badge", has_text="1: Faulted")).to_be_visible()
        old = row(page, "CS-16")
        await expect(old).to_contain_text("PlugStream Test")
        await expect(old).to_contain_text("1.6")
        await expect(old.locator(".badge", has_text="1: Charging")).to_be_visible()
        await expect(row(page, "CS-GONE").locator(".badge", has_text="Offline")).to_be_visible()
        expected = {"connected": "3", "charging": "1", "faulted": "1", "offline": "1"}
        for key, n in expected.items():
            await expect(count(page, key)).to_have_text(n)
        await expect(page.locator("#fleet-shown")).to_have_text("Showing all 4 stations.")
        await expect(page.locator("button.fleet-more")).to_be_hidden()
        await tab.shot("fleet")

        phone = await console.open("ada", "/", viewport=PHONE)
        await expect(row(phone.page, "CS-ACME")).to_be_visible(timeout=MS)
        overflow = await phone.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, "the page is no wider than the phone: the table scrolls inside"
        await phone.shot("fleet-phone")


async def test_search_and_filters_narrow_the_rows_without_a_reload(console: Console) -> None:
    async with mixed_fleet(console):
        tab = await console.open("otto", "/")
        page = tab.page
        await expect(page.locator("#fleet-shown")).to_have_text(
            "Showing all 4 stations.", timeout=MS
        )
        await page.evaluate("window.__marker = 1")

        await page.get_by_label("Search").fill("volta")  # a vendor, in any case
        await expect(page.locator("#fleet-shown")).to_have_text("Showing 1 of 4 stations.")
        assert await visible_rows(page) == ["CS-FAULT"]
        await page.get_by_label("Search").fill("1.2.3")  # a firmware version
        assert await visible_rows(page) == ["CS-ACME"]
        await page.get_by_label("Search").fill("")

        await page.get_by_label("Connection").select_option("offline")
        await expect(page.locator("#fleet-shown")).to_have_text("Showing 1 of 4 stations.")
        assert await visible_rows(page) == ["CS-GONE"]
        await page.get_by_label("Connection").select_option("connected")
        await expect(page.locator("#fleet-shown")).to_have_text("Showing 3 of 4 stations.")

        await page.get_by_label("Connector status").select_option("Charging")
        assert await visible_rows(page) == ["CS-16"]
        await page.get_by_label("Search").fill("acme")
        await expect(page.locator(".fleet-empty")).to_have_text(
            "No station matches the search and filters."
        )
        assert await visible_rows(page) == []
        # the filters are in the address, so a reload or a link keeps them
        assert "status=Charging" in page.url and "q=acme" in page.url
        await expect(page.locator("#announcer")).to_have_text("Showing 0 of 4 stations.")
        assert await page.evaluate("window.__marker") == 1, "the page was not reloaded"


async def test_a_connector_changes_state_live_when_an_ev_plugs_in(
    console: Console, tmp_path: Path
) -> None:
    station, _clock = our_station(console.hop, "CS-LIVE", tmp_path)
    assert (await console.api.put("/id-tokens/TAG-LIVE", json={})).is_success
    async with running(station, ocpp_url(console.hop), online=True):
        tab = await console.open("rita", "/")  # read-only sees the same live fleet
        page = tab.page
        live = row(page, "CS-LIVE")
        await expect(live.locator(".badge", has_text="1: Available")).to_be_visible(timeout=MS)
        await expect(count(page, "connected")).to_have_text("1")
        await page.evaluate("window.__marker = 1")

        station.plug_in(Ev(CITY_CAR, soc=20.0))

        await expect(live.locator(".badge", has_text="1: Occupied")).to_be_visible(timeout=MS)
        await expect(live.locator(".badge", has_text="1: Available")).to_have_count(0)
        assert await page.evaluate("window.__marker") == 1, "changed in place, no reload"

        # 2.0.1 says Occupied whether the car charges or waits: the transaction's
        # chargingState tells, and the station counts as charging
        assert await station.swipe("TAG-LIVE")
        await expect(live.locator(".badge", has_text="1: Occupied · Charging")).to_be_visible(
            timeout=MS
        )
        await expect(count(page, "charging")).to_have_text("1")

    # the station goes away: its row says so, and the counts follow, still without a reload
    await expect(live.locator(".badge", has_text="Offline")).to_be_visible(timeout=MS)
    await expect(count(page, "offline")).to_have_text("1")
    await expect(count(page, "connected")).to_have_text("0")
    assert await page.evaluate("window.__marker") == 1


async def test_the_overview_chart_draws_connected_stations_and_messages_a_second(
    console: Console,
) -> None:
    tab = await console.open("ada", "/")
    page = tab.page
    for chart in ("#chart-connected", "#chart-rate"):
        # the hub's sample at start is one point: drawn as a dot where no line can be
        await page.locator(f"{chart} svg path.series").wait_for(state="attached")
        await expect(page.locator(f"{chart} svg circle.last-point")).to_be_visible()
    await expect(page.locator("#chart-connected figcaption")).to_have_text("Connected stations")
    await expect(page.locator("#chart-rate figcaption")).to_have_text("OCPP messages per second")
    label = await page.locator("#chart-connected svg").get_attribute("aria-label")
    assert label is not None and "Connected stations" in label and "point" in label


def synthetic(i: int) -> dict[str, Any]:
    """A station as GET /stations writes one: every tenth offline, every seventh Faulted."""
    at = "2026-12-05T12:00:00Z"
    return {
        "station_id": f"S{i:05d}",
        "connected": i % 10 != 0,
        "ocpp_version": "2.0.1",
        "vendor": "Acme",
        "model": "AC-22",
        "serial_number": None,
        "firmware_version": "1.0",
        "security_profile": 0,
        "lenient": False,
        "boot_status": "Accepted",
        "has_password": False,
        "registered_at": at,
        "last_boot": None,
        "last_seen": at,
        "clock_offset_s": None,
        "connectors": [
            {
                "evse_id": 1,
                "connector_id": 1,
                "status": "Faulted" if i % 7 == 0 else "Available",
                "error_code": None,
                "updated_at": at,
            }
        ],
        "protocol_violations": 0,
        "failed_logins": 0,
    }


async def test_a_large_fleet_is_counted_whole_and_listed_a_page_at_a_time(
    console: Console,
) -> None:
    """A fleet of thousands: the page lists the first 200 that match (a browser lays out
    a table of ten thousand rows for seconds) and counts them all."""
    body = orjson.dumps([synthetic(i) for i in range(1000)]).decode()
    tab = await console.open("ada", "/")
    page = tab.page

    async def answer(route: Route) -> None:
        await route.fulfill(status=200, content_type="application/json", body=body)

    await page.route("**/api/v1/stations", answer)
    await tab.goto("/")
    shown = page.locator("#fleet-shown")
    await expect(shown).to_have_text("1,000 stations: the first 200 are listed.", timeout=MS)
    await expect(page.locator("tbody tr")).to_have_count(200)
    await expect(page.locator("button.fleet-more")).to_have_text("List 200 more")
    expected = {"connected": "900", "charging": "0", "faulted": "143", "offline": "100"}
    for key, n in expected.items():
        await expect(count(page, key)).to_have_text(n)

    await page.get_by_role("button", name="List 200 more").click()
    await expect(page.locator("tbody tr")).to_have_count(400)
    await expect(shown).to_have_text("1,000 stations: the first 400 are listed.")

    await page.get_by_label("Connection").select_option("offline")
    await expect(shown).to_have_text("Showing 100 of 1,000 stations.")
    await expect(page.locator("tbody tr")).to_have_count(100)
    await expect(page.locator("button.fleet-more")).to_be_hidden()


async def test_a_page_told_to_resync_reads_the_fleet_again_without_a_reload(
    console: Console,
) -> None:
    """What a page too slow for its events is told (tests/cloud/test_console_live.py
    shows when): it reads the list afresh, and the rows follow the store."""
    async with station201(console.hop, "CS-SYNC", boot=boot("AC-22", "Acme", "1.0")):
        tab = await console.open("ada", "/")
        page = tab.page
        listed: list[str] = []
        page.on(
            "request",
            lambda request: (
                listed.append(request.url) if request.url.endswith("/api/v1/stations") else None
            ),
        )
        await expect(row(page, "CS-SYNC")).to_contain_text("Acme AC-22", timeout=MS)
        await page.evaluate("window.__marker = 1")
        reads = len(listed)

        app = cast(FastAPI, console.hop.cloud.server.config.app)
        hub: LiveHub = app.state.live
        hub._publish(live_module._event("resync", {}))

        await until(lambda: len(listed) > reads, "the page reads the stations again")
        await expect(row(page, "CS-SYNC")).to_contain_text("Acme AC-22")
        assert await page.evaluate("window.__marker") == 1, "no reload"
