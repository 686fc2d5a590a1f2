"""PlugStream Cloud's answers to an OCPP 1.6J charge point: one :class:`Csms16` per connection.

Everything a station reports is written to the store before it is answered (the
answer is the station's permission to forget it). :class:`StationHandlers` is the
part shared with 2.0.1 (:mod:`plugstream.cloud.handlers201`): the boot gate and
the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, cast

from plugstream.cloud.certificates.handlers import CertificateHandlers16
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.firmware.handlers import FirmwareStatus16
from plugstream.cloud.meter import parse_time_or, samples_16, to_decimal
from plugstream.cloud.security import SecurityEventHandlers
from plugstream.cloud.storage.records import AuthResult
from plugstream.ocpp import ErrorCode, Handlers, OcppError, on, v16
from plugstream.ocpp.datetimes import format_time

if TYPE_CHECKING:
    from plugstream.cloud.gateway import Gateway
    from plugstream.cloud.storage import Store

Clock = Callable[[], datetime]

BOOT = "BootNotification"
# What a Pending station may still send: the reports the CSMS asks for while it
# holds the station back (2.0.1 B02.FR.09 lets triggered and requested reports through).
PENDING_ALLOWED = frozenset({"NotifyReport"})


def utc_now() -> datetime:
    return datetime.now(UTC)


class StationHandlers(Handlers):
    """The connection's state that both versions share: who, the store, and the boot gate.

    Boot gate (2.0.1 B02.FR.09, B03.FR.07, TC_B_30_CSMS; 1.6 §4.2): until the
    station's BootNotification has been Accepted on this connection, any other
    CALL from it is answered with CALLERROR SecurityError. A station that
    reconnects without a new BootNotification is let through when the store
    shows it booted before: OCPP-J 1.6 §5.4 tells a charge point not to send a
    BootNotification after a mere reconnect "unless one or more of the elements
    in the (previous) BootNotification.req PDU have changed".
    """

    def __init__(
        self,
        station_id: str,
        store: Store,
        config: CloudConfig,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.station_id = station_id
        self.store = store
        self.config = config
        self.clock = clock
        self.accepted = False  # a BootNotification was Accepted, or the station booted before
        self.boot_status: str | None = None  # the answer to this connection's BootNotification
        # set by the gateway: an @after hook sends the station a CALL with
        # ``await self.gateway.call(self.station_id, action, payload)``
        self.gateway: Gateway | None = None

    def now(self) -> datetime:
        return self.clock()

    async def boot_decision(self) -> tuple[str, int]:
        """The status and interval to answer a BootNotification with: the station's
        registered boot status, and the heartbeat interval only once it is Accepted."""
        status = await self.store.get_boot_status(self.station_id) or "Accepted"
        self.boot_status = status
        self.accepted = status == "Accepted"
        interval = (
            self.config.heartbeat_interval if self.accepted else self.config.boot_retry_interval
        )
        return status, interval

    async def before_call(self, action: str) -> None:
        if self.accepted or action == BOOT:
            return
        if self.boot_status == "Pending" and action in PENDING_ALLOWED:
            return
        if self.boot_status is None:  # no BootNotification on this connection: a reconnect?
            station = await self.store.get_station(self.station_id)
            if (
                station is not None
                and station.last_boot is not None
                and station.boot_status == "Accepted"
            ):
                self.accepted = True  # it booted before, on an earlier connection
                return
        held = f" (it was answered {self.boot_status})" if self.boot_status else ""
        raise OcppError(
            ErrorCode.SecurityError,
            f"{action} before an accepted BootNotification{held}",
        )


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


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _wh(value: object) -> Decimal:
    """meterStart / meterStop: integer Wh in 1.6; a lenient station's odd value reads as 0."""
    number = to_decimal(value)
    return number if number is not None else Decimal(0)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class Csms16(SecurityEventHandlers, CertificateHandlers16, FirmwareStatus16, StationHandlers):
    """The CSMS side of an OCPP 1.6J connection (core profile and the security extension)."""

    @on(v16.Action.BootNotification)
    async def boot_notification(
        self, payload: v16.BootNotificationRequest
    ) -> v16.BootNotificationResponse:
        now = self.now()
        status, interval = await self.boot_decision()
        await self.store.record_boot(
            self.station_id,
            ocpp_version="1.6",
            vendor=_str(payload.get("chargePointVendor")) or "",
            model=_str(payload.get("chargePointModel")) or "",
            serial_number=_str(payload.get("chargePointSerialNumber"))
            or _str(payload.get("chargeBoxSerialNumber")),
            firmware_version=_str(payload.get("firmwareVersion")),
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
        await self.store.record_seen(self.station_id, at=now)
        return {"currentTime": format_time(now, always_ms=True)}

    @on(v16.Action.StatusNotification)
    async def status_notification(
        self, payload: v16.StatusNotificationRequest
    ) -> v16.StatusNotificationResponse:
        now = self.now()
        connector_id = _int(payload.get("connectorId"), 0)
        error_code = _str(payload.get("errorCode"))
        station_time = payload.get("timestamp")
        # One write for the status and the station's clock: each write awaits a commit.
        await self.store.set_connector_status(
            self.station_id,
            evse_id=connector_id,  # 1.6 has no EVSE: a connector is one
            connector_id=connector_id,
            status=_str(payload.get("status")) or "Unknown",
            error_code=error_code,
            at=now,
            station_time=parse_time_or(station_time, now) if station_time is not None else None,
        )
        return {}

    @on(v16.Action.Authorize)
    async def authorize(self, payload: v16.AuthorizeRequest) -> v16.AuthorizeResponse:
        auth = await self.store.authorize(str(payload.get("idTag", "")), at=self.now())
        return {"idTagInfo": id_tag_info(auth)}

    @on(v16.Action.StartTransaction)
    async def start_transaction(
        self, payload: v16.StartTransactionRequest
    ) -> v16.StartTransactionResponse:
        now = self.now()
        reservation = payload.get("reservationId")
        record, auth = await self.store.start_transaction(
            self.station_id,
            connector_id=_int(payload.get("connectorId"), 0),
            id_token=str(payload.get("idTag", "")),
            meter_start_wh=_wh(payload.get("meterStart")),
            timestamp=parse_time_or(payload.get("timestamp"), now),
            received_at=now,
            reservation_id=reservation if isinstance(reservation, int) else None,
        )
        return {"transactionId": record.id, "idTagInfo": id_tag_info(auth)}

    @on(v16.Action.StopTransaction)
    async def stop_transaction(
        self, payload: v16.StopTransactionRequest
    ) -> v16.StopTransactionResponse:
        now = self.now()
        samples = samples_16(payload.get("transactionData"), now)
        _record, auth = await self.store.stop_transaction(
            self.station_id,
            transaction_id=_int(payload.get("transactionId"), 0),
            meter_stop_wh=_wh(payload.get("meterStop")),
            timestamp=parse_time_or(payload.get("timestamp"), now),
            received_at=now,
            reason=_str(payload.get("reason")),
            id_token=_str(payload.get("idTag")),
            samples=samples or None,
        )
        # An unknown transactionId is still answered: the station must be able to
        # forget it (the store keeps what it could, flagged).
        if auth is None:
            return {}
        return {"idTagInfo": id_tag_info(auth)}

    @on(v16.Action.MeterValues)
    async def meter_values(self, payload: v16.MeterValuesRequest) -> v16.MeterValuesResponse:
        now = self.now()
        connector_id = _int(payload.get("connectorId"), 0)
        transaction_id = payload.get("transactionId")
        await self.store.add_meter_values(
            self.station_id,
            evse_id=connector_id,
            connector_id=connector_id,
            transaction_id=transaction_id if isinstance(transaction_id, int) else None,
            samples=samples_16(payload.get("meterValue"), now),
            received_at=now,
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
