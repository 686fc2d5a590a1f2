"""Several gateway nodes, one fleet: PlugStream Cloud on PostgreSQL and NATS.

Three real ``plugstream cloud serve --db postgresql://… --bus nats://… --node-id N``
processes on loopback share one PostgreSQL database and one NATS server (a cluster name
of the test's own, so that tests running beside each other do not meet), with a TCP load
balancer of the test's in front of them, as an operator would put one. The stations are
real ones (``plugstream fleet``, or raw OCPP clients where a test needs to see frames).

Generated when CI names the services (PLUGSTREAM_TEST_POSTGRES and
PLUGSTREAM_TEST_NATS); a service named but down fails them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from plugstream.cloud.serve import READY
from tests.cloud.conftest import fresh_postgres
from tests.support import WAIT, basic_auth, free_port, read_until, stop_process, until

pytestmark = pytest.mark.socket

POSTGRES = os.environ.get("PLUGSTREAM_TEST_POSTGRES", "").strip()
NATS = os.environ.get("PLUGSTREAM_TEST_NATS", "").strip()
CLUSTERS = [pytest.param(NATS, id="postgresql+nats")] if POSTGRES and NATS else []
TOKEN = "cluster-test-token"
PASSWORD = "cluster-secret-1"


def _reachable(url: str, default_port: int) -> None:
    parts = make_url(url.replace("nats://", "postgresql://"))
    host, port = parts.host or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"{url!r} is set for the tests but cannot be reached: {exc}")


@pytest.fixture(params=CLUSTERS)
def services(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A fresh, migrated PostgreSQL database of the test's own, and the NATS URL."""
    nats: str = request.param
    _reachable(nats, 4222)
    with fresh_postgres("plugstream_cluster", migrated=True) as url:
        yield url, nats


class Node:
    """One ``plugstream cloud serve`` node of the cluster, a child process."""

    def __init__(self, name: str, db: str, bus: str, cluster: str, tmp_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [
            *[sys.executable, "-m", "plugstream.cli", "cloud", "serve"],
            *["--host", "127.0.0.1", "--port", str(self.port), "--db", db],
            *["--bus", bus, "--node-id", name, "--cluster", cluster],
            *["--api-token", TOKEN, "--auto-register", "--call-timeout", "10"],
        ]
        self.log = tmp_path / f"node-{name}.log"
        self.proc: subprocess.Popen[str] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, station_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{station_id}"

    def start(self) -> None:
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            read_until(self.proc, READY)
        except AssertionError as exc:
            self.stop()
            raise AssertionError(
                f"node {self.name}: {exc}; stderr {self.stderr()[-2000:]}"
            ) from None

    def stderr(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def kill(self) -> None:
        """``kill -9``: no goodbye to the cluster, no connection closed cleanly."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=WAIT)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.http, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=WAIT
        )


class LoadBalancer:
    """A TCP load balancer on loopback, as in front of any cluster: each connection goes
    to the next node in turn that accepts it (a dead node refuses, the next one is tried).
    Runs on a thread of its own, so that the test's blocking waits do not hold it up."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = 0
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> LoadBalancer:
        self._thread.start()
        assert self._started.wait(WAIT), "the load balancer did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        for _ in range(len(self.ports)):
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
def nodes(services: tuple[str, str], tmp_path: Path) -> Iterator[dict[str, Node]]:
    """Nodes A, B and C of one cluster, started."""
    db, bus = services
    cluster = f"t{uuid.uuid4().hex[:10]}"
    started = {name: Node(name, db, bus, cluster, tmp_path) for name in "ABC"}
    try:
        for node in started.values():
            node.start()
        yield started
    finally:
        for node in started.values():
            node.stop()


async def _boot16(ws: ClientConnection) -> None:
    boot = {"chargePointVendor": "PlugStream", "chargePointModel": "Test"}
    await ws.send(orjson.dumps([2, "boot", "BootNotification", boot]).decode())
    answer = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert answer[:2] == [3, "boot"] and answer[2]["status"] == "Accepted"


@contextlib.asynccontextmanager
async def station16(url: str, station_id: str) -> AsyncIterator[ClientConnection]:
    async with connect(
        url,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth(station_id, PASSWORD),
        open_timeout=WAIT,
    ) as ws:
        await _boot16(ws)
        yield ws


async def _answer_calls(
    ws: ClientConnection, seen: list[list[Any]], *, answer: bool = True
) -> None:
    """Play a station's part: every CALL the cloud sends is kept in ``seen`` and, with
    ``answer``, answered Accepted."""
    with contextlib.suppress(ConnectionClosed):
        async for text in ws:
            frame = orjson.loads(text)
            if frame[0] == 2:
                seen.append(frame)
                if answer:
                    await ws.send(orjson.dumps([3, frame[1], {"status": "Accepted"}]).decode())


async def _connected(node: Node, station_id: str) -> bool:
    async with node.api() as api:
        found = await api.get(f"/api/v1/stations/{station_id}")
    return found.status_code == 200 and bool(found.json()["connected"])


@pytest.mark.parametrize("sid", ["CS-ON-C", "CS=odd.id*1+x|y@z"])
async def test_a_command_through_node_a_reaches_a_station_on_node_c_and_its_answer_comes_back(
    nodes: dict[str, Node], sid: str
) -> None:
    a, c = nodes["A"], nodes["C"]
    async with station16(c.ws(sid), sid) as ws:
        seen: list[list[Any]] = []
        answering = asyncio.create_task(_answer_calls(ws, seen))
        await until(lambda: _connected(a, sid), "node A to see the station of node C")
        async with a.api() as api:
            reset = await api.post(f"/api/v1/stations/{sid}/commands/Reset", json={"type": "Soft"})
        assert reset.status_code == 200, reset.text
        assert reset.json() == {"status": "Accepted"}
        assert [frame[2:] for frame in seen] == [["Reset", {"type": "Soft"}]]
        answering.cancel()
    # Gone from C: node A answers as a node alone would, 409 not connected.
    await until(lambda: _not(_connected(a, sid)), "node A to see the station gone")
    async with a.api() as api:
        reset = await api.post(f"/api/v1/stations/{sid}/commands/Reset", json={"type": "Soft"})
    assert reset.status_code == 409, reset.text
    assert "not connected" in reset.json()["detail"]


async def _not(check: Any) -> bool:
    return not await check


async def test_a_station_that_does_not_answer_times_out_across_nodes_as_on_one(
    nodes: dict[str, Node],
) -> None:
    a, b = nodes["A"], nodes["B"]
    async with station16(b.ws("CS-SILENT"), "CS-SILENT") as ws:
        seen: list[list[Any]] = []
        silent = asyncio.create_task(_answer_calls(ws, seen, answer=False))
        await until(lambda: _connected(a, "CS-SILENT"), "node A to see the station")
        async with a.api() as api:
            started = time.monotonic()
            reset = await api.post(
                "/api/v1/stations/CS-SILENT/commands/Reset",
                params={"timeout": 1},
                json={"type": "Hard"},
            )
        assert reset.status_code == 504, reset.text
        assert "no answer within 1 s" in reset.json()["detail"]
        assert time.monotonic() - started < 5  # the station's timeout, not the bus's margin
        assert [frame[2] for frame in seen] == ["Reset"]
        silent.cancel()


async def test_a_station_that_moves_to_another_node_is_closed_on_the_old_one_and_commands_follow(
    nodes: dict[str, Node],
) -> None:
    a, b, c = nodes["A"], nodes["B"], nodes["C"]
    async with (
        station16(a.ws("CS-MOVER"), "CS-MOVER") as old,
        station16(b.ws("CS-MOVER"), "CS-MOVER") as new,
    ):
        # The old connection was closed before the new one was accepted.
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(old.recv(), WAIT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000
        assert closed.value.rcvd.reason == "replaced by a new connection"

        seen: list[list[Any]] = []
        answering = asyncio.create_task(_answer_calls(new, seen))
        async with c.api() as api:
            reset = await api.post(
                "/api/v1/stations/CS-MOVER/commands/Reset", json={"type": "Soft"}
            )
        assert reset.status_code == 200, reset.text
        assert [frame[2] for frame in seen] == ["Reset"]
        answering.cancel()

        async def shown_on_b() -> bool:
            async with c.api() as api:
                station = (await api.get("/api/v1/stations/CS-MOVER")).json()
            return bool(station["connected"] and station["node"] == "B")

        await until(shown_on_b, "node C to show the station on node B")


async def test_the_console_live_stream_on_node_a_shows_a_station_booting_on_node_b(
    nodes: dict[str, Node],
) -> None:
    a, b = nodes["A"], nodes["B"]
    events: list[tuple[str, Any]] = []

    async def listen(api: httpx.AsyncClient) -> None:
        async with api.stream("GET", "/api/v1/live") as stream:
            event = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, json.loads(line[6:])))

    async with a.api() as api:
        listening = asyncio.create_task(listen(api))
        await until(lambda: any(name == "hello" for name, _ in events), "the live stream")

        async def page_open_on_a_is_known_to_b() -> bool:
            # Node B sends changes while some node has a page open: it learns it at once.
            async with station16(b.ws("CS-LIVE-PROBE"), "CS-LIVE-PROBE"):
                pass
            return any(
                name == "stations" and any(s["station_id"] == "CS-LIVE-PROBE" for s in data)
                for name, data in events
            )

        await until(page_open_on_a_is_known_to_b, "node B to send changes to node A's page")
        async with station16(b.ws("CS-LIVE"), "CS-LIVE"):

            def shown_connected() -> bool:
                return any(
                    name == "stations"
                    and any(s["station_id"] == "CS-LIVE" and s["connected"] for s in data)
                    for name, data in events
                )

            await until(shown_connected, "node A's page to show the station of node B")
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)


async def test_a_password_changed_through_one_node_is_enforced_by_every_node_at_once(
    nodes: dict[str, Node],
) -> None:
    a, b = nodes["A"], nodes["B"]
    async with station16(b.ws("CS-PW"), "CS-PW"):
        pass  # registered, its password remembered by node B
    async with a.api() as api:
        changed = await api.put(
            "/api/v1/stations/CS-PW", json={"password": "a-new-password-2", "security_profile": 1}
        )
    assert changed.status_code in (200, 201), changed.text
    # Node B forgets what it remembered: the old password is refused there at once.
    with pytest.raises(Exception) as refused:
        async with station16(b.ws("CS-PW"), "CS-PW"):
            pass
    assert "401" in str(refused.value)


async def test_a_second_node_with_an_id_in_use_refuses_to_start(
    nodes: dict[str, Node], tmp_path: Path
) -> None:
    twin = Node("A", "", "", "", tmp_path)
    twin.argv = [*nodes["A"].argv]
    twin.argv[twin.argv.index("--port") + 1] = str(twin.port)
    done = subprocess.run(twin.argv, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode != 0
    assert "node id 'A' is in use by another running node" in done.stderr
    assert READY not in done.stdout


async def test_TC_cluster_node_b_killed_its_stations_reconnect_and_every_transaction_is_kept_once(
    nodes: dict[str, Node], services: tuple[str, str], tmp_path: Path
) -> None:
    """kill -9 of node B mid-sessions: its stations reconnect, with back-off, through the
    load balancer to A and C; every transaction the stations ran is in PostgreSQL exactly
    once, ended, with the energy the stations' meters counted."""
    stations, sessions = 24, 2
    db, _ = services
    async with nodes["A"].api() as api:
        card = await api.put("/api/v1/id-tokens/CLUSTERCARD1", json={"status": "Accepted"})
        assert card.status_code in (200, 201), card.text
    with LoadBalancer([node.port for node in nodes.values()]) as lb:
        fleet = subprocess.Popen(
            [
                *[sys.executable, "-m", "plugstream.cli", "fleet", "--stations", str(stations)],
                *["--csms", f"ws://127.0.0.1:{lb.port}/ocpp", "--sessions", str(sessions)],
                *["--session-minutes", "4", "--time-scale", "60", "--idle-minutes", "0.5", "1"],
                *["--password", PASSWORD, "--id-prefix", "KILL-", "--id-tag", "CLUSTERCARD1"],
                "--json",
                *["--duration", "240", "--data-dir", str(tmp_path / "fleet")],
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            pg = await asyncpg.connect(
                make_url(db).set(drivername="postgresql").render_as_string(False)
            )
            try:

                async def started() -> bool:
                    return int(await pg.fetchval("SELECT count(*) FROM transactions")) >= 12

                await until(started, "the fleet's first transactions", timeout=120)
                b_stations = await _held_by(nodes["B"])
                assert b_stations, "the load balancer gave node B no station"
                nodes["B"].kill()

                async def all_back() -> bool:
                    held = set()
                    for name in "AC":
                        held |= await _held_by(nodes[name])
                    return b_stations <= held

                await until(all_back, "node B's stations to reconnect to A and C", timeout=120)
                out, err = await asyncio.to_thread(fleet.communicate, timeout=300)
                assert fleet.returncode == 0, err[-3000:]
                summary = json.loads(out.strip().splitlines()[-1])
                # A driver who swipes while the station reconnects is not authorized
                # (no local list): that session never starts, and is the only error.
                started_tx = summary["sessions_started"]
                assert started_tx >= stations, summary
                assert summary["errors"] == stations * sessions - started_tx, (summary, err)
                assert summary["sessions_completed"] == started_tx, summary

                async def all_ended() -> bool:
                    ended = await pg.fetchval(
                        "SELECT count(*) FROM transactions WHERE stopped_at IS NOT NULL"
                    )
                    return int(ended) >= started_tx

                await until(all_ended, "every transaction ended in PostgreSQL", timeout=120)
                rows = await pg.fetch(
                    "SELECT station_id, count(*) AS n, count(stopped_at) AS ended,"
                    " sum(energy_wh) AS wh FROM transactions GROUP BY station_id"
                )
                pks = {int(row["id"]) for row in await pg.fetch("SELECT id FROM transactions")}
            finally:
                await pg.close()
        finally:
            if fleet.poll() is None:
                stop_process(fleet)
    # Every transaction's start and end reached the cluster's event stream (JetStream).
    await _until_events(
        nodes["A"], services[1], {(pk, t) for pk in pks for t in ("started", "ended")}
    )
    # Exactly once: as many rows as sessions the stations started, each ended, none twice.
    assert sum(row["n"] for row in rows) == started_tx, rows
    assert all(row["ended"] == row["n"] <= sessions for row in rows), rows
    # The stations' meters count fractions of a Wh; 1.6 reports whole Wh (meterStop).
    energy = sum(float(row["wh"] or 0) for row in rows)
    assert abs(energy - summary["energy_wh"]) <= stations * sessions, (energy, summary["energy_wh"])


async def _until_events(node: Node, bus: str, wanted: set[tuple[int, str]]) -> None:
    """Wait until the cluster's stream holds a transaction event of every (transaction,
    type) in ``wanted``, read as a consumer service would."""
    import nats

    cluster = node.argv[node.argv.index("--cluster") + 1]
    nc = await nats.connect(bus)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"{cluster}.events.transaction.>", stream=f"{cluster.upper()}_EVENTS"
        )
        seen: set[tuple[int, str]] = set()

        async def all_seen() -> bool:
            with contextlib.suppress(nats.errors.TimeoutError):
                for msg in await sub.fetch(500, timeout=1):
                    data = orjson.loads(msg.data)["data"]
                    seen.add((int(data["id"]), str(data["type"])))
                    await msg.ack()
            return wanted <= seen

        await until(all_seen, "every transaction's events on the stream", timeout=60)
    finally:
        await nc.close()


async def _held_by(node: Node) -> set[str]:
    """The stations node ``node`` holds itself (its /metrics counts them; the REST API
    shows the whole cluster's)."""
    async with node.api() as api:
        listed = await api.get("/api/v1/stations")
    return {s["station_id"] for s in listed.json() if s["connected"] and s.get("node") == node.name}
