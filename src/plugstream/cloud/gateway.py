"""The OCPP gateway of PlugStream Cloud: one WebSocket per station, on the ASGI server.

For each station that connects to ``/ocpp/{stationId}`` it

- checks the station id (OCPP-J 2.0.1 part 4 §3.1.1: an identifierString of at
  most 48 characters without ':'), refusing others with HTTP 400;
- refuses unknown stations with HTTP 404, unless auto-registration is on;
- checks HTTP Basic credentials (security profiles 1 and 2): the username is the
  station id, the password is checked by the store; HTTP 401 otherwise;
- negotiates the subprotocol, newest first; a station that offers none we speak
  gets the handshake without ``Sec-WebSocket-Protocol`` and is closed at once
  with 1002 (OCPP-J 1.6 §3.1.2, 2.0.1 part 4 §3.1.2);
- runs an :class:`OcppEndpoint` over the socket with the version's handlers, and
  logs every frame in and out without holding up the connection.

The newest connection of a station wins: the old one is closed with 1000
"replaced by a new connection", and its teardown leaves the new one alone.
Keep-alive is the server's WebSocket ping/pong (uvicorn drops a station whose
pongs stop for ``ping_timeout``); a late heartbeat never drops anyone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from plugstream.cloud.config import CloudConfig
from plugstream.ocpp import (
    CallReceived,
    ErrorCode,
    Event,
    Handlers,
    OcppEndpoint,
    OcppError,
    OcppVersion,
    ProtocolViolation,
)

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store
    from plugstream.cloud.storage.records import StationRecord

log = logging.getLogger("plugstream.cloud.gateway")

HandlersFactory = Callable[[str, "Store", CloudConfig], Handlers]

REALM = "PlugStream"
REPLACED = "replaced by a new connection"
MAX_STATION_ID = 48
# identifierString (2.0.1 part 2 §2.1.3) without ':' (part 4 §3.1.1).
_STATION_ID = re.compile(r"[A-Za-z0-9*\-_=+|@.]{1,48}")
# Frames waiting to be written to the message log; beyond this they are dropped and counted.
LOG_QUEUE_SIZE = 10_000
LOG_BATCH = 500
SEEN_EVERY_S = 60.0  # last_seen is written at most this often per connection


class StationOffline(Exception):
    """The station has no live connection to this gateway."""

    def __init__(self, station_id: str) -> None:
        super().__init__(f"station {station_id!r} is not connected")
        self.station_id = station_id


def valid_station_id(station_id: str) -> bool:
    return _STATION_ID.fullmatch(station_id) is not None


def default_handlers() -> dict[OcppVersion, HandlersFactory]:
    """The CSMS handlers per version; 2.1 reuses the 2.0.1 ones."""
    from plugstream.cloud.handlers16 import Csms16
    from plugstream.cloud.handlers201 import Csms21, Csms201

    return {
        OcppVersion.V16: Csms16,
        OcppVersion.V201: Csms201,
        OcppVersion.V21: Csms21,
    }


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` of an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _now() -> datetime:
    return datetime.now(UTC)


class WebSocketTransport:
    """A Starlette WebSocket as a :class:`plugstream.ocpp.Transport`.

    ``recv`` raises :class:`WebSocketDisconnect` once the socket has ended; a
    binary message is handed on as text when it is UTF-8 (else as bytes), so the
    core answers it. ``send`` on a socket that has gone drops the text: the
    reading side notices the end and fails what is still waiting.
    """

    def __init__(self, websocket: WebSocket, on_frame: Callable[[str, str], None]) -> None:
        self.websocket = websocket
        self.on_frame = on_frame
        self.closed = False
        self.close_code: int | None = None

    async def send(self, message: str) -> None:
        if self.closed:
            return
        self.on_frame("out", message)
        try:
            await self.websocket.send_text(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True

    async def recv(self) -> str | bytes:
        if self.closed:
            raise WebSocketDisconnect(self.close_code or 1006)
        try:
            message = await self.websocket.receive()
        except RuntimeError as exc:  # receive after the disconnect
            self.closed = True
            raise WebSocketDisconnect(1006) from exc
        if message["type"] == "websocket.disconnect":
            self.closed = True
            self.close_code = int(message.get("code", 1005))
            raise WebSocketDisconnect(self.close_code, message.get("reason"))
        text: str | None = message.get("text")
        if text is None:
            data: bytes = message.get("bytes") or b""
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self.on_frame("in", data.decode("utf-8", "replace"))
                return data
        self.on_frame("in", text)
        return text

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        if self.websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(code, reason)


@dataclass(eq=False)
class Connection:
    """One live station connection."""

    station_id: str
    version: OcppVersion
    transport: WebSocketTransport
    endpoint: OcppEndpoint
    connected_at: datetime
    call_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_seen_write: float = 0.0


class Gateway:
    """The live OCPP connections of this node, and the way to call a station."""

    def __init__(
        self,
        store: Store,
        config: CloudConfig,
        *,
        handlers: Mapping[OcppVersion, HandlersFactory] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self._handlers: Mapping[OcppVersion, HandlersFactory] | None = handlers
        self._live: dict[str, Connection] = {}
        self.failed_logins: collections.Counter[str] = collections.Counter()
        # Frames that broke the protocol or the schemas, per station since start:
        # refused for strict stations, accepted (and still counted) for lenient ones.
        self.violations: collections.Counter[str] = collections.Counter()
        self.frames_dropped = 0  # message-log entries dropped because the log fell behind
        self._log_queue: asyncio.Queue[tuple[str, str, str, datetime]] = asyncio.Queue(
            LOG_QUEUE_SIZE
        )
        self._log_writer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- what the REST API uses ----------------------------------------------------

    def is_connected(self, station_id: str) -> bool:
        return station_id in self._live

    def version_of(self, station_id: str) -> OcppVersion | None:
        conn = self._live.get(station_id)
        return conn.version if conn is not None else None

    def connected_ids(self) -> list[str]:
        return sorted(self._live)

    async def call(
        self,
        station_id: str,
        action: str,
        payload: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Call the station; its CALLRESULT payload, or OcppError / CallTimeout / StationOffline."""
        conn = self._live.get(station_id)
        if conn is None:
            raise StationOffline(station_id)
        # One CALL in flight per direction (OCPP-J §4.1.1): the lock keeps our calls in line,
        # so that each one's timeout starts when it is sent.
        async with conn.call_lock:
            if conn.transport.closed or self._live.get(station_id) is not conn:
                raise StationOffline(station_id)
            conn.endpoint.session.call_timeout = (
                timeout if timeout is not None else self.config.call_timeout
            )
            try:
                return await conn.endpoint.call(action, payload)
            except OcppError as exc:
                if (
                    conn.transport.closed
                    and exc.code is ErrorCode.GenericError
                    and "not answered" in exc.description
                ):
                    raise StationOffline(station_id) from exc
                raise

    # -- versions --------------------------------------------------------------------

    @property
    def handlers(self) -> Mapping[OcppVersion, HandlersFactory]:
        if self._handlers is None:
            self._handlers = default_handlers()
        return self._handlers

    def subprotocols(self) -> list[str]:
        """The subprotocols we speak, newest first."""
        order = sorted(self.handlers, key=lambda v: [int(p) for p in v.value.split(".")])
        return [v.subprotocol for v in reversed(order)]

    def choose_version(self, offered: Iterable[str]) -> OcppVersion | None:
        offered_set = set(offered)
        for token in self.subprotocols():
            if token in offered_set:
                return OcppVersion.from_subprotocol(token)
        return None

    # -- one station's connection -----------------------------------------------------

    async def serve(self, websocket: WebSocket, station_id: str) -> None:
        """Run one station's WebSocket, from the handshake to its end."""
        if not valid_station_id(station_id):
            await self._deny(websocket, 400, "invalid station id")
            return
        station = await self._admit(websocket, station_id)
        if station is None:
            return
        version = self.choose_version(websocket.scope.get("subprotocols", []))
        if version is None:
            # OCPP-J 1.6 §3.1.2, 2.0.1 part 4 §3.1.2: complete the handshake without a
            # Sec-WebSocket-Protocol header, then close at once.
            await websocket.accept()
            offered = ", ".join(self.subprotocols())
            await websocket.close(1002, f"no supported OCPP subprotocol; offer one of {offered}")
            log.warning("station %s offered no OCPP version we speak", station_id)
            return
        try:
            handlers = self.handlers[version](station_id, self.store, self.config)
        except Exception:
            log.exception("could not set up the %s handlers of %s", version.value, station_id)
            await websocket.accept(subprotocol=version.subprotocol)
            await websocket.close(1011, "internal error")
            return
        await websocket.accept(subprotocol=version.subprotocol)
        transport = WebSocketTransport(
            websocket, lambda direction, text: self._log_frame(station_id, direction, text)
        )
        endpoint = OcppEndpoint(
            transport,
            version,
            handlers,
            call_timeout=self.config.call_timeout,
            lenient=station.lenient,
            observer=self._observer(station_id),
        )
        conn = Connection(station_id, version, transport, endpoint, _now())
        old = self._live.get(station_id)
        self._live[station_id] = conn
        if old is not None:
            log.info("station %s reconnected: closing its old connection", station_id)
            await old.transport.close(1000, REPLACED)
        self._touch(conn)
        try:
            await endpoint.run()
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("connection of %s failed", station_id)
        finally:
            if self._live.get(station_id) is conn:
                del self._live[station_id]
            await transport.close(1011 if not self._closing else 1001, "")

    def _observer(self, station_id: str) -> Callable[[Event], None]:
        """Counts and logs what a station got wrong; a lenient station's accepted slips too."""

        def observe(event: Event) -> None:
            if type(event) is ProtocolViolation:
                self.violations[station_id] += 1
            elif type(event) is CallReceived and event.violation is not None:
                self.violations[station_id] += 1
                log.warning(
                    "station %s (lenient): accepted %s despite %s",
                    station_id,
                    event.action,
                    event.violation,
                )

        return observe

    async def _admit(self, websocket: WebSocket, station_id: str) -> StationRecord | None:
        """The station's record if it may connect; else the refusal has been sent."""
        creds = basic_credentials(websocket.headers.get("authorization"))
        station = await self.store.get_station(station_id)
        if station is None:
            if not self.config.auto_register:
                await self._deny(websocket, 404, "unknown station")
                return None
            station = await self._register(websocket, station_id, creds)
            if station is None:
                await self._deny(websocket, 500, "could not register the station")
            return station
        if station.has_password:
            ok = (
                creds is not None
                and creds[0] == station_id
                and await self.store.check_password(station_id, creds[1])
            )
        else:
            # No password: only security profile 0 (no authentication) gets in.
            ok = station.security_profile == 0
        if not ok:
            self.failed_logins[station_id] += 1
            log.warning(
                "station %s: failed login (%s)",
                station_id,
                "no credentials" if creds is None else "wrong credentials",
            )
            await self._deny(
                websocket, 401, "unauthorized", {"WWW-Authenticate": f'Basic realm="{REALM}"'}
            )
            return None
        return station

    async def _register(
        self, websocket: WebSocket, station_id: str, creds: tuple[str, str] | None
    ) -> StationRecord | None:
        """Auto-registration: trust on first use. A station that brings Basic credentials
        (for itself) keeps that password; one without is registered with profile 0."""
        tls = websocket.scope.get("scheme") == "wss"
        if creds is not None and creds[0] == station_id and creds[1]:
            password: str | None = creds[1]
            profile = 2 if tls else 1
        else:
            password, profile = None, 0
        try:
            await self.store.register_station(
                station_id, password=password, security_profile=profile
            )
            log.info("station %s auto-registered (security profile %d)", station_id, profile)
        except Exception:
            log.warning("auto-registration of %s failed", station_id, exc_info=True)
        return await self.store.get_station(station_id)

    @staticmethod
    async def _deny(
        websocket: WebSocket, status: int, text: str, headers: dict[str, str] | None = None
    ) -> None:
        try:
            await websocket.send_denial_response(
                Response(text, status_code=status, headers=headers, media_type="text/plain")
            )
        except RuntimeError:  # a server without the denial-response extension: 403
            await websocket.close()

    # -- side work: message log, last seen ---------------------------------------------

    def _log_frame(self, station_id: str, direction: str, text: str) -> None:
        if direction == "in":
            conn = self._live.get(station_id)
            if conn is not None:
                self._touch(conn)
        try:
            self._log_queue.put_nowait((station_id, direction, text, _now()))
        except asyncio.QueueFull:
            self.frames_dropped += 1
            if self.frames_dropped % 1000 == 1:
                log.warning("message log behind: %d frames dropped", self.frames_dropped)
            return
        if self._log_writer is None or self._log_writer.done():
            self._log_writer = asyncio.get_running_loop().create_task(self._write_log())

    async def _write_log(self) -> None:
        """Hand queued frames to the store in batches (its writer commits them together)."""
        while True:
            batch = [await self._log_queue.get()]
            while len(batch) < LOG_BATCH and not self._log_queue.empty():
                batch.append(self._log_queue.get_nowait())
            try:
                results = await asyncio.gather(
                    *(self.store.log_message(sid, d, text, at) for sid, d, text, at in batch),
                    return_exceptions=True,
                )
                failed = [r for r in results if isinstance(r, Exception)]
                if failed:
                    log.warning("could not log %d frames: %s", len(failed), failed[0])
            finally:
                for _ in batch:
                    self._log_queue.task_done()

    def _touch(self, conn: Connection) -> None:
        now = time.monotonic()
        if now - conn.last_seen_write < SEEN_EVERY_S:
            return
        conn.last_seen_write = now
        self._spawn(self._record_seen(conn.station_id))

    async def _record_seen(self, station_id: str) -> None:
        try:
            await self.store.record_seen(station_id, at=_now())
        except Exception:
            log.warning("could not record that %s was seen", station_id, exc_info=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, flush_timeout: float = 5.0) -> None:
        """Close every connection and write out the message log (before the store closes)."""
        self._closing = True
        for conn in list(self._live.values()):
            await conn.transport.close(1001, "server shutting down")
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=flush_timeout)
        if self._log_writer is not None and not self._log_writer.done():
            try:
                await asyncio.wait_for(self._log_queue.join(), flush_timeout)
            except TimeoutError:
                log.warning("message log: %d frames not written", self._log_queue.qsize())
            self._log_writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._log_writer
