"""The OCPP 1.6J adapter of a PlugStream station, with one connector.

:class:`Station16` is a :class:`~plugstream.station.runtime.StationRuntime` with what
is 1.6's own: the configuration keys (:class:`~plugstream.station.config.Config16`),
the message shapes and the status mapping, and the answers to the Central System's
CALLs (:class:`StationHandlers16`):

- BootNotification (when one is due), retried after ``interval`` while the Central
  System answers Pending or Rejected; only once Accepted the station sends anything
  else (1.6 §4.2): the status of its connectors, Heartbeat when nothing else was sent
  for the interval the Central System asked for (at least one a day), and the
  transaction-related messages of the journal. Empty optional fields are left out.
- Sessions: plug in, present an idTag (a swipe, or RemoteStartTransaction), Authorize
  when the local rules say so, StartTransaction, MeterValues every
  ``MeterValueSampleInterval``, StopTransaction with ``transactionData``. Every
  transaction-related message is written to the durable journal first and delivered in
  order; the ``transactionId`` of MeterValues and StopTransaction is a ``$ref_result``
  placeholder resolved when the Central System answers StartTransaction. Charging goes
  on while offline. The register goes on the wire in whole Wh, the resolution of
  meterStart and meterStop.
- Clock-aligned MeterValues (``ClockAlignedDataInterval`` > 0, measurands
  ``MeterValuesAlignedData``, context ``Sample.Clock``) run always, stamped with their
  grid point: during a transaction they carry its transactionId and go through the
  journal like the sampled ones (§3.7: transaction-related); outside one they have no
  transactionId, are not transaction-related and are sent at once when online and
  dropped when offline. They name connectorId 1: the station's one meter is the
  connector's (location Outlet), there is no separate main meter for connectorId 0.
- The connection: subprotocol ``ocpp1.6``, permessage-deflate offered, reconnect with a
  fixed :class:`ReconnectBackoff`; BootNotification on the first connection of a
  process, after a Reset, and until one was Accepted; a plain reconnect goes straight on
  (1.6 §4.2: "after start-up"), with the StatusNotifications of connectors whose status
  changed meanwhile.

A transaction that was running when the process died is ended on the next start with
StopTransaction reason PowerLoss (Reboot after a clean stop) and meterStop = the last
persisted register.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Unpack

from plugstream.ocpp import Handlers, OcppVersion, after, on, v16
from plugstream.ocpp.datetimes import format_time
from plugstream.station.auth import AuthConfig, TokenKey
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certmgmt import CertificateHandlers16
from plugstream.station.config import Config16
from plugstream.station.connector import (
    ChargePointStatus,
    InvalidTransition,
    StatusChanged,
)
from plugstream.station.firmware import FIRMWARE_KEYS16, FirmwareHandlers16
from plugstream.station.hardware import Measurements, Model
from plugstream.station.journal import REF_KEY, Entry, UnknownEntryError
from plugstream.station.metering import (
    MeterSchedule,
    ReadingContext,
    TransactionData,
    build_meter_value_16,
)
from plugstream.station.runtime import (
    CONNECTOR_ID,
    StationOptions,
    StationRuntime,
    saved_at,
)

__all__ = ["Station16", "StationHandlers16"]

log = logging.getLogger("plugstream.station")

_TRIGGERABLE = frozenset({"BootNotification", "Heartbeat", "StatusNotification", "MeterValues"})
_SECURITY_KEYS = frozenset({"AuthorizationKey", "SecurityProfile"})


@dataclass(slots=True)
class _Transaction:
    """The transaction running on the connector."""

    id_tag: str
    start_seq: int  # journal entry of its StartTransaction
    meter_start: int
    started_at: datetime
    data: TransactionData
    schedule: MeterSchedule
    transaction_id: int | None = None  # once the Central System answered StartTransaction

    def describe(self) -> str:
        number = "pending" if self.transaction_id is None else str(self.transaction_id)
        return f"{number} ({self.id_tag})"

    def reference(self) -> int | dict[str, Any]:
        """The transactionId, or a placeholder for it until it is known."""
        if self.transaction_id is not None:
            return self.transaction_id
        return {REF_KEY: self.start_seq, "key": "transactionId", "default": -1}

    def to_json(self) -> dict[str, Any]:
        """What a restart needs to end this transaction (state.json)."""
        return {
            "id_tag": self.id_tag,
            "start_seq": self.start_seq,
            "meter_start": self.meter_start,
            "started_at": self.started_at.isoformat(),
            "transaction_id": self.transaction_id,
        }


class Station16(StationRuntime[Config16]):
    """One PlugStream charge point speaking OCPP 1.6J, with one connector.

    ``config_defaults`` are the configuration's factory values; the options are those
    of every station (:class:`~plugstream.station.runtime.StationOptions`).
    """

    ocpp_version = OcppVersion.V16
    status_field = "status"

    def __init__(
        self,
        station_id: str,
        model: Model,
        data_dir: Path | str,
        now: Callable[[], datetime] | None = None,
        *,
        config_defaults: Mapping[str, str] | None = None,
        **options: Unpack[StationOptions],
    ) -> None:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        config = Config16.load(
            data_dir / Config16.FILENAME, defaults=config_defaults, extra_keys=FIRMWARE_KEYS16
        )
        self._preparing_since: datetime | None = None  # ConnectionTimeOut
        super().__init__(station_id, model, data_dir, config, now, **options)
        self.transaction: _Transaction | None = None
        self.config.add_listener(self._on_config_change)

    # -- configuration ----------------------------------------------------------------

    def _auth_config(self) -> AuthConfig:
        c = self.config
        return AuthConfig(
            local_authorize_offline=c.local_authorize_offline,
            local_pre_authorize=c.local_pre_authorize,
            cache_enabled=c.authorization_cache_enabled,
            local_list_enabled=c.local_auth_list_enabled,
            allow_offline_tx_for_unknown_id=c.allow_offline_tx_for_unknown_id,
        )

    def _profile_limits(self) -> tuple[int, int]:
        return (
            self.config.max_charging_profiles_installed,
            self.config.charge_profile_max_stack_level,
        )

    def _default_backoff(self) -> ReconnectBackoff:
        return ReconnectBackoff(5.0, 5.0, 5, self.rng)

    def _configured_heartbeat_interval(self) -> int:
        return self.config.heartbeat_interval

    def _store_heartbeat_interval(self, interval: int) -> None:
        self.config.set_internal("HeartbeatInterval", str(interval))

    def _aligned_interval(self) -> int:
        return self.config.clock_aligned_data_interval

    def _aligned_measurands(self) -> list[str]:
        return self.config.meter_values_aligned_data

    def _configured_meter_interval(self) -> int:
        return self.config.meter_value_sample_interval

    def _ping_setting(self) -> int:
        return self.config.websocket_ping_interval

    def _ping_ceiling(self) -> int:
        return self.config.ping_interval_max

    def _retry_rules(self) -> tuple[int, int]:
        return (
            self.config.transaction_message_attempts,
            self.config.transaction_message_retry_interval,
        )

    def _on_config_change(self, key: str, value: str) -> None:
        self.authorizer.config = self._auth_config()
        if key == "WebSocketPingInterval":
            self.ping_interval_set_by_csms()
        if key in _SECURITY_KEYS:
            # A01.FR.11 (2.0.1; the whitepaper's A01): logged, never with the value (A01.FR.12)
            self.security_event("ReconfigurationOfSecurityParameters", f"{key} changed")
        if key == "MeterValueSampleInterval" and self.transaction is not None:
            self.transaction.schedule.configure(
                sample_interval=self._meter_interval(int(value)), now=self.now()
            )
        if key == "HeartbeatInterval":
            self.heartbeat_interval = int(value)
        if key == "ClockAlignedDataInterval":
            self.aligned.configure(int(value), self.now())
        self.wake()

    # -- security profile and password ---------------------------------------------------

    def _security_profile(self) -> int:
        return self.config.security_profile

    def _store_security_profile(self, profile: int) -> None:
        self.config.set_internal("SecurityProfile", str(profile))
        self._on_config_change("SecurityProfile", str(profile))

    def password(self) -> str | None:
        return self.config.authorization_key

    def install_security(self, profile: int, password: str | None) -> None:
        self.config.set_internal("SecurityProfile", str(profile))
        if password is not None:
            self.config.set_internal("AuthorizationKey", password)

    def set_password(self, password: str) -> None:
        if password == self.password():
            return
        if self.config.change("AuthorizationKey", password) != "Accepted":
            raise ValueError(
                "the password must be 16 to 40 printable ASCII characters "
                "(1.6 security whitepaper, AuthorizationKey)"
            )

    # -- what survives a restart ---------------------------------------------------

    def _end_interrupted_transaction(self, state: Mapping[str, Any], saved: dict[str, Any]) -> None:
        """StopTransaction with reason PowerLoss, or Reboot after a clean stop."""
        reason = "Reboot" if state.get("clean") else "PowerLoss"
        transaction_id: Any = saved.get("transaction_id")
        if transaction_id is None:
            transaction_id = {
                REF_KEY: int(saved["start_seq"]),
                "key": "transactionId",
                "default": -1,
            }
        payload = {
            "transactionId": transaction_id,
            "idTag": saved["id_tag"],
            "meterStop": int(self.hardware.energy_wh),
            "timestamp": format_time(saved_at(state, self.now())),
            "reason": reason,
        }
        try:
            self.journal.append("StopTransaction", payload)
        except UnknownEntryError:  # the journal lost its StartTransaction: unknown id
            payload["transactionId"] = -1
            self.journal.append("StopTransaction", payload)
        log.info("transaction of %s ended on restart: %s", saved["id_tag"], reason)

    # -- message shapes -----------------------------------------------------------------

    def _status_value(self, change: StatusChanged) -> str:
        return change.status_16.value

    def _status_payload(self, change: StatusChanged) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "connectorId": change.connector_id,
            "errorCode": change.error_code.value,
            "status": change.status_16.value,
            "timestamp": format_time(change.timestamp),
        }
        if change.info:
            payload["info"] = change.info[:50]
        return payload

    def _status_payloads(self) -> list[dict[str, Any]]:
        now = self.now()
        zero = {
            "connectorId": 0,
            "errorCode": "NoError",
            "status": "Available",
            "timestamp": format_time(now),
        }
        return [zero, self._status_payload(self.connector.current_status(now))]

    def _measurements(self) -> Measurements:
        """The meter as 1.6 sends it: the register in whole Wh (rounded down), the
        resolution of meterStart and meterStop, so that no MeterValues sample reads above
        a later meterStop (nor above the meterStop sent after a power loss)."""
        measurements = self.hardware.measurements()
        return replace(measurements, energy_wh=Decimal(int(measurements.energy_wh)))

    def _build_meter_value(
        self, measurements: Measurements, measurands: list[str], context: str, at: datetime
    ) -> dict[str, Any] | None:
        return build_meter_value_16(measurements, measurands, context, at)

    def _meter_values_request(self, value: dict[str, Any]) -> dict[str, Any]:
        return {"connectorId": CONNECTOR_ID, "meterValue": [value]}

    def _boot_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "chargePointVendor": self.model.vendor,
            "chargePointModel": self.model.name,
            "firmwareVersion": self.firmware.version,
        }
        if self.serial_number is not None:
            payload["chargePointSerialNumber"] = self.serial_number
        return payload

    def _boot_data(self, payload: dict[str, Any] | None = None) -> object:
        return self._boot_payload() if payload is None else payload

    async def _send_triggered(self, message: str) -> None:
        if message == "MeterValues":
            value = self._meter_value(
                self.config.meter_values_sampled_data, ReadingContext.TRIGGER.value
            )
            if value is None:
                return
            meter = self._meter_values_request(value)
            tx = self.transaction
            if tx is not None and tx.transaction_id is not None:
                meter["transactionId"] = tx.transaction_id
            await self.call_quietly("MeterValues", meter)

    # -- the journal ---------------------------------------------------------------------

    def _handlers(self) -> Handlers:
        return StationHandlers16(self)

    def _on_delivered(self, entry: Entry, result: dict[str, Any]) -> None:
        info = result.get("idTagInfo")
        id_tag = entry.payload.get("idTag")
        if isinstance(info, dict) and isinstance(id_tag, str):
            self.authorizer.on_csms_info(TokenKey.id_tag(id_tag), info, now=self.now())
        tx = self.transaction
        if entry.action == "StartTransaction" and tx is not None and tx.start_seq == entry.seq:
            tx.transaction_id = int(result["transactionId"])
            self.save_state()
            status = info.get("status") if isinstance(info, dict) else "Accepted"
            if status != "Accepted" and self.config.stop_transaction_on_invalid_id:
                self.stop_transaction("DeAuthorized")

    # -- the user and the car ----------------------------------------------------------

    async def swipe(self, id_tag: str) -> bool:
        """A card is presented: starts (or, same idTag, stops) a session; True if accepted."""
        tx = self.transaction
        if tx is not None:
            if tx.id_tag.casefold() != id_tag.casefold():
                return False
            self.stop_transaction("Local")
            return True
        if not await self.authorize(id_tag):
            return False
        return self.accept_id(id_tag)

    async def authorize(self, id_tag: str) -> bool:
        """Authorize ``id_tag`` locally or with the Central System; True when accepted."""
        return await self.authorize_token(TokenKey.id_tag(id_tag), {"idTag": id_tag}, "idTagInfo")

    def accept_id(self, id_tag: str) -> bool:
        """``id_tag`` is authorized: start when the car is in; False when not possible now."""
        try:
            self.emit(self.connector.authorized(id_tag, self.now()))
        except InvalidTransition:
            return False
        self._maybe_start()
        return True

    def _plugged_in(self) -> None:
        self._maybe_start()

    def _maybe_start(self) -> None:
        id_tag = self.connector.id_tag
        if self.transaction is not None or id_tag is None or not self.hardware.ev:
            return
        if not self.connector.may_start_transaction(id_tag):
            return
        self.start_transaction(id_tag)

    def start_transaction(self, id_tag: str) -> None:
        """Lock, close the contactor and journal StartTransaction."""
        now, measurements = self._begin_transaction()
        meter_start = int(measurements.energy_wh)
        seq = self.journal.append(
            "StartTransaction",
            {
                "connectorId": CONNECTOR_ID,
                "idTag": id_tag,
                "meterStart": meter_start,
                "timestamp": format_time(now),
            },
        )
        c = self.config
        data = TransactionData(
            sampled_measurands=c.stop_txn_sampled_data,
            sampled_interval=c.meter_value_sample_interval,
            aligned_measurands=c.stop_txn_aligned_data,
            aligned_interval=c.clock_aligned_data_interval,
        )
        data.begin(now, measurements)
        schedule = MeterSchedule(self._meter_interval(c.meter_value_sample_interval), 0, now)
        schedule.start_transaction(now)
        self.transaction = _Transaction(id_tag, seq, meter_start, now, data, schedule)
        self._start_cycle()
        self.save_state()
        self._connector_started(now)
        self.wake()

    def stop_transaction(self, reason: str) -> None:
        """Stop the ongoing transaction (the cable stays in: Finishing)."""
        if self.transaction is None:
            return
        self._journal_stop(reason)
        self.emit(self.connector.stop_transaction(self.now()))

    def _end_on_unplug(self) -> None:
        self._journal_stop("EVDisconnected")

    def _stop_on_fault(self) -> None:
        self.stop_transaction("Other")

    def _journal_stop(self, reason: str) -> None:
        tx = self.transaction
        assert tx is not None
        now, measurements = self._end_metering(tx.data)
        payload: dict[str, Any] = {
            "transactionId": tx.reference(),
            "idTag": tx.id_tag,
            "meterStop": int(measurements.energy_wh),
            "timestamp": format_time(now),
            "reason": reason,
        }
        transaction_data = tx.data.meter_values_16()
        if transaction_data:
            payload["transactionData"] = transaction_data
        self.journal.append("StopTransaction", payload)
        self._transaction_ended()

    # -- time ---------------------------------------------------------------------------

    def _journal_meter_values(
        self, measurements: Measurements, now: datetime, slot: datetime | None
    ) -> None:
        tx = self.transaction
        assert tx is not None
        readings: list[tuple[str, list[str], datetime]] = [
            (kind.value, self.config.meter_values_sampled_data, now)
            for kind in tx.schedule.due(now)
        ]
        if slot is not None:
            readings.insert(
                0, (ReadingContext.SAMPLE_CLOCK.value, self.config.meter_values_aligned_data, slot)
            )
        journalled = False
        for context, measurands, at in readings:
            value = build_meter_value_16(measurements, measurands, context, at)
            if value is not None:
                self.journal.append(
                    "MeterValues",
                    {
                        "connectorId": CONNECTOR_ID,
                        "transactionId": tx.reference(),
                        "meterValue": [value],
                    },
                )
                journalled = True
        if journalled:
            self.save_state(advanced=True)  # tick() advanced the meter
            self._journal_appended()

    def _connection_timeout(self, now: datetime) -> None:
        """ConnectionTimeOut (1.6 §4.9 B1/B6): Preparing without a transaction for that
        long ends the usage; an authorized idTag without a cable is forgotten."""
        if (
            self.transaction is not None
            or self.connector.status_16 is not ChargePointStatus.PREPARING
        ):
            self._preparing_since = None
            return
        if self._preparing_since is None:
            self._preparing_since = now
            return
        if now - self._preparing_since >= timedelta(seconds=self.config.connection_timeout):
            self._preparing_since = None
            self.emit(self.connector.connection_timeout(now))

    def _timeouts_due(self, now: datetime) -> list[datetime]:
        if self._preparing_since is not None:
            return [self._preparing_since + timedelta(seconds=self.config.connection_timeout)]
        if self.connector.status_16 is ChargePointStatus.PREPARING and self.transaction is None:
            return [now]  # start the ConnectionTimeOut timer
        return []


class StationHandlers16(CertificateHandlers16, FirmwareHandlers16, Handlers):
    """The answers of a :class:`Station16` to the Central System's CALLs."""

    station: Station16

    def __init__(self, station: Station16) -> None:
        self.station = station

    # -- transactions

    @on(v16.Action.RemoteStartTransaction)
    def remote_start(
        self, payload: v16.RemoteStartTransactionRequest
    ) -> v16.RemoteStartTransactionResponse:
        st = self.station
        connector_id = payload.get("connectorId", CONNECTOR_ID)
        ok = (
            connector_id == CONNECTOR_ID
            and st.transaction is None
            and st.connector.may_start_transaction(payload["idTag"])
        )
        return {"status": "Accepted" if ok else "Rejected"}

    @after(v16.Action.RemoteStartTransaction)
    async def remote_start_done(self, payload: v16.RemoteStartTransactionRequest) -> None:
        st = self.station
        if st.transaction is not None or payload.get("connectorId", 1) != CONNECTOR_ID:
            return
        id_tag = payload["idTag"]
        if st.config.authorize_remote_tx_requests and not await st.authorize(id_tag):
            return
        st.accept_id(id_tag)

    @on(v16.Action.RemoteStopTransaction)
    def remote_stop(
        self, payload: v16.RemoteStopTransactionRequest
    ) -> v16.RemoteStopTransactionResponse:
        tx = self.station.transaction
        ok = tx is not None and tx.transaction_id == payload["transactionId"]
        return {"status": "Accepted" if ok else "Rejected"}

    @after(v16.Action.RemoteStopTransaction)
    def remote_stop_done(self, payload: v16.RemoteStopTransactionRequest) -> None:
        tx = self.station.transaction
        if tx is not None and tx.transaction_id == payload["transactionId"]:
            self.station.stop_transaction("Remote")

    @on(v16.Action.Reset)
    def reset(self, payload: v16.ResetRequest) -> v16.ResetResponse:
        return {"status": "Accepted"}

    @after(v16.Action.Reset)
    async def reset_done(self, payload: v16.ResetRequest) -> None:
        st = self.station
        st.security_event("ResetOrReboot", f"{payload['type']} Reset from the Central System")
        st.stop_transaction("HardReset" if payload["type"] == "Hard" else "SoftReset")
        st.request_boot()
        await st.disconnect()  # a reboot: reconnect and boot again

    @on(v16.Action.UnlockConnector)
    def unlock(self, payload: v16.UnlockConnectorRequest) -> v16.UnlockConnectorResponse:
        st = self.station
        if payload["connectorId"] != CONNECTOR_ID:
            return {"status": "NotSupported"}
        st.stop_transaction("UnlockCommand")
        return {"status": "Unlocked" if st.hardware.unlock_cable() else "UnlockFailed"}

    @on(v16.Action.ChangeAvailability)
    def change_availability(
        self, payload: v16.ChangeAvailabilityRequest
    ) -> v16.ChangeAvailabilityResponse:
        st = self.station
        if payload["connectorId"] not in (0, CONNECTOR_ID):
            return {"status": "Rejected"}
        reply = st.connector.change_availability(payload["type"] == "Operative", st.now())
        st.emit(reply.actions)
        st.save_state()
        return {"status": reply.status.value}

    # -- configuration

    @on(v16.Action.ChangeConfiguration)
    def change_configuration(
        self, payload: v16.ChangeConfigurationRequest
    ) -> v16.ChangeConfigurationResponse:
        st = self.station
        key, value = payload["key"], payload["value"]
        if key.lower() == "securityprofile":
            # 1.6 whitepaper A05.FR.01-05: only higher, and only with its prerequisites
            try:
                profile = int(value)
            except ValueError:
                return {"status": "Rejected"}
            if profile <= st.security_profile or st.security_problem(profile, st.target):
                return {"status": "Rejected"}
        status = st.config.change(key, value)
        if status == "Accepted" and key.lower() in ("securityprofile", "authorizationkey"):
            st.request_reconnect()
        return {"status": status}

    @after(v16.Action.ChangeConfiguration)
    async def change_configuration_done(self, payload: v16.ChangeConfigurationRequest) -> None:
        """A new SecurityProfile (A05.FR.06/07) or AuthorizationKey (the whitepaper's A01):
        disconnect once answered, reconnect with it."""
        await self.station.reconnect_if_due()

    @on(v16.Action.GetConfiguration)
    def get_configuration(self, payload: v16.GetConfigurationRequest) -> dict[str, Any]:
        return self.station.config.response(payload.get("key"))

    @on(v16.Action.TriggerMessage)
    def trigger(self, payload: v16.TriggerMessageRequest) -> v16.TriggerMessageResponse:
        if payload.get("connectorId", CONNECTOR_ID) not in (0, CONNECTOR_ID):
            return {"status": "Rejected"}
        if payload["requestedMessage"] not in _TRIGGERABLE:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    @after(v16.Action.TriggerMessage)
    async def trigger_done(self, payload: v16.TriggerMessageRequest) -> None:
        connector_id = payload.get("connectorId")  # 1.6 §5.17: absent means all connectors
        if connector_id in (None, 0, CONNECTOR_ID):
            await self.station.send_triggered(payload["requestedMessage"], connector_id)

    @on(v16.Action.DataTransfer)
    def data_transfer(self, payload: v16.DataTransferRequest) -> v16.DataTransferResponse:
        return {"status": "UnknownVendorId"}

    # -- local authorization

    @on(v16.Action.ClearCache)
    def clear_cache(self, payload: v16.ClearCacheRequest) -> v16.ClearCacheResponse:
        return {"status": self.station.authorizer.clear_cache()}

    @on(v16.Action.SendLocalList)
    def send_local_list(self, payload: v16.SendLocalListRequest) -> v16.SendLocalListResponse:
        st = self.station
        if not st.config.local_auth_list_enabled:
            return {"status": "NotSupported"}
        status = st.local_list.send_local_list(
            payload["listVersion"],
            payload["updateType"],
            list(payload.get("localAuthorizationList", [])),
            max_length=st.config.local_auth_list_max_length,
            max_per_message=st.config.send_local_list_max_length,
        )
        return {"status": status}

    @on(v16.Action.GetLocalListVersion)
    def get_local_list_version(
        self, payload: v16.GetLocalListVersionRequest
    ) -> v16.GetLocalListVersionResponse:
        st = self.station
        if not st.config.local_auth_list_enabled:
            return {"listVersion": -1}
        return {"listVersion": st.authorizer.get_local_list_version()}

    # -- smart charging

    @on(v16.Action.SetChargingProfile)
    def set_charging_profile(
        self, payload: v16.SetChargingProfileRequest
    ) -> v16.SetChargingProfileResponse:
        st = self.station
        tx = st.transaction
        status = st.profiles.set_16(
            payload["connectorId"],
            payload["csChargingProfiles"],
            transaction_id_active=None if tx is None else tx.transaction_id,
        )
        st.profiles_changed()
        return {"status": status}

    @on(v16.Action.ClearChargingProfile)
    def clear_charging_profile(
        self, payload: v16.ClearChargingProfileRequest
    ) -> v16.ClearChargingProfileResponse:
        st = self.station
        status = st.profiles.clear_16(payload)
        st.profiles_changed()
        return {"status": status}

    @on(v16.Action.GetCompositeSchedule)
    def get_composite_schedule(self, payload: v16.GetCompositeScheduleRequest) -> dict[str, Any]:
        st = self.station
        tx = st.transaction
        return st.profiles.composite_16(
            payload["connectorId"],
            payload["duration"],
            payload.get("chargingRateUnit"),
            st.now(),
            transaction_start=None if tx is None else tx.started_at,
            voltage=st.model.nominal_voltage_v,
            phases=st.model.phases,
        )
