"""The console's id tokens, security events and setup claims pages in a real browser
(issue 16): what an operator does there lands in the REST API, and a read-only operator
finds every form disabled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.async_api import Page, expect
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.cloud.raw_station201 import station201
from tests.console.conftest import PHONE, Console
from tests.support import WAIT, basic_auth

pytestmark = pytest.mark.socket

STATION_PASSWORD = "station-password-0123"


async def test_an_operator_adds_an_id_token_and_blocks_it(console: Console) -> None:
    await console.api.put(
        "/id-tokens/FLEET-CARD-1", json={"status": "Accepted", "parent_id_token": "FLEET-A"}
    )
    tab = await console.open("otto", "/id-tokens")
    page = tab.page
    await expect(page.locator("#tok-list tr[data-token='FLEET-CARD-1']")).to_be_visible()

    await page.get_by_label("idToken", exact=True).fill("NEW-CARD-7")
    await page.get_by_label("Expiry (your local time)").fill("2031-06-30T18:00")
    await page.get_by_label("Group (parent idToken)").fill("FLEET-A")
    await page.get_by_role("button", name="Add id token").click()

    row = page.locator("#tok-list tr[data-token='NEW-CARD-7']")
    await expect(row).to_contain_text("Accepted")
    await expect(row).to_contain_text("FLEET-A")
    # the group shows both of its tokens
    group = page.locator("#tok-group-list tr.tok-group", has_text="FLEET-A")
    await expect(group).to_contain_text("NEW-CARD-7")
    await expect(group).to_contain_text("FLEET-CARD-1")

    await row.get_by_role("button", name="Block NEW-CARD-7").click()
    await expect(row).to_contain_text("Blocked")
    await expect(row.get_by_role("button", name="Unblock NEW-CARD-7")).to_be_visible()
    saved = (await console.api.get("/id-tokens/NEW-CARD-7")).json()
    assert saved["status"] == "Blocked"
    assert saved["parent_id_token"] == "FLEET-A"
    assert saved["expiry"].startswith("2031-06-30")  # kept when blocked: PUT sends it all
    await tab.shot("id-tokens")

    # a token given again is refused in the page, with the way to change it
    await page.get_by_label("idToken", exact=True).fill("NEW-CARD-7")
    await page.get_by_role("button", name="Add id token").click()
    await expect(page.get_by_role("alert").filter(has_text="exists already")).to_be_visible()

    phone = await console.open("otto", "/id-tokens", viewport=PHONE)
    await expect(phone.page.locator("#tok-list tr[data-token='NEW-CARD-7']")).to_be_visible()
    assert await page_fits(phone.page)
    await phone.shot("id-tokens-phone")


async def test_an_operator_changes_a_tokens_expiry_and_group(console: Console) -> None:
    await console.api.put("/id-tokens/CARD-9", json={"status": "Accepted"})
    tab = await console.open("ada", "/id-tokens")
    page = tab.page
    row = page.locator("#tok-list tr[data-token='CARD-9']")
    await row.get_by_role("button", name="Change CARD-9: expiry, group, status").click()
    await expect(page.get_by_role("heading", name="Change id token CARD-9")).to_be_visible()
    await page.get_by_label("Expiry (your local time)").fill("2030-01-01T00:00")
    await page.get_by_label("Group (parent idToken)").fill("DEPOT")
    await page.get_by_role("button", name="Save changes").click()
    await expect(row).to_contain_text("DEPOT")
    saved = (await console.api.get("/id-tokens/CARD-9")).json()
    assert saved["parent_id_token"] == "DEPOT" and saved["expiry"].startswith("20")


async def page_fits(page: Page) -> bool:
    """Nothing wider than the viewport: tables scroll inside their wrap."""
    overflow: bool = await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    return overflow


async def refused_login(console: Console, station_id: str, password: str) -> int:
    """The HTTP status of a station's WebSocket handshake with ``password``."""
    try:
        async with connect(
            console.hop.cloud.url(station_id),
            subprotocols=[Subprotocol("ocpp2.0.1")],
            additional_headers=basic_auth(station_id, password),
            open_timeout=WAIT,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_security_events_show_a_refused_login_counted_and_a_reported_event(
    console: Console,
) -> None:
    answer = await console.api.put(
        "/stations/SE-LOCKED", json={"password": STATION_PASSWORD, "security_profile": 1}
    )
    assert answer.status_code in (200, 201), answer.text
    for _ in range(2):
        assert await refused_login(console, "SE-LOCKED", STATION_PASSWORD + "x") == 401
    async with station201(console.hop, "SE-TAMPER") as station:
        await station.call(
            "SecurityEventNotification",
            {
                "type": "TamperDetectionActivated",
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "techInfo": "cover opened",
            },
        )

    tab = await console.open("rita", "/security-events")
    page = tab.page
    refused = page.locator("#se-list tr.se-gateway", has_text="SE-LOCKED")
    await expect(refused).to_contain_text("FailedToAuthenticate")
    await expect(refused.locator("td.num")).to_have_text("2")  # two refusals, one row
    reported = page.locator("#se-list tr.se-station", has_text="SE-TAMPER")
    await expect(reported).to_contain_text("TamperDetectionActivated")
    await expect(reported).to_contain_text("cover opened")
    await expect(page.locator("#se-count-refused .n")).to_have_text("2")
    await tab.shot("security-events")

    # the type filter keeps only that type; the station filter asks the API for one station
    await page.get_by_label("Event type").select_option("TamperDetectionActivated")
    await expect(page.locator("#se-list tr.se-event")).to_have_count(1)
    await expect(page.locator("#se-list tr.se-event")).to_contain_text("SE-TAMPER")
    await page.get_by_role("button", name="Clear").click()
    await page.get_by_label("Station", exact=True).fill("SE-LOCKED")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#se-list tr.se-event")).to_have_count(1)
    await expect(page.locator("#se-list tr.se-event")).to_contain_text("SE-LOCKED")


async def test_an_operator_claims_a_station_and_releases_it(console: Console) -> None:
    tab = await console.open("otto", "/claims")
    page = tab.page
    await page.get_by_label("Serial number").fill("PS7-000123")
    await page.get_by_label("Owner").fill("Depot Ltd")
    await page.get_by_label("OCPP version").select_option("2.0.1")
    await page.get_by_role("button", name="Claim", exact=True).click()
    row = page.locator("#cl-list tr.cl-claim", has_text="PS7-000123")
    await expect(row).to_contain_text("Depot Ltd")
    await expect(row).to_contain_text("PlugStream Cloud")
    await expect(row).to_contain_text("Not yet")
    claim = (await console.api.get("/claims/PS7-000123")).json()
    assert (claim["owner"], claim["ocpp_version"]) == ("Depot Ltd", "2.0.1")

    # what the API refuses is shown with its reason
    await page.get_by_label("Serial number").fill("PS7-000124")
    await page.get_by_label("Owner").fill("Elsewhere")
    await page.get_by_label("Another CSMS").check()
    await page.get_by_label("CSMS URL").fill("ws://csms.example.com/ocpp")
    await page.get_by_role("button", name="Claim", exact=True).click()
    await expect(page.get_by_role("alert").filter(has_text="ws:// is not TLS")).to_be_visible()
    tab.refused(422)
    await page.get_by_label("CSMS URL").fill("wss://csms.example.com/ocpp")
    await page.get_by_label("Station's password at that CSMS").fill("third-party-pass-0123")
    await page.get_by_role("button", name="Claim", exact=True).click()
    other = page.locator("#cl-list tr.cl-claim", has_text="PS7-000124")
    await expect(other).to_contain_text("wss://csms.example.com/ocpp")
    await expect(other).to_contain_text("kept")
    await tab.shot("claims")

    await row.get_by_role("button", name="Release the claim of PS7-000123").click()
    await expect(row).to_have_count(0)
    assert (await console.api.get("/claims/PS7-000123")).status_code == 404


@pytest.mark.parametrize(
    ("path", "button"),
    [
        ("/id-tokens", "Add id token"),
        ("/firmware", "Upload and sign"),
        ("/firmware", "Roll out"),
        ("/claims", "Claim"),
    ],
)
async def test_a_read_only_operator_finds_the_forms_disabled(
    console: Console, path: str, button: str
) -> None:
    await console.api.put("/id-tokens/RO-CARD", json={"status": "Accepted"})
    await console.api.put("/claims/RO-SERIAL", json={"owner": "Someone"})
    tab = await console.open("rita", path)
    page = tab.page
    submit = page.get_by_role("button", name=button, exact=True)
    await expect(submit).to_be_disabled()
    form = page.locator("form", has=submit)
    await expect(form).to_contain_text("Read-only: you cannot do this.")
    for control in await form.locator("input:not([type=hidden]), select").all():
        await expect(control).to_be_disabled()
    await expect(page.locator(".read-only-note")).to_be_visible()
    if path == "/id-tokens":
        row = page.locator("#tok-list tr[data-token='RO-CARD']")
        await expect(row.get_by_role("button", name="Block RO-CARD")).to_be_disabled()
        await tab.shot("id-tokens-read-only")
    if path == "/claims":
        await expect(
            page.get_by_role("button", name="Release the claim of RO-SERIAL")
        ).to_be_disabled()
    # and the API says no to her session as well
    status = await page.evaluate(
        """async () => (await fetch('/api/v1/id-tokens/RO-CARD', {method: 'PUT',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': document.body.dataset.csrf},
            body: JSON.stringify({status: 'Blocked'})})).status"""
    )
    assert status == 403
    tab.refused(403)
    assert (await console.api.get("/id-tokens/RO-CARD")).json()["status"] == "Accepted"
