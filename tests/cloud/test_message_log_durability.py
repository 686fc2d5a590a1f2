"""Nothing acknowledged that is not kept, the message log: every CALL the cloud answered
is in ``messages`` after a ``kill -9``.

In process (unit): a frame received joins the log's queued write before its handler's
write, an answer waits for the commit of what it answers (and is not sent when that
failed), and when the log is behind, frames we send are dropped while frames received
wait for room.

On loopback (socket): the real ``plugstream cloud serve`` (a child process, SQLite on disk) is loaded by a few
OCPP 2.0.1 stations, each sending CALL after CALL (closed loop): some whose handler writes
data (MeterValues, StatusNotification, Heartbeat's last seen) and some whose handler writes
nothing (NotifyEvent, NotifyReport: the log is all that keeps them). Once a number of
CALLRESULTs has come back, the server is killed with SIGKILL while the stations go on
sending; the database is then read as the server left it. Three rounds, each killed at a
different count, so that the kill lands at a different moment of the writer's cycle.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.engine import Connection
from starlette.types import Message
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from plugstream.cloud import gateway as gateway_module
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.gateway import AsgiTransport, Gateway
from plugstream.cloud.storage import Store
from tests.cloud.test_interop_16 import CloudProcess
from tests.support import WAIT, basic_auth, ready_tasks_run, until

# -- in process ----------------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """SQLite: its writer runs in a thread, which a test may hold up (on PostgreSQL the
    writer runs on the event loop, which a held-up write would stop)."""
    opened = await Store.open(str(tmp_path / "log.db"))
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.asynccontextmanager
async def writer_held(store: Store) -> AsyncIterator[threading.Event]:
    """The store's writer busy with a write that waits for the event (set on the way out)."""
    started, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        started.set()
        release.wait(WAIT)

    held = store.db.enqueue(hold)
    try:
        await until(started.is_set, "the writer busy")
        yield release
    finally:
        release.set()
        await held


class FakeSocket:
    """The ASGI side of one station's WebSocket: frames to receive, frames sent."""

    def __init__(self, *texts: str) -> None:
        self.incoming: Iterator[str] = iter(texts)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return {"type": "websocket.receive", "text": next(self.incoming)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


def transport(gateway: Gateway, socket: FakeSocket) -> AsgiTransport:
    return AsgiTransport(
        socket.receive,
        socket.send,
        "CP1",
        log_frame=gateway.log_frame,
        log_received=gateway.log_received,
        violations=collections.Counter(),
    )


async def texts_logged(store: Store) -> list[str]:
    return [m.text for m in reversed(await store.messages.list("CP1", limit=100))]


@pytest.mark.unit
async def test_a_frame_received_is_committed_with_the_write_queued_after_it(
    sqlite_store: Store,
) -> None:
    """The handler's write comes after the frame's row in the writer's queue: once it is
    committed, so is the row. Rows that come while the log's write waits join it."""
    store = sqlite_store
    gateway = Gateway(store, CloudConfig())
    data_written: asyncio.Future[None]
    async with writer_held(store):
        ops = store.db.stats.ops
        rows = [await gateway.log_received("CP1", f'[2,"{n}","Heartbeat",{{}}]') for n in range(3)]
        data_written = store.db.enqueue(lambda conn: None)  # the handler's write
    await data_written
    assert all(row.done() and row.exception() is None for row in rows)
    assert await texts_logged(store) == [f'[2,"{n}","Heartbeat",{{}}]' for n in range(3)]
    assert store.db.stats.ops - ops == 1 + 1 + 1  # the held write, one of the log, the data


@pytest.mark.unit
async def test_an_answer_waits_for_the_commit_of_the_call_it_answers(sqlite_store: Store) -> None:
    """NotifyEvent writes nothing but its log row: its CALLRESULT leaves once that row is
    committed, not before. A CALL of ours acknowledges nothing and does not wait."""
    store = sqlite_store
    gateway = Gateway(store, CloudConfig())
    call = '[2,"n1","NotifyEvent",{"generatedAt":"2026-01-01T00:00:00Z","seqNo":0,"eventData":[]}]'
    socket = FakeSocket(call)
    station = transport(gateway, socket)
    async with writer_held(store):
        assert await station.recv() == call
        answer = asyncio.create_task(station.send('[3,"n1",{}]'))
        await station.send('[2,"c1","Reset",{"type":"Immediate"}]')
        await ready_tasks_run(20)
        assert not answer.done()
        assert socket.texts() == ['[2,"c1","Reset",{"type":"Immediate"}]']
        assert await texts_logged(store) == []
    await asyncio.wait_for(answer, WAIT)
    assert socket.texts()[-1] == '[3,"n1",{}]'
    assert (await texts_logged(store))[0] == call


@pytest.mark.unit
async def test_no_answer_for_a_call_that_could_not_be_logged(sqlite_store: Store) -> None:
    """A frame whose row could not be written is not acknowledged: the connection is
    closed (1011) instead, and the station sends it again on its next connection."""
    store = sqlite_store
    gateway = Gateway(store, CloudConfig())
    socket = FakeSocket('[2,"h1","Heartbeat",{}]')
    station = transport(gateway, socket)
    await store.close()  # every write fails from now on
    await station.recv()
    await asyncio.wait_for(station.send('[3,"h1",{"currentTime":"2026-01-01T00:00:00Z"}]'), WAIT)
    assert socket.texts() == []
    assert socket.sent == [
        {"type": "websocket.close", "code": 1011, "reason": "message log unavailable"}
    ]


@pytest.mark.unit
async def test_a_log_behind_drops_frames_sent_and_holds_frames_received(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 10 rows waiting at most, of which frames we send may fill 8: the 9th frame
    sent is dropped and counted; frames received take the last two places, and the next
    one waits for room (its station's reading stops) until the log has written."""
    store = sqlite_store
    monkeypatch.setattr(gateway_module, "LOG_QUEUE_SIZE", 10)
    monkeypatch.setattr(gateway_module, "LOG_OUT_LIMIT", 8)
    gateway = Gateway(store, CloudConfig())
    async with writer_held(store):
        for n in range(8):
            assert gateway.log_frame("CP1", "out", f"out {n}") is not None
        assert gateway.log_frame("CP1", "out", "out dropped") is None
        assert gateway.frames_dropped == 1
        await gateway.log_received("CP1", "in 0")
        await gateway.log_received("CP1", "in 1")
        third = asyncio.create_task(gateway.log_received("CP1", "in 2"))
        await ready_tasks_run(20)
        assert not third.done() and store.messages.pending == 10
    await asyncio.wait_for(await asyncio.wait_for(third, WAIT), WAIT)
    assert gateway.frames_dropped == 1
    logged = await texts_logged(store)
    assert logged == [f"out {n}" for n in range(8)] + ["in 0", "in 1", "in 2"]
    assert store.messages.pending == 0


@pytest.mark.unit
async def test_a_malformed_frame_with_a_nul_is_logged_on_every_database(store: Store) -> None:
    """PostgreSQL's text cannot hold U+0000 (only a malformed frame carries one raw): it is
    logged as U+FFFD, instead of failing the write, and with it every row of its batch."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        store.messages.append("CP1", "in", '[2,"1","Heartbeat",{}]', at),
        store.messages.append("CP1", "in", '[2,"2\x00","Heartbeat",{}]', at),
    ]
    await asyncio.gather(*rows)
    assert await texts_logged(store) == ['[2,"1","Heartbeat",{}]', '[2,"2\ufffd","Heartbeat",{}]']


# -- on loopback ---------------------------------------------------------------------------

STATIONS = 4
#: CALLRESULTs after which the server is killed, one round each
KILL_AFTER = (120, 300, 500)
#: CALLs a station sends at most per round: the load is bounded even if the kill is late
MAX_CALLS = 2000


def iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(action: str, n: int) -> dict[str, Any]:
    """A valid 2.0.1 request of ``action``; the ``n``th of its station."""
    if action == "BootNotification":
        return {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
    if action == "NotifyEvent":
        return {
            "generatedAt": iso(),
            "seqNo": 0,
            "tbc": False,
            "eventData": [
                {
                    "eventId": n,
                    "timestamp": iso(),
                    "trigger": "Alerting",
                    "actualValue": f"reading {n}",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "EVSE", "evse": {"id": 1}},
                    "variable": {"name": "Problem"},
                }
            ],
        }
    if action == "NotifyReport":
        return {"requestId": n, "generatedAt": iso(), "seqNo": 0}
    if action == "MeterValues":
        return {
            "evseId": 1,
            "meterValue": [{"timestamp": iso(), "sampledValue": [{"value": float(n)}]}],
        }
    if action == "StatusNotification":
        status = "Available" if n % 2 else "Occupied"
        return {"timestamp": iso(), "connectorStatus": status, "evseId": 1, "connectorId": 1}
    return {}  # Heartbeat


#: what each station sends, over and over: writers and non-writers mixed
CYCLE = ("Heartbeat", "NotifyEvent", "MeterValues", "NotifyReport", "StatusNotification")


async def station(
    url: str, prefix: str, sent: dict[str, str], acknowledged: set[str], booted: set[str]
) -> None:
    """Send CALLs one after another until the socket goes; keep every frame sent
    (``sent``, by message id) and the ids that got a CALLRESULT (``acknowledged``)."""
    with contextlib.suppress(ConnectionClosed, OSError):
        async with connect(
            url,
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic_auth(url.rsplit("/", 1)[1], "durable-pw-1"),
            open_timeout=10,
        ) as ws:
            actions = itertools.chain(["BootNotification"], itertools.cycle(CYCLE))
            for n, action in zip(range(MAX_CALLS), actions, strict=False):
                message_id = f"{prefix}-{n}"
                text = orjson.dumps([2, message_id, action, payload(action, n)]).decode()
                sent[message_id] = text
                await ws.send(text)
                answer = orjson.loads(await ws.recv())
                assert answer[1] == message_id, answer
                if answer[0] == 3:
                    acknowledged.add(message_id)
                    if action == "BootNotification":
                        assert answer[2]["status"] == "Accepted"
                        booted.add(prefix)
                else:
                    assert answer[0] == 4 and action != "BootNotification", answer


def logged_in(db: Path) -> dict[str, str]:
    """The frames received that the database holds, by message id, as the server left it."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT text FROM messages WHERE direction = 'in'").fetchall()
    found: dict[str, str] = {}
    for (text,) in rows:
        frame = orjson.loads(text)
        found[frame[1]] = text
    return found


async def kill_under_load(cloud: CloudProcess, round_: int, kill_after: int) -> None:
    """Start the server, load it, kill it after ``kill_after`` CALLRESULTs; then every
    one of them is in its log, whole."""
    await asyncio.to_thread(cloud.start)  # the same database, round after round
    sent: dict[str, str] = {}
    acknowledged: set[str] = set()
    booted: set[str] = set()
    stations = [
        asyncio.create_task(
            station(cloud.ws(f"DUR-{i}"), f"r{round_}s{i}", sent, acknowledged, booted)
        )
        for i in range(STATIONS)
    ]
    try:
        await until(lambda: len(booted) == STATIONS, "every station booted")
        await until(lambda: len(acknowledged) >= kill_after, f"{kill_after} CALLRESULTs")
    finally:
        cloud.kill()  # the stations are still sending
        await asyncio.wait_for(asyncio.gather(*stations), 30)

    logged = logged_in(cloud.tmp_path / "cloud.db")
    missing = sorted(acknowledged - logged.keys())
    assert not missing, f"round {round_}: {len(missing)} acknowledged, not logged: {missing[:5]}"
    for message_id in acknowledged:  # whole, as sent: NotifyEvent / NotifyReport too
        assert logged[message_id] == sent[message_id]
    kept_only_in_log = [m for m in acknowledged if '"Notify' in sent[m]]
    assert len(kept_only_in_log) >= kill_after // 3


@pytest.mark.socket
async def test_every_acknowledged_call_is_in_the_log_after_kill_9(tmp_path: Path) -> None:
    cloud = CloudProcess(tmp_path)
    try:
        for round_, kill_after in enumerate(KILL_AFTER):
            await kill_under_load(cloud, round_, kill_after)
    finally:
        cloud.stop()
