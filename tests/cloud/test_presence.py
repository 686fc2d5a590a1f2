"""Presence, the sans-I/O part: which node holds each station, as one node sees it.

The real bucket and nodes are in tests/cloud/test_cluster.py; here a manual clock
drives node liveness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugstream.cloud.bus import valid_node_id
from plugstream.cloud.bus.presence import (
    NODE_TIMEOUT_S,
    Holder,
    Presence,
    decode_holder,
    encode_holder,
    key_station,
    station_key,
)
from plugstream.ocpp import OcppVersion

pytestmark = pytest.mark.unit

# OCPP-J's identifierString (2.0.1 part 4 §3.1.1), without ':' (the URL's station id).
STATION_ID = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-_=+|@.",
    min_size=1,
    max_size=48,
)
KEY = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=")


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(STATION_ID)
def test_every_station_id_has_a_valid_bucket_key_that_gives_it_back(station_id: str) -> None:
    key = station_key(station_id)
    assert set(key) <= KEY  # no '.': no empty subject token, whatever the id
    assert key_station(key) == station_id


def test_distinct_station_ids_never_share_a_key() -> None:
    ids = ["a.b", "a=2Eb", "a_b", "a-b", "A.B", "a..b", ".a", "a."]
    assert len({station_key(i) for i in ids}) == len(ids)


def test_a_holder_is_written_and_read_back_and_a_foreign_value_is_ignored() -> None:
    assert decode_holder(encode_holder("node-2", OcppVersion.V201), 7) == Holder(
        "node-2", OcppVersion.V201, 7
    )
    assert decode_holder(b"node-2 9.9", 7) is None
    assert decode_holder(b"garbage", 7) is None


def test_a_station_is_held_only_while_its_node_is_heard_from() -> None:
    clock = ManualClock()
    presence = Presence(clock)
    presence.heard("A")
    presence.put("CS1", Holder("A", OcppVersion.V16, 1))
    assert presence.holder("CS1") == Holder("A", OcppVersion.V16, 1)
    clock.now += NODE_TIMEOUT_S - 0.1
    assert presence.holder("CS1") is not None
    clock.now += 0.2  # node A went silent (killed): its stations read as offline
    assert presence.holder("CS1") is None
    assert dict(presence.held()) == {}
    assert presence.entry("CS1") is not None  # until it reconnects elsewhere
    presence.heard("B")
    presence.put("CS1", Holder("B", OcppVersion.V16, 2))
    assert presence.holder("CS1") == Holder("B", OcppVersion.V16, 2)


def test_a_node_that_says_it_leaves_holds_nothing_at_once() -> None:
    presence = Presence(ManualClock())
    presence.heard("A")
    presence.put("CS1", Holder("A", OcppVersion.V16, 1))
    presence.gone("A")
    assert presence.holder("CS1") is None
    assert presence.nodes() == []


def test_an_older_revision_never_replaces_or_deletes_a_newer_one() -> None:
    presence = Presence(ManualClock())
    for node in "AB":
        presence.heard(node)
    presence.put("CS1", Holder("B", OcppVersion.V16, 5))
    assert presence.put("CS1", Holder("A", OcppVersion.V16, 4)) is None  # a late watch event
    assert presence.delete("CS1", 4) is None  # the old node's late delete
    assert presence.holder("CS1") == Holder("B", OcppVersion.V16, 5)
    assert presence.delete("CS1", 5) == Holder("B", OcppVersion.V16, 5)
    assert presence.holder("CS1") is None


@pytest.mark.parametrize(
    ("node_id", "valid"),
    [
        ("node-1", True),
        ("A", True),
        ("a_b-9", True),
        ("", False),
        ("a.b", False),
        ("x" * 33, False),
    ],
)
def test_a_node_id_is_one_subject_token(node_id: str, valid: bool) -> None:
    assert valid_node_id(node_id) is valid
