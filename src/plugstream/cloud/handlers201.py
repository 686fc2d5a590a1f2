"""PlugStream Cloud's answers to an OCPP 2.0.1 charging station: one :class:`Csms201` per
connection. The boot gate and the context are shared with 1.6 (:class:`StationHandlers`).
What a station reports is stored, and its event for the bus (``context.events``;
docs/events.md) kept, before it is answered."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from plugstream.cloud.certificates.handlers import CertificateHandlers201
from plugstream.cloud.certificates.status_handlers import CertificateStatusHandlers201
from plugstream.cloud.data_transfer.handlers import DataTransferHandlers201
from plugstream.cloud.device_model.handlers import DeviceModelHandlers201
from plugstream.cloud.diagnostics.handlers import DiagnosticsHandlers201
from plugstream.cloud.display_messages.handlers import DisplayMessageHandlers201
from plugstream.cloud.firmware.handlers import FirmwareStatus201
from plugstream.cloud.firmware.publish import PublishFirmwareStatus201
from plugstream.cloud.meter import parse_time_or, read_201
from plugstream.cloud.payloads import int_or, is_printable_token, str_or_none
from plugstream.cloud.reservations.handlers import ReservationHandlers201
from plugstream.cloud.security import SecurityEventHandlers
from plugstream.cloud.smart_charging.handlers import SmartChargingHandlers201
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.cloud.storage.records import AuthResult, TransactionRecord
from plugstream.cloud.tariffs.handlers import TariffHandlers201
from plugstream.ocpp import on, v201
from plugstream.ocpp.datetimes import format_time

_STATUSES = frozenset(
    (
        "Accepted",
        "Blocked",
        "ConcurrentTx",
        "Expired",
        "Invalid",
        "NoCredit",
        "NotAllowedTypeEVSE",
        "NotAtThisLocation",
        "NotAtThisTime",
        "Unknown",
    )
)


def id_token_info(auth: AuthResult) -> v201.IdTokenInfoType:
    status: v201.AuthorizationStatusEnumType = "Invalid"
    if auth.status in _STATUSES:
        status = auth.status  # type: ignore[assignment]
    info: v201.IdTokenInfoType = {"status": status}
    if auth.expiry is not None:
        info["cacheExpiryDateTime"] = format_time(auth.expiry, always_ms=True)
    if auth.parent_id_token:
        # C01.FR.06: the associated group id token goes with the answer.
        info["groupIdToken"] = {"idToken": auth.parent_id_token[:36], "type": "Central"}
    return info


class Csms201(
    DeviceModelHandlers201,
    DiagnosticsHandlers201,
    ReservationHandlers201,
    DisplayMessageHandlers201,
    DataTransferHandlers201,
    TariffHandlers201,
    SmartChargingHandlers201,
    CertificateStatusHandlers201,
    PublishFirmwareStatus201,
    SecurityEventHandlers,
    CertificateHandlers201,
    FirmwareStatus201,
    StationHandlers,
):
    """The CSMS side of an OCPP 2.0.1 connection."""

    ocpp_version = "2.0.1"  # as the store records it

    @on(v201.Action.BootNotification)
    async def boot_notification(
        self, payload: v201.BootNotificationRequest
    ) -> v201.BootNotificationResponse:
        now = self.now()
        station = payload.get("chargingStation")
        info: Mapping[str, object] = station if isinstance(station, Mapping) else {}
        status, interval = await self.boot_decision()
        await self.context.store.stations.record_boot(
            self.station_id,
            ocpp_version=self.ocpp_version,
            vendor=str_or_none(info.get("vendorName")) or "",
            model=str_or_none(info.get("model")) or "",
            serial_number=str_or_none(info.get("serialNumber")),
            firmware_version=str_or_none(info.get("firmwareVersion")),
            at=now,
        )
        return {
            "status": cast(v201.RegistrationStatusEnumType, status),
            "currentTime": format_time(now, always_ms=True),
            "interval": interval,
        }

    @on(v201.Action.Heartbeat)
    async def heartbeat(self, payload: v201.HeartbeatRequest) -> v201.HeartbeatResponse:
        now = self.now()
        await self.context.store.stations.record_seen(self.station_id, at=now)
        return {"currentTime": format_time(now, always_ms=True)}

    @on(v201.Action.StatusNotification)
    async def status_notification(
        self, payload: v201.StatusNotificationRequest
    ) -> v201.StatusNotificationResponse:
        now = self.now()
        station_time = payload.get("timestamp")
        evse_id = int_or(payload.get("evseId"), 0)
        connector_id = int_or(payload.get("connectorId"), 0)
        status = str_or_none(payload.get("connectorStatus")) or "Unknown"
        timestamp = parse_time_or(station_time, now) if station_time is not None else None
        await self.context.store.stations.set_connector_status(
            self.station_id,
            evse_id=evse_id,
            connector_id=connector_id,
            status=status,
            error_code=None,  # 2.0.1 reports faults through NotifyEvent, not here
            at=now,
            station_time=timestamp,
        )
        await self.context.events.publish(
            "status",
            self.station_id,
            {
                "ocppVersion": self.ocpp_version,
                "evseId": evse_id,
                "connectorId": connector_id,
                "connectorStatus": status,
                "timestamp": timestamp,
            },
        )
        return {}

    @on(v201.Action.Authorize)
    async def authorize(self, payload: v201.AuthorizeRequest) -> v201.AuthorizeResponse:
        token = payload.get("idToken")
        id_token = token.get("idToken") if isinstance(token, Mapping) else None
        if not is_printable_token(str(id_token or "")):  # never looked up nor stored
            return {"idTokenInfo": {"status": "Invalid"}}
        auth = await self.context.store.id_tokens.authorize(str(id_token or ""), at=self.now())
        # C07: with contract certificate data, the certificates' OCSP status decides too
        return await self.contract_authorize(payload, id_token_info(auth))

    @on(v201.Action.TransactionEvent)
    async def transaction_event(
        self, payload: v201.TransactionEventRequest
    ) -> v201.TransactionEventResponse:
        # The store reads the whole event (Started / Updated / Ended, seqNo, offline,
        # meter values) and keeps it durably before we answer.
        now = self.now()
        event = dict(payload)
        flags: list[tuple[str, str, datetime]] = []
        token = event.get("idToken")
        id_token = token.get("idToken") if isinstance(token, Mapping) else None
        if isinstance(id_token, str) and not is_printable_token(id_token):
            # kept only in the flag: never looked up nor stored as the transaction's token
            del event["idToken"]
            flags.append(
                ("UnreadableIdToken", f"idToken {id_token[:40]!r} refused: control characters", now)
            )
        record, auth = await self.context.store.transactions.transaction_event(
            self.station_id, event=event, received_at=now, flags=flags
        )
        answer: v201.TransactionEventResponse = {}
        if flags:
            answer = {"idTokenInfo": {"status": "Invalid"}}
        # E01.FR.xx / E03: idTokenInfo answers an idToken sent in the event.
        elif auth is not None and isinstance(token, Mapping):
            answer = {"idTokenInfo": id_token_info(auth)}
        await self.context.events.publish(
            "transaction", self.station_id, self._transaction_data(event, record, answer, now)
        )
        return answer

    def _transaction_data(
        self,
        event: Mapping[str, Any],
        record: TransactionRecord,
        answer: v201.TransactionEventResponse,
        now: datetime,
    ) -> dict[str, Any]:
        """A TransactionEvent's event for the bus: what the store made of it (``id``, the
        EVSE, the meter in Wh) with the event's own fields (its idToken unless refused)."""
        event_type = str(event.get("eventType"))
        info = event.get("transactionInfo")
        tx_info: Mapping[str, Any] = info if isinstance(info, Mapping) else {}
        token = event.get("idToken")
        timestamp = parse_time_or(event.get("timestamp"), now)
        id_token_info_ = answer.get("idTokenInfo")
        return {
            "type": event_type.lower(),  # started, updated, ended
            "ocppVersion": self.ocpp_version,
            "eventType": event_type,
            "id": record.id,
            "transactionId": record.transaction_id,
            "seqNo": event.get("seqNo"),
            "timestamp": timestamp,
            "triggerReason": event.get("triggerReason"),
            "offline": bool(event.get("offline", False)),
            "evseId": record.evse_id,
            "connectorId": record.connector_id,
            "idToken": (
                {"idToken": token.get("idToken"), "type": token.get("type")}
                if isinstance(token, Mapping)
                else None
            ),
            "idTokenInfo": (
                {"status": id_token_info_["status"]} if id_token_info_ is not None else None
            ),
            "chargingState": tx_info.get("chargingState"),
            "stoppedReason": tx_info.get("stoppedReason"),
            "meterStart": record.meter_start_wh,
            "meterStop": record.meter_stop_wh,
            "energyWh": record.energy_wh,
            "sampledValue": read_201(event.get("meterValue"), timestamp).samples,
        }

    @on(v201.Action.MeterValues)
    async def meter_values(self, payload: v201.MeterValuesRequest) -> v201.MeterValuesResponse:
        now = self.now()
        readings = read_201(payload.get("meterValue"), now)
        evse_id = int_or(payload.get("evseId"), 0)
        await self.context.store.transactions.add_meter_values(
            self.station_id,
            evse_id=evse_id,
            connector_id=0,  # 2.0.1 MeterValues name only the EVSE
            transaction_id=None,  # outside a transaction: those come in TransactionEvent
            samples=readings.samples,
            received_at=now,
            rejected=readings.flags,
        )
        await self.context.events.publish(
            "meter_values",
            self.station_id,
            {"ocppVersion": self.ocpp_version, "evseId": evse_id, "sampledValue": readings.samples},
        )
        return {}


class Csms21(Csms201):
    """OCPP 2.1 stations, for now answered as 2.0.1 ones (the messages handled here kept
    their shape in 2.1); only the version recorded differs."""

    ocpp_version = "2.1"
