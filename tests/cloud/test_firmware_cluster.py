"""Firmware rollouts on a cluster: several gateway nodes, one database.

Two :class:`Store` objects opened on one database URL are two nodes (each with its own
writer, pending set and in-process send lock); :class:`Stations` is the cluster's
``CommandSender`` as every node sees it (``Gateway.call`` reaches a station whichever
node holds it). A rollout sent by one node races the station's boot on the other: the
claim in the database (``Pending`` → ``Sending``) is what makes each target go out once.
On SQLite and (with PLUGSTREAM_TEST_POSTGRES) PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.firmware import rollouts
from plugstream.cloud.firmware.rollouts import claim_timeout, send_pending, send_rollout
from plugstream.cloud.stations import StationOffline
from plugstream.cloud.storage import Store
from plugstream.cloud.storage import firmware as db
from plugstream.ocpp import OcppVersion
from tests.support import until

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
IMAGE = "a" * 32
CONFIG = CloudConfig()
TIMEOUT = claim_timeout(CONFIG)


@dataclass
class Clock:
    """A node's wall clock for claims, moved by the test."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


class Stations:
    """The stations of the cluster, as each node's ``Gateway.call`` reaches them: every
    UpdateFirmware is recorded; while :attr:`hold` is set, each waits for the test's
    :meth:`release` (an answer, or an exception such as StationOffline)."""

    def __init__(self, *connected: str) -> None:
        self.versions = dict.fromkeys(connected, OcppVersion.V201)
        self.calls: list[tuple[str, int]] = []  # (station, requestId) as sent
        self.hold = False
        self.held: list[tuple[str, asyncio.Future[dict[str, Any] | BaseException]]] = []

    def is_connected(self, station_id: str) -> bool:
        return station_id in self.versions

    def version_of(self, station_id: str) -> OcppVersion | None:
        return self.versions.get(station_id)

    async def call(
        self,
        station_id: str,
        action: str,
        payload: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        if station_id not in self.versions:
            raise StationOffline(station_id)
        assert action == "UpdateFirmware"
        self.calls.append((station_id, int(payload["requestId"])))
        outcome: dict[str, Any] | BaseException = {"status": "Accepted"}
        if self.hold:
            answer = asyncio.get_running_loop().create_future()
            self.held.append((station_id, answer))
            outcome = await answer
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def release(self, outcome: dict[str, Any] | BaseException | None = None) -> None:
        """Answer every held call (Accepted unless told otherwise)."""
        held, self.held = self.held, []
        for _, answer in held:
            answer.set_result(outcome if outcome is not None else {"status": "Accepted"})


@pytest.fixture
async def nodes(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two nodes on one database."""
    one = await Store.open(store_url)
    try:
        two = await Store.open(store_url)
        try:
            yield one, two
        finally:
            await two.close()
    finally:
        await one.close()


async def add_image(store: Store) -> db.FirmwareImage:
    return await store.firmware.add_image(
        db.FirmwareImage(
            image_id=IMAGE,
            version="1.0",
            filename="fw.bin",
            size=10,
            sha256="00" * 32,
            signature="c2ln",
            signing_certificate="-----BEGIN CERTIFICATE-----\n",
            uploaded_at=T0,
        )
    )


async def roll_out(store: Store, *station_ids: str) -> db.Rollout:
    return await store.firmware.create_rollout(
        image_id=IMAGE,
        station_ids=list(station_ids),
        selector={"station_ids": list(station_ids)},
        retrieve_at=T0,
        install_at=None,
        at=T0,
    )


async def statuses(store: Store, rollout_id: int) -> dict[str, str]:
    found = await store.firmware.get_rollout(rollout_id)
    assert found is not None
    return {t.station_id: t.status for t in found.targets}


def spy_claims(store: Store, node: str, seen: list[tuple[str, str, bool]]) -> None:
    """Record (node, station, won) for every claim the node tries."""
    claim = store.firmware.claim

    async def spied(rollout_id: int, station_id: str, **kwargs: Any) -> datetime | None:
        got = await claim(rollout_id, station_id, **kwargs)
        seen.append((node, station_id, got is not None))
        return got

    store.firmware.claim = spied  # type: ignore[method-assign]


# -- one send per target -----------------------------------------------------------------


async def test_two_nodes_claiming_one_target_at_once_get_it_once(
    nodes: tuple[Store, Store],
) -> None:
    one, two = nodes
    await add_image(one)
    ids = [f"CS{i:02d}" for i in range(20)]
    rollout = await roll_out(one, *ids)
    won = await asyncio.gather(
        *(
            node.firmware.claim(rollout.rollout_id, sid, claim_timeout=TIMEOUT)
            for sid in ids
            for node in (one, two)
        )
    )
    for n, sid in enumerate(ids):
        pair = won[2 * n : 2 * n + 2]
        assert sum(w is not None for w in pair) == 1, (sid, pair)
    assert set((await statuses(two, rollout.rollout_id)).values()) == {db.SENDING}
    # claimed, not pending: neither node's boot path offers them
    assert await two.firmware.pending_targets("CS00", claim_timeout=TIMEOUT) == []
    assert len(await two.firmware.unsent_targets("CS00")) == 1


async def test_a_boot_on_one_node_racing_a_rollout_on_another_sends_each_target_once(
    nodes: tuple[Store, Store],
) -> None:
    """The rollout is sent by node one (the REST API there) while each station's boot
    is handled by node two; every answer is held until both nodes have had their go."""
    one, two = nodes
    image = await add_image(one)
    ids = [f"CS{i:02d}" for i in range(12)]
    stations = Stations(*ids)
    stations.hold = True
    claims: list[tuple[str, str, bool]] = []
    spy_claims(one, "one", claims)
    spy_claims(two, "two", claims)
    rollout = await roll_out(one, *ids)

    # Some stations booted a moment before: node two has their targets (held) when node
    # one sends; the others' boots and the rollout's sends start together.
    early = ids[:4]
    boots = {
        sid: asyncio.create_task(send_pending(stations, two, CONFIG, sid, T0)) for sid in early
    }
    await until(lambda: all(("two", sid, True) in claims for sid in early), "early boots")
    sending = asyncio.create_task(send_rollout(stations, one, CONFIG, image, rollout, T0))
    boots |= {
        sid: asyncio.create_task(send_pending(stations, two, CONFIG, sid, T0)) for sid in ids[4:]
    }

    def both_had_their_go() -> bool:
        # node one tries every connected target; node two claims or finds it claimed
        tried = {sid for node, sid, _ in claims if node == "one"}
        return tried == set(ids) and all(
            boots[sid].done() or ("two", sid, True) in claims for sid in ids
        )

    await until(both_had_their_go, "both nodes tried every target")
    assert sorted(sid for sid, _ in stations.calls) == ids  # one UpdateFirmware each so far
    stations.release()
    await until(lambda: sending.done() and all(b.done() for b in boots.values()), "all done")
    await sending
    sent_by_two = {sid for sid, boot in boots.items() if boot.result() is not None}

    assert sorted(stations.calls) == sorted((t.station_id, t.request_id) for t in rollout.targets)
    assert await statuses(one, rollout.rollout_id) == dict.fromkeys(ids, "Accepted")
    won = {sid for _, sid, got in claims if got}
    assert won == set(ids) and len([c for c in claims if c[2]]) == len(ids)
    assert {sid for node, sid, got in claims if got and node == "two"} == sent_by_two
    assert set(early) <= sent_by_two
    assert all(("one", sid, False) in claims for sid in early)  # refused by the database


async def test_a_claim_older_than_its_timeout_is_sent_again_at_the_next_boot(
    nodes: tuple[Store, Store], store_url: str
) -> None:
    """A node that claimed a target and died mid-send leaves it Sending; once the claim
    is older than the timeout, the station's next boot on another node sends it."""
    one, two = nodes
    await add_image(one)
    rollout = await roll_out(one, "CS1")
    assert await one.firmware.claim(rollout.rollout_id, "CS1", claim_timeout=TIMEOUT)
    # ... and node one dies here, before its call

    clock = Clock()
    restarted = await Store.open(store_url)  # its pending set is read now: Sending counts
    try:
        restarted.firmware.clock = clock
        stations = Stations("CS1")
        assert await send_pending(stations, restarted, CONFIG, "CS1", T0) is None
        assert stations.calls == []  # a fresh claim: maybe on its way from node one
        assert await restarted.firmware.pending_targets("CS1", claim_timeout=TIMEOUT) == []

        clock.now += TIMEOUT + timedelta(seconds=1)
        [(stale, _, _)] = await restarted.firmware.pending_targets("CS1", claim_timeout=TIMEOUT)
        assert stale.status == db.SENDING
        assert await send_pending(stations, restarted, CONFIG, "CS1", T0) == "Accepted"
        [target] = rollout.targets
        assert stations.calls == [("CS1", target.request_id)]
        assert await statuses(two, rollout.rollout_id) == {"CS1": "Accepted"}
        assert await send_pending(stations, restarted, CONFIG, "CS1", T0) is None
        assert len(stations.calls) == 1
    finally:
        await restarted.close()


async def test_a_stale_claim_taken_by_another_node_is_not_given_back_by_the_first(
    nodes: tuple[Store, Store],
) -> None:
    one, two = nodes
    await add_image(one)
    rollout = await roll_out(one, "CS1")
    first = await one.firmware.claim(rollout.rollout_id, "CS1", claim_timeout=TIMEOUT)
    assert first is not None
    later = Clock(first + TIMEOUT + timedelta(seconds=1))
    two.firmware.clock = later
    assert await two.firmware.claim(rollout.rollout_id, "CS1", claim_timeout=TIMEOUT) == later.now
    assert not await one.firmware.release(rollout.rollout_id, "CS1", first)
    assert await statuses(one, rollout.rollout_id) == {"CS1": db.SENDING}
    assert await two.firmware.release(rollout.rollout_id, "CS1", later.now)
    assert await statuses(one, rollout.rollout_id) == {"CS1": db.PENDING}


# -- stations that are away ----------------------------------------------------------------


async def test_an_offline_stations_target_goes_back_to_pending(
    nodes: tuple[Store, Store],
) -> None:
    """Connected when the rollout began, gone when its call was made: Pending again, and
    sent at its next boot, on either node."""
    one, two = nodes
    image = await add_image(one)
    stations = Stations("CS1")
    stations.hold = True
    rollout = await roll_out(one, "CS1")
    sending = asyncio.create_task(send_rollout(stations, one, CONFIG, image, rollout, T0))
    await until(lambda: stations.held, "the call made")
    assert await statuses(two, rollout.rollout_id) == {"CS1": db.SENDING}
    del stations.versions["CS1"]  # the connection dropped before the answer
    stations.release(StationOffline("CS1"))
    await sending
    assert await statuses(two, rollout.rollout_id) == {"CS1": db.PENDING}

    stations.versions["CS1"] = OcppVersion.V201
    stations.hold = False
    assert await send_pending(stations, two, CONFIG, "CS1", T0) == "Accepted"
    [target] = rollout.targets
    assert stations.calls == [("CS1", target.request_id)] * 2  # the first never reached it


async def test_a_station_that_moves_to_another_node_mid_send_gets_its_update(
    nodes: tuple[Store, Store],
) -> None:
    """Node one's call dies with the station's old connection while the station boots on
    node two, which finds the target claimed and leaves it: node one, given the target
    back and seeing the station connected again, sends it."""
    one, two = nodes
    image = await add_image(one)
    stations = Stations("CS1")
    stations.hold = True
    rollout = await roll_out(one, "CS1")
    sending = asyncio.create_task(send_rollout(stations, one, CONFIG, image, rollout, T0))
    await until(lambda: stations.held, "node one's call made")
    assert await send_pending(stations, two, CONFIG, "CS1", T0) is None  # it is node one's
    stations.hold = False
    stations.release(StationOffline("CS1"))  # the old connection is gone, the station not
    await sending
    [target] = rollout.targets
    assert stations.calls == [("CS1", target.request_id)] * 2
    assert await statuses(two, rollout.rollout_id) == {"CS1": "Accepted"}


async def test_an_older_target_another_node_is_sending_is_left_to_it(
    nodes: tuple[Store, Store],
) -> None:
    one, two = nodes
    await add_image(one)
    first = await roll_out(one, "CS1")  # being sent by node one
    second = await roll_out(one, "CS1")  # nobody's: superseded
    newest = await roll_out(one, "CS1")
    assert await one.firmware.claim(first.rollout_id, "CS1", claim_timeout=TIMEOUT)
    stations = Stations("CS1")
    assert await send_pending(stations, two, CONFIG, "CS1", T0) == "Accepted"
    assert stations.calls == [("CS1", newest.targets[0].request_id)]
    assert await statuses(two, first.rollout_id) == {"CS1": db.SENDING}  # node one's answer
    assert await statuses(two, second.rollout_id) == {"CS1": rollouts.SUPERSEDED}
    assert await statuses(two, newest.rollout_id) == {"CS1": "Accepted"}


# -- the pending set across nodes --------------------------------------------------------


async def test_mark_pending_lets_another_nodes_boot_find_a_new_rollout(
    nodes: tuple[Store, Store],
) -> None:
    """Node two's pending set is read once; a rollout made on node one reaches it only
    through mark_pending, which the bus calls with what node one's listeners hear."""
    one, two = nodes
    await add_image(one)
    heard: list[list[str]] = []
    one.firmware.listeners.append(heard.append)
    stations = Stations("CS1", "CS2")
    assert await send_pending(stations, two, CONFIG, "CS0", T0) is None  # its set is read

    first = await roll_out(one, "CS1")
    assert heard == [["CS1"]]
    assert await send_pending(stations, two, CONFIG, "CS1", T0) is None  # not told yet
    assert stations.calls == []
    two.firmware.mark_pending(heard[-1])
    assert await send_pending(stations, two, CONFIG, "CS1", T0) == "Accepted"
    assert stations.calls == [("CS1", first.targets[0].request_id)]

    # wired as the bus would: node one's listener tells node two
    one.firmware.listeners.append(two.firmware.mark_pending)
    second = await roll_out(one, "CS2")
    assert heard[-1] == ["CS2"]
    assert await send_pending(stations, two, CONFIG, "CS2", T0) == "Accepted"
    assert stations.calls[-1] == ("CS2", second.targets[0].request_id)


async def test_a_failing_listener_does_not_fail_the_rollout(
    nodes: tuple[Store, Store],
) -> None:
    one, _ = nodes
    await add_image(one)
    heard: list[list[str]] = []

    def broken(station_ids: list[str]) -> None:
        raise RuntimeError("bus down")

    one.firmware.listeners += [broken, heard.append]
    rollout = await roll_out(one, "CS1", "CS2")
    assert heard == [["CS1", "CS2"]]
    assert await statuses(one, rollout.rollout_id) == {"CS1": db.PENDING, "CS2": db.PENDING}
    await roll_out(one)  # no targets: nobody to tell
    assert heard == [["CS1", "CS2"]]


async def test_two_nodes_creating_rollouts_at_once_never_share_a_request_id(
    nodes: tuple[Store, Store],
) -> None:
    one, two = nodes
    await add_image(one)
    made = await asyncio.gather(
        *(roll_out(node, f"CS{n}", "CS-ALL") for n in range(10) for node in (one, two))
    )
    ids = [t.request_id for r in made for t in r.targets]
    assert len(ids) == 40 and len(set(ids)) == 40
