"""The OCPP 1.6J charge point runtime of a PlugStream station, with one connector.

:class:`Station16` wires the sans-I/O building blocks of :mod:`plugstream.station`
(hardware, connector status machine, journal, configuration, local authorization,
metering, smart charging) to an :class:`~plugstream.ocpp.OcppEndpoint` running over
a ``websockets`` connection:

- On every connection: BootNotification, retried after ``interval`` while the
  Central System answers Pending or Rejected; only once Accepted the station sends
  anything else (1.6 §4.2): the status of its connectors, Heartbeat at the interval
  the Central System asked for, and the transaction-related messages of the journal.
- Sessions: plug in, present an idTag (a swipe, or RemoteStartTransaction), Authorize
  when the local rules say so, StartTransaction, MeterValues every
  ``MeterValueSampleInterval``, StopTransaction with ``transactionData``. Every
  transaction-related message is written to the durable :class:`Journal` first and
  delivered in order by :meth:`Station16.deliver_journal`; the ``transactionId`` of
  MeterValues and StopTransaction is a ``$ref_result`` placeholder resolved when the
  Central System answers StartTransaction. Charging goes on while offline.
- :meth:`Station16.run` connects (subprotocol ``ocpp1.6``) and reconnects with
  :class:`ReconnectBackoff` after a connection loss.

Time comes from the injected ``now()`` clock (an aware UTC datetime); the pauses of
the asyncio loops are real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import websockets
from websockets.typing import Subprotocol

from plugstream.ocpp import (
    ErrorCode,
    Handlers,
    OcppEndpoint,
    OcppError,
    OcppVersion,
    after,
    on,
    v16,
)
from plugstream.station.auth import AuthCache, AuthConfig, Authorizer, LocalAuthList, TokenKey
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.config import Config16
from plugstream.station.connector import (
    Action,
    ChargePointErrorCode,
    Connector,
    InvalidTransition,
    StatusChanged,
)
from plugstream.station.ev import Ev
from plugstream.station.hardware import ChargePointHardware, Model
from plugstream.station.journal import REF_KEY, Journal
from plugstream.station.metering import (
    MeterSchedule,
    ReadingContext,
    TransactionData,
    build_meter_value_16,
    format_timestamp,
)
from plugstream.station.smartcharging import ChargingProfiles

__all__ = ["CONNECTOR_ID", "Station16", "StationHandlers16"]

log = logging.getLogger("plugstream.station")

CONNECTOR_ID = 1
FIRMWARE_VERSION = "0.1.0"
DEFAULT_BOOT_RETRY_S = 30.0  # when a Pending/Rejected answer gives interval 0
_TRIGGERABLE = frozenset({"BootNotification", "Heartbeat", "StatusNotification", "MeterValues"})


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

    def reference(self) -> int | dict[str, Any]:
        """The transactionId, or a placeholder for it until it is known."""
        if self.transaction_id is not None:
            return self.transaction_id
        return {REF_KEY: self.start_seq, "key": "transactionId", "default": -1}


class Station16:
    """One PlugStream charge point speaking OCPP 1.6J, with one connector."""

    def __init__(
        self,
        station_id: str,
        model: Model,
        data_dir: Path | str,
        now: Callable[[], datetime],
        *,
        rng: random.Random | None = None,
        config_defaults: Mapping[str, str] | None = None,
        call_timeout: float = 30.0,
        backoff: ReconnectBackoff | None = None,
        tick_interval: float = 1.0,
        serial_number: str | None = None,
    ) -> None:
        self.station_id = station_id
        self.model = model
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.now = now
        self.rng = rng if rng is not None else random.Random()
        self.call_timeout = call_timeout
        self.backoff = backoff if backoff is not None else ReconnectBackoff(5.0, 5.0, 5, self.rng)
        self.tick_interval = tick_interval
        self.serial_number = serial_number

        self.config = Config16.load(self.data_dir / Config16.FILENAME, defaults=config_defaults)
        self.config.add_listener(self._on_config_change)
        self.journal = Journal(self.data_dir / "journal.sqlite")
        self.hardware = ChargePointHardware(model, self.rng, now=self._seconds())
        self.connector = Connector(CONNECTOR_ID)
        self.local_list = LocalAuthList.load(self.data_dir / "local_list.json")
        self.cache = AuthCache.load(self.data_dir / "auth_cache.json")
        self.authorizer = Authorizer(self.local_list, self.cache, self._auth_config())
        self.profiles = ChargingProfiles(
            (CONNECTOR_ID,),
            max_profiles=self.config.max_charging_profiles_installed,
            max_stack_level=self.config.charge_profile_max_stack_level,
            max_current=model.max_current_a,
        )

        self.endpoint: OcppEndpoint | None = None
        self.accepted = False  # BootNotification accepted on the current connection
        self.registration: str | None = None  # the last BootNotification status
        self.heartbeat_interval = self.config.heartbeat_interval
        self.transaction: _Transaction | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws: Any = None

    # -- state -----------------------------------------------------------------------

    @property
    def online(self) -> bool:
        """Connected and registered: messages other than BootNotification may be sent."""
        return self.endpoint is not None and self.accepted

    def _seconds(self) -> float:
        return self.now().timestamp()

    def _auth_config(self) -> AuthConfig:
        c = self.config
        return AuthConfig(
            local_authorize_offline=c.local_authorize_offline,
            local_pre_authorize=c.local_pre_authorize,
            cache_enabled=c.authorization_cache_enabled,
            local_list_enabled=c.local_auth_list_enabled,
            allow_offline_tx_for_unknown_id=c.allow_offline_tx_for_unknown_id,
        )

    def _on_config_change(self, key: str, value: str) -> None:
        self.authorizer.config = self._auth_config()
        if key == "MeterValueSampleInterval" and self.transaction is not None:
            self.transaction.schedule.configure(sample_interval=int(value))
        if key == "HeartbeatInterval":
            self.heartbeat_interval = int(value)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()

    async def _wait_change(self, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Release the files (the journal); call after :meth:`run` has ended."""
        for task in list(self._tasks):
            task.cancel()
        self.journal.close()

    # -- messages that are not journalled ---------------------------------------------

    async def _call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoint
        if endpoint is None:
            raise OcppError(ErrorCode.GenericError, "not connected")
        return await endpoint.call(action, payload)

    async def _call_quietly(self, action: str, payload: dict[str, Any]) -> None:
        try:
            await self._call(action, payload)
        except OcppError as exc:
            log.info("%s not delivered: %s", action, exc)

    def _emit(self, actions: list[Action]) -> None:
        """Send a StatusNotification for each status change (dropped while offline)."""
        for action in actions:
            if isinstance(action, StatusChanged) and self.online:
                self._spawn(self._call_quietly("StatusNotification", _status_payload(action)))

    def _status_payloads(self) -> list[dict[str, Any]]:
        now = self.now()
        zero = {
            "connectorId": 0,
            "errorCode": "NoError",
            "status": "Available",
            "timestamp": format_timestamp(now),
        }
        return [zero, _status_payload(self.connector.current_status(now))]

    def _meter_value(self, context: str) -> dict[str, Any] | None:
        self.hardware.advance(self._seconds())
        return build_meter_value_16(
            self.hardware.measurements(),
            self.config.meter_values_sampled_data,
            context,
            self.now(),
        )

    # -- the user and the car ----------------------------------------------------------

    def plug_in(self, ev: Ev) -> None:
        """A car is plugged in; a session starts if an idTag is authorized already."""
        self.hardware.advance(self._seconds())
        if not self.hardware.plug_in(ev):
            raise InvalidTransition("a cable is plugged in already")
        self._emit(self.connector.plug_in(self.now()))
        self._maybe_start()

    def unplug(self) -> None:
        """The car is unplugged: an ongoing transaction stops (EVDisconnected)."""
        now = self.now()
        if self.transaction is not None:
            self._journal_stop("EVDisconnected")
        self.hardware.open_contactor()
        self.hardware.unlock_cable()
        self.hardware.unplug()
        self._emit(self.connector.unplug(now))

    async def swipe(self, id_tag: str) -> bool:
        """A card is presented: starts (or, same idTag, stops) a session; True if accepted."""
        tx = self.transaction
        if tx is not None:
            if tx.id_tag.casefold() != id_tag.casefold():
                return False
            self.stop_transaction("Local")
            return True
        if not await self._authorize(id_tag):
            return False
        return self._accept_id(id_tag)

    async def _authorize(self, id_tag: str) -> bool:
        key = TokenKey.id_tag(id_tag)
        decision = self.authorizer.authorize(key, online=self.online, now=self.now())
        if not decision.ask_csms:
            return decision.accept_locally
        try:
            result = await self._call("Authorize", {"idTag": id_tag})
        except OcppError:  # the connection went away meanwhile: decide offline
            decision = self.authorizer.authorize(key, online=False, now=self.now())
            return decision.accept_locally
        info = result["idTagInfo"]
        self.authorizer.on_csms_info(key, info, now=self.now())
        return bool(info.get("status") == "Accepted")

    def _accept_id(self, id_tag: str) -> bool:
        try:
            self._emit(self.connector.authorized(id_tag, self.now()))
        except InvalidTransition:
            return False
        self._maybe_start()
        return True

    def _maybe_start(self) -> None:
        id_tag = self.connector.id_tag
        if self.transaction is not None or id_tag is None or not self.hardware.ev:
            return
        if not self.connector.may_start_transaction(id_tag):
            return
        self.start_transaction(id_tag)

    def start_transaction(self, id_tag: str) -> None:
        """Lock, close the contactor and journal StartTransaction."""
        now = self.now()
        self.hardware.advance(now.timestamp())
        self.hardware.lock_cable()
        self.hardware.close_contactor()
        measurements = self.hardware.measurements()
        meter_start = int(measurements.energy_wh)
        seq = self.journal.append(
            "StartTransaction",
            {
                "connectorId": CONNECTOR_ID,
                "idTag": id_tag,
                "meterStart": meter_start,
                "timestamp": format_timestamp(now),
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
        schedule = MeterSchedule(c.meter_value_sample_interval, c.clock_aligned_data_interval, now)
        schedule.start_transaction(now)
        self.transaction = _Transaction(id_tag, seq, meter_start, now, data, schedule)
        self._emit(
            self.connector.start_transaction(
                now,
                ev_ready=self._ev_ready(),
                evse_ready=self.hardware.offered_current_a > 0,
            )
        )
        self._wake()

    def stop_transaction(self, reason: str) -> None:
        """Stop the ongoing transaction (the cable stays in: Finishing)."""
        if self.transaction is None:
            return
        self._journal_stop(reason)
        self._emit(self.connector.stop_transaction(self.now()))

    def fault(self, code: ChargePointErrorCode) -> None:
        """A fault trips the contactor: an ongoing transaction stops (Other); Faulted."""
        if self.transaction is not None:
            self.stop_transaction("Other")
        self.hardware.raise_fault(code.value)
        self._emit(self.connector.fault(code, self.now()))

    def clear_fault(self) -> None:
        """The fault is resolved: the connector returns to what the facts call for."""
        actions = self.connector.clear_fault(self.now())
        self.hardware.clear_fault()
        self._emit(actions)

    def _journal_stop(self, reason: str) -> None:
        tx = self.transaction
        assert tx is not None
        now = self.now()
        self.hardware.advance(now.timestamp())
        measurements = self.hardware.measurements()
        tx.data.end(now, measurements)
        self.hardware.open_contactor()
        self.hardware.unlock_cable()
        payload: dict[str, Any] = {
            "transactionId": tx.reference(),
            "idTag": tx.id_tag,
            "meterStop": int(measurements.energy_wh),
            "timestamp": format_timestamp(now),
            "reason": reason,
        }
        transaction_data = tx.data.meter_values_16()
        if transaction_data:
            payload["transactionData"] = transaction_data
        self.journal.append("StopTransaction", payload)
        self.transaction = None
        self.profiles.end_transaction(CONNECTOR_ID)
        self.hardware.set_current_limit(None)
        self._wake()

    def _ev_ready(self) -> bool:
        ev = self.hardware.ev
        return ev is not None and ev.requested_current() > 0

    # -- time ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Integrate energy, apply smart charging, journal the meter values that are due."""
        now = self.now()
        self.hardware.advance(now.timestamp())
        tx = self.transaction
        limit = self.profiles.limit_at(
            CONNECTOR_ID,
            now,
            transaction_start=None if tx is None else tx.started_at,
            voltage=self.model.nominal_voltage_v,
            phases=self.model.phases,
        )
        self.hardware.set_current_limit(limit)
        self._emit(self.connector.tick(now))
        if tx is None:
            return
        measurements = self.hardware.measurements()
        tx.data.tick(now, measurements)
        for kind in tx.schedule.due(now):
            value = build_meter_value_16(
                measurements,
                self.config.meter_values_sampled_data
                if kind.value == ReadingContext.SAMPLE_PERIODIC
                else self.config.meter_values_aligned_data,
                kind.value,
                now,
            )
            if value is not None:
                self.journal.append(
                    "MeterValues",
                    {
                        "connectorId": CONNECTOR_ID,
                        "transactionId": tx.reference(),
                        "meterValue": [value],
                    },
                )
                self._wake()
        evse_ready = self.hardware.offered_current_a > 0
        actions = (
            self.connector.evse_resumed(now) if evse_ready else self.connector.evse_suspended(now)
        )
        actions += (
            self.connector.ev_resumed(now) if self._ev_ready() else self.connector.ev_suspended(now)
        )
        self._emit(actions)

    async def tick_loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("station tick failed")
            await asyncio.sleep(self.tick_interval)

    # -- the journal ---------------------------------------------------------------------

    async def deliver_journal(self) -> None:
        """Send journal entries in order while registered; never returns."""
        while True:
            self._changed.clear()
            endpoint = self.endpoint
            if endpoint is None or not self.accepted:
                await self._wait_change(None)
                continue
            now = self._seconds()
            entry = self.journal.next_due(now)
            if entry is None:
                head = self.journal.head()
                await self._wait_change(None if head is None else head.next_attempt_at - now)
                continue
            try:
                result = await endpoint.call(entry.action, entry.payload)
            except OcppError as exc:
                if endpoint is not self.endpoint:
                    continue  # the connection was lost: not a failure, resend after reconnect
                log.warning("%s (journal %d) failed: %s", entry.action, entry.seq, exc)
                # a CALLERROR, or no answer on a live connection: a failure to process
                self.journal.failed_attempt(
                    entry.seq,
                    self._seconds(),
                    attempts_max=self.config.transaction_message_attempts,
                    retry_interval=self.config.transaction_message_retry_interval,
                )
                continue
            self.journal.acknowledge(entry.seq, result)
            self._delivered(entry.action, entry.seq, entry.payload, result)

    def _delivered(
        self, action: str, seq: int, payload: dict[str, Any], result: dict[str, Any]
    ) -> None:
        info = result.get("idTagInfo")
        id_tag = payload.get("idTag")
        if isinstance(info, dict) and isinstance(id_tag, str):
            self.authorizer.on_csms_info(TokenKey.id_tag(id_tag), info, now=self.now())
        tx = self.transaction
        if action == "StartTransaction" and tx is not None and tx.start_seq == seq:
            tx.transaction_id = int(result["transactionId"])
            status = info.get("status") if isinstance(info, dict) else "Accepted"
            if status != "Accepted" and self.config.stop_transaction_on_invalid_id:
                self.stop_transaction("DeAuthorized")

    # -- the connection ------------------------------------------------------------------

    async def run(self, url: str) -> None:
        """Connect to ``url`` + ``/`` + station id, serve, reconnect forever (cancel to stop)."""
        target = url.rstrip("/") + "/" + self.station_id
        loops = [
            asyncio.get_running_loop().create_task(self.tick_loop()),
            asyncio.get_running_loop().create_task(self.deliver_journal()),
        ]
        try:
            while True:
                try:
                    async with websockets.connect(
                        target,
                        subprotocols=[Subprotocol(OcppVersion.V16.subprotocol)],
                        open_timeout=self.call_timeout,
                        ping_interval=self.config.websocket_ping_interval or None,
                    ) as ws:
                        self.backoff.reset()
                        await self.serve(ws)
                except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                    log.info("connection to %s failed: %s", target, exc)
                await asyncio.sleep(self.backoff.next_delay())
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def serve(self, ws: Any) -> None:
        """Run one connection until it closes."""
        endpoint = OcppEndpoint(
            ws, OcppVersion.V16, StationHandlers16(self), call_timeout=self.call_timeout
        )
        self._ws = ws
        self.endpoint = endpoint
        self.accepted = False
        session = asyncio.get_running_loop().create_task(self._session(endpoint))
        try:
            await endpoint.run()
        finally:
            # in the same step as run()'s end: the failed calls see that the connection went
            self.endpoint = None
            self.accepted = False
            self._ws = None
            self._wake()
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)

    async def _session(self, endpoint: OcppEndpoint) -> None:
        await self._boot(endpoint)
        for payload in self._status_payloads():
            await self._call_quietly("StatusNotification", payload)
        while True:
            await asyncio.sleep(self.heartbeat_interval if self.heartbeat_interval > 0 else 60)
            if self.heartbeat_interval > 0:
                await self._call_quietly("Heartbeat", {})

    async def _boot(self, endpoint: OcppEndpoint) -> None:
        while True:
            try:
                result = await endpoint.call("BootNotification", self._boot_payload())
            except OcppError as exc:
                log.info("BootNotification failed: %s", exc)
                await asyncio.sleep(DEFAULT_BOOT_RETRY_S)
                continue
            self.registration = str(result["status"])
            interval = int(result["interval"])
            if self.registration == "Accepted":
                if interval > 0:
                    self.heartbeat_interval = interval
                    self.config.set_internal("HeartbeatInterval", str(interval))
                self.accepted = True
                self._wake()
                return
            await asyncio.sleep(interval if interval > 0 else DEFAULT_BOOT_RETRY_S)

    def _boot_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "chargePointVendor": self.model.vendor,
            "chargePointModel": self.model.name,
            "firmwareVersion": FIRMWARE_VERSION,
        }
        if self.serial_number is not None:
            payload["chargePointSerialNumber"] = self.serial_number
        return payload

    async def _disconnect(self) -> None:
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def send_triggered(self, message: str) -> None:
        """Send the message a TriggerMessage asked for."""
        if message == "BootNotification":
            try:
                result = await self._call("BootNotification", self._boot_payload())
            except OcppError:
                return
            if result.get("status") == "Accepted" and int(result["interval"]) > 0:
                self.heartbeat_interval = int(result["interval"])
        elif message == "Heartbeat":
            await self._call_quietly("Heartbeat", {})
        elif message == "StatusNotification":
            for payload in self._status_payloads():
                await self._call_quietly("StatusNotification", payload)
        elif message == "MeterValues":
            value = self._meter_value(ReadingContext.TRIGGER.value)
            if value is None:
                return
            meter: dict[str, Any] = {"connectorId": CONNECTOR_ID, "meterValue": [value]}
            tx = self.transaction
            if tx is not None and tx.transaction_id is not None:
                meter["transactionId"] = tx.transaction_id
            await self._call_quietly("MeterValues", meter)


def _status_payload(change: StatusChanged) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": change.connector_id,
        "errorCode": change.error_code.value,
        "status": change.status_16.value,
        "timestamp": format_timestamp(change.timestamp),
    }
    if change.info:
        payload["info"] = change.info[:50]
    return payload


class StationHandlers16(Handlers):
    """The answers of a :class:`Station16` to the Central System's CALLs."""

    def __init__(self, station: Station16) -> None:
        self.station = station

    # -- transactions

    @on("RemoteStartTransaction")
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

    @after("RemoteStartTransaction")
    async def remote_start_done(self, payload: v16.RemoteStartTransactionRequest) -> None:
        st = self.station
        if st.transaction is not None or payload.get("connectorId", 1) != CONNECTOR_ID:
            return
        id_tag = payload["idTag"]
        if st.config.authorize_remote_tx_requests and not await st._authorize(id_tag):
            return
        st._accept_id(id_tag)

    @on("RemoteStopTransaction")
    def remote_stop(
        self, payload: v16.RemoteStopTransactionRequest
    ) -> v16.RemoteStopTransactionResponse:
        tx = self.station.transaction
        ok = tx is not None and tx.transaction_id == payload["transactionId"]
        return {"status": "Accepted" if ok else "Rejected"}

    @after("RemoteStopTransaction")
    def remote_stop_done(self, payload: v16.RemoteStopTransactionRequest) -> None:
        tx = self.station.transaction
        if tx is not None and tx.transaction_id == payload["transactionId"]:
            self.station.stop_transaction("Remote")

    @on("Reset")
    def reset(self, payload: v16.ResetRequest) -> v16.ResetResponse:
        return {"status": "Accepted"}

    @after("Reset")
    async def reset_done(self, payload: v16.ResetRequest) -> None:
        st = self.station
        st.stop_transaction("HardReset" if payload["type"] == "Hard" else "SoftReset")
        await st._disconnect()  # a reboot: reconnect and boot again

    @on("UnlockConnector")
    def unlock(self, payload: v16.UnlockConnectorRequest) -> v16.UnlockConnectorResponse:
        st = self.station
        if payload["connectorId"] != CONNECTOR_ID:
            return {"status": "NotSupported"}
        st.stop_transaction("UnlockCommand")
        return {"status": "Unlocked" if st.hardware.unlock_cable() else "UnlockFailed"}

    @on("ChangeAvailability")
    def change_availability(
        self, payload: v16.ChangeAvailabilityRequest
    ) -> v16.ChangeAvailabilityResponse:
        st = self.station
        if payload["connectorId"] not in (0, CONNECTOR_ID):
            return {"status": "Rejected"}
        reply = st.connector.change_availability(payload["type"] == "Operative", st.now())
        st._emit(reply.actions)
        return {"status": reply.status.value}

    # -- configuration

    @on("ChangeConfiguration")
    def change_configuration(
        self, payload: v16.ChangeConfigurationRequest
    ) -> v16.ChangeConfigurationResponse:
        return {"status": self.station.config.change(payload["key"], payload["value"])}

    @on("GetConfiguration")
    def get_configuration(self, payload: v16.GetConfigurationRequest) -> dict[str, Any]:
        return self.station.config.response(payload.get("key"))

    @on("TriggerMessage")
    def trigger(self, payload: v16.TriggerMessageRequest) -> v16.TriggerMessageResponse:
        if payload.get("connectorId", CONNECTOR_ID) not in (0, CONNECTOR_ID):
            return {"status": "Rejected"}
        if payload["requestedMessage"] not in _TRIGGERABLE:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    @after("TriggerMessage")
    async def trigger_done(self, payload: v16.TriggerMessageRequest) -> None:
        if payload.get("connectorId", CONNECTOR_ID) in (0, CONNECTOR_ID):
            await self.station.send_triggered(payload["requestedMessage"])

    @on("DataTransfer")
    def data_transfer(self, payload: v16.DataTransferRequest) -> v16.DataTransferResponse:
        return {"status": "UnknownVendorId"}

    # -- local authorization

    @on("ClearCache")
    def clear_cache(self, payload: v16.ClearCacheRequest) -> v16.ClearCacheResponse:
        return {"status": self.station.authorizer.clear_cache()}

    @on("SendLocalList")
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

    @on("GetLocalListVersion")
    def get_local_list_version(
        self, payload: v16.GetLocalListVersionRequest
    ) -> v16.GetLocalListVersionResponse:
        st = self.station
        if not st.config.local_auth_list_enabled:
            return {"listVersion": -1}
        return {"listVersion": st.authorizer.get_local_list_version()}

    # -- smart charging

    @on("SetChargingProfile")
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
        st.tick()
        return {"status": status}

    @on("ClearChargingProfile")
    def clear_charging_profile(
        self, payload: v16.ClearChargingProfileRequest
    ) -> v16.ClearChargingProfileResponse:
        st = self.station
        status = st.profiles.clear_16(payload)
        st.tick()
        return {"status": status}

    @on("GetCompositeSchedule")
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
