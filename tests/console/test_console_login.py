"""Logging in and out of the console in a real browser (issue 16)."""

from __future__ import annotations

import pytest

from tests.console.conftest import Console

pytestmark = pytest.mark.socket


async def test_an_operator_logs_in_sees_the_fleet_page_and_logs_out(console: Console) -> None:
    tab = await console.open("ada", "/")
    page = tab.page
    assert await page.title() == "Fleet · PlugStream Cloud"
    await page.get_by_role("navigation", name="Console").wait_for()
    await tab.shot("fleet-smoke")
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url(console.origin + "/login")
    await tab.goto("/")
    await page.wait_for_url(f"{console.origin}/login?next=%2F")
