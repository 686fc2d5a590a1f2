"""What stations report, published on NATS JetStream for other services, never lost
(subjects, payloads and guarantees for consumers: docs/events.md).

A transactional outbox. A handler, once the station's data is stored, awaits
``context.events.publish(kind, station_id, data)``: on a node with a bus that is
:meth:`EventOutbox.publish`, which appends a row to the ``event_outbox`` table through
the store's writer and returns once it is committed. The station's answer, its
permission to forget, therefore comes after the event is durable. An
:class:`EventRelay` per node then publishes the committed rows to JetStream in id order,
awaits each PubAck and deletes the acknowledged rows; while NATS is unreachable the rows
wait in the table and the relay retries with back-off. The nodes of a cluster share the
table and their relays take turns (:mod:`plugstream.cloud.storage.outbox`), so a dead
node's events are relayed by the others.

Subjects are ``<prefix>.<kind>.<station token>`` (prefix ``plugstream.events``), all in
the stream ``PLUGSTREAM_EVENTS``. A station id may hold characters a subject token may
not (OCPP's identifierString allows ``.`` and ``*``): :func:`station_token` escapes them
reversibly. Each message carries ``Nats-Msg-Id``, stable for its row, so a relay that
published and died before deleting publishes it again and JetStream drops the copy.

:func:`start_events` is what a node with a bus calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson
from nats.js.api import DiscardPolicy, PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NoStreamResponseError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from plugstream.cloud.context import CloudClock, utc_now
from plugstream.cloud.storage.outbox import OutboxRow, delete_rows, read_head, take_turn
from plugstream.ocpp.datetimes import format_time

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

    from plugstream.cloud.storage import Store

__all__ = [
    "DUPLICATE_WINDOW",
    "KINDS",
    "MAX_AGE",
    "PREFIX",
    "STREAM",
    "EventOutbox",
    "EventRelay",
    "encode_data",
    "ensure_stream",
    "message",
    "msg_id",
    "retry_delay",
    "start_events",
    "station_id_of",
    "station_token",
    "stream_config",
    "subject",
]

log = logging.getLogger("plugstream.cloud.bus.events")

#: what events are about: a transaction (its ``type``: started, updated, ended), meter
#: values outside a transaction event, a connector's status, a station's security event
KINDS = frozenset({"transaction", "meter_values", "status", "security_event"})
PREFIX = "plugstream.events"
STREAM = "PLUGSTREAM_EVENTS"
#: seconds the stream keeps an event: a week for a consumer to be down and catch up
MAX_AGE = 7 * 24 * 3600.0
#: seconds within which JetStream drops a message whose Nats-Msg-Id it has stored
DUPLICATE_WINDOW = 120.0
#: the JetStream API's error code for "stream name already in use" (another config)
_STREAM_NAME_IN_USE = 10058
#: room left for the headers (Nats-Msg-Id, Nats-Expected-Stream) in a message
_HEADROOM = 512

# -- subjects ----------------------------------------------------------------------------

#: the bytes a token keeps as they are: identifierString's, less '.' and '*'
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=:+|@")
_PLAIN = re.compile(r"[A-Za-z0-9_=:+|@-]+\Z")
_TOKEN = re.compile(r"[^\s.*>]+\Z")


def station_token(station_id: str) -> str:
    """The station id as one subject token: each UTF-8 byte other than a letter, a digit
    or one of ``-_=:+|@`` becomes ``%XX`` (``CP.1*`` → ``CP%2E1%2A``), so a subject can
    never be a wildcard nor name another station; :func:`station_id_of` reverses it."""
    if _PLAIN.match(station_id):
        return station_id
    if not station_id:
        raise ValueError("a station id is never empty")
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in station_id.encode())


def station_id_of(token: str) -> str:
    """The station id a subject token stands for (:func:`station_token` reversed)."""
    return unquote(token, errors="strict")


def _check_prefix(prefix: str) -> str:
    if not all(_TOKEN.match(token) for token in prefix.split(".")):
        raise ValueError(f"{prefix!r} is no subject prefix: tokens without '.', '*', '>'")
    return prefix


def subject(kind: str, station_id: str, prefix: str = PREFIX) -> str:
    """``<prefix>.<kind>.<station token>``."""
    return f"{prefix}.{kind}.{station_token(station_id)}"


# -- payloads ----------------------------------------------------------------------------


def _number(value: Decimal) -> Any:
    """Exact: the digits stored, as a JSON number (positional unless that is long)."""
    if not value.is_finite():
        return None
    text = format(value, "f")
    return orjson.Fragment(text if len(text) <= 40 else str(value))


def _default(value: object) -> Any:
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"an event's data holds a {type(value).__name__}")


def encode_data(data: dict[str, Any]) -> str:
    """An event's data as one JSON object: times in UTC with a ``Z``, Decimals as JSON
    numbers with their exact digits, dataclasses (meter samples) as objects."""
    return orjson.dumps(data, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def msg_id(row: OutboxRow) -> str:
    """``Nats-Msg-Id``: the seq and, so that a database whose ids restart (restored,
    recreated) is never taken for a duplicate, the microsecond the row was taken in."""
    return f"plugstream-{row.id}-{(row.at - _EPOCH) // timedelta(microseconds=1)}"


def message(row: OutboxRow, prefix: str = PREFIX) -> tuple[str, bytes, dict[str, str]]:
    """(subject, payload, headers) of an outbox row: ``{"seq", "kind", "station_id",
    "node", "at", "data"}``, the data spliced in as stored (never parsed again)."""
    head = orjson.dumps(
        {
            "seq": row.id,
            "kind": row.kind,
            "station_id": row.station_id,
            "node": row.node,
            "at": format_time(row.at, always_ms=True),
        }
    )
    payload = b"".join((head[:-1], b',"data":', row.data.encode(), b"}"))
    return subject(row.kind, row.station_id, prefix), payload, {"Nats-Msg-Id": msg_id(row)}


def _shrunk(row: OutboxRow) -> OutboxRow:
    """The row with its data's lists and objects left out (``"truncated": true``): for an
    event larger than the server takes (thousands of samples), rather than none at all."""
    data = orjson.loads(row.data)
    kept = {k: v for k, v in data.items() if not isinstance(v, list | dict)}
    kept["truncated"] = True
    return replace(row, data=orjson.dumps(kept).decode())


# -- the stream --------------------------------------------------------------------------


def stream_config(
    prefix: str = PREFIX, stream: str = STREAM, *, max_age: float = MAX_AGE, replicas: int = 1
) -> StreamConfig:
    """The events' stream: every subject under ``prefix``, on disk, kept ``max_age``
    seconds, duplicates dropped within :data:`DUPLICATE_WINDOW`."""
    return StreamConfig(
        name=stream,
        description="PlugStream Cloud: what stations report (docs/events.md)",
        subjects=[f"{_check_prefix(prefix)}.>"],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        max_age=max_age,
        duplicate_window=DUPLICATE_WINDOW,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one to ``config`` (idempotent: every node
    does it at start)."""
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_NAME_IN_USE:
            raise
        await js.update_stream(config)


# -- the outbox --------------------------------------------------------------------------


class EventOutbox:
    """Where a node's handlers publish (the gateway's ``event_outbox``): each event is a
    row of the ``event_outbox`` table, committed before :meth:`publish` returns."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        clock: CloudClock = utc_now,
        *,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._rows = store.event_outbox
        self.node_id = node_id
        self._clock = clock
        #: told when an event is committed: the relay's wake-up (no polling for it)
        self.on_commit = on_commit

    async def publish(
        self, kind: str, station_id: str, data: dict[str, Any], *, at: datetime | None = None
    ) -> None:
        """Keep the event durably (the group commit of the store's writer); ``at``: when
        the cloud took it in, now by default."""
        if kind not in KINDS:
            raise ValueError(f"{kind!r} is not an event kind ({', '.join(sorted(KINDS))})")
        encoded = encode_data(data)
        await self._rows.append(kind, station_id, self.node_id, at or self._clock(), encoded)
        if self.on_commit is not None:
            self.on_commit()


# -- the relay ---------------------------------------------------------------------------


def retry_delay(failures: int, first: float, most: float) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row: doubling from
    ``first``, never more than ``most``."""
    return min(most, first * 2.0 ** min(max(0, failures - 1), 32))


def _turn_taken(exc: BaseException) -> bool:
    """Another relay held the turn for longer than we waited (PostgreSQL lock_timeout)."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == "55P03"


class EventRelay:
    """Publishes the outbox's committed rows to JetStream, oldest first, and deletes the
    acknowledged ones; ``start()`` the task, ``await close()`` it.

    A batch is at most ``batch`` rows and ``max_batch_bytes`` of data, published
    pipelined (every PubAck awaited at once, at most ``ack_timeout`` seconds). Rows not
    acknowledged stay: after a failure the relay waits (doubling from ``retry_first`` to
    ``retry_most`` seconds) and tries one event alone until one is acknowledged, so an
    outage never piles up copies in the client's buffer. It wakes when this node commits
    an event (:meth:`wake`) and every ``poll_interval`` seconds for the rows of the other
    nodes that share the table (a dead node's). On PostgreSQL it holds a connection of
    its own, the relays' turn (``turn_timeout``: how long it waits for it at most) and the
    batch's rows for the time of a batch."""

    def __init__(
        self,
        store: Store,
        js: JetStreamContext,
        *,
        prefix: str = PREFIX,
        stream: str = STREAM,
        config: StreamConfig | None = None,
        batch: int = 256,
        max_batch_bytes: int = 4 << 20,
        ack_timeout: float = 5.0,
        poll_interval: float = 5.0,
        retry_first: float = 0.2,
        retry_most: float = 10.0,
        turn_timeout: float = 5.0,
        max_payload: int = 1 << 20,
    ) -> None:
        self._store = store
        self._js = js
        self.prefix = _check_prefix(prefix)
        self.stream = stream
        #: the stream to create again if it is found gone (None: never)
        self.config = config
        self.batch = max(1, batch)
        self.max_batch_bytes = max_batch_bytes
        self.ack_timeout = ack_timeout
        self.poll_interval = poll_interval
        self.retry_first = retry_first
        self.retry_most = retry_most
        self.turn_timeout = turn_timeout
        self.max_payload = max_payload
        self._engine = (
            create_async_engine(store.db.url, pool_size=1, max_overflow=0, pool_pre_ping=True)
            if store.db.dialect.name == "postgresql"
            else None
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.relayed = 0  # events published and deleted by this relay
        self.duplicates = 0  # of those, the ones JetStream already had (a re-publish)
        self.failures = 0  # failed attempts in a row (0: relaying)
        self.errors = 0  # failed attempts in all
        self.last_error: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="plugstream-event-relay")

    def wake(self) -> None:
        """Events were committed: relay them now, not at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stop relaying; the rows not yet relayed stay for the next relay (any node's)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._engine is not None:
            await self._engine.dispose()

    async def relay_once(self) -> int:
        """One batch: the events relayed (0: none waiting); raises what stopped it, after
        deleting the rows acknowledged before."""
        limit = 1 if self.failures else self.batch
        if self._engine is None:  # SQLite: this node's own table, no turn to take
            rows = await self._store.event_outbox.head(limit=limit, max_bytes=self.max_batch_bytes)
            acked, error = await self._publish(rows)
            if acked:
                await self._store.event_outbox.delete(acked)
        else:
            async with self._engine.connect() as conn, conn.begin():
                await conn.run_sync(take_turn, self.turn_timeout)
                rows = await conn.run_sync(read_head, limit, self.max_batch_bytes)
                acked, error = await self._publish(rows)
                if acked:
                    await conn.run_sync(delete_rows, acked)
        self.relayed += len(acked)
        if error is not None:
            raise error
        return len(acked)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                relayed = await self.relay_once()
            except Exception as exc:
                if _turn_taken(exc):
                    continue  # another node is relaying: wait for the turn again
                await self._failed(exc)
                continue
            if self.failures:
                log.info("relaying events again after %d failed attempts", self.failures)
                self.failures = 0
            if relayed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.errors += 1
        self.last_error = repr(exc)
        # once per outage at warning level; its next attempts at debug
        (log.warning if self.failures == 1 else log.debug)(
            "events not relayed (attempt %d), kept to retry: %r", self.failures, exc
        )
        if isinstance(exc, NoStreamResponseError) and self.config is not None:
            with contextlib.suppress(Exception):
                await ensure_stream(self._js, self.config)
        await asyncio.sleep(retry_delay(self.failures, self.retry_first, self.retry_most))

    def _message(self, row: OutboxRow) -> tuple[str, bytes, dict[str, str]]:
        found = message(row, self.prefix)
        if len(found[1]) + _HEADROOM > self.max_payload:
            found = message(_shrunk(row), self.prefix)
        return found

    async def _publish(self, rows: Sequence[OutboxRow]) -> tuple[list[int], BaseException | None]:
        """Publish ``rows`` pipelined: (the ids acknowledged, what went wrong or None)."""
        sent: list[tuple[int, asyncio.Future[PubAck]]] = []
        error: BaseException | None = None
        try:
            for row in rows:
                subject_, payload, headers = self._message(row)
                try:
                    future = await self._js.publish_async(
                        subject_,
                        payload,
                        wait_stall=self.ack_timeout,
                        stream=self.stream,
                        headers=headers,
                    )
                except Exception as exc:
                    error = exc
                    break
                sent.append((row.id, future))
            if sent:
                await asyncio.wait([future for _, future in sent], timeout=self.ack_timeout)
        finally:
            for _, future in sent:
                future.cancel()  # no PubAck in time: frees the client's slot (done: no-op)
        acked: list[int] = []
        for row_id, future in sent:
            if future.cancelled():
                error = error or TimeoutError(f"no PubAck within {self.ack_timeout:g} s")
                continue
            problem = future.exception()
            if problem is not None:
                error = error or problem
                continue
            acked.append(row_id)
            if future.result().duplicate:
                self.duplicates += 1
        return acked, error


async def start_events(
    store: Store,
    nc: Client,
    node_id: str,
    *,
    prefix: str = PREFIX,
    stream: str = STREAM,
    clock: CloudClock = utc_now,
    max_age: float = MAX_AGE,
    replicas: int = 1,
) -> tuple[EventOutbox, EventRelay]:
    """A node's events on the bus: the stream ensured, an :class:`EventRelay` started and
    the :class:`EventOutbox` its handlers publish to (the gateway's ``event_outbox``).
    ``nc`` is connected and reconnects for ever (``max_reconnect_attempts=-1``): a client
    that gives up is closed, and the relay's events would wait for a restart. Close the
    relay before ``nc`` and the store."""
    js = nc.jetstream()
    config = stream_config(prefix, stream, max_age=max_age, replicas=replicas)
    await ensure_stream(js, config)
    relay = EventRelay(
        store, js, prefix=prefix, stream=stream, config=config, max_payload=nc.max_payload
    )
    outbox = EventOutbox(store, node_id, clock, on_commit=relay.wake)
    relay.start()
    return outbox, relay
