"""Every page of the console with the keyboard and a screen reader's eyes, at 1280x800 and
at a phone's width (issue 16): one <h1>, a <main> and a labelled <nav>, the skip link as
the first Tab stop (it moves focus to the content), a name on every field, button and
link, table headers as <th scope>, a visible outline wherever Tab lands (never off the
screen), the log-out button and every page's link reachable by Tab, and at 390 px
nothing wider than the screen.

The checks read the page as the browser laid it out, after its script drew it from the
API: a station with a running transaction is on the cloud, so the fleet, the station and
the transaction pages have rows, tables and charts to check. A failure names the page,
the width and each element that broke a rule.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from plugstream.cloud.console.pages import NAV
from tests.cloud.raw_station201 import station201
from tests.console.conftest import DESKTOP, PHONE, Console, Tab

pytestmark = pytest.mark.socket

STATION = "A11Y-1"
TX = "A11Y-TX-1"
MAX_TAB_STOPS = 80  # a page's Tab walk stops here (a long table's rows need not all be seen)
SETTLE_TIMEOUT_S = 10.0  # a page still changing after this (a live feed) is checked as it is


def _slug(path: str) -> str:
    return {"/": "fleet"}.get(path, path.strip("/"))


#: (name, path): every page of the navigation, the login, a station's and a transaction's
PAGES = [
    ("login", "/login"),
    *((_slug(page.path), page.path) for page in NAV),
    ("station", f"/stations/{STATION}"),
    ("transaction", "/transactions/{tx}"),
]
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}


@dataclass(frozen=True)
class Fleet:
    """What the cloud holds while a page is checked: one station, one running session."""

    station_id: str
    tx_id: int


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _event(kind: str, seq: int, at: datetime, wh: float) -> dict[str, Any]:
    return {
        "eventType": kind,
        "timestamp": _stamp(at),
        "triggerReason": "CablePluggedIn" if kind == "Started" else "MeterValuePeriodic",
        "seqNo": seq,
        "transactionInfo": {"transactionId": TX, "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": _stamp(at),
                "sampledValue": [
                    {"value": wh, "measurand": "Energy.Active.Import.Register"},
                    {"value": 7000.0, "measurand": "Power.Active.Import"},
                ],
            }
        ],
    }


@pytest.fixture
async def fleet(console: Console) -> AsyncIterator[Fleet]:
    """A raw 2.0.1 station, connected, charging: a session started ten minutes ago with
    two meter readings (the transaction page's chart has a line to draw)."""
    async with station201(console.hop, STATION) as cs:
        began = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        await cs.status("Occupied", began)
        await cs.call("TransactionEvent", _event("Started", 0, began, 1000.0))
        await cs.call(
            "TransactionEvent", _event("Updated", 1, began + timedelta(minutes=5), 1600.0)
        )
        got = await console.api.get("/transactions", params={"station_id": STATION})
        assert got.status_code == 200, got.text
        (tx,) = got.json()
        yield Fleet(STATION, int(tx["id"]))


async def settled(page: Page) -> None:
    """The page's script has drawn it: <main> stopped changing between two looks a
    quarter second apart (the data comes from the API after the page loads). A page that
    keeps changing (a live feed) is checked as it is after SETTLE_TIMEOUT_S."""
    await page.wait_for_load_state("load")
    with contextlib.suppress(PlaywrightTimeout):  # a live page: its rules hold at any moment
        await page.wait_for_function(SETTLED_JS, polling=250, timeout=SETTLE_TIMEOUT_S * 1000)


SETTLED_JS = """
() => {
  const main = document.querySelector("main");
  const shape = `${main ? main.innerHTML.length : -1}:${document.querySelectorAll("*").length}`;
  const same = window.a11yLastShape === shape;
  window.a11yLastShape = shape;
  return same;
}
"""


# The rules a page's DOM must meet, read in the browser. Returns a list of problems.
AUDIT_JS = """
(phone) => {
  const problems = [];
  const text = (el) => (el ? (el.textContent || "").replace(/\\s+/g, " ").trim() : "");
  const describe = (el) => {
    let out = el.tagName.toLowerCase();
    if (el.id) out += "#" + el.id;
    if (typeof el.className === "string" && el.className.trim())
      out += "." + el.className.trim().split(/\\s+/).join(".");
    const name = el.getAttribute("name");
    if (name) out += `[name=${name}]`;
    const words = text(el).slice(0, 40);
    return words ? `${out} "${words}"` : out;
  };
  const shown = (el) => {
    if (el.closest("[hidden]")) return false;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.display === "none") return false;
    const box = el.getBoundingClientRect();
    return box.width > 0 || box.height > 0;
  };
  const byIds = (ids) =>
    ids.split(/\\s+/).map((id) => text(document.getElementById(id))).join(" ").trim();
  const nameOf = (el) => {
    const label = (el.getAttribute("aria-label") || "").trim();
    if (label) return label;
    const by = el.getAttribute("aria-labelledby");
    if (by && byIds(by)) return byIds(by);
    if (el.labels && el.labels.length) {
      const said = [...el.labels].map(text).join(" ").trim();
      if (said) return said;
    }
    if (["BUTTON", "A", "SUMMARY"].includes(el.tagName)) {
      const said = text(el) || [...el.querySelectorAll("img[alt], svg[aria-label]")]
        .map((i) => i.getAttribute("alt") || i.getAttribute("aria-label")).join(" ").trim();
      if (said) return said;
    }
    if (el.tagName === "INPUT" && ["submit", "button", "reset"].includes(el.type))
      return (el.value || "").trim();
    return (el.getAttribute("title") || "").trim();
  };

  const h1 = document.querySelectorAll("h1");
  if (h1.length !== 1) problems.push(`${h1.length} <h1> elements (one wanted)`);
  const mains = document.querySelectorAll("main, [role=main]");
  if (mains.length !== 1) problems.push(`${mains.length} <main> landmarks (one wanted)`);
  for (const nav of document.querySelectorAll("nav, [role=navigation]")) {
    if (!nameOf(nav)) problems.push(`unlabelled navigation: ${describe(nav)}`);
  }
  const ids = new Map();
  for (const el of document.querySelectorAll("[id]")) ids.set(el.id, (ids.get(el.id) || 0) + 1);
  for (const [id, n] of ids) if (n > 1) problems.push(`id "${id}" used ${n} times`);

  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (shown(el) && !nameOf(el)) problems.push(`field without a label: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("button, [role=button], summary")) {
    if (shown(el) && !nameOf(el)) problems.push(`button without a name: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("a[href]")) {
    if (shown(el) && !nameOf(el)) problems.push(`link without a name: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("img:not([alt])")) {
    problems.push(`image without alt: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("thead td")) {
    problems.push(`table header cell is a <td>: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("th")) {
    const scope = el.getAttribute("scope");
    if (!["col", "row", "colgroup", "rowgroup"].includes(scope))
      problems.push(`<th> without scope: ${describe(el)}`);
  }

  if (phone) {
    const width = window.innerWidth;
    const wide = document.documentElement.scrollWidth;
    if (wide > width + 1) {
      // the outermost elements that reach past the screen, not inside a scrolling box
      const clipped = (el) => {
        for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
          const x = getComputedStyle(up).overflowX;
          if (x !== "visible") return true;
        }
        return false;
      };
      const over = [...document.body.querySelectorAll("*")].filter(
        (el) => shown(el) && el.getBoundingClientRect().right > width + 1 && !clipped(el)
      );
      const outer = over.filter((el) => !over.includes(el.parentElement)).slice(0, 5);
      problems.push(
        `page ${wide} px wide on a ${width} px screen: ` +
          outer.map((el) => `${describe(el)} (right ${Math.round(el.getBoundingClientRect().right)})`)
            .join("; ")
      );
    }
  }
  return problems;
}
"""

# What has focus now, and whether one can see it.
FOCUS_JS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  const ring = style.boxShadow && style.boxShadow !== "none";
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id,
    cls: typeof el.className === "string" ? el.className : "",
    href: el.getAttribute("href"),
    text: (el.textContent || el.value || el.getAttribute("aria-label") || "")
      .replace(/\\s+/g, " ").trim().slice(0, 40),
    visible: outline || !!ring,
    outline: `${style.outlineStyle} ${style.outlineWidth}`,
    size: box.width > 0 && box.height > 0,
    onscreen: box.right > 0 && box.left < window.innerWidth,
    focusVisible: el.matches(":focus-visible"),
  };
}
"""


def _where(stop: dict[str, Any]) -> str:
    return f"{stop['tag']}{'#' + stop['id'] if stop['id'] else ''} {stop['text']!r}"


async def keyboard_problems(tab: Tab, logged_in: bool) -> list[str]:
    """Tab through the page from its top: the skip link first (and it moves focus to
    <main>), a visible outline on every stop, none off the screen; logged in, the log-out
    button and every page of the navigation among the stops."""
    page = tab.page
    problems: list[str] = []
    stops: list[dict[str, Any]] = []
    for _ in range(MAX_TAB_STOPS):
        await page.keyboard.press("Tab")
        stop = await page.evaluate(FOCUS_JS)
        if stop is None or (stops and stop == stops[0]):
            break  # out of the page (to the browser) or round again
        stops.append(stop)
    if not stops or "skip-link" not in stops[0]["cls"]:
        first = _where(stops[0]) if stops else "nothing"
        problems.append(f"the first Tab stop is {first}, not the skip link")
    for stop in stops:
        if not stop["visible"]:
            problems.append(f"no visible focus outline on {_where(stop)}: {stop['outline']}")
        if not (stop["size"] and stop["onscreen"]):
            problems.append(f"focus lands on an element one cannot see: {_where(stop)}")
    if logged_in:
        if not any(s["tag"] == "button" and s["text"] == "Log out" for s in stops):
            problems.append("the Log out button is not reachable with Tab")
        reached = {s["href"] for s in stops if s["tag"] == "a"}
        missed = [p.path for p in NAV if p.path not in reached]
        if missed and len(stops) < MAX_TAB_STOPS:
            problems.append(f"navigation links not reachable with Tab: {missed}")

    await page.locator("a.skip-link").focus()
    await page.keyboard.press("Enter")
    focused = await page.evaluate("() => document.activeElement && document.activeElement.id")
    if focused != "main":
        problems.append(f"the skip link moves focus to {focused or 'nothing'}, not to <main>")
    return problems


@pytest.mark.parametrize(("name", "path"), PAGES, ids=[name for name, _ in PAGES])
async def test_every_page_is_usable_with_the_keyboard_and_a_screen_reader(
    console: Console, fleet: Fleet, name: str, path: str
) -> None:
    """Each page at both widths (one cloud for the two: its start is most of the time)."""
    where = path.format(tx=fleet.tx_id)
    user = None if name == "login" else "ada"
    failures: list[str] = []
    for width, viewport in VIEWPORTS.items():
        tab = await console.open(user, where, viewport=viewport)
        page = tab.page
        await settled(page)
        if name == "login":
            await tab.shot("login" if width == "desktop" else "login-phone")
        problems: list[str] = await page.evaluate(AUDIT_JS, width == "phone")
        if user is not None and await page.get_by_role("navigation", name="Console").count() != 1:
            problems.append("no navigation named Console")
        problems += await keyboard_problems(tab, logged_in=user is not None)
        if problems:
            size = f"{viewport['width']}x{viewport['height']}"
            failures.append(f"{where} at {size}:\n  " + "\n  ".join(problems))
    assert not failures, "\n".join(failures)
