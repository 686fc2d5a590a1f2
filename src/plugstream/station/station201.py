"""The OCPP 2.0.1 adapter of a PlugStream station, with one EVSE.

:class:`Station201` is a :class:`~plugstream.station.runtime.StationRuntime` with what
is 2.0.1's own: the device model (:class:`~plugstream.station.config.DeviceModel201`),
the message shapes and the status mapping, and the answers to the CSMS's CALLs
(:class:`StationHandlers201`):

- BootNotification (reason PowerUp, or RemoteReset after a Reset) only when (re)booted
  (B01, B11/B12 after a Reset), when the boot data changed, or until Accepted, retried
  after ``interval`` while the CSMS answers Pending or Rejected -- or at once when the
  CSMS triggers it (reason Triggered; an Accepted answer registers the station; once
  Accepted a trigger of it is Rejected, F06.FR.17); once Accepted:
  StatusNotification of the connector, Heartbeat every
  ``OCPPCommCtrlr.HeartbeatInterval`` and the TransactionEvent messages of the journal.
  A plain reconnect goes straight on, with the StatusNotification of a connector whose
  status changed meanwhile.
- Sessions: plug in, present an idToken (a swipe, or RequestStartTransaction),
  Authorize when the local rules say so, TransactionEvent Started (the station makes
  the transactionId), Updated every ``SampledDataCtrlr.TxUpdatedInterval`` and Ended
  with the ``TxEnded`` meter values. Every TransactionEvent is written to the durable
  journal first, carries a ``seqNo`` increasing per transaction and ``offline: true``
  when generated while not connected, and is delivered in order.
- The connection: subprotocol ``ocpp2.0.1``, permessage-deflate offered, reconnect
  with a :class:`ReconnectBackoff` from ``OCPPCommCtrlr.RetryBackOff*``.
- Clock-aligned meter values (J01; ``AlignedDataCtrlr.Interval`` > 0 and ``Enabled``,
  measurands ``AlignedDataCtrlr.Measurands``, context ``Sample.Clock``) run always,
  stamped with their grid point: outside a transaction as MeterValuesRequest with
  evseId 1 (J01.FR.14; the station's one meter is the EVSE's, there is no separate main
  meter for evseId 0), sent at once when online and dropped offline (only meter values
  belonging to a transaction are queued, J02); during one as TransactionEvent Updated
  with triggerReason MeterValueClock (J01.FR.22), journalled. With
  ``AlignedDataCtrlr.SendDuringIdle`` none are sent while a transaction runs
  (J01.FR.20). ``SignReadings`` is not supported: nothing is signed.

A transaction running when the process died is ended on the next start with
TransactionEvent Ended (triggerReason AbnormalCondition, stoppedReason PowerLoss, or
Reboot after a clean stop), ``offline: true``, the seqNo after the last one journalled,
and the last persisted register as its Transaction.End meter value.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Unpack

from plugstream.ocpp import Handlers, OcppVersion, after, on, v201
from plugstream.ocpp.datetimes import format_time
from plugstream.station.auth import AuthConfig, TokenKey
from plugstream.station.availability import Availability201
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certmgmt import CertificateHandlers201, request_signing
from plugstream.station.config import (
    REPORT_BASES,
    DeviceModel201,
    VariableChange,
    atomic_write_json,
)
from plugstream.station.connector import InvalidTransition, ReservationEnded, StatusChanged
from plugstream.station.diagnostics import DiagnosticsHandlers201, StationDiagnostics
from plugstream.station.display import DisplayBoard, DisplayHandlers201
from plugstream.station.firmware import FIRMWARE_VARIABLES201, FirmwareHandlers201
from plugstream.station.hardware import ENERGY_REGISTER, Measurements, Model
from plugstream.station.journal import Entry
from plugstream.station.metering import (
    MeterSchedule,
    ReadingContext,
    TransactionData,
    build_meter_value_201,
)
from plugstream.station.reservations import ReservationHandlers201, StationReservations
from plugstream.station.runtime import (
    CONNECTOR_ID,
    StationOptions,
    StationRuntime,
    saved_at,
)
from plugstream.station.smart_charging_reports import SmartChargingReports201
from plugstream.station.tariff import (
    TARIFF_VARIABLES201,
    CostDisplay,
    TariffHandlers201,
    tariff_settings,
)
from plugstream.station.v2g import V2GCertificateHandlers201, V2GCertificates

__all__ = ["EVSE_ID", "Station201", "StationHandlers201"]

PROFILE_FILE = "security_profile.json"

log = logging.getLogger("plugstream.station")

EVSE_ID = 1
DEFAULT_TOKEN_TYPE = "ISO14443"
_TRIGGERABLE = frozenset(
    {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "TransactionEvent"}
    | {"SignChargingStationCertificate"}  # A02: certmgmt.request_signing
    | {"SignV2GCertificate"}  # A02.FR.11: v2g.V2GCertificates.request
    | {"FirmwareStatusNotification"}  # L01.FR.25/26: firmware.send_current_status
)
_BACKOFF_VARIABLES = frozenset(
    {"RetryBackOffWaitMinimum", "RetryBackOffRandomRange", "RetryBackOffRepeatTimes"}
)


@dataclass(slots=True)
class _Transaction:
    """The transaction running on the EVSE."""

    transaction_id: str
    id_token: dict[str, Any]
    started_at: datetime
    data: TransactionData
    schedule: MeterSchedule
    remote_start_id: int | None = None
    seq_no: int = 0  # the next TransactionEvent's seqNo
    started_seq: int = field(default=-1)  # journal entry of Started

    def describe(self) -> str:
        return f"{self.transaction_id} ({self.id_token.get('idToken', '')})"

    def next_seq_no(self) -> int:
        seq_no = self.seq_no
        self.seq_no += 1
        return seq_no

    def to_json(self) -> dict[str, Any]:
        """What a restart needs to end this transaction (state.json)."""
        return {
            "transaction_id": self.transaction_id,
            "id_token": self.id_token,
            "started_at": self.started_at.isoformat(),
            "remote_start_id": self.remote_start_id,
            "seq_no": self.seq_no,
            "started_seq": self.started_seq,
        }


class Station201(StationRuntime[DeviceModel201]):
    """One PlugStream charging station speaking OCPP 2.0.1, with one EVSE and connector.

    ``device_model_defaults`` ("Component.Variable" -> value) are applied when the
    device model has no file yet (a factory setting, e.g. short intervals in tests);
    ``notify_availability`` also sends each connector status change as a NotifyEvent of
    AvailabilityState (G01.FR.03: either message does; the default sends one); the
    options are those of every station (:class:`~plugstream.station.runtime.StationOptions`).
    """

    ocpp_version = OcppVersion.V201
    status_field = "connectorStatus"
    skip_unchanged_status = True

    def __init__(
        self,
        station_id: str,
        model: Model,
        data_dir: Path | str,
        now: Callable[[], datetime] | None = None,
        *,
        device_model_defaults: Mapping[str, str] | None = None,
        notify_availability: bool = False,
        **options: Unpack[StationOptions],
    ) -> None:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        dm_path = data_dir / DeviceModel201.FILENAME
        fresh = not dm_path.exists()
        config = DeviceModel201.load(
            dm_path,
            evses={EVSE_ID: 1},
            identity=station_id,
            vendor_name=model.vendor,
            model=model.name,
            supply_phases=model.phases,
            max_power_w=float(model.max_power_w),
            extra=(*FIRMWARE_VARIABLES201, *TARIFF_VARIABLES201),
        )
        # as durable as state.json from the first save on (a fleet's thousands of fresh
        # stations each saved their new file with an fsync, on the event loop)
        config.sync = options.get("sync_state", True)
        if fresh:
            for name, value in (device_model_defaults or {}).items():
                component, variable = name.split(".", 1)
                config.set_value(component, variable, value)
            config.save()
        # SecurityCtrlr.SecurityProfile is read-only in the device model, kept on file here
        profile = _load_profile(data_dir / PROFILE_FILE)
        if profile is not None:
            config.set_value("SecurityCtrlr", "SecurityProfile", str(profile))
        self._fixed_backoff = options.get("backoff") is not None
        self._id_token: dict[str, Any] | None = None  # the authorized token, before a start
        self._trigger = "Authorized"  # triggerReason of the next Started
        self._remote_start_id: int | None = None
        self._reset_on_idle = False
        self._authorized_at: datetime | None = None  # EVConnectionTimeOut
        super().__init__(station_id, model, data_dir, config, now, **options)
        self.transaction: _Transaction | None = None
        self.config.add_listener(self._on_config_change)
        # G01.FR.03/04: a status change is told with StatusNotification OR NotifyEvent;
        # both only when asked (each NotifyEvent is ~300 bytes on a metered link)
        self.availability = Availability201(self, EVSE_ID, CONNECTOR_ID, notify=notify_availability)
        self.diagnostics = StationDiagnostics(self)
        self.diagnostics.watch()
        self.reservations = StationReservations(self, EVSE_ID)
        self.display = DisplayBoard()
        self.cost_display = CostDisplay(tariff_settings(self.config))  # shown to the driver
        self.v2g_certificates = V2GCertificates(self)

    # -- configuration ----------------------------------------------------------------

    def _default_backoff(self) -> ReconnectBackoff:
        c = self.config
        return ReconnectBackoff(
            c.retry_back_off_wait_minimum,
            c.retry_back_off_random_range,
            c.retry_back_off_repeat_times,
            self.rng,
        )

    def _profile_limits(self) -> tuple[int, int]:
        c = self.config
        entries = c.definition("SmartChargingCtrlr", "Entries", instance="ChargingProfiles")
        return int(entries.max_limit or 16), c.get_int("SmartChargingCtrlr", "ProfileStackLevel")

    def _configured_heartbeat_interval(self) -> int:
        return self.config.heartbeat_interval

    def _store_heartbeat_interval(self, interval: int) -> None:
        self.config.set_value("OCPPCommCtrlr", "HeartbeatInterval", str(interval))

    def _configured_meter_interval(self) -> int:
        return self.config.sampled_data_tx_updated_interval

    def _aligned_interval(self) -> int:
        """``AlignedDataCtrlr.Interval``, 0 while ``AlignedDataCtrlr.Enabled`` is false."""
        c = self.config
        return c.aligned_data_interval if c.get_bool("AlignedDataCtrlr", "Enabled") else 0

    def _aligned_measurands(self) -> list[str]:
        return self.config.aligned_data_measurands

    def _ping_setting(self) -> int:
        return self.config.websocket_ping_interval

    def _ping_ceiling(self) -> int:
        return self.config.ping_interval_max

    def _retry_rules(self) -> tuple[int, int]:
        return (
            self.config.message_attempts_transaction_event,
            self.config.message_attempt_interval_transaction_event,
        )

    def _time_adjustment_threshold(self) -> float:
        return float(self.config.get_int("ClockCtrlr", "TimeAdjustmentReportingThreshold"))

    def _auth_config(self) -> AuthConfig:
        c = self.config
        return AuthConfig(
            local_authorize_offline=c.local_authorize_offline,
            local_pre_authorize=c.local_pre_authorize,
            cache_enabled=c.auth_cache_enabled,
            local_list_enabled=c.local_auth_list_enabled,
            allow_offline_tx_for_unknown_id=c.offline_tx_for_unknown_id_enabled,
            cache_disable_post_authorize=c.get_bool("AuthCacheCtrlr", "DisablePostAuthorize"),
            local_list_disable_post_authorize=c.get_bool(
                "LocalAuthListCtrlr", "DisablePostAuthorize"
            ),
        )

    def _on_config_change(self, change: VariableChange) -> None:
        self.authorizer.config = self._auth_config()
        name = (change.component, change.variable)
        if name in (("SecurityCtrlr", "BasicAuthPassword"), ("SecurityCtrlr", "SecurityProfile")):
            # A01.FR.11: logged, never with the value (A01.FR.12)
            self.security_event(
                "ReconfigurationOfSecurityParameters",
                f"{change.component}.{change.variable} changed",
            )
        if name == ("OCPPCommCtrlr", "HeartbeatInterval"):
            self.heartbeat_interval = int(change.value)
        elif name == ("OCPPCommCtrlr", "WebSocketPingInterval"):
            self.ping_interval_set_by_csms()
        elif change.component == "OCPPCommCtrlr" and change.variable in _BACKOFF_VARIABLES:
            if not self._fixed_backoff:
                self.connection.backoff = self._default_backoff()
        elif name == ("SampledDataCtrlr", "TxUpdatedInterval") and self.transaction is not None:
            self.transaction.schedule.configure(
                sample_interval=self._meter_interval(int(change.value)), now=self.now()
            )
        elif name in (("AlignedDataCtrlr", "Interval"), ("AlignedDataCtrlr", "Enabled")):
            self.aligned.configure(self._aligned_interval(), self.now())
        self.wake()

    # -- security profile and password ---------------------------------------------------

    def _security_profile(self) -> int:
        return self.config.security_profile

    def _store_security_profile(self, profile: int) -> None:
        atomic_write_json(self.data_dir / PROFILE_FILE, {"SecurityProfile": profile})
        self.config.set_value("SecurityCtrlr", "SecurityProfile", str(profile))

    def password(self) -> str | None:
        return self.config.basic_auth_password

    def install_security(self, profile: int, password: str | None) -> None:
        self.config.set_value("SecurityCtrlr", "SecurityProfile", str(profile))
        if password is not None:
            self.config.set_value("SecurityCtrlr", "BasicAuthPassword", password)

    def set_password(self, password: str) -> None:
        if password == self.password():
            return
        try:
            self.config.set_value("SecurityCtrlr", "BasicAuthPassword", password)
        except ValueError:
            raise ValueError(
                "the password must be 16 to 40 characters (SecurityCtrlr.BasicAuthPassword)"
            ) from None

    # -- what survives a restart ---------------------------------------------------

    def _end_interrupted_transaction(self, state: Mapping[str, Any], saved: dict[str, Any]) -> None:
        """Ended with stoppedReason PowerLoss (Reboot after a clean stop), triggerReason
        AbnormalCondition, offline, the next seqNo and the last persisted register."""
        reason = "Reboot" if state.get("clean") else "PowerLoss"
        at = saved_at(state, self.now())
        payload: dict[str, Any] = {
            "eventType": "Ended",
            "timestamp": format_time(at),
            "triggerReason": "AbnormalCondition",
            "seqNo": int(saved.get("seq_no", 0)),
            "transactionInfo": {
                "transactionId": str(saved["transaction_id"]),
                "stoppedReason": reason,
                "chargingState": "Idle",
            },
            "offline": True,
        }
        register = Measurements({}, {}, 0.0, self.hardware.energy_wh, None)
        value = build_meter_value_201(
            register, [ENERGY_REGISTER], ReadingContext.TRANSACTION_END.value, at
        )
        if value is not None:
            payload["meterValue"] = [value]
        self.journal.append("TransactionEvent", payload)
        log.info("transaction %s ended on restart: %s", saved["transaction_id"], reason)

    # -- message shapes -----------------------------------------------------------------

    def _status_value(self, change: StatusChanged) -> str:
        return change.status_201.value

    def _status_payload(self, change: StatusChanged) -> dict[str, Any]:
        self.availability.status_changed(change)  # NotifyEvent (Delta) with it, once per state
        return {
            "timestamp": format_time(change.timestamp),
            "connectorStatus": change.status_201.value,
            "evseId": EVSE_ID,
            "connectorId": change.connector_id,
        }

    def _status_payloads(self) -> list[dict[str, Any]]:
        return [self._status_payload(self.connector.current_status(self.now()))]

    def _measurements(self) -> Measurements:
        return self.hardware.measurements()

    def _build_meter_value(
        self, measurements: Measurements, measurands: list[str], context: str, at: datetime
    ) -> dict[str, Any] | None:
        return build_meter_value_201(measurements, measurands, context, at)

    def _meter_values_request(self, value: dict[str, Any]) -> dict[str, Any]:
        return {"evseId": EVSE_ID, "meterValue": [value]}

    def _boot_payload(self) -> dict[str, Any]:
        station: dict[str, Any] = {
            "model": self.model.name,
            "vendorName": self.model.vendor,
            "firmwareVersion": self.firmware.version,
        }
        if self.serial_number is not None:
            station["serialNumber"] = self.serial_number
        return {"reason": self.boot_reason, "chargingStation": station}

    def _triggered_boot_payload(self) -> dict[str, Any]:
        """B01/F06: a BootNotification sent because of a TriggerMessage has reason
        Triggered (TC_B_02_CS), whatever made the station boot."""
        return {**self._boot_payload(), "reason": "Triggered"}

    def _boot_data(self, payload: dict[str, Any] | None = None) -> object:
        """The ``chargingStation`` part: a new boot reason alone is no new boot data."""
        return (self._boot_payload() if payload is None else payload)["chargingStation"]

    async def _send_triggered(self, message: str) -> None:
        if message == "FirmwareStatusNotification":
            await self.firmware.send_current_status()
        elif message == "SignChargingStationCertificate":
            await request_signing(self, "ChargingStationCertificate")
        elif message == "SignV2GCertificate":
            await self.v2g_certificates.request()
        elif message == "MeterValues":
            value = self._meter_value(
                self.config.aligned_data_measurands, ReadingContext.TRIGGER.value
            )
            if value is not None:
                await self.call_quietly("MeterValues", self._meter_values_request(value))
        elif message == "TransactionEvent":
            tx = self.transaction
            if tx is None:
                return
            value = self._meter_value(
                self.config.sampled_data_tx_updated_measurands, ReadingContext.TRIGGER.value
            )
            self._journal_event(
                tx, "Updated", "Trigger", meter_values=[value] if value is not None else None
            )

    # -- the journal ---------------------------------------------------------------------

    def _handlers(self) -> Handlers:
        return StationHandlers201(self)

    def _on_authorize_answer(self, info: Mapping[str, Any] | None) -> None:
        if info is None:  # I04: accepted without asking the CSMS
            self.cost_display.fallback_tariff()
        else:  # I01.FR.03: the driver's tariff
            self.cost_display.id_token_info(info)

    def _on_delivered(self, entry: Entry, result: dict[str, Any]) -> None:
        if entry.action == "TransactionEvent":  # I02.FR.04, I03.FR.03: the cost, shown
            self.cost_display.transaction_answer(entry.payload, result)
        info = result.get("idTokenInfo")
        token = entry.payload.get("idToken")
        if not isinstance(info, dict) or not isinstance(token, dict):
            return
        self.authorizer.on_csms_info(TokenKey.from_id_token(token), info, now=self.now())
        tx = self.transaction
        if (
            tx is not None
            and tx.started_seq == entry.seq
            and info.get("status") != "Accepted"
            and self.config.stop_tx_on_invalid_id
        ):
            self.stop_transaction("Deauthorized", "DeAuthorized")

    # -- TransactionEvent ---------------------------------------------------------------

    def _journal_event(
        self,
        tx: _Transaction,
        event_type: str,
        trigger_reason: str,
        *,
        meter_values: list[dict[str, Any]] | None = None,
        info: Mapping[str, Any] | None = None,
        with_token: bool = False,
        at: datetime | None = None,
    ) -> int:
        """Journal one TransactionEvent of ``tx`` (durably, before anything else happens).
        ``at``: when it happened (a meter sample's time, which its meterValue repeats:
        the same string twice deflates to a back-reference), else now."""
        transaction_info: dict[str, Any] = {"transactionId": tx.transaction_id}
        transaction_info.update(info or {})
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": format_time(self.now() if at is None else at),
            "triggerReason": trigger_reason,
            "seqNo": tx.next_seq_no(),
            "transactionInfo": transaction_info,
        }
        if event_type == "Started":  # E01.FR.16: only in the first event after plug-in
            payload["evse"] = {"id": EVSE_ID, "connectorId": CONNECTOR_ID}
        if not self.online:
            payload["offline"] = True
        if with_token:
            payload["idToken"] = dict(tx.id_token)
        if meter_values:
            payload["meterValue"] = meter_values
        self.reservations.on_transaction_event(payload)  # H01.FR.15: its reservationId
        seq = self.journal.append("TransactionEvent", payload)
        if event_type != "Ended":  # Ended: saved once the transaction is gone
            self.save_state(advanced=at is not None)  # a sample: tick() advanced the meter
        if at is None:
            self.wake()
        else:  # a sample, in tick(): only its delivery is to wake (no second tick)
            self._journal_appended()
        return seq

    def reservation_ended(self, ended: ReservationEnded) -> None:
        self.reservations.ended(ended)  # ReservationStatusUpdate (H04)

    # -- the user and the car ----------------------------------------------------------

    async def swipe(self, id_token: str, token_type: str = DEFAULT_TOKEN_TYPE) -> bool:
        """A card is presented: starts (or, same token, stops) a session; True if accepted."""
        token = {"idToken": id_token, "type": token_type}
        tx = self.transaction
        if tx is not None:
            if TokenKey.from_id_token(tx.id_token) != TokenKey.from_id_token(token):
                return False
            self.stop_transaction("StopAuthorized", "Local")
            return True
        if not await self.authorize(token):
            return False
        return self.accept_token(token, "Authorized")

    async def authorize(self, token: dict[str, Any]) -> bool:
        """Authorize the idToken locally or with the CSMS; True when accepted."""
        return await self.authorize_token(
            TokenKey.from_id_token(token), {"idToken": token}, "idTokenInfo"
        )

    def accept_token(
        self, token: dict[str, Any], trigger: str, remote_start_id: int | None = None
    ) -> bool:
        """``token`` is authorized (``trigger``: the triggerReason of the Started to come):
        start when the car is in; False when not possible now."""
        try:
            self.emit(self.connector.authorized(str(token["idToken"]), self.now()))
        except InvalidTransition:
            return False
        self._id_token = dict(token)
        self._authorized_at = self.now()
        self._trigger = trigger
        self._remote_start_id = remote_start_id
        self._maybe_start()
        self.wake()
        return True

    def _maybe_start(self) -> None:
        token = self._id_token
        if self.transaction is not None or token is None or not self.hardware.ev:
            return
        if not self.connector.may_start_transaction(str(token["idToken"])):
            return
        self.start_transaction(token, self._trigger, self._remote_start_id)

    def start_transaction(
        self,
        id_token: Mapping[str, Any],
        trigger_reason: str = "Authorized",
        remote_start_id: int | None = None,
    ) -> str:
        """Lock, close the contactor and journal TransactionEvent Started; its transactionId."""
        now, measurements = self._begin_transaction()
        c = self.config
        data = TransactionData(
            sampled_measurands=c.get_list("SampledDataCtrlr", "TxEndedMeasurands"),
            sampled_interval=c.get_int("SampledDataCtrlr", "TxEndedInterval"),
            aligned_measurands=c.get_list("AlignedDataCtrlr", "TxEndedMeasurands"),
            aligned_interval=c.get_int("AlignedDataCtrlr", "TxEndedInterval"),
        )
        data.begin(now, measurements)
        # sampled only: the clock-aligned readings come from self.aligned
        schedule = MeterSchedule(self._meter_interval(c.sampled_data_tx_updated_interval), 0, now)
        schedule.start_transaction(now)
        tx = _Transaction(
            self._new_transaction_id(now),
            dict(id_token),
            now,
            data,
            schedule,
            remote_start_id,
        )
        self.transaction = tx
        self._id_token = None
        self._authorized_at = None
        self._remote_start_id = None
        self._start_cycle()
        info: dict[str, Any] = {"chargingState": "Charging" if self.ev_ready() else "SuspendedEV"}
        if remote_start_id is not None:
            info["remoteStartId"] = remote_start_id
        started = build_meter_value_201(
            measurements,
            c.get_list("SampledDataCtrlr", "TxStartedMeasurands"),
            ReadingContext.TRANSACTION_BEGIN.value,
            now,
        )
        tx.started_seq = self._journal_event(
            tx,
            "Started",
            trigger_reason,
            meter_values=[started] if started is not None else None,
            info=info,
            with_token=True,
        )
        self._connector_started(now)
        return tx.transaction_id

    def _new_transaction_id(self, now: datetime) -> str:
        """Milliseconds since the epoch and 32 random bits, in hex (20 characters): never
        the same twice, across reboots too (E01.FR.08), even with a seeded random source,
        and short, for it is in every TransactionEvent."""
        return f"{int(now.timestamp() * 1000):012x}{self.rng.getrandbits(32):08x}"

    def stop_transaction(self, trigger_reason: str, stopped_reason: str) -> None:
        """End the ongoing transaction (the cable stays in: Finishing)."""
        if self.transaction is None:
            return
        self._journal_end(trigger_reason, stopped_reason)
        self.emit(self.connector.stop_transaction(self.now()))
        self._after_end()

    def _journal_end(self, trigger_reason: str, stopped_reason: str) -> None:
        tx = self.transaction
        assert tx is not None
        self._end_metering(tx.data)
        self._journal_event(
            tx,
            "Ended",
            trigger_reason,
            meter_values=tx.data.meter_values_201(),
            info={"stoppedReason": stopped_reason, "chargingState": "Idle"},
        )
        self._transaction_ended()

    def _after_end(self) -> None:
        if self._reset_on_idle and self.transaction is None:
            self._reset_on_idle = False
            self.security_event("ResetOrReboot", "OnIdle Reset from the CSMS")
            self.request_boot("RemoteReset")
            self.spawn(self.disconnect())

    def _plugged_in(self) -> None:
        self._trigger = "CablePluggedIn"
        self._maybe_start()

    def _end_on_unplug(self) -> None:
        self._journal_end("EVCommunicationLost", "EVDisconnected")

    def _stop_on_fault(self) -> None:
        self.stop_transaction("AbnormalCondition", "Other")

    @property
    def reset_scheduled(self) -> bool:
        """An OnIdle Reset waits for the transaction to end."""
        return self._reset_on_idle

    def schedule_reset(self) -> None:
        """Reset (OnIdle) once the running transaction has ended (B12)."""
        self._reset_on_idle = True

    # -- time ---------------------------------------------------------------------------

    def _journal_meter_values(
        self, measurements: Measurements, now: datetime, slot: datetime | None
    ) -> None:
        tx = self.transaction
        assert tx is not None
        c = self.config
        readings: list[tuple[str, str, list[str], datetime]] = [
            (kind.value, "MeterValuePeriodic", c.sampled_data_tx_updated_measurands, now)
            for kind in tx.schedule.due(now)
        ]
        if slot is not None and not c.get_bool("AlignedDataCtrlr", "SendDuringIdle"):
            clock = ReadingContext.SAMPLE_CLOCK.value
            readings.insert(0, (clock, "MeterValueClock", c.aligned_data_measurands, slot))
        for context, trigger_reason, measurands, at in readings:
            value = build_meter_value_201(measurements, measurands, context, at)
            if value is not None:
                self._journal_event(tx, "Updated", trigger_reason, meter_values=[value], at=at)

    def _connection_timeout(self, now: datetime) -> None:
        """EVConnectionTimeOut (C01.FR.26): an authorized idToken without a cable for
        that long is forgotten and the connector goes back to Available."""
        if self._id_token is None or self.transaction is not None or self.hardware.ev:
            self._authorized_at = None
            return
        if self._authorized_at is None:
            self._authorized_at = now
            return
        timeout = timedelta(seconds=self.config.ev_connection_timeout)
        if self.config.ev_connection_timeout > 0 and now - self._authorized_at >= timeout:
            self._id_token = None
            self._authorized_at = None
            self._remote_start_id = None
            with contextlib.suppress(InvalidTransition):
                self.emit(self.connector.connection_timeout(now))

    def _timeouts_due(self, now: datetime) -> list[datetime]:
        if self._authorized_at is not None and self.config.ev_connection_timeout > 0:
            return [self._authorized_at + timedelta(seconds=self.config.ev_connection_timeout)]
        return []


def _ours(evse: Mapping[str, Any] | None) -> bool:
    """True when an EVSEType (or its absence: the whole station) includes our connector."""
    if evse is None:
        return True
    return evse.get("id") in (0, EVSE_ID) and evse.get("connectorId", CONNECTOR_ID) == CONNECTOR_ID


class StationHandlers201(
    DiagnosticsHandlers201,
    ReservationHandlers201,
    DisplayHandlers201,
    TariffHandlers201,
    SmartChargingReports201,
    V2GCertificateHandlers201,
    CertificateHandlers201,
    FirmwareHandlers201,
    Handlers,
):
    """The answers of a :class:`Station201` to the CSMS's CALLs."""

    station: Station201

    def __init__(self, station: Station201) -> None:
        self.station = station

    # -- transactions

    @on(v201.Action.RequestStartTransaction)
    def request_start(self, payload: v201.RequestStartTransactionRequest) -> dict[str, Any]:
        st = self.station
        evse_id = payload.get("evseId", EVSE_ID)
        ok = (
            evse_id == EVSE_ID
            and st.transaction is None
            and st.connector.may_start_transaction(str(payload["idToken"]["idToken"]))
        )
        return {"status": "Accepted" if ok else "Rejected"}

    @after(v201.Action.RequestStartTransaction)
    async def request_start_done(self, payload: v201.RequestStartTransactionRequest) -> None:
        st = self.station
        if st.transaction is not None or payload.get("evseId", EVSE_ID) != EVSE_ID:
            return
        token = dict(payload["idToken"])
        profile = payload.get("chargingProfile")
        if st.config.authorize_remote_start and not await st.authorize(token):
            return
        if st.accept_token(token, "RemoteStart", payload["remoteStartId"]) and profile:
            tx = st.transaction
            if tx is not None:
                st.profiles.set_201(EVSE_ID, profile, active_transaction_id=tx.transaction_id)

    @on(v201.Action.RequestStopTransaction)
    def request_stop(self, payload: v201.RequestStopTransactionRequest) -> dict[str, Any]:
        tx = self.station.transaction
        ok = tx is not None and tx.transaction_id == payload["transactionId"]
        return {"status": "Accepted" if ok else "Rejected"}

    @after(v201.Action.RequestStopTransaction)
    def request_stop_done(self, payload: v201.RequestStopTransactionRequest) -> None:
        tx = self.station.transaction
        if tx is not None and tx.transaction_id == payload["transactionId"]:
            self.station.stop_transaction("RemoteStop", "Remote")

    @on(v201.Action.Reset)
    def reset(self, payload: v201.ResetRequest) -> dict[str, Any]:
        if payload.get("evseId") not in (None, EVSE_ID):
            return {"status": "Rejected"}
        st = self.station
        if payload["type"] == "OnIdle" and st.transaction is not None:
            st.schedule_reset()
            return {"status": "Scheduled"}
        return {"status": "Accepted"}

    @after(v201.Action.Reset)
    async def reset_done(self, payload: v201.ResetRequest) -> None:
        st = self.station
        if payload.get("evseId") not in (None, EVSE_ID) or st.reset_scheduled:
            return
        st.security_event("ResetOrReboot", f"{payload['type']} Reset from the CSMS")
        if st.transaction is not None:
            st.stop_transaction("ResetCommand", "ImmediateReset")
        st.request_boot("RemoteReset")
        await st.disconnect()  # a reboot: reconnect and boot again

    @on(v201.Action.UnlockConnector)
    def unlock(self, payload: v201.UnlockConnectorRequest) -> dict[str, Any]:
        st = self.station
        if payload["evseId"] != EVSE_ID or payload["connectorId"] != CONNECTOR_ID:
            return {"status": "UnknownConnector"}
        if st.transaction is not None:
            return {"status": "OngoingAuthorizedTransaction"}  # F05.FR.02
        return {"status": "Unlocked" if st.hardware.unlock_cable() else "UnlockFailed"}

    @on(v201.Action.ChangeAvailability)
    def change_availability(self, payload: v201.ChangeAvailabilityRequest) -> dict[str, Any]:
        st = self.station
        evse = payload.get("evse")
        if not _ours(None if evse is None else dict(evse)):
            return {"status": "Rejected"}
        operative = payload["operationalStatus"] == "Operative"
        reply = st.connector.change_availability(operative, st.now())
        st.emit(reply.actions)
        st.save_state()
        return {"status": reply.status.value}

    # -- device model

    @on(v201.Action.GetVariables)
    def get_variables(self, payload: v201.GetVariablesRequest) -> dict[str, Any]:
        data = [dict(item) for item in payload["getVariableData"]]
        return {"getVariableResult": self.station.config.get_variables(data)}

    @on(v201.Action.SetVariables)
    def set_variables(self, payload: v201.SetVariablesRequest) -> dict[str, Any]:
        data = [dict(item) for item in payload["setVariableData"]]
        results = self.station.config.set_variables(data)
        for result in results:
            if (
                result["attributeStatus"] == "Accepted"
                and result["component"].get("name") == "SecurityCtrlr"
                and result["variable"].get("name") == "BasicAuthPassword"
            ):
                self.station.request_reconnect()
        return {"setVariableResult": results}

    @after(v201.Action.SetVariables)
    async def set_variables_done(self, payload: v201.SetVariablesRequest) -> None:
        """A new BasicAuthPassword (A01): disconnect once answered, reconnect with it."""
        await self.station.reconnect_if_due()

    @on(v201.Action.GetBaseReport)
    def get_base_report(self, payload: v201.GetBaseReportRequest) -> dict[str, Any]:
        if payload["reportBase"] not in REPORT_BASES:
            return {"status": "NotSupported"}
        return {"status": "Accepted"}

    @after(v201.Action.GetBaseReport)
    async def get_base_report_done(self, payload: v201.GetBaseReportRequest) -> None:
        st = self.station
        if payload["reportBase"] not in REPORT_BASES:
            return
        messages = st.config.notify_reports(
            payload["reportBase"], payload["requestId"], format_time(st.now())
        )
        for message in messages:
            await st.call_quietly("NotifyReport", message)

    @on(v201.Action.TriggerMessage)
    def trigger(self, payload: v201.TriggerMessageRequest) -> dict[str, Any]:
        evse = payload.get("evse")
        if not _ours(None if evse is None else dict(evse)):
            return {"status": "Rejected"}
        if payload["requestedMessage"] not in _TRIGGERABLE:
            return {"status": "NotImplemented"}
        if payload["requestedMessage"] == "BootNotification" and self._boot_accepted():
            return {"status": "Rejected"}  # F06.FR.17: only while not Accepted
        return {"status": "Accepted"}

    def _boot_accepted(self) -> bool:
        """The last BootNotification of this connection was Accepted."""
        st = self.station
        return st.accepted and st.registration == "Accepted"

    @after(v201.Action.TriggerMessage)
    async def trigger_done(self, payload: v201.TriggerMessageRequest) -> None:
        evse = payload.get("evse")
        if not _ours(None if evse is None else dict(evse)):
            return
        message = payload["requestedMessage"]
        if message == "BootNotification" and self._boot_accepted():
            return
        connector_id = None if evse is None else evse.get("connectorId")
        await self.station.send_triggered(message, connector_id)

    @on(v201.Action.DataTransfer)
    def data_transfer(self, payload: v201.DataTransferRequest) -> dict[str, Any]:
        return {"status": "UnknownVendorId"}

    # -- local authorization

    @on(v201.Action.ClearCache)
    def clear_cache(self, payload: v201.ClearCacheRequest) -> dict[str, Any]:
        return {"status": self.station.authorizer.clear_cache()}

    @on(v201.Action.SendLocalList)
    def send_local_list(self, payload: v201.SendLocalListRequest) -> dict[str, Any]:
        st = self.station
        if not st.config.local_auth_list_enabled:
            return {"status": "Failed"}
        status = st.local_list.send_local_list(
            payload["versionNumber"],
            payload["updateType"],
            [dict(entry) for entry in payload.get("localAuthorizationList", [])],
            max_length=int(st.config.definition("LocalAuthListCtrlr", "Entries").max_limit or 1000),
            max_per_message=st.config.get_int("LocalAuthListCtrlr", "ItemsPerMessage"),
        )
        if status == "Accepted":
            st.config.set_value("LocalAuthListCtrlr", "Entries", str(len(st.local_list)))
        return {"status": status}

    @on(v201.Action.GetLocalListVersion)
    def get_local_list_version(self, payload: v201.GetLocalListVersionRequest) -> dict[str, Any]:
        return {"versionNumber": self.station.authorizer.get_local_list_version()}

    # -- smart charging

    @on(v201.Action.SetChargingProfile)
    def set_charging_profile(self, payload: v201.SetChargingProfileRequest) -> dict[str, Any]:
        st = self.station
        tx = st.transaction
        status = st.profiles.set_201(
            payload["evseId"],
            dict(payload["chargingProfile"]),
            active_transaction_id=None if tx is None else tx.transaction_id,
        )
        st.profiles_changed()
        return {"status": status}

    @on(v201.Action.ClearChargingProfile)
    def clear_charging_profile(self, payload: v201.ClearChargingProfileRequest) -> dict[str, Any]:
        st = self.station
        status = st.profiles.clear_201(dict(payload))
        st.profiles_changed()
        return {"status": status}

    @on(v201.Action.GetCompositeSchedule)
    def get_composite_schedule(self, payload: v201.GetCompositeScheduleRequest) -> dict[str, Any]:
        st = self.station
        tx = st.transaction
        return st.profiles.composite_201(
            payload["evseId"],
            payload["duration"],
            payload.get("chargingRateUnit"),
            st.now(),
            transaction_start=None if tx is None else tx.started_at,
            voltage=st.model.nominal_voltage_v,
            phases=st.model.phases,
        )


def _load_profile(path: Path) -> int | None:
    """The security profile kept on file, None when none was set (or it is unreadable)."""
    try:
        value = json.loads(path.read_text()).get("SecurityProfile")
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and 0 <= value <= 3 else None
