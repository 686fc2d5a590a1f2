"""The thin asyncio shell around :class:`RpcSession`: one per connection, either side.

It knows no socket: it is handed a transport with ``send(text)`` and
``recv()`` (a ``websockets`` connection is one) and a handler object.

The peer's CALLs are handled one at a time, in order, by one consumer task per
connection (made while there are CALLs and dropped after); the session keeps the
ones that wait in its bounded inbox. Reading goes on meanwhile, so the answers
to our own CALLs and 2.1 SENDs are never held up behind a slow handler.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from plugstream.ocpp.errors import ConnectionLost, ErrorCode, OcppError
from plugstream.ocpp.routing import Handlers, dispatch, invoke
from plugstream.ocpp.session import (
    MAX_QUEUED_CALLS,
    MAX_REFUSALS,
    CallCompleted,
    CallFailed,
    CallReceived,
    CloseConnection,
    Event,
    ProtocolViolation,
    RpcSession,
    SendReceived,
    Transmit,
)
from plugstream.ocpp.version import OcppVersion

log = logging.getLogger("plugstream.ocpp")

# One copy of each set of supported actions, shared by the connections that have it: a
# server holds tens of thousands of endpoints, mostly of a handful of handler classes.
_ACTION_SETS: dict[frozenset[str], frozenset[str]] = {}
_ACTION_SETS_MAX = 256


def _shared(actions: frozenset[str]) -> frozenset[str]:
    found = _ACTION_SETS.get(actions)
    if found is not None:
        return found
    if len(_ACTION_SETS) < _ACTION_SETS_MAX:
        _ACTION_SETS[actions] = actions
    return actions


class Transport(Protocol):
    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...


# The start of a CALLRESULT or CALLERROR: what :meth:`OcppEndpoint.take_response` takes.
_RESPONSE = re.compile(r"\s*\[\s*[34]\s*,")

# A burst already read by the transport is served without a pause; this many frames in a
# row, and the loop lets the other connections have their turn.
_FRAMES_PER_TURN = 64


class OcppEndpoint:
    """Runs an OCPP-J connection: answers the peer's CALLs, lets us ``call`` the peer."""

    def __init__(
        self,
        transport: Transport,
        version: OcppVersion,
        handlers: Handlers | None = None,
        *,
        call_timeout: float = 30.0,
        lenient: bool = False,
        validate_outgoing: bool = True,
        observer: Callable[[Event], None] | None = None,
        max_queued_calls: int = MAX_QUEUED_CALLS,
        max_refusals: int = MAX_REFUSALS,
    ) -> None:
        """``max_queued_calls``: the peer's CALLs that may wait behind the one handled;
        ``max_refusals``: CALLs refused beyond those, in a row, before the connection is
        closed with 1008 (see :class:`RpcSession`); ``validate_outgoing``: check what we
        send against its schema first (a fleet leaves that to its CSMS)."""
        self.transport = transport
        self.version = version
        self.handlers = handlers if handlers is not None else Handlers()
        self._loop = asyncio.get_running_loop()
        self.session = RpcSession(
            version,
            clock=self._loop.time,
            call_timeout=call_timeout,
            supported_actions=_shared(frozenset(self.handlers.supported_actions())),
            lenient=lenient,
            validate_outgoing=validate_outgoing,
            max_queued_calls=max_queued_calls,
            max_refusals=max_refusals,
        )
        self.observer = observer
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # Made while in use and dropped after, as most connections are idle most of the time.
        self._tasks: set[asyncio.Task[None]] | None = None
        self._calls: deque[CallReceived] | None = None  # handed on, for the consumer
        self._consumer: asyncio.Task[None] | None = None
        self._closing: CloseConnection | None = None
        self._sends: deque[SendReceived] | None = None  # 2.1 SENDs for their own consumer
        self._send_consumer: asyncio.Task[None] | None = None
        self._max_sends = max_queued_calls
        self._sends_dropped = 0  # since the SEND queue last drained
        self._timer: asyncio.TimerHandle | None = None
        self._send_lock: asyncio.Lock | None = None
        self._senders = 0  # holders and waiters of _send_lock
        self._ended = False  # run() has returned

    async def call(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload.

        Raises OcppError: the peer's CALLERROR, :class:`CallTimeout` when no answer came
        within ``timeout`` (s; the session's ``call_timeout`` when None), and
        :class:`ConnectionLost` when the connection went away first.
        """
        message_id, events = self.session.call(action, payload, timeout=timeout)
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiters[message_id] = future
        try:
            await self._process(events)
        except (asyncio.CancelledError, OcppError):
            self._forget(message_id, future)
            raise
        except Exception as exc:
            # the transport refused the frame (the connection is closing): the call was
            # not made, which callers already handle as "connection lost"
            self._forget(message_id, future)
            raise ConnectionLost(action, str(exc), message_id, sent=False) from exc
        return await future

    def call_soon(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """:meth:`call` for a caller that cannot await (a timer's callback): the CALL is
        made in this step and the future resolves as :meth:`call` returns or raises.

        A transport with ``send_now(text) -> bool`` (a station's connection) sends the
        frame here when no other send is under way: a fleet's ten thousand samples a
        minute go out without a task each. Otherwise a task sends it, after the sends
        before it. Raises OcppError at once when the request itself is invalid."""
        message_id, events = self.session.call(action, payload, timeout=timeout)
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        if self._ended:  # nobody reads answers any more, nor fails calls at the end
            future.set_exception(ConnectionLost(action, "connection closed", message_id))
            return future
        self._waiters[message_id] = future
        if not events:  # queued behind the CALL in flight: sent when that one is answered
            return future
        send_now: Callable[[str], bool] | None = getattr(self.transport, "send_now", None)
        (transmit,) = events
        if send_now is not None and not self._senders and type(transmit) is Transmit:
            try:
                sent = send_now(transmit.text)
            except Exception as exc:  # as call(): the transport refused the frame
                self._refused(action, message_id, future, exc)
                return future
            if sent:
                if self.observer is not None:
                    self.observer(transmit)
                self._arm_timer()
                return future
        self._spawn(self._send_soon(action, message_id, future, events))
        return future

    async def _send_soon(
        self,
        action: str,
        message_id: str,
        future: asyncio.Future[dict[str, Any]],
        events: list[Event],
    ) -> None:
        try:
            await self._process(events)
        except Exception as exc:
            self._refused(action, message_id, future, exc)

    def _refused(
        self,
        action: str,
        message_id: str,
        future: asyncio.Future[dict[str, Any]],
        exc: Exception,
    ) -> None:
        """The transport refused the frame of :meth:`call_soon` (the connection is
        closing): the call was not made, which callers handle as a lost connection."""
        self._waiters.pop(message_id, None)
        if not future.done():
            future.set_exception(ConnectionLost(action, str(exc), message_id, sent=False))

    def _forget(self, message_id: str, future: asyncio.Future[dict[str, Any]]) -> None:
        """The caller of ``message_id`` gives up before awaiting ``future``: drop it, and
        retrieve the error the connection's end may have set on it meanwhile (a Reset
        closes the connection while the frame is being sent: :meth:`run` fails every
        waiting call, this one too), else asyncio logs "Future exception was never
        retrieved" when the future is collected."""
        self._waiters.pop(message_id, None)
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # retrieved: the caller raises its own error instead

    def take_response(self, text: str) -> bool:
        """Handle ``text`` now if it is a CALLRESULT or CALLERROR; False, untouched, if
        it is anything else (it then comes through ``recv()`` as usual).

        For a transport that can hand over each message as it arrives (a station's
        connection): an answer resolves its caller in the same step, with no wake-up of
        :meth:`run`'s read loop -- a fleet receives ten thousand answers a minute. What
        else an answer causes (the next queued CALL, a violation, a close) is processed
        in a task, in order, as :meth:`run` would."""
        if self._closing is not None or self._ended or _RESPONSE.match(text) is None:
            return False  # after run() nobody reads: left unread, as before
        rest: list[Event] = []
        for event in self.session.receive(text):
            if type(event) is CallCompleted or type(event) is CallFailed:
                if self.observer is not None:
                    self.observer(event)
                self._deliver(event)
            else:
                rest.append(event)
        if rest:
            self._spawn(self._process_taken(rest))
        else:
            self._arm_timer()
        return True

    async def _process_taken(self, events: list[Event]) -> None:
        await self._process(events)
        if self._closing is not None:  # run() waits in recv(): the close ends it
            await self._close(self._closing)

    async def send(self, action: str, payload: dict[str, Any]) -> None:
        """2.1 SEND: fire and forget."""
        await self._process(self.session.send(action, payload))

    async def run(self) -> None:
        """Serve until the transport closes; then fail every call still waiting."""
        turn = 0
        try:
            while self._closing is None:
                try:
                    text = await self.transport.recv()
                except (asyncio.CancelledError, GeneratorExit):
                    raise
                except Exception:
                    return
                await self._process(self.session.receive(text))
                del text  # not held (nor what it decoded to) while the connection idles
                turn += 1
                if turn == _FRAMES_PER_TURN:
                    turn = 0
                    await asyncio.sleep(0)
            await self._close(self._closing)
        finally:
            self._ended = True
            self._stop_timer()
            for event in self.session.cancel_all():
                self._deliver(event)
            if self._calls is not None:
                self._calls.clear()
            if self._consumer is not None:
                self._consumer.cancel()
            if self._send_consumer is not None:
                self._send_consumer.cancel()
            for task in list(self._tasks or ()):
                task.cancel()

    async def _close(self, event: CloseConnection) -> None:
        log.warning("closing an OCPP connection: %s", event.reason)
        close: Callable[[int, str], Any] | None = getattr(self.transport, "close", None)
        if close is not None:
            try:
                await close(event.code, event.reason)
            except Exception:  # gone already
                log.debug("close failed", exc_info=True)

    async def _process(self, events: list[Event]) -> None:
        for event in events:
            if self.observer is not None:
                self.observer(event)
            if type(event) is Transmit:
                await self._transmit(event.text)
            elif type(event) is CallReceived:
                self._hand_on(event)
            elif type(event) is SendReceived:
                self._hand_on_send(event)
            elif type(event) is ProtocolViolation:
                if event.error.code is ErrorCode.NotSupported:
                    # a known action this side does not implement: the peer may ask (a
                    # CSMS probing a feature), and NotSupported is the answer, no violation
                    log.info("answered %s", event.error)
                else:
                    log.warning("OCPP protocol violation: %s", event.error)
            elif type(event) is CloseConnection:
                self._closing = event
            else:
                self._deliver(event)
        self._arm_timer()

    async def _transmit(self, text: str) -> None:
        """Send ``text``, after the sends that started before it, one at a time."""
        lock = self._send_lock
        if lock is None:
            lock = self._send_lock = asyncio.Lock()
        self._senders += 1
        try:
            async with lock:
                await self.transport.send(text)
        finally:
            self._senders -= 1
            if not self._senders:  # nobody holds or awaits this lock: the next send makes one
                self._send_lock = None

    def _deliver(self, event: Event) -> None:
        if isinstance(event, CallCompleted | CallFailed):
            future = self._waiters.pop(event.message_id, None)
            if future is not None and not future.done():
                if isinstance(event, CallCompleted):
                    future.set_result(event.payload)
                else:
                    future.set_exception(event.error)

    def _hand_on(self, event: CallReceived) -> None:
        """Queue a CALL for the consumer; start it if none runs (the session hands on one
        at a time, so this holds at most one)."""
        if self._calls is None:
            self._calls = deque()
        self._calls.append(event)
        if self._consumer is None:
            self._consumer = self._loop.create_task(self._serve_calls())

    async def _serve_calls(self) -> None:
        """The one consumer of the peer's CALLs: each answered before the next is taken."""
        try:
            calls = self._calls
            while calls:
                await self._answer(calls.popleft())
        finally:
            self._consumer = None
            self._calls = None

    def _hand_on_send(self, event: SendReceived) -> None:
        """Queue a 2.1 SEND for its consumer, beside the CALLs: nothing waits for it, so a
        full queue drops it (4.2.3 lets us drop what we cannot take)."""
        if self._sends is None:
            self._sends = deque()
        if len(self._sends) >= self._max_sends:
            self._sends_dropped += 1
            if self._sends_dropped == 1:  # once per flood, not once per SEND
                log.warning("dropping SENDs: %d are waiting already", self._max_sends)
            return
        self._sends.append(event)
        if self._send_consumer is None:
            self._send_consumer = self._loop.create_task(self._serve_sends())

    async def _serve_sends(self) -> None:
        try:
            sends = self._sends
            while sends:
                await self._consume(sends.popleft())
        finally:
            self._send_consumer = None
            self._sends = None
            self._sends_dropped = 0

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        tasks = self._tasks
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                self._tasks = None

    async def _answer(self, event: CallReceived) -> None:
        try:
            try:
                payload = await dispatch(self.handlers, event.action, event.payload)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the connection is closing
                # something the handler awaited was cancelled under it: an answer is still
                # owed, or the session waits for it and takes no further CALL
                raise OcppError(
                    ErrorCode.InternalError, f"handling {event.action} was cancelled"
                ) from None
        except OcppError as exc:
            if exc.code is ErrorCode.InternalError:
                log.exception("handler of %s failed", event.action, exc_info=exc.__cause__ or exc)
            await self._process(self.session.error(event.message_id, exc))
            return
        await self._process(self.session.result(event.message_id, payload))
        hook = self.handlers.after_handler(event.action)
        if hook is not None:
            # its own task: a hook may call the peer and wait, the next CALL need not
            self._spawn(self._after(hook, event))

    async def _after(self, hook: Any, event: CallReceived) -> None:
        try:
            await invoke(hook, event.payload)
        except Exception:
            log.exception("after-handler of %s failed", event.action)

    async def _consume(self, event: SendReceived) -> None:
        handler = self.handlers.handler(event.action)
        if handler is not None:
            try:
                await invoke(handler, event.payload)
            except Exception:
                log.exception("handler of SEND %s failed", event.action)

    def _arm_timer(self) -> None:
        deadline = self.session.next_deadline()
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._spawn(self._process(self.session.tick()))
