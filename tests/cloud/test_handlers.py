"""The CSMS handlers of PlugStream Cloud, driven as the gateway drives them (through the
core's dispatch, boot gate included) against a real Store on a SQLite file: every request
and every answer is checked against the official schemas too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import HandlerContext
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.handlers import csms_handlers
from plugstream.cloud.handlers16 import Csms16
from plugstream.cloud.handlers201 import Csms201
from plugstream.cloud.meter import samples_16, samples_201
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.cloud.stations import StationOffline
from plugstream.cloud.storage import IdTokenRecord, Store
from plugstream.ocpp import ErrorCode, OcppError, OcppVersion, schemas
from plugstream.ocpp.datetimes import format_time, parse_time
from plugstream.ocpp.routing import dispatch

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
CONFIG = CloudConfig(heartbeat_interval=300)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path}/c.db")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _version(handlers: StationHandlers) -> OcppVersion:
    return OcppVersion.V16 if isinstance(handlers, Csms16) else OcppVersion.V201


async def call(handlers: StationHandlers, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One CALL as the gateway makes it: valid request in, valid answer out."""
    check = schemas(_version(handlers))
    assert check.validate(action, "request", payload) is None, f"bad test payload for {action}"
    response = await dispatch(handlers, action, payload)
    problem = check.validate(action, "response", response)
    assert problem is None, f"{action} answer breaks the schema: {problem!r}"
    return response


def ts(minutes: float = 0.0) -> str:
    return format_time(NOW + timedelta(minutes=minutes), always_ms=True)


BOOT16 = {
    "chargePointVendor": "PlugStream",
    "chargePointModel": "PlugStream 22",
    "chargePointSerialNumber": "PS22-0001",
    "firmwareVersion": "1.4.2",
}
BOOT201 = {
    "reason": "PowerUp",
    "chargingStation": {
        "vendorName": "PlugStream",
        "model": "PlugStream 7",
        "serialNumber": "PS7-0001",
        "firmwareVersion": "2.0.0",
    },
}


async def booted16(store: Store, clock: Clock, station: str = "CP16") -> Csms16:
    csms = Csms16(station, HandlerContext(store, CONFIG, clock=clock))
    await call(csms, "BootNotification", BOOT16)
    return csms


async def booted201(store: Store, clock: Clock, station: str = "CS201") -> Csms201:
    csms = Csms201(station, HandlerContext(store, CONFIG, clock=clock))
    await call(csms, "BootNotification", BOOT201)
    return csms


# --- boot ------------------------------------------------------------------------------


async def test_boot_16_is_accepted_and_recorded(store: Store, clock: Clock) -> None:
    csms = Csms16("CP16", HandlerContext(store, CONFIG, clock=clock))
    answer = await call(csms, "BootNotification", BOOT16)
    assert answer["status"] == "Accepted"
    assert answer["interval"] == 300
    assert answer["currentTime"] == "2026-11-25T10:00:00.000Z"
    station = await store.stations.get("CP16")
    assert station is not None
    assert (station.vendor, station.model, station.serial_number) == (
        "PlugStream",
        "PlugStream 22",
        "PS22-0001",
    )
    assert (station.firmware_version, station.ocpp_version) == ("1.4.2", "1.6")
    assert station.last_boot == NOW


async def test_boot_201_is_accepted_and_recorded(store: Store, clock: Clock) -> None:
    csms = Csms201("CS201", HandlerContext(store, CONFIG, clock=clock))
    answer = await call(csms, "BootNotification", BOOT201)
    assert answer == {"status": "Accepted", "interval": 300, "currentTime": ts()}
    station = await store.stations.get("CS201")
    assert station is not None
    assert (station.model, station.serial_number, station.firmware_version) == (
        "PlugStream 7",
        "PS7-0001",
        "2.0.0",
    )
    assert station.ocpp_version == "2.0.1"


@pytest.mark.parametrize(
    ("cls", "action", "payload"),
    [
        (Csms16, "Heartbeat", {}),
        (Csms16, "Authorize", {"idTag": "TAG1"}),
        (
            Csms16,
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
        ),
        (Csms201, "Heartbeat", {}),
        (
            Csms201,
            "StatusNotification",
            {"timestamp": ts(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        ),
        (
            Csms201,
            "NotifyEvent",
            {
                "generatedAt": ts(),
                "seqNo": 0,
                "eventData": [
                    {
                        "eventId": 1,
                        "timestamp": ts(),
                        "trigger": "Delta",
                        "actualValue": "Available",
                        "eventNotificationType": "HardWiredNotification",
                        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                        "variable": {"name": "AvailabilityState"},
                    }
                ],
            },
        ),
    ],
)
async def test_calls_before_boot_get_security_error(
    store: Store, clock: Clock, cls: type[StationHandlers], action: str, payload: dict[str, Any]
) -> None:
    """TC_B_30_CSMS, B02.FR.09, B03.FR.07: nothing but BootNotification before acceptance."""
    csms = cls("NEW1", HandlerContext(store, CONFIG, clock=clock))
    with pytest.raises(OcppError) as caught:
        await call(csms, action, payload)
    assert caught.value.code is ErrorCode.SecurityError
    assert await store.stations.get("NEW1") is None  # nothing was stored
    boot = BOOT16 if cls is Csms16 else BOOT201
    await call(csms, "BootNotification", boot)
    await call(csms, action, payload)  # accepted now


@pytest.mark.parametrize("cls", [Csms16, Csms201])
async def test_reconnect_without_boot_is_accepted(
    store: Store, clock: Clock, cls: type[StationHandlers]
) -> None:
    """OCPP-J 1.6 §5.4: a station that booted before may reconnect without booting again."""
    first = cls("CPX", HandlerContext(store, CONFIG, clock=clock))
    await call(first, "BootNotification", BOOT16 if cls is Csms16 else BOOT201)
    clock.advance(600)
    second = cls("CPX", HandlerContext(store, CONFIG, clock=clock))  # a new connection
    answer = await call(second, "Heartbeat", {})
    assert answer["currentTime"] == format_time(clock.now, always_ms=True)


async def test_registered_but_never_booted_station_is_refused(store: Store, clock: Clock) -> None:
    await store.stations.register("CPR", security_profile=0)
    csms = Csms16("CPR", HandlerContext(store, CONFIG, clock=clock))
    with pytest.raises(OcppError) as caught:
        await call(csms, "Heartbeat", {})
    assert caught.value.code is ErrorCode.SecurityError


@pytest.mark.parametrize("cls", [Csms16, Csms201])
@pytest.mark.parametrize("held", ["Pending", "Rejected"])
async def test_a_held_back_station_is_answered_so_and_may_send_nothing_else(
    store: Store, clock: Clock, cls: type[StationHandlers], held: str
) -> None:
    """TC_B_02_CSMS / TC_B_03_CSMS and TC_B_30_CSMS: the operator's boot status is the
    answer, with the retry interval; until Accepted, other CALLs get SecurityError, on
    this connection and after a reconnect without a new BootNotification."""
    await store.stations.register("HELD1", security_profile=0, boot_status=held)
    boot = BOOT16 if cls is Csms16 else BOOT201
    csms = cls("HELD1", HandlerContext(store, CONFIG, clock=clock))
    answer = await call(csms, "BootNotification", boot)
    assert answer["status"] == held
    assert answer["interval"] == CONFIG.boot_retry_interval
    for connection in (
        csms,
        cls("HELD1", HandlerContext(store, CONFIG, clock=clock)),
    ):  # and a reconnect
        with pytest.raises(OcppError) as caught:
            await call(connection, "Heartbeat", {})
        assert caught.value.code is ErrorCode.SecurityError
        assert held in caught.value.description or connection is not csms
    station = await store.stations.get("HELD1")
    assert station is not None and station.model is not None  # the operator sees what it is
    # The operator accepts it; its next BootNotification is Accepted and it may work.
    await store.stations.register("HELD1", security_profile=0, boot_status="Accepted")
    answer = await call(csms, "BootNotification", boot)
    assert (answer["status"], answer["interval"]) == ("Accepted", CONFIG.heartbeat_interval)
    await call(csms, "Heartbeat", {})


async def test_a_pending_201_station_may_send_the_reports_it_is_asked_for(
    store: Store, clock: Clock
) -> None:
    """B02: while Pending, the CSMS may configure the station and ask for its reports."""
    await store.stations.register("HELD2", security_profile=0, boot_status="Pending")
    csms = Csms201("HELD2", HandlerContext(store, CONFIG, clock=clock))
    assert (await call(csms, "BootNotification", BOOT201))["status"] == "Pending"
    report = {"requestId": 1, "generatedAt": ts(), "seqNo": 0, "tbc": False}
    assert await call(csms, "NotifyReport", report) == {}
    with pytest.raises(OcppError):
        await call(
            csms,
            "StatusNotification",
            {"timestamp": ts(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        )


# --- heartbeat, status, clock --------------------------------------------------------


async def test_heartbeat_and_status_16(store: Store, clock: Clock) -> None:
    csms = await booted16(store, clock)
    clock.advance(60)
    assert await call(csms, "Heartbeat", {}) == {"currentTime": "2026-11-25T10:01:00.000Z"}
    # the station's clock runs 30 s ahead, and it writes its time with an offset
    station_time = (clock.now + timedelta(seconds=30)).astimezone(
        datetime.fromisoformat("2026-01-01T00:00:00+01:00").tzinfo
    )
    await call(
        csms,
        "StatusNotification",
        {
            "connectorId": 1,
            "errorCode": "NoError",
            "status": "Preparing",
            "timestamp": station_time.isoformat(),
        },
    )
    station = await store.stations.get("CP16")
    assert station is not None
    assert station.last_seen == clock.now
    assert station.clock_offset_s == pytest.approx(30.0)
    [connector] = [c for c in station.connectors if c.connector_id == 1]
    assert (connector.evse_id, connector.status, connector.error_code) == (
        1,
        "Preparing",
        "NoError",
    )


async def test_status_201(store: Store, clock: Clock) -> None:
    csms = await booted201(store, clock)
    await call(
        csms,
        "StatusNotification",
        {"timestamp": ts(), "connectorStatus": "Occupied", "evseId": 2, "connectorId": 1},
    )
    station = await store.stations.get("CS201")
    assert station is not None
    assert [(c.evse_id, c.connector_id, c.status) for c in station.connectors] == [
        (2, 1, "Occupied")
    ]
    assert station.clock_offset_s == pytest.approx(0.0)


# --- authorization ---------------------------------------------------------------------


async def _tokens(store: Store) -> None:
    await store.id_tokens.put(
        IdTokenRecord("GOOD", "Accepted", expiry=NOW + timedelta(days=30), parent_id_token="FLEET")
    )
    await store.id_tokens.put(IdTokenRecord("BLOCKED", "Blocked"))
    await store.id_tokens.put(IdTokenRecord("OLD", "Accepted", expiry=NOW - timedelta(days=1)))


async def test_authorize_16_statuses(store: Store, clock: Clock) -> None:
    await _tokens(store)
    csms = await booted16(store, clock)
    good = await call(csms, "Authorize", {"idTag": "GOOD"})
    assert good == {
        "idTagInfo": {
            "status": "Accepted",
            "expiryDate": "2026-12-25T10:00:00.000Z",
            "parentIdTag": "FLEET",
        }
    }
    assert (await call(csms, "Authorize", {"idTag": "BLOCKED"}))["idTagInfo"] == {
        "status": "Blocked"
    }
    old = await call(csms, "Authorize", {"idTag": "OLD"})
    assert old["idTagInfo"]["status"] == "Expired"
    assert (await call(csms, "Authorize", {"idTag": "NOBODY"}))["idTagInfo"] == {
        "status": "Invalid"
    }


async def test_authorize_201_statuses(store: Store, clock: Clock) -> None:
    await _tokens(store)
    csms = await booted201(store, clock)
    good = await call(csms, "Authorize", {"idToken": {"idToken": "GOOD", "type": "ISO14443"}})
    assert good == {
        "idTokenInfo": {
            "status": "Accepted",
            "cacheExpiryDateTime": "2026-12-25T10:00:00.000Z",
            "groupIdToken": {"idToken": "FLEET", "type": "Central"},
        }
    }
    for token, status in (("BLOCKED", "Blocked"), ("OLD", "Expired"), ("NOBODY", "Invalid")):
        answer = await call(csms, "Authorize", {"idToken": {"idToken": token, "type": "ISO14443"}})
        assert answer["idTokenInfo"]["status"] == status


# --- transactions, 1.6 -----------------------------------------------------------------


async def test_transaction_16_with_meter_values_and_stop(store: Store, clock: Clock) -> None:
    await _tokens(store)
    csms = await booted16(store, clock)
    started = await call(
        csms,
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "GOOD",
            "meterStart": 1000,
            # the station's local time with its offset: 10:00:00 UTC
            "timestamp": "2026-11-25T11:00:00+01:00",
        },
    )
    assert started["idTagInfo"]["status"] == "Accepted"
    tx_id = started["transactionId"]
    assert isinstance(tx_id, int)
    clock.advance(1200)
    await call(
        csms,
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx_id,
            "meterValue": [
                {
                    "timestamp": ts(15),
                    "sampledValue": [
                        {"value": "3.3335", "unit": "kWh", "context": "Sample.Periodic"},
                        {"value": "229.7", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
                    ],
                }
            ],
        },
    )
    clock.advance(1200)
    stopped = await call(
        csms,
        "StopTransaction",
        {
            "transactionId": tx_id,
            "idTag": "GOOD",
            "meterStop": 7301,
            "timestamp": ts(38),
            "reason": "EVDisconnected",
            "transactionData": [
                {
                    "timestamp": ts(30),
                    "sampledValue": [{"value": "5000.5", "context": "Sample.Periodic"}],
                },
                {
                    "timestamp": ts(38),
                    "sampledValue": [{"value": "7301", "context": "Transaction.End"}],
                },
            ],
        },
    )
    assert stopped == {
        "idTagInfo": {"status": "Accepted", "expiryDate": ts(43200), "parentIdTag": "FLEET"}
    }

    record = await store.transactions.get(tx_id)
    assert record is not None
    assert record.started_at == NOW
    assert record.stopped_at == NOW + timedelta(minutes=38)
    assert record.meter_start_wh == Decimal(1000)
    assert record.meter_stop_wh == Decimal(7301)
    assert record.energy_wh == Decimal(6301)
    assert record.stop_reason == "EVDisconnected"
    assert not record.active
    registers = [
        (s.timestamp, s.value, s.unit)
        for s in record.meter_values
        if s.measurand == "Energy.Active.Import.Register"
    ]
    assert registers == [
        (NOW + timedelta(minutes=15), Decimal("3333.5"), "Wh"),
        (NOW + timedelta(minutes=30), Decimal("5000.5"), "Wh"),
        (NOW + timedelta(minutes=38), Decimal(7301), "Wh"),
    ]
    [voltage] = [s for s in record.meter_values if s.measurand == "Voltage"]
    assert (voltage.value, voltage.unit, voltage.phase) == (Decimal("229.7"), "V", "L1-N")


async def test_start_16_with_unknown_tag_is_answered_invalid(store: Store, clock: Clock) -> None:
    csms = await booted16(store, clock)
    answer = await call(
        csms,
        "StartTransaction",
        {"connectorId": 1, "idTag": "NOBODY", "meterStart": 0, "timestamp": ts()},
    )
    assert answer["idTagInfo"] == {"status": "Invalid"}
    assert answer["transactionId"] > 0  # kept: the station may charge anyway


async def test_stop_16_without_id_tag_and_of_unknown_transaction(
    store: Store, clock: Clock
) -> None:
    csms = await booted16(store, clock)
    started = await call(
        csms,
        "StartTransaction",
        {"connectorId": 2, "idTag": "X", "meterStart": 10, "timestamp": ts()},
    )
    answer = await call(
        csms,
        "StopTransaction",
        {"transactionId": started["transactionId"], "meterStop": 20, "timestamp": ts(1)},
    )
    assert answer == {}
    unknown = await call(
        csms, "StopTransaction", {"transactionId": 999999, "meterStop": 20, "timestamp": ts(1)}
    )
    assert unknown == {}


# --- transactions, 2.0.1 ---------------------------------------------------------------


def _event(event_type: str, seq_no: int, minutes: float, **extra: Any) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "timestamp": ts(minutes),
        "triggerReason": {"Started": "Authorized", "Updated": "MeterValuePeriodic"}.get(
            event_type, "EVCommunicationLost"
        ),
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": "f3b1c0de-0001"},
        **extra,
    }


async def test_transaction_event_201_started_updated_ended(store: Store, clock: Clock) -> None:
    await _tokens(store)
    csms = await booted201(store, clock)
    started = await call(
        csms,
        "TransactionEvent",
        _event(
            "Started",
            0,
            0,
            evse={"id": 1, "connectorId": 1},
            idToken={"idToken": "GOOD", "type": "ISO14443"},
            meterValue=[
                {
                    "timestamp": ts(),
                    "sampledValue": [
                        {"value": 120.5, "context": "Transaction.Begin"},
                    ],
                }
            ],
        ),
    )
    assert started["idTokenInfo"]["status"] == "Accepted"
    assert started["idTokenInfo"]["groupIdToken"] == {"idToken": "FLEET", "type": "Central"}

    clock.advance(900)
    updated = await call(
        csms,
        "TransactionEvent",
        _event(
            "Updated",
            1,
            15,
            meterValue=[
                {
                    "timestamp": ts(15),
                    "sampledValue": [
                        {
                            "value": 2.5,
                            "context": "Sample.Periodic",
                            "unitOfMeasure": {"unit": "kWh"},
                        },
                        {
                            "value": 7.2,
                            "measurand": "Power.Active.Import",
                            "unitOfMeasure": {"unit": "kW"},
                        },
                    ],
                }
            ],
        ),
    )
    assert updated == {}  # no idToken sent, no idTokenInfo

    clock.advance(900)
    ended = await call(
        csms,
        "TransactionEvent",
        _event(
            "Ended",
            2,
            30,
            idToken={"idToken": "GOOD", "type": "ISO14443"},
            meterValue=[
                {
                    "timestamp": ts(30),
                    "sampledValue": [{"value": 4321.25, "context": "Transaction.End"}],
                }
            ],
        )
        | {
            "transactionInfo": {"transactionId": "f3b1c0de-0001", "stoppedReason": "EVDisconnected"}
        },
    )
    assert ended["idTokenInfo"]["status"] == "Accepted"

    found = await store.transactions.find("CS201", "f3b1c0de-0001")
    assert found is not None
    record = await store.transactions.get(found.id)
    assert record is not None
    assert (record.evse_id, record.connector_id, record.id_token) == (1, 1, "GOOD")
    assert record.started_at == NOW
    assert record.stopped_at == NOW + timedelta(minutes=30)
    assert record.meter_start_wh == Decimal("120.5")
    assert record.meter_stop_wh == Decimal("4321.25")
    assert record.energy_wh == Decimal("4200.75")
    assert record.stop_reason == "EVDisconnected"
    assert not record.active
    values = {(s.measurand, s.timestamp): (s.value, s.unit) for s in record.meter_values}
    assert values[("Energy.Active.Import.Register", NOW + timedelta(minutes=15))] == (
        Decimal(2500),
        "Wh",
    )
    assert values[("Power.Active.Import", NOW + timedelta(minutes=15))] == (Decimal(7200), "W")

    # a retried event (same seqNo) changes nothing and is answered the same way
    again = await call(csms, "TransactionEvent", _event("Updated", 1, 15))
    assert again == {}
    after = await store.transactions.get(found.id)
    assert after is not None and after.energy_wh == Decimal("4200.75")


async def test_meter_values_201_outside_a_transaction(store: Store, clock: Clock) -> None:
    csms = await booted201(store, clock)
    answer = await call(
        csms,
        "MeterValues",
        {
            "evseId": 0,
            "meterValue": [
                {
                    "timestamp": ts(),
                    "sampledValue": [
                        {"value": 1.5, "unitOfMeasure": {"unit": "kWh", "multiplier": 3}},
                    ],
                }
            ],
        },
    )
    assert answer == {}


# --- sampled values: units and exactness ------------------------------------------------


def test_kwh_to_wh_exact_16() -> None:
    [sample] = samples_16(
        [
            {
                "timestamp": "2026-11-25T11:00:00+01:00",
                "sampledValue": [{"value": "12345.678", "unit": "kWh"}],
            }
        ],
        NOW,
    )
    assert sample.value == Decimal(12345678)
    assert sample.unit == "Wh"
    assert sample.measurand == "Energy.Active.Import.Register"
    assert sample.timestamp == NOW


def test_default_unit_and_measurand() -> None:
    mv = [
        {
            "timestamp": ts(),
            "sampledValue": [{"value": "0.1"}, {"value": "16.0", "measurand": "Current.Import"}],
        }
    ]
    energy, current = samples_16(mv, NOW)
    assert (energy.measurand, energy.value, energy.unit) == (
        "Energy.Active.Import.Register",
        Decimal("0.1"),
        "Wh",
    )
    assert (current.value, current.unit) == (Decimal(16), None)


def test_kwh_to_wh_exact_201_with_multiplier() -> None:
    mv = [
        {
            "timestamp": ts(),
            "sampledValue": [
                {"value": 0.1, "unitOfMeasure": {"unit": "kWh"}},
                {"value": 12.3456, "unitOfMeasure": {"unit": "kWh"}},
                {"value": 1.5, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
                {"value": 7, "unitOfMeasure": {"unit": "kWh", "multiplier": -1}},
            ],
        }
    ]
    values = [(s.value, s.unit) for s in samples_201(mv, NOW)]
    assert values == [
        (Decimal(100), "Wh"),
        (Decimal("12345.6"), "Wh"),
        (Decimal(1500), "Wh"),
        (Decimal(700), "Wh"),
    ]


def test_timestamps_become_aware_utc() -> None:
    assert parse_time("2026-11-25T11:00:00+01:00") == NOW
    assert parse_time("2026-11-25T10:00:00Z") == NOW
    assert parse_time("2026-11-25T10:00:00") == NOW  # no offset: UTC, as OCPP requires
    assert parse_time("2026-11-25T10:00:00.1234567Z").tzinfo is UTC
    assert format_time(datetime(2026, 11, 25, 11, 0, 0, 5000, tzinfo=UTC)) == (
        "2026-11-25T11:00:00.005Z"
    )


# --- the rest of what stations send -------------------------------------------------------


async def test_data_transfer_16(store: Store, clock: Clock) -> None:
    csms = await booted16(store, clock)
    assert await call(csms, "DataTransfer", {"vendorId": "PlugStream", "messageId": "x"}) == {
        "status": "Accepted"
    }
    assert await call(csms, "DataTransfer", {"vendorId": "com.example"}) == {
        "status": "UnknownVendorId"
    }


async def test_notifications_16(store: Store, clock: Clock) -> None:
    csms = await booted16(store, clock)
    for action, payload in (
        ("DiagnosticsStatusNotification", {"status": "Uploaded"}),
        ("FirmwareStatusNotification", {"status": "Installed"}),
        ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": ts()}),
        ("LogStatusNotification", {"status": "Uploaded", "requestId": 1}),
        ("SignedFirmwareStatusNotification", {"status": "SignatureVerified", "requestId": 2}),
    ):
        assert await call(csms, action, payload) == {}, action
    # certificates come with a later issue: until then signing is refused
    assert await call(csms, "SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}) == {
        "status": "Rejected"
    }


async def test_notifications_201(store: Store, clock: Clock) -> None:
    csms = await booted201(store, clock)
    for action, payload in (
        ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": ts()}),
        ("FirmwareStatusNotification", {"status": "Installed", "requestId": 1}),
        ("LogStatusNotification", {"status": "Uploaded", "requestId": 1}),
        (
            "NotifyReport",
            {
                "requestId": 1,
                "generatedAt": ts(),
                "seqNo": 0,
                "reportData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                        "variableAttribute": [{"value": "300"}],
                    }
                ],
            },
        ),
    ):
        assert await call(csms, action, payload) == {}, action


# --- lenient stations: odd payloads do not crash the handlers ---------------------------------


async def test_lenient_payloads_16(store: Store, clock: Clock) -> None:
    csms = await booted16(store, clock)
    # these break the schema: only a lenient station's core passes them on
    await dispatch(csms, "StatusNotification", {"connectorId": 1, "status": "Weird"})
    await dispatch(
        csms,
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [
                {"sampledValue": [{"value": "n/a"}, {"value": "5", "unit": "kWh"}]},
                "junk",
            ],
        },
    )
    answer = await dispatch(csms, "StartTransaction", {"connectorId": 1, "idTag": "T"})
    assert answer["idTagInfo"] == {"status": "Invalid"}
    station = await store.stations.get("CP16")
    assert station is not None
    assert [c.status for c in station.connectors] == ["Weird"]


# --- registration: the gateway speaks what the application registers ---------------------


async def test_the_gateway_speaks_the_versions_registered_with_it(
    store: Store, clock: Clock
) -> None:
    gateway = Gateway(store, CONFIG, clock=clock)
    try:
        assert gateway.subprotocols() == []
        gateway.register(OcppVersion.V16, Csms16)
        assert gateway.subprotocols() == ["ocpp1.6"]
        for version, factory in csms_handlers().items():
            gateway.register(version, factory)
        assert gateway.subprotocols() == ["ocpp2.1", "ocpp2.0.1", "ocpp1.6"]
        # the handlers call stations and report events through the gateway
        assert gateway.context.commands is gateway and gateway.context.events is gateway
        assert gateway.context.clock is clock
    finally:
        await gateway.close()


async def test_handlers_without_a_gateway_reach_no_station(store: Store) -> None:
    context = HandlerContext(store, CONFIG)
    assert not context.commands.is_connected("CP1")
    assert context.commands.version_of("CP1") is None
    with pytest.raises(StationOffline):
        await context.commands.call("CP1", "Reset", {"type": "Soft"})
