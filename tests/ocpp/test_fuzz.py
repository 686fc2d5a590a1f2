"""Whatever a peer sends, the session answers with events and never raises (hypothesis)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugstream.ocpp import OcppVersion, RpcSession, Transmit, schemas

pytestmark = pytest.mark.unit

VERSIONS = st.sampled_from(list(OcppVersion))
ACTIONS = st.sampled_from(
    [
        *sorted(schemas(OcppVersion.V201).call_actions | schemas(OcppVersion.V16).call_actions),
        "",
        "x" * 40,
    ]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=5)
    ),
    max_leaves=25,
)
payloads = st.dictionaries(
    st.sampled_from(
        [
            "idTag",
            "idToken",
            "connectorId",
            "evseId",
            "status",
            "meterValue",
            "timestamp",
            "reason",
            "chargingStation",
            "x",
        ]
    )
    | st.text(max_size=10),
    json_values,
    max_size=6,
)
message_ids = st.text(max_size=40) | st.integers() | st.none()

frames: st.SearchStrategy[list[Any]] = st.one_of(
    st.lists(json_values, max_size=7),
    st.tuples(st.integers(min_value=-1, max_value=8), message_ids, ACTIONS, payloads).map(list),
    st.tuples(st.sampled_from([3, 5]), message_ids, payloads).map(list),
    st.tuples(
        st.sampled_from([4, 5]), message_ids, st.text(max_size=30), st.text(max_size=30), payloads
    ).map(list),
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fresh(version: OcppVersion, busy: bool) -> RpcSession:
    session = RpcSession(version, clock=lambda: 0.0, lenient=busy)
    if busy:  # a CALL in flight, so that answers have something to match
        session.call("Heartbeat", {})
    return session


def check(events: list[object]) -> None:
    for event in events:
        if isinstance(event, Transmit):
            reply = orjson.loads(event.text)  # always valid JSON
            assert isinstance(reply, list) and reply[0] in (2, 3, 4, 5)


@FUZZ
@given(version=VERSIONS, text=st.text(max_size=200), busy=st.booleans())
def test_arbitrary_text_never_raises(version: OcppVersion, text: str, busy: bool) -> None:
    check(fresh(version, busy).receive(text))


@FUZZ
@given(version=VERSIONS, data=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(version: OcppVersion, data: bytes) -> None:
    check(fresh(version, False).receive(data))


@FUZZ
@given(version=VERSIONS, frame=frames, busy=st.booleans())
def test_arbitrary_json_arrays_never_raise(
    version: OcppVersion, frame: list[Any], busy: bool
) -> None:
    try:
        text = orjson.dumps(frame)
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits
        return
    session = fresh(version, busy)
    check(session.receive(text))
    check(session.receive(text))  # and the same again, now possibly a duplicate
