"""The station's side of diagnostics (OCPP 2.0.1 block N).

- Monitors (N02-N07): :class:`Monitors`, sans-I/O, keeps the custom monitors of the
  metered variables the station can watch (``Power`` of the ChargingStation and of
  EVSE 1, in W), answers SetVariableMonitoring, ClearVariableMonitoring,
  GetMonitoringReport, SetMonitoringBase and SetMonitoringLevel, and turns a meter
  reading into the NotifyEvent data of the monitors it trips: an UpperThreshold /
  LowerThreshold fires once when crossed and once more, ``cleared``, when back
  (N07.FR.xx); a Delta fires when the value moved by ``value`` since the last report.
  Only events of ``severity`` <= the monitoring level are sent (N05). The station checks
  every :data:`MONITOR_PERIOD` seconds of its own clock (a timer, not a task).
- GetLog (N01): the log is uploaded to ``remoteLocation`` by HTTP(S) POST, as
  ``multipart/form-data`` with the file name (N01.FR.19); over https the server is
  checked against the station's CSMS roots before a byte is sent (N01.FR.15).
  LogStatusNotification Uploading, then Uploaded or UploadFailure, each with the
  GetLog's requestId (N01.FR.07-10); a new GetLog cancels a running upload
  (AcceptedCanceled, N01.FR.12/20).
- CustomerInformation (N09, N10): what the station knows of an idToken -- its entries
  in the Authorization Cache and the Local Authorization List -- reported in
  NotifyCustomerInformation parts of at most 512 characters; a clear removes it from
  the cache, never from the local list (N10.FR.03: the CSMS updates that).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from plugstream.ocpp import OcppError, after, on, v201
from plugstream.ocpp.datetimes import format_time
from plugstream.pki.tls import peer_chain, station_context, verify_server
from plugstream.station.auth import AuthCache, LocalAuthList, TokenKey
from plugstream.station.certificates import CSMS_ROOT
from plugstream.station.config import PathAsText
from plugstream.station.download import parse_head
from plugstream.station.hardware import ChargePointHardware
from plugstream.station.ports import StationPort

__all__ = [
    "MONITOR_PERIOD",
    "DiagnosticsHandlers201",
    "MonitorEvent",
    "Monitors",
    "StationDiagnostics",
    "upload",
]

log = logging.getLogger("plugstream.station")

MONITOR_PERIOD = 1.0  # s of station time between two checks of the monitors
MONITORS_FILE = "monitors.json"
CUSTOMER_PART = 512  # NotifyCustomerInformation.data: string[0..512]
UPLOAD_TIMEOUT = 30.0
EVSE_ID = 1

#: the variables the station's monitors may watch: (component, evse id or None, variable)
WATCHABLE = frozenset({("ChargingStation", None, "Power"), ("EVSE", EVSE_ID, "Power")})
_CRITERIA = {
    "ThresholdMonitoring": ("UpperThreshold", "LowerThreshold"),
    "DeltaMonitoring": ("Delta",),
    "PeriodicMonitoring": ("Periodic", "PeriodicClockAligned"),
}
_SUPPORTED_TYPES = frozenset({"UpperThreshold", "LowerThreshold", "Delta"})


@dataclass(slots=True)
class Monitor:
    """One custom monitor and what it last saw."""

    id: int
    component: dict[str, Any]
    variable: dict[str, Any]
    type: str
    value: Decimal
    severity: int
    transaction: bool = False
    tripped: bool = False  # a threshold monitor's value is past it
    reference: Decimal | None = None  # a Delta monitor's last reported value

    def watches(self) -> tuple[str, int | None, str]:
        evse = self.component.get("evse") or {}
        return (str(self.component.get("name")), evse.get("id"), str(self.variable.get("name")))

    def variable_monitoring(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "transaction": self.transaction,
            "value": float(self.value),
            "type": self.type,
            "severity": self.severity,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "component": self.component,
            "variable": self.variable,
            "type": self.type,
            "value": str(self.value),
            "severity": self.severity,
            "transaction": self.transaction,
        }


@dataclass(frozen=True, slots=True)
class MonitorEvent:
    """A monitor that tripped (or cleared): one EventDataType of a NotifyEvent."""

    monitor: Monitor
    actual_value: Decimal
    trigger: str  # Alerting (threshold) or Delta
    cleared: bool = False

    def event_data(self, event_id: int, timestamp: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "eventId": event_id,
            "timestamp": timestamp,
            "trigger": self.trigger,
            "actualValue": str(self.actual_value),
            "eventNotificationType": "CustomMonitor",
            "component": self.monitor.component,
            "variable": self.monitor.variable,
            "variableMonitoringId": self.monitor.id,
        }
        if self.cleared:
            data["cleared"] = True
        return data


@dataclass(slots=True)
class Monitors:
    """The station's custom monitors, sans-I/O: what to answer, what to report."""

    monitors: dict[int, Monitor] = field(default_factory=dict)
    level: int = 9  # SetMonitoringLevel: events of this severity or worse are sent
    next_id: int = 1

    # -- N04 / N06 / N03 / N05

    def set(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """One SetMonitoringResultType for one SetMonitoringDataType."""
        component = dict(data["component"])
        variable = dict(data["variable"])
        result: dict[str, Any] = {
            "type": data["type"],
            "severity": data["severity"],
            "component": component,
            "variable": variable,
        }
        evse = component.get("evse") or {}
        watched = (component.get("name"), evse.get("id"), variable.get("name"))
        if not any(w[0] == watched[0] and w[1] == watched[1] for w in WATCHABLE):
            return {**result, "status": "UnknownComponent"}
        if watched not in WATCHABLE:
            return {**result, "status": "UnknownVariable"}
        if data["type"] not in _SUPPORTED_TYPES:
            return {**result, "status": "UnsupportedMonitorType"}
        wanted = data.get("id")
        if wanted is not None and wanted not in self.monitors:
            return {**result, "status": "Rejected", "statusInfo": {"reasonCode": "UnknownId"}}
        value = Decimal(str(data["value"]))
        for m in self.monitors.values():
            same = (m.watches(), m.type, m.severity) == (watched, data["type"], data["severity"])
            if same and m.id != wanted:
                return {**result, "status": "Duplicate"}
        monitor_id = wanted if wanted is not None else self.next_id
        self.next_id = max(self.next_id, monitor_id + 1)
        self.monitors[monitor_id] = Monitor(
            monitor_id,
            component,
            variable,
            str(data["type"]),
            value,
            int(data["severity"]),
            bool(data.get("transaction", False)),
        )
        return {**result, "id": monitor_id, "status": "Accepted"}

    def clear(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        return [
            {"id": i, "status": "Accepted" if self.monitors.pop(i, None) else "NotFound"}
            for i in ids
        ]

    def set_base(self, base: str) -> str:
        """All keeps the custom monitors; FactoryDefault and HardWiredOnly clear them (N03)."""
        if base in ("FactoryDefault", "HardWiredOnly"):
            self.monitors.clear()
        return "Accepted"

    def set_level(self, severity: int) -> str:
        if not 0 <= severity <= 9:
            return "Rejected"
        self.level = severity
        return "Accepted"

    # -- N02

    def report(
        self, criteria: Sequence[str], component_variables: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """The MonitoringDataType list of a GetMonitoringReport (N02.FR.05-13)."""
        types = {t for c in criteria for t in _CRITERIA.get(c, ())}
        chosen = [
            m
            for m in sorted(self.monitors.values(), key=lambda m: m.id)
            if (not criteria or m.type in types)
            and (not component_variables or any(_matches(m, cv) for cv in component_variables))
        ]
        grouped: dict[str, dict[str, Any]] = {}
        for m in chosen:
            key = json.dumps([m.component, m.variable], sort_keys=True)
            entry = grouped.setdefault(
                key, {"component": m.component, "variable": m.variable, "variableMonitoring": []}
            )
            entry["variableMonitoring"].append(m.variable_monitoring())
        return list(grouped.values())

    # -- N07

    def check(
        self, readings: Mapping[tuple[str, int | None, str], Decimal], *, in_transaction: bool
    ) -> list[MonitorEvent]:
        """The events of one reading of the watched variables."""
        events = []
        for m in sorted(self.monitors.values(), key=lambda m: m.id):
            value = readings.get(m.watches())
            if value is None or (m.transaction and not in_transaction):
                continue
            event = _check_one(m, value)
            if event is not None and m.severity <= self.level:
                events.append(event)
        return events

    # -- on file

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "next_id": self.next_id,
            "monitors": [m.to_json() for m in self.monitors.values()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Monitors:
        out = cls(level=int(data.get("level", 9)), next_id=int(data.get("next_id", 1)))
        for m in data.get("monitors", ()):
            out.monitors[int(m["id"])] = Monitor(
                int(m["id"]),
                dict(m["component"]),
                dict(m["variable"]),
                str(m["type"]),
                Decimal(str(m["value"])),
                int(m["severity"]),
                bool(m.get("transaction", False)),
            )
        return out


def _matches(m: Monitor, cv: Mapping[str, Any]) -> bool:
    """A componentVariable names this monitor: the variable may be left out (N02.FR.16),
    an evse left out matches every one."""
    component = cv.get("component") or {}
    if component.get("name") != m.component.get("name"):
        return False
    if component.get("instance") not in (None, m.component.get("instance")):
        return False
    evse = component.get("evse")
    if evse is not None and evse.get("id") != (m.component.get("evse") or {}).get("id"):
        return False
    variable = cv.get("variable")
    if variable is None:
        return True
    return variable.get("name") == m.variable.get("name") and variable.get("instance") in (
        None,
        m.variable.get("instance"),
    )


def _check_one(m: Monitor, value: Decimal) -> MonitorEvent | None:
    if m.type == "Delta":
        if m.reference is None:
            m.reference = value
            return None
        if abs(value - m.reference) >= m.value:
            m.reference = value
            return MonitorEvent(m, value, "Delta")
        return None
    past = value > m.value if m.type == "UpperThreshold" else value < m.value
    if past == m.tripped:
        return None
    m.tripped = past
    return MonitorEvent(m, value, "Alerting", cleared=not past)


def readings_of(hardware: ChargePointHardware) -> dict[tuple[str, int | None, str], Decimal]:
    """The watched variables as the meter reads them now."""
    power = Decimal(str(round(hardware.measurements().power_w, 1)))
    return {("ChargingStation", None, "Power"): power, ("EVSE", EVSE_ID, "Power"): power}


# -- the log upload --------------------------------------------------------------------


class UploadError(Exception):
    """The upload failed (the server refused, the link broke)."""


async def upload(
    location: str,
    filename: str,
    content: bytes,
    *,
    roots: Any,
    now: Any,
    timeout: float = UPLOAD_TIMEOUT,
) -> int:
    """POST ``content`` to ``location`` as ``multipart/form-data`` (N01.FR.19); the HTTP
    status. Over https the server's chain is checked against ``roots()`` at ``now()``
    before anything is written."""
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UploadError(f"unsupported transfer protocol {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise UploadError(f"no host in {location!r}")
    default_port = 443 if scheme == "https" else 80
    port = parts.port or default_port
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    boundary = secrets.token_hex(16)
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="uploadfile"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    authority = host if port == default_port else f"{host}:{port}"
    if ":" in host:
        authority = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: PlugStream-Station\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    context = station_context() if scheme == "https" else None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context is not None else None
            )
    except (OSError, TimeoutError) as exc:
        raise UploadError(f"cannot connect to {host}:{port}: {exc}") from None
    try:
        if context is not None:
            verify_server(peer_chain(writer.get_extra_info("ssl_object")), host, roots(), now())
        async with asyncio.timeout(timeout):
            writer.write(head + body)
            await writer.drain()
            raw = await reader.readuntil(b"\r\n\r\n")
        return parse_head(raw[:-4]).status
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise UploadError(f"upload cut: {exc or type(exc).__name__}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(5.0):
                await writer.wait_closed()


# -- the station's diagnostics state -----------------------------------------------------


class _DiagnosticsPort(StationPort, Protocol):
    """What diagnostics need of the station beyond :class:`StationPort`."""

    @property
    def hardware(self) -> ChargePointHardware: ...

    @property
    def cache(self) -> AuthCache: ...

    @property
    def local_list(self) -> LocalAuthList: ...

    @property
    def transaction(self) -> Any: ...


class StationDiagnostics:
    """The monitors (kept in ``monitors.json``), their timer and the log upload running."""

    path: PathAsText[Path] = PathAsText()

    def __init__(self, station: _DiagnosticsPort) -> None:
        self.station = station
        self.path = Path(station.data_dir) / MONITORS_FILE
        try:
            self.monitors = Monitors.from_json(json.loads(self.path.read_text()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            self.monitors = Monitors()
        self._timer: Any = None
        self._event_id = 0
        self._event_seq = 0
        self.upload_task: asyncio.Task[None] | None = None
        self.upload_request: int | None = None

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.monitors.to_json()))
        tmp.replace(self.path)

    def changed(self) -> None:
        """The monitors changed: kept, and watched while there are any."""
        self.save()
        self.watch()

    def watch(self) -> None:
        """Check the monitors every :data:`MONITOR_PERIOD` while there are any (from a
        station made outside an event loop, once the first of them is set)."""
        if self._timer is None and self.monitors.monitors:
            with contextlib.suppress(RuntimeError):  # no running loop yet
                self._timer = self.station.clock.call_later(MONITOR_PERIOD, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        st = self.station
        try:
            st.hardware.advance(st.now().timestamp())
            events = self.monitors.check(
                readings_of(st.hardware), in_transaction=st.transaction is not None
            )
        except Exception:  # a bad reading must not stop the watch
            log.exception("monitors not checked")
            events = []
        if events and st.online:
            st.spawn(self.notify(events))
        self.watch()

    async def notify(self, events: Sequence[MonitorEvent]) -> None:
        """One NotifyEvent with the events (N07); not queued while offline."""
        timestamp = format_time(self.station.now())
        data = []
        for event in events:
            self._event_id += 1
            data.append(event.event_data(self._event_id, timestamp))
        payload = {"generatedAt": timestamp, "seqNo": self._event_seq, "eventData": data}
        self._event_seq += 1
        try:
            await self.station.call("NotifyEvent", payload)
        except OcppError as exc:
            log.info("NotifyEvent not delivered: %s", exc)

    # -- logs

    def log_content(self, log_type: str) -> tuple[str, bytes] | None:
        """The file GetLog uploads: the security log (N01.FR.03), or the diagnostics --
        the device model, the state, the monitors (N01.FR.04). None when there is none."""
        st = self.station
        stamp = f"{st.now():%Y%m%dT%H%M%SZ}"
        if log_type == "SecurityLog":
            path = Path(st.data_dir) / "security_log.json"
            if not path.is_file():
                return None
            return f"{st.station_id}-security-{stamp}.json", path.read_bytes()
        if log_type != "DiagnosticsLog":
            return None
        lines = [f"PlugStream station {st.station_id} diagnostics at {format_time(st.now())}"]
        for name in ("device_model201.json", "state.json", MONITORS_FILE, "traffic.json"):
            path = Path(st.data_dir) / name
            if path.is_file():
                lines += [f"--- {name}", path.read_text(errors="replace")]
        return f"{st.station_id}-diagnostics-{stamp}.log", "\n".join(lines).encode()

    async def upload(self, job: tuple[int, str, str, bytes, int, int]) -> None:
        """The upload of a GetLog, as a task of the station (a new GetLog cancels it)."""
        self.upload_task = asyncio.current_task()
        await self.run_upload(*job)

    async def run_upload(
        self, request_id: int, location: str, name: str, content: bytes, retries: int, wait: int
    ) -> None:
        """Upload with retries; LogStatusNotification Uploading, then Uploaded or
        UploadFailure (after the last attempt, N01.FR.10)."""
        st = self.station
        status = "UploadFailure"
        for attempt in range(retries + 1):
            if attempt:
                await st.clock.sleep(wait)
            await self.log_status("Uploading", request_id)
            try:
                code = await upload(
                    location,
                    name,
                    content,
                    roots=lambda: st.certificates.roots(CSMS_ROOT),
                    now=st.now,
                )
            except UploadError as exc:
                log.info("log upload %s failed: %s", request_id, exc)
                continue
            except Exception as exc:  # the server's certificate refused, among others
                log.info("log upload %s refused: %s", request_id, exc)
                status = "PermissionDenied"
                break
            if 200 <= code < 300:
                status = "Uploaded"
                break
            log.info("log upload %s: HTTP %s", request_id, code)
            if code in (401, 403, 404):
                status = "PermissionDenied"
                break
        self.upload_request = None
        await self.log_status(status, request_id)

    async def log_status(self, status: str, request_id: int) -> None:
        try:
            await self.station.call(
                "LogStatusNotification", {"status": status, "requestId": request_id}
            )
        except OcppError as exc:
            log.info("LogStatusNotification %s not delivered: %s", status, exc)

    # -- customer information

    def customer_data(self, payload: Mapping[str, Any]) -> str:
        """What the station knows of the customer, and (with ``clear``) forget it in
        the cache. Only idTokens are kept here: a customerIdentifier or a certificate
        finds nothing."""
        st = self.station
        token = payload.get("idToken")
        if not isinstance(token, Mapping):
            return "No data found"
        key = TokenKey.from_id_token(token)
        found = []
        cached = st.cache.lookup(key, now=st.now()) if key in st.cache else None
        if cached is not None or key in st.cache:
            found.append(f"AuthorizationCache: {json.dumps(cached or {}, sort_keys=True)}")
        listed = st.local_list.get(key)
        if listed is not None:
            found.append(f"LocalAuthorizationList: {json.dumps(listed, sort_keys=True)}")
        if payload.get("clear") and key in st.cache:
            st.cache.remove(key)
            st.cache.persist()
        if not found:
            return "No data found"
        return f"idToken {token.get('idToken')} ({token.get('type')}): " + "; ".join(found)


class _WithDiagnostics(_DiagnosticsPort, Protocol):
    @property
    def diagnostics(self) -> StationDiagnostics: ...


class DiagnosticsHandlers201:
    """The station's answers of block N."""

    station: _WithDiagnostics
    _log_job: tuple[int, str, str, bytes, int, int] | None = None
    _canceled: int | None = None

    # -- monitors

    @on(v201.Action.SetVariableMonitoring)
    def set_variable_monitoring(self, payload: dict[str, Any]) -> dict[str, Any]:
        d = self.station.diagnostics
        results = [d.monitors.set(data) for data in payload["setMonitoringData"]]
        d.changed()
        return {"setMonitoringResult": results}

    @on(v201.Action.ClearVariableMonitoring)
    def clear_variable_monitoring(self, payload: dict[str, Any]) -> dict[str, Any]:
        d = self.station.diagnostics
        results = d.monitors.clear(payload["id"])
        d.changed()
        return {"clearMonitoringResult": results}

    @on(v201.Action.SetMonitoringBase)
    def set_monitoring_base(self, payload: dict[str, Any]) -> dict[str, Any]:
        d = self.station.diagnostics
        status = d.monitors.set_base(payload["monitoringBase"])
        d.changed()
        return {"status": status}

    @on(v201.Action.SetMonitoringLevel)
    def set_monitoring_level(self, payload: dict[str, Any]) -> dict[str, Any]:
        d = self.station.diagnostics
        status = d.monitors.set_level(payload["severity"])
        d.changed()
        return {"status": status}

    @on(v201.Action.GetMonitoringReport)
    def get_monitoring_report(self, payload: dict[str, Any]) -> dict[str, Any]:
        criteria = payload.get("monitoringCriteria", [])
        if criteria and not set(criteria) - {"PeriodicMonitoring"}:
            return {"status": "NotSupported"}  # N02.FR.02: no periodic monitors here
        found = self.station.diagnostics.monitors.report(
            criteria, payload.get("componentVariable", [])
        )
        return {"status": "Accepted" if found else "EmptyResultSet"}

    @after(v201.Action.GetMonitoringReport)
    async def get_monitoring_report_done(self, payload: dict[str, Any]) -> None:
        st = self.station
        found = st.diagnostics.monitors.report(
            payload.get("monitoringCriteria", []), payload.get("componentVariable", [])
        )
        per_message = 10
        chunks = [found[i : i + per_message] for i in range(0, len(found), per_message)]
        for seq_no, chunk in enumerate(chunks):
            message = {
                "requestId": payload["requestId"],
                "seqNo": seq_no,
                "generatedAt": format_time(st.now()),
                "tbc": seq_no < len(chunks) - 1,
                "monitor": chunk,
            }
            try:
                await st.call("NotifyMonitoringReport", message)
            except OcppError as exc:
                log.info("NotifyMonitoringReport not delivered: %s", exc)
                return

    # -- logs

    @on(v201.Action.GetLog)
    def get_log(self, payload: dict[str, Any]) -> dict[str, Any]:
        d = self.station.diagnostics
        found = d.log_content(payload["logType"])
        if found is None:
            return {"status": "Rejected"}  # N01.FR.05
        name, content = found
        self._log_job = (
            payload["requestId"],
            payload["log"]["remoteLocation"],
            name,
            content,
            int(payload.get("retries", 0)),
            int(payload.get("retryInterval", 0)),
        )
        running = d.upload_task is not None and not d.upload_task.done()
        if running:  # N01.FR.12: the running upload gives way
            assert d.upload_task is not None
            d.upload_task.cancel()
            self._canceled = d.upload_request
            return {"status": "AcceptedCanceled", "filename": name}
        return {"status": "Accepted", "filename": name}

    @after(v201.Action.GetLog)
    async def get_log_done(self, payload: dict[str, Any]) -> None:
        job, self._log_job = self._log_job, None
        if job is None:
            return
        d = self.station.diagnostics
        canceled, self._canceled = self._canceled, None
        if canceled is not None:  # N01.FR.20
            await d.log_status("AcceptedCanceled", canceled)
        d.upload_request = job[0]
        self.station.spawn(d.upload(job))

    # -- customer information

    @on(v201.Action.CustomerInformation)
    def customer_information(self, payload: dict[str, Any]) -> dict[str, Any]:
        named = [
            k for k in ("idToken", "customerCertificate", "customerIdentifier") if k in payload
        ]
        if len(named) != 1:
            return {"status": "Invalid"}  # N09.FR.09
        if not payload["report"] and not payload["clear"]:
            return {"status": "Rejected"}  # N09.FR.07
        return {"status": "Accepted"}

    @after(v201.Action.CustomerInformation)
    async def customer_information_done(self, payload: dict[str, Any]) -> None:
        if self.customer_information(payload)["status"] != "Accepted":
            return
        st = self.station
        data = st.diagnostics.customer_data(payload)
        if not payload["report"]:
            data = "Cleared" if data != "No data found" else data
        chunks = [data[i : i + CUSTOMER_PART] for i in range(0, len(data), CUSTOMER_PART)]
        for seq_no, chunk in enumerate(chunks or [""]):
            message = {
                "data": chunk,
                "tbc": seq_no < len(chunks) - 1,
                "seqNo": seq_no,
                "generatedAt": format_time(st.now()),
                "requestId": payload["requestId"],
            }
            try:
                await st.call("NotifyCustomerInformation", message)
            except OcppError as exc:
                log.info("NotifyCustomerInformation not delivered: %s", exc)
                return
