"""The cluster's bus, node by node: presence, takeover, commands, live changes and the
caches other nodes must drop, each :class:`Cluster` on a real NATS server (a cluster name
of the test's own) in front of a stand-in for its gateway.

The same through real ``plugstream cloud serve`` nodes: tests/cloud/test_cluster.py."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from plugstream.cloud.bus.cluster import Cluster, NodeIdInUse, join
from plugstream.cloud.bus.presence import station_key
from plugstream.cloud.stations import StationOffline
from plugstream.ocpp import CallTimeout, OcppError, OcppVersion
from plugstream.ocpp.errors import ErrorCode
from tests.support import until

pytestmark = pytest.mark.socket

NATS = os.environ.get("PLUGSTREAM_TEST_NATS", "").strip()


class Gateway:
    """What a cluster asks of its node's gateway, recorded."""

    def __init__(self) -> None:
        self.live: dict[str, OcppVersion] = {}
        self.evicted: list[str] = []
        self.changed: list[str] = []
        self.forgotten: list[str] = []
        self.firmware: list[str] = []
        self.frames_received = 0
        self.answer: Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None

    def holds(self, station_id: str) -> OcppVersion | None:
        return self.live.get(station_id)

    def evict(self, station_id: str) -> bool:
        self.evicted.append(station_id)
        return self.live.pop(station_id, None) is not None

    async def call_local(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float | None
    ) -> dict[str, Any]:
        if station_id not in self.live:
            raise StationOffline(station_id)
        assert self.answer is not None
        return await self.answer(station_id, action, payload)

    def changed_elsewhere(self, station_id: str) -> None:
        self.changed.append(station_id)

    def forget_admission(self, station_id: str) -> None:
        self.forgotten.append(station_id)

    def firmware_pending(self, station_ids: list[str]) -> None:
        self.firmware.extend(station_ids)


Join = Callable[[str], Awaitable[tuple[Cluster, Gateway]]]


@pytest.fixture(params=[pytest.param(NATS, id="nats")] if NATS else [])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[Join]:
    """Join nodes of one cluster of the test's own; each leaves at the end."""
    url: str = request.param
    parts = make_url(url.replace("nats://", "postgresql://"))
    try:
        socket.create_connection((parts.host, parts.port or 4222), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"PLUGSTREAM_TEST_NATS={url!r} is set but cannot be reached: {exc}")
    name = f"t{uuid.uuid4().hex[:10]}"
    joined: list[Cluster] = []

    async def node(node_id: str) -> tuple[Cluster, Gateway]:
        gateway = Gateway()
        cluster = await join(url, node_id, gateway, name=name)
        joined.append(cluster)
        return cluster, gateway

    try:
        yield node
    finally:
        for cluster in joined:
            await cluster.leave()


async def test_a_new_connection_on_another_node_is_let_go_of_before_it_is_accepted(
    nodes: Join,
) -> None:
    a, gw_a = await nodes("A")
    b, gw_b = await nodes("B")
    gw_a.live["CS.1"] = OcppVersion.V16
    await a.claim("CS.1", OcppVersion.V16)
    await until(lambda: b.holder("CS.1") is not None, "node B to learn that A holds CS.1")
    gw_b.live["CS.1"] = OcppVersion.V201
    await b.claim("CS.1", OcppVersion.V201)
    # By the time B may accept, A has let go: no moment with two connections in use.
    assert gw_a.evicted == ["CS.1"] and "CS.1" not in gw_a.live
    holder = b.holder("CS.1")
    assert holder is not None and (holder.node, holder.version) == ("B", OcppVersion.V201)
    await until(lambda: (a.holder("CS.1") or holder).node == "B", "node A to see B hold it")


async def test_a_connection_that_ends_leaves_presence_unless_a_newer_one_took_over(
    nodes: Join,
) -> None:
    a, _ = await nodes("A")
    b, _ = await nodes("B")
    await a.claim("CS1", OcppVersion.V16)
    await b.claim("CS1", OcppVersion.V16)  # the station moved to B
    a.release("CS1")  # A's old connection ends late: B's entry stays
    b.release("CS2")  # never held: nothing happens
    await until(lambda: a.holder("CS1") is not None, "A to see B's entry")
    assert b.holder("CS1") is not None and b.holder("CS1").node == "B"  # type: ignore[union-attr]
    b.release("CS1")
    await until(lambda: a.holder("CS1") is None, "A to see CS1 gone")


async def test_a_command_reaches_the_node_holding_the_station_and_answers_as_there(
    nodes: Join,
) -> None:
    a, _ = await nodes("A")
    c, gw_c = await nodes("C")
    gw_c.live["CS1"] = OcppVersion.V16
    await c.claim("CS1", OcppVersion.V16)
    await until(lambda: a.holder("CS1") is not None, "A to see CS1 on C")
    outcomes: list[Any] = [
        {"status": "Accepted"},
        OcppError(ErrorCode.NotSupported, "no Reset here", {"why": 1}),
        CallTimeout("Reset", 2.0, "m1"),
    ]

    async def answer(station_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert (station_id, action, payload) == ("CS1", "Reset", {"type": "Soft"})
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return dict(outcome)

    gw_c.answer = answer
    assert await a.call("CS1", "Reset", {"type": "Soft"}, 2.0) == {"status": "Accepted"}
    with pytest.raises(OcppError) as refused:
        await a.call("CS1", "Reset", {"type": "Soft"}, 2.0)
    assert (refused.value.code, refused.value.description, refused.value.details) == (
        ErrorCode.NotSupported,
        "no Reset here",
        {"why": 1},
    )
    with pytest.raises(CallTimeout) as late:
        await a.call("CS1", "Reset", {"type": "Soft"}, 2.0)
    assert late.value.timeout == 2.0
    with pytest.raises(StationOffline):
        await a.call("CS-NOWHERE", "Reset", {"type": "Soft"}, 2.0)
    # C lost the station without telling anyone yet: offline, never a stale connection.
    del gw_c.live["CS1"]
    with pytest.raises(StationOffline):
        await a.call("CS1", "Reset", {"type": "Soft"}, 2.0)


async def test_a_command_finds_a_station_that_moved_a_moment_ago(nodes: Join) -> None:
    a, _ = await nodes("A")
    b, gw_b = await nodes("B")
    c, gw_c = await nodes("C")
    gw_b.live["CS1"] = OcppVersion.V16
    await b.claim("CS1", OcppVersion.V16)
    await until(lambda: a.holder("CS1") is not None, "A to see CS1 on B")

    async def answer(station_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted", "from": "C"}

    gw_c.answer = answer
    gw_c.live["CS1"] = OcppVersion.V16
    await c.claim("CS1", OcppVersion.V16)
    # Whatever A's copy says at this instant, the command lands on C.
    assert await a.call("CS1", "Reset", {"type": "Soft"}, 2.0) == {
        "status": "Accepted",
        "from": "C",
    }


async def test_changes_reach_other_nodes_only_while_a_console_page_is_open_there(
    nodes: Join,
) -> None:
    a, _ = await nodes("A")
    b, gw_b = await nodes("B")
    a.changed("CS-QUIET")  # no page open anywhere: nothing is sent
    b.watchers(1)  # a page opens on B
    await until(lambda: _sends_changes(a), "A to learn that B has a page open")
    a.changed("CS-LOUD")
    await until(lambda: "CS-LOUD" in gw_b.changed, "B's page to hear of CS-LOUD")
    assert "CS-QUIET" not in gw_b.changed
    b.watchers(0)
    await until(lambda: not _sends_changes(a), "A to learn that the page closed")


def _sends_changes(cluster: Cluster) -> bool:
    return cluster._others_watching()


async def test_registration_changes_and_new_firmware_targets_reach_every_other_node(
    nodes: Join,
) -> None:
    a, gw_a = await nodes("A")
    _, gw_b = await nodes("B")
    _, gw_c = await nodes("C")
    a.admission_changed("CS-PW")
    a.firmware_targets([f"CS{i}" for i in range(2500)])  # in chunks
    for gateway in (gw_b, gw_c):
        await until(lambda gw=gateway: gw.forgotten == ["CS-PW"], "the password change")
        await until(lambda gw=gateway: len(gw.firmware) == 2500, "the firmware targets")
    assert gw_a.forgotten == [] and gw_a.firmware == []  # its own caches were told locally


async def test_a_second_node_with_a_node_id_in_use_is_refused(nodes: Join) -> None:
    await nodes("A")
    with pytest.raises(NodeIdInUse):
        await nodes("A")


async def test_a_node_restarted_under_its_id_forgets_what_it_held_before(nodes: Join) -> None:
    a, _ = await nodes("A")
    b, _ = await nodes("B")
    await a.claim("CS1", OcppVersion.V16)
    await until(lambda: b.holder("CS1") is not None, "B to see CS1 on A")
    a.closed = True  # dies without a word (kill -9): its entries stay in the bucket
    for task in a._loops:
        task.cancel()
    await a.nc.close()
    again, _ = await nodes("A")
    await until(lambda: again.presence.entry("CS1") is None, "the restarted A to forget CS1")
    await until(lambda: b.presence.entry("CS1") is None, "B to see CS1 gone")


async def test_after_the_bus_lost_presence_each_node_puts_its_stations_back(nodes: Join) -> None:
    a, gw_a = await nodes("A")
    b, _ = await nodes("B")
    gw_a.live["CS1"] = OcppVersion.V16
    await a.claim("CS1", OcppVersion.V16)
    assert a._kv is not None
    await a._kv.purge(station_key("CS1"))  # as after a NATS restart: the bucket is empty
    await until(lambda: b.holder("CS1") is None, "B to see CS1 gone")
    await a.reconnected()
    await until(lambda: b.holder("CS1") is not None, "B to see CS1 on A again")


async def test_a_claim_the_bus_could_not_take_is_made_again_while_the_station_is_here(
    nodes: Join,
) -> None:
    a, gw_a = await nodes("A")
    b, _ = await nodes("B")
    gw_a.live["CS1"] = OcppVersion.V16
    real = a._claim
    failures = [TimeoutError("the bus is slow")]

    async def slow_bus(station_id: str, version: OcppVersion) -> None:
        if failures:
            raise failures.pop()
        await real(station_id, version)

    a._claim = slow_bus  # type: ignore[method-assign]
    await a.claim("CS1", OcppVersion.V16)  # accepted anyway: the station is here
    assert b.holder("CS1") is None
    await until(lambda: b.holder("CS1") is not None, "the claim made again")
