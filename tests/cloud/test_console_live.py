"""The console's live view (issue 16): what changed in the fleet gathered and sent once
to every open page, the overview's samples on a manual clock, a slow page told to
resync, the cap on open pages, and the stream ending when the server stops (so neither a
browser test nor ``plugstream cloud serve`` waits for ever on an open page)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
from fastapi import FastAPI

from plugstream.cloud.console import live as live_module
from plugstream.cloud.console.live import LiveHub, LiveView
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.records import ConnectorStatus, StationRecord
from plugstream.ocpp import OcppVersion
from tests.cloud.raw_station201 import TOKEN, Hop, hop_cloud, station201
from tests.support import WAIT, until

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


# -- LiveView: sans I/O ------------------------------------------------------------------


@pytest.mark.unit
def test_a_station_that_changes_often_is_taken_once_oldest_change_first() -> None:
    view = LiveView()
    for sid in ("B", "A", "B", "C", "A"):
        view.changed(sid)
    assert view.pending == 3
    assert view.take(2) == ["B", "A"]
    assert view.pending == 1, "what was not taken waits for the next flush"
    view.changed("B")
    assert view.take(10) == ["C", "B"]
    assert view.take(10) == []


@pytest.mark.unit
def test_changes_are_forgotten_when_no_page_is_open() -> None:
    view = LiveView()
    view.changed("A")
    view.forget()
    assert view.pending == 0
    assert view.take(10) == []


@pytest.mark.unit
def test_the_message_rate_is_over_the_time_since_the_previous_sample() -> None:
    view = LiveView()
    now = 100.0
    first = view.sample(now, T0, connected=3, frames=1000)
    assert (first.connected, first.messages_per_s) == (3, 0.0), "no rate before a second look"
    now += 10.0
    second = view.sample(now, T0 + timedelta(seconds=10), connected=4, frames=1050)
    assert (second.connected, second.messages_per_s) == (4, 5.0)
    now += 4.0
    assert view.sample(now, T0 + timedelta(seconds=14), 4, 1053).messages_per_s == 0.75
    # the same instant again, or a counter that went back: no rate, never a negative one
    assert view.sample(now, T0 + timedelta(seconds=14), 4, 2000).messages_per_s == 0.0
    now += 1.0
    assert view.sample(now, T0 + timedelta(seconds=15), 4, 10).messages_per_s == 0.0
    assert [s.at for s in view.samples][:2] == [T0, T0 + timedelta(seconds=10)]


@pytest.mark.unit
def test_the_overview_keeps_only_the_last_hours_samples() -> None:
    view = LiveView(samples=3)
    for i in range(5):
        view.sample(float(i), T0 + timedelta(seconds=i), connected=i, frames=i)
    assert [s.connected for s in view.samples] == [2, 3, 4]


# -- LiveHub on the loop, with a store and a gateway of the test's own -------------------


@dataclass
class Stations:
    records: dict[str, StationRecord]
    reads: list[list[str]] = field(default_factory=list)

    async def get_many(self, station_ids: Sequence[str]) -> list[StationRecord]:
        self.reads.append(list(station_ids))
        return [self.records[i] for i in sorted(station_ids) if i in self.records]


@dataclass
class FakeStore:
    stations: Stations


@dataclass
class FakeGateway:
    connected: dict[str, OcppVersion] = field(default_factory=dict)
    frames_received: int = 0
    on_station_change: Callable[[str], None] | None = None
    violations: dict[str, int] = field(default_factory=dict)
    failed_logins: dict[str, int] = field(default_factory=dict)

    cluster: None = None  # a node alone

    def live_versions(self) -> dict[str, OcppVersion]:
        return dict(self.connected)

    def version_of(self, station_id: str) -> OcppVersion | None:
        return self.connected.get(station_id)

    def node_of(self, station_id: str) -> str | None:
        return "node-1" if station_id in self.connected else None

    @property
    def frames_received_all(self) -> int:
        return self.frames_received


def record(station_id: str, status: str = "Available") -> StationRecord:
    return StationRecord(
        station_id=station_id,
        security_profile=0,
        lenient=False,
        has_password=False,
        registered_at=T0,
        vendor="Test",
        model="OCTT",
        ocpp_version="2.0.1",
        connectors=[ConnectorStatus(1, 1, status, None, T0)],
    )


@contextlib.asynccontextmanager
async def started_hub(*ids: str) -> AsyncIterator[tuple[LiveHub, FakeStore, FakeGateway]]:
    store = FakeStore(Stations({sid: record(sid) for sid in ids}))
    gateway = FakeGateway({sid: OcppVersion.V201 for sid in ids}, frames_received=40)
    clock = iter(float(i) for i in range(100))
    hub = LiveHub(
        cast(Store, store), cast(Gateway, gateway), monotonic=lambda: next(clock), wall=lambda: T0
    )
    hub.start()
    try:
        yield hub, store, gateway
    finally:
        hub.close()
        await hub.wait_closed()


async def next_event(queue: asyncio.Queue[bytes | None]) -> bytes:
    event = await asyncio.wait_for(queue.get(), WAIT)
    assert event is not None, "the stream's end, not an event"
    return event


def parse(raw: bytes) -> tuple[str, Any]:
    """One event's name and data (a ``retry:`` line before it is skipped)."""
    lines = dict(line.split(": ", 1) for line in raw.decode().strip().split("\n") if ": " in line)
    return lines["event"], orjson.loads(lines["data"])


@pytest.mark.unit
async def test_a_station_changed_three_times_is_read_once_and_sent_to_every_page() -> None:
    async with started_hub("CS-1", "CS-2") as (hub, store, gateway):
        assert len(hub.view.samples) == 1, "a sample at start: the page's chart has a point"
        assert hub.view.samples[0].connected == 2
        notify = gateway.on_station_change
        assert notify is not None
        notify("CS-1")  # no page open: nothing kept
        assert hub.view.pending == 0
        async with hub.watch() as one, hub.watch() as two:
            for _ in range(3):
                notify("CS-2")
                notify("CS-GONE")  # deleted meanwhile: not sent
            first = parse(await next_event(one))
            second = parse(await next_event(two))
        assert first == second
        name, stations = first
        assert name == "stations"
        assert [s["station_id"] for s in stations] == ["CS-2"]
        assert stations[0]["connected"] is True
        assert stations[0]["connectors"][0]["status"] == "Available"
        assert store.stations.reads == [["CS-2", "CS-GONE"]], "one read shared by both pages"
    assert hub.watchers == 0


@pytest.mark.unit
async def test_a_page_too_slow_for_its_events_is_told_to_resync() -> None:
    async with started_hub() as (hub, _store, _gateway), hub.watch() as queue:
        for i in range(live_module.QUEUE_EVENTS + 5):
            hub._publish(live_module._event("overview", {"n": i}))
        assert parse(await next_event(queue)) == ("resync", {})
        left = [parse(await next_event(queue)) for _ in range(queue.qsize())]
        assert left == [("overview", {"n": i}) for i in range(65, 69)], "later events follow it"


@pytest.mark.unit
async def test_no_more_pages_than_max_watchers_are_admitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live_module, "MAX_WATCHERS", 2)
    async with started_hub() as (hub, _store, _gateway):
        one, two = hub.admit(), hub.admit()
        assert one is not None and two is not None
        assert hub.admit() is None
        hub.leave(one)
        assert hub.admit() is not None, "a page that left gives its place back"


@pytest.mark.unit
async def test_a_stream_waiting_for_events_ends_when_the_hub_closes() -> None:
    async with started_hub() as (hub, _store, _gateway):
        queue = hub.admit()
        assert queue is not None
        stream = hub.stream(queue)
        assert parse(await anext(stream))[0] == "hello"
        hub._publish(live_module._event("overview", {"n": 1}))
        assert parse(await anext(stream)) == ("overview", {"n": 1})

        async def next_chunk() -> bytes | None:
            return await anext(stream, None)

        waiting = asyncio.create_task(next_chunk())
        hub.close()
        assert await asyncio.wait_for(waiting, WAIT) is None, "the stream ended"
        assert hub.admit() is None, "a closed hub admits no page"


@pytest.mark.unit
async def test_a_page_that_reads_nothing_is_cut_off_after_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its writes never finish, so only the hub can end its response (uvicorn's
    shutdown waits for it)."""
    monkeypatch.setattr(live_module, "CLOSE_GRACE_S", 0.0)
    async with started_hub() as (hub, _store, _gateway):
        queue = hub.admit()
        assert queue is not None
        request = cast(Any, None)
        response = live_module._LiveResponse(hub, queue, request)
        stuck = asyncio.Event()
        started: list[str] = []

        async def send(message: Any) -> None:
            started.append(message["type"])
            if message["type"] == "http.response.body":
                await stuck.wait()  # the page's socket never drains

        async def receive() -> Any:
            await stuck.wait()  # nor does the page hang up

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
        sending = asyncio.create_task(response(scope, receive, send))
        await until(lambda: "http.response.body" in started, "the stream's first bytes")
        hub.close()
        await asyncio.wait_for(sending, WAIT)
        assert hub.watchers == 0


# -- GET /api/v1/live on a real cloud ----------------------------------------------------


@dataclass
class Events:
    """What a page of the test's own read of its event stream, in order."""

    seen: list[tuple[str, Any]] = field(default_factory=list)

    def named(self, name: str) -> list[Any]:
        return [data for event, data in self.seen if event == name]


async def read_events(response: httpx.Response, events: Events) -> None:
    name, data = None, ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and name is not None:
            events.seen.append((name, orjson.loads(data)))
            name, data = None, ""


def client(hop: Hop) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{hop.cloud.port}/api/v1",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=WAIT,
    )


@pytest.mark.socket
async def test_a_page_sees_a_station_connect_and_its_stream_ends_when_the_server_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the server's shutdown hook must end it, not the cut-off of a page that reads nothing
    monkeypatch.setattr(live_module, "CLOSE_GRACE_S", WAIT * 10)
    async with contextlib.AsyncExitStack() as stack:
        hop = await stack.enter_async_context(hop_cloud(tmp_path, wall_clock=True))
        page = await stack.enter_async_context(client(hop))
        response = await stack.enter_async_context(page.stream("GET", "/live"))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Events()
        reader = asyncio.create_task(read_events(response, events))
        await until(lambda: events.named("hello"), "hello")

        overview = (await hop.api.get("/overview")).json()
        assert overview["interval_s"] == live_module.SAMPLE_S
        assert len(overview["samples"]) >= 1, "the sample taken at start"

        def sent(status: str) -> bool:
            return any(
                s["station_id"] == "LIVE-1" and s["connected"] and status in statuses(s)
                for batch in events.named("stations")
                for s in batch
            )

        async with station201(hop, "LIVE-1") as station:
            await until(lambda: sent(""), "the connected station sent to the page")
            # a page opened between two samples sees the fleet as it is now
            now = (await hop.api.get("/overview")).json()["now"]
            at, last = (
                datetime.fromisoformat(t) for t in (now["at"], overview["samples"][-1]["at"])
            )
            assert now["connected"] == 1 and at >= last
            await station.status("Occupied", datetime.now(UTC))
            await until(lambda: sent("Occupied"), "its connector's new status sent")

        hop.cloud.server.should_exit = True  # the stream is open: the server must end it
        await asyncio.wait_for(reader, WAIT)


def statuses(station: dict[str, Any]) -> list[str]:
    return ["", *(c["status"] for c in station["connectors"])]


@pytest.mark.socket
async def test_a_page_beyond_the_cap_is_refused_until_another_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_module, "MAX_WATCHERS", 1)
    async with hop_cloud(tmp_path, wall_clock=True) as hop, client(hop) as page:
        hub: LiveHub = cast(FastAPI, hop.cloud.server.config.app).state.live
        async with page.stream("GET", "/live") as first:
            assert first.status_code == 200
            refused = await hop.api.get("/live")
            assert refused.status_code == 503
            assert "too many" in refused.json()["detail"]
        await until(lambda: hub.watchers == 0, "the page that left gives its place back")
        async with page.stream("GET", "/live") as again:
            assert again.status_code == 200
