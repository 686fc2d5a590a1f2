"""The connector status machine of a charge point, sans I/O.

One :class:`Connector` per physical connector. It takes events — the cable is
plugged in, an idTag is authorized, energy flows, the EV or the EVSE suspends,
the CSMS sends ChangeAvailability, ReserveNow or CancelReservation, a fault is
detected or cleared — and returns the actions that follow, above all
:class:`StatusChanged`, from which the OCPP layer builds a StatusNotification
(1.6: ``status`` is a ChargePointStatus; 2.0.1: ``connectorStatus`` is a
ConnectorStatusEnumType). It knows no socket and no clock: every event takes
``now``.

The status is derived from facts (plugged, usage phase, suspensions,
availability, reservation, fault) and every change is checked against the
transition table of OCPP 1.6 section 4.9. Events that make no sense in the
current state raise :class:`InvalidTransition` and change nothing; events that
change no status return no :class:`StatusChanged`.

Availability (1.6 5.2, 2.0.1 G03): Inoperative while the connector is in use
answers ``Scheduled`` and is applied when the connector becomes free again.
Reservations (1.6 5.13, 2.0.1 H01): Reserved until the reservation expires, is
cancelled, or the reserved idTag (or its parent idTag) is presented; a plug-in
by anybody else leaves it Reserved (G03.FR.09); Faulted or Unavailable end it
(H01.FR.16/17). Faults: Faulted from any state; when cleared the connector
returns to the state its facts call for, which is the pre-fault state unless
something (unplugging, an availability change, reservation expiry) happened in
between.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

__all__ = [
    "TRANSITIONS_16",
    "Action",
    "AvailabilityStatus",
    "CancelReservationStatus",
    "ChargePointErrorCode",
    "ChargePointStatus",
    "Connector",
    "ConnectorStatus",
    "InvalidTransition",
    "Reply",
    "Reservation",
    "ReservationEndReason",
    "ReservationEnded",
    "ReservationStatus",
    "StatusChanged",
    "to_201",
]


class ChargePointStatus(enum.StrEnum):
    """OCPP 1.6 ChargePointStatus (7.7)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class ConnectorStatus(enum.StrEnum):
    """OCPP 2.0.1 ConnectorStatusEnumType."""

    AVAILABLE = "Available"
    OCCUPIED = "Occupied"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class ChargePointErrorCode(enum.StrEnum):
    """OCPP 1.6 ChargePointErrorCode (7.6)."""

    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    LOCAL_LIST_CONFLICT = "LocalListConflict"
    NO_ERROR = "NoError"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    WEAK_SIGNAL = "WeakSignal"


class AvailabilityStatus(enum.StrEnum):
    """ChangeAvailability answer: 1.6 AvailabilityStatus, 2.0.1 ChangeAvailabilityStatusEnumType."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    SCHEDULED = "Scheduled"


class ReservationStatus(enum.StrEnum):
    """ReserveNow answer: 1.6 ReservationStatus, 2.0.1 ReserveNowStatusEnumType."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class CancelReservationStatus(enum.StrEnum):
    """CancelReservation answer (1.6 and 2.0.1)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class ReservationEndReason(enum.StrEnum):
    """Why a reservation ended. ``Expired``/``Removed`` are 2.0.1's
    ReservationUpdateStatusEnumType (send a ReservationStatusUpdate); ``Used``
    means the reserved idTag arrived (put the reservationId in the transaction
    message); ``Cancelled`` is answered by CancelReservationResponse."""

    EXPIRED = "Expired"
    REMOVED = "Removed"
    USED = "Used"
    CANCELLED = "Cancelled"


_S = ChargePointStatus

#: OCPP 1.6 section 4.9: the status transitions a connector (id > 0) may make.
TRANSITIONS_16: dict[ChargePointStatus, frozenset[ChargePointStatus]] = {
    _S.AVAILABLE: frozenset(
        {
            _S.PREPARING,
            _S.CHARGING,
            _S.SUSPENDED_EV,
            _S.SUSPENDED_EVSE,
            _S.RESERVED,
            _S.UNAVAILABLE,
            _S.FAULTED,
        }
    ),
    _S.PREPARING: frozenset(
        {
            _S.AVAILABLE,
            _S.CHARGING,
            _S.SUSPENDED_EV,
            _S.SUSPENDED_EVSE,
            _S.FINISHING,
            _S.FAULTED,
        }
    ),
    _S.CHARGING: frozenset(
        {
            _S.AVAILABLE,
            _S.SUSPENDED_EV,
            _S.SUSPENDED_EVSE,
            _S.FINISHING,
            _S.UNAVAILABLE,
            _S.FAULTED,
        }
    ),
    _S.SUSPENDED_EV: frozenset(
        {
            _S.AVAILABLE,
            _S.CHARGING,
            _S.SUSPENDED_EVSE,
            _S.FINISHING,
            _S.UNAVAILABLE,
            _S.FAULTED,
        }
    ),
    _S.SUSPENDED_EVSE: frozenset(
        {
            _S.AVAILABLE,
            _S.CHARGING,
            _S.SUSPENDED_EV,
            _S.FINISHING,
            _S.UNAVAILABLE,
            _S.FAULTED,
        }
    ),
    _S.FINISHING: frozenset({_S.AVAILABLE, _S.PREPARING, _S.UNAVAILABLE, _S.FAULTED}),
    _S.RESERVED: frozenset({_S.AVAILABLE, _S.PREPARING, _S.UNAVAILABLE, _S.FAULTED}),
    _S.UNAVAILABLE: frozenset(
        {
            _S.AVAILABLE,
            _S.PREPARING,
            _S.CHARGING,
            _S.SUSPENDED_EV,
            _S.SUSPENDED_EVSE,
            _S.FAULTED,
        }
    ),
    _S.FAULTED: frozenset(
        {
            _S.AVAILABLE,
            _S.PREPARING,
            _S.CHARGING,
            _S.SUSPENDED_EV,
            _S.SUSPENDED_EVSE,
            _S.FINISHING,
            _S.RESERVED,
            _S.UNAVAILABLE,
        }
    ),
}

_TO_201: dict[ChargePointStatus, ConnectorStatus] = {
    _S.AVAILABLE: ConnectorStatus.AVAILABLE,
    _S.PREPARING: ConnectorStatus.OCCUPIED,
    _S.CHARGING: ConnectorStatus.OCCUPIED,
    _S.SUSPENDED_EV: ConnectorStatus.OCCUPIED,
    _S.SUSPENDED_EVSE: ConnectorStatus.OCCUPIED,
    _S.FINISHING: ConnectorStatus.OCCUPIED,
    _S.RESERVED: ConnectorStatus.RESERVED,
    _S.UNAVAILABLE: ConnectorStatus.UNAVAILABLE,
    _S.FAULTED: ConnectorStatus.FAULTED,
}


def to_201(status: ChargePointStatus) -> ConnectorStatus:
    """Map a 1.6 ChargePointStatus to 2.0.1's ConnectorStatusEnumType."""
    return _TO_201[status]


class InvalidTransition(Exception):
    """The event is not allowed in the connector's current state; nothing changed."""


@dataclass(slots=True, frozen=True)
class StatusChanged:
    """The connector's status changed: send a StatusNotification."""

    connector_id: int
    evse_id: int
    status_16: ChargePointStatus
    status_201: ConnectorStatus
    error_code: ChargePointErrorCode
    timestamp: datetime
    info: str | None = None
    changed_16: bool = True
    """False: only the 2.0.1 status changed (a cable plugged in while Preparing): a 1.6
    station has nothing to report."""


@dataclass(slots=True, frozen=True)
class ReservationEnded:
    """A reservation on this connector ended."""

    connector_id: int
    reservation_id: int
    reason: ReservationEndReason
    timestamp: datetime


Action = StatusChanged | ReservationEnded


_T = TypeVar("_T", bound=enum.StrEnum)


@dataclass(slots=True, frozen=True)
class Reply(Generic[_T]):
    """The answer to a CSMS request (``status``) and the actions it caused."""

    status: _T
    actions: list[Action] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Reservation:
    reservation_id: int
    id_tag: str
    expiry: datetime
    parent_id_tag: str | None = None

    def matches(self, id_tag: str, parent_id_tag: str | None = None) -> bool:
        """idTags are CiString: compared case-insensitively; the parent idTag also matches."""
        if id_tag.casefold() == self.id_tag.casefold():
            return True
        return (
            parent_id_tag is not None
            and self.parent_id_tag is not None
            and parent_id_tag.casefold() == self.parent_id_tag.casefold()
        )


class _Phase(enum.Enum):
    IDLE = enum.auto()
    PREPARING = enum.auto()
    TRANSACTION = enum.auto()
    FINISHING = enum.auto()


class Connector:
    """The status machine of one connector (connectorId > 0)."""

    def __init__(
        self,
        connector_id: int,
        *,
        evse_id: int | None = None,
        operative: bool = True,
    ) -> None:
        if connector_id < 1:
            raise ValueError("connector_id must be > 0 (connector 0 is the charge point itself)")
        self.connector_id = connector_id
        self.evse_id = connector_id if evse_id is None else evse_id
        self._plugged = False
        self._phase = _Phase.IDLE
        self._ev_suspended = False
        self._evse_suspended = False
        self._operative = operative  # persisted by the caller (1.6 5.2, G03.FR.08)
        self._pending_operative: bool | None = None
        self._reservation: Reservation | None = None
        self._fault: ChargePointErrorCode | None = None
        self._info: str | None = None
        self._id_tag: str | None = None
        self._status = self._target()

    # ------------------------------------------------------------------ state

    @property
    def status_16(self) -> ChargePointStatus:
        return self._status

    @property
    def status_201(self) -> ConnectorStatus:
        return self._to_201(self._status)

    def _to_201(self, status: ChargePointStatus) -> ConnectorStatus:
        """``status`` in 2.0.1's words for this connector now: Preparing without a cable
        (an idToken accepted, a RequestStartTransaction, the car not there yet) is still
        Available -- a 2.0.1 connector is Occupied once the EV is connected (E02/F01),
        not before; with the cable in it is Occupied."""
        if status is _S.PREPARING and not self._plugged:
            return ConnectorStatus.AVAILABLE
        return to_201(status)

    @property
    def error_code(self) -> ChargePointErrorCode:
        return self._fault or ChargePointErrorCode.NO_ERROR

    @property
    def operative(self) -> bool:
        """The availability in effect (persist this across reboots)."""
        return self._operative

    @property
    def pending_operative(self) -> bool | None:
        """A scheduled availability change, applied when the connector is free."""
        return self._pending_operative

    @property
    def reservation(self) -> Reservation | None:
        return self._reservation

    @property
    def plugged(self) -> bool:
        return self._plugged

    @property
    def transaction_ongoing(self) -> bool:
        return self._phase is _Phase.TRANSACTION

    @property
    def id_tag(self) -> str | None:
        """The idTag authorized for the current usage, if any."""
        return self._id_tag

    def may_start_transaction(
        self, id_tag: str | None = None, parent_id_tag: str | None = None
    ) -> bool:
        """Whether a new transaction (for ``id_tag``) may start on this connector now."""
        if self._fault is not None or not self._operative or self._pending_operative is False:
            return False
        if self._phase is _Phase.TRANSACTION:
            return False
        if self._reservation is not None:
            return id_tag is not None and self._reservation.matches(id_tag, parent_id_tag)
        return True

    def current_status(self, now: datetime) -> StatusChanged:
        """The current status as a notification (after boot, or for TriggerMessage)."""
        return self._notification(self._status, now, self._info)

    # ----------------------------------------------------------- hardware events

    def plug_in(self, now: datetime) -> list[Action]:
        """The cable is connected (A2). Reserved/Unavailable/Faulted stay so (G03.FR.09)."""
        if self._plugged:
            raise InvalidTransition("already plugged in")
        before = self.status_201
        self._plugged = True
        actions = self._settle(now)
        if not actions and self.status_201 is not before:
            # Preparing already (authorized first): 1.6 has nothing new to say, 2.0.1 is
            # Occupied now that the EV is connected
            actions = [self._notification(self._status, now, self._info, changed_16=False)]
        return actions

    def unplug(self, now: datetime) -> list[Action]:
        """The cable is removed: usage ends (B1, C1/D1/E1, F1, or x8 when scheduled Unavailable).

        During a transaction this is an EV-side disconnect with
        StopTransactionOnEVSideDisconnect true: the transaction ends too.
        """
        if not self._plugged:
            raise InvalidTransition("not plugged in")
        self._plugged = False
        if self._phase is not _Phase.IDLE:
            self._end_usage()
        return self._settle(now)

    def authorized(
        self, id_tag: str, now: datetime, *, parent_id_tag: str | None = None
    ) -> list[Action]:
        """An idTag was accepted for this connector (local list, Authorize or RemoteStart).

        Available → Preparing (A2), Reserved → Preparing for the reserved idTag
        only (G2), Finishing → Preparing (F2: a new session).
        """
        if self._phase is _Phase.TRANSACTION:
            raise InvalidTransition("a transaction is ongoing")
        if not self._usable() or self._pending_operative is False:
            raise InvalidTransition(f"connector is {self._status}")
        actions: list[Action] = []
        if self._reservation is not None:
            if not self._reservation.matches(id_tag, parent_id_tag):
                raise InvalidTransition("connector is reserved for another idTag")
            actions.append(self._end_reservation(ReservationEndReason.USED, now))
        self._id_tag = id_tag
        self._phase = _Phase.PREPARING
        return actions + self._settle(now)

    def start_transaction(
        self, now: datetime, *, ev_ready: bool = True, evse_ready: bool = True
    ) -> list[Action]:
        """All prerequisites are met and the transaction starts: Charging (B3, A3),
        or SuspendedEV/SuspendedEVSE when the EV/EVSE does not allow charging (B4/B5)."""
        if not self.may_start_transaction(self._id_tag):
            raise InvalidTransition(f"no transaction may start in {self._status}")
        self._phase = _Phase.TRANSACTION
        self._ev_suspended = not ev_ready
        self._evse_suspended = not evse_ready
        return self._settle(now)

    def ev_suspended(self, now: datetime, info: str | None = None) -> list[Action]:
        """The EV stops drawing energy (C4, E4 once the EVSE restriction is lifted)."""
        self._require_transaction()
        self._ev_suspended = True
        return self._settle(now, info)

    def ev_resumed(self, now: datetime) -> list[Action]:
        """The EV draws energy again (D3)."""
        self._require_transaction()
        self._ev_suspended = False
        return self._settle(now)

    def evse_suspended(self, now: datetime, info: str | None = None) -> list[Action]:
        """The EVSE stops offering energy, e.g. a smart-charging limit (C5, D5).

        SuspendedEVSE takes precedence over SuspendedEV (1.6 4.9)."""
        self._require_transaction()
        self._evse_suspended = True
        return self._settle(now, info)

    def evse_resumed(self, now: datetime) -> list[Action]:
        """The EVSE restriction is lifted (E3, or E4 when the EV is suspended too)."""
        self._require_transaction()
        self._evse_suspended = False
        return self._settle(now)

    def stop_transaction(self, now: datetime) -> list[Action]:
        """The transaction stops (user, RemoteStop, deauthorized): Finishing while the
        cable is still in (C6/D6/E6)."""
        self._require_transaction()
        self._end_usage()
        if self._plugged:
            self._phase = _Phase.FINISHING
        return self._settle(now)

    def connection_timeout(self, now: datetime) -> list[Action]:
        """ConnectionTimeOut expired in Preparing: Finishing if a cable waits for
        removal (B6), Available otherwise (B1)."""
        if self._phase is not _Phase.PREPARING:
            raise InvalidTransition(f"no connection timeout in {self._status}")
        self._end_usage()
        if self._plugged:
            self._phase = _Phase.FINISHING
        return self._settle(now)

    def fault(
        self, error_code: ChargePointErrorCode, now: datetime, info: str | None = None
    ) -> list[Action]:
        """A fault that prevents charging (x9). Ends a reservation (H01.FR.16)."""
        if error_code in (
            ChargePointErrorCode.NO_ERROR,
            ChargePointErrorCode.EV_COMMUNICATION_ERROR,  # a warning, not a fault (1.6 7.6)
        ):
            raise ValueError(f"{error_code} is not a fault")
        if self._fault == error_code:
            return []
        actions: list[Action] = []
        if self._reservation is not None:
            actions.append(self._end_reservation(ReservationEndReason.REMOVED, now))
        if self._fault is not None:  # another error while Faulted: report it
            self._fault = error_code
            self._info = info
            return [*actions, self._notification(self._status, now, info)]
        self._fault = error_code
        return actions + self._settle(now, info)

    def clear_fault(self, now: datetime) -> list[Action]:
        """The fault is resolved: back to the pre-fault state, or to what the facts
        now call for (I1-I8)."""
        if self._fault is None:
            raise InvalidTransition("no fault to clear")
        self._fault = None
        return self._settle(now)

    def tick(self, now: datetime) -> list[Action]:
        """Timers: ends an expired reservation (G1, G8)."""
        if self._reservation is None or now < self._reservation.expiry:
            return []
        actions: list[Action] = [self._end_reservation(ReservationEndReason.EXPIRED, now)]
        return actions + self._settle(now)

    # ------------------------------------------------------------ CSMS requests

    def change_availability(self, operative: bool, now: datetime) -> Reply[AvailabilityStatus]:
        """ChangeAvailability for this connector (1.6 5.2, 2.0.1 G03/G04).

        Already in the requested availability: Accepted (G03.FR.03). In use
        (Preparing, a transaction, Finishing): Scheduled, applied when the
        connector is free again (G03.FR.05, C8/D8/E8/F8). Inoperative on a
        Reserved connector ends the reservation (H01.FR.17)."""
        if self._operative == operative and self._pending_operative in (None, operative):
            self._pending_operative = None
            return Reply(AvailabilityStatus.ACCEPTED)
        if self._phase is not _Phase.IDLE:
            if self._operative == operative:  # cancels a scheduled change
                self._pending_operative = None
                return Reply(AvailabilityStatus.ACCEPTED)
            self._pending_operative = operative
            return Reply(AvailabilityStatus.SCHEDULED)
        actions: list[Action] = []
        self._operative = operative
        self._pending_operative = None
        if not operative and self._reservation is not None:
            actions.append(self._end_reservation(ReservationEndReason.REMOVED, now))
        return Reply(AvailabilityStatus.ACCEPTED, actions + self._settle(now))

    def reserve(
        self,
        reservation_id: int,
        id_tag: str,
        expiry: datetime,
        now: datetime,
        *,
        parent_id_tag: str | None = None,
    ) -> Reply[ReservationStatus]:
        """ReserveNow for this connector (1.6 5.13, 2.0.1 H01): A7."""
        new = Reservation(reservation_id, id_tag, expiry, parent_id_tag)
        current = self._reservation
        if current is not None and current.reservation_id == reservation_id:
            self._reservation = new  # H01.FR.02: replace
            return Reply(ReservationStatus.ACCEPTED)
        if self._fault is not None:
            return Reply(ReservationStatus.FAULTED)
        if not self._operative or self._pending_operative is False:
            return Reply(ReservationStatus.UNAVAILABLE)
        if current is not None or self._phase is not _Phase.IDLE or self._plugged:
            return Reply(ReservationStatus.OCCUPIED)
        self._reservation = new
        return Reply(ReservationStatus.ACCEPTED, self._settle(now))

    def cancel_reservation(
        self, reservation_id: int, now: datetime
    ) -> Reply[CancelReservationStatus]:
        """CancelReservation (G1, G8)."""
        if self._reservation is None or self._reservation.reservation_id != reservation_id:
            return Reply(CancelReservationStatus.REJECTED)
        actions: list[Action] = [self._end_reservation(ReservationEndReason.CANCELLED, now)]
        return Reply(CancelReservationStatus.ACCEPTED, actions + self._settle(now))

    # ---------------------------------------------------------------- internals

    def _usable(self) -> bool:
        return self._fault is None and self._operative

    def _require_transaction(self) -> None:
        if self._phase is not _Phase.TRANSACTION:
            raise InvalidTransition(f"no transaction ongoing in {self._status}")

    def _end_usage(self) -> None:
        self._phase = _Phase.IDLE
        self._ev_suspended = False
        self._evse_suspended = False
        self._id_tag = None

    def _end_reservation(self, reason: ReservationEndReason, now: datetime) -> ReservationEnded:
        assert self._reservation is not None
        ended = ReservationEnded(self.connector_id, self._reservation.reservation_id, reason, now)
        self._reservation = None
        return ended

    def _target(self) -> ChargePointStatus:
        if self._fault is not None:
            return _S.FAULTED
        if self._phase is _Phase.TRANSACTION:
            if self._evse_suspended:
                return _S.SUSPENDED_EVSE
            return _S.SUSPENDED_EV if self._ev_suspended else _S.CHARGING
        if self._phase is _Phase.FINISHING:
            return _S.FINISHING
        if self._phase is _Phase.PREPARING:
            return _S.PREPARING
        if not self._operative:
            return _S.UNAVAILABLE
        return _S.RESERVED if self._reservation is not None else _S.AVAILABLE

    def _settle(self, now: datetime, info: str | None = None) -> list[Action]:
        """Apply a scheduled availability change if the connector is free, then
        report the status the facts call for, by the 1.6 table's transitions."""
        if self._phase is _Phase.IDLE and self._pending_operative is not None:
            self._operative = self._pending_operative
            self._pending_operative = None
        if (
            self._phase is _Phase.IDLE
            and self._plugged
            and self._usable()
            and self._reservation is None
        ):
            # a cable is in and nothing holds the connector any more: usage is
            # initiated (A2, and H2/I2/G2 when it was plugged in meanwhile)
            self._phase = _Phase.PREPARING
        target = self._target()
        if target is self._status:
            return []
        path = self._path(self._status, target)
        self._status = target
        self._info = info
        return [self._notification(step, now, info) for step in path]

    @staticmethod
    def _path(start: ChargePointStatus, target: ChargePointStatus) -> list[ChargePointStatus]:
        if target in TRANSITIONS_16[start]:
            return [target]
        for via in (_S.AVAILABLE, _S.PREPARING):
            if via in TRANSITIONS_16[start] and target in TRANSITIONS_16[via]:
                return [via, target]
        raise AssertionError(f"no 1.6 transition from {start} to {target}")  # pragma: no cover

    def _notification(
        self,
        status: ChargePointStatus,
        now: datetime,
        info: str | None = None,
        *,
        changed_16: bool = True,
    ) -> StatusChanged:
        error = self.error_code if status is _S.FAULTED else ChargePointErrorCode.NO_ERROR
        return StatusChanged(
            self.connector_id,
            self.evse_id,
            status,
            self._to_201(status),
            error,
            now,
            info,
            changed_16,
        )
