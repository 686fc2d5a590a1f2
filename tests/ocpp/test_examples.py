"""Realistic PlugStream payloads for every OCPP 1.6 and 2.0.1 action (``examples/*.json``) must
pass the official schemas, the frame codec and a full CALL/CALLRESULT exchange between two
sessions: real messages fill the optional fields that minimal test payloads leave out."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from plugstream.ocpp import (
    Call,
    CallCompleted,
    CallReceived,
    CallResult,
    Event,
    OcppVersion,
    RpcSession,
    Transmit,
    decode,
    encode,
    schemas,
)

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).parent / "examples"
FILES = {OcppVersion.V16: "v16.json", OcppVersion.V201: "v201.json"}
MESSAGE_ID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"  # a UUID: the longest MessageId allowed


@functools.cache
def examples(version: OcppVersion) -> dict[str, dict[str, dict[str, Any]]]:
    """``{action: {"request": payload, "response": payload}}`` of one version."""
    data: dict[str, dict[str, dict[str, Any]]] = json.loads(
        (EXAMPLES / FILES[version]).read_text(encoding="utf-8")
    )
    return data


def fake_clock() -> float:
    return 1_795_600_800.0  # 2026-11-25T10:00:00Z, standing still


ACTIONS = [
    pytest.param(version, action, id=f"{version.value}-{action}")
    for version in FILES
    for action in examples(version)
]
VERSIONS = [pytest.param(version, id=version.value) for version in FILES]


def only_transmit(events: list[Event]) -> str:
    """The text of the single Transmit that ``events`` must consist of."""
    assert len(events) == 1, events
    [event] = events
    assert isinstance(event, Transmit), event
    return event.text


@pytest.mark.parametrize("version", VERSIONS)
def test_examples_cover_exactly_the_call_actions(version: OcppVersion) -> None:
    actions = set(examples(version))
    expected = schemas(version).call_actions
    assert sorted(expected - actions) == [], "actions without an example"
    assert sorted(actions - expected) == [], "examples of actions that do not exist"


@pytest.mark.parametrize("version", VERSIONS)
def test_each_example_is_one_request_and_one_response_sorted_by_action(
    version: OcppVersion,
) -> None:
    data = examples(version)
    assert list(data) == sorted(data)
    for action, example in data.items():
        assert sorted(example) == ["request", "response"], action
        assert isinstance(example["request"], dict), action
        assert isinstance(example["response"], dict), action


@pytest.mark.parametrize(("version", "action"), ACTIONS)
def test_request_matches_request_schema(version: OcppVersion, action: str) -> None:
    problem = schemas(version).validate(action, "request", examples(version)[action]["request"])
    assert problem is None, (problem, problem and problem.details)


@pytest.mark.parametrize(("version", "action"), ACTIONS)
def test_response_matches_response_schema(version: OcppVersion, action: str) -> None:
    problem = schemas(version).validate(action, "response", examples(version)[action]["response"])
    assert problem is None, (problem, problem and problem.details)


@pytest.mark.parametrize(("version", "action"), ACTIONS)
def test_call_survives_encode_then_decode(version: OcppVersion, action: str) -> None:
    call = Call(MESSAGE_ID, action, examples(version)[action]["request"])
    assert decode(encode(call), version) == call


@pytest.mark.parametrize(("version", "action"), ACTIONS)
def test_call_result_survives_encode_then_decode(version: OcppVersion, action: str) -> None:
    result = CallResult(MESSAGE_ID, examples(version)[action]["response"])
    assert decode(encode(result), version) == result


@pytest.mark.parametrize(("version", "action"), ACTIONS)
def test_two_sessions_exchange_request_and_response_unchanged(
    version: OcppVersion, action: str
) -> None:
    request = examples(version)[action]["request"]
    response = examples(version)[action]["response"]
    caller = RpcSession(version, clock=fake_clock, rng=random.Random(1))
    callee = RpcSession(version, clock=fake_clock, rng=random.Random(2))

    message_id, events = caller.call(action, request)
    call_text = only_transmit(events)

    assert callee.receive(call_text) == [CallReceived(message_id, action, request)]
    result_text = only_transmit(callee.result(message_id, response))

    assert caller.receive(result_text) == [CallCompleted(message_id, action, response)]
    assert caller.pending_calls == 0
    assert caller.violations == callee.violations == 0
