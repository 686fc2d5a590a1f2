"""Clock-aligned meter values in and outside transactions (1.6 ClockAlignedDataInterval,
2.0.1 J01 / AlignedDataCtrlr), against a bare JSON CSMS on 127.0.0.1.

The stations run on a :class:`ManualClock` that starts just before noon; a test moves it
from grid point to grid point and waits, at each, for what the station sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.clock import CallableClock, ManualClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.metering import ClockAligned
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.support import WAIT, running, until

INTERVAL = 30
START = datetime(2026, 3, 2, 11, 59, 50, tzinfo=UTC)
ENERGY = "Energy.Active.Import.Register"


def _now() -> str:
    return datetime.now(UTC).isoformat()


_ANSWERS: dict[str, Callable[[], dict[str, Any]]] = {
    "BootNotification": lambda: {"currentTime": _now(), "interval": 3600, "status": "Accepted"},
    "Heartbeat": lambda: {"currentTime": _now()},
    "StatusNotification": dict,
    "MeterValues": dict,
    "StopTransaction": dict,
    "TransactionEvent": dict,
    "SecurityEventNotification": dict,  # StartupOfTheDevice, at every start
    "NotifyEvent": dict,  # 2.0.1: the connector's AvailabilityState with its status
}


class Csms:
    """Answers every CALL of a 1.6 or 2.0.1 station and records the CALLs it got."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.port = 0
        self.ws: Any = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._server: Any = None

    async def _handler(self, ws: Any) -> None:
        self.ws = ws
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                frame = json.loads(raw)
                if frame[0] == 2:
                    _, msg_id, action, payload = frame
                    self.log.append((action, payload))
                    await ws.send(json.dumps([3, msg_id, self._answer(action)]))
                elif frame[1] in self._pending:
                    self._pending.pop(frame[1]).set_result(frame[2])

    def _answer(self, action: str) -> dict[str, Any]:
        if action == "Authorize":
            v16 = self.ws.subprotocol == "ocpp1.6"
            return {"idTagInfo" if v16 else "idTokenInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            return {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}
        return _ANSWERS[action]()

    async def call(self, action: str, payload: dict[str, Any]) -> Any:
        """Send a CALL to the station and return its CALLRESULT payload."""
        ws = await until(lambda: self.ws, "the station connected")
        msg_id = str(next(self._ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await ws.send(json.dumps([2, msg_id, action, payload]))
        return await asyncio.wait_for(future, WAIT)

    def actions(self, name: str) -> list[dict[str, Any]]:
        return [payload for action, payload in self.log if action == name]

    async def start(self) -> None:
        self._server = await websockets.serve(
            self._handler,
            "127.0.0.1",
            0,
            subprotocols=[Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")],
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"


@pytest.fixture
async def csms() -> AsyncIterator[Csms]:
    server = Csms()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def station16(tmp_path: Path, clock: ManualClock, **config: str) -> Station16:
    return Station16(
        "PS-A16",
        PLUGSTREAM_7,
        tmp_path / "s16",
        clock=clock,
        rng=random.Random(3),
        config_defaults={"MeterValueSampleInterval": "0", **config},
        call_timeout=5.0,
        backoff=ReconnectBackoff(0.1, 0.05, 2, random.Random(1)),
    )


def station201(tmp_path: Path, clock: ManualClock, **variables: str) -> Station201:
    return Station201(
        "PS-A201",
        PLUGSTREAM_7,
        tmp_path / "s201",
        clock=clock,
        rng=random.Random(3),
        device_model_defaults={"SampledDataCtrlr.TxUpdatedInterval": "0", **variables},
        call_timeout=5.0,
        backoff=ReconnectBackoff(0.1, 0.05, 2, random.Random(1)),
    )


def to_grid(clock: ManualClock) -> float:
    """Seconds from the clock's time to the next grid point (from midnight UTC)."""
    now = clock.now()
    since = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
    return INTERVAL - since % INTERVAL


async def grid_points(clock: ManualClock, count: int, sent: Callable[[], int]) -> None:
    """Move the clock to each of the next ``count`` grid points, waiting at each until
    ``sent()`` (what the CSMS got) grew by one: the station does I/O between two."""
    for _ in range(count):
        before = sent()
        await clock.advance(to_grid(clock))
        await until(lambda: sent() > before, "a clock-aligned value")  # noqa: B023


def stamps(meter_values: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromisoformat(mv["timestamp"].replace("Z", "+00:00")) for mv in meter_values]


def assert_on_grid(times: list[datetime]) -> None:
    """On the aligned grid, one per grid point, none left out (TC_J_01_CS)."""
    midnight = times[0].replace(hour=0, minute=0, second=0, microsecond=0)
    assert all((t - midnight) % timedelta(seconds=INTERVAL) == timedelta(0) for t in times)
    assert all(b - a == timedelta(seconds=INTERVAL) for a, b in itertools.pairwise(times))


def clock_values(meter_values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The meterValue elements with context Sample.Clock."""
    return [
        mv
        for mv in meter_values
        if all(sv.get("context") == "Sample.Clock" for sv in mv["sampledValue"])
    ]


# -- 1.6 ---------------------------------------------------------------------------------


@pytest.mark.socket
async def test_16_aligned_idle_after_change_configuration(tmp_path: Path, csms: Csms) -> None:
    clock = ManualClock(START)
    station = station16(tmp_path, clock)
    async with running(station, csms.url, online=True):
        assert station.next_tick_in() is None  # ClockAlignedDataInterval 0: asleep
        for key, value in (
            ("MeterValuesAlignedData", f"{ENERGY},Voltage"),
            ("ClockAlignedDataInterval", str(INTERVAL)),
        ):
            answer = await csms.call("ChangeConfiguration", {"key": key, "value": value})
            assert answer == {"status": "Accepted"}
        delay = station.next_tick_in()
        assert delay is not None and 0 < delay <= INTERVAL  # wakes at the grid point only
        await grid_points(clock, 3, lambda: len(csms.actions("MeterValues")))
        sent = csms.actions("MeterValues")
    for payload in sent:
        assert "transactionId" not in payload
        assert payload["connectorId"] == 1
        (value,) = payload["meterValue"]
        contexts = {sv["context"] for sv in value["sampledValue"]}
        assert contexts == {"Sample.Clock"}
        measurands = {sv.get("measurand", ENERGY) for sv in value["sampledValue"]}
        assert measurands == {ENERGY, "Voltage"}
        register = next(sv for sv in value["sampledValue"] if "measurand" not in sv)
        assert register["value"].isdigit()  # whole Wh, like meterStart / meterStop
    assert_on_grid(stamps([p["meterValue"][0] for p in sent]))


@pytest.mark.socket
async def test_16_interval_zero_sends_none(tmp_path: Path, csms: Csms) -> None:
    clock = ManualClock(START)
    station = station16(tmp_path, clock)
    async with running(station, csms.url, online=True):
        await clock.advance(90)
        # one CALL more: what those 90 s made the station send is queued before it
        await station.send_triggered("Heartbeat")
        assert station.next_tick_in() is None
    assert csms.actions("MeterValues") == []


@pytest.mark.socket
async def test_16_aligned_with_the_transaction_then_idle(tmp_path: Path, csms: Csms) -> None:
    clock = ManualClock(START)
    station = station16(tmp_path, clock, ClockAlignedDataInterval=str(INTERVAL))
    async with running(station, csms.url, online=True):
        await grid_points(clock, 1, lambda: len(csms.actions("MeterValues")))
        await clock.advance(5)  # the car comes between two grid points
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await station.swipe("TAG-1")

        def in_tx() -> list[dict[str, Any]]:
            return [p for p in csms.actions("MeterValues") if "transactionId" in p]

        await grid_points(clock, 2, lambda: len(in_tx()))
        await clock.advance(5)  # and goes between two others
        station.stop_transaction("Local")
        await until(lambda: csms.actions("StopTransaction"))
        count = len(csms.actions("MeterValues"))
        await grid_points(clock, 2, lambda: len(csms.actions("MeterValues")))
        assert len(csms.actions("MeterValues")) >= count + 2
    sent = csms.actions("MeterValues")
    assert all(p["transactionId"] == 77 for p in in_tx())
    # the journalled ones may arrive a little later: order by grid point
    values = sorted((p["meterValue"][0] for p in sent), key=lambda mv: mv["timestamp"])
    assert clock_values(values) == values
    assert_on_grid(stamps(values))  # no duplicates, none missing around the transaction
    start = datetime.fromisoformat(csms.actions("StartTransaction")[0]["timestamp"])
    stop = datetime.fromisoformat(csms.actions("StopTransaction")[0]["timestamp"])
    for payload in sent:
        (at,) = stamps(payload["meterValue"])
        assert ("transactionId" in payload) == (start <= at <= stop)


# -- 2.0.1 -------------------------------------------------------------------------------


@pytest.mark.socket
async def test_tc_j_01_cs_no_transaction_ongoing(tmp_path: Path, csms: Csms) -> None:
    clock = ManualClock(START)
    station = station201(tmp_path, clock)
    async with running(station, csms.url, online=True):
        assert station.next_tick_in() is None  # AlignedDataCtrlr.Interval 0: asleep
        answer = await csms.call(
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "AlignedDataCtrlr"},
                        "variable": {"name": name},
                        "attributeValue": value,
                    }
                    for name, value in (("Measurands", f"{ENERGY},Voltage"), ("Interval", "30"))
                ]
            },
        )
        assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
        await grid_points(clock, 3, lambda: len(csms.actions("MeterValues")))
        sent = csms.actions("MeterValues")
    for payload in sent:
        assert payload["evseId"] == 1
        (value,) = payload["meterValue"]
        assert {sv["context"] for sv in value["sampledValue"]} == {"Sample.Clock"}
        assert {sv.get("measurand", ENERGY) for sv in value["sampledValue"]} == {ENERGY, "Voltage"}
    assert_on_grid(stamps([p["meterValue"][0] for p in sent]))
    assert csms.actions("TransactionEvent") == []


@pytest.mark.socket
async def test_201_interval_zero_sends_none(tmp_path: Path, csms: Csms) -> None:
    clock = ManualClock(START)
    station = station201(tmp_path, clock)
    async with running(station, csms.url, online=True):
        await clock.advance(90)
        # one CALL more: what those 90 s made the station send is queued before it
        await station.send_triggered("Heartbeat")
        assert station.next_tick_in() is None
    assert csms.actions("MeterValues") == []


def clock_events(csms: Csms) -> list[dict[str, Any]]:
    return [e for e in csms.actions("TransactionEvent") if e["triggerReason"] == "MeterValueClock"]


@pytest.mark.socket
async def test_tc_j_02_cs_transaction_ongoing(tmp_path: Path, csms: Csms) -> None:
    clock = ManualClock(START)
    station = station201(tmp_path, clock, **{"AlignedDataCtrlr.Interval": str(INTERVAL)})
    async with running(station, csms.url, online=True):
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await station.swipe("TAG-1")
        await grid_points(clock, 2, lambda: len(clock_events(csms)))
        station.stop_transaction("StopAuthorized", "Local")
        await until(lambda: csms.actions("TransactionEvent")[-1]["eventType"] == "Ended")
    assert csms.actions("MeterValues") == []  # the EVSE's values went with the transaction
    values = [e["meterValue"][0] for e in clock_events(csms)]
    assert all(e["eventType"] == "Updated" for e in clock_events(csms))
    assert clock_values(values) == values
    assert_on_grid(stamps(values))


@pytest.mark.socket
async def test_tc_j_06_cs_send_during_idle(tmp_path: Path, csms: Csms) -> None:
    clock = ManualClock(START)
    station = station201(
        tmp_path,
        clock,
        **{"AlignedDataCtrlr.Interval": str(INTERVAL), "AlignedDataCtrlr.SendDuringIdle": "true"},
    )
    async with running(station, csms.url, online=True):
        await grid_points(clock, 1, lambda: len(csms.actions("MeterValues")))
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await station.swipe("TAG-1")
        during = len(csms.actions("MeterValues"))
        await clock.advance(2.5 * INTERVAL)  # more than two grid points with the transaction
        # one CALL more: what those grid points made the station send is queued before it
        await station.send_triggered("Heartbeat")
        assert len(csms.actions("MeterValues")) <= during + 1  # one may have been on its way
        station.stop_transaction("StopAuthorized", "Local")
        after = len(csms.actions("MeterValues"))
        await grid_points(clock, 1, lambda: len(csms.actions("MeterValues")))
        assert len(csms.actions("MeterValues")) > after
    assert clock_events(csms) == []
    events = csms.actions("TransactionEvent")
    assert [e["eventType"] for e in events] == ["Started", "Ended"]
    assert all(
        p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
        for p in csms.actions("MeterValues")
    )


# -- sans I/O ----------------------------------------------------------------------------


@pytest.mark.unit
def test_offline_idle_values_are_dropped_not_journalled(tmp_path: Path) -> None:
    """Outside a transaction clock-aligned values are not transaction-related: offline,
    nothing is queued for later."""
    times = [START]
    station = Station16(
        "PS-OFF",
        PLUGSTREAM_7,
        tmp_path / "off",
        clock=CallableClock(lambda: times[0]),
        rng=random.Random(3),
        config_defaults={"ClockAlignedDataInterval": str(INTERVAL)},
    )
    try:
        assert station.next_tick_in() == 10.0  # 11:59:50 -> 12:00:00
        times[0] = START + timedelta(seconds=10)
        station.tick()
        assert station.journal.counts().pending == 0
        assert station.next_tick_in() == INTERVAL
    finally:
        station.close()


@pytest.mark.unit
def test_clock_aligned_grid() -> None:
    aligned = ClockAligned(900, datetime(2026, 3, 2, 10, 7, tzinfo=UTC))
    assert aligned.next_due == datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
    assert aligned.due(datetime(2026, 3, 2, 10, 14, 59, tzinfo=UTC)) is None
    # late by more than one interval: one reading, for the latest grid point
    slot = aligned.due(datetime(2026, 3, 2, 10, 47, tzinfo=UTC))
    assert slot == datetime(2026, 3, 2, 10, 45, tzinfo=UTC)
    assert aligned.next_due == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    # the clock set back an hour: plan again from there instead of failing
    assert aligned.due(datetime(2026, 3, 2, 9, 50, tzinfo=UTC)) is None
    assert aligned.next_due == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    aligned.configure(0, datetime(2026, 3, 2, 9, 51, tzinfo=UTC))
    assert aligned.next_due is None and aligned.due(datetime(2026, 3, 3, tzinfo=UTC)) is None
