"""The learning keep-alive in a running station: pings after quiet, longer while they are
answered, back to the last interval that held when a NAT forgets the connection, learned
per link and kept across restarts, and a WebSocketPingInterval set by the CSMS wins.

The NAT is a TCP relay on 127.0.0.1 that reads the station's :class:`ManualClock`: a
connection quiet for longer than its timeout is forgotten (nothing crosses any more, as
behind a NAT whose mapping expired), so no fixed sleeps: the test advances the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugstream.station.clock import ManualClock
from plugstream.station.keepalive import KeepaliveLearner
from plugstream.station.runtime import STATE_FILE
from tests.station.test_wire_levers import START, RawCsms, station16, station201
from tests.support import running, until, until_advancing

pytestmark = pytest.mark.socket


class ClockedNat:
    """A relay that forgets a connection quiet for ``timeout`` s of ``clock`` time."""

    def __init__(self, target_port: int, clock: ManualClock, timeout: float | None) -> None:
        self.target_port = target_port
        self.clock = clock
        self.timeout = timeout
        self.port = 0
        self.forgotten = 0  # connections the NAT dropped
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
        last = [self.clock.elapsed()]  # clock time of the last packet either way
        dead = [False]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    now = self.clock.elapsed()
                    timeout = self.timeout
                    if not dead[0] and timeout is not None and now - last[0] >= timeout:
                        dead[0] = True
                        self.forgotten += 1
                    if dead[0]:
                        continue  # the mapping is gone: the packet goes nowhere
                    last[0] = now
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@contextlib.asynccontextmanager
async def nat(csms: RawCsms, clock: ManualClock, timeout: float | None) -> AsyncIterator[str]:
    relay = ClockedNat(csms.port, clock, timeout)
    await relay.start()
    try:
        yield f"ws://127.0.0.1:{relay.port}/ocpp"
    finally:
        await relay.stop()


@pytest.fixture
async def csms() -> AsyncIterator[RawCsms]:
    server = RawCsms("1.6", interval=86_400)  # no heartbeat in the way of the quiet
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def saved_keepalive(path: Path) -> dict[str, object]:
    data = json.loads((path / STATE_FILE).read_text())
    keepalive = data["keepalive"]
    assert isinstance(keepalive, dict)
    return keepalive


async def test_keepalive_lengthens_while_pongs_come_back_16(tmp_path: Path, csms: RawCsms) -> None:
    clock = ManualClock(START)
    station = station16(tmp_path / "s", clock=clock)
    async with nat(csms, clock, None) as url, running(station, url, online=True):
        learner = station.learner()
        await until_advancing(
            clock, lambda: learner.held == 1368, "the keep-alive at 1,368 s", up_to=2000
        )
        assert learner.trial == 1800  # the ceiling next (PlugStreamPingIntervalMax)
        assert station.ping_interval_now == 1800
    links = saved_keepalive(tmp_path / "s")["links"]
    assert isinstance(links, dict) and links["ethernet"]["held"] == 1368


async def test_keepalive_settles_below_a_nat_timeout_201(tmp_path: Path) -> None:
    """A NAT that forgets after 600 s of quiet: 608 s drops the connection, the station goes
    back to 405 s and settles between them; a restart starts from what was learned."""
    server = RawCsms("2.0.1", interval=86_400)
    await server.start()
    clock = ManualClock(START)
    try:
        station = station201(tmp_path / "s", clock=clock)
        station.pong_timeout = 0.3  # real seconds: the NAT swallows the ping at once
        async with nat(server, clock, 600) as url, running(station, url, online=True):
            learner = station.learner()
            await until_advancing(
                clock,
                lambda: learner.failed == 608 and learner.held == 557 and station.online,
                "settled below the NAT's 600 s",
                up_to=2000,
            )
            assert learner.trial == 557
        saved = saved_keepalive(tmp_path / "s")["links"]
        assert isinstance(saved, dict)
        again = KeepaliveLearner.from_json(saved["ethernet"], 180, 1800)
        assert again.trial == 557 and again.failed == 608
        restarted = station201(tmp_path / "s", clock=clock)
        try:
            assert restarted.learner().connected() == 557
        finally:
            restarted.close()
    finally:
        await server.stop()


async def test_keepalive_is_per_link_16(tmp_path: Path, csms: RawCsms) -> None:
    """What Ethernet learned is not LTE's: the carrier's NAT is not the site's."""
    clock = ManualClock(START)
    station = station16(tmp_path / "s", clock=clock)
    station.learner("ethernet").held_after(180)
    assert station.learner("ethernet").trial == 270
    assert station.learner("lte").connected() == 180
    station.close()


async def test_ping_interval_set_by_the_csms_wins_16(tmp_path: Path, csms: RawCsms) -> None:
    clock = ManualClock(START)
    station = station16(tmp_path / "s", clock=clock)
    async with nat(csms, clock, None) as url, running(station, url, online=True):
        assert station.ping_interval_now == 180
        answer = await csms.call(
            "ChangeConfiguration", {"key": "WebSocketPingInterval", "value": "60"}
        )
        assert answer == {"status": "Accepted"}
        await until(lambda: station.ping_interval_now == 60, "the CSMS's interval")
    assert saved_keepalive(tmp_path / "s")["csms_set"] is True
    restarted = station16(tmp_path / "s", clock=clock)
    try:
        assert restarted.ping_interval_now == 60  # learning stays off across restarts
    finally:
        restarted.close()


async def test_ping_interval_set_by_the_csms_wins_201(tmp_path: Path) -> None:
    server = RawCsms("2.0.1", interval=86_400)
    await server.start()
    clock = ManualClock(START)
    try:
        station = station201(tmp_path / "s", clock=clock)
        async with nat(server, clock, None) as url, running(station, url, online=True):
            answer = await server.call(
                "SetVariables",
                {
                    "setVariableData": [
                        {
                            "component": {"name": "OCPPCommCtrlr"},
                            "variable": {"name": "WebSocketPingInterval"},
                            "attributeValue": "90",
                        }
                    ]
                },
            )
            assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
            await until(lambda: station.ping_interval_now == 90, "the CSMS's interval")
    finally:
        await server.stop()
