"""The asyncio shell over real WebSockets on loopback: handlers declared with ``@on`` answer
the peer, errors raised in them reach the peer as the spec's CALLERROR, and our own CALLs
return the peer's answer or fail cleanly."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from plugstream.ocpp import (
    SUBPROTOCOLS,
    CallTimeout,
    ErrorCode,
    Handlers,
    OcppEndpoint,
    OcppError,
    OcppVersion,
    after,
    on,
    v16,
    v201,
)
from tests.support import WAIT, ready_tasks_run, until

pytestmark = pytest.mark.socket

NOW = "2026-11-25T10:00:00Z"


class Csms(Handlers):
    def __init__(self) -> None:
        self.booted: list[str] = []
        self.after_boot = asyncio.Event()

    @on(v16.Action.BootNotification)
    async def boot(self, payload: v16.BootNotificationRequest) -> v16.BootNotificationResponse:
        self.booted.append(payload["chargePointModel"])
        return {"status": "Accepted", "currentTime": NOW, "interval": 300}

    @after(v16.Action.BootNotification)
    def boot_done(self, payload: v16.BootNotificationRequest) -> None:
        self.after_boot.set()

    @on("Heartbeat")
    def heartbeat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"currentTime": NOW}

    @on("Authorize")
    def authorize(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload["idTag"] == "RAISE":
            raise RuntimeError("database on fire")
        if payload["idTag"] == "SECURITY":
            raise OcppError(ErrorCode.SecurityError, "not before BootNotification")
        return {"idTagInfo": {"status": "Accepted"}}

    #: set by a test to hold StatusNotification's answer until it releases it
    status_release: asyncio.Event | None = None
    status_started = False

    @on("StatusNotification")
    async def slow_status(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.status_started = True
        if self.status_release is not None:  # in flight until the test says: the rest queue
            await self.status_release.wait()
        return {}


class Station(Handlers):
    @on(v201.Action.Reset)
    def reset(self, payload: v201.ResetRequest) -> v201.ResetResponse:
        return {"status": "Scheduled" if payload["type"] == "OnIdle" else "Accepted"}


@asynccontextmanager
async def csms_server(
    handlers: Handlers, endpoints: list[OcppEndpoint], *, call_timeout: float = WAIT
) -> AsyncIterator[int]:
    """A CSMS on loopback; its endpoints' calls time out after ``call_timeout``."""

    async def handle(ws: ServerConnection) -> None:
        version = OcppVersion.from_subprotocol(ws.subprotocol or "")
        endpoint = OcppEndpoint(ws, version, handlers, call_timeout=call_timeout)
        endpoints.append(endpoint)
        await endpoint.run()

    async with serve(handle, "127.0.0.1", 0, subprotocols=list(SUBPROTOCOLS)) as server:  # type: ignore[arg-type]
        yield next(iter(server.sockets)).getsockname()[1]


@asynccontextmanager
async def station(
    port: int, version: OcppVersion, handlers: Handlers | None = None
) -> AsyncIterator[OcppEndpoint]:
    async with connect(f"ws://127.0.0.1:{port}/ocpp/CP1", subprotocols=[version.subprotocol]) as ws:  # type: ignore[list-item]
        endpoint = OcppEndpoint(ws, version, handlers, call_timeout=WAIT)
        task = asyncio.create_task(endpoint.run())
        try:
            yield endpoint
        finally:
            task.cancel()


async def slow_status_notification(ws: ClientConnection, csms: Csms) -> None:
    """A CALL (id "slow") held in its handler until ``csms.status_release`` is set."""
    status = {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}
    await ws.send(orjson.dumps([2, "slow", "StatusNotification", status]).decode())
    await until(lambda: csms.status_started, "the StatusNotification in its handler")


async def raw(port: int, version: OcppVersion) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{port}/ocpp/RAW", subprotocols=[version.subprotocol])  # type: ignore[list-item]


async def test_handlers_answer_calls_and_after_hooks_run() -> None:
    csms = Csms()
    async with csms_server(csms, []) as port, station(port, OcppVersion.V16) as cp:
        answer = await cp.call(
            "BootNotification",
            {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 22"},
        )
        assert answer["status"] == "Accepted" and answer["interval"] == 300
        await asyncio.wait_for(csms.after_boot.wait(), WAIT)
        assert csms.booted == ["PlugStream 22"]


async def test_handler_exceptions_become_callerrors_and_the_connection_lives_on() -> None:
    async with csms_server(Csms(), []) as port, station(port, OcppVersion.V16) as cp:
        with pytest.raises(OcppError) as raised:
            await cp.call("Authorize", {"idTag": "RAISE"})
        assert raised.value.code is ErrorCode.InternalError
        with pytest.raises(OcppError) as raised:
            await cp.call("Authorize", {"idTag": "SECURITY"})
        assert raised.value.code is ErrorCode.SecurityError
        assert raised.value.description == "not before BootNotification"
        assert (await cp.call("Authorize", {"idTag": "OK"}))["idTagInfo"]["status"] == "Accepted"


async def test_action_without_handler_is_not_supported() -> None:
    async with csms_server(Csms(), []) as port, station(port, OcppVersion.V16) as cp:
        with pytest.raises(OcppError) as raised:
            await cp.call("DataTransfer", {"vendorId": "PlugStream"})
        assert raised.value.code is ErrorCode.NotSupported


async def test_csms_calls_the_station_and_gets_its_answer() -> None:
    endpoints: list[OcppEndpoint] = []
    async with (
        csms_server(Csms(), endpoints) as port,
        station(port, OcppVersion.V201, Station()) as cp,
    ):
        await cp.call("Heartbeat", {})
        answer = await endpoints[0].call("Reset", {"type": "OnIdle"})
        assert answer == {"status": "Scheduled"}


async def test_call_to_a_silent_peer_times_out() -> None:
    endpoints: list[OcppEndpoint] = []
    async with csms_server(Csms(), endpoints, call_timeout=0.5) as port:
        silent = await raw(port, OcppVersion.V201)
        try:
            await until(lambda: endpoints, "the CSMS's endpoint")
            with pytest.raises(CallTimeout):
                await endpoints[0].call("Reset", {"type": "Immediate"})
            # the session is free again: the next CALL goes out at once (and may wait for
            # its answer as long as a busy machine needs)
            endpoints[0].session.call_timeout = WAIT
            nxt = asyncio.create_task(endpoints[0].call("Reset", {"type": "Immediate"}))
            frame = orjson.loads(await asyncio.wait_for(silent.recv(), WAIT))  # the timed-out one
            frame = orjson.loads(await asyncio.wait_for(silent.recv(), WAIT))
            await silent.send(orjson.dumps([3, frame[1], {"status": "Accepted"}]).decode())
            assert await nxt == {"status": "Accepted"}
        finally:
            await silent.close()


async def test_calls_queue_behind_the_one_in_flight() -> None:
    csms = Csms()
    csms.status_release = asyncio.Event()
    async with csms_server(csms, []) as port, station(port, OcppVersion.V16) as cp:
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        calls = asyncio.gather(
            cp.call("StatusNotification", status),
            cp.call("Heartbeat", {}),
            cp.call("Heartbeat", {}),
        )
        await until(lambda: csms.status_started, "the StatusNotification in flight")
        csms.status_release.set()
        results = await calls
        assert results == [{}, {"currentTime": NOW}, {"currentTime": NOW}]


async def test_broken_frames_are_answered_and_others_keep_being_served() -> None:
    async with csms_server(Csms(), []) as port:
        ws = await raw(port, OcppVersion.V201)
        try:
            await ws.send("[2, 'single quotes'")
            assert orjson.loads(await ws.recv())[:3] == [4, "-1", "RpcFrameworkError"]
            await ws.send('[2, "a1", "Heartbeat", {"x": 1}]')
            assert orjson.loads(await ws.recv())[:3] == [4, "a1", "FormatViolation"]
            await ws.send('[2, "a2", "Heartbeat", {}]')
            assert orjson.loads(await ws.recv()) == [3, "a2", {"currentTime": NOW}]
        finally:
            await ws.close()


async def test_calls_waiting_when_the_connection_drops_fail() -> None:
    endpoints: list[OcppEndpoint] = []
    async with csms_server(Csms(), endpoints) as port:
        ws = await raw(port, OcppVersion.V16)
        await until(lambda: endpoints, "the CSMS's endpoint")
        pending = asyncio.create_task(endpoints[0].call("ClearCache", {}))
        assert orjson.loads(await ws.recv())[2] == "ClearCache"  # in flight, unanswered
        await ws.close()
        with pytest.raises(OcppError) as raised:
            await asyncio.wait_for(pending, WAIT)
        assert "connection closed" in raised.value.description


async def test_a_call_on_a_closed_connection_fails_as_an_ocpp_error() -> None:
    """A station's delivery loops tell "connection lost" from a refusal by OcppError: a
    CALL whose frame the closed WebSocket refuses must fail that way too, not with the
    transport's own exception (which would end the loop that made the call)."""
    endpoints: list[OcppEndpoint] = []
    async with (
        csms_server(Csms(), endpoints) as port,
        connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOLS[0]]) as ws,  # type: ignore[list-item]
    ):
        station = OcppEndpoint(ws, OcppVersion.V16, Station(), call_timeout=WAIT)
        await ws.close()
        with pytest.raises(OcppError) as failed:
            await station.call("Heartbeat", {})
        assert failed.value.code is ErrorCode.GenericError
        assert "Heartbeat not sent" in failed.value.description


# -- the peer's CALLs: one at a time, in order, bounded (issue 14) --------------------------

STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


class Counting(Handlers):
    """Counts the handlers running at once."""

    running = 0
    most = 0

    @on("Heartbeat")
    async def heartbeat(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.running += 1
        self.most = max(self.most, self.running)
        await ready_tasks_run()  # a handler that awaits: another would start here if allowed
        self.running -= 1
        return {"currentTime": NOW}


async def test_pipelined_calls_are_handled_one_at_a_time_and_answered_in_order() -> None:
    csms = Counting()
    async with csms_server(csms, []) as port:
        ws = await raw(port, OcppVersion.V16)
        try:
            for n in range(10):
                await ws.send(orjson.dumps([2, f"p{n}", "Heartbeat", {}]).decode())
            answers = [orjson.loads(await ws.recv()) for _ in range(10)]
            assert [a[:2] for a in answers] == [[3, f"p{n}"] for n in range(10)]
            assert csms.most == 1
        finally:
            await ws.close()


async def test_a_reused_message_id_is_refused_after_the_first_calls_answer() -> None:
    csms = Csms()
    csms.status_release = asyncio.Event()
    endpoints: list[OcppEndpoint] = []
    async with csms_server(csms, endpoints) as port:
        ws = await raw(port, OcppVersion.V16)
        try:
            await ws.send(orjson.dumps([2, "d1", "StatusNotification", STATUS]).decode())
            await until(lambda: csms.status_started, "the first d1 in its handler")
            await ws.send(orjson.dumps([2, "d1", "Heartbeat", {}]).decode())
            await ws.send(orjson.dumps([2, "d2", "Heartbeat", {}]).decode())
            session = endpoints[0].session
            await until(lambda: session.queued_calls == 1, "d2 waiting behind d1")
            csms.status_release.set()
            answers = [orjson.loads(await ws.recv()) for _ in range(3)]
            assert [a[:3] for a in answers] == [
                [3, "d1", {}],
                [4, "d1", "FormationViolation"],  # 1.6's spelling of RpcFrameworkError
                [3, "d2", {"currentTime": NOW}],
            ]
        finally:
            await ws.close()


async def test_our_calls_are_answered_while_a_received_call_is_slow() -> None:
    csms = Csms()
    csms.status_release = asyncio.Event()
    endpoints: list[OcppEndpoint] = []
    async with csms_server(csms, endpoints) as port:
        ws = await raw(port, OcppVersion.V201)
        try:
            await slow_status_notification(ws, csms)
            reset = asyncio.create_task(endpoints[0].call("Reset", {"type": "Immediate"}))
            frame = orjson.loads(await ws.recv())
            assert frame[2] == "Reset"
            await ws.send(orjson.dumps([3, frame[1], {"status": "Accepted"}]).decode())
            assert await asyncio.wait_for(reset, WAIT) == {"status": "Accepted"}
            assert not csms.status_release.is_set()  # still in its handler
            csms.status_release.set()
            assert orjson.loads(await ws.recv())[:2] == [3, "slow"]
        finally:
            await ws.close()


async def test_a_flooding_peer_gets_genericerror_beyond_the_queue_then_1008() -> None:
    csms = Csms()
    csms.status_release = asyncio.Event()
    endpoints: list[OcppEndpoint] = []
    async with csms_server(csms, endpoints) as port:
        ws = await raw(port, OcppVersion.V201)
        try:
            await slow_status_notification(ws, csms)
            session = endpoints[0].session
            flood = session.max_queued_calls + session.max_refusals + 1
            for n in range(flood):
                await ws.send(orjson.dumps([2, f"f{n}", "Heartbeat", {}]).decode())
            refusals = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    refusals.append(orjson.loads(await asyncio.wait_for(ws.recv(), WAIT)))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert "one CALL at a time" in closed.value.rcvd.reason
            first = session.max_queued_calls
            assert [r[:3] for r in refusals] == [
                [4, f"f{n}", "GenericError"] for n in range(first, flood)
            ]
            assert session.queued_calls == 0  # closed: nothing kept
        finally:
            csms.status_release.set()
            await ws.close()


class Streams(Csms):
    """A 2.1 CSMS whose SEND handler can be held."""

    def __init__(self) -> None:
        super().__init__()
        self.streamed: list[int] = []
        self.stream_release: asyncio.Event | None = None

    @on("NotifyPeriodicEventStream")
    async def stream(self, payload: dict[str, Any]) -> None:
        self.streamed.append(payload["id"])
        if self.stream_release is not None:
            await self.stream_release.wait()


def stream_frame(n: int) -> str:
    data = [{"t": 0.0, "v": "1"}]
    payload = {"id": n, "pending": 0, "basetime": NOW, "data": data}
    return orjson.dumps([6, f"s{n}", "NotifyPeriodicEventStream", payload]).decode()


async def test_sends_pass_a_slow_call_and_a_send_flood_is_bounded() -> None:
    csms = Streams()
    csms.status_release = asyncio.Event()
    endpoints: list[OcppEndpoint] = []
    async with csms_server(csms, endpoints) as port:
        ws = await raw(port, OcppVersion.V21)
        try:
            await slow_status_notification(ws, csms)
            await ws.send(stream_frame(0))
            await until(lambda: csms.streamed == [0], "the SEND handled beside the slow CALL")
            # SENDs held in their handler: 16 wait, the rest are dropped, nothing piles up
            csms.stream_release = asyncio.Event()
            for n in range(1, 101):
                await ws.send(stream_frame(n))
            await ws.send(orjson.dumps([2, "last", "Heartbeat", {}]).decode())
            await until(lambda: endpoints[0].session.queued_calls == 1, "the Heartbeat read")
            csms.stream_release.set()
            limit = endpoints[0].session.max_queued_calls
            await until(lambda: len(csms.streamed) == 2 + limit, "the SENDs that waited")
            # which ones were dropped depends on when the consumer took one: never out of order
            assert csms.streamed[:2] == [0, 1] and csms.streamed == sorted(csms.streamed)
            csms.status_release.set()
            answers = [orjson.loads(await ws.recv())[:2] for _ in range(2)]
            assert answers == [[3, "slow"], [3, "last"]]
        finally:
            await ws.close()


class SharedWrite(Handlers):
    """Heartbeats that await one future shared by every connection, the way a batched
    database write is shared."""

    def __init__(self) -> None:
        self.shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting = 0

    @on("Heartbeat")
    async def heartbeat(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.waiting += 1
        await self.shared
        return {"currentTime": NOW}


async def test_a_handler_whose_awaited_future_is_cancelled_still_answers_and_the_next_call_runs() -> (
    None
):
    """A future a handler awaits is cancelled under it (another connection's task shared
    it and was cancelled): the CALL is answered InternalError, not left owed, and the
    connection takes its next CALL (it once stopped taking any)."""
    csms = SharedWrite()
    async with csms_server(csms, []) as port:
        ws = await raw(port, OcppVersion.V16)
        try:
            await ws.send(orjson.dumps([2, "h1", "Heartbeat", {}]).decode())
            await until(lambda: csms.waiting == 1, "h1 in its handler")
            csms.shared.cancel()
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert answer[:3] == [4, "h1", "InternalError"]
            csms.shared = asyncio.get_running_loop().create_future()
            csms.shared.set_result(None)
            await ws.send(orjson.dumps([2, "h2", "Heartbeat", {}]).decode())
            assert orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))[:2] == [3, "h2"]
        finally:
            await ws.close()


class ClosingWhileSending:
    """A transport whose connection closes while a frame is being sent: the receiver
    sees the close first (as websockets' reader does), then the send fails."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.sending = asyncio.Event()

    async def recv(self) -> str:
        await self.closed.wait()
        raise ConnectionError("connection closed")

    async def send(self, text: str) -> None:
        self.sending.set()
        await self.closed.wait()
        raise ConnectionError("connection closed while sending")


async def test_a_call_whose_send_fails_as_the_connection_closes_leaves_no_unretrieved_future(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """run() fails the waiting call (ConnectionLost on its future) before the call's own
    send fails: the caller gets an OcppError, and the future's error is retrieved, so
    asyncio logs no "Future exception was never retrieved" (issue 17, finding 2)."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    transport = ClosingWhileSending()
    endpoint = OcppEndpoint(transport, OcppVersion.V201)
    runner = asyncio.create_task(endpoint.run())
    payload = {"type": "ResetOrReboot", "timestamp": NOW}
    call = asyncio.create_task(endpoint.call("SecurityEventNotification", payload))
    await asyncio.wait_for(transport.sending.wait(), WAIT)
    transport.closed.set()
    with pytest.raises(OcppError):
        await call
    await asyncio.wait_for(runner, WAIT)
    del call
    gc.collect()
    await ready_tasks_run(2)
    assert "never retrieved" not in caplog.text


class HandingOver:
    """A transport that offers each message to the endpoint as it arrives (as a station's
    connection does) before queueing it for ``recv()``."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.unread: asyncio.Queue[str | None] = asyncio.Queue()  # None: the connection ends
        self.take: Any = None

    def arrive(self, text: str) -> None:
        if self.take is None or not self.take(text):
            self.unread.put_nowait(text)

    async def recv(self) -> str:
        text = await self.unread.get()
        if text is None:
            raise ConnectionError("connection closed")
        return text

    async def send(self, text: str) -> None:
        self.sent.append(text)


async def test_an_answer_handed_over_as_it_arrives_resolves_its_call_and_others_wait_for_recv() -> (
    None
):
    """CALLRESULT and CALLERROR are taken at once (no trip through the read loop: a fleet
    gets ten thousand a minute); a CALL is left for recv() and answered as always; once
    the connection has ended nothing is taken."""
    transport = HandingOver()
    endpoint = OcppEndpoint(transport, OcppVersion.V201, Station())
    transport.take = endpoint.take_response
    runner = asyncio.create_task(endpoint.run())

    call = asyncio.create_task(endpoint.call("Heartbeat", {}))
    await until(lambda: len(transport.sent) == 1, "the Heartbeat sent")
    message_id = orjson.loads(transport.sent[0])[1]
    transport.arrive(f'[3, "{message_id}", {{"currentTime": "{NOW}"}}]')
    assert transport.unread.empty()  # taken, not queued for the read loop
    assert await asyncio.wait_for(call, WAIT) == {"currentTime": NOW}

    call = asyncio.create_task(endpoint.call("Heartbeat", {}))
    await until(lambda: len(transport.sent) == 2, "the second Heartbeat sent")
    message_id = orjson.loads(transport.sent[1])[1]
    transport.arrive(f'[4,"{message_id}","InternalError","out of order",{{}}]')
    with pytest.raises(OcppError) as failed:
        await asyncio.wait_for(call, WAIT)
    assert failed.value.code is ErrorCode.InternalError

    # a CALL of the peer goes the usual way: read by run(), answered
    transport.arrive('[2,"c1","Reset",{"type":"OnIdle"}]')
    await until(lambda: len(transport.sent) == 3, "the CALL answered")
    assert orjson.loads(transport.sent[2]) == [3, "c1", {"status": "Scheduled"}]

    transport.unread.put_nowait(None)
    await asyncio.wait_for(runner, WAIT)
    assert not endpoint.take_response('[3,"late",{}]')  # after run(): left unread


class SendingNow(HandingOver):
    """A HandingOver transport that can also send in the caller's step (``send_now``),
    unless told the connection is busy (then :meth:`send` is the way) or broken."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = False
        self.broken = False
        self.sent_now = 0

    def send_now(self, text: str) -> bool:
        if self.broken:
            raise ConnectionError("connection reset")
        if self.busy:
            return False
        self.sent.append(text)
        self.sent_now += 1
        return True


async def test_call_soon_sends_in_the_callers_step_and_its_future_resolves_as_call_would() -> None:
    """call_soon, for a timer's callback (a fleet's meter sample): the frame goes out
    before call_soon returns when the transport can send at once, else by a task; the
    answer, a CALLERROR, a refused frame and a connection that has ended each resolve
    the future as call() would return or raise."""
    transport = SendingNow()
    endpoint = OcppEndpoint(transport, OcppVersion.V16, Station())
    transport.take = endpoint.take_response
    runner = asyncio.create_task(endpoint.run())

    answer = endpoint.call_soon("Heartbeat", {})
    assert transport.sent_now == 1 and len(transport.sent) == 1  # sent in this step
    transport.arrive(f'[3,"{orjson.loads(transport.sent[0])[1]}",{{"currentTime":"{NOW}"}}]')
    assert await asyncio.wait_for(answer, WAIT) == {"currentTime": NOW}

    transport.busy = True  # the transport cannot take it now: a task sends it
    answer = endpoint.call_soon("Heartbeat", {})
    await until(lambda: len(transport.sent) == 2, "the Heartbeat sent by a task")
    assert transport.sent_now == 1
    transport.arrive(f'[4,"{orjson.loads(transport.sent[1])[1]}","InternalError","no",{{}}]')
    with pytest.raises(OcppError) as failed:
        await asyncio.wait_for(answer, WAIT)
    assert failed.value.code is ErrorCode.InternalError

    transport.busy, transport.broken = False, True
    with pytest.raises(OcppError, match="Heartbeat not sent"):
        await asyncio.wait_for(endpoint.call_soon("Heartbeat", {}), WAIT)

    transport.unread.put_nowait(None)
    await asyncio.wait_for(runner, WAIT)
    with pytest.raises(OcppError, match="connection closed"):
        await asyncio.wait_for(endpoint.call_soon("Heartbeat", {}), WAIT)
