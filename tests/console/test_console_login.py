"""Logging in and out of the console in a real browser (issue 16)."""

from __future__ import annotations

import httpx
import pytest

from plugstream.cloud.api.common import SESSION_COOKIE
from tests.cloud.raw_station201 import station201
from tests.console.conftest import Console, Tab
from tests.support import WAIT

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


async def session_cookie(tab: Tab) -> str:
    [cookie] = [c for c in await tab.page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    return str(cookie["value"])


async def test_logging_out_ends_the_session_for_the_api_too(console: Console) -> None:
    tab = await console.open("otto", "/claims")
    cookie = await session_cookie(tab)
    # a client of its own that keeps sending the cookie the browser had
    async with httpx.AsyncClient(
        base_url=console.origin, timeout=WAIT, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}
    ) as browserless:
        assert (await browserless.get("/api/v1/session")).status_code == 200
        await tab.page.get_by_role("button", name="Log out").click()
        await tab.page.wait_for_url(console.origin + "/login")
        assert not [c for c in await tab.page.context.cookies() if c["name"] == SESSION_COOKIE]
        # the old cookie, sent again: the session it named is gone
        for path in ("/api/v1/session", "/api/v1/stations"):
            answer = await browserless.get(path)
            assert answer.status_code == 401, (path, answer.text)
        answer = await browserless.put(
            "/api/v1/id-tokens/AFTER-LOGOUT",
            json={"status": "Accepted"},
            headers={"X-CSRF-Token": "anything"},
        )
        assert answer.status_code == 401
    assert (await console.api.get("/id-tokens/AFTER-LOGOUT")).status_code == 404


FORGE = """([action, fields]) => {
    // what another page's script would post: a real form, with no csrf_token field
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    form.enctype = "application/x-www-form-urlencoded";
    for (const [name, value] of Object.entries(fields)) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.append(input);
    }
    document.body.append(form);
    form.submit();
}"""

FETCH = """async ([path, token]) => {
    const answer = await fetch(path, {
        method: "POST",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": token},
        body: JSON.stringify({type: "Immediate"}),
    });
    return [answer.status, await answer.text()];
}"""


async def forged_post(tab: Tab, action: str, fields: dict[str, str]) -> tuple[int, str]:
    """Submit a forged form from the logged-in page: the answer's status and body."""
    async with tab.page.expect_navigation() as navigation:
        await tab.page.evaluate(FORGE, [action, fields])
    response = await navigation.value
    assert response is not None
    return response.status, await response.text()


async def test_a_forged_form_post_without_the_csrf_token_is_refused(console: Console) -> None:
    async with station201(console.hop, "CSRF-1") as station:
        tab = await console.open("ada", "/claims")
        reset = "/api/v1/stations/CSRF-1/commands/Reset"

        status, body = await forged_post(tab, reset, {"type": "Immediate"})
        assert status == 403 and "CSRF" in body, body
        status, body = await forged_post(tab, "/logout", {})
        assert status == 403 and "CSRF" in body, body
        tab.refused(403)  # and the icon the browser then asks for is there (no 404)

        # still logged in: the forged logout did nothing
        await tab.goto("/claims")
        assert tab.page.url == console.origin + "/claims"
        who = await tab.page.evaluate("async () => (await fetch('/api/v1/session')).status")
        assert who == 200

        # a script's fetch with a wrong token: refused the same way
        status, body = await tab.page.evaluate(FETCH, [reset, "not-the-token"])
        assert status == 403 and "CSRF" in body, body
        tab.refused(403)

        # with the session's own token the same command goes through, and it is the only
        # Reset the station ever got: the refused ones never reached it
        csrf = await tab.page.evaluate("document.body.dataset.csrf")
        status, body = await tab.page.evaluate(FETCH, [reset, csrf])
        assert status == 200, body
        await station.received_call("Reset")
        assert station.calls("Reset") == [{"type": "Immediate"}]
