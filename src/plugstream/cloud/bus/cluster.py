"""One gateway node of a cluster: presence, commands and live updates over NATS.

Subjects (under the cluster's name, ``plugstream.`` unless ``--cluster`` names another):

- ``cluster.alive``: every node, every ``ALIVE_EVERY_S``: ``{"node", "frames",
  "watching"}`` (frames received since start, whether a console page is open on it);
  ``cluster.leaving``: a node stopping holds nothing from then on;
- ``cluster.changed``: ``{"node", "stations": [...]}``, the stations whose state changed
  on that node, gathered for ``FLUSH_S``, sent only while some node has a page open;
- ``cluster.admission``: ``{"station"}``, a station's registration changed: every node
  forgets what it remembered of it for admission;
- ``cluster.firmware``: ``{"stations": [...]}``, a firmware rollout made on that node
  targets these stations: every node looks for it when one of them boots there;
- ``node.<id>.call``: request/reply, a command for a station held by that node:
  ``{"station", "action", "payload", "timeout"}`` answered ``{"result": {...}}``,
  ``{"error": [code, description, details]}``, ``{"timeout": s}``, ``{"offline": true}``
  or ``{"moved": true}`` (it does not hold the station: the caller looks again);
- ``node.<id>.evict``: ``{"station", "revision"}``, the station connected to another
  node: the old connection is closed before the new one is accepted.

Presence is the key-value bucket ``<name>_presence`` (in memory: what it holds is
only true while the nodes are up, and each node puts back its own after NATS restarts).
A station's new connection is accepted only after its entry names the new node and the
node that held it before has let go of it (or is dead), so there is no moment when two
nodes would both run a command for it. A command for a station on another node goes to
the node its entry names; one that finds it gone is answered "moved" and the caller reads
the entry afresh, so a command never runs on a stale connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError

from plugstream.cloud.bus.presence import (
    ALIVE_EVERY_S,
    Holder,
    Presence,
    decode_holder,
    encode_holder,
    key_station,
    station_key,
)
from plugstream.cloud.stations import StationOffline
from plugstream.ocpp import CallTimeout, OcppError, OcppVersion
from plugstream.ocpp.errors import ErrorCode

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.kv import KeyValue

__all__ = ["BUCKET", "Cluster", "LocalStations", "NodeIdInUse", "join"]

log = logging.getLogger(__name__)

BUCKET = "plugstream_presence"  # the default cluster's ("<name>_presence")
FLUSH_S = 0.25  # changed stations are sent to other nodes together, at most this often
CHANGED_CHUNK = 1000  # station ids per cluster.changed message
EVICT_TIMEOUT_S = 2.0  # a node that does not let go of a station within this is dead
CLAIM_TRIES = 5  # concurrent claims of one station: the last one to write wins
CLAIM_RETRIES = 6  # a claim that failed (the bus slow or away) is tried again, backing off
CALL_MARGIN_S = 5.0  # a command's request waits this longer than the station's timeout
REMOTE_CALLS = 1000  # commands from other nodes in flight at once; more: answered busy
RELEASE_TIMEOUT_S = 2.0


class NodeIdInUse(RuntimeError):
    def __init__(self, node_id: str) -> None:
        super().__init__(f"node id {node_id!r} is in use by another running node")


class LocalStations(Protocol):
    """What the cluster needs of its node's gateway."""

    def holds(self, station_id: str) -> OcppVersion | None: ...

    def evict(self, station_id: str) -> bool: ...

    async def call_local(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float | None
    ) -> dict[str, Any]: ...

    def changed_elsewhere(self, station_id: str) -> None: ...

    def forget_admission(self, station_id: str) -> None: ...

    def firmware_pending(self, station_ids: list[str]) -> None: ...

    @property
    def frames_received(self) -> int: ...


class Cluster:
    """This node's part in the cluster: start, then claim and release the stations it
    accepts; ask it where a station is, and call stations on other nodes through it."""

    def __init__(
        self,
        nc: Client,
        node_id: str,
        *,
        prefix: str = "plugstream",
        bucket: str = BUCKET,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nc = nc
        self.node_id = node_id
        self.prefix = prefix
        self.bucket = bucket
        self.presence = Presence(monotonic)
        self._local: LocalStations | None = None
        self._kv: KeyValue | None = None
        self._claims: dict[str, int] = {}  # our stations' entry revisions
        self._revisions: dict[str, int] = {}  # the bucket's last revision of each station
        self._unclaimed: set[str] = set()  # accepted while the bus was unreachable
        self._claim_failures = 0
        self._frames: dict[str, int] = {}  # frames received, by other node
        self._watching: set[str] = set()  # other nodes with a console page open
        self._watchers = 0  # pages open on this node
        self._dirty: dict[str, None] = {}
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self._subs: list[Any] = []
        self._remote_calls = 0
        self.closed = False
        # Closed before the cluster is left, while the bus is still up (the event relay).
        self.on_close: list[Callable[[], Awaitable[None]]] = []

    def _subject(self, *parts: str) -> str:
        return ".".join((self.prefix, *parts))

    # -- start and stop -----------------------------------------------------------------

    async def start(self, local: LocalStations) -> None:
        """Join: refuse a node id already in use, read every node's stations, forget
        this node's entries of an earlier life, and start saying that it is alive."""
        self._local = local
        try:
            await self.nc.request(self._subject("node", self.node_id, "ping"), b"", timeout=0.5)
        except (NoRespondersError, NatsTimeout):
            pass
        else:
            raise NodeIdInUse(self.node_id)
        js = self.nc.jetstream()
        try:
            self._kv = await js.key_value(self.bucket)
        except BucketNotFoundError:
            self._kv = await js.create_key_value(
                KeyValueConfig(bucket=self.bucket, history=1, storage=StorageType.MEMORY)
            )
        sub = self.nc.subscribe
        node = ("node", self.node_id)
        self._subs = [
            await sub(self._subject(*node, "ping"), cb=self._on_ping),
            await sub(self._subject(*node, "call"), cb=self._on_call),
            await sub(self._subject(*node, "evict"), cb=self._on_evict),
            await sub(self._subject("cluster", "alive"), cb=self._on_alive),
            await sub(self._subject("cluster", "leaving"), cb=self._on_leaving),
            await sub(self._subject("cluster", "changed"), cb=self._on_changed),
            await sub(self._subject("cluster", "admission"), cb=self._on_admission),
            await sub(self._subject("cluster", "firmware"), cb=self._on_firmware),
        ]
        watcher = await self._kv.watchall()
        async for entry in watcher:  # the bucket as it is now, then None
            if entry is None:
                break
            self._apply(entry)
        self.presence.heard(self.node_id)
        stale = self.presence.held_by(self.node_id)
        if stale:
            log.info("forgetting %d stations this node held before it restarted", len(stale))
            await asyncio.gather(*(self._release(sid, None) for sid in stale))
        await self._say_alive()
        self._loops = [
            asyncio.create_task(self._watch(watcher), name="cluster-presence"),
            asyncio.create_task(self._alive_loop(), name="cluster-alive"),
        ]

    async def close(self) -> None:
        """Leave: other nodes stop counting this node's stations at once."""
        if self.closed:
            return
        self.closed = True
        for close in self.on_close:
            try:
                await close()
            except Exception:
                log.warning("closing %s failed", close, exc_info=True)
        for task in self._loops:
            task.cancel()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=RELEASE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await self.nc.publish(
                self._subject("cluster", "leaving"), orjson.dumps({"node": self.node_id})
            )
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def leave(self) -> None:
        """Close, then let NATS deliver what is still queued, and disconnect."""
        await self.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.drain(), RELEASE_TIMEOUT_S)
        if not self.nc.is_closed:
            await self.nc.close()

    async def reconnected(self) -> None:
        """NATS is back (it may have restarted, its in-memory bucket empty): put back
        this node's stations, and claim those accepted meanwhile."""
        local = self._local
        if local is None or self.closed:
            return
        for station_id in list(self._claims) + list(self._unclaimed):
            version = local.holds(station_id)
            if version is not None:
                self._spawn(self._claim_quietly(station_id, version))

    # -- presence ---------------------------------------------------------------------

    def _apply(self, entry: Any) -> None:
        station_id = key_station(entry.key)
        revision = entry.revision or 0
        if revision > self._revisions.get(station_id, 0):
            self._revisions[station_id] = revision
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self.presence.delete(station_id, entry.revision)
            return
        holder = decode_holder(entry.value, entry.revision)
        if holder is None:
            return
        self.presence.put(station_id, holder)
        mine = self._claims.get(station_id)
        if holder.node != self.node_id and mine is not None and mine < holder.revision:
            # Another node accepted a newer connection and could not tell us: let go.
            self._claims.pop(station_id, None)
            if self._local is not None and self._local.evict(station_id):
                log.info("station %s connected to node %s: closed here", station_id, holder.node)

    async def _watch(self, watcher: Any) -> None:
        while True:
            try:
                entry = await watcher.updates(timeout=60)
            except NatsTimeout:
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("presence watch failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if entry is not None:
                self._apply(entry)

    async def claim(self, station_id: str, version: OcppVersion) -> None:
        """Name this node as the station's holder, and make the node that held it let
        go, before its new connection is accepted. With the bus unreachable the station
        is accepted anyway (it is here), and claimed once the bus is back."""
        try:
            await asyncio.wait_for(self._claim(station_id, version), EVICT_TIMEOUT_S * 2)
        except Exception as exc:
            self._claim_failures += 1
            if self._claim_failures % 1000 == 1:
                log.warning("could not claim %s on the bus (%s): claimed later", station_id, exc)
            self._unclaimed.add(station_id)
            self._spawn(self._claim_later(station_id, version))

    async def _claim_later(self, station_id: str, version: OcppVersion) -> None:
        """Try again, with back-off, while the station is still here and unclaimed (a bus
        that is down is also caught up with when it is back: :meth:`reconnected`)."""
        for attempt in range(CLAIM_RETRIES):
            await asyncio.sleep(min(30.0, 2.0 * 2**attempt))
            local = self._local
            if self.closed or station_id not in self._unclaimed or local is None:
                return
            if local.holds(station_id) is None:
                self._unclaimed.discard(station_id)
                return
            await self._claim_quietly(station_id, version)

    async def _claim_quietly(self, station_id: str, version: OcppVersion) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._claim(station_id, version), EVICT_TIMEOUT_S * 2)
            self._unclaimed.discard(station_id)

    async def _claim(self, station_id: str, version: OcppVersion) -> None:
        kv = self._kv
        assert kv is not None, "claim before start"
        key = station_key(station_id)
        value = encode_holder(self.node_id, version)
        # First from this node's copy of the bucket (one round trip in a storm); when the
        # copy is behind, the write fails and the bucket itself is read.
        before = self.presence.entry(station_id)
        last = self._revisions.get(station_id, 0)
        for attempt in range(CLAIM_TRIES):
            if attempt:
                try:
                    entry = await kv.get(key)
                except KeyNotFoundError as exc:  # never held, or deleted (its revision)
                    last = getattr(getattr(exc, "entry", None), "revision", None) or 0
                    before = None
                else:
                    last = entry.revision or 0
                    before = decode_holder(entry.value, last) if entry.value else None
            try:
                revision = await kv.update(key, value, last=last)
                break
            except KeyWrongLastSequenceError:
                continue  # written meanwhile (another connection of it): read again
        else:
            revision = await kv.put(key, value)  # the newest connection wins
        self._claims[station_id] = revision
        self._revisions[station_id] = max(revision, self._revisions.get(station_id, 0))
        self._unclaimed.discard(station_id)
        self.presence.put(station_id, Holder(self.node_id, version, revision))
        if before is not None and before.node != self.node_id and self.presence.alive(before.node):
            await self._evict(before.node, station_id, revision)

    async def _evict(self, node: str, station_id: str, revision: int) -> None:
        request = orjson.dumps({"station": station_id, "revision": revision})
        try:
            await self.nc.request(
                self._subject("node", node, "evict"), request, timeout=EVICT_TIMEOUT_S
            )
        except (NoRespondersError, NatsTimeout):
            log.info("node %s did not let go of %s: taken over", node, station_id)

    def release(self, station_id: str) -> None:
        """The station's connection here ended: remove its entry unless a newer
        connection elsewhere wrote it since."""
        revision = self._claims.pop(station_id, None)
        self._unclaimed.discard(station_id)
        if revision is not None:
            self.presence.delete(station_id, revision)
            self._spawn(self._release(station_id, revision))

    async def _release(self, station_id: str, revision: int | None) -> None:
        kv = self._kv
        if kv is None:
            return
        if revision is None:
            entry = self.presence.entry(station_id)
            if entry is None:
                return
            revision = entry.revision
        # a newer entry (KeyWrongLastSequenceError), none, or the bus away: nothing to do
        with contextlib.suppress(Exception):
            await kv.delete(station_key(station_id), last=revision)

    def holder(self, station_id: str) -> Holder | None:
        """Which live node holds the station, as this node knows it."""
        return self.presence.holder(station_id)

    def versions(self) -> dict[str, OcppVersion]:
        return {sid: holder.version for sid, holder in self.presence.held()}

    def frames_elsewhere(self) -> int:
        return sum(frames for node, frames in self._frames.items() if self.presence.alive(node))

    # -- commands ---------------------------------------------------------------------

    async def call(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Call a station held by another node; as :meth:`Gateway.call` would there."""
        request = orjson.dumps(
            {"station": station_id, "action": action, "payload": payload, "timeout": timeout}
        )
        for attempt in range(3):
            holder = self.presence.holder(station_id)
            if (attempt or holder is None) and self._kv is not None:
                # This node's copy may lag the bucket by a moment: ask the bucket itself.
                holder = await self._fresh_holder(station_id)
            if holder is None or holder.node == self.node_id:
                raise StationOffline(station_id)
            try:
                reply = await self.nc.request(
                    self._subject("node", holder.node, "call"),
                    request,
                    timeout=timeout + CALL_MARGIN_S,
                )
            except NoRespondersError:
                continue  # the node is gone: look again
            except NatsTimeout:
                raise CallTimeout(action, timeout, "") from None
            answer: dict[str, Any] = orjson.loads(reply.data)
            if "result" in answer:
                result: dict[str, Any] = answer["result"]
                return result
            if "error" in answer:
                code, description, details = answer["error"]
                try:
                    error_code = ErrorCode(code)
                except ValueError:
                    error_code = ErrorCode.GenericError
                raise OcppError(error_code, description, details)
            if "timeout" in answer:
                raise CallTimeout(action, float(answer["timeout"]), "")
            if "moved" in answer:
                continue
            raise StationOffline(station_id)
        raise StationOffline(station_id)

    async def _fresh_holder(self, station_id: str) -> Holder | None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(station_key(station_id))
        except KeyNotFoundError:
            return None
        except Exception:
            return self.presence.holder(station_id)
        holder = decode_holder(entry.value, entry.revision or 0) if entry.value else None
        if holder is None or not self.presence.alive(holder.node):
            return None
        self.presence.put(station_id, holder)
        return holder

    async def _on_call(self, msg: Msg) -> None:
        if self._remote_calls >= REMOTE_CALLS:
            await msg.respond(orjson.dumps({"error": ["GenericError", "node busy", {}]}))
            return
        self._remote_calls += 1
        self._spawn(self._answer_call(msg))

    async def _answer_call(self, msg: Msg) -> None:
        local = self._local
        try:
            request = orjson.loads(msg.data)
            station_id = str(request["station"])
            if local is None or local.holds(station_id) is None:
                answer: dict[str, Any] = {"moved": True}
            else:
                try:
                    result = await local.call_local(
                        station_id, str(request["action"]), request["payload"], request["timeout"]
                    )
                    answer = {"result": result}
                except StationOffline:
                    answer = {"offline": True}
                except CallTimeout as exc:
                    answer = {"timeout": exc.timeout}
                except OcppError as exc:
                    answer = {"error": [exc.code.value, exc.description, exc.details]}
            await msg.respond(orjson.dumps(answer))
        except Exception:
            log.exception("a command from another node failed")
            with contextlib.suppress(Exception):
                await msg.respond(orjson.dumps({"error": ["InternalError", "node error", {}]}))
        finally:
            self._remote_calls -= 1

    async def _on_evict(self, msg: Msg) -> None:
        request = orjson.loads(msg.data)
        station_id = str(request["station"])
        revision = int(request.get("revision", 0))
        mine = self._claims.get(station_id)
        if mine is None or mine < revision:
            self._claims.pop(station_id, None)
            local = self._local
            if local is not None and local.holds(station_id) is not None:
                local.evict(station_id)  # unless the watch was quicker and it is gone
        await msg.respond(b"{}")

    async def _on_ping(self, msg: Msg) -> None:
        await msg.respond(b"{}")

    # -- liveness and the console --------------------------------------------------------

    async def _say_alive(self) -> None:
        local = self._local
        frames = local.frames_received if local is not None else 0
        message = {"node": self.node_id, "frames": frames, "watching": self._watchers > 0}
        await self.nc.publish(self._subject("cluster", "alive"), orjson.dumps(message))

    async def _alive_loop(self) -> None:
        while True:
            await asyncio.sleep(ALIVE_EVERY_S)
            try:
                await self._say_alive()
            except Exception:
                log.warning("could not tell the cluster this node is alive", exc_info=True)

    async def _on_alive(self, msg: Msg) -> None:
        message = orjson.loads(msg.data)
        node = str(message["node"])
        new = not self.presence.alive(node)
        self.presence.heard(node)
        if node != self.node_id:
            if new and not self.closed:
                self._spawn(self._say_alive())  # a node that joins learns of us at once
            self._frames[node] = int(message.get("frames", 0))
            if message.get("watching"):
                self._watching.add(node)
            else:
                self._watching.discard(node)

    async def _on_leaving(self, msg: Msg) -> None:
        node = str(orjson.loads(msg.data)["node"])
        if node != self.node_id:
            self.presence.gone(node)
            self._frames.pop(node, None)
            self._watching.discard(node)

    def watchers(self, count: int) -> None:
        """Pages open on this node's console: other nodes send changes while there are."""
        was, self._watchers = self._watchers, count
        if (was > 0) != (count > 0) and not self.closed:
            self._spawn(self._say_alive())

    def changed(self, station_id: str) -> None:
        """A station of this node changed: tell nodes with a page open, soon."""
        if not self._others_watching():
            return
        self._dirty[station_id] = None
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_S, self._flush)

    def _others_watching(self) -> bool:
        # on every answered message: with no page open anywhere, an empty set
        return any(self.presence.alive(node) for node in self._watching)

    def _flush(self) -> None:
        self._flush_scheduled = False
        ids, self._dirty = list(self._dirty), {}
        if self.closed:
            return
        for start in range(0, len(ids), CHANGED_CHUNK):
            message = {"node": self.node_id, "stations": ids[start : start + CHANGED_CHUNK]}
            self._spawn(self.nc.publish(self._subject("cluster", "changed"), orjson.dumps(message)))

    async def _on_changed(self, msg: Msg) -> None:
        message: Mapping[str, Any] = orjson.loads(msg.data)
        if message.get("node") == self.node_id or self._local is None or not self._watchers:
            return
        for station_id in message.get("stations", ()):
            self._local.changed_elsewhere(str(station_id))

    # -- admission ----------------------------------------------------------------------

    def admission_changed(self, station_id: str) -> None:
        """A station's registration changed here: other nodes forget their copy of it."""
        if self.closed:
            return
        message = orjson.dumps({"node": self.node_id, "station": station_id})
        self._spawn(self.nc.publish(self._subject("cluster", "admission"), message))

    async def _on_admission(self, msg: Msg) -> None:
        message = orjson.loads(msg.data)
        if message.get("node") != self.node_id and self._local is not None:
            self._local.forget_admission(str(message["station"]))

    # -- firmware ---------------------------------------------------------------------

    def firmware_targets(self, station_ids: list[str]) -> None:
        """A rollout made here targets these stations: the other nodes send it to those
        that boot there (committed already: a node reading now finds the targets)."""
        if self.closed:
            return
        for start in range(0, len(station_ids), CHANGED_CHUNK):
            chunk = station_ids[start : start + CHANGED_CHUNK]
            message = orjson.dumps({"node": self.node_id, "stations": chunk})
            self._spawn(self.nc.publish(self._subject("cluster", "firmware"), message))

    async def _on_firmware(self, msg: Msg) -> None:
        message = orjson.loads(msg.data)
        if message.get("node") != self.node_id and self._local is not None:
            self._local.firmware_pending([str(sid) for sid in message.get("stations", ())])

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def join(
    url: str, node_id: str, local: LocalStations, *, name: str = "plugstream"
) -> Cluster:
    """Connect to the bus at ``url`` and join the cluster as ``node_id``. NATS drops are
    ridden out (reconnecting for ever, this node's stations put back when it is back)."""
    import nats

    joined: list[Cluster] = []

    async def reconnected() -> None:
        log.info("the bus is back: putting this node's stations back in presence")
        if joined:
            await joined[0].reconnected()

    async def disconnected() -> None:
        if not (joined and joined[0].closed):
            log.warning("lost the bus at %s: reconnecting", url)

    async def error(exc: Exception) -> None:
        log.debug("bus: %s", exc)

    nc = await nats.connect(
        url,
        name=f"plugstream-{node_id}",
        connect_timeout=2,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        reconnected_cb=reconnected,
        disconnected_cb=disconnected,
        error_cb=error,
    )
    cluster = Cluster(nc, node_id, prefix=name, bucket=f"{name}_presence")
    joined.append(cluster)
    try:
        await cluster.start(local)
    except BaseException:
        await nc.close()
        raise
    return cluster
