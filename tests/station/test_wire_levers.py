"""What a station puts on the wire: the levers that keep a session under 80 KB and an idle
day under 100 KB, and the byte counting that shows it.

The CSMS here is a raw OCPP-J endpoint on 127.0.0.1 (:class:`RawCsms`) that records every
frame as text, so the tests see exactly what the station sent; byte counts are checked
against a TCP relay that counts what really crossed the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from typer.testing import CliRunner
from websockets.typing import Subprotocol

from plugstream.cli import app
from plugstream.net.accounting import ByteCounter
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.clock import ManualClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.support import WAIT, running, until, until_advancing

pytestmark = pytest.mark.socket

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a ManualClock's start


def utc_now() -> datetime:
    return datetime.now(UTC)


class RawCsms:
    """A minimal OCPP-J CSMS (1.6 or 2.0.1) that answers every CALL and records it raw."""

    def __init__(self, version: str = "1.6", *, interval: int = 300) -> None:
        self.version = version
        self.interval = interval
        self.boot_status = "Accepted"
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (message id, action, payload)
        self.texts: list[str] = []  # every frame the station sent
        self.connection_ids: list[list[str]] = []  # message ids, per connection
        self.extensions: list[str | None] = []  # negotiated, per connection
        self.port = 0
        self.ws: Any = None
        self.next_tx = 100
        self._server: Any = None
        self._answers: dict[str, asyncio.Future[Any]] = {}
        self._ids = 0

    @property
    def subprotocol(self) -> str:
        return "ocpp1.6" if self.version == "1.6" else "ocpp2.0.1"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        self._server = await websockets.serve(
            self._handler, "127.0.0.1", self.port, subprotocols=[Subprotocol(self.subprotocol)]
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            self.ws = None

    def actions(self, name: str) -> list[dict[str, Any]]:
        return [payload for _, action, payload in self.calls if action == name]

    def answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        now = utc_now().isoformat()
        accepted = {"status": "Accepted"}
        if action == "BootNotification":
            return {"currentTime": now, "interval": self.interval, "status": self.boot_status}
        if action == "Heartbeat":
            return {"currentTime": now}
        if action == "Authorize":
            return {"idTagInfo": accepted} if self.version == "1.6" else {"idTokenInfo": accepted}
        if action == "StartTransaction":
            self.next_tx += 1
            return {"transactionId": self.next_tx, "idTagInfo": accepted}
        if action == "StopTransaction":
            return {}
        if action == "TransactionEvent" and "idToken" in payload:
            return {"idTokenInfo": accepted}
        return {}

    async def _handler(self, ws: Any) -> None:
        self.ws = ws
        self.extensions.append(ws.response.headers.get("Sec-WebSocket-Extensions"))
        ids: list[str] = []
        self.connection_ids.append(ids)
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in ws:
                self.texts.append(text)
                message = json.loads(text)
                if message[0] == 2:
                    _, mid, action, payload = message
                    ids.append(mid)
                    self.calls.append((mid, action, payload))
                    await ws.send(json.dumps([3, mid, self.answer(action, payload)]))
                elif message[0] in (3, 4) and message[1] in self._answers:
                    self._answers.pop(message[1]).set_result(message)

    async def call(self, action: str, payload: dict[str, Any]) -> Any:
        """Send a CALL to the connected station; its CALLRESULT payload."""
        ws = await until(lambda: self.ws)
        self._ids += 1
        mid = f"csms-{self._ids}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answers[mid] = future
        await ws.send(json.dumps([2, mid, action, payload]))
        reply = await asyncio.wait_for(future, WAIT)
        assert reply[0] == 3, reply
        return reply[2]


class Relay:
    """A TCP relay on 127.0.0.1 that counts the bytes crossing it in each direction."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0  # station -> CSMS
        self.down = 0  # CSMS -> station
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


@pytest.fixture
async def csms16() -> AsyncIterator[RawCsms]:
    csms = RawCsms("1.6")
    await csms.start()
    try:
        yield csms
    finally:
        await csms.stop()


@pytest.fixture
async def csms201() -> AsyncIterator[RawCsms]:
    csms = RawCsms("2.0.1")
    await csms.start()
    try:
        yield csms
    finally:
        await csms.stop()


def station16(path: Path, cls: type[Station16] = Station16, **kwargs: Any) -> Station16:
    config = {"MeterValueSampleInterval": "1", **kwargs.pop("config", {})}
    return cls(
        "PS-W16",
        PLUGSTREAM_7,
        path,
        utc_now,
        rng=random.Random(3),
        config_defaults=config,
        call_timeout=5.0,
        backoff=ReconnectBackoff(0.1, 0.05, 2, random.Random(1)),
        tick_interval=0.05,
        **kwargs,
    )


def station201(path: Path, cls: type[Station201] = Station201, **kwargs: Any) -> Station201:
    dm = {"SampledDataCtrlr.TxUpdatedInterval": "1", **kwargs.pop("dm", {})}
    return cls(
        "PS-W201",
        PLUGSTREAM_7,
        path,
        utc_now,
        rng=random.Random(3),
        device_model_defaults=dm,
        call_timeout=5.0,
        backoff=ReconnectBackoff(0.1, 0.05, 2, random.Random(1)),
        tick_interval=0.05,
        **kwargs,
    )


def empty_fields(value: Any, path: str = "") -> list[str]:
    """Where ``value`` holds a null, an empty list or an empty object below the top."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None or item == {} or item == []:
                found.append(f"{path}.{key}")
            found += empty_fields(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += empty_fields(item, f"{path}[{i}]")
    return found


# -- BootNotification only when (re)booted --------------------------------------------


async def test_TC_B_reconnect_without_boot_16(tmp_path: Path, csms16: RawCsms) -> None:
    """A network loss is not a reboot: the station reconnects and goes on without a
    BootNotification; a Reset is one, so it boots again."""
    station = station16(tmp_path / "s")
    async with running(station, csms16.url):
        await until(lambda: station.online)
        await csms16.stop()
        await until(lambda: not station.online)
        await csms16.start()
        # online on the new connection: a BootNotification, had it been sent, was answered
        await until(lambda: len(csms16.connection_ids) == 2 and station.online)
        assert len(csms16.actions("BootNotification")) == 1
        assert await csms16.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}
        await until(lambda: len(csms16.actions("BootNotification")) == 2)
        assert len(csms16.connection_ids) == 3


async def test_TC_B_boot_again_until_accepted_201(tmp_path: Path, csms201: RawCsms) -> None:
    """While the last answer was Pending the station boots on every connection (B02)."""
    csms201.boot_status = "Pending"
    csms201.interval = 30
    station = station201(tmp_path / "s")
    async with running(station, csms201.url):
        await until(lambda: csms201.actions("BootNotification"))
        assert not station.online
        await csms201.stop()
        csms201.boot_status = "Accepted"
        await csms201.start()
        await until(lambda: station.online)
        assert len(csms201.actions("BootNotification")) == 2
        await csms201.stop()
        await until(lambda: not station.online)
        await csms201.start()
        await until(lambda: len(csms201.connection_ids) == 3 and station.online)
        assert len(csms201.actions("BootNotification")) == 2


# -- Heartbeat ---------------------------------------------------------------------------


async def test_TC_G_heartbeat_reset_by_other_messages_16(tmp_path: Path, csms16: RawCsms) -> None:
    """G02.FR.05: other messages reset the heartbeat timer; G02.FR.07: still one a day."""
    csms16.interval = 1
    clock = ManualClock(START)
    station = station16(tmp_path / "s", clock=clock)
    async with running(station, csms16.url, online=True):
        start = len(csms16.actions("Heartbeat"))

        async def busy() -> int:
            """0.2 s on, and a message: a Heartbeat sent before it was answered before it."""
            await clock.advance(0.2)
            await station.send_triggered("StatusNotification")
            return len(csms16.actions("Heartbeat"))

        for _ in range(10):  # a busy link: a message every 0.2 s, for 2 s
            assert await busy() == start
        clock.step(24 * 3600 + 1)  # a day of such traffic went by: the clock says so
        await until(busy, "a Heartbeat although the link is busy")
        assert len(csms16.actions("Heartbeat")) == start + 1
        # quiet link: heartbeats at the interval again
        await clock.advance(1)
        await until(lambda: len(csms16.actions("Heartbeat")) >= start + 2)


# -- message ids, empty fields, evse only once -----------------------------------------


async def test_short_unique_message_ids_and_no_empty_fields_201(
    tmp_path: Path, csms201: RawCsms
) -> None:
    clock = ManualClock(START)
    station = station201(tmp_path / "s", clock=clock)
    async with running(station, csms201.url, online=True):
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await station.swipe("TAG-1")
        for count in (2, 3):  # Started, then an Updated each TxUpdatedInterval
            await clock.advance(1)
            await until(lambda: len(csms201.actions("TransactionEvent")) >= count)  # noqa: B023
        await csms201.stop()
        await until(lambda: not station.online)
        await csms201.start()
        # past the reconnect back-off (0.1 s, doubling twice, + up to 0.05 s)
        await until_advancing(
            clock,
            lambda: len(csms201.connection_ids) == 2 and station.online,
            "back online",
            up_to=0.5,
        )
        station.unplug()
        await until(lambda: station.journal.counts().pending == 0)
    first, second = csms201.connection_ids[0], csms201.connection_ids[1]
    every = first + second
    assert all(len(mid) <= 8 for mid in every), every
    assert len(set(first)) == len(first) and len(set(second)) == len(second)
    assert not set(first) & set(second)  # ids are not reused across reconnects
    for _, action, payload in csms201.calls:
        assert not empty_fields(payload), (action, payload)
    events = csms201.actions("TransactionEvent")
    assert events[0]["eventType"] == "Started" and events[0]["evse"] == {"id": 1, "connectorId": 1}
    assert all("evse" not in e for e in events[1:])  # E01.FR.16: only in the first
    assert events[-1]["eventType"] == "Ended"
    assert "offline" not in events[0]  # false is the default: left out


async def test_no_empty_fields_16(tmp_path: Path, csms16: RawCsms) -> None:
    clock = ManualClock(START)
    station = station16(tmp_path / "s", clock=clock)
    async with running(station, csms16.url, online=True):
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await station.swipe("TAG-1")
        await clock.advance(1)  # MeterValueSampleInterval
        await until(lambda: csms16.actions("MeterValues"))
        station.unplug()
        await until(lambda: csms16.actions("StopTransaction"))
    for _, action, payload in csms16.calls:
        assert not empty_fields(payload), (action, payload)
    meter = csms16.actions("MeterValues")[0]["meterValue"][0]["sampledValue"][0]
    assert "context" not in meter and "unit" not in meter  # the defaults are left out


# -- permessage-deflate ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_permessage_deflate_negotiated(tmp_path: Path, version: str) -> None:
    csms = RawCsms(version)
    await csms.start()
    try:
        station = station16(tmp_path / "s") if version == "1.6" else station201(tmp_path / "s")
        async with running(station, csms.url):
            await until(lambda: station.online)
        assert csms.extensions and "permessage-deflate" in str(csms.extensions[0])
    finally:
        await csms.stop()


# -- byte counting -----------------------------------------------------------------------


async def test_traffic_counts_every_byte_and_the_cycle_16(tmp_path: Path, csms16: RawCsms) -> None:
    """station.traffic counts what crossed the socket (a relay counts it too) and
    attributes plug-in to unplug to one charge cycle; traffic.json is saved at its end."""
    relay = Relay(csms16.port)
    await relay.start()
    data_dir = tmp_path / "s"
    clock = ManualClock(START)
    station = station16(data_dir, clock=clock)
    try:
        async with running(station, f"ws://127.0.0.1:{relay.port}/ocpp", online=True):
            # the boot statuses on the wire: the idle traffic
            await until(lambda: len(csms16.actions("StatusNotification")) == 2)
            idle_tx, idle_rx = station.traffic.totals()
            assert idle_tx > 0 and idle_rx > 0
            station.plug_in(Ev(CITY_CAR, soc=30.0))
            assert await station.swipe("TAG-1")
            for count in (1, 2):  # a MeterValues each MeterValueSampleInterval
                await clock.advance(1)
                await until(lambda: len(csms16.actions("MeterValues")) >= count)  # noqa: B023
            station.unplug()
            await until(lambda: csms16.actions("StopTransaction"))
            await until(lambda: station.journal.counts().pending == 0)
            # equal once the last bytes crossed the relay (it counts as it forwards)
            await until(
                lambda: station.traffic.totals() == (relay.up, relay.down),
                "the station's count equal to the relay's",
            )
            cycles = station.traffic.cycles()
            assert len(cycles) == 1
            cycle = next(iter(cycles.values()))
            assert cycle.ended is not None and cycle.tx > 0 and cycle.rx > 0
            saved = ByteCounter.load(data_dir).cycles()
            assert [c.ended for c in saved.values()] == [cycle.ended]
            assert station.traffic.per_link().keys() == {"ethernet"}
    finally:
        await relay.stop()
    # `plugstream station stats` reads what the station saved
    result = CliRunner().invoke(app, ["station", "stats", "--data-dir", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["cycles"]


async def test_traffic_autosave_off_leaves_no_file(tmp_path: Path, csms201: RawCsms) -> None:
    """A fleet reads station.traffic itself: with autosave off nothing is written."""
    data_dir = tmp_path / "s"
    station = station201(data_dir, traffic_autosave=False)
    async with running(station, csms201.url, online=True):
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        station.unplug()
        # the boot's status, the plug-in's and the unplug's crossed the wire
        await until(lambda: len(csms201.actions("StatusNotification")) == 3)
        assert station.traffic.totals()[0] > 0
        assert len(station.traffic.cycles()) == 1
    assert not (data_dir / "traffic.json").exists()
