"""The console's live view: what changed in the fleet, pushed to open pages as server-sent
events, and the overview's last hour of connected stations and messages a second.

The gateway tells :class:`LiveView` the id of each station whose state may have changed
(it connected or went away, or a message of it was answered: its data is committed).
Changes are gathered and sent together, at most every ``FLUSH_S``: a station that
reports ten times in that while is read and sent once, and the read is shared by every
open page. A page too slow to take its events is sent ``resync`` and starts again from
the REST API, rather than hold the cloud's memory.

:class:`LiveView` is the sans-I/O part (the changes, the samples); :class:`LiveHub` runs
it on the event loop and serves ``GET /api/v1/live`` and ``GET /api/v1/overview``.

A page's stream ends when the server begins to stop (``close``, one of the app's
``on_server_shutdown`` hooks): uvicorn waits for every response to end, and this one
would not by itself. A page that does not read its stream at all is cut off a moment
later (``CLOSE_GRACE_S``), as its writes would never finish.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from pydantic_core import to_json
from starlette.types import Receive, Scope, Send

from plugstream.cloud.api.common import guarded_router
from plugstream.cloud.api.stations import station_json
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.storage import Store

__all__ = ["LiveHub", "LiveView", "OverviewOut", "Sample", "router"]

log = logging.getLogger(__name__)

FLUSH_S = 0.25  # changes are sent together at most this often
SAMPLE_S = 10.0  # one overview sample per this many seconds
HOUR_SAMPLES = int(3600 / SAMPLE_S)
READS_PER_FLUSH = 500  # stations read for one flush; the rest wait for the next
QUEUE_EVENTS = 64  # events a page may have waiting before it is told to resync
MAX_WATCHERS = 256  # open live pages; more are refused with 503
KEEPALIVE_S = 15.0  # a comment line when nothing else was sent, for proxies' idle timers
CLOSE_GRACE_S = 2.0  # after close, a stream still open (its page not reading) is cut off


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    connected: int
    messages_per_s: float


class LiveView:
    """The stations changed since the last flush, and the overview's samples."""

    def __init__(self, samples: int = HOUR_SAMPLES) -> None:
        self._dirty: dict[str, None] = {}  # insertion-ordered set
        self.samples: collections.deque[Sample] = collections.deque(maxlen=samples)
        self._last: tuple[float, int] | None = None  # (monotonic s, frames received)

    def changed(self, station_id: str) -> None:
        self._dirty[station_id] = None

    def take(self, limit: int) -> list[str]:
        """Up to ``limit`` changed stations, oldest change first; the rest stay."""
        taken = list(itertools.islice(self._dirty, limit))
        for station_id in taken:
            del self._dirty[station_id]
        return taken

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def forget(self) -> None:
        self._dirty.clear()

    def sample(self, now: float, at: datetime, connected: int, frames: int) -> Sample:
        """A sample at monotonic ``now`` (wall time ``at``), with ``frames`` received in
        all since start: the rate is over the time since the previous sample."""
        point = self.peek(now, at, connected, frames)
        self._last = (now, frames)
        self.samples.append(point)
        return point

    def peek(self, now: float, at: datetime, connected: int, frames: int) -> Sample:
        """What a sample would say now, kept nowhere: a page opened between two samples
        shows the fleet as it is, not as it was up to ``SAMPLE_S`` ago."""
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = max(0, frames - self._last[1]) / (now - self._last[0])
        return Sample(at, connected, round(rate, 2))


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + to_json(data) + b"\n\n"


class LiveHub:
    """Runs a :class:`LiveView` for the gateway: ``start`` in the app's lifespan,
    ``close`` when the server begins to stop (open event streams end then)."""

    def __init__(
        self,
        store: Store,
        gateway: Gateway,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.view = LiveView()
        self._monotonic = monotonic
        self._wall = wall
        self._watchers: set[asyncio.Queue[bytes | None]] = set()
        self._streams: set[asyncio.Timeout] = set()  # the responses being sent
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def start(self) -> None:
        self.gateway.on_station_change = self._changed
        self._sample()
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="console-live-flush"),
            asyncio.create_task(self._sample_loop(), name="console-live-sample"),
        ]

    def close(self) -> None:
        """End every open stream now; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.gateway.on_station_change = None
        for task in self._tasks:
            task.cancel()
        for queue in self._watchers:
            self._put(queue, None)
        if self._streams:
            # A page reading its stream ends it at once; one whose writes are stuck (it
            # reads nothing) would hold the server's shutdown for ever.
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._cut_off)

    def _cut_off(self) -> None:
        now = asyncio.get_running_loop().time()
        for deadline in list(self._streams):
            deadline.reschedule(now)

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the gateway's side --------------------------------------------------------------

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def _changed(self, station_id: str) -> None:
        if self._watchers:
            self.view.changed(station_id)
            self._wake.set()

    # -- the loops -------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(FLUSH_S)  # gather what else changes meanwhile
            try:
                await self._flush()
            except Exception:  # a failed read must not end live updates for good
                log.exception("console live update failed")

    async def _flush(self) -> None:
        if not self._watchers:
            self.view.forget()
            return
        ids = self.view.take(READS_PER_FLUSH)
        if not ids:
            return
        gateway = self.gateway
        # one read for the lot: a storm changes thousands of stations a second
        stations = [
            station_json(
                record,
                gateway.version_of(record.station_id),
                gateway.violations,
                gateway.failed_logins,
                gateway.node_of(record.station_id),
            )
            for record in await self.store.stations.get_many(ids)
        ]
        if stations:
            self._publish(_event("stations", stations))
        if self.view.pending:
            self._wake.set()

    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            self._publish(_event("overview", _sample_json(self._sample())))

    def _sample(self, *, keep: bool = True) -> Sample:
        take = self.view.sample if keep else self.view.peek
        return take(
            self._monotonic(),
            self._wall(),
            len(self.gateway.live_versions()),
            self.gateway.frames_received_all,
        )

    def current(self) -> Sample:
        """The fleet now, as a sample not kept (:meth:`LiveView.peek`)."""
        return self._sample(keep=False)

    # -- the pages' side -----------------------------------------------------------------

    def _publish(self, event: bytes) -> None:
        for queue in list(self._watchers):
            self._put(queue, event)

    def _put(self, queue: asyncio.Queue[bytes | None], event: bytes | None) -> None:
        if queue.full():
            # Too slow: what it has waiting is dropped, and it is told to read afresh.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_event("resync", {}))
            if event is None:
                queue.put_nowait(None)
            return
        queue.put_nowait(event)

    def admit(self) -> asyncio.Queue[bytes | None] | None:
        """A new page's queue of events, counted from now on (so no more than
        ``MAX_WATCHERS`` are ever open, however many ask at once); None when there are
        that many already, or the hub is closed. :meth:`leave` gives it back."""
        if self.closed or len(self._watchers) >= MAX_WATCHERS:
            return None
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_EVENTS)
        self._watchers.add(queue)
        self._tell_cluster()
        return queue

    def leave(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._watchers.discard(queue)
        self._tell_cluster()

    def _tell_cluster(self) -> None:
        """Other nodes send this one their stations' changes while a page is open here."""
        cluster = self.gateway.cluster
        if cluster is not None:
            cluster.watchers(len(self._watchers))

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[asyncio.Queue[bytes | None]]:
        """A page's queue for the length of the block (the tests' way in)."""
        queue = self.admit()
        if queue is None:
            raise RuntimeError("the live hub is closed or full")
        try:
            yield queue
        finally:
            self.leave(queue)

    async def stream(
        self, queue: asyncio.Queue[bytes | None], request: Request | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes of one page's event stream: ``hello``, then its queue's events until
        the hub closes."""
        yield b"retry: 2000\n" + _event("hello", {"interval_s": SAMPLE_S})
        while not self.closed:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                if request is not None and await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            if event is None:
                return
            yield event


class _LiveResponse(StreamingResponse):
    """A page's event stream, whose queue was admitted before the response began: the
    queue is given back however the response ends, even one never begun, and the
    response can be cut off by the hub (:meth:`LiveHub.close`)."""

    def __init__(self, hub: LiveHub, queue: asyncio.Queue[bytes | None], request: Request) -> None:
        super().__init__(
            hub.stream(queue, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.hub = hub
        self.queue = queue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        # No deadline unless the hub cuts the stream off (it moves this one to now).
        cut = asyncio.timeout(None)
        try:
            async with cut:
                hub._streams.add(cut)
                try:
                    await super().__call__(scope, receive, send)
                finally:
                    hub._streams.discard(cut)
        except TimeoutError:
            if not cut.expired():
                raise
            log.info("a live page that read nothing was cut off at shutdown")
        finally:
            hub.leave(self.queue)


def _sample_json(sample: Sample) -> dict[str, Any]:
    return {
        "at": sample.at.isoformat().replace("+00:00", "Z"),
        "connected": sample.connected,
        "messages_per_s": sample.messages_per_s,
    }


# -- routes ---------------------------------------------------------------------------------


class SampleOut(BaseModel):
    at: datetime
    connected: int = Field(description="Stations holding an OCPP connection then.")
    messages_per_s: float = Field(description="OCPP frames received a second, on average.")


class OverviewOut(BaseModel):
    interval_s: float = Field(description="Seconds between samples.")
    samples: list[SampleOut] = Field(description="The last hour, oldest first.")
    now: SampleOut = Field(
        description="The fleet at this moment (not kept: the next sample replaces it)."
    )


router = guarded_router(tags=["console"])


def _hub(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.live
    return hub


@router.get("/overview", response_model=OverviewOut)
async def overview(request: Request) -> dict[str, Any]:
    """Connected stations and OCPP messages a second over the last hour."""
    hub = _hub(request)
    return {
        "interval_s": SAMPLE_S,
        "samples": [_sample_json(s) for s in hub.view.samples],
        "now": _sample_json(hub.current()),
    }


@router.get(
    "/live",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 503: {}},
)
async def live(request: Request) -> StreamingResponse:
    """Server-sent events: ``stations`` (the changed stations, as ``GET /stations``
    writes them), ``overview`` (a new sample), ``resync`` (read everything again)."""
    hub = _hub(request)
    queue = hub.admit()
    if queue is None:
        why = "the cloud is stopping" if hub.closed else "too many live pages open"
        raise HTTPException(503, f"{why}: try again later")
    return _LiveResponse(hub, queue, request)
