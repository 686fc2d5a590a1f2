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


def test_duplicate_id_while_handling_is_refused(clock: Clock) -> None:
    s = RpcSession(V201, clock=clock)
    s.receive('[2, "c3", "Heartbeat", {}]')
    [frame] = sent(s.receive('[2, "c3", "Heartbeat", {}]'))
    assert frame[:3] == [4, "c3", "RpcFrameworkError"]
    # the first one can still be answered
    assert sent(s.result("c3", {"currentTime": "2026-11-25T10:00:00Z"}))[0][0] == 3


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
