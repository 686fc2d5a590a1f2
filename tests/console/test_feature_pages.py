"""The console's pages for the 2.0.1 features (issue 16): reservations, tariffs, sites and
their limits, display messages, each driven in a real browser against raw 2.0.1 stations
that answer Accepted, so what the page sent is checked on the station's side."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.async_api import Locator, Page, ViewportSize, expect

from tests.cloud.raw_station201 import RawStation201, station201
from tests.console.conftest import PHONE, Console
from tests.support import until

pytestmark = pytest.mark.socket

# a loaded machine may take longer than expect's 5 s to draw what the API answered


def said(page: Page, text: str | re.Pattern[str]) -> Locator:
    """A success the page wrote in its content (the announcer says it too)."""
    return page.locator("#page .ok").filter(has_text=text)


async def at_phone_width(page: Page) -> None:
    """The same page, narrowed to a phone's width (what it shows stays): nothing may
    stick out sideways, only a table scrolls inside its .table-wrap."""
    await page.set_viewport_size(ViewportSize(width=PHONE["width"], height=PHONE["height"]))
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow} px wider than a phone"


async def loaded(page: Page, selector: str) -> None:
    """The page's script has drawn ``selector`` from the API (its data-loaded mark)."""
    await page.locator(f"{selector}[data-loaded]").first.wait_for()


async def test_a_reservation_made_in_the_page_is_listed_and_cancelled_there(
    console: Console,
) -> None:
    async with station201(console.hop, "CS-R1") as cs:
        tab = await console.open("otto", "/reservations")
        page = tab.page
        await loaded(page, "select[name=station_id]")
        await page.get_by_label("Station", exact=True).first.select_option("CS-R1")
        await page.get_by_label("EVSE id").fill("1")
        await page.get_by_label("Id token", exact=True).fill("DRIVER-7")
        await page.get_by_role("button", name="Reserve").click()
        await expect(said(page, re.compile(r"Reservation \d+ accepted by CS-R1"))).to_be_visible()
        reserve = await cs.received_call("ReserveNow")
        assert reserve["idToken"] == {"idToken": "DRIVER-7", "type": "ISO14443"}
        assert reserve["evseId"] == 1
        row = page.get_by_role("row").filter(has_text="DRIVER-7")
        await expect(row).to_contain_text("Accepted")
        await tab.shot("reservations")

        await row.get_by_role("button", name=re.compile("Cancel reservation")).click()
        await expect(row).to_contain_text("Cancelled")
        cancelled = await cs.received_call("CancelReservation")
        assert cancelled == {"reservationId": reserve["id"]}

        # a refusal is the station's answer, shown as one
        cs.answers["ReserveNow"] = {"status": "Occupied"}
        await page.get_by_role("button", name="Reserve").click()
        await expect(page.get_by_role("alert")).to_contain_text("CS-R1 answered Occupied")
        await at_phone_width(page)
        await tab.shot("reservations-phone")


async def test_a_tariff_created_in_the_page_is_listed_and_assigned_to_a_station(
    console: Console,
) -> None:
    async with station201(console.hop, "CS-T1"):
        tab = await console.open("ada", "/tariffs")
        page = tab.page
        await loaded(page, ".tariff-list")
        await page.get_by_label("Name").fill("Night rate")
        await page.get_by_label("Currency").fill("EUR")
        await page.get_by_label("Start fee").fill("0.50")
        await page.get_by_label("Price per kWh").fill("0.29")
        await page.get_by_label("VAT %").fill("19")
        await page.get_by_label("Message to the driver").fill("0.29 EUR/kWh at night")
        await page.get_by_role("button", name="Create tariff").click()
        await expect(said(page, re.compile(r"Tariff \d+ \(Night rate\) created"))).to_be_visible()
        row = page.locator(".tariff-list tr").filter(has_text="Night rate")
        await expect(row).to_contain_text("0.29 EUR")
        created = [
            t for t in (await console.api.get("/tariffs")).json() if t["name"] == "Night rate"
        ]
        assert [(t["per_kwh"], t["start_fee"], t["vat_percent"]) for t in created] == [
            ("0.29", "0.50", "19")
        ]

        # edited in the same form
        await row.get_by_role("button", name="Edit tariff Night rate").click()
        await expect(page.get_by_label("Price per kWh")).to_have_value("0.29")
        await page.get_by_label("Price per kWh").fill("0.27")
        await page.get_by_role("button", name="Save tariff").click()
        await expect(row).to_contain_text("0.27 EUR")

        await page.get_by_label("Who pays it").select_option("station")
        await page.get_by_label("Station", exact=True).select_option("CS-T1")
        await page.get_by_label("Tariff", exact=True).select_option(
            label=f"{created[0]['tariff_id']}: Night rate"
        )
        await page.get_by_role("button", name="Assign").click()
        await expect(page.locator(".assignment-list tr").filter(has_text="CS-T1")).to_contain_text(
            "Night rate"
        )
        assigned = (await console.api.get("/tariff-assignments")).json()
        assert [(a["scope"], a["key"], a["tariff_id"]) for a in assigned] == [
            ("station", "CS-T1", created[0]["tariff_id"])
        ]

        # an id-token group's tariff, assigned and removed again
        await page.get_by_label("Who pays it").select_option("group")
        await page.get_by_label("Group id token").fill("FLEET-1")
        await page.get_by_role("button", name="Assign").click()
        group_row = page.locator(".assignment-list tr").filter(has_text="FLEET-1")
        await expect(group_row).to_contain_text("Id-token group")
        await tab.shot("tariffs")
        await group_row.get_by_role("button", name="Remove the tariff of group FLEET-1").click()
        await expect(group_row).to_have_count(0)
        assert [a["key"] for a in (await console.api.get("/tariff-assignments")).json()] == [
            "CS-T1"
        ]
        await at_phone_width(page)
        await tab.shot("tariffs-phone")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def start_transaction(cs: RawStation201, transaction_id: str) -> None:
    """A transaction on EVSE 1, as the station reports it (TransactionEvent Started)."""
    await cs.call(
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": now_iso(),
            "triggerReason": "CablePluggedIn",
            "seqNo": 0,
            "transactionInfo": {"transactionId": transaction_id, "chargingState": "EVConnected"},
            "evse": {"id": 1, "connectorId": 1},
        },
    )


async def test_a_site_of_32_a_created_in_the_page_shows_how_its_stations_share_it(
    console: Console,
) -> None:
    async with station201(console.hop, "CS-S1") as one, station201(console.hop, "CS-S2") as two:
        await start_transaction(one, "TX-A")
        await start_transaction(two, "TX-B")
        tab = await console.open("otto", "/sites")
        page = tab.page
        await loaded(page, ".sites")
        await page.get_by_label("Name", exact=True).fill("Depot")
        await page.get_by_label("Limit (A per phase)").fill("32")
        await page.get_by_label("Phases").select_option("1")
        await page.get_by_label("CS-S1", exact=True).check()
        await page.get_by_label("CS-S2", exact=True).check()
        await page.get_by_label("CS-S2 maximum (A)").fill("16")
        await page.get_by_role("button", name="Create site").click()
        await expect(said(page, "Site Depot created")).to_be_visible()
        allocation = page.get_by_role("table", name="Allocation of Depot")
        await expect(allocation.get_by_role("row").filter(has_text="TX-A")).to_contain_text("16 A")
        await expect(allocation.get_by_role("row").filter(has_text="TX-B")).to_contain_text("16 A")
        await expect(page.locator(".allocation")).to_contain_text("Allocated 32 A of 32 A")
        site = (await console.api.get("/sites")).json()
        assert [(s["name"], s["maxCurrentA"], s["stationMaxCurrentA"]) for s in site] == [
            ("Depot", 32, {"CS-S1": 32, "CS-S2": 16})
        ]
        await until(lambda: one.calls("SetChargingProfile"), "the site's share sent to CS-S1")

        # a station belongs to one site: the API's refusal is shown in the form
        await page.get_by_label("Name", exact=True).fill("Annex")
        await page.get_by_label("CS-S1", exact=True).check()
        await page.get_by_role("button", name="Create site").click()
        await expect(page.locator(".site-form [role=alert]")).to_contain_text("409")
        await expect(page.locator(".site-form [role=alert]")).to_contain_text("CS-S1")
        tab.refused(409)

        # a profile of the operator's own, then the composite schedule, then cleared
        await page.get_by_label("Station", exact=True).select_option("CS-S2")
        await loaded(page, ".profiles[data-loaded='CS-S2']")
        await page.get_by_role("button", name="Set charging profile").click()
        await expect(said(page, "CS-S2 accepted charging profile 100")).to_be_visible()
        sent = two.calls("SetChargingProfile")[-1]
        assert sent["evseId"] == 0 and sent["chargingProfile"]["id"] == 100
        profiles = page.get_by_role("table", name="Charging profiles the cloud set on CS-S2")
        await expect(
            profiles.get_by_role("row").filter(has_text="TxDefaultProfile")
        ).to_contain_text("Accepted")
        two.answers["GetCompositeSchedule"] = {
            "status": "Accepted",
            "schedule": {
                "evseId": 1,
                "duration": 3600,
                "scheduleStart": now_iso(),
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 16},
                    {"startPeriod": 1800, "limit": 10.5},
                ],
            },
        }
        await page.get_by_role("button", name="Get composite schedule").click()
        await expect(page.locator(".composite-out")).to_contain_text("CS-S2 answered Accepted")
        composite = page.get_by_role("table", name=re.compile("Composite schedule of EVSE 1"))
        await expect(composite.get_by_role("row").filter(has_text="1800")).to_contain_text("10.5")
        assert two.calls("GetCompositeSchedule")[-1] == {"evseId": 1, "duration": 3600}
        await profiles.get_by_role("button", name="Clear charging profile 100", exact=True).click()
        await expect(profiles.get_by_role("row").filter(has_text="TxDefaultProfile")).to_have_count(
            0
        )
        assert two.calls("ClearChargingProfile")[-1] == {"chargingProfileId": 100}
        await tab.shot("sites")
        await at_phone_width(page)
        await tab.shot("sites-phone")


async def test_a_display_message_set_in_the_page_is_listed_and_cleared(console: Console) -> None:
    async with station201(console.hop, "CS-D1") as cs:
        tab = await console.open("otto", "/display-messages")
        page = tab.page
        await loaded(page, ".messages[data-loaded='CS-D1']")
        await page.get_by_label("Message text").fill("Welcome to the depot")
        await page.get_by_label("Priority").select_option("InFront")
        await page.get_by_label("Only in state").select_option("Idle")
        await page.get_by_role("button", name="Set display message").click()
        await expect(said(page, "CS-D1 shows display message 1")).to_be_visible()
        sent = (await cs.received_call("SetDisplayMessage"))["message"]
        assert sent == {
            "id": 1,
            "priority": "InFront",
            "state": "Idle",
            "message": {"format": "UTF8", "content": "Welcome to the depot"},
        }
        row = page.get_by_role("row").filter(has_text="Welcome to the depot")
        await expect(row).to_contain_text("Accepted")
        await tab.shot("display-messages")

        await row.get_by_role("button", name="Clear display message 1").click()
        await expect(row).to_have_count(0)
        assert cs.calls("ClearDisplayMessage") == [{"id": 1}]

        # a station that cannot show it says so, and the page shows its answer
        cs.answers["SetDisplayMessage"] = {"status": "NotSupportedPriority"}
        await page.get_by_label("Message text").fill("Urgent")
        await page.get_by_label("Priority").select_option("AlwaysFront")
        await page.get_by_role("button", name="Set display message").click()
        await expect(page.get_by_role("alert").filter(has_text="CS-D1 answered")).to_contain_text(
            "NotSupportedPriority"
        )
        await at_phone_width(page)
        await tab.shot("display-messages-phone")


@pytest.mark.parametrize(
    ("path", "buttons"),
    [
        ("/reservations", ["Reserve"]),
        ("/tariffs", ["Create tariff", "Assign"]),
        ("/sites", ["Create site", "Set charging profile", "Clear charging profiles"]),
        ("/display-messages", ["Set display message", "Ask for its display messages"]),
    ],
)
async def test_a_read_only_user_sees_the_feature_forms_disabled(
    console: Console, path: str, buttons: list[str]
) -> None:
    async with station201(console.hop, "CS-RO"):
        made = await console.api.post(
            "/tariffs", json={"name": "Standard", "currency": "EUR", "per_kwh": "0.30"}
        )
        assert made.status_code == 201, made.text
        tab = await console.open("rita", path)
        page = tab.page
        await page.locator("#page form").first.wait_for()
        for name in buttons:
            await expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
        await expect(page.locator(".read-only-why")).to_have_count(len(buttons))
        if path == "/tariffs":  # a row's buttons too
            await loaded(page, ".tariff-list")
            await expect(page.get_by_role("button", name="Delete tariff Standard")).to_be_disabled()
