"""The OCPP 2.0.1 charging station runtime of a PlugStream station, with one EVSE.

:class:`Station201` is the 2.0.1 sibling of :class:`~plugstream.station.station16.Station16`
and wires the same sans-I/O parts (hardware, connector status machine, journal,
device model, local authorization, metering, smart charging) to an
:class:`~plugstream.ocpp.OcppEndpoint` running over a ``websockets`` connection:

- On every connection: BootNotification (reason PowerUp, or RemoteReset after a
  Reset), retried after ``interval`` while the CSMS answers Pending or Rejected;
  once Accepted: StatusNotification of the connector, Heartbeat every
  ``OCPPCommCtrlr.HeartbeatInterval`` and the TransactionEvent messages of the journal.
- Sessions: plug in, present an idToken (a swipe, or RequestStartTransaction),
  Authorize when the local rules say so, TransactionEvent Started (the station makes
  the transactionId), Updated every ``SampledDataCtrlr.TxUpdatedInterval`` and Ended
  with the ``TxEnded`` meter values. Every TransactionEvent is written to the durable
  :class:`Journal` first, carries a ``seqNo`` increasing per transaction and
  ``offline: true`` when generated while not connected, and is delivered in order.
- :meth:`Station201.run` connects (subprotocol ``ocpp2.0.1``, permessage-deflate
  offered) and reconnects with a :class:`ReconnectBackoff` from
  ``OCPPCommCtrlr.RetryBackOff*``. BootNotification only when (re)booted (B01, B11/B12
  after a Reset), when the boot data changed, or until Accepted; a plain reconnect goes
  straight on, with the StatusNotification of a connector whose status changed meanwhile.
- Clock-aligned meter values (J01; ``AlignedDataCtrlr.Interval`` > 0 and ``Enabled``,
  measurands ``AlignedDataCtrlr.Measurands``, context ``Sample.Clock``) run always,
  stamped with their grid point: outside a transaction as MeterValuesRequest with
  evseId 1 (J01.FR.14; the station's one meter is the EVSE's, there is no separate main
  meter for evseId 0), sent at once when online and dropped offline (only meter values
  belonging to a transaction are queued, J02); during one as TransactionEvent Updated
  with triggerReason MeterValueClock (J01.FR.22), journalled. With
  ``AlignedDataCtrlr.SendDuringIdle`` none are sent while a transaction runs
  (J01.FR.20). ``SignReadings`` is not supported: nothing is signed.

Time, idle cost, restart safety and traffic counting are as in
:mod:`plugstream.station.station16` (:class:`StationRuntime`): a transaction running
when the process died is ended on the next start with TransactionEvent Ended
(triggerReason AbnormalCondition, stoppedReason PowerLoss, or Reboot after a clean
stop), ``offline: true``, the seqNo after the last one journalled, and the last
persisted register as its Transaction.End meter value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from ssl import SSLContext
from typing import Any

from plugstream.net.accounting import Link
from plugstream.ocpp import (
    Handlers,
    OcppEndpoint,
    OcppError,
    OcppVersion,
    after,
    on,
    v201,
)
from plugstream.ocpp.datetimes import format_time
from plugstream.station.auth import AuthCache, AuthConfig, Authorizer, LocalAuthList, TokenKey
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certmgmt import CertificateHandlers201, renew_if_expiring, request_signing
from plugstream.station.clock import CallableClock, Clock, SystemClock
from plugstream.station.config import (
    REPORT_BASES,
    DeviceModel201,
    VariableChange,
    atomic_write_json,
)
from plugstream.station.connector import (
    Action,
    ChargePointErrorCode,
    Connector,
    InvalidTransition,
    StatusChanged,
)
from plugstream.station.ev import Ev
from plugstream.station.firmware import (
    FIRMWARE_VARIABLES201,
    FirmwareHandlers201,
    FirmwareUpdater,
)
from plugstream.station.hardware import (
    ENERGY_REGISTER,
    ChargePointHardware,
    Measurements,
    Model,
)
from plugstream.station.journal import Entry, Journal
from plugstream.station.metering import (
    ClockAligned,
    MeterSchedule,
    ReadingContext,
    TransactionData,
    build_meter_value_201,
)
from plugstream.station.smartcharging import ChargingProfiles
from plugstream.station.station16 import (
    CONNECTOR_ID,
    DEFAULT_BOOT_RETRY_S,
    DEFAULT_TICK_S,
    FIRMWARE_VERSION,
    STATE_FILE,
    Compression,
    StationRuntime,
    restored_energy,
    saved_at,
)

__all__ = ["CONNECTOR_ID", "EVSE_ID", "Station201", "StationHandlers201"]

PROFILE_FILE = "security_profile.json"

log = logging.getLogger("plugstream.station")

EVSE_ID = 1
DEFAULT_TOKEN_TYPE = "ISO14443"
_TRIGGERABLE = frozenset(
    {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "TransactionEvent"}
    | {"SignChargingStationCertificate"}  # A02: certmgmt.request_signing
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


class Station201(StationRuntime):
    """One PlugStream charging station speaking OCPP 2.0.1, with one EVSE and connector.

    ``device_model_defaults`` ("Component.Variable" -> value) are applied when the
    device model has no file yet (a factory setting, e.g. short intervals in tests).
    """

    ocpp_version = OcppVersion.V201

    def __init__(
        self,
        station_id: str,
        model: Model,
        data_dir: Path | str,
        now: Callable[[], datetime] | None = None,
        *,
        clock: Clock | None = None,
        journal: Journal | None = None,
        rng: random.Random | None = None,
        device_model_defaults: Mapping[str, str] | None = None,
        call_timeout: float = 30.0,
        backoff: ReconnectBackoff | None = None,
        tick_interval: float | None = DEFAULT_TICK_S,
        serial_number: str | None = None,
        traffic_autosave: bool = True,
        link: Link = "ethernet",
        ssl: SSLContext | None = None,
        compression: Compression = "deflate",
        sync_state: bool = True,
        state_in_journal: bool = False,
    ) -> None:
        self.station_id = station_id
        self.model = model
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if clock is None:
            clock = SystemClock() if now is None else CallableClock(now)
        self.clock = clock
        self.now = clock.now
        self.rng = rng if rng is not None else random.Random()
        self.call_timeout = call_timeout
        self.tick_interval = tick_interval
        self.serial_number = serial_number
        self.link = link
        self.traffic_autosave = traffic_autosave
        self.ssl = ssl  # for wss:// with a private CA or a client certificate
        self.compression = compression  # permessage-deflate offered; None: not
        self.sync_state = sync_state  # fsync state.json: survives an OS crash, not only kill -9
        self.state_in_journal = state_in_journal  # state in the journal's database, no file

        dm_path = self.data_dir / DeviceModel201.FILENAME
        fresh = not dm_path.exists()
        self.config = DeviceModel201.load(
            dm_path,
            evses={EVSE_ID: 1},
            identity=station_id,
            vendor_name=model.vendor,
            model=model.name,
            supply_phases=model.phases,
            max_power_w=float(model.max_power_w),
            extra=FIRMWARE_VARIABLES201,
        )
        if fresh:
            for name, value in (device_model_defaults or {}).items():
                component, variable = name.split(".", 1)
                self.config.set_value(component, variable, value)
            self.config.save()
        # SecurityCtrlr.SecurityProfile is read-only in the device model, kept on file here
        profile = _load_profile(self.data_dir / PROFILE_FILE)
        if profile is not None:
            self.config.set_value("SecurityCtrlr", "SecurityProfile", str(profile))
        self.config.add_listener(self._on_config_change)
        self._fixed_backoff = backoff is not None
        self.backoff = backoff if backoff is not None else self._config_backoff()
        self.journal = journal if journal is not None else Journal(self.data_dir / "journal.sqlite")
        self.state_path = self.data_dir / STATE_FILE
        state = self._load_state()
        self.hardware = ChargePointHardware(
            model, self.rng, now=self._seconds(), energy_wh=restored_energy(state)
        )
        operative = state.get("pending_operative")
        if operative is None:
            operative = state.get("operative", True)
        self.connector = Connector(CONNECTOR_ID, operative=bool(operative))
        self.local_list = LocalAuthList.load(self.data_dir / "local_list.json")
        self.cache = AuthCache.load(self.data_dir / "auth_cache.json")
        self.authorizer = Authorizer(self.local_list, self.cache, self._auth_config())
        profile_options: dict[str, Any] = {
            "max_profiles": int(
                self.config.definition(
                    "SmartChargingCtrlr", "Entries", instance="ChargingProfiles"
                ).max_limit
                or 16
            ),
            "max_stack_level": self.config.get_int("SmartChargingCtrlr", "ProfileStackLevel"),
            "max_current": model.max_current_a,
        }
        self.profiles = ChargingProfiles((EVSE_ID,), **profile_options)
        if isinstance(state.get("profiles"), str):
            try:
                self.profiles = ChargingProfiles.from_json(
                    state["profiles"], (EVSE_ID,), **profile_options
                )
            except (ValueError, KeyError, TypeError):
                log.warning("persisted charging profiles unreadable: dropped")

        self.endpoint: OcppEndpoint | None = None
        self.accepted = False  # BootNotification accepted on the current connection
        self.registration: str | None = None  # the last BootNotification status
        self.heartbeat_interval = self.config.heartbeat_interval
        self.transaction: _Transaction | None = None
        self.boot_reason = "PowerUp"
        self._id_token: dict[str, Any] | None = None  # the authorized token, before a start
        self._trigger = "Authorized"  # triggerReason of the next Started
        self._remote_start_id: int | None = None
        self._reset_on_idle = False
        self._changed = asyncio.Event()  # the journal's and the session's wake-up
        self._tick_event = asyncio.Event()  # the tick loop's wake-up
        self._tasks = set()
        self._ws = None
        self._boot_needed = True  # a process start: BootNotification on the first connection
        self._accepted_boot: dict[str, Any] | None = None
        self._reported: dict[int, str] = {}  # connectorId -> status last sent
        self._last_sent = self._seconds()  # any CALL to the CSMS: resets the heartbeat timer
        self._last_heartbeat = self._seconds()
        self._authorized_at: datetime | None = None  # EVConnectionTimeOut
        self._cycle = None  # the open charge cycle of self.traffic
        # in and outside transactions; the transaction's own schedule is sampled only
        self.aligned = ClockAligned(self._aligned_interval(), self.now())

        self.traffic = self._load_traffic()
        self._traffic_saved_at = self._seconds()
        self.firmware = FirmwareUpdater.for_station(self, FIRMWARE_VERSION)
        self._recover(state)

    # -- state -----------------------------------------------------------------------

    def _config_backoff(self) -> ReconnectBackoff:
        c = self.config
        return ReconnectBackoff(
            c.retry_back_off_wait_minimum,
            c.retry_back_off_random_range,
            c.retry_back_off_repeat_times,
            self.rng,
        )

    def _configured_meter_interval(self) -> int:
        return self.config.sampled_data_tx_updated_interval

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
        elif change.component == "OCPPCommCtrlr" and change.variable in _BACKOFF_VARIABLES:
            if not self._fixed_backoff:
                self.backoff = self._config_backoff()
        elif name == ("SampledDataCtrlr", "TxUpdatedInterval") and self.transaction is not None:
            self.transaction.schedule.configure(
                sample_interval=self._meter_interval(int(change.value)), now=self.now()
            )
        elif name in (("AlignedDataCtrlr", "Interval"), ("AlignedDataCtrlr", "Enabled")):
            self.aligned.configure(self._aligned_interval(), self.now())
        self.wake()

    def _aligned_interval(self) -> int:
        """``AlignedDataCtrlr.Interval``, 0 while ``AlignedDataCtrlr.Enabled`` is false."""
        c = self.config
        return c.aligned_data_interval if c.get_bool("AlignedDataCtrlr", "Enabled") else 0

    def close(self) -> None:
        """Save the state (a clean stop) and release the files; call after :meth:`run`."""
        for task in list(self._tasks):
            task.cancel()
        self.save_state(clean=True)
        if self.traffic_autosave:
            self._save_traffic()
        self.journal.close()

    # -- what survives a restart ---------------------------------------------------

    def save_state(self, *, clean: bool = False) -> None:
        """Persist the register, the transaction, profiles and availability atomically."""
        self.hardware.advance(self._seconds())
        tx = self.transaction
        self._write_state(
            self.state_path,
            {
                "energy_wh": str(self.hardware.energy_wh),
                "saved_at": self.now().isoformat(),
                "clean": clean,
                "operative": self.connector.operative,
                "pending_operative": self.connector.pending_operative,
                "profiles": self.profiles.to_json(),
                "transaction": None if tx is None else tx.to_json(),
            },
        )

    def _recover(self, state: Mapping[str, Any]) -> None:
        """End the transaction that was running when the process stopped: Ended with
        stoppedReason PowerLoss (Reboot after a clean stop), triggerReason
        AbnormalCondition, offline, the next seqNo and the last persisted register."""
        saved = state.get("transaction")
        if isinstance(saved, dict):
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
            self.profiles.end_transaction(EVSE_ID)
        for cycle in self.traffic.open_cycles:  # the car is gone as far as we know
            self.traffic.end_cycle(cycle, self.now())
        self.save_state()

    # -- messages that are not journalled ---------------------------------------------

    def _emit(self, actions: list[Action]) -> None:
        """Send a StatusNotification for each status change; while offline the change is
        kept in the connector and its current status is sent on reconnect."""
        for action in actions:
            if not isinstance(action, StatusChanged):
                continue
            if self.online:
                if self._reported.get(action.connector_id) == action.status_201.value:
                    continue  # e.g. Preparing -> Charging: Occupied both, nothing to tell
                self._reported[action.connector_id] = action.status_201.value
                self.spawn(self._call_quietly("StatusNotification", _status_payload(action)))
            else:
                self._reported.pop(action.connector_id, None)
        if actions:
            self.wake()

    def _meter_value(self, measurands: list[str], context: str) -> dict[str, Any] | None:
        self.hardware.advance(self._seconds())
        return build_meter_value_201(self.hardware.measurements(), measurands, context, self.now())

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
    ) -> int:
        """Journal one TransactionEvent of ``tx`` (durably, before anything else happens)."""
        transaction_info: dict[str, Any] = {"transactionId": tx.transaction_id}
        transaction_info.update(info or {})
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": format_time(self.now()),
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
        seq = self.journal.append("TransactionEvent", payload)
        if event_type != "Ended":  # Ended: saved once the transaction is gone
            self.save_state()
        self.wake()
        return seq

    # -- the user and the car ----------------------------------------------------------

    def plug_in(self, ev: Ev) -> None:
        """A car is plugged in; a transaction starts if a token is authorized already."""
        self.hardware.advance(self._seconds())
        if not self.hardware.plug_in(ev):
            raise InvalidTransition("a cable is plugged in already")
        self._start_cycle()
        self._emit(self.connector.plug_in(self.now()))
        self._trigger = "CablePluggedIn"
        self._maybe_start()
        self.wake()

    def unplug(self) -> None:
        """The car is unplugged: an ongoing transaction ends (EVDisconnected)."""
        now = self.now()
        if self.transaction is not None:
            self._journal_end("EVCommunicationLost", "EVDisconnected")
        self.hardware.open_contactor()
        self.hardware.unlock_cable()
        self.hardware.unplug()
        self._emit(self.connector.unplug(now))
        self._end_cycle()
        self._after_end()
        self.wake()

    async def swipe(self, id_token: str, token_type: str = DEFAULT_TOKEN_TYPE) -> bool:
        """A card is presented: starts (or, same token, stops) a session; True if accepted."""
        token = {"idToken": id_token, "type": token_type}
        tx = self.transaction
        if tx is not None:
            if TokenKey.from_id_token(tx.id_token) != TokenKey.from_id_token(token):
                return False
            self.stop_transaction("StopAuthorized", "Local")
            return True
        if not await self._authorize(token):
            return False
        return self._accept_token(token, "Authorized")

    async def _authorize(self, token: dict[str, Any]) -> bool:
        key = TokenKey.from_id_token(token)
        decision = self.authorizer.authorize(key, online=self.online, now=self.now())
        if not decision.ask_csms:
            return decision.accept_locally
        try:
            result = await self.call("Authorize", {"idToken": token})
        except OcppError:  # the connection went away meanwhile: decide offline
            decision = self.authorizer.authorize(key, online=False, now=self.now())
            return decision.accept_locally
        info = result["idTokenInfo"]
        self.authorizer.on_csms_info(key, info, now=self.now())
        return bool(info.get("status") == "Accepted")

    def _accept_token(
        self, token: dict[str, Any], trigger: str, remote_start_id: int | None = None
    ) -> bool:
        try:
            self._emit(self.connector.authorized(str(token["idToken"]), self.now()))
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
        now = self.now()
        self.hardware.advance(now.timestamp())
        self.hardware.lock_cable()
        self.hardware.close_contactor()
        measurements = self.hardware.measurements()
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
        info: dict[str, Any] = {"chargingState": "Charging" if self._ev_ready() else "SuspendedEV"}
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
        self._emit(
            self.connector.start_transaction(
                now,
                ev_ready=self._ev_ready(),
                evse_ready=self.hardware.offered_current_a > 0,
            )
        )
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
        self._emit(self.connector.stop_transaction(self.now()))
        self._after_end()

    def fault(self, code: ChargePointErrorCode) -> None:
        """A fault trips the contactor: an ongoing transaction ends (Other); Faulted."""
        if self.transaction is not None:
            self.stop_transaction("AbnormalCondition", "Other")
        self.hardware.raise_fault(code.value)
        self._emit(self.connector.fault(code, self.now()))

    def clear_fault(self) -> None:
        """The fault is resolved: the connector returns to what the facts call for."""
        actions = self.connector.clear_fault(self.now())
        self.hardware.clear_fault()
        self._emit(actions)

    def _journal_end(self, trigger_reason: str, stopped_reason: str) -> None:
        tx = self.transaction
        assert tx is not None
        now = self.now()
        self.hardware.advance(now.timestamp())
        tx.data.end(now, self.hardware.measurements())
        self.hardware.open_contactor()
        self.hardware.unlock_cable()
        self._journal_event(
            tx,
            "Ended",
            trigger_reason,
            meter_values=tx.data.meter_values_201(),
            info={"stoppedReason": stopped_reason, "chargingState": "Idle"},
        )
        self.transaction = None
        self.profiles.end_transaction(EVSE_ID)
        self.hardware.set_current_limit(None)
        self.save_state()
        self.wake()

    def _after_end(self) -> None:
        if self._reset_on_idle and self.transaction is None:
            self._reset_on_idle = False
            self.security_event("ResetOrReboot", "OnIdle Reset from the CSMS")
            self.boot_reason = "RemoteReset"
            self._boot_needed = True
            self.spawn(self.disconnect())

    def _ev_ready(self) -> bool:
        ev = self.hardware.ev
        return ev is not None and ev.requested_current() > 0

    # -- time ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Integrate energy, apply smart charging, journal the Updated events that are due
        (outside a transaction: send the clock-aligned MeterValuesRequest)."""
        now = self.now()
        self.hardware.advance(now.timestamp())
        tx = self.transaction
        limit = self.profiles.limit_at(
            EVSE_ID,
            now,
            transaction_start=None if tx is None else tx.started_at,
            voltage=self.model.nominal_voltage_v,
            phases=self.model.phases,
        )
        self.hardware.set_current_limit(limit)
        self._emit(self.connector.tick(now))
        self._connection_timeout(now)
        slot = self.aligned.due(now)
        if tx is None:
            if slot is not None:
                self._send_aligned(slot)
            return
        measurements = self.hardware.measurements()
        tx.data.tick(now, measurements)
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
                self._journal_event(tx, "Updated", trigger_reason, meter_values=[value])
        evse_ready = self.hardware.offered_current_a > 0
        actions = (
            self.connector.evse_resumed(now) if evse_ready else self.connector.evse_suspended(now)
        )
        actions += (
            self.connector.ev_resumed(now) if self._ev_ready() else self.connector.ev_suspended(now)
        )
        self._emit(actions)

    def _send_aligned(self, slot: datetime) -> None:
        """Clock-aligned MeterValuesRequest outside a transaction (J01.FR.14): not
        transaction-related, so sent at once when online and not queued offline."""
        value = build_meter_value_201(
            self.hardware.measurements(),
            self.config.aligned_data_measurands,
            ReadingContext.SAMPLE_CLOCK.value,
            slot,
        )
        if value is None:
            return
        if not self.online:
            log.debug("clock-aligned MeterValues of %s dropped: offline", slot)
            return
        self.spawn(self._call_quietly("MeterValues", {"evseId": EVSE_ID, "meterValue": [value]}))

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
                self._emit(self.connector.connection_timeout(now))

    def next_tick_in(self) -> float | None:
        """Seconds (station time) until something is due, None when only an event can
        change anything: no transaction, no reservation, nothing waiting for a timeout,
        no clock-aligned interval (an idle station then wakes only at its grid points)."""
        now = self.now()
        due: list[datetime] = []
        if self.aligned.next_due is not None:
            due.append(self.aligned.next_due)
        reservation = self.connector.reservation
        if reservation is not None:
            due.append(reservation.expiry)
        if self._authorized_at is not None and self.config.ev_connection_timeout > 0:
            due.append(self._authorized_at + timedelta(seconds=self.config.ev_connection_timeout))
        tx = self.transaction
        if tx is not None:
            for when in (tx.schedule.next_due, tx.data.next_due):
                if when is not None:
                    due.append(when)
            change = self.profiles.next_change(EVSE_ID, now, transaction_start=tx.started_at)
            if change is not None:
                due.append(change)
            wake = self._charging_wake()
            if wake is not None:  # follow the EV's curve (taper, full)
                due.append(now + timedelta(seconds=wake))
        if not due:
            return None
        return max(0.0, (min(due) - now).total_seconds())

    # -- security profile and password ---------------------------------------------------

    def password(self) -> str | None:
        return self.config.basic_auth_password

    def set_password(self, password: str) -> None:
        if password == self.password():
            return
        try:
            self.config.set_value("SecurityCtrlr", "BasicAuthPassword", password)
        except ValueError:
            raise ValueError(
                "the password must be 16 to 40 characters (SecurityCtrlr.BasicAuthPassword)"
            ) from None

    def set_security_profile(self, profile: int) -> None:
        current = self._security_profile()
        if profile == current:
            return
        if profile < current:
            raise ValueError(
                f"the security profile can only be raised: it is {current}, not {profile}"
            )
        problem = self.security_problem(profile, self._target)
        if problem is not None:
            raise ValueError(problem)
        atomic_write_json(self.data_dir / PROFILE_FILE, {"SecurityProfile": profile})
        self.config.set_value("SecurityCtrlr", "SecurityProfile", str(profile))

    def _time_adjustment_threshold(self) -> float:
        return float(self.config.get_int("ClockCtrlr", "TimeAdjustmentReportingThreshold"))

    # -- the journal ---------------------------------------------------------------------

    def _handlers(self) -> Handlers:
        return StationHandlers201(self)

    def _ping_setting(self) -> int:
        return self.config.websocket_ping_interval

    def _retry_rules(self) -> tuple[int, int]:
        return (
            self.config.message_attempts_transaction_event,
            self.config.message_attempt_interval_transaction_event,
        )

    def _on_delivered(self, entry: Entry, result: dict[str, Any]) -> None:
        self._delivered(entry.seq, entry.payload, result)

    def _delivered(self, seq: int, payload: dict[str, Any], result: dict[str, Any]) -> None:
        info = result.get("idTokenInfo")
        token = payload.get("idToken")
        if not isinstance(info, dict) or not isinstance(token, dict):
            return
        self.authorizer.on_csms_info(TokenKey.from_id_token(token), info, now=self.now())
        tx = self.transaction
        if (
            tx is not None
            and tx.started_seq == seq
            and info.get("status") != "Accepted"
            and self.config.stop_tx_on_invalid_id
        ):
            self.stop_transaction("Deauthorized", "DeAuthorized")

    # -- the connection ------------------------------------------------------------------

    def boot_needed(self) -> bool:
        """BootNotification on this connection? Yes after a (re)start or a Reset, when
        the boot data changed, or while not yet Accepted; a plain reconnect: no."""
        station = self._boot_payload()["chargingStation"]
        return self._boot_needed or self._accepted_boot != station

    async def _session(self, endpoint: OcppEndpoint) -> None:
        booted = self.boot_needed()
        if booted:
            await self._boot(endpoint)
        else:
            self.accepted = True
            self.wake()
        status = self._status_now()
        if booted or self._reported.get(CONNECTOR_ID) != status["connectorStatus"]:
            self._reported[CONNECTOR_ID] = status["connectorStatus"]
            await self._call_quietly("StatusNotification", status)
        if self._security_profile() >= 3:
            self.spawn(renew_if_expiring(self))  # A03: renew a certificate near its expiry
        await self._heartbeats()

    async def _boot(self, endpoint: OcppEndpoint) -> None:
        while True:
            payload = self._boot_payload()
            try:
                result = await self._send(endpoint, "BootNotification", payload)
            except OcppError as exc:
                log.info("BootNotification failed: %s", exc)
                await self.clock.sleep(DEFAULT_BOOT_RETRY_S)
                continue
            self.registration = str(result["status"])
            interval = int(result["interval"])
            if self.registration == "Accepted":
                self.boot_reason = "PowerUp"
                if interval > 0:
                    self.heartbeat_interval = interval
                    self.config.set_value("OCPPCommCtrlr", "HeartbeatInterval", str(interval))
                self._boot_needed = False
                self._accepted_boot = payload["chargingStation"]
                self._last_heartbeat = self._seconds()  # the answer carried the time
                self.accepted = True
                self.firmware.on_boot_accepted()  # a new firmware proved itself
                self.wake()
                return
            self._boot_needed = True
            await self.clock.sleep(interval if interval > 0 else DEFAULT_BOOT_RETRY_S)

    def _boot_payload(self) -> dict[str, Any]:
        station: dict[str, Any] = {
            "model": self.model.name,
            "vendorName": self.model.vendor,
            "firmwareVersion": self.firmware.version,
        }
        if self.serial_number is not None:
            station["serialNumber"] = self.serial_number
        return {"reason": self.boot_reason, "chargingStation": station}

    def _status_now(self) -> dict[str, Any]:
        return _status_payload(self.connector.current_status(self.now()))

    async def send_triggered(self, message: str) -> None:
        """Send the message a TriggerMessage asked for."""
        if message == "BootNotification":
            try:
                result = await self.call("BootNotification", self._boot_payload())
            except OcppError:
                return
            if result.get("status") == "Accepted" and int(result["interval"]) > 0:
                self.heartbeat_interval = int(result["interval"])
        elif message == "Heartbeat":
            await self._call_quietly("Heartbeat", {})
        elif message == "FirmwareStatusNotification":
            await self.firmware.send_current_status()
        elif message == "SignChargingStationCertificate":
            await request_signing(self, "ChargingStationCertificate")
        elif message == "StatusNotification":
            await self._call_quietly("StatusNotification", self._status_now())
        elif message == "MeterValues":
            value = self._meter_value(
                self.config.aligned_data_measurands, ReadingContext.TRIGGER.value
            )
            if value is not None:
                await self._call_quietly("MeterValues", {"evseId": EVSE_ID, "meterValue": [value]})
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


def _status_payload(change: StatusChanged) -> dict[str, Any]:
    return {
        "timestamp": format_time(change.timestamp),
        "connectorStatus": change.status_201.value,
        "evseId": EVSE_ID,
        "connectorId": change.connector_id,
    }


def _ours(evse: Mapping[str, Any] | None) -> bool:
    """True when an EVSEType (or its absence: the whole station) includes our connector."""
    if evse is None:
        return True
    return evse.get("id") in (0, EVSE_ID) and evse.get("connectorId", CONNECTOR_ID) == CONNECTOR_ID


class StationHandlers201(CertificateHandlers201, FirmwareHandlers201, Handlers):
    """The answers of a :class:`Station201` to the CSMS's CALLs."""

    def __init__(self, station: Station201) -> None:
        self.station = station

    # -- transactions

    @on("RequestStartTransaction")
    def request_start(self, payload: v201.RequestStartTransactionRequest) -> dict[str, Any]:
        st = self.station
        evse_id = payload.get("evseId", EVSE_ID)
        ok = (
            evse_id == EVSE_ID
            and st.transaction is None
            and st.connector.may_start_transaction(str(payload["idToken"]["idToken"]))
        )
        return {"status": "Accepted" if ok else "Rejected"}

    @after("RequestStartTransaction")
    async def request_start_done(self, payload: v201.RequestStartTransactionRequest) -> None:
        st = self.station
        if st.transaction is not None or payload.get("evseId", EVSE_ID) != EVSE_ID:
            return
        token = dict(payload["idToken"])
        profile = payload.get("chargingProfile")
        if st.config.authorize_remote_start and not await st._authorize(token):
            return
        if st._accept_token(token, "RemoteStart", payload["remoteStartId"]) and profile:
            tx = st.transaction
            if tx is not None:
                st.profiles.set_201(EVSE_ID, profile, active_transaction_id=tx.transaction_id)

    @on("RequestStopTransaction")
    def request_stop(self, payload: v201.RequestStopTransactionRequest) -> dict[str, Any]:
        tx = self.station.transaction
        ok = tx is not None and tx.transaction_id == payload["transactionId"]
        return {"status": "Accepted" if ok else "Rejected"}

    @after("RequestStopTransaction")
    def request_stop_done(self, payload: v201.RequestStopTransactionRequest) -> None:
        tx = self.station.transaction
        if tx is not None and tx.transaction_id == payload["transactionId"]:
            self.station.stop_transaction("RemoteStop", "Remote")

    @on("Reset")
    def reset(self, payload: v201.ResetRequest) -> dict[str, Any]:
        if payload.get("evseId") not in (None, EVSE_ID):
            return {"status": "Rejected"}
        st = self.station
        if payload["type"] == "OnIdle" and st.transaction is not None:
            st._reset_on_idle = True
            return {"status": "Scheduled"}
        return {"status": "Accepted"}

    @after("Reset")
    async def reset_done(self, payload: v201.ResetRequest) -> None:
        st = self.station
        if payload.get("evseId") not in (None, EVSE_ID) or st._reset_on_idle:
            return
        st.security_event("ResetOrReboot", f"{payload['type']} Reset from the CSMS")
        if st.transaction is not None:
            st.stop_transaction("ResetCommand", "ImmediateReset")
        st.boot_reason = "RemoteReset"
        st._boot_needed = True
        await st.disconnect()  # a reboot: reconnect and boot again

    @on("UnlockConnector")
    def unlock(self, payload: v201.UnlockConnectorRequest) -> dict[str, Any]:
        st = self.station
        if payload["evseId"] != EVSE_ID or payload["connectorId"] != CONNECTOR_ID:
            return {"status": "UnknownConnector"}
        if st.transaction is not None:
            return {"status": "OngoingAuthorizedTransaction"}  # F05.FR.02
        return {"status": "Unlocked" if st.hardware.unlock_cable() else "UnlockFailed"}

    @on("ChangeAvailability")
    def change_availability(self, payload: v201.ChangeAvailabilityRequest) -> dict[str, Any]:
        st = self.station
        evse = payload.get("evse")
        if not _ours(None if evse is None else dict(evse)):
            return {"status": "Rejected"}
        operative = payload["operationalStatus"] == "Operative"
        reply = st.connector.change_availability(operative, st.now())
        st._emit(reply.actions)
        st.save_state()
        return {"status": reply.status.value}

    # -- device model

    @on("GetVariables")
    def get_variables(self, payload: v201.GetVariablesRequest) -> dict[str, Any]:
        data = [dict(item) for item in payload["getVariableData"]]
        return {"getVariableResult": self.station.config.get_variables(data)}

    @on("SetVariables")
    def set_variables(self, payload: v201.SetVariablesRequest) -> dict[str, Any]:
        data = [dict(item) for item in payload["setVariableData"]]
        results = self.station.config.set_variables(data)
        for result in results:
            if (
                result["attributeStatus"] == "Accepted"
                and result["component"].get("name") == "SecurityCtrlr"
                and result["variable"].get("name") == "BasicAuthPassword"
            ):
                self.station._reconnect_due = True
        return {"setVariableResult": results}

    @after("SetVariables")
    async def set_variables_done(self, payload: v201.SetVariablesRequest) -> None:
        """A new BasicAuthPassword (A01): disconnect once answered, reconnect with it."""
        st = self.station
        if st._reconnect_due:
            st._reconnect_due = False
            await st.disconnect()

    @on("GetBaseReport")
    def get_base_report(self, payload: v201.GetBaseReportRequest) -> dict[str, Any]:
        if payload["reportBase"] not in REPORT_BASES:
            return {"status": "NotSupported"}
        return {"status": "Accepted"}

    @after("GetBaseReport")
    async def get_base_report_done(self, payload: v201.GetBaseReportRequest) -> None:
        st = self.station
        if payload["reportBase"] not in REPORT_BASES:
            return
        messages = st.config.notify_reports(
            payload["reportBase"], payload["requestId"], format_time(st.now())
        )
        for message in messages:
            await st._call_quietly("NotifyReport", message)

    @on("TriggerMessage")
    def trigger(self, payload: v201.TriggerMessageRequest) -> dict[str, Any]:
        evse = payload.get("evse")
        if not _ours(None if evse is None else dict(evse)):
            return {"status": "Rejected"}
        if payload["requestedMessage"] not in _TRIGGERABLE:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    @after("TriggerMessage")
    async def trigger_done(self, payload: v201.TriggerMessageRequest) -> None:
        evse = payload.get("evse")
        if _ours(None if evse is None else dict(evse)):
            await self.station.send_triggered(payload["requestedMessage"])

    @on("DataTransfer")
    def data_transfer(self, payload: v201.DataTransferRequest) -> dict[str, Any]:
        return {"status": "UnknownVendorId"}

    # -- local authorization

    @on("ClearCache")
    def clear_cache(self, payload: v201.ClearCacheRequest) -> dict[str, Any]:
        return {"status": self.station.authorizer.clear_cache()}

    @on("SendLocalList")
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

    @on("GetLocalListVersion")
    def get_local_list_version(self, payload: v201.GetLocalListVersionRequest) -> dict[str, Any]:
        return {"versionNumber": self.station.authorizer.get_local_list_version()}

    # -- smart charging

    @on("SetChargingProfile")
    def set_charging_profile(self, payload: v201.SetChargingProfileRequest) -> dict[str, Any]:
        st = self.station
        tx = st.transaction
        status = st.profiles.set_201(
            payload["evseId"],
            dict(payload["chargingProfile"]),
            active_transaction_id=None if tx is None else tx.transaction_id,
        )
        st.tick()
        st.save_state()
        st.wake()
        return {"status": status}

    @on("ClearChargingProfile")
    def clear_charging_profile(self, payload: v201.ClearChargingProfileRequest) -> dict[str, Any]:
        st = self.station
        status = st.profiles.clear_201(dict(payload))
        st.tick()
        st.save_state()
        st.wake()
        return {"status": status}

    @on("GetCompositeSchedule")
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
