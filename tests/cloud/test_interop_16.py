"""Interoperability, OCPP 1.6J: the real ``plugstream cloud serve`` on loopback, talked to by an
independent charge point written with the ``ocpp`` library (mobilityhouse) and by an
operator over the REST API (httpx).

Boot, authorize, a transaction with meter values, a remote command sent through the
REST API; and a server killed (SIGKILL) mid-transaction loses nothing it acknowledged.

The server helpers here are shared with ``test_interop_201.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as OcppChargePoint16
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, RemoteStartStopStatus
from websockets.typing import Subprotocol

from tests.support import WAIT, cloud_serve_argv, stop_process, until

pytestmark = pytest.mark.socket

READY = "PlugStream Cloud listening"
TOKEN = "t0ken"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CloudProcess:
    """``plugstream cloud serve`` as a child process on a loopback port and a SQLite file."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.db = tmp_path / "cloud.db"
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.starts = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, station_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{station_id}"

    def start(self) -> None:
        """Start the server; return once it says it is listening (bounded wait)."""
        assert self.proc is None
        self.starts += 1
        stderr = open(self.tmp_path / f"server-{self.starts}.err", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cloud_serve_argv(
                self.port,
                self.db,
                *["--api-token", TOKEN, "--auto-register-unsecured"],
                host="127.0.0.1",
            ),
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stderr.close()
        lines: queue.Queue[str] = queue.Queue()
        self.lines = lines
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:  # keeps reading, so that the pipe never fills
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + WAIT
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                err = (self.tmp_path / f"server-{self.starts}.err").read_text()
                pytest.fail(f"server did not start: stdout {seen!r}, stderr {err[-2000:]!r}")
            try:
                line = lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith(READY):
                return

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing; only what was committed survives."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """Terminate; kill if it does not end."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudProcess]:
    server = CloudProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def api(cloud: CloudProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"{cloud.http}/api/v1",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30.0,
    ) as client:
        yield client


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def exact(response: httpx.Response) -> Any:
    """The JSON body with numbers read exactly."""
    return response.json(parse_float=Decimal)


async def put_token(api: httpx.AsyncClient, token: str) -> None:
    answer = await api.put(f"/id-tokens/{token}", json={"status": "Accepted"})
    assert answer.status_code in (200, 201), answer.text


async def wait_connected(api: httpx.AsyncClient, station_id: str, connected: bool = True) -> None:
    async def seen() -> bool:
        answer = await api.get(f"/stations/{station_id}")
        return answer.status_code == 200 and answer.json()["connected"] is connected

    await until(seen, f"station {station_id} connected={connected}", interval=0.05)


# --- the independent peer --------------------------------------------------------------


class ChargePoint16(OcppChargePoint16):  # type: ignore[misc]
    """A charge point made with the mobilityhouse library: what a third party would run."""

    def __init__(self, station_id: str, connection: Any) -> None:
        super().__init__(station_id, connection, response_timeout=15)
        self.remote_starts: list[dict[str, Any]] = []

    @on(Action.remote_start_transaction)  # type: ignore[untyped-decorator]
    async def on_remote_start(self, id_tag: str, **extra: Any) -> Any:
        self.remote_starts.append({"id_tag": id_tag, **extra})
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)


@contextlib.asynccontextmanager
async def connected16(cloud: CloudProcess, station_id: str) -> AsyncIterator[ChargePoint16]:
    async with websockets.connect(
        cloud.ws(station_id), subprotocols=[Subprotocol("ocpp1.6")]
    ) as ws:
        assert ws.subprotocol == "ocpp1.6"
        cp = ChargePoint16(station_id, ws)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task


async def boot16(cp: ChargePoint16) -> None:
    answer = await cp.call(
        call.BootNotification(
            charge_point_vendor="Interop Ltd",
            charge_point_model="IOP-16",
            charge_point_serial_number="IOP16-0001",
            firmware_version="9.8.7",
        )
    )
    assert answer.status == "Accepted"
    assert answer.interval > 0
    assert answer.current_time.endswith("Z")
    sent = datetime.fromisoformat(answer.current_time)
    assert abs(sent - now()) < timedelta(seconds=30)


def meter_values(at: datetime, register_kwh: str) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": iso(at),
            "sampledValue": [
                {
                    "value": register_kwh,
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "kWh",
                    "context": "Sample.Periodic",
                },
                {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
            ],
        }
    ]


# --- the tests -----------------------------------------------------------------------------


async def test_boot_authorize_transaction_and_remote_start(
    cloud: CloudProcess, api: httpx.AsyncClient
) -> None:
    await put_token(api, "IOPTAG16")
    station = "IOP-CP16"
    async with connected16(cloud, station) as cp:
        await boot16(cp)
        heartbeat = await cp.call(call.Heartbeat())
        assert heartbeat.current_time.endswith("Z")
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )

        accepted = await cp.call(call.Authorize(id_tag="IOPTAG16"))
        assert accepted.id_tag_info["status"] == "Accepted"
        unknown = await cp.call(call.Authorize(id_tag="NOBODY"))
        assert unknown.id_tag_info["status"] == "Invalid"

        # the operator starts a charge through the REST API; the station accepts
        command = await api.post(
            f"/stations/{station}/commands/RemoteStartTransaction",
            json={"idTag": "IOPTAG16", "connectorId": 1},
        )
        assert command.status_code == 200, command.text
        assert command.json() == {"status": "Accepted"}
        assert cp.remote_starts == [{"id_tag": "IOPTAG16", "connector_id": 1}]

        t0 = now() - timedelta(minutes=30)
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="IOPTAG16", meter_start=1_000, timestamp=iso(t0)
            )
        )
        assert started.id_tag_info["status"] == "Accepted"
        tx_id = started.transaction_id
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx_id,
                meter_value=meter_values(t0 + timedelta(minutes=10), "2.2345"),
            )
        )
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx_id,
                meter_value=meter_values(t0 + timedelta(minutes=20), "3.4567"),
            )
        )
        stopped = await cp.call(
            call.StopTransaction(
                meter_stop=4_321,
                timestamp=iso(t0 + timedelta(minutes=30)),
                transaction_id=tx_id,
                id_tag="IOPTAG16",
                reason="EVDisconnected",
            )
        )
        assert stopped.id_tag_info["status"] == "Accepted"

        info = await api.get(f"/stations/{station}")
        assert info.status_code == 200
        body = info.json()
        assert body["connected"] is True
        assert (body["vendor"], body["model"]) == ("Interop Ltd", "IOP-16")
        assert (body["serial_number"], body["firmware_version"]) == ("IOP16-0001", "9.8.7")
        assert body["ocpp_version"] == "1.6"
        assert [(c["connector_id"], c["status"]) for c in body["connectors"]] == [(1, "Available")]

    listed = await api.get("/transactions", params={"station": station})
    assert listed.status_code == 200
    [tx] = exact(listed)
    assert tx["id"] == tx_id
    assert tx["energy_wh"] == Decimal(3321)
    assert (tx["meter_start_wh"], tx["meter_stop_wh"]) == (Decimal(1000), Decimal(4321))
    assert tx["active"] is False and tx["stop_reason"] == "EVDisconnected"
    assert tx["id_token"] == "IOPTAG16"

    detail = exact(await api.get(f"/transactions/{tx_id}"))
    registers = [
        (v["value"], v["unit"])
        for v in detail["meter_values"]
        if v["measurand"] == "Energy.Active.Import.Register"
    ]
    assert registers == [(Decimal("2234.5"), "Wh"), (Decimal("3456.7"), "Wh")]
    powers = {v["value"] for v in detail["meter_values"] if v["measurand"] == "Power.Active.Import"}
    assert powers == {Decimal(7400)}

    await wait_connected(api, station, connected=False)


async def test_server_killed_mid_transaction_loses_nothing_acknowledged(
    cloud: CloudProcess, api: httpx.AsyncClient
) -> None:
    await put_token(api, "IOPTAG16")
    station = "IOP-CP16-K"
    t0 = now() - timedelta(minutes=30)
    acknowledged: list[Decimal] = []
    async with connected16(cloud, station) as cp:
        await boot16(cp)
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="IOPTAG16", meter_start=10_000, timestamp=iso(t0)
            )
        )
        tx_id = started.transaction_id
        for minute, kwh in ((5, "10.5"), (10, "11.25")):
            answer = await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx_id,
                    meter_value=meter_values(t0 + timedelta(minutes=minute), kwh),
                )
            )
            assert answer is not None  # a CALLRESULT: the server has it
            acknowledged.append(Decimal(kwh) * 1000)

        cloud.kill()  # mid-transaction, with no warning

    await asyncio.to_thread(cloud.start)  # the same port and database
    # A reconnect without a new BootNotification (OCPP-J 1.6 §5.4): still accepted.
    async with connected16(cloud, station) as cp:
        answer = await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx_id,
                meter_value=meter_values(t0 + timedelta(minutes=20), "12.75"),
            )
        )
        assert answer is not None
        acknowledged.append(Decimal(12_750))
        stopped = await cp.call(
            call.StopTransaction(
                meter_stop=13_500,
                timestamp=iso(t0 + timedelta(minutes=30)),
                transaction_id=tx_id,
                reason="Local",
            )
        )
        assert stopped is not None

    tx = exact(await api.get(f"/transactions/{tx_id}"))
    assert tx["station_id"] == station
    assert tx["meter_start_wh"] == Decimal(10_000)
    assert tx["meter_stop_wh"] == Decimal(13_500)
    assert tx["energy_wh"] == Decimal(3_500)
    assert tx["active"] is False
    registers = [
        v["value"] for v in tx["meter_values"] if v["measurand"] == "Energy.Active.Import.Register"
    ]
    assert registers == acknowledged
    assert [f["code"] for f in tx["flags"]] == []
