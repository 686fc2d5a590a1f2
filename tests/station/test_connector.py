"""The connector status machine: OCPP 1.6 4.9 transitions, 2.0.1 G01/G03/G04/H01."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from plugstream.station.connector import (
    TRANSITIONS_16,
    Action,
    AvailabilityStatus,
    CancelReservationStatus,
    ChargePointErrorCode,
    ChargePointStatus,
    Connector,
    ConnectorStatus,
    InvalidTransition,
    ReservationEnded,
    ReservationEndReason,
    ReservationStatus,
    StatusChanged,
    to_201,
)

pytestmark = pytest.mark.unit

S = ChargePointStatus
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def statuses(actions: list[Action]) -> list[ChargePointStatus]:
    """The 1.6 statuses reported (not the changes only 2.0.1 reports)."""
    return [a.status_16 for a in actions if isinstance(a, StatusChanged) and a.changed_16]


def charging(c: Connector) -> None:
    c.plug_in(T0)
    c.authorized("TAG1", T0)
    c.start_transaction(T0)
    assert c.status_16 is S.CHARGING


def test_full_session_one_status_changed_per_step() -> None:
    c = Connector(1)
    assert (c.status_16, c.status_201) == (S.AVAILABLE, ConnectorStatus.AVAILABLE)
    steps = [
        (c.plug_in, S.PREPARING),
        (lambda now: c.authorized("TAG1", now), None),  # already Preparing: nothing new
        (c.start_transaction, S.CHARGING),
        (c.ev_suspended, S.SUSPENDED_EV),
        (c.ev_resumed, S.CHARGING),
        (c.stop_transaction, S.FINISHING),
        (c.unplug, S.AVAILABLE),
    ]
    for i, (event, expected) in enumerate(steps):
        now = T0 + timedelta(minutes=i)
        actions = event(now)
        if expected is None:
            assert actions == []
            continue
        assert actions == [
            StatusChanged(1, 1, expected, to_201(expected), ChargePointErrorCode.NO_ERROR, now)
        ]
        assert c.status_16 is expected


def test_TC_G_01_CS_and_TC_G_02_CS_occupied_mapping_in_201() -> None:
    c = Connector(2, evse_id=1)
    [changed] = c.plug_in(T0)
    assert isinstance(changed, StatusChanged)
    assert (changed.evse_id, changed.connector_id) == (1, 2)
    assert changed.status_201 is ConnectorStatus.OCCUPIED
    for s in (S.PREPARING, S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FINISHING):
        assert to_201(s) is ConnectorStatus.OCCUPIED
    assert to_201(S.RESERVED) is ConnectorStatus.RESERVED
    assert to_201(S.UNAVAILABLE) is ConnectorStatus.UNAVAILABLE
    assert to_201(S.FAULTED) is ConnectorStatus.FAULTED
    [back] = c.unplug(T0)
    assert isinstance(back, StatusChanged)
    assert back.status_201 is ConnectorStatus.AVAILABLE


def test_suspended_evse_takes_precedence() -> None:
    c = Connector(1)
    charging(c)
    assert statuses(c.evse_suspended(T0)) == [S.SUSPENDED_EVSE]
    assert c.ev_suspended(T0) == []  # still SuspendedEVSE
    assert statuses(c.evse_resumed(T0)) == [S.SUSPENDED_EV]  # E4
    assert statuses(c.ev_resumed(T0)) == [S.CHARGING]  # D3


def test_start_without_ev_ready_and_unplug_ends_session() -> None:
    c = Connector(1)
    c.plug_in(T0)
    assert statuses(c.start_transaction(T0, ev_ready=False)) == [S.SUSPENDED_EV]  # B4
    assert statuses(c.unplug(T0)) == [S.AVAILABLE]  # D1
    assert not c.transaction_ongoing


def test_TC_G_07_CS_and_TC_G_08_CS_inoperative_and_back_when_idle() -> None:
    c = Connector(1)
    reply = c.change_availability(False, T0)
    assert reply.status is AvailabilityStatus.ACCEPTED
    assert statuses(reply.actions) == [S.UNAVAILABLE]
    assert not c.may_start_transaction()
    reply = c.change_availability(True, T0)
    assert reply.status is AvailabilityStatus.ACCEPTED
    assert statuses(reply.actions) == [S.AVAILABLE]


def test_TC_G_15_CS_and_TC_G_16_CS_same_state_accepted_without_notification() -> None:
    c = Connector(1)
    reply = c.change_availability(True, T0)
    assert (reply.status, reply.actions) == (AvailabilityStatus.ACCEPTED, [])
    c.change_availability(False, T0)
    reply = c.change_availability(False, T0)
    assert (reply.status, reply.actions) == (AvailabilityStatus.ACCEPTED, [])


def test_TC_G_17_CS_inoperative_while_charging_is_scheduled() -> None:
    c = Connector(1)
    charging(c)
    reply = c.change_availability(False, T0)
    assert reply.status is AvailabilityStatus.SCHEDULED
    assert reply.actions == []
    assert c.status_16 is S.CHARGING and c.operative and c.pending_operative is False
    assert statuses(c.stop_transaction(T0)) == [S.FINISHING]
    assert statuses(c.unplug(T0)) == [S.UNAVAILABLE]  # F8
    assert not c.operative and c.pending_operative is None


def test_scheduled_inoperative_applied_when_ev_disconnects_during_transaction() -> None:
    c = Connector(1)
    charging(c)
    c.change_availability(False, T0)
    assert statuses(c.unplug(T0)) == [S.UNAVAILABLE]  # C8


def test_scheduled_change_cancelled_by_operative() -> None:
    c = Connector(1)
    charging(c)
    assert c.change_availability(False, T0).status is AvailabilityStatus.SCHEDULED
    assert c.change_availability(True, T0).status is AvailabilityStatus.ACCEPTED
    c.stop_transaction(T0)
    assert statuses(c.unplug(T0)) == [S.AVAILABLE]


def test_plug_in_while_unavailable_then_operative_goes_preparing() -> None:
    c = Connector(1, operative=False)
    assert c.status_16 is S.UNAVAILABLE
    assert c.plug_in(T0) == []
    assert statuses(c.change_availability(True, T0).actions) == [S.PREPARING]  # H2


def test_TC_H_01_CS_reservation_used_by_reserved_tag() -> None:
    c = Connector(1)
    reply = c.reserve(7, "TAG1", T0 + timedelta(minutes=15), T0)
    assert reply.status is ReservationStatus.ACCEPTED
    assert statuses(reply.actions) == [S.RESERVED]
    assert c.status_201 is ConnectorStatus.RESERVED
    assert c.may_start_transaction("tag1")  # CiString: case-insensitive
    assert not c.may_start_transaction("OTHER")
    actions = c.authorized("TAG1", T0)
    assert actions[0] == ReservationEnded(1, 7, ReservationEndReason.USED, T0)
    assert statuses(actions) == [S.PREPARING]  # G2
    assert c.reservation is None


def test_TC_H_02_CS_reserved_connector_refuses_other_tag() -> None:
    c = Connector(1)
    c.reserve(7, "TAG1", T0 + timedelta(minutes=15), T0, parent_id_tag="GROUP")
    assert c.plug_in(T0) == []  # G03.FR.09: a stranger's plug-in changes nothing
    with pytest.raises(InvalidTransition):
        c.authorized("OTHER", T0)
    with pytest.raises(InvalidTransition):
        c.start_transaction(T0)
    assert c.status_16 is S.RESERVED and c.reservation is not None
    assert statuses(c.authorized("OTHER", T0, parent_id_tag="group")) == [S.PREPARING]


def test_TC_H_07_CS_reservation_expires() -> None:
    c = Connector(1)
    c.reserve(7, "TAG1", T0 + timedelta(minutes=15), T0)
    assert c.tick(T0 + timedelta(minutes=14)) == []
    later = T0 + timedelta(minutes=15)
    actions = c.tick(later)
    assert actions[0] == ReservationEnded(1, 7, ReservationEndReason.EXPIRED, later)
    assert statuses(actions) == [S.AVAILABLE]  # G1
    assert c.tick(later) == []


def test_expiry_with_a_stranger_plugged_in_goes_preparing() -> None:
    c = Connector(1)
    c.reserve(7, "TAG1", T0 + timedelta(minutes=1), T0)
    c.plug_in(T0)
    assert statuses(c.tick(T0 + timedelta(minutes=1))) == [S.PREPARING]


def test_TC_H_03_CS_TC_H_04_CS_TC_H_06_CS_reserve_answers() -> None:
    expiry = T0 + timedelta(hours=1)
    c = Connector(1)
    c.reserve(1, "A", expiry, T0)
    assert c.reserve(2, "B", expiry, T0).status is ReservationStatus.OCCUPIED
    replaced = c.reserve(1, "B", expiry, T0)  # H01.FR.02
    assert (replaced.status, replaced.actions) == (ReservationStatus.ACCEPTED, [])
    assert c.reservation is not None and c.reservation.id_tag == "B"

    busy = Connector(2)
    charging(busy)
    assert busy.reserve(3, "A", expiry, T0).status is ReservationStatus.OCCUPIED
    off = Connector(3, operative=False)
    assert off.reserve(3, "A", expiry, T0).status is ReservationStatus.UNAVAILABLE
    broken = Connector(4)
    broken.fault(ChargePointErrorCode.GROUND_FAILURE, T0)
    assert broken.reserve(3, "A", expiry, T0).status is ReservationStatus.FAULTED


def test_TC_H_17_CS_TC_H_18_CS_cancel_reservation() -> None:
    c = Connector(1)
    c.reserve(7, "TAG1", T0 + timedelta(hours=1), T0)
    assert c.cancel_reservation(8, T0).status is CancelReservationStatus.REJECTED
    reply = c.cancel_reservation(7, T0)
    assert reply.status is CancelReservationStatus.ACCEPTED
    assert statuses(reply.actions) == [S.AVAILABLE]


def test_TC_H_21_CS_inoperative_removes_reservation() -> None:
    c = Connector(1)
    c.reserve(7, "TAG1", T0 + timedelta(hours=1), T0)
    reply = c.change_availability(False, T0)
    assert reply.status is AvailabilityStatus.ACCEPTED
    assert reply.actions[0] == ReservationEnded(1, 7, ReservationEndReason.REMOVED, T0)
    assert statuses(reply.actions) == [S.UNAVAILABLE]  # G8


def test_fault_while_charging_and_cleared_back_to_charging() -> None:
    c = Connector(1)
    charging(c)
    [faulted] = c.fault(ChargePointErrorCode.OVER_CURRENT_FAILURE, T0, info="RCD tripped")
    assert faulted == StatusChanged(
        1,
        1,
        S.FAULTED,
        ConnectorStatus.FAULTED,
        ChargePointErrorCode.OVER_CURRENT_FAILURE,
        T0,
        "RCD tripped",
    )
    assert not c.may_start_transaction()
    assert c.fault(ChargePointErrorCode.OVER_CURRENT_FAILURE, T0) == []  # no duplicate
    [other] = c.fault(ChargePointErrorCode.HIGH_TEMPERATURE, T0)
    assert isinstance(other, StatusChanged)
    assert other.error_code is ChargePointErrorCode.HIGH_TEMPERATURE
    [cleared] = c.clear_fault(T0)
    assert isinstance(cleared, StatusChanged)
    assert (cleared.status_16, cleared.error_code) == (S.CHARGING, ChargePointErrorCode.NO_ERROR)


def test_fault_removes_reservation_and_clears_to_available() -> None:
    c = Connector(1)
    c.reserve(7, "TAG1", T0 + timedelta(hours=1), T0)
    actions = c.fault(ChargePointErrorCode.INTERNAL_ERROR, T0)
    assert actions[0] == ReservationEnded(1, 7, ReservationEndReason.REMOVED, T0)
    assert statuses(actions) == [S.FAULTED]
    assert statuses(c.clear_fault(T0)) == [S.AVAILABLE]


def test_inoperative_while_faulted_clears_to_unavailable() -> None:
    c = Connector(1)
    c.fault(ChargePointErrorCode.POWER_SWITCH_FAILURE, T0)
    reply = c.change_availability(False, T0)
    assert (reply.status, reply.actions) == (AvailabilityStatus.ACCEPTED, [])
    assert statuses(c.clear_fault(T0)) == [S.UNAVAILABLE]  # I8


def test_not_a_fault() -> None:
    c = Connector(1)
    with pytest.raises(ValueError):
        c.fault(ChargePointErrorCode.NO_ERROR, T0)
    with pytest.raises(ValueError):
        c.fault(ChargePointErrorCode.EV_COMMUNICATION_ERROR, T0)


@pytest.mark.parametrize(
    "event",
    [
        "unplug",
        "stop_transaction",
        "ev_suspended",
        "evse_resumed",
        "clear_fault",
        "connection_timeout",
    ],
)
def test_invalid_events_in_available_are_rejected(event: str) -> None:
    c = Connector(1)
    with pytest.raises(InvalidTransition):
        getattr(c, event)(T0)
    assert c.status_16 is S.AVAILABLE
    assert statuses(c.plug_in(T0)) == [S.PREPARING]  # the machine is unharmed


def test_invalid_events_elsewhere_are_rejected() -> None:
    c = Connector(1)
    charging(c)
    with pytest.raises(InvalidTransition):
        c.plug_in(T0)
    with pytest.raises(InvalidTransition):
        c.authorized("TAG2", T0)
    with pytest.raises(InvalidTransition):
        c.start_transaction(T0)
    assert c.status_16 is S.CHARGING and c.transaction_ongoing

    off = Connector(2, operative=False)
    with pytest.raises(InvalidTransition):
        off.authorized("TAG1", T0)
    with pytest.raises(InvalidTransition):
        off.start_transaction(T0)
    assert off.status_16 is S.UNAVAILABLE


def test_connection_timeout_and_restart_from_finishing() -> None:
    c = Connector(1)
    c.plug_in(T0)
    assert statuses(c.connection_timeout(T0)) == [S.FINISHING]  # B6
    assert statuses(c.authorized("TAG1", T0)) == [S.PREPARING]  # F2
    assert c.id_tag == "TAG1"
    c.unplug(T0)
    d = Connector(2)
    d.authorized("TAG1", T0)
    assert statuses(d.connection_timeout(T0)) == [S.AVAILABLE]  # B1


def test_201_occupied_when_the_cable_is_in_not_at_the_authorization() -> None:
    """An idToken accepted before the car (a RequestStartTransaction): 1.6 Preparing, 2.0.1
    still Available; the cable goes in: 2.0.1 Occupied, told by a change 1.6 does not
    report (it is Preparing still). Plugged in first: Occupied at once."""
    c = Connector(1)
    (change,) = c.authorized("TAG1", T0)
    assert isinstance(change, StatusChanged)
    assert (change.status_16, change.status_201) == (S.PREPARING, ConnectorStatus.AVAILABLE)
    assert c.status_201 is ConnectorStatus.AVAILABLE
    (change,) = c.plug_in(T0)
    assert isinstance(change, StatusChanged) and not change.changed_16
    assert (change.status_16, change.status_201) == (S.PREPARING, ConnectorStatus.OCCUPIED)
    assert c.status_201 is ConnectorStatus.OCCUPIED
    d = Connector(2)
    (change,) = d.plug_in(T0)
    assert change.changed_16 and change.status_201 is ConnectorStatus.OCCUPIED


def test_duplicates_are_not_reported() -> None:
    c = Connector(1)
    charging(c)
    assert c.ev_resumed(T0) == []
    assert c.evse_resumed(T0) == []
    assert statuses(c.ev_suspended(T0)) == [S.SUSPENDED_EV]
    assert c.ev_suspended(T0) == []


def test_every_reported_step_is_in_the_16_table() -> None:
    """Random walks: every StatusChanged follows the 1.6 table and matches the state."""
    import random

    rng = random.Random(16)
    events = [
        lambda c, t: c.plug_in(t),
        lambda c, t: c.unplug(t),
        lambda c, t: c.authorized("TAG1", t),
        lambda c, t: c.start_transaction(t),
        lambda c, t: c.ev_suspended(t),
        lambda c, t: c.ev_resumed(t),
        lambda c, t: c.evse_suspended(t),
        lambda c, t: c.evse_resumed(t),
        lambda c, t: c.stop_transaction(t),
        lambda c, t: c.connection_timeout(t),
        lambda c, t: c.fault(ChargePointErrorCode.GROUND_FAILURE, t),
        lambda c, t: c.clear_fault(t),
        lambda c, t: c.tick(t),
        lambda c, t: c.change_availability(False, t).actions,
        lambda c, t: c.change_availability(True, t).actions,
        lambda c, t: c.reserve(1, "TAG1", t + timedelta(seconds=30), t).actions,
        lambda c, t: c.cancel_reservation(1, t).actions,
    ]
    for _ in range(50):
        c = Connector(1)
        now = T0
        for _ in range(60):
            now += timedelta(seconds=rng.randint(1, 20))
            before = c.status_16
            try:
                actions = rng.choice(events)(c, now)
            except InvalidTransition:
                assert c.status_16 is before
                continue
            seen = statuses(actions)
            for a, b in itertools.pairwise([before, *seen]):
                assert b in TRANSITIONS_16[a], (a, b)
            if seen:
                assert seen[-1] is c.status_16
