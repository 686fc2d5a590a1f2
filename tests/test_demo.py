"""``plugstream demo`` as a person runs it: the cloud and a fleet on loopback, stopped by
a timer or by Ctrl-C, exit code 0 either way and nothing left running."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from rich.console import Console

from plugstream.demo import DEMO_TARIFF, SITE_LIMIT_A, run_demo
from tests.support import read_until, stop_process, until, until_sync

pytestmark = pytest.mark.socket

DEMO = [sys.executable, "-m", "plugstream.cli", "demo"]


def start_demo(*args: str) -> subprocess.Popen[str]:
    """``plugstream demo`` with ``args`` in its own process group, as a terminal runs it."""
    return subprocess.Popen(
        [*DEMO, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_demo(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C, and what the demo printed after it; then, by PID, whatever is left."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=15)
    finally:
        stop_process(proc)


def test_demo_runs_sessions_against_the_cloud_and_shows_its_api() -> None:
    done = subprocess.run(
        [*DEMO, "--stations", "4", "--duration", "8", "--time-scale", "120"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"API: http://127\.0\.0\.1:\d+/api/v1/", out)
    assert "/api/v1/docs" in out
    last = [line for line in out.splitlines() if line.startswith("PlugStream demo stopped")]
    assert len(last) == 1, out
    started = re.search(r"sessions (\d+) started", last[0])
    energy = re.search(r"energy ([\d.,]+) kWh", last[0])
    assert started is not None and int(started.group(1)) >= 1, last[0]
    assert energy is not None and float(energy.group(1).replace(",", "")) > 0, last[0]
    assert "connected 4/4" in last[0] and "errors 0" in last[0]
    assert "Traceback" not in done.stderr


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if text in line:
            return seen
    pytest.fail(f"no {text!r} in {seen!r}")


def test_ctrl_c_stops_the_demo_cleanly() -> None:
    proc = start_demo("--stations", "4", "--time-scale", "120")  # its own process group
    try:
        _wait_for(proc, "connected 4/4", 20)
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - began < 8
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "PlugStream demo stopped" in out
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no process of the demo's group is left


def test_demo_transactions_carry_no_flags_of_the_demos_own_making() -> None:
    """The stations run 120 times as fast as the wall, and so does the demo's cloud: what a
    newcomer browses in the demo's API is clean data, no TimeInFuture the demo caused."""
    proc = start_demo("--stations", "4", "--time-scale", "120", "--session-minutes", "20")
    try:
        out = read_until(proc, "PlugStream Cloud API:", timeout=30)
        found = re.search(r"(http://127\.0\.0\.1:\d+/api/v1)/", out)
        assert found is not None, out
        api = found.group(1)

        def ended() -> list[dict[str, Any]]:
            try:
                got = httpx.get(f"{api}/transactions", params={"limit": 500}, timeout=5)
            except httpx.TransportError:
                return []
            assert got.status_code == 200, got.text
            txs: list[dict[str, Any]] = got.json()
            # once two sessions have ended: a start, meter values and a stop each
            return txs if sum(1 for t in txs if not t["active"]) >= 2 else []

        transactions = until_sync(ended, "two demo sessions ended", timeout=60)
    finally:
        stop_demo(proc)
    assert transactions
    for tx in transactions:
        assert tx["flags"] == [], tx
        assert tx["energy_wh"] is None or float(tx["energy_wh"]) >= 0, tx


CONSOLE_LINE = re.compile(
    r"PlugStream console: (http://127\.0\.0\.1:\d+/)  \(log in as "
    r"demo / (\S+) \(admin\), viewer / (\S+) \(read-only\)\)"
)


def test_the_demo_prints_a_console_login_that_shows_its_fleet() -> None:
    """``make demo`` names the console and its login beside the API: the printed admin
    logs in (POST /login) and sees the demo's stations through the session; the printed
    viewer is read-only (403 on a write); the pages are served on the same address."""
    proc = start_demo("--stations", "4", "--time-scale", "120")
    try:
        out = read_until(proc, "PlugStream console:", timeout=30)
        lines = out.splitlines()
        assert lines[-2].startswith("PlugStream Cloud API: "), out  # next to the API line
        found = CONSOLE_LINE.fullmatch(lines[-1])
        assert found is not None, lines[-1]
        origin, password, viewer_password = found.groups()

        with httpx.Client(base_url=origin, timeout=5) as admin:
            assert admin.get("/", follow_redirects=False).status_code == 303  # the login first
            login = admin.post("/login", data={"username": "demo", "password": password})
            assert login.status_code == 200, login.text
            assert login.json()["role"] == "admin"
            page = admin.get("/")
            assert page.status_code == 200 and "<h1>Fleet</h1>" in page.text, page.text[:500]

            def fleet() -> set[str]:
                got = admin.get("/api/v1/stations")
                assert got.status_code == 200, got.text
                connected = {s["station_id"] for s in got.json() if s["connected"]}
                return connected if len(connected) == 4 else set()

            stations = until_sync(fleet, "the demo's 4 stations in the console's API", timeout=20)
        assert stations == {"PS-001", "PS-002", "PS-003", "PS-004"}

        with httpx.Client(base_url=origin, timeout=5) as viewer:
            wrong = viewer.post("/login", data={"username": "viewer", "password": password})
            assert wrong.status_code == 401, wrong.text
            login = viewer.post("/login", data={"username": "viewer", "password": viewer_password})
            assert login.status_code == 200 and login.json()["role"] == "read-only", login.text
            csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
            refused = viewer.put("/api/v1/id-tokens/X", json={}, headers=csrf)
            assert refused.status_code == 403, refused.text
            assert viewer.get("/api/v1/stations").status_code == 200
    finally:
        rest, err = stop_demo(proc)
    assert proc.returncode == 0, err
    assert f"PlugStream console was: {origin}" in rest, rest
    assert "Traceback" not in err, err


SHARE = re.compile(r"(PS-\d+) ([\d.]+) A")
#: a site line's stations, each running session's share and the sum
Divided = tuple[list[str], dict[str, Decimal], Decimal]
COST = re.compile(r"(PS-\d+) (\d+\.\d\d) EUR")


def _site_shares(line: str) -> Divided | None:
    """What a site line says; None for another line or a site with nothing to divide."""
    found = re.match(r"site Depot: (\d+) A per phase shared by ([^·]+?) · (.*) = ([\d.]+) A", line)
    if found is None:
        return None
    assert Decimal(found.group(1)) == SITE_LIMIT_A, line
    shares = {sid: Decimal(amps) for sid, amps in SHARE.findall(found.group(3))}
    return found.group(2).split(), shares, Decimal(found.group(4))


def test_demo_prices_divides_and_messages_on_the_2_0_1_stations() -> None:
    """Issue 15 on the demo's defaults, as a newcomer sees it: the default tariff gives the
    2.0.1 sessions a running cost (at least the start fee with VAT), the Depot's 32 A are
    divided among its stations' sessions, the display message and the device model are
    in the API the demo names, and no message of all that is an error."""
    proc = start_demo("--stations", "6", "--time-scale", "120", "--session-minutes", "20")
    start_cost = (DEMO_TARIFF.start_fee * (1 + DEMO_TARIFF.vat_percent / 100)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    try:
        out = read_until(proc, "Try: GET", timeout=30)
        found = re.search(r"(http://127\.0\.0\.1:\d+/api/v1)/", out)
        assert found is not None, out
        api = found.group(1)
        tries = out.splitlines()[-1]
        for path in ("/api/v1/sites/1/allocation", "/api/v1/tariffs", "/stations/PS-002/"):
            assert path in tries, tries

        costs: dict[str, Decimal] = {}
        divided: Divided | None = None
        deadline = time.monotonic() + 40
        while not (costs and divided):
            chunk = read_until(proc, "costs incl. VAT:", timeout=deadline - time.monotonic())
            for line in chunk.splitlines():
                site = _site_shares(line)
                if site is not None and len(site[1]) >= 2:
                    divided = site
                if line.startswith("costs incl. VAT:"):
                    costs.update((sid, Decimal(c)) for sid, c in COST.findall(line))

        versions = {
            sid: httpx.get(f"{api}/stations/{sid}", timeout=5).json()["ocpp_version"]
            for sid in costs
        }
        assert set(versions.values()) == {"2.0.1"}, versions
        assert max(costs.values()) >= start_cost, costs

        assert divided is not None
        members, shares, total = divided
        assert set(shares) <= set(members), divided
        assert total == sum(shares.values()) <= SITE_LIMIT_A, divided
        assert all(0 < share < SITE_LIMIT_A for share in shares.values()), divided

        def message_and_model() -> bool:
            shown = httpx.get(f"{api}/stations/PS-002/display-messages", timeout=5).json()
            model = httpx.get(f"{api}/stations/PS-002/device-model", timeout=5).json()
            accepted = [m for m in shown if m["status"] == "Accepted"]
            return bool(accepted) and any(
                v["component"] == "TariffCostCtrlr" for v in model["variables"]
            )

        until_sync(message_and_model, "the display message and the device model", timeout=20)
        tariffs = httpx.get(f"{api}/tariffs", timeout=5).json()
        assert [t["is_default"] for t in tariffs] == [True], tariffs
    finally:
        rest, err = stop_demo(proc)
    assert proc.returncode == 0, err
    last = [line for line in rest.splitlines() if line.startswith("PlugStream demo stopped")]
    assert len(last) == 1 and "errors 0" in last[0], rest
    assert "Traceback" not in err and "ERROR" not in err, err


OPERATIONS = re.compile(
    r"reservation (\d+) (PS-\d+) for (PSDEMO\d+): (\w+) · "
    r"PS-002 monitor EVSE Power > [\d,]+ W: (\d+)\+? events? kept · "
    r"PS-002 log: (\w+)(?:, ([\d,]+) B)?"
)


def test_demo_reserves_watches_and_uploads_a_log_on_the_2_0_1_stations() -> None:
    """Issue 15's other 2.0.1 features, as a newcomer sees them in the demo's line and in
    the API its "Try:" line names: a reservation with its status, the events PS-002's
    power monitor made it send, its log uploaded to the cloud; no message an error."""
    proc = start_demo("--stations", "4", "--time-scale", "120", "--session-minutes", "20")
    try:
        out = read_until(proc, "Try: GET", timeout=30)
        found = re.search(r"(http://127\.0\.0\.1:\d+/api/v1)/", out)
        assert found is not None, out
        api = found.group(1)
        tries = out.splitlines()[-1]
        for path in ("/api/v1/reservations", "/stations/PS-002/", "…/monitors", "…/events"):
            assert path in tries, tries
        assert tries.endswith("…/logs"), tries

        # the view's line once all three are done: a reservation (made when a driver
        # leaves a 2.0.1 station), an event kept, the log uploaded
        shown: re.Match[str] | None = None
        deadline = time.monotonic() + 50
        while shown is None or not (int(shown.group(5)) >= 1 and shown.group(6) == "Uploaded"):
            chunk = read_until(proc, "reservation ", timeout=deadline - time.monotonic())
            shown = OPERATIONS.search(chunk.splitlines()[-1])
        reservation_id, station, id_tag, status = shown.group(1, 2, 3, 4)
        assert status in ("Accepted", "Used", "Expired"), shown.group(0)
        assert station in ("PS-002", "PS-004") and int(shown.group(7).replace(",", "")) > 0

        reservations = httpx.get(f"{api}/reservations", timeout=5).json()
        assert [(r["reservation_id"], r["station_id"], r["id_token"]) for r in reservations] == [
            (int(reservation_id), station, id_tag)
        ], reservations
        assert reservations[0]["status"] in ("Accepted", "Used", "Expired"), reservations

        monitors = httpx.get(f"{api}/stations/PS-002/monitors", timeout=5).json()
        assert [(m["type"], m["component"]["name"], m["variable"]["name"]) for m in monitors] == [
            ("UpperThreshold", "EVSE", "Power")
        ], monitors
        events = httpx.get(f"{api}/stations/PS-002/events", timeout=5).json()
        assert any(e["variable_monitoring_id"] == monitors[0]["id"] for e in events), events

        logs = httpx.get(f"{api}/stations/PS-002/logs", timeout=5).json()
        assert [(x["log_type"], x["status"]) for x in logs] == [("DiagnosticsLog", "Uploaded")]
        assert logs[0]["size"] > 0 and logs[0]["file_url"], logs
        uploaded = httpx.get(f"{api.removesuffix('/api/v1')}{logs[0]['file_url']}", timeout=5)
        assert uploaded.status_code == 200 and len(uploaded.content) == logs[0]["size"]
        assert b"PlugStream station PS-002 diagnostics" in uploaded.content
    finally:
        rest, err = stop_demo(proc)
    assert proc.returncode == 0, err
    last = [line for line in rest.splitlines() if line.startswith("PlugStream demo stopped")]
    assert len(last) == 1 and "errors 0" in last[0], rest
    assert "Traceback" not in err and "ERROR" not in err, err


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COST_CELL = re.compile(
    r"│ (PS-\d+) +│ PlugStream \d+ +│ 2\.0\.1 +│[^│]*│[^│]*│ +(\d+\.\d\d) EUR(?: final)? +│"
)


async def test_the_live_table_shows_the_2_0_1_costs_and_the_sites_division() -> None:
    """On a terminal the demo draws its live table: the 2.0.1 rows' cost column and the
    site's line under the table show what the cloud priced and divided."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=220, color_system=None)
    stop = asyncio.Event()
    demo = asyncio.create_task(
        run_demo(stations=4, time_scale=120, session_minutes=20, console=console, stop=stop)
    )

    def seen() -> tuple[list[tuple[str, str]], Divided] | None:
        text = ANSI.sub("", screen.getvalue())
        costs = COST_CELL.findall(text)
        divided = [
            site
            for line in text.splitlines()
            if (site := _site_shares(line)) is not None and len(site[1]) >= 2
        ]
        return (costs, divided[-1]) if costs and divided else None

    try:
        found = await until(seen, "a cost in the table and a divided site", timeout=40)
    finally:
        stop.set()
        code = await asyncio.wait_for(demo, 30)
    assert code == 0 and found is not None
    costs, (members, shares, total) = found
    assert {sid for sid, _ in costs} <= {"PS-002", "PS-004"}, costs  # the 2.0.1 half
    assert set(shares) <= set(members) == {"PS-002", "PS-004"}, shares
    assert total == sum(shares.values()) <= SITE_LIMIT_A, shares
    assert all(0 < share < SITE_LIMIT_A for share in shares.values()), shares
    text = ANSI.sub("", screen.getvalue())
    assert "· PS-002 monitor EVSE Power > " in text and "· PS-002 log: " in text, text[-2000:]
    assert "PlugStream console: http://127.0.0.1:" in text, text[-2000:]  # under the table too
    last = [line for line in text.splitlines() if line.startswith("PlugStream demo stopped")]
    assert len(last) == 1 and "errors 0" in last[0], text[-2000:]
