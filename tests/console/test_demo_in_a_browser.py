"""``make demo``'s console in a real browser (issue 16): the address and login the demo
prints open the console, and its fleet is there, live, charging."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Request, expect

from tests.console.conftest import DESKTOP, SHOTS
from tests.support import read_until
from tests.test_demo import CONSOLE_LINE, start_demo, stop_demo

pytestmark = pytest.mark.socket


async def test_the_demos_login_shows_its_fleet_live_in_the_browser(browser: Browser) -> None:
    proc = start_demo("--stations", "4", "--time-scale", "120")
    try:
        out = await asyncio.to_thread(read_until, proc, "PlugStream console:", timeout=30)
        found = CONSOLE_LINE.fullmatch(out.splitlines()[-1])
        assert found is not None, out
        origin, password, _viewer = found.groups()
        context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
        hosts: set[str] = set()

        def requested(request: Request) -> None:
            hosts.add(urlsplit(request.url).netloc)

        try:
            page = await context.new_page()
            page.on("request", requested)
            await page.goto(origin)  # the login first, then the fleet
            await page.get_by_label("User name").fill("demo")
            await page.get_by_label("Password").fill(password)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("heading", name="Fleet", level=1)).to_be_visible()
            for station_id in ("PS-001", "PS-002", "PS-003", "PS-004"):
                row = page.locator(f"tr[data-station='{station_id}']")
                await expect(row.locator(".badge", has_text="Connected")).to_be_visible()
            # the demo's cars charge: a connector is seen charging without a reload
            charging = page.locator(".badge", has_text="Charging")
            await expect(charging.first).to_be_visible()
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / "demo-fleet.png"), full_page=True)
            assert hosts == {urlsplit(origin).netloc}, hosts
        finally:
            await context.close()
    finally:
        _, err = await asyncio.to_thread(stop_demo, proc)
    assert "Traceback" not in err, err
