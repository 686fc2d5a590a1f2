"""Events of what stations report, on NATS JetStream for other services, never lost
(plugstream.cloud.bus.events; docs/events.md).

The handlers run as the gateway runs them (the core's dispatch, boot gate included) in a
gateway-less context whose events go to a real :class:`EventOutbox`; a real relay
publishes to a real NATS server with JetStream, and a durable pull consumer reads them
back as another service would. Each test has a stream and subject prefix of its own.

The NATS tests are generated when PLUGSTREAM_TEST_NATS names a server, on each store of
the ``store`` fixture (SQLite, and PostgreSQL when PLUGSTREAM_TEST_POSTGRES names one;
the tests of several nodes on one table, on PostgreSQL only). A server named but down
fails them. The unit tests need neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import nats.errors
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from sqlalchemy.engine import make_url

from plugstream.cloud.bus.events import (
    KINDS,
    EventOutbox,
    EventRelay,
    encode_data,
    ensure_stream,
    message,
    station_id_of,
    station_token,
    stream_config,
)
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import HandlerContext, NoEvents
from plugstream.cloud.handlers16 import Csms16
from plugstream.cloud.handlers201 import Csms201
from plugstream.cloud.storage import IdTokenRecord, MeterSample, Store
from plugstream.cloud.storage.outbox import OutboxRow
from plugstream.ocpp import Handlers
from plugstream.ocpp.datetimes import format_time, parse_time
from plugstream.ocpp.routing import dispatch
from tests.cloud.conftest import BACKENDS, _truncate_postgres
from tests.support import free_port, until

pytestmark = pytest.mark.unit  # the NATS cases are socket ones (their parameter says)

NATS = os.environ.get("PLUGSTREAM_TEST_NATS", "").strip()
WITH_NATS = [pytest.param(NATS, marks=pytest.mark.socket, id="nats")] if NATS else []
CONFIG = CloudConfig(heartbeat_interval=300)

BOOT16 = {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 22"}
BOOT201 = {
    "reason": "PowerUp",
    "chargingStation": {"vendorName": "PlugStream", "model": "PlugStream 7"},
}


class OutboxEvents(NoEvents):
    """What the gateway of a node with a bus is to its handlers: events to the outbox."""

    def __init__(self, outbox: EventOutbox) -> None:
        self.outbox = outbox

    async def publish(self, kind: str, station_id: str, data: dict[str, Any]) -> None:
        await self.outbox.publish(kind, station_id, data)


def now_text(minutes: float = 0.0) -> str:
    return format_time(datetime.now(UTC) + timedelta(minutes=minutes))


async def booted(handlers: Handlers, boot: dict[str, Any]) -> Handlers:
    answer = await dispatch(handlers, "BootNotification", boot)
    assert answer["status"] == "Accepted"
    return handlers


# --- NATS: a stream of the test's own, a consumer, relays ---------------------------------


class Consumer:
    """A durable pull consumer of the test's stream, as docs/events.md shows one."""

    def __init__(self, sub: JetStreamContext.PullSubscription) -> None:
        self.sub = sub
        self.messages: list[Msg] = []

    async def take(self, n: int) -> list[dict[str, Any]]:
        """The first ``n`` events (acknowledged), once that many have come."""

        async def fetched() -> bool:
            with contextlib.suppress(nats.errors.TimeoutError):
                for msg in await self.sub.fetch(100, timeout=0.2):
                    await msg.ack()
                    self.messages.append(msg)
            return len(self.messages) >= n

        await until(fetched, f"{n} events for the consumer")
        return [orjson.loads(msg.data) for msg in self.messages[:n]]


class Bus:
    """The NATS server of PLUGSTREAM_TEST_NATS, with a stream and prefix of the test's own."""

    def __init__(self, url: str, nc: Client) -> None:
        self.url = url
        self.nc = nc
        self.js = nc.jetstream()
        tag = uuid.uuid4().hex[:12]
        self.prefix = f"test{tag}.events"
        self.stream = f"PLUGSTREAM_EVENTS_TEST_{tag.upper()}"
        self.relays: list[EventRelay] = []

    def relay(self, store: Store, js: JetStreamContext | None = None, **options: Any) -> EventRelay:
        """A relay of ``store``'s outbox to the test's stream, started (closed after)."""
        options.setdefault("poll_interval", 0.5)
        relay = EventRelay(store, js or self.js, prefix=self.prefix, stream=self.stream, **options)
        relay.start()
        self.relays.append(relay)
        return relay

    async def consumer(self) -> Consumer:
        durable = f"consumer_{uuid.uuid4().hex[:8]}"
        sub = await self.js.pull_subscribe(f"{self.prefix}.>", durable=durable, stream=self.stream)
        return Consumer(sub)

    async def stored(self) -> int:
        """The messages the stream holds: what every consumer of it will see."""
        return int((await self.js.stream_info(self.stream)).state.messages)

    def subject_of(self, kind: str, token: str) -> str:
        return f"{self.prefix}.{kind}.{token}"


@pytest.fixture(params=WITH_NATS)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    url: str = request.param
    try:
        nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    except Exception as exc:
        pytest.fail(f"PLUGSTREAM_TEST_NATS={url!r} is set but unreachable: {exc!r}")
    served = Bus(url, nc)
    try:
        await ensure_stream(served.js, stream_config(served.prefix, served.stream))
        yield served
    finally:
        for relay in served.relays:
            await relay.close()
        with contextlib.suppress(Exception):
            await served.js.delete_stream(served.stream)
        await nc.close()


@pytest.fixture(params=BACKENDS[1:])  # PostgreSQL's, when PLUGSTREAM_TEST_POSTGRES names one
async def shared_url(request: pytest.FixtureRequest) -> str:
    """An empty PostgreSQL database that several nodes share."""
    url: str = request.getfixturevalue("postgres_url")
    opened = await Store.open(url)
    await opened.close()
    await _truncate_postgres(url)
    return url


class Outage:
    """A TCP relay on loopback in front of the NATS server, for a NATS that goes away
    (connections cut, new ones refused) and comes back."""

    def __init__(self, url: str) -> None:
        target = make_url(url.replace("nats://", "postgresql://"))
        self.target = (target.host or "127.0.0.1", target.port or 4222)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._open.update((writer, up_writer))

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            for end in (writer, up_writer):
                end.close()
                self._open.discard(end)

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


# --- what a consumer receives -------------------------------------------------------------


async def test_a_consumer_receives_what_stations_report_with_the_ids_the_cloud_gave(
    store: Store, bus: Bus
) -> None:
    outbox = EventOutbox(store, "node-1")
    outbox.on_commit = bus.relay(store).wake
    consumer = await bus.consumer()
    context = HandlerContext(store, CONFIG, events=OutboxEvents(outbox))
    await store.id_tokens.put(IdTokenRecord("GOOD", "Accepted"))

    # OCPP 1.6, from a station whose id holds what a subject token may not ('.', '*')
    cp = await booted(Csms16("CP.16*", context), BOOT16)
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}
    await dispatch(cp, "StatusNotification", {**status, "timestamp": now_text()})
    start = {"connectorId": 1, "idTag": "GOOD", "meterStart": 1000, "timestamp": now_text()}
    started = await dispatch(cp, "StartTransaction", start)
    tx = started["transactionId"]
    sample = {"value": "3.25", "unit": "kWh", "measurand": "Energy.Active.Import.Register"}
    await dispatch(
        cp,
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [{"timestamp": now_text(), "sampledValue": [sample]}],
        },
    )
    stop = {"transactionId": tx, "meterStop": 5500, "timestamp": now_text(1)}
    await dispatch(cp, "StopTransaction", {**stop, "reason": "EVDisconnected"})
    await dispatch(
        cp, "SecurityEventNotification", {"type": "SettingSystemTime", "timestamp": now_text()}
    )

    # OCPP 2.0.1
    cs = await booted(Csms201("CS-201", context), BOOT201)
    begin = [{"timestamp": now_text(), "sampledValue": [{"value": 120.5}]}]
    await dispatch(
        cs,
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": now_text(),
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "tx-201-1", "chargingState": "Charging"},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "GOOD", "type": "ISO14443"},
            "meterValue": begin,
        },
    )
    end = {"value": 2.5, "unitOfMeasure": {"unit": "kWh"}, "context": "Transaction.End"}
    await dispatch(
        cs,
        "TransactionEvent",
        {
            "eventType": "Ended",
            "timestamp": now_text(1),
            "triggerReason": "EVCommunicationLost",
            "seqNo": 1,
            "transactionInfo": {"transactionId": "tx-201-1", "stoppedReason": "EVDisconnected"},
            "meterValue": [{"timestamp": now_text(1), "sampledValue": [end]}],
        },
    )
    await dispatch(
        cs,
        "StatusNotification",
        {"timestamp": now_text(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    )
    await dispatch(
        cs,
        "SecurityEventNotification",
        {"type": "FirmwareUpdated", "timestamp": now_text(), "techInfo": "2.0.1 → 2.0.2"},
    )

    events = await consumer.take(9)
    assert await bus.stored() == 9  # each once
    assert [(e["kind"], e["station_id"], e["data"].get("type")) for e in events] == [
        ("status", "CP.16*", None),
        ("transaction", "CP.16*", "started"),
        ("meter_values", "CP.16*", None),
        ("transaction", "CP.16*", "ended"),
        ("security_event", "CP.16*", "SettingSystemTime"),
        ("transaction", "CS-201", "started"),
        ("transaction", "CS-201", "ended"),
        ("status", "CS-201", None),
        ("security_event", "CS-201", "FirmwareUpdated"),
    ]
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(set(seqs))  # in the order stored, each its own seq
    for event, msg in zip(events, consumer.messages, strict=True):
        assert event["node"] == "node-1"
        assert abs(parse_time(event["at"]) - datetime.now(UTC)) < timedelta(minutes=5)
        token = station_token(event["station_id"])
        assert msg.subject == bus.subject_of(event["kind"], token)
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"].startswith(f"plugstream-{event['seq']}-")
    assert consumer.messages[0].subject == bus.subject_of("status", "CP%2E16%2A")

    status16, start16, meter16, stop16, security16 = (e["data"] for e in events[:5])
    assert status16 == {
        "ocppVersion": "1.6",
        "connectorId": 1,
        "status": "Preparing",
        "errorCode": "NoError",
        "timestamp": status16["timestamp"],
    }
    assert start16["id"] == start16["transactionId"] == tx  # the id the cloud assigned
    assert (start16["connectorId"], start16["idTag"], start16["meterStart"]) == (1, "GOOD", 1000)
    assert start16["idTagInfo"] == {"status": "Accepted"}
    assert meter16["transactionId"] == tx
    assert [(v["value"], v["unit"]) for v in meter16["sampledValue"]] == [(3250, "Wh")]
    assert (stop16["transactionId"], stop16["meterStop"], stop16["energyWh"]) == (tx, 5500, 4500)
    assert stop16["reason"] == "EVDisconnected"
    assert security16["ocppVersion"] == "1.6"

    start201, end201, status201, security201 = (e["data"] for e in events[5:])
    assert isinstance(start201["id"], int) and end201["id"] == start201["id"]
    assert (start201["eventType"], start201["transactionId"], start201["seqNo"]) == (
        "Started",
        "tx-201-1",
        0,
    )
    assert (start201["evseId"], start201["connectorId"]) == (1, 1)
    assert start201["idToken"] == {"idToken": "GOOD", "type": "ISO14443"}
    assert start201["idTokenInfo"] == {"status": "Accepted"}
    assert start201["chargingState"] == "Charging"
    assert [v["value"] for v in start201["sampledValue"]] == [120.5]
    assert (end201["type"], end201["stoppedReason"]) == ("ended", "EVDisconnected")
    assert (end201["meterStart"], end201["meterStop"], end201["energyWh"]) == (120.5, 2500, 2379.5)
    assert [(v["value"], v["unit"]) for v in end201["sampledValue"]] == [(2500, "Wh")]
    assert status201 == {
        "ocppVersion": "2.0.1",
        "evseId": 1,
        "connectorId": 1,
        "connectorStatus": "Available",
        "timestamp": status201["timestamp"],
    }
    assert (security201["type"], security201["techInfo"]) == ("FirmwareUpdated", "2.0.1 → 2.0.2")


# --- never lost, never twice ---------------------------------------------------------------


async def test_an_event_stored_while_nats_is_down_arrives_once_nats_is_back(
    store: Store, bus: Bus
) -> None:
    outage = Outage(bus.url)
    await outage.up()
    nc = await nats.connect(outage.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        relay = bus.relay(store, nc.jetstream(), ack_timeout=0.5, retry_first=0.05, retry_most=0.5)
        outbox = EventOutbox(store, "node-1", on_commit=relay.wake)
        consumer = await bus.consumer()
        await outage.down()
        await until(lambda: not nc.is_connected, "the relay's client cut off")

        await outbox.publish("status", "CP1", {"status": "Faulted"})  # the station is answered
        await until(lambda: relay.errors >= 2, "the relay to try and fail")
        assert await store.event_outbox.count() == 1  # kept
        assert await bus.stored() == 0

        await outage.up()
        events = await consumer.take(1)
        await until(lambda: relay.failures == 0, "the relay relaying again")
        assert await store.event_outbox.count() == 0
        assert await bus.stored() == 1  # the copies sent while it was down: dropped
        assert (events[0]["station_id"], events[0]["data"]) == ("CP1", {"status": "Faulted"})
    finally:
        for relay in bus.relays:  # before the client it publishes with
            await relay.close()
        await nc.close()
        await outage.down()


async def test_an_event_a_relay_published_before_it_died_is_seen_once(
    store: Store, bus: Bus
) -> None:
    outbox = EventOutbox(store, "node-1")
    await outbox.publish("status", "CP1", {"status": "Charging"})
    (row,) = await store.event_outbox.head()
    # a relay published it, and died before it could delete the row
    subject, payload, headers = message(row, bus.prefix)
    await bus.js.publish(subject, payload, headers=headers)
    consumer = await bus.consumer()

    relay = bus.relay(store)  # the next one (this node's after its restart, or another's)
    await until(lambda: relay.relayed == 1, "the row relayed again")
    assert relay.duplicates == 1
    assert await store.event_outbox.count() == 0
    assert await bus.stored() == 1
    (event,) = await consumer.take(1)
    assert event["seq"] == row.id


async def test_two_nodes_relaying_one_table_publish_each_event_once_in_order(
    shared_url: str, bus: Bus
) -> None:
    """Each node's relay takes turns with the other's: every event once, and a station's
    events in the order they were stored, whichever node relayed them."""
    node_a, node_b = await Store.open(shared_url), await Store.open(shared_url)
    other = await nats.connect(bus.url)
    try:
        relays = [bus.relay(node_a, batch=7), bus.relay(node_b, other.jetstream(), batch=7)]
        outboxes = [
            EventOutbox(node, name, on_commit=relay.wake)
            for node, name, relay in zip(
                (node_a, node_b), ("node-a", "node-b"), relays, strict=True
            )
        ]

        async def station(n: int) -> None:
            outbox = outboxes[n % 2]  # a station is on one node at a time
            for i in range(40):
                await outbox.publish("meter_values", f"CP{n}", {"n": i})

        await asyncio.gather(*(station(n) for n in range(6)))
        consumer = await bus.consumer()
        events = await consumer.take(240)
        await until(lambda: sum(r.relayed for r in relays) == 240, "every row relayed")
        assert await bus.stored() == 240
        assert [r.duplicates for r in relays] == [0, 0]  # none published twice
        assert len({e["seq"] for e in events}) == 240
        for n in range(6):
            mine = [e for e in events if e["station_id"] == f"CP{n}"]
            assert [e["data"]["n"] for e in mine] == list(range(40))
            assert {e["node"] for e in mine} == {("node-a", "node-b")[n % 2]}
        assert await node_a.event_outbox.count() == 0
    finally:
        for relay in bus.relays:
            await relay.close()
        await other.close()
        await node_a.close()
        await node_b.close()


async def test_a_dead_nodes_events_are_relayed_by_another_node(shared_url: str, bus: Bus) -> None:
    dead, alive = await Store.open(shared_url), await Store.open(shared_url)
    try:
        outbox = EventOutbox(dead, "node-dead")
        for status in ("Preparing", "Charging", "Finishing"):
            await outbox.publish("status", "CP1", {"status": status})
        await dead.close()  # the node is gone with its events unrelayed

        consumer = await bus.consumer()
        relay = bus.relay(alive)
        events = await consumer.take(3)
        assert [(e["node"], e["data"]["status"]) for e in events] == [
            ("node-dead", "Preparing"),
            ("node-dead", "Charging"),
            ("node-dead", "Finishing"),
        ]
        await until(lambda: relay.relayed == 3, "the rows relayed and deleted")
        assert await alive.event_outbox.count() == 0
    finally:
        for relay in bus.relays:
            await relay.close()
        await alive.close()


# --- without NATS ------------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path}/cloud.db")
    try:
        yield opened
    finally:
        await opened.close()


async def test_an_event_is_committed_before_publish_returns(sqlite_store: Store) -> None:
    committed: list[int] = []

    async def count_committed() -> None:
        committed.append(await sqlite_store.event_outbox.count())

    tasks: list[asyncio.Task[None]] = []
    outbox = EventOutbox(
        sqlite_store,
        "node-1",
        on_commit=lambda: tasks.append(asyncio.create_task(count_committed())),
    )
    await outbox.publish("security_event", "CP1", {"type": "TamperDetectionActivated"})
    # what another connection sees (the readers' own): committed, not merely queued
    (row,) = await sqlite_store.event_outbox.head()
    assert (row.kind, row.station_id, row.node) == ("security_event", "CP1", "node-1")
    assert orjson.loads(row.data) == {"type": "TamperDetectionActivated"}
    await asyncio.gather(*tasks)
    assert committed == [1]  # told once committed


async def test_a_stations_answer_comes_after_its_event_is_durable(sqlite_store: Store) -> None:
    outbox = EventOutbox(sqlite_store, "node-1")
    context = HandlerContext(sqlite_store, CONFIG, events=OutboxEvents(outbox))
    cp = await booted(Csms16("CP1", context), BOOT16)
    assert await sqlite_store.event_outbox.count() == 0  # a boot is no event
    answer = await dispatch(
        cp,
        "StartTransaction",
        {"connectorId": 2, "idTag": "ANY", "meterStart": 0, "timestamp": now_text()},
    )
    (row,) = await sqlite_store.event_outbox.head()
    data = orjson.loads(row.data)
    assert (row.kind, data["type"], data["transactionId"]) == (
        "transaction",
        "started",
        answer["transactionId"],
    )
    assert data["idTagInfo"] == answer["idTagInfo"] == {"status": "Invalid"}


async def test_a_node_without_a_bus_keeps_no_events(sqlite_store: Store) -> None:
    cp = await booted(Csms16("CP1", HandlerContext(sqlite_store, CONFIG)), BOOT16)
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    assert await dispatch(cp, "StatusNotification", status) == {}
    assert await sqlite_store.event_outbox.count() == 0


async def test_an_unknown_event_kind_is_refused(sqlite_store: Store) -> None:
    with pytest.raises(ValueError, match="not an event kind"):
        await EventOutbox(sqlite_store, "node-1").publish("heartbeat", "CP1", {})
    assert await sqlite_store.event_outbox.count() == 0
    assert "transaction" in KINDS


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40))
def test_any_station_id_is_one_subject_token_that_reads_back(station_id: str) -> None:
    token = station_token(station_id)
    assert token and not any(c in token for c in ".*>") and not any(c.isspace() for c in token)
    assert station_id_of(token) == station_id


@pytest.mark.parametrize(
    ("station_id", "token"),
    [
        ("CP-001", "CP-001"),
        ("a=b:c+d|e@f_g", "a=b:c+d|e@f_g"),  # identifierString's, as they are
        ("CP.1", "CP%2E1"),
        ("*", "%2A"),
        ("50%", "50%25"),
        ("Zürich 1", "Z%C3%BCrich%201"),
    ],
)
def test_station_tokens_escape_only_what_a_subject_cannot_hold(station_id: str, token: str) -> None:
    assert station_token(station_id) == token


def test_an_events_message_carries_the_stored_data_and_a_stable_id() -> None:
    at = datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    sample = MeterSample(at, "Energy.Active.Import.Register", Decimal("1234.50"), "Wh")
    data = encode_data({"meterStart": Decimal("0.1"), "timestamp": at, "sampledValue": [sample]})
    row = OutboxRow(41, "meter_values", "CP.1", "node-2", at, data)
    subject, payload, headers = message(row, "plugstream.events")
    assert subject == "plugstream.events.meter_values.CP%2E1"
    assert orjson.loads(payload) == {
        "seq": 41,
        "kind": "meter_values",
        "station_id": "CP.1",
        "node": "node-2",
        "at": "2026-05-01T12:00:00.250Z",
        "data": {
            "meterStart": 0.1,
            "timestamp": "2026-05-01T12:00:00.250Z",
            "sampledValue": [
                {
                    "timestamp": "2026-05-01T12:00:00.250Z",
                    "measurand": "Energy.Active.Import.Register",
                    "value": 1234.5,
                    "unit": "Wh",
                    "phase": None,
                    "context": None,
                    "location": None,
                }
            ],
        },
    }
    assert b'"value":1234.50' in payload  # the exact digits stored
    assert message(row)[2] == headers  # the same row, the same Nats-Msg-Id
    later = OutboxRow(41, "meter_values", "CP.1", "node-2", at + timedelta(seconds=1), data)
    assert message(later)[2] != headers  # a seq of a database recreated is another event
