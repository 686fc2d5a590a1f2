"""The journeys end to end: ``plugstream station run`` (a real process) against PlugStream Cloud
(in-process, SQLite in tmp_path), judged by the cloud's records through its REST API:
stations, transactions, meter samples, energy, hygiene flags. Each test runs for 1.6
and for 2.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config
from tests.interop.station_process import StationProcess
from tests.support import HEARTBEATS_TIMED, WAIT, assert_every, until

pytestmark = pytest.mark.socket

TAG = "04A2B3C4"
HEARTBEAT_S = 2
REGISTER = "Energy.Active.Import.Register"
VERSIONS = ["1.6", "2.0.1"]
API_POLL = 0.1  # seconds between two looks through the REST API (each costs the cloud a request)


class Cloud:
    """PlugStream Cloud in this process; :meth:`stop` and :meth:`start` again on its port."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = CloudConfig(
            host="127.0.0.1",
            port=0,
            db=f"sqlite:///{tmp_path / 'cloud.db'}",
            auto_register_unsecured=True,
            heartbeat_interval=HEARTBEAT_S,
            ping_interval=5.0,
            ping_timeout=10.0,
            call_timeout=5.0,
        )
        self.port = 0
        self._server: CloudServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        config = replace(self.config, port=self.port)
        server = CloudServer(uvicorn_config(config, create_app(config)))
        task = asyncio.create_task(server.serve())
        await until(lambda: server.started or task.done(), "PlugStream Cloud started")
        assert server.started, "PlugStream Cloud did not start"
        self._server, self._task = server, task
        self.port = bound_port(server, self.port)

    async def stop(self) -> None:
        """The cloud goes away: its listener and its stations' connections close."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}/api/v1", timeout=10)


Start = Callable[[str, str], Awaitable[StationProcess]]


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    running = Cloud(tmp_path)
    await running.start()
    try:
        async with running.api() as api:
            r = await api.put(f"/id-tokens/{TAG}", json={"status": "Accepted"})
            assert r.status_code in (200, 201), r.text
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def start(cloud: Cloud, tmp_path: Path) -> AsyncIterator[Start]:
    made: list[StationProcess] = []

    async def _start(station_id: str, ocpp: str) -> StationProcess:
        station = StationProcess(station_id, cloud.url, tmp_path / station_id, ocpp=ocpp)
        made.append(station)
        await station.start()
        return station

    try:
        yield _start
    finally:
        for station in made:
            await station.close()


async def station_record(cloud: Cloud, station_id: str) -> dict[str, Any] | None:
    """The station's record once it is connected and has booted."""
    async with cloud.api() as api:
        r = await api.get(f"/stations/{station_id}")
    body: dict[str, Any] = r.json()
    return body if r.status_code == 200 and body["connected"] and body["model"] else None


async def command(
    cloud: Cloud, station_id: str, action: str, payload: dict[str, Any]
) -> dict[str, Any]:
    async with cloud.api() as api:
        r = await api.post(f"/stations/{station_id}/commands/{action}", json=payload)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def transactions(cloud: Cloud, station_id: str) -> list[dict[str, Any]]:
    """The station's transactions with their meter values, oldest first."""
    async with cloud.api() as api:
        r = await api.get("/transactions", params={"station": station_id})
        assert r.status_code == 200, r.text
        out = []
        for tx in sorted(r.json(), key=lambda t: t["id"]):
            detail = await api.get(f"/transactions/{tx['id']}")
            assert detail.status_code == 200, detail.text
            out.append(detail.json())
    return out


async def finished(cloud: Cloud, station_id: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = await transactions(cloud, station_id)
        done = [t for t in found if t["stopped_at"] is not None]
        return found if len(done) >= count else None

    found: list[dict[str, Any]] = await until(
        check, f"{count} finished transactions of {station_id}", interval=API_POLL
    )
    return found


async def charged(
    cloud: Cloud, station_id: str, nth: int, samples: int, *, periodic: bool = False
) -> list[dict[str, Any]]:
    """Wait until the cloud stored the station's ``nth`` transaction (1: its first) with
    ``samples`` register samples past its meter start (only periodic ones with
    ``periodic``); the station's transactions."""

    async def check() -> list[dict[str, Any]] | None:
        found = await transactions(cloud, station_id)
        if len(found) < nth:
            return None
        tx = found[nth - 1]
        start = Decimal(str(tx["meter_start_wh"]))
        past = [
            s
            for s in tx["meter_values"]
            if s["measurand"] == REGISTER
            and Decimal(str(s["value"])) > start
            and (not periodic or s["context"] in (None, "Sample.Periodic"))  # the default
        ]
        return found if len(past) >= samples else None

    what = f"{samples} register samples in transaction #{nth} of {station_id}"
    found: list[dict[str, Any]] = await until(check, what, interval=API_POLL)
    return found


async def configure(cloud: Cloud, station_id: str, ocpp: str, values: dict[str, str]) -> None:
    """ChangeConfiguration (1.6, ``Key``) or SetVariables (2.0.1, ``Component.Variable``)."""
    if ocpp == "1.6":
        for key, value in values.items():
            answer = await command(
                cloud, station_id, "ChangeConfiguration", {"key": key, "value": value}
            )
            assert answer == {"status": "Accepted"}, (key, answer)
        return
    data = [
        {
            "component": {"name": name.split(".", 1)[0]},
            "variable": {"name": name.split(".", 1)[1]},
            "attributeValue": value,
        }
        for name, value in values.items()
    ]
    answer = await command(cloud, station_id, "SetVariables", {"setVariableData": data})
    statuses = [r["attributeStatus"] for r in answer["setVariableResult"]]
    assert statuses == ["Accepted"] * len(values), answer


def check_energy(tx: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """A finished transaction's energy is its register's difference and agrees with its
    meter samples; (meter start, meter stop)."""
    assert tx["stopped_at"] is not None and not tx["active"], tx
    assert tx["flags"] == [], f"the cloud found suspect data: {tx['flags']}"
    start, stop = Decimal(str(tx["meter_start_wh"])), Decimal(str(tx["meter_stop_wh"]))
    assert Decimal(str(tx["energy_wh"])) == stop - start
    timed = sorted(
        (datetime.fromisoformat(s["timestamp"]), Decimal(str(s["value"])))
        for s in tx["meter_values"]
        if s["measurand"] == REGISTER
    )
    readings = [wh for _, wh in timed]
    assert readings == sorted(readings), f"the register went backwards: {timed}"
    assert all(start <= wh < stop + 1 for wh in readings), (start, readings, stop)
    return start, stop


# -- 1. boot and 4. configuration -----------------------------------------------------------


@pytest.mark.parametrize("ocpp", VERSIONS)
async def test_boot_heartbeat_and_configuration_that_survives_a_restart(
    cloud: Cloud, start: Start, ocpp: str
) -> None:
    sid = f"CB{ocpp.replace('.', '')}"
    station = await start(sid, ocpp)
    info = await until(lambda: station_record(cloud, sid), "boot", interval=API_POLL)
    assert info["model"] == "PlugStream 22" and info["boot_status"] == "Accepted"
    assert info["ocpp_version"] == ocpp
    connectors = await until(
        lambda: _connectors(cloud, sid, "Available"), "connector Available", interval=API_POLL
    )
    assert connectors
    times = await until(lambda: _heartbeat_times(cloud, sid), "Heartbeats", interval=API_POLL)
    assert_every(times, HEARTBEAT_S, "Heartbeat")
    await station.wait_status("connected")

    if ocpp == "1.6":
        assert await command(
            cloud, sid, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "7"}
        ) == {"status": "Accepted"}
        assert await command(
            cloud, sid, "ChangeConfiguration", {"key": "NumberOfConnectors", "value": "2"}
        ) == {"status": "Rejected"}
        assert await command(
            cloud, sid, "ChangeConfiguration", {"key": "NoSuchKey", "value": "1"}
        ) == {"status": "NotSupported"}
    else:
        answer = await command(
            cloud,
            sid,
            "SetVariables",
            {
                "setVariableData": [
                    _variable("SampledDataCtrlr.TxUpdatedInterval", "7"),
                    _variable("SecurityCtrlr.Identity", "other"),
                    _variable("OCPPCommCtrlr.NoSuchVariable", "1"),
                ]
            },
        )
        assert [r["attributeStatus"] for r in answer["setVariableResult"]] == [
            "Accepted",
            "Rejected",
            "UnknownVariable",
        ]
    assert await _sample_interval(cloud, sid, ocpp) == "7"
    assert await station.quit() == 0
    async with cloud.api() as api:
        await until(
            lambda: _disconnected(api, sid), "the cloud sees the station go", interval=API_POLL
        )
    await station.start()
    await until(lambda: station_record(cloud, sid), "boot after restart", interval=API_POLL)
    assert await _sample_interval(cloud, sid, ocpp) == "7"


async def _heartbeat_times(cloud: Cloud, sid: str) -> list[float] | None:
    """When the cloud logged the station's message before its first Heartbeat and the
    Heartbeats after it (HEARTBEATS_TIMED of them, nothing else in between), in seconds."""
    async with cloud.api() as api:
        r = await api.get(f"/stations/{sid}/messages", params={"limit": 100})
    incoming = [m for m in reversed(r.json()["messages"]) if m["direction"] == "in"]
    first = next((i for i, m in enumerate(incoming) if '"Heartbeat"' in m["text"]), None)
    if first is None or first == 0 or len(incoming) < first + HEARTBEATS_TIMED:
        return None
    timed = incoming[first - 1 : first + HEARTBEATS_TIMED]
    assert all('"Heartbeat"' in m["text"] for m in timed[1:]), timed
    return [datetime.fromisoformat(m["at"]).timestamp() for m in timed]


def _variable(name: str, value: str) -> dict[str, Any]:
    component, variable = name.split(".", 1)
    return {
        "component": {"name": component},
        "variable": {"name": variable},
        "attributeValue": value,
    }


async def _disconnected(api: httpx.AsyncClient, sid: str) -> bool:
    r = await api.get(f"/stations/{sid}")
    return r.status_code == 200 and not r.json()["connected"]


async def _connectors(cloud: Cloud, sid: str, status: str) -> list[dict[str, Any]] | None:
    async with cloud.api() as api:
        r = await api.get(f"/stations/{sid}")
    found = [c for c in r.json()["connectors"] if c["connector_id"] == 1]
    return found if found and found[0]["status"] == status else None


async def _sample_interval(cloud: Cloud, sid: str, ocpp: str) -> str:
    if ocpp == "1.6":
        answer = await command(
            cloud, sid, "GetConfiguration", {"key": ["MeterValueSampleInterval"]}
        )
        return str(answer["configurationKey"][0]["value"])
    answer = await command(
        cloud,
        sid,
        "GetVariables",
        {
            "getVariableData": [
                {
                    "component": {"name": "SampledDataCtrlr"},
                    "variable": {"name": "TxUpdatedInterval"},
                }
            ]
        },
    )
    return str(answer["getVariableResult"][0]["attributeValue"])


# -- 2. remote start / stop and 3. an RFID session ended by unplugging ----------------------


@pytest.mark.parametrize("ocpp", VERSIONS)
async def test_remote_session_then_rfid_session_are_recorded_with_their_energy(
    cloud: Cloud, start: Start, ocpp: str
) -> None:
    sid = f"CR{ocpp.replace('.', '')}"
    station = await start(sid, ocpp)
    await until(lambda: station_record(cloud, sid), "boot", interval=API_POLL)
    interval = (
        {"MeterValueSampleInterval": "1"}
        if ocpp == "1.6"
        else {"SampledDataCtrlr.TxUpdatedInterval": "1"}
    )
    await configure(cloud, sid, ocpp, interval)

    await station.plug()
    if ocpp == "1.6":
        answer = await command(
            cloud, sid, "RemoteStartTransaction", {"connectorId": 1, "idTag": TAG}
        )
    else:
        answer = await command(
            cloud,
            sid,
            "RequestStartTransaction",
            {"evseId": 1, "remoteStartId": 5, "idToken": {"idToken": TAG, "type": "ISO14443"}},
        )
    assert answer["status"] == "Accepted"
    # charging, with meter values every second
    (remote,) = await charged(cloud, sid, 1, 2, periodic=True)
    if ocpp == "1.6":
        answer = await command(
            cloud, sid, "RemoteStopTransaction", {"transactionId": int(remote["transaction_id"])}
        )
    else:
        answer = await command(
            cloud, sid, "RequestStopTransaction", {"transactionId": remote["transaction_id"]}
        )
    assert answer["status"] == "Accepted"
    (remote,) = await finished(cloud, sid, 1)
    assert remote["id_token"] == TAG and remote["stop_reason"] == "Remote"
    start_wh, stop_wh = check_energy(remote)
    assert stop_wh > start_wh
    assert len([s for s in remote["meter_values"] if s["measurand"] == REGISTER]) >= 2
    await station.unplug()

    await station.plug()
    assert not await station.swipe("DEADBEEF")  # unknown to the cloud
    assert await station.swipe(TAG)
    await charged(cloud, sid, 2, 1)  # energy delivered, and stored
    await station.unplug()
    remote2, rfid = await finished(cloud, sid, 2)
    assert remote2["id"] == remote["id"]
    assert rfid["id_token"] == TAG and rfid["stop_reason"] == "EVDisconnected"
    rfid_start, rfid_stop = check_energy(rfid)
    assert rfid_stop > rfid_start >= stop_wh
    await until(
        lambda: _connectors(cloud, sid, "Available"), "Available after unplug", interval=API_POLL
    )


# -- 5. offline: three sessions, two kill -9s, exactly-once delivery ------------------------


@pytest.mark.parametrize("ocpp", VERSIONS)
async def test_offline_sessions_and_kill_9s_reach_the_cloud_exactly_once(
    cloud: Cloud, start: Start, ocpp: str
) -> None:
    """Both kill -9 cases in one run: between offline sessions 1 and 2, and in the middle
    of session 3 (ended on restart with PowerLoss); the cloud then holds three finished
    transactions, each once, with one register that never goes backwards."""
    sid = f"CO{ocpp.replace('.', '')}"
    station = await start(sid, ocpp)
    await until(lambda: station_record(cloud, sid), "boot", interval=API_POLL)
    if ocpp == "1.6":
        await configure(cloud, sid, ocpp, {"MeterValueSampleInterval": "1"})
        answer = await command(
            cloud,
            sid,
            "SendLocalList",
            {
                "listVersion": 1,
                "updateType": "Full",
                "localAuthorizationList": [{"idTag": TAG, "idTagInfo": {"status": "Accepted"}}],
            },
        )
    else:
        await configure(
            cloud,
            sid,
            ocpp,
            {
                "SampledDataCtrlr.TxUpdatedInterval": "1",
                "OCPPCommCtrlr.RetryBackOffWaitMinimum": "1",
                "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
                "OCPPCommCtrlr.RetryBackOffRepeatTimes": "0",
            },
        )
        answer = await command(
            cloud,
            sid,
            "SendLocalList",
            {
                "versionNumber": 1,
                "updateType": "Full",
                "localAuthorizationList": [
                    {
                        "idToken": {"idToken": TAG, "type": "ISO14443"},
                        "idTokenInfo": {"status": "Accepted"},
                    }
                ],
            },
        )
    assert answer["status"] == "Accepted"

    await cloud.stop()
    await station.wait_status("offline")
    await _session(station)  # 1: offline
    await station.kill()  # between sessions
    await station.start()
    await _session(station)  # 2: offline, after the restart
    await station.plug()  # 3: offline, cut by a kill -9
    assert await station.swipe(TAG)
    await station.wait_status("transaction ")
    await station.wait_meter_sample()  # so the register persisted is past the meter start
    energy = await station.energy_wh()
    await station.kill()
    await cloud.start()  # back on the same port
    await station.start()

    await finished(cloud, sid, 3)
    await station.wait_status("transaction none", "connected")
    # a clean stop empties the journal first, each entry answered once the cloud stored it:
    # whatever the station would send twice is stored now
    assert await station.quit() == 0
    found = await transactions(cloud, sid)
    assert [t["stop_reason"] for t in found] == ["EVDisconnected", "EVDisconnected", "PowerLoss"]
    assert all(t["id_token"] == TAG for t in found)
    if ocpp == "2.0.1":
        assert all(t["offline"] for t in found), [t["offline"] for t in found]
    bounds = [check_energy(t) for t in found]
    flat = [b for pair in bounds for b in pair]
    assert flat == sorted(flat), f"the energy register went backwards: {bounds}"
    assert all(stop > start for start, stop in bounds)
    assert bounds[2][1] <= energy + 5
    # no meter sample stored twice
    for tx in found:
        keys = [
            (s["timestamp"], s["measurand"], s["phase"], s["context"]) for s in tx["meter_values"]
        ]
        assert len(keys) == len(set(keys)), f"a meter value was stored twice: {keys}"


async def _session(station: StationProcess) -> None:
    await station.plug()
    assert await station.swipe(TAG), "the local list's tag was not accepted offline"
    await station.wait_status("transaction ")
    await station.wait_meter_sample()  # energy delivered, a meter sample in the journal
    await station.unplug()
