"""What the cloud's storage hands out: plain records, free of SQLAlchemy, shared by the
gateway and the REST API. Times are timezone-aware UTC; energy is exact Wh (Decimal)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(slots=True)
class ConnectorStatus:
    evse_id: int  # 1.6: the connectorId (0 = the whole station); 2.0.1: the EVSE id
    connector_id: int
    status: str  # the spec's value, e.g. Available, Charging, Faulted
    error_code: str | None
    updated_at: datetime
    # 2.0.1: the running transaction's chargingState (Charging, EVConnected, SuspendedEV,
    # SuspendedEVSE, Idle); its status says only Occupied. None outside a transaction.
    charging_state: str | None = None


@dataclass(slots=True)
class StationRecord:
    station_id: str
    security_profile: int  # OCPP security profile 0..3 (0: no authentication, tests only)
    lenient: bool
    has_password: bool
    registered_at: datetime
    vendor: str | None = None
    model: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    ocpp_version: str | None = None  # "1.6", "2.0.1"
    last_boot: datetime | None = None
    last_seen: datetime | None = None
    clock_offset_s: float | None = None  # station clock minus server clock
    connectors: list[ConnectorStatus] = field(default_factory=list)
    # What the CSMS answers the station's BootNotification: Accepted, or Pending /
    # Rejected while the operator holds it back (B02/B03, 1.6 §4.2).
    boot_status: str = "Accepted"


@dataclass(slots=True)
class IdTokenRecord:
    id_token: str
    status: str = "Accepted"  # Accepted, Blocked, Expired, Invalid
    expiry: datetime | None = None
    parent_id_token: str | None = None  # the group id
    token_type: str = "ISO14443"


@dataclass(slots=True)
class AuthResult:
    """The answer to an id token: what Authorize, StartTransaction and TransactionEvent return."""

    status: str  # Accepted, Blocked, Expired, Invalid (unknown tokens are Invalid)
    expiry: datetime | None = None
    parent_id_token: str | None = None


@dataclass(slots=True)
class MeterSample:
    timestamp: datetime
    measurand: str  # e.g. Energy.Active.Import.Register
    value: Decimal  # in ``unit``; energy registers are normalised to Wh
    unit: str | None = None
    phase: str | None = None
    context: str | None = None
    location: str | None = None


@dataclass(slots=True)
class Flag:
    """Suspect data, stored and shown, never dropped (issue: transaction hygiene)."""

    code: str  # e.g. SecondStartOnBusyConnector, StartAfterStop, Overlap, TimeBackwards, TimeInFuture, RegisterDecreased, BaselineFromFirstReading
    detail: str
    at: datetime


@dataclass(slots=True)
class TransactionRecord:
    id: int  # our numeric id; it is the 1.6 transactionId
    station_id: str
    transaction_id: str  # the station's id in 2.0.1, str(id) in 1.6
    evse_id: int
    connector_id: int
    id_token: str | None
    started_at: datetime | None
    stopped_at: datetime | None
    meter_start_wh: Decimal | None
    meter_stop_wh: Decimal | None
    energy_wh: Decimal | None  # from the meter register, exact
    stop_reason: str | None
    offline: bool
    active: bool
    flags: list[Flag] = field(default_factory=list)
    meter_values: list[MeterSample] = field(default_factory=list)  # filled by transactions.get


@dataclass(slots=True)
class MessageRecord:
    id: int
    station_id: str
    at: datetime
    direction: str  # "in" (from the station) or "out"
    text: str  # the OCPP-J frame as on the wire
