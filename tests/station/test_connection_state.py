"""The station's connection state machine: events and times in, actions out."""

from __future__ import annotations

import random

import pytest

from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.connection import (
    DEFAULT_BOOT_RETRY_S,
    MAX_HEARTBEAT_GAP_S,
    BootAnswered,
    BootFailed,
    CallAnswered,
    CloseConnection,
    Connected,
    ConnectFailed,
    ConnectionState,
    Disconnected,
    HeartbeatSent,
    MessageSent,
    Reconnect,
    Registered,
    ResetRequested,
    SecurityChanged,
    SendBootNotification,
)

pytestmark = pytest.mark.unit

BOOT = {"chargePointVendor": "PlugStream", "chargePointModel": "PS22", "firmwareVersion": "1"}
T0 = 1_000.0


def fresh(wait_minimum: float = 10.0, random_range: float = 0.0) -> ConnectionState:
    return ConnectionState(T0, ReconnectBackoff(wait_minimum, random_range, 3, random.Random(1)))


def booted(state: ConnectionState, at: float = T0, interval: int = 60) -> None:
    assert state.handle(Connected(at, BOOT)) == [SendBootNotification()]
    assert state.handle(BootAnswered(at, "Accepted", interval, BOOT)) == [
        Registered(booted=True, interval=interval)
    ]


def test_TC_B_01_CS_boot_on_the_first_connection_then_registered() -> None:
    state = fresh()
    assert not state.registered
    assert state.handle(Connected(T0, BOOT)) == [SendBootNotification()]
    assert not state.registered
    assert state.boot_retry_in(T0) == 0.0
    actions = state.handle(BootAnswered(T0 + 1, "Accepted", 300, BOOT))
    assert actions == [Registered(booted=True, interval=300)]
    assert state.registered
    assert state.registration == "Accepted"
    assert state.boot_retry_in(T0 + 1) is None


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
def test_TC_B_02_CS_TC_B_03_CS_retry_after_the_interval(status: str) -> None:
    state = fresh()
    state.handle(Connected(T0, BOOT))
    assert state.handle(BootAnswered(T0, status, 120, BOOT)) == []
    assert not state.registered
    assert state.registration == status
    assert state.boot_retry_in(T0) == 120.0
    assert state.boot_retry_in(T0 + 100) == 20.0
    assert state.boot_retry_in(T0 + 200) == 0.0
    # still not booted: a reconnect boots again
    state.handle(Disconnected(T0 + 5))
    assert state.handle(Connected(T0 + 30, BOOT)) == [SendBootNotification()]


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
def test_retry_after_the_default_when_the_interval_is_0(status: str) -> None:
    state = fresh()
    state.handle(Connected(T0, BOOT))
    state.handle(BootAnswered(T0, status, 0, BOOT))
    assert state.boot_retry_in(T0) == DEFAULT_BOOT_RETRY_S


def test_a_failed_boot_notification_is_retried_after_the_default() -> None:
    state = fresh()
    state.handle(Connected(T0, BOOT))
    assert state.handle(BootFailed(T0)) == []
    assert state.boot_retry_in(T0) == DEFAULT_BOOT_RETRY_S


def test_plain_reconnect_goes_straight_on_without_a_new_boot() -> None:
    state = fresh()
    booted(state)
    state.handle(Disconnected(T0 + 10))
    assert not state.registered
    assert state.handle(Connected(T0 + 20, BOOT)) == [Registered(booted=False)]
    assert state.registered


def test_changed_boot_data_boots_again() -> None:
    state = fresh()
    booted(state)
    state.handle(Disconnected(T0 + 10))
    new_firmware = {**BOOT, "firmwareVersion": "2"}
    assert state.boot_due(new_firmware)
    assert state.handle(Connected(T0 + 20, new_firmware)) == [SendBootNotification()]


def test_TC_B_20_CS_boot_after_reset_with_its_reason() -> None:
    state = fresh()
    booted(state)
    assert state.boot_reason == "PowerUp"
    assert state.handle(ResetRequested("RemoteReset")) == []
    assert state.boot_reason == "RemoteReset"
    state.handle(Disconnected(T0 + 10))
    assert state.handle(Connected(T0 + 20, BOOT)) == [SendBootNotification()]
    state.handle(BootAnswered(T0 + 21, "Accepted", 60, BOOT))
    assert state.boot_reason == "PowerUp"  # the next boot is a power-up again
    assert not state.boot_due(BOOT)


def test_heartbeat_due_after_the_interval_without_other_traffic() -> None:
    state = fresh()
    booted(state, interval=60)
    assert state.heartbeat_due_at(60) == T0 + 60
    state.handle(MessageSent(T0 + 50))  # any CALL starts the interval again
    assert state.heartbeat_due_at(60) == T0 + 110
    state.handle(HeartbeatSent(T0 + 110))
    state.handle(MessageSent(T0 + 110))
    assert state.heartbeat_due_at(60) == T0 + 170


def test_heartbeat_at_least_once_a_day_on_a_busy_link() -> None:
    state = fresh()
    booted(state, interval=3_600)
    busy = T0 + MAX_HEARTBEAT_GAP_S - 10
    state.handle(MessageSent(busy))
    assert state.heartbeat_due_at(3_600) == T0 + MAX_HEARTBEAT_GAP_S


def test_heartbeats_off_at_interval_0() -> None:
    state = fresh()
    booted(state)
    assert state.heartbeat_due_at(0) is None


def test_back_off_after_a_drop_and_reset_on_connection() -> None:
    state = fresh(wait_minimum=10.0)
    booted(state)
    assert state.handle(Disconnected(T0 + 100)) == [Reconnect(T0 + 110, 10.0)]
    assert state.handle(ConnectFailed(T0 + 110)) == [Reconnect(T0 + 130, 20.0)]
    assert state.handle(ConnectFailed(T0 + 130)) == [Reconnect(T0 + 170, 40.0)]
    state.handle(Connected(T0 + 170, BOOT))  # a successful connection resets the back-off
    assert state.handle(Disconnected(T0 + 200)) == [Reconnect(T0 + 210, 10.0)]


def test_closed_for_another_link_reconnects_at_once() -> None:
    state = fresh(wait_minimum=10.0)
    booted(state)
    assert state.handle(Disconnected(T0 + 100, at_once=True)) == [Reconnect(T0 + 100, 0.0)]
    assert state.backoff.attempts == 0


def test_TC_A_09_CS_reconnect_once_the_changing_call_is_answered() -> None:
    state = fresh()
    booted(state)
    assert state.handle(CallAnswered()) == []  # nothing changed: stay
    assert state.handle(SecurityChanged()) == []
    assert state.handle(CallAnswered()) == [CloseConnection()]
    assert state.handle(CallAnswered()) == []  # once
