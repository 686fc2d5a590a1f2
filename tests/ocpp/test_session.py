"""The RPC session's promises: CALLs correlated by id, one in flight per direction with the
rest queued, timeouts by the injected clock, and answers delivered whatever the peer sends."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from plugstream.ocpp import (
    CallCompleted,
    CallFailed,
    CallReceived,
    CallTimeout,
    ConnectionLost,
    ErrorCode,
    Event,
    OcppError,
    OcppVersion,
    ProtocolViolation,
    RpcSession,
    SendReceived,
    Transmit,
)
from plugstream.ocpp.session import CloseConnection

pytestmark = pytest.mark.unit

V16, V201, V21 = OcppVersion.V16, OcppVersion.V201, OcppVersion.V21
BOOT16 = {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 7"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sent(events: list[Event]) -> list[list[Any]]:
    return [orjson.loads(e.text) for e in events if isinstance(e, Transmit)]


def of(kind: type, events: list[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_call_result_is_correlated_by_message_id(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock)
    mid, events = s.call("BootNotification", BOOT16)
    [frame] = sent(events)
    assert frame == [2, mid, "BootNotification", BOOT16]
    answer = {"status": "Accepted", "currentTime": "2026-11-25T10:00:00Z", "interval": 300}
    [done] = s.receive(orjson.dumps([3, mid, answer]))
    assert done == CallCompleted(mid, "BootNotification", answer)
    assert s.pending_calls == 0


def test_message_ids_are_short_and_unique(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock)
    ids = {s.new_message_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert max(len(i) for i in ids) <= 6  # a few bytes per frame on metered links


def test_one_call_in_flight_the_rest_queued_in_order(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock)
    first, e1 = s.call("Heartbeat", {})
    second, e2 = s.call("Heartbeat", {})
    third, e3 = s.call("Authorize", {"idTag": "04A2B3C4"})
    assert len(sent(e1)) == 1 and sent(e2) == [] and sent(e3) == []
    assert s.pending_calls == 3
    events = s.receive(orjson.dumps([3, first, {"currentTime": "2026-11-25T10:00:00Z"}]))
    assert [type(e) for e in events] == [CallCompleted, Transmit]
    assert sent(events)[0][1] == second
    events = s.receive(orjson.dumps([4, second, "InternalError", "oops", {}]))
    assert of(CallFailed, events)[0].error.code is ErrorCode.InternalError
    assert sent(events)[0][1:3] == [third, "Authorize"]


def test_call_times_out_by_the_injected_clock_then_next_goes(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock, call_timeout=30)
    first, _ = s.call("Heartbeat", {})
    second, _ = s.call("Heartbeat", {})
    assert s.next_deadline() == 1030.0
    clock.now = 1029.9
    assert s.tick() == []
    clock.now = 1030.0
    events = s.tick()
    [failed] = of(CallFailed, events)
    assert failed.message_id == first and failed.timed_out
    assert isinstance(failed.error, CallTimeout)
    assert sent(events)[0][1] == second
    assert s.next_deadline() == 1060.0
    # A result arriving after the timeout answers nothing in flight.
    late = s.receive(orjson.dumps([3, first, {"currentTime": "2026-11-25T10:00:00Z"}]))
    assert [type(e) for e in late] == [ProtocolViolation]


def test_callerror_with_unreadable_id_fails_the_call_in_flight(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock)
    mid, _ = s.call("Heartbeat", {})
    [failed] = s.receive('[4, "-1", "RpcFrameworkError", "could not read", {}]')
    assert isinstance(failed, CallFailed) and failed.message_id == mid
    assert failed.error.code is ErrorCode.RpcFrameworkError


def test_v16_callerror_spellings_are_understood(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock)
    mid, _ = s.call("Heartbeat", {})
    [failed] = s.receive(orjson.dumps([4, mid, "OccurenceConstraintViolation", "", {}]))
    assert isinstance(failed, CallFailed)
    assert failed.error.code is ErrorCode.OccurrenceConstraintViolation


def test_invalid_result_fails_the_call_with_the_schema_error(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock)
    mid, _ = s.call("BootNotification", BOOT16)
    [failed] = s.receive(
        orjson.dumps(
            [3, mid, {"status": "Maybe", "currentTime": "2026-11-25T10:00:00Z", "interval": 1}]
        )
    )
    assert isinstance(failed, CallFailed)
    assert failed.error.code is ErrorCode.PropertyConstraintViolation


def test_v21_answers_an_invalid_result_with_callresulterror(clock: Clock) -> None:
    s = RpcSession(V21, clock=clock)
    mid, _ = s.call("Heartbeat", {})
    events = s.receive(orjson.dumps([3, mid, {"currentTime": 5}]))
    assert of(CallFailed, events)
    [frame] = sent(events)
    assert frame[0] == 5 and frame[1] == mid and frame[2] == "TypeConstraintViolation"


def test_v21_send_goes_out_without_waiting_and_is_received(clock: Clock) -> None:
    a = RpcSession(V21, clock=clock)
    b = RpcSession(V21, clock=clock)
    a.call("Heartbeat", {})  # a CALL in flight does not hold back a SEND
    payload = {
        "id": 1,
        "pending": 0,
        "basetime": "2026-11-25T10:00:00Z",
        "data": [{"t": 0.0, "v": "230.1"}],
    }
    [out] = a.send("NotifyPeriodicEventStream", payload)
    assert isinstance(out, Transmit)
    [got] = b.receive(out.text)
    assert got == SendReceived(orjson.loads(out.text)[1], "NotifyPeriodicEventStream", payload)


def test_invalid_outgoing_request_is_refused_before_sending(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock)
    with pytest.raises(OcppError) as raised:
        s.call("Authorize", {"idTag": 42})
    assert raised.value.code is ErrorCode.TypeConstraintViolation
    with pytest.raises(OcppError) as raised:
        s.call("Teleport", {})
    assert raised.value.code is ErrorCode.NotImplemented
    assert s.pending_calls == 0


def test_received_call_is_answered_once_with_a_valid_result(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock)
    [call] = s.receive('[2, "c1", "Heartbeat", {}]')
    assert call == CallReceived("c1", "Heartbeat", {})
    [frame] = sent(s.result("c1", {"currentTime": "2026-11-25T10:00:00Z"}))
    assert frame == [3, "c1", {"currentTime": "2026-11-25T10:00:00Z"}]
    with pytest.raises(KeyError):
        s.result("c1", {"currentTime": "2026-11-25T10:00:00Z"})


def test_invalid_result_from_our_handler_becomes_internalerror(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock)
    s.receive('[2, "c2", "Heartbeat", {}]')
    events = s.result("c2", {"currentTime": "not a time"})
    assert sent(events) == [
        [4, "c2", "InternalError", "could not build a valid Heartbeat response", {}]
    ]
    assert of(ProtocolViolation, events)


def test_duplicate_id_while_handling_is_refused_after_the_first_is_answered(
    clock: Clock,
) -> None:
    """Issue 14 point 13: the refusal used to leave before the first CALL's answer, with the
    same id; answers now leave in the order the CALLs came."""
    s = RpcSession(V201, clock=clock)
    s.receive('[2, "c3", "Heartbeat", {}]')
    events = s.receive('[2, "c3", "Heartbeat", {}]')
    assert not sent(events) and of(ProtocolViolation, events)
    answers = sent(s.result("c3", {"currentTime": "2026-11-25T10:00:00Z"}))
    assert [a[:3] for a in answers] == [
        [3, "c3", {"currentTime": "2026-11-25T10:00:00Z"}],
        [4, "c3", "RpcFrameworkError"],
    ]


def test_lenient_session_passes_on_a_usable_payload_with_its_violation(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock, lenient=True)
    serial = "SN-" + "9" * 30  # chargePointSerialNumber is CiString25: real chargers overflow it
    [call] = s.receive(
        orjson.dumps([2, "l1", "BootNotification", {**BOOT16, "chargePointSerialNumber": serial}])
    )
    assert isinstance(call, CallReceived)
    assert call.payload["chargePointSerialNumber"] == serial
    assert call.violation is not None and call.violation.code is ErrorCode.TypeConstraintViolation
    assert s.violations == 1


def test_strict_is_the_default(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock)
    serial = "SN-" + "9" * 30
    [frame] = sent(
        s.receive(
            orjson.dumps(
                [2, "l2", "BootNotification", {**BOOT16, "chargePointSerialNumber": serial}]
            )
        )
    )
    assert frame[2] == "TypeConstraintViolation"


def test_cancel_all_fails_every_waiting_call(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock)
    a, _ = s.call("Heartbeat", {})
    b, _ = s.call("Heartbeat", {})
    failed = s.cancel_all()
    assert [f.message_id for f in failed if isinstance(f, CallFailed)] == [a, b]
    assert s.pending_calls == 0 and s.next_deadline() is None
    # a caller tells a lost connection from a peer's error by its type, not its text
    assert all(isinstance(f.error, ConnectionLost) for f in failed if isinstance(f, CallFailed))


def test_a_call_may_carry_its_own_timeout(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock, call_timeout=30)
    quick, _ = s.call("Heartbeat", {}, timeout=5)
    queued, _ = s.call("Heartbeat", {})  # waits its turn, then gets the session's 30 s
    assert s.next_deadline() == clock.now + 5
    clock.now += 5
    [failed, sent_next] = s.tick()
    assert isinstance(failed, CallFailed) and failed.message_id == quick
    assert isinstance(failed.error, CallTimeout) and failed.error.timeout == 5
    assert "within 5 s" in failed.error.description
    assert sent([sent_next])[0][1] == queued
    assert s.next_deadline() == clock.now + 30


def test_unsolicited_answers_are_reported_not_raised(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock)
    for text in [
        '[3, "zz", {}]',
        '[4, "zz", "GenericError", "", {}]',
        '[3, "zz"]',
        '[4, "zz", 1, 2, 3]',
    ]:
        events = s.receive(text)
        assert of(ProtocolViolation, events), text
        assert sent(events) == [], "an answer is never answered before 2.1"


# -- the peer's CALLs: one at a time, in order, a bounded inbox (issue 14) ------------------

NOW = {"currentTime": "2026-11-25T10:00:00Z"}


def test_received_calls_are_handed_on_one_at_a_time_in_order(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock)
    [first] = s.receive('[2, "a", "Heartbeat", {}]')
    assert first == CallReceived("a", "Heartbeat", {})
    assert s.receive('[2, "b", "Heartbeat", {}]') == []
    assert s.receive('[2, "c", "Heartbeat", {}]') == []
    assert s.queued_calls == 2
    with pytest.raises(KeyError):  # only the one handed on may be answered
        s.result("b", NOW)
    events = s.result("a", NOW)
    assert sent(events) == [[3, "a", NOW]]
    assert of(CallReceived, events) == [CallReceived("b", "Heartbeat", {})]
    events = s.error("b", OcppError(ErrorCode.InternalError, "oops"))
    assert sent(events) == [[4, "b", "InternalError", "oops", {}]]
    assert [e.message_id for e in of(CallReceived, events)] == ["c"]
    assert s.result("c", NOW) == [Transmit(orjson.dumps([3, "c", NOW]).decode())]
    assert s.queued_calls == 0


def test_refusals_wait_behind_the_answers_to_earlier_calls(clock: Clock) -> None:
    """A malformed CALL's CALLERROR does not overtake the answer of one that came before it:
    a peer that takes "-1" as the answer to its CALL in flight is not misled."""
    s = RpcSession(V201, clock=clock)
    s.receive('[2, "a", "Heartbeat", {}]')
    assert not sent(s.receive("{nope"))
    assert not sent(s.receive('[2, "b", "Teleport", {}]'))
    s.receive('[2, "c", "Heartbeat", {}]')
    events = s.result("a", NOW)
    assert [a[:3] for a in sent(events)] == [
        [3, "a", NOW],
        [4, "-1", "RpcFrameworkError"],
        [4, "b", "NotImplemented"],
    ]
    assert [e.message_id for e in of(CallReceived, events)] == ["c"]


def test_a_full_inbox_refuses_at_once_with_genericerror_then_closes(clock: Clock) -> None:
    s = RpcSession(V16, clock=clock, max_queued_calls=2, max_refusals=3)
    s.receive('[2, "h0", "Heartbeat", {}]')
    s.receive('[2, "h1", "Heartbeat", {}]')
    s.receive('[2, "h2", "Heartbeat", {}]')
    for n in range(3, 6):
        events = s.receive(f'[2, "h{n}", "Heartbeat", {{}}]')
        [refusal] = sent(events)
        assert refusal[:3] == [4, f"h{n}", "GenericError"]
        assert "2 CALLs are waiting already" in refusal[3]
        assert refusal[4] == {"maxQueuedCalls": 2}
        assert not of(CloseConnection, events)
    events = s.receive('[2, "h6", "Heartbeat", {}]')
    assert sent(events)[0][:3] == [4, "h6", "GenericError"]
    [close] = of(CloseConnection, events)
    assert close.code == 1008 and "one CALL at a time" in close.reason
    # what was queued is still answered, in order
    assert sent(s.result("h0", NOW)) == [[3, "h0", NOW]]


def test_refusals_in_a_row_reset_once_the_peer_lets_the_inbox_drain(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock, max_queued_calls=1, max_refusals=2)
    for burst in range(3):
        s.receive(f'[2, "a{burst}", "Heartbeat", {{}}]')
        s.receive(f'[2, "b{burst}", "Heartbeat", {{}}]')
        for n in range(2):
            assert not of(CloseConnection, s.receive(f'[2, "x{burst}{n}", "Heartbeat", {{}}]'))
        s.result(f"a{burst}", NOW)
        s.result(f"b{burst}", NOW)  # drained: the next burst starts afresh


def test_a_duplicate_id_is_dropped_when_the_inbox_is_full(clock: Clock) -> None:
    """Its CALLERROR could not wait, and must not overtake the answer with the same id."""
    s = RpcSession(V201, clock=clock, max_queued_calls=1)
    s.receive('[2, "a", "Heartbeat", {}]')
    s.receive('[2, "b", "Heartbeat", {}]')
    events = s.receive('[2, "a", "Heartbeat", {}]')
    assert not sent(events)
    assert any("dropped" in e.error.description for e in of(ProtocolViolation, events))
    assert sent(s.result("a", NOW)) == [[3, "a", NOW]]


def test_the_inbox_bounds_what_a_flood_leaves_in_memory(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock, max_queued_calls=16, max_refusals=10**9)
    s.receive('[2, "first", "Heartbeat", {}]')
    refused = 0
    for n in range(10_000):
        refused += len(sent(s.receive(f'[2, "f{n}", "Heartbeat", {{}}]')))
    assert s.queued_calls == 16 and refused == 10_000 - 16
    assert len(s._incoming) == 17


def test_a_message_id_longer_than_36_is_refused_with_minus_one_and_not_handled(
    clock: Clock,
) -> None:
    s = RpcSession(V201, clock=clock)
    events = s.receive(orjson.dumps([2, "x" * 10_000, "Heartbeat", {}]))
    assert not of(CallReceived, events)
    [refusal] = sent(events)
    assert refusal[:3] == [4, "-1", "RpcFrameworkError"]
    assert refusal[3] == "MessageId of 10000 characters is longer than 36"
    assert len(orjson.dumps(refusal)) < 200  # nothing of the id echoed
    # 36 is fine
    [call] = s.receive(orjson.dumps([2, "y" * 36, "Heartbeat", {}]))
    assert isinstance(call, CallReceived)


def test_answers_to_our_calls_and_sends_pass_a_busy_inbox(clock: Clock) -> None:
    s = RpcSession(V21, clock=clock, max_queued_calls=1)
    mid, _ = s.call("Heartbeat", {})
    s.receive('[2, "a", "Heartbeat", {}]')
    s.receive('[2, "b", "Heartbeat", {}]')  # the inbox is full
    [done] = s.receive(orjson.dumps([3, mid, NOW]))
    assert done == CallCompleted(mid, "Heartbeat", NOW)
    stream = {"id": 1, "pending": 0, "basetime": NOW["currentTime"], "data": [{"t": 0.0, "v": "1"}]}
    [got] = s.receive(orjson.dumps([6, "s1", "NotifyPeriodicEventStream", stream]))
    assert got == SendReceived("s1", "NotifyPeriodicEventStream", stream)
    assert s.queued_calls == 1
