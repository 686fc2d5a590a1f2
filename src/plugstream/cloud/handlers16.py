"""PlugStream Cloud's answers to an OCPP 1.6J charge point: one :class:`Csms16` per connection.

Everything a station reports is written to the store before it is answered (the
answer is the station's permission to forget it), and so is its event for the bus
(``context.events``; docs/events.md). The boot gate and the context are shared with
2.0.1 (:class:`plugstream.cloud.station_handlers.StationHandlers`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

from plugstream.cloud.certificates.handlers import CertificateHandlers16
from plugstream.cloud.firmware.handlers import FirmwareStatus16
from plugstream.cloud.meter import parse_time_or, plain, read_16, read_decimal
from plugstream.cloud.payloads import int_or, is_printable_token, str_or_none
from plugstream.cloud.security import SecurityEventHandlers
from plugstream.cloud.smart_charging.handlers import SmartChargingHandlers16
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.cloud.storage.records import AuthResult
from plugstream.ocpp import on, v16
from plugstream.ocpp.datetimes import format_time

__all__ = ["Csms16", "id_tag_info"]


def id_tag_info(auth: AuthResult) -> v16.IdTagInfo:
    status: v16.IdTagInfoStatus = "Invalid"
    if auth.status in ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"):
        status = auth.status  # type: ignore[assignment]
    info: v16.IdTagInfo = {"status": status}
    if auth.expiry is not None:
        info["expiryDate"] = format_time(auth.expiry, always_ms=True)
    if auth.parent_id_token:
        info["parentIdTag"] = auth.parent_id_token[:20]  # IdToken is CiString20Type
    return info


#: an idTag with control characters: answered Invalid, kept only in this flag's detail
UNREADABLE_ID_TOKEN = "UnreadableIdToken"


def _wh(
    value: object, field: str, at: datetime, flags: list[tuple[str, str, datetime]]
) -> Decimal | None:
    """meterStart / meterStop: Wh in 1.6, read by the one parser. A value that is not
    read (missing, NaN, "1e308", ...) is None, with its flag added to ``flags``."""
    number = read_decimal(value)
    if isinstance(number, Decimal):
        return plain(number)
    flags.append((number.code, f"{field} {number.raw}", at))
    return None


def _id_tag(
    value: object, field: str, at: datetime, flags: list[tuple[str, str, datetime]]
) -> str | None:
    """An idTag, or None (with an UnreadableIdToken flag) when it has control characters."""
    token = str_or_none(value)
    if token is not None and not is_printable_token(token):
        flags.append(
            (UNREADABLE_ID_TOKEN, f"{field} {token[:40]!r} refused: control characters", at)
        )
        return None
    return token


class Csms16(
    SmartChargingHandlers16,
    SecurityEventHandlers,
    CertificateHandlers16,
    FirmwareStatus16,
    StationHandlers,
):
    """The CSMS side of an OCPP 1.6J connection (core profile and the security extension)."""

    ocpp_version = "1.6"  # as the store records it, and the events say

    @on(v16.Action.BootNotification)
    async def boot_notification(
        self, payload: v16.BootNotificationRequest
    ) -> v16.BootNotificationResponse:
        now = self.now()
        status, interval = await self.boot_decision()
        await self.context.store.stations.record_boot(
            self.station_id,
            ocpp_version="1.6",
            vendor=str_or_none(payload.get("chargePointVendor")) or "",
            model=str_or_none(payload.get("chargePointModel")) or "",
            serial_number=str_or_none(payload.get("chargePointSerialNumber"))
            or str_or_none(payload.get("chargeBoxSerialNumber")),
            firmware_version=str_or_none(payload.get("firmwareVersion")),
            at=now,
        )
        return {
            "status": cast(v16.BootNotificationResponseStatus, status),
            "currentTime": format_time(now, always_ms=True),
            "interval": interval,
        }

    @on(v16.Action.Heartbeat)
    async def heartbeat(self, payload: v16.HeartbeatRequest) -> v16.HeartbeatResponse:
        now = self.now()
        await self.context.store.stations.record_seen(self.station_id, at=now)
        return {"currentTime": format_time(now, always_ms=True)}

    @on(v16.Action.StatusNotification)
    async def status_notification(
        self, payload: v16.StatusNotificationRequest
    ) -> v16.StatusNotificationResponse:
        now = self.now()
        connector_id = int_or(payload.get("connectorId"), 0)
        error_code = str_or_none(payload.get("errorCode"))
        station_time = payload.get("timestamp")
        status = str_or_none(payload.get("status")) or "Unknown"
        timestamp = parse_time_or(station_time, now) if station_time is not None else None
        # One write for the status and the station's clock: each write awaits a commit.
        await self.context.store.stations.set_connector_status(
            self.station_id,
            evse_id=connector_id,  # 1.6 has no EVSE: a connector is one
            connector_id=connector_id,
            status=status,
            error_code=error_code,
            at=now,
            station_time=timestamp,
        )
        await self.context.events.publish(
            "status",
            self.station_id,
            {
                "ocppVersion": self.ocpp_version,
                "connectorId": connector_id,
                "status": status,
                "errorCode": error_code,
                "timestamp": timestamp,
            },
        )
        return {}

    @on(v16.Action.Authorize)
    async def authorize(self, payload: v16.AuthorizeRequest) -> v16.AuthorizeResponse:
        id_tag = str(payload.get("idTag", ""))
        if not is_printable_token(id_tag):  # CiString: printable ASCII only
            return {"idTagInfo": {"status": "Invalid"}}
        auth = await self.context.store.id_tokens.authorize(id_tag, at=self.now())
        return {"idTagInfo": id_tag_info(auth)}

    @on(v16.Action.StartTransaction)
    async def start_transaction(
        self, payload: v16.StartTransactionRequest
    ) -> v16.StartTransactionResponse:
        now = self.now()
        reservation = payload.get("reservationId")
        flags: list[tuple[str, str, datetime]] = []
        id_tag = _id_tag(payload.get("idTag"), "idTag", now, flags)
        record, auth = await self.context.store.transactions.start(
            self.station_id,
            connector_id=int_or(payload.get("connectorId"), 0),
            id_token=id_tag or "",
            meter_start_wh=_wh(payload.get("meterStart"), "meterStart", now, flags),
            timestamp=parse_time_or(payload.get("timestamp"), now),
            received_at=now,
            reservation_id=reservation if isinstance(reservation, int) else None,
            flags=flags,
        )
        unreadable = id_tag is None and bool(flags) and flags[0][0] == UNREADABLE_ID_TOKEN
        info: v16.IdTagInfo = {"status": "Invalid"} if unreadable else id_tag_info(auth)
        await self.context.events.publish(
            "transaction",
            self.station_id,
            {
                "type": "started",
                "ocppVersion": self.ocpp_version,
                "id": record.id,
                "transactionId": record.id,
                "connectorId": record.connector_id,
                "idTag": id_tag,
                "idTagInfo": {"status": info["status"]},
                "meterStart": record.meter_start_wh,
                "timestamp": record.started_at,
                "reservationId": reservation if isinstance(reservation, int) else None,
                "offline": record.offline,
            },
        )
        return {"transactionId": record.id, "idTagInfo": info}

    @on(v16.Action.StopTransaction)
    async def stop_transaction(
        self, payload: v16.StopTransactionRequest
    ) -> v16.StopTransactionResponse:
        now = self.now()
        readings = read_16(payload.get("transactionData"), now)
        flags = readings.flags
        id_tag = _id_tag(payload.get("idTag"), "idTag", now, flags)
        transaction_id = int_or(payload.get("transactionId"), 0)
        meter_stop = _wh(payload.get("meterStop"), "meterStop", now, flags)
        timestamp = parse_time_or(payload.get("timestamp"), now)
        reason = str_or_none(payload.get("reason"))
        record, auth = await self.context.store.transactions.stop(
            self.station_id,
            transaction_id=transaction_id,
            meter_stop_wh=meter_stop,
            timestamp=timestamp,
            received_at=now,
            reason=reason,
            id_token=id_tag,
            samples=readings.samples or None,
            flags=flags,
        )
        answer: v16.StopTransactionResponse = {}
        if id_tag is None and str_or_none(payload.get("idTag")) is not None:
            answer = {"idTagInfo": {"status": "Invalid"}}  # refused: control characters
        elif auth is not None:
            answer = {"idTagInfo": id_tag_info(auth)}
        # An unknown transactionId (no record: "id" null) is still answered: the station
        # must be able to forget it (the store keeps what it could, flagged).
        await self.context.events.publish(
            "transaction",
            self.station_id,
            {
                "type": "ended",
                "ocppVersion": self.ocpp_version,
                "id": record.id if record is not None else None,
                "transactionId": transaction_id,
                "connectorId": record.connector_id if record is not None else None,
                "idTag": id_tag,
                "idTagInfo": (
                    {"status": answer["idTagInfo"]["status"]} if "idTagInfo" in answer else None
                ),
                "meterStart": record.meter_start_wh if record is not None else None,
                "meterStop": record.meter_stop_wh if record is not None else meter_stop,
                "energyWh": record.energy_wh if record is not None else None,
                "timestamp": record.stopped_at if record is not None else timestamp,
                "reason": record.stop_reason if record is not None else reason,
                "sampledValue": readings.samples,
            },
        )
        return answer

    @on(v16.Action.MeterValues)
    async def meter_values(self, payload: v16.MeterValuesRequest) -> v16.MeterValuesResponse:
        now = self.now()
        connector_id = int_or(payload.get("connectorId"), 0)
        transaction_id = payload.get("transactionId")
        readings = read_16(payload.get("meterValue"), now)
        tx = transaction_id if isinstance(transaction_id, int) else None
        await self.context.store.transactions.add_meter_values(
            self.station_id,
            evse_id=connector_id,
            connector_id=connector_id,
            transaction_id=tx,
            samples=readings.samples,
            received_at=now,
            rejected=readings.flags,
        )
        await self.context.events.publish(
            "meter_values",
            self.station_id,
            {
                "ocppVersion": self.ocpp_version,
                "connectorId": connector_id,
                "transactionId": tx,
                "sampledValue": readings.samples,
            },
        )
        return {}

    @on(v16.Action.DataTransfer)
    async def data_transfer(self, payload: v16.DataTransferRequest) -> v16.DataTransferResponse:
        # No vendor extensions yet: our own vendor id is acknowledged, any other unknown.
        if payload.get("vendorId") == "PlugStream":
            return {"status": "Accepted"}
        return {"status": "UnknownVendorId"}

    # Notifications: the gateway logs every message whole, so these are kept by
    # the time they are answered.

    @on(v16.Action.DiagnosticsStatusNotification)
    async def diagnostics_status_notification(
        self, payload: v16.DiagnosticsStatusNotificationRequest
    ) -> v16.DiagnosticsStatusNotificationResponse:
        return {}

    # The 1.6 security extension (OCPP 1.6 Security Whitepaper, edition 3).

    @on(v16.Action.LogStatusNotification)
    async def log_status_notification(
        self, payload: v16.LogStatusNotificationRequest
    ) -> v16.LogStatusNotificationResponse:
        return {}

    # SignCertificate: cloud/certificates/handlers.py CertificateHandlers16.
