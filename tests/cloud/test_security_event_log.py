"""Refusals are aggregated and capped, and the message log and the refusals have
retention (issue 14, point 4): a flood of bad logins for made-up ids no longer grows the
database without end, and a real station's refusals and reported events stay visible.

Storage tests run on SQLite and, with PLUGSTREAM_TEST_POSTGRES, on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
import string
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.retention import apply_retention, parse_retain, retention_loop
from plugstream.cloud.storage import Store, normalize_url
from plugstream.cloud.storage.coltypes import UTCDateTime
from plugstream.cloud.storage.database import MIGRATIONS
from tests.cloud.conftest import BACKENDS, POSTGRES
from tests.support import WAIT, basic_auth, running_cloud, until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
REFUSED = "FailedToAuthenticate"
PASSWORD = "a-station-password-1"


def random_id(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_uppercase + string.digits, k=12))


async def refusal_rows(store: Store) -> int:
    return sum(e.source == "gateway" for e in await store.security.list_events(limit=1000))


# --- aggregation ---------------------------------------------------------------------


@pytest.mark.unit
async def test_repeated_refusals_are_one_counted_row_and_station_events_are_not(
    store: Store,
) -> None:
    """Five bad logins of one id from one address: one row, count 5, first and last
    time, the latest tech info. Another address is another row. Three identical
    SecurityEventNotifications of a station stay three rows: they were acknowledged."""
    for i in range(5):
        await store.security.add_event(
            "CP1", REFUSED, T0 + i * DAY, f"wrong credentials {i}", "gateway", address="10.0.0.1"
        )
    await store.security.add_event(
        "CP1", REFUSED, T0, "no credentials", "gateway", address="10.0.0.2"
    )
    for _ in range(3):
        await store.security.add_event("CP1", "StartupOfTheDevice", T0, "boot", "station")

    events = await store.security.list_events(station_id="CP1")
    refusals = {e.address: e for e in events if e.source == "gateway"}
    assert set(refusals) == {"10.0.0.1", "10.0.0.2"}
    first = refusals["10.0.0.1"]
    assert (first.type, first.count, first.tech_info) == (REFUSED, 5, "wrong credentials 4")
    assert (first.first_seen, first.last_seen, first.timestamp) == (T0, T0 + 4 * DAY, T0 + 4 * DAY)
    assert refusals["10.0.0.2"].count == 1
    reported = [e for e in events if e.source == "station"]
    assert [(e.type, e.count, e.timestamp) for e in reported] == [("StartupOfTheDevice", 1, T0)] * 3
    # newest first by the last write: a refusal that happens again comes back on top
    await store.security.add_event(
        "CP1", REFUSED, T0 + 5 * DAY, "wrong credentials 5", "gateway", address="10.0.0.1"
    )
    [top] = await store.security.list_events(limit=1)
    assert (top.address, top.count) == ("10.0.0.1", 6)
    assert await store.db.count_rows("security_events") == 5


# --- the cap -------------------------------------------------------------------------


@pytest.mark.unit
async def test_a_flood_of_unknown_ids_stays_under_the_cap_and_a_known_station_stays(
    store: Store,
) -> None:
    """The attack: 2,000 refusals for random unknown ids (as a scanner makes them),
    with a real station's bad logins and its own reported event among them. The table
    holds at most the cap (100) refusal rows; the known station's row survives the
    flood with its exact count, and the station's event is untouched."""
    store.security.max_refusals = 100
    await store.stations.register("CP-KNOWN", password=PASSWORD, security_profile=1)
    await store.security.add_event("CP-KNOWN", "TamperDetectionActivated", T0, None, "station")
    rng = random.Random(14)
    started = time.monotonic()
    for round_ in range(20):
        at = T0 + timedelta(seconds=round_)
        await asyncio.gather(
            *(
                store.security.add_event(random_id(rng), REFUSED, at, "unknown station", "gateway")
                for _ in range(100)
            ),
            store.security.add_event(
                "CP-KNOWN", REFUSED, T0, "wrong credentials", "gateway", address="10.0.0.9"
            ),
        )
        assert await refusal_rows(store) <= 100
    elapsed = time.monotonic() - started

    events = await store.security.list_events(limit=1000)
    assert sum(e.source == "gateway" for e in events) <= 100
    [known] = [e for e in events if e.station_id == "CP-KNOWN" and e.source == "gateway"]
    assert (known.count, known.address, known.first_seen) == (20, "10.0.0.9", T0)
    assert [e.type for e in events if e.source == "station"] == ["TamperDetectionActivated"]
    assert elapsed < 60, f"2,000 refusals took {elapsed:.1f} s"  # ~3 s on an idle machine


@pytest.mark.unit
async def test_trim_holds_the_cap_for_rows_another_node_added(store: Store) -> None:
    """Each node counts only its own rows; the retention task's trim counts them all."""
    other = Store(store.db)  # another node's repository over the same database
    for i in range(30):
        await other.security.add_event(f"X{i}", REFUSED, T0 + i * DAY, "unknown", "gateway")
    store.security.max_refusals = 10
    assert await store.security.trim() == 30 - 10 + 10 // 20
    remaining = await store.security.list_events()
    assert {e.station_id for e in remaining} == {f"X{i}" for i in range(20, 30)}  # the newest


# --- retention -----------------------------------------------------------------------


@pytest.mark.unit
async def test_retention_deletes_old_log_rows_and_refusals_in_batches(store: Store) -> None:
    """Explicit times: rows older than their horizon go, batch by batch; newer ones, and
    a station's own security events however old, stay."""
    for i in range(12):
        await store.messages.log("CP1", "in", f"m{i}", T0 + i * DAY)
    for i in range(7):
        await store.security.add_event(f"X{i}", REFUSED, T0 + i * DAY, "unknown", "gateway")
    await store.security.add_event("CP1", "StartupOfTheDevice", T0, None, "station")

    # one batch: at most `batch` rows, and only old ones among the oldest
    assert await store.messages.delete_before(T0 + 10 * DAY, batch=4) == 4
    assert await store.security.delete_refusals_before(T0 + 2 * DAY, batch=5) == 2  # X0, X1

    config = replace(CloudConfig(), retain_messages=5 * 86400.0, retain_refusals=7 * 86400.0)
    report = await apply_retention(
        store, config, lambda: T0 + 11 * DAY, message_batch=3, refusal_batch=2
    )
    assert (report.messages, report.refusals, report.trimmed) == (2, 2, 0)
    assert [m.text for m in await store.messages.list("CP1")] == [
        f"m{i}" for i in (11, 10, 9, 8, 7, 6)
    ]
    events = await store.security.list_events()
    assert sorted(e.station_id for e in events if e.source == "gateway") == ["X4", "X5", "X6"]
    assert [e.type for e in events if e.source == "station"] == ["StartupOfTheDevice"]

    # 0 keeps forever
    forever = replace(config, retain_messages=0.0, retain_refusals=0.0)
    assert await apply_retention(store, forever, lambda: T0 + 1000 * DAY) == type(report)()
    assert await store.db.count_rows("messages") == 6


@pytest.mark.unit
async def test_the_retention_loop_runs_every_period_on_the_clocks_it_is_given(
    store: Store,
) -> None:
    """The loop's pause is an injected sleep and its time the cloud's clock: here a
    fake sleep that moves the clock a day on. A log row goes on the first run after it
    is 2.5 days old (the third, 3 days on), not before; every pause is the period."""
    await store.messages.log("CP1", "in", "old", T0)
    now = [T0]
    pauses: list[float] = []
    counts: list[int] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        counts.append(await store.db.count_rows("messages"))
        if len(pauses) == 4:
            raise asyncio.CancelledError
        now[0] += DAY

    config = replace(CloudConfig(), retain_messages=2.5 * 86400, retention_period=3600.0)
    with pytest.raises(asyncio.CancelledError):
        await retention_loop(store, config, lambda: now[0], sleep=sleep)
    assert pauses == [3600.0] * 4
    assert counts == [1, 1, 1, 0]


@pytest.mark.unit
def test_retain_values_are_parsed_and_bad_ones_say_why() -> None:
    assert parse_retain(["messages=7d", "refusals=12h"]) == {
        "retain_messages": 7 * 86400.0,
        "retain_refusals": 12 * 3600.0,
    }
    assert parse_retain(["Refusals=off", "messages=0"]) == {
        "retain_messages": 0.0,
        "retain_refusals": 0.0,
    }
    for bad, says in [
        ("messages=7x", "not a duration"),
        ("messages=-1d", "not a duration"),
        ("logs=7d", "messages=DURATION"),
        ("messages", "messages=DURATION"),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_retain([bad])


@pytest.mark.socket
@pytest.mark.parametrize("value", ["messages=7x", "everything=1d", "refusals"])
def test_a_bad_retain_flag_is_one_line_and_exit_code_2(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plugstream.cli", "cloud", "serve", "--retain", value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugstream: error: "), done.stderr
    assert "--retain" in lines[0]


# --- through a real cloud ------------------------------------------------------------


class Clock:
    """The cloud's wall clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def refused(port: int, station_id: str, headers: dict[str, str] | None = None) -> int:
    try:
        async with connect(
            f"ws://127.0.0.1:{port}/ocpp/{station_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=WAIT,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.socket
async def test_a_real_cloud_caps_a_flood_and_its_retention_task_clears_old_rows(
    tmp_path: Path,
) -> None:
    """The attack on loopback: 300 handshakes for unknown ids and 5 wrong passwords of
    a real station. The table stays under its cap (50 rows) and the REST API shows the
    station's refusals as one row, count 5. Then the cloud's clock moves 100 days on:
    its retention task (every 0.05 s here) deletes the old refusals and log rows, and
    keeps the station's own reported event."""
    clock = Clock(T0)
    async with running_cloud(
        tmp_path,
        clock=clock,
        max_refusal_rows=50,
        retention_period=0.05,
        login_failures_per_address=1000,  # the cap is under test here, not the throttle
    ) as cloud:
        await cloud.store.stations.register("CP-REAL", password=PASSWORD, security_profile=1)
        await cloud.store.security.add_event("CP-REAL", "StartupOfTheDevice", T0, None, "station")
        await cloud.store.messages.log("CP-REAL", "in", '[2,"1","Heartbeat",{}]', T0)
        rng = random.Random(4)
        for _ in range(30):
            codes = await asyncio.gather(*(refused(cloud.port, random_id(rng)) for _ in range(10)))
            assert set(codes) == {404}
        bad = basic_auth("CP-REAL", PASSWORD + "x")
        for _ in range(5):
            assert await refused(cloud.port, "CP-REAL", bad) == 401
        assert await refusal_rows(cloud.store) <= 50

        async with httpx.AsyncClient() as http:
            listed = await http.get(
                f"http://127.0.0.1:{cloud.port}/api/v1/security-events",
                params={"station_id": "CP-REAL"},
                timeout=WAIT,
            )
        assert listed.status_code == 200
        shown = {e["source"]: e for e in listed.json()}
        refusal = shown["gateway"]
        assert (refusal["type"], refusal["count"], refusal["tech_info"]) == (
            REFUSED,
            5,
            "wrong credentials",
        )
        assert refusal["first_seen"] == refusal["last_seen"] == "2026-03-01T12:00:00Z"
        assert refusal["address"] == "127.0.0.1"  # where the five wrong passwords came from
        assert shown["station"]["count"] == 1

        clock.now = T0 + 100 * DAY

        async def only_the_station_event_left() -> bool:
            events = await cloud.store.security.list_events(limit=1000)
            left = await cloud.store.db.count_rows("messages")
            return [e.source for e in events] == ["station"] and left == 0

        await until(only_the_station_event_left, "retention deleted the old rows")


# --- the migration -------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own with no tables (a fresh PostgreSQL database, or a file)."""
    if request.param == "sqlite":
        yield str(tmp_path / "old.db")
        return
    name = f"plugstream_migration_test_{os.getpid()}"
    admin = make_url(POSTGRES).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def _upgrade(conn: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


OLD_EVENTS = sa.table(  # security_events as revision 0003 made it
    "security_events",
    sa.column("station_id", sa.String),
    sa.column("type", sa.String),
    sa.column("at", UTCDateTime),
    sa.column("tech_info", sa.Text),
    sa.column("source", sa.String),
)


@pytest.mark.unit
async def test_the_0004_migration_groups_old_refusals_and_keeps_station_events(
    empty_url: str,
) -> None:
    """A database made at revision 0003 with the rows of a flood in it: after the
    upgrade, one counted row per (station id, type) of refusals, with their first and
    last time and the newest tech info; every station event as it was."""
    rows: list[dict[str, Any]] = [
        {
            "station_id": "CP1",
            "type": REFUSED,
            "at": T0 + i * DAY,
            "tech_info": f"wrong {i}",
            "source": "gateway",
        }
        for i in (2, 0, 1)
    ]
    rows += [
        {
            "station_id": "CP1",
            "type": "InvalidChargingStationCertificate",
            "at": T0,
            "tech_info": "no client certificate",
            "source": "gateway",
        },
        {
            "station_id": "CP1",
            "type": "StartupOfTheDevice",
            "at": T0,
            "tech_info": "boot",
            "source": "station",
        },
        {
            "station_id": "CP1",
            "type": "StartupOfTheDevice",
            "at": T0,
            "tech_info": "boot",
            "source": "station",
        },
    ]
    engine = create_async_engine(normalize_url(empty_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, "0003")
            await conn.execute(sa.insert(OLD_EVENTS), rows)
    finally:
        await engine.dispose()

    store = await Store.open(empty_url)
    try:
        events = await store.security.list_events()
        refusals = {e.type: e for e in events if e.source == "gateway"}
        login = refusals[REFUSED]
        assert (login.count, login.first_seen, login.last_seen, login.tech_info) == (
            3,
            T0,
            T0 + 2 * DAY,
            "wrong 1",  # the newest row stored (the migration cannot tell more)
        )
        assert refusals["InvalidChargingStationCertificate"].count == 1
        assert [(e.type, e.count) for e in events if e.source == "station"] == [
            ("StartupOfTheDevice", 1)
        ] * 2
        # and the new code aggregates onto the migrated row
        await store.security.add_event("CP1", REFUSED, T0 + 3 * DAY, "wrong 3", "gateway")
        [again] = [e for e in await store.security.list_events() if e.type == REFUSED]
        assert (again.count, again.last_seen) == (4, T0 + 3 * DAY)
    finally:
        await store.close()
