"""The transactions pages in a real browser (issue 16): the list of what real stations
charged, narrowed by station and id token without a reload (the filters in the URL, so
the view can be bookmarked), exported as CSV with those filters; and one transaction
with its power and energy drawn from its meter values and its flags explained."""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from plugstream.station.ev import CITY_CAR, Ev
from tests.cloud.raw_station201 import RawStation201, ocpp_url, our_station, station201
from tests.console.conftest import PHONE, Console
from tests.support import running, until

pytestmark = pytest.mark.socket

OURS, RAW = "TXP-OURS", "TXP-RAW"
OUR_TAG, RAW_TAG = "TAG-OURS", "TAG-RAW"
POWER, ENERGY = "Power.Active.Import", "Energy.Active.Import.Register"


async def transaction_of(console: Console, station_id: str) -> dict[str, Any]:
    """The station's newest transaction as the API lists it ({}: none yet)."""
    listed = (await console.api.get("/transactions", params={"station": station_id})).json()
    return listed[0] if listed else {}


async def samples(console: Console, tx_id: int, measurand: str) -> int:
    detail = (await console.api.get(f"/transactions/{tx_id}")).json()
    return sum(1 for m in detail["meter_values"] if m["measurand"] == measurand)


async def charge_on_our_station(console: Console, tmp_path: Path) -> int:
    """Our own Station201 charges a car for three minutes of its (manual) clock, a power
    and energy sample each minute, and stops: the transaction's id."""
    assert (await console.api.put(f"/id-tokens/{OUR_TAG}", json={})).status_code in (200, 201)
    station, clock = our_station(
        console.hop, OURS, tmp_path, **{"SampledDataCtrlr.TxUpdatedInterval": "60"}
    )
    async with running(station, ocpp_url(console.hop), online=True):
        station.plug_in(Ev(CITY_CAR, soc=20.0))
        assert await station.swipe(OUR_TAG)
        tx: dict[str, Any] = await until(
            lambda: transaction_of(console, OURS), "the transaction stored"
        )
        for minute in range(1, 4):
            await clock.advance(60)
            grown = functools.partial(_at_least, console, tx["id"], minute)
            await until(grown, f"the samples of minute {minute}")
        station.stop_transaction("StopAuthorized", "Local")

        async def ended() -> bool:
            return not (await transaction_of(console, OURS))["active"]

        await until(ended, "the transaction ended")
    return int(tx["id"])


async def _at_least(console: Console, tx_id: int, count: int) -> bool:
    return await samples(console, tx_id, POWER) >= count


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _sample(at: datetime, wh: float, w: float) -> dict[str, Any]:
    return {
        "timestamp": _stamp(at),
        "sampledValue": [
            {"value": wh, "measurand": ENERGY, "unitOfMeasure": {"unit": "Wh"}},
            {"value": w, "measurand": POWER, "unitOfMeasure": {"unit": "W"}},
        ],
    }


def _event(kind: str, seq: int, at: datetime, values: list[dict[str, Any]]) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventType": kind,
        "timestamp": _stamp(at),
        "triggerReason": {"Started": "Authorized", "Ended": "StopAuthorized"}.get(
            kind, "MeterValuePeriodic"
        ),
        "seqNo": seq,
        "transactionInfo": {"transactionId": "TXP-RAW-1", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": values,
    }
    if kind == "Started":
        event["idToken"] = {"idToken": RAW_TAG, "type": "ISO14443"}
    if kind == "Ended":
        event["transactionInfo"] = {"transactionId": "TXP-RAW-1", "stoppedReason": "Local"}
    return event


@pytest.fixture
async def flagged(console: Console) -> AsyncIterator[int]:
    """A raw 2.0.1 station's session whose update carries two energy samples with one
    timestamp and two values: a DuplicateTimestamp flag. Its id."""
    assert (await console.api.put(f"/id-tokens/{RAW_TAG}", json={})).status_code in (200, 201)
    cs: RawStation201
    async with station201(console.hop, RAW) as cs:
        began = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
        minute = timedelta(minutes=1)
        await cs.call("TransactionEvent", _event("Started", 0, began, [_sample(began, 5000, 0)]))
        updates = [_sample(began + minute * i, 5000 + 120 * i, 7200) for i in range(1, 6)]
        duplicate = _sample(began + minute * 5, 5000 + 120 * 5 + 7, 7200)
        await cs.call("TransactionEvent", _event("Updated", 1, began + 5 * minute, updates))
        await cs.call("TransactionEvent", _event("Updated", 2, began + 5 * minute, [duplicate]))
        end = began + 10 * minute
        await cs.call("TransactionEvent", _event("Ended", 3, end, [_sample(end, 6200, 0)]))
        tx = await transaction_of(console, RAW)
        assert [f["code"] for f in tx["flags"]] == ["DuplicateTimestamp"], tx
        yield int(tx["id"])


#: the elements that stick out of the screen to the right, outside a scrolling table
WIDER_THAN_THE_SCREEN = """() => {
  const width = document.documentElement.clientWidth;
  const out = [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > width + 1 && !el.closest(".table-wrap"))
    .map((el) => `${el.tagName.toLowerCase()}.${el.className}#${el.id}`);
  const scroll = document.documentElement.scrollWidth;
  return scroll > width ? [...out, `the page scrolls to ${scroll} px`] : out;
}"""


def link(page: Page, tx_id: int) -> Locator:
    """The list's link to a transaction."""
    return page.get_by_role("link", name=f"Transaction {tx_id}", exact=True)


async def test_transactions_of_real_stations_are_listed_filtered_and_exported(
    console: Console, tmp_path: Path, flagged: int
) -> None:
    ours = await charge_on_our_station(console, tmp_path)
    tab = await console.open("otto", "/transactions")
    page = tab.page
    rows = page.locator("table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(link(page, ours)).to_be_visible()
    await expect(link(page, flagged)).to_be_visible()
    row = rows.filter(has=link(page, ours))
    await expect(row.get_by_role("link", name=OURS)).to_have_attribute("href", f"/stations/{OURS}")
    await expect(row).to_contain_text(OUR_TAG)
    await expect(row).to_contain_text("Ended")
    raw_row = rows.filter(has=link(page, flagged))
    await expect(raw_row).to_contain_text("1 flag")
    await expect(raw_row).to_contain_text("1.2 kWh")  # 6200 - 5000 Wh
    await tab.shot("transactions")

    # by station: narrowed in place, the URL keeps the filter
    await page.get_by_label("Station").fill(OURS)
    await page.get_by_role("button", name="Apply filters").click()
    await expect(rows).to_have_count(1)
    await expect(link(page, ours)).to_be_visible()
    await expect(page).to_have_url(re.compile(rf"/transactions\?station={OURS}$"))

    # by id token (the station cleared): the raw station's only
    await page.get_by_label("Station").fill("")
    await page.get_by_label("Id token").fill(RAW_TAG)
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page).to_have_url(re.compile(rf"\?id_token={RAW_TAG}$"))
    await expect(link(page, flagged)).to_be_visible()
    await expect(rows).to_have_count(1)

    # the export carries the filters: a CSV of that one transaction
    export = page.get_by_role("link", name="Export CSV")
    await expect(export).to_have_attribute("href", f"/api/v1/transactions.csv?id_token={RAW_TAG}")
    async with page.expect_download() as downloading:
        await export.click()
    download = await downloading.value
    assert download.suggested_filename == "transactions.csv"
    text = Path(await download.path()).read_text(encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["id"]) for r in exported] == [flagged]
    assert exported[0]["energy_wh"] == "1200" and exported[0]["id_token"] == RAW_TAG
    assert exported[0]["flags"] == "DuplicateTimestamp"

    # Back returns to the station filter; a later start date leaves nothing
    await page.go_back()
    await expect(page.get_by_label("Station")).to_have_value(OURS)
    await expect(link(page, ours)).to_be_visible()
    await expect(rows).to_have_count(1)
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    await page.get_by_label("Started from (date)").fill(tomorrow)
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.get_by_text("No transaction matches these filters.")).to_be_visible()

    # a bookmarked view opens filtered; from the list to our station's transaction
    bookmark = await console.open("rita", f"/transactions?station={OURS}")
    await expect(bookmark.page.locator("table tbody tr")).to_have_count(1)
    await expect(bookmark.page.get_by_label("Station")).to_have_value(OURS)
    await link(bookmark.page, ours).click()
    await bookmark.page.wait_for_url(f"{console.origin}/transactions/{ours}")
    power = bookmark.page.locator("#power-chart svg path.series")
    energy = bookmark.page.locator("#energy-chart svg path.series")
    await expect(power).to_have_count(1)
    await expect(energy).to_have_count(1)
    assert len(re.findall("L", await power.get_attribute("d") or "")) >= 2  # 3+ samples

    phone = await console.open("ada", "/transactions", viewport=PHONE)
    await expect(phone.page.locator("table tbody tr")).to_have_count(2)
    wider: list[str] = await phone.page.evaluate(WIDER_THAN_THE_SCREEN)
    assert not wider, f"wider than a phone: {wider}"
    await phone.shot("transactions-phone")


async def test_a_transaction_shows_its_power_energy_meter_values_and_explained_flags(
    console: Console, flagged: int
) -> None:
    tab = await console.open("rita", f"/transactions/{flagged}")
    page = tab.page
    power = page.locator("#power-chart svg[role=img]")
    energy = page.locator("#energy-chart svg[role=img]")
    await expect(power.locator("path.series")).to_have_count(1)
    await expect(energy.locator("path.series")).to_have_count(1)
    # the energy delivered climbs from 0 to 1200 Wh over the session, said in words too
    await expect(energy).to_have_attribute("aria-label", re.compile(r"highest 1,200 Wh"))
    await expect(power).to_have_attribute("aria-label", re.compile(r"highest 7,200 W"))
    # the flag, in words, and what was seen
    flag = page.locator("li.flag[data-code=DuplicateTimestamp]")
    await expect(flag).to_contain_text("same timestamp with different values")
    await expect(flag).to_contain_text("5607 sent, 5600 stored")
    await expect(page.get_by_role("heading", name="Flags (1)")).to_be_visible()
    # the facts, exact
    facts = page.locator("section.facts")
    await expect(facts).to_contain_text("1200 Wh (1.2 kWh)")
    await expect(facts.get_by_role("link", name=RAW)).to_have_attribute("href", f"/stations/{RAW}")
    await expect(facts).to_contain_text(RAW_TAG)
    # every sample in the table: 7 times x 2 measurands (the duplicate is kept in the flag)
    table = page.get_by_role("table", name="Every sample, oldest first")
    await expect(table.locator("tbody tr")).to_have_count(14)
    await tab.shot("transaction")
    phone = await console.open("rita", f"/transactions/{flagged}", viewport=PHONE)
    await expect(phone.page.locator("#energy-chart svg path.series")).to_have_count(1)
    await expect(phone.page.locator("li.flag")).to_have_count(1)
    wider: list[str] = await phone.page.evaluate(WIDER_THAN_THE_SCREEN)
    assert not wider, f"wider than a phone: {wider}"
    await phone.shot("transaction-phone")
