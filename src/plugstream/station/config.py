"""The station's configuration: OCPP 1.6 configuration keys and the OCPP 2.0.1 device model.

Two plain classes, no network, no clock:

- :class:`Config16` holds the standard configuration keys of OCPP 1.6 chapter 9
  (and the security whitepaper's ``AuthorizationKey`` and ``SecurityProfile``).
  :meth:`Config16.get` answers a GetConfiguration.req, :meth:`Config16.change`
  a ChangeConfiguration.req.
- :class:`DeviceModel201` holds the components and variables of the OCPP 2.0.1
  device model that the station's features need. :meth:`DeviceModel201.get_variables`
  and :meth:`DeviceModel201.set_variables` answer GetVariables / SetVariables
  (use cases B06 / B05) item by item, :meth:`DeviceModel201.report` gives the
  ``reportData`` of a GetBaseReport (B07).

Both persist what the operator may change to one JSON file, written atomically
(temporary file, fsync, rename) *before* the change is acknowledged, and call
their listeners after each change so that the station can react (a new
heartbeat interval, a new password to reconnect with).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, overload

__all__ = [
    "KEYS16",
    "MEASURANDS16",
    "MEASURANDS201",
    "ChangeStatus",
    "Config16",
    "DeviceModel201",
    "Key16",
    "VariableChange",
    "VariableDef",
    "atomic_write_json",
]

DEFAULT_MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC"
"""What a session's meter values carry out of the box: the register the bill is made
from, power, current per phase and the car's state of charge (a few bytes each with
permessage-deflate)."""

ChangeStatus = Literal["Accepted", "Rejected", "RebootRequired", "NotSupported"]
Access16 = Literal["R", "RW", "W"]
Type16 = Literal["integer", "boolean", "CSL", "string"]
Mutability = Literal["ReadOnly", "WriteOnly", "ReadWrite"]
DataType = Literal[
    "string",
    "decimal",
    "integer",
    "dateTime",
    "boolean",
    "OptionList",
    "SequenceList",
    "MemberList",
]
AttributeType = Literal["Actual", "Target", "MinSet", "MaxSet"]
ATTRIBUTE_TYPES: tuple[AttributeType, ...] = ("Actual", "Target", "MinSet", "MaxSet")
REPORT_BASES = ("ConfigurationInventory", "FullInventory", "SummaryInventory")

_FORMAT = 1  # version of the JSON files we write


_P = TypeVar("_P", Path, Path | None)


class PathAsText(Generic[_P]):
    """A ``Path`` attribute (or None) kept as its text, a Path made again when read.

    A Path object with its parts and caches is about 500 bytes, its text about 100; a
    fleet station holds half a dozen paths of its files and reads them only to write
    one, rarely (10,000 stations: some 25 MB less)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_text"

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> PathAsText[_P]: ...

    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> _P: ...

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        text: str | None = getattr(obj, self.slot)
        return None if text is None else Path(text)

    def __set__(self, obj: object, value: _P | str) -> None:
        setattr(obj, self.slot, None if value is None else os.fspath(value))


def atomic_write_json(path: Path, data: Any, *, sync: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` so that a crash leaves the old or the new file, never half.

    ``sync`` False: no fsync (the file survives the process dying, not the OS crashing):
    a simulated fleet, whose thousands of stations all store their HeartbeatInterval
    on their first boot, spent a tenth of its ramp-up CPU in these fsyncs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = json.dumps(data, indent=1, sort_keys=True).encode()
    try:
        # 0600: the file holds the HTTP Basic Authentication password (A01.FR.10).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if not sync:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_json(path: Path) -> Any:
    """The JSON at ``path``; None when there is none or it is unreadable (then defaults apply)."""
    try:
        return json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def _file(path: Path | str, default_name: str) -> Path:
    p = Path(path)
    return p / default_name if p.is_dir() else p


_INT = re.compile(r"[+-]?\d+")


def _parse_int(value: str) -> int | None:
    return int(value) if _INT.fullmatch(value.strip()) else None


def _csl(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()] if value.strip() else []


# --------------------------------------------------------------------------- measurands

_MEASURANDS_COMMON = (
    "Current.Export",
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Frequency",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Factor",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "SoC",
    "Voltage",
)
#: Measurand values of OCPP 1.6 (section 7.31).
MEASURANDS16: tuple[str, ...] = (*_MEASURANDS_COMMON, "RPM", "Temperature")
#: MeasurandEnumType of OCPP 2.0.1.
MEASURANDS201: tuple[str, ...] = (
    *_MEASURANDS_COMMON,
    "Energy.Active.Net",
    "Energy.Reactive.Net",
    "Energy.Apparent.Net",
    "Energy.Apparent.Import",
    "Energy.Apparent.Export",
)
_PHASES = ("L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1")
_MEASURAND16_SET = frozenset(MEASURANDS16)


def _measurand16_ok(item: str) -> bool:
    """A 1.6 measurand, optionally with a phase: ``Voltage.L1`` (section 9.1.17)."""
    if item in _MEASURAND16_SET:
        return True
    base, _, phase = item.rpartition(".")
    return base in _MEASURAND16_SET and phase in _PHASES


_ROTATION = re.compile(r"(\d+)\.(NotApplicable|Unknown|RST|RTS|SRT|STR|TRS|TSR)")

# --------------------------------------------------------------------------- OCPP 1.6


@dataclass(frozen=True)
class Key16:
    """One OCPP 1.6 configuration key: its type, accessibility (R, RW, W) and default value.

    ``members`` restricts the items of a CSL (``member_ok`` when a set cannot say it);
    ``max_items_key`` names the ``...MaxLength`` key that caps a CSL's number of items.
    ``check`` is a last validator that sees the value and the configuration.
    """

    name: str
    type: Type16
    access: Access16
    default: str
    min: int | None = None
    max: int | None = None
    members: frozenset[str] | None = None
    member_ok: Callable[[str], bool] | None = None
    max_items_key: str | None = None
    min_length: int = 0
    max_length: int = 500
    reboot: bool = False
    check: Callable[[str, Config16], bool] | None = None

    def valid(self, value: str, config: Config16) -> bool:
        if len(value) > self.max_length:
            return False
        if self.type == "integer":
            number = _parse_int(value)
            if number is None:
                return False
            if (self.min is not None and number < self.min) or (
                self.max is not None and number > self.max
            ):
                return False
        elif self.type == "boolean":
            if value.lower() not in ("true", "false"):
                return False
        elif self.type == "CSL":
            items = _csl(value)
            if len(items) != len(set(items)):
                return False
            if self.members is not None and not all(i in self.members for i in items):
                return False
            if self.member_ok is not None and not all(self.member_ok(i) for i in items):
                return False
            if self.max_items_key is not None and len(items) > config.get_int(self.max_items_key):
                return False
        elif len(value) < self.min_length:
            return False
        return self.check is None or self.check(value, config)


def _rotation_ok(value: str, config: Config16) -> bool:
    for item in _csl(value):
        m = _ROTATION.fullmatch(item)
        if m is None or int(m.group(1)) > config.number_of_connectors:
            return False
    return True


def _security_profile_ok(value: str, config: Config16) -> bool:
    # Security whitepaper A05: the profile may be raised, never lowered.
    return int(value) >= config.get_int("SecurityProfile")


def _printable(value: str, config: Config16) -> bool:
    return value.isascii() and value.isprintable()


#: The standard keys of OCPP 1.6 chapter 9 that this station supports, plus the
#: security whitepaper's. ``NumberOfConnectors`` and the connector-dependent
#: values are filled in by :class:`Config16`.
KEYS16: tuple[Key16, ...] = (
    # 9.1 Core
    Key16("AllowOfflineTxForUnknownId", "boolean", "RW", "false"),
    Key16("AuthorizationCacheEnabled", "boolean", "RW", "true"),
    Key16("AuthorizeRemoteTxRequests", "boolean", "RW", "true"),
    Key16("ClockAlignedDataInterval", "integer", "RW", "0", min=0, max=86400),
    Key16("ConnectionTimeOut", "integer", "RW", "60", min=1, max=3600),
    Key16(
        "ConnectorPhaseRotation",
        "CSL",
        "RW",
        "0.RST",
        max_items_key="ConnectorPhaseRotationMaxLength",
        check=_rotation_ok,
    ),
    Key16("ConnectorPhaseRotationMaxLength", "integer", "R", "2"),
    Key16("GetConfigurationMaxKeys", "integer", "R", "64"),
    Key16("HeartbeatInterval", "integer", "RW", "300", min=0, max=86400 * 7),
    Key16("LocalAuthorizeOffline", "boolean", "RW", "true"),
    Key16("LocalPreAuthorize", "boolean", "RW", "false"),
    Key16("MaxEnergyOnInvalidId", "integer", "RW", "0", min=0),
    Key16(
        "MeterValuesAlignedData",
        "CSL",
        "RW",
        "Energy.Active.Import.Register",
        member_ok=_measurand16_ok,
        max_items_key="MeterValuesAlignedDataMaxLength",
    ),
    Key16("MeterValuesAlignedDataMaxLength", "integer", "R", "8"),
    Key16(
        "MeterValuesSampledData",
        "CSL",
        "RW",
        DEFAULT_MEASURANDS,
        member_ok=_measurand16_ok,
        max_items_key="MeterValuesSampledDataMaxLength",
    ),
    Key16("MeterValuesSampledDataMaxLength", "integer", "R", "8"),
    Key16("MeterValueSampleInterval", "integer", "RW", "60", min=0, max=86400),
    Key16("MinimumStatusDuration", "integer", "RW", "0", min=0, max=3600),
    Key16("NumberOfConnectors", "integer", "R", "1"),
    Key16("ResetRetries", "integer", "RW", "3", min=0, max=100),
    Key16("StopTransactionOnEVSideDisconnect", "boolean", "RW", "true"),
    Key16("StopTransactionOnInvalidId", "boolean", "RW", "true"),
    Key16(
        "StopTxnAlignedData",
        "CSL",
        "RW",
        "",
        member_ok=_measurand16_ok,
        max_items_key="StopTxnAlignedDataMaxLength",
    ),
    Key16("StopTxnAlignedDataMaxLength", "integer", "R", "8"),
    Key16(
        "StopTxnSampledData",
        "CSL",
        "RW",
        "",
        member_ok=_measurand16_ok,
        max_items_key="StopTxnSampledDataMaxLength",
    ),
    Key16("StopTxnSampledDataMaxLength", "integer", "R", "8"),
    Key16(
        "SupportedFeatureProfiles",
        "CSL",
        "R",
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
    ),
    Key16("SupportedFeatureProfilesMaxLength", "integer", "R", "6"),
    Key16("TransactionMessageAttempts", "integer", "RW", "3", min=0, max=100),
    Key16("TransactionMessageRetryInterval", "integer", "RW", "60", min=0, max=86400),
    Key16("UnlockConnectorOnEVSideDisconnect", "boolean", "RW", "true"),
    # 180 s: a ping + pong is ~60 bytes with TLS, so 480 a day (~29 KB) keep an idle day
    # under 100 KB and the NAT mapping busy well inside common TCP idle timeouts
    Key16("WebSocketPingInterval", "integer", "RW", "180", min=0, max=86400),
    # Vendor key: the ceiling the learning keep-alive (station/keepalive.py) may lengthen
    # WebSocketPingInterval to while the path holds; 0 (or at most WebSocketPingInterval):
    # no learning. A WebSocketPingInterval set by the Central System is used as it is.
    Key16("PlugStreamPingIntervalMax", "integer", "RW", "1800", min=0, max=86400),
    # 9.2 Local Auth List Management
    Key16("LocalAuthListEnabled", "boolean", "RW", "true"),
    Key16("LocalAuthListMaxLength", "integer", "R", "1000"),
    Key16("SendLocalListMaxLength", "integer", "R", "100"),
    # 9.3 Reservation
    Key16("ReserveConnectorZeroSupported", "boolean", "R", "true"),
    # 9.4 Smart Charging
    Key16("ChargeProfileMaxStackLevel", "integer", "R", "8"),
    Key16("ChargingScheduleAllowedChargingRateUnit", "CSL", "R", "Current,Power"),
    Key16("ChargingScheduleMaxPeriods", "integer", "R", "24"),
    Key16("ConnectorSwitch3to1PhaseSupported", "boolean", "R", "false"),
    Key16("MaxChargingProfilesInstalled", "integer", "R", "16"),
    # Security whitepaper (edition 3), section "Configuration Keys"
    Key16("AuthorizationKey", "string", "W", "", min_length=16, max_length=40, check=_printable),
    Key16("SecurityProfile", "integer", "RW", "0", min=0, max=3, check=_security_profile_ok),
)


@functools.lru_cache(maxsize=16)
def _keys16(
    number_of_connectors: int, extra_keys: tuple[Key16, ...]
) -> tuple[dict[str, Key16], dict[str, str]]:
    """The keys by lower-case name and their default values: the same for every station
    of a kind, so built once and shared (never mutated: :class:`Config16` writes in
    front of them)."""
    fixed = {
        "NumberOfConnectors": str(number_of_connectors),
        "ConnectorPhaseRotationMaxLength": str(number_of_connectors + 1),
    }
    keys: dict[str, Key16] = {}
    values: dict[str, str] = {}
    for key in (*KEYS16, *extra_keys):
        keys[key.name.lower()] = key
        values[key.name] = fixed.get(key.name, key.default)
    return keys, values


class Config16:
    """The OCPP 1.6 configuration keys of one station, persisted in one JSON file.

    ``path`` is the JSON file (or a directory, which then holds ``config16.json``);
    None keeps everything in memory. ``defaults`` overrides default values (read-only
    ones too: they describe the hardware), ``extra_keys`` adds vendor keys.
    """

    FILENAME = "config16.json"
    path: PathAsText[Path | None] = PathAsText()

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        number_of_connectors: int = 1,
        defaults: Mapping[str, str] | None = None,
        extra_keys: Iterable[Key16] = (),
    ) -> None:
        self.path = None if path is None else _file(path, self.FILENAME)
        self.sync = True
        """fsync each save (a real station); False: the file survives the process dying,
        not the OS (a fleet, like its ``sync_state``)."""
        self._keys, defaults_of = _keys16(number_of_connectors, tuple(extra_keys))
        # the defaults are shared by every station of a fleet; a station's own values sit
        # in front of them (copy-on-write: a fleet station holds only what it changed)
        self._values: ChainMap[str, str] = ChainMap({}, defaults_of)
        self._listeners: list[Callable[[str, str], None]] = []
        for name, value in (defaults or {}).items():
            self._values[self._key(name).name] = value

    # -- persistence

    @classmethod
    def load(cls, path: Path | str, **kwargs: Any) -> Config16:
        """The configuration persisted at ``path``, or the defaults when there is none yet.

        Stored values that are no longer valid (a key removed, a range narrowed by a
        firmware update) are dropped in favour of the default.
        """
        config = cls(path, **kwargs)
        assert config.path is not None
        data = _read_json(config.path)
        if isinstance(data, dict) and isinstance(data.get("values"), dict):
            for name, value in data["values"].items():
                key = config._keys.get(str(name).lower())
                if key is None or key.access == "R" or not isinstance(value, str):
                    continue
                if key.valid(value, config):
                    config._values[key.name] = value
        return config

    def save(self) -> None:
        """Write the writable keys to the file, atomically; a no-op without a file."""
        if self.path is None:
            return
        values = {k.name: self._values[k.name] for k in self._keys.values() if k.access != "R"}
        atomic_write_json(self.path, {"format": _FORMAT, "values": values}, sync=self.sync)

    # -- listeners

    def add_listener(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(key, new_value)`` after each change that takes effect now."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[str, str], None]) -> None:
        self._listeners.remove(callback)

    # -- GetConfiguration / ChangeConfiguration

    def _key(self, name: str) -> Key16:
        return self._keys[name.lower()]

    def known(self, name: str) -> bool:
        return name.lower() in self._keys

    def get(self, keys: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
        """A GetConfiguration.conf's ``configurationKey`` and ``unknownKey`` lists.

        No keys (or an empty list) asks for every key. Keys are CiString (case
        insensitive). Write-only keys (``AuthorizationKey``) are never disclosed: left
        out of a full listing, and reported as unknown when asked for by name.
        """
        wanted = list(self._keys.values()) if not keys else None
        unknown: list[str] = []
        if wanted is None:
            wanted = []
            for name in dict.fromkeys(keys or ()):
                key = self._keys.get(name.lower())
                if key is None or key.access == "W":
                    unknown.append(name)
                elif key not in wanted:
                    wanted.append(key)
        found = [
            {"key": k.name, "readonly": k.access == "R", "value": self._values[k.name]}
            for k in wanted
            if k.access != "W"
        ]
        return found, unknown

    def response(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """The whole GetConfiguration.conf payload; empty lists are left out."""
        found, unknown = self.get(keys)
        payload: dict[str, Any] = {}
        if found:
            payload["configurationKey"] = found
        if unknown:
            payload["unknownKey"] = unknown
        return payload

    def change(self, key: str, value: str) -> ChangeStatus:
        """Apply a ChangeConfiguration.req (OCPP 1.6 section 5.3) and say how it went.

        Unknown key: NotSupported. Read-only key, malformed or out-of-range value:
        Rejected. A key that only takes effect after a reboot: RebootRequired (the
        value is stored). Otherwise Accepted. The value is on disk before this returns.
        """
        spec = self._keys.get(key.lower())
        if spec is None:
            return "NotSupported"
        if spec.access == "R" or not spec.valid(value, self):
            return "Rejected"
        if spec.type == "boolean":
            value = value.lower()
        elif spec.type == "integer":
            value = str(int(value))
        elif spec.type == "CSL":
            value = ",".join(_csl(value))
        old = self._values[spec.name]
        self._values[spec.name] = value
        try:
            self.save()
        except OSError:
            self._values[spec.name] = old
            return "Rejected"
        if spec.reboot:
            return "RebootRequired"
        for listener in list(self._listeners):
            listener(spec.name, value)
        return "Accepted"

    def set_internal(self, key: str, value: str) -> None:
        """Set a key from inside the station, read-only ones included (no validation, no listeners)."""
        spec = self._key(key)
        if self._values[spec.name] == value:
            return  # the same again (HeartbeatInterval at every boot): nothing to write
        self._values[spec.name] = value
        if spec.access != "R":
            self.save()

    # -- typed access

    def value(self, key: str) -> str:
        """The raw value of ``key`` (write-only ones included: the station needs them)."""
        return self._values[self._key(key).name]

    def get_int(self, key: str) -> int:
        return int(self.value(key))

    def get_bool(self, key: str) -> bool:
        return self.value(key).lower() == "true"

    def get_list(self, key: str) -> list[str]:
        return _csl(self.value(key))

    @property
    def heartbeat_interval(self) -> int:
        return self.get_int("HeartbeatInterval")

    @property
    def meter_value_sample_interval(self) -> int:
        return self.get_int("MeterValueSampleInterval")

    @property
    def clock_aligned_data_interval(self) -> int:
        return self.get_int("ClockAlignedDataInterval")

    @property
    def meter_values_sampled_data(self) -> list[str]:
        return self.get_list("MeterValuesSampledData")

    @property
    def meter_values_aligned_data(self) -> list[str]:
        return self.get_list("MeterValuesAlignedData")

    @property
    def stop_txn_sampled_data(self) -> list[str]:
        return self.get_list("StopTxnSampledData")

    @property
    def stop_txn_aligned_data(self) -> list[str]:
        return self.get_list("StopTxnAlignedData")

    @property
    def connection_timeout(self) -> int:
        return self.get_int("ConnectionTimeOut")

    @property
    def transaction_message_attempts(self) -> int:
        return self.get_int("TransactionMessageAttempts")

    @property
    def transaction_message_retry_interval(self) -> int:
        return self.get_int("TransactionMessageRetryInterval")

    @property
    def reset_retries(self) -> int:
        return self.get_int("ResetRetries")

    @property
    def websocket_ping_interval(self) -> int:
        return self.get_int("WebSocketPingInterval")

    @property
    def ping_interval_max(self) -> int:
        return self.get_int("PlugStreamPingIntervalMax")

    @property
    def minimum_status_duration(self) -> int:
        return self.get_int("MinimumStatusDuration")

    @property
    def local_authorize_offline(self) -> bool:
        return self.get_bool("LocalAuthorizeOffline")

    @property
    def local_pre_authorize(self) -> bool:
        return self.get_bool("LocalPreAuthorize")

    @property
    def allow_offline_tx_for_unknown_id(self) -> bool:
        return self.get_bool("AllowOfflineTxForUnknownId")

    @property
    def authorization_cache_enabled(self) -> bool:
        return self.get_bool("AuthorizationCacheEnabled")

    @property
    def authorize_remote_tx_requests(self) -> bool:
        return self.get_bool("AuthorizeRemoteTxRequests")

    @property
    def local_auth_list_enabled(self) -> bool:
        return self.get_bool("LocalAuthListEnabled")

    @property
    def stop_transaction_on_ev_side_disconnect(self) -> bool:
        return self.get_bool("StopTransactionOnEVSideDisconnect")

    @property
    def stop_transaction_on_invalid_id(self) -> bool:
        return self.get_bool("StopTransactionOnInvalidId")

    @property
    def unlock_connector_on_ev_side_disconnect(self) -> bool:
        return self.get_bool("UnlockConnectorOnEVSideDisconnect")

    @property
    def max_energy_on_invalid_id(self) -> int:
        return self.get_int("MaxEnergyOnInvalidId")

    @property
    def number_of_connectors(self) -> int:
        return self.get_int("NumberOfConnectors")

    @property
    def supported_feature_profiles(self) -> list[str]:
        return self.get_list("SupportedFeatureProfiles")

    @property
    def charge_profile_max_stack_level(self) -> int:
        return self.get_int("ChargeProfileMaxStackLevel")

    @property
    def charging_schedule_allowed_charging_rate_unit(self) -> list[str]:
        return self.get_list("ChargingScheduleAllowedChargingRateUnit")

    @property
    def charging_schedule_max_periods(self) -> int:
        return self.get_int("ChargingScheduleMaxPeriods")

    @property
    def max_charging_profiles_installed(self) -> int:
        return self.get_int("MaxChargingProfilesInstalled")

    @property
    def local_auth_list_max_length(self) -> int:
        return self.get_int("LocalAuthListMaxLength")

    @property
    def send_local_list_max_length(self) -> int:
        return self.get_int("SendLocalListMaxLength")

    @property
    def authorization_key(self) -> str | None:
        """The HTTP Basic Authentication password, or None when not set."""
        return self.value("AuthorizationKey") or None

    @property
    def security_profile(self) -> int:
        return self.get_int("SecurityProfile")


# --------------------------------------------------------------------------- OCPP 2.0.1


@dataclass(frozen=True)
class VariableDef:
    """One variable of one component of the 2.0.1 device model, with its characteristics.

    ``evse``/``connector`` and ``component_instance`` identify the component,
    ``instance`` the variable. ``attributes`` are the supported attribute types.
    For strings ``max_limit`` is the maximum length and ``min_length`` a minimum.
    """

    component: str
    name: str
    data_type: DataType
    default: str
    mutability: Mutability = "ReadWrite"
    instance: str | None = None
    component_instance: str | None = None
    evse: int | None = None
    connector: int | None = None
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: tuple[str, ...] | None = None
    allow_empty: bool = True
    min_length: int = 0
    attributes: tuple[AttributeType, ...] = ("Actual",)
    persistent: bool = True
    constant: bool = False
    reboot: bool = False

    @property
    def ident(self) -> _Ident:
        return _ident(
            self.component,
            self.component_instance,
            self.evse,
            self.connector,
            self.name,
            self.instance,
        )

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not a valid value, as a 2.0.1 reasonCode; None when valid."""
        dt = self.data_type
        if dt == "integer" or dt == "decimal":
            number: float
            if dt == "integer":
                parsed = _parse_int(value)
                if parsed is None:
                    return "InvalidValue"
                number = parsed
            else:
                try:
                    number = float(value)
                except ValueError:
                    return "InvalidValue"
                if not math.isfinite(number):
                    return "InvalidValue"
            if (self.min_limit is not None and number < self.min_limit) or (
                self.max_limit is not None and number > self.max_limit
            ):
                return "ValueOutOfRange"
            return None
        if dt == "boolean":
            return None if value in ("true", "false") else "InvalidValue"
        if dt == "dateTime":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return "InvalidValue"
            return None
        if self.max_limit is not None and len(value) > self.max_limit:
            return "ValueOutOfRange"
        if dt == "string":
            return "ValueOutOfRange" if len(value) < self.min_length else None
        if dt == "OptionList":
            return None if self.values_list is None or value in self.values_list else "InvalidValue"
        items = [item.strip() for item in value.split(",")] if value else []
        if not items:
            return None if self.allow_empty else "InvalidValue"
        if "" in items or len(items) != len(set(items)):
            return "InvalidValue"
        if self.values_list is not None and not all(i in self.values_list for i in items):
            return "InvalidValue"
        return None

    def characteristics(self) -> dict[str, Any]:
        """A VariableCharacteristicsType."""
        out: dict[str, Any] = {"dataType": self.data_type, "supportsMonitoring": False}
        if self.unit is not None:
            out["unit"] = self.unit
        if self.min_limit is not None:
            out["minLimit"] = self.min_limit
        if self.max_limit is not None:
            out["maxLimit"] = self.max_limit
        if self.values_list is not None:
            out["valuesList"] = ",".join(self.values_list)
        return out

    def component_json(self) -> dict[str, Any]:
        """A ComponentType."""
        out: dict[str, Any] = {"name": self.component}
        if self.component_instance is not None:
            out["instance"] = self.component_instance
        if self.evse is not None:
            evse: dict[str, Any] = {"id": self.evse}
            if self.connector is not None:
                evse["connectorId"] = self.connector
            out["evse"] = evse
        return out

    def variable_json(self) -> dict[str, Any]:
        """A VariableType."""
        out: dict[str, Any] = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        return out


_Ident = tuple[str, str | None, int | None, int | None, str, str | None]
_ComponentIdent = tuple[str, str | None, int | None, int | None]


def _ident(
    component: str,
    component_instance: str | None,
    evse: int | None,
    connector: int | None,
    variable: str,
    instance: str | None,
) -> _Ident:
    # Names and instances are case insensitive; an empty instance is no instance (B06.FR.15).
    return (
        component.lower(),
        component_instance.lower() if component_instance else None,
        evse,
        connector,
        variable.lower(),
        instance.lower() if instance else None,
    )


def _request_ident(component: Mapping[str, Any], variable: Mapping[str, Any]) -> _Ident:
    evse = component.get("evse") or {}
    return _ident(
        str(component.get("name", "")),
        component.get("instance"),
        evse.get("id"),
        evse.get("connectorId"),
        str(variable.get("name", "")),
        variable.get("instance"),
    )


@dataclass(frozen=True)
class VariableChange:
    """What a listener of :class:`DeviceModel201` is told: which attribute got which value."""

    definition: VariableDef
    attribute: AttributeType
    value: str

    @property
    def component(self) -> str:
        return self.definition.component

    @property
    def variable(self) -> str:
        return self.definition.name

    @property
    def instance(self) -> str | None:
        return self.definition.instance


_M201 = MEASURANDS201
_TX_POINTS = ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")


def _controllers(identity: str, security_profile: int) -> list[VariableDef]:
    """The controller components' variables (2.0.1 part 2, appendix "Controller Components")."""
    V = VariableDef
    ro: Mutability = "ReadOnly"
    comm, aligned, sampled = "OCPPCommCtrlr", "AlignedDataCtrlr", "SampledDataCtrlr"
    tx, auth, cache, lal = "TxCtrlr", "AuthCtrlr", "AuthCacheCtrlr", "LocalAuthListCtrlr"
    sc, res, sec, dd, clock = (
        "SmartChargingCtrlr",
        "ReservationCtrlr",
        "SecurityCtrlr",
        "DeviceDataCtrlr",
        "ClockCtrlr",
    )
    return [
        V(comm, "ActiveNetworkProfile", "integer", "0", ro),
        V(comm, "FileTransferProtocols", "MemberList", "HTTP,HTTPS", ro, values_list=("HTTP", "HTTPS")),
        V(comm, "HeartbeatInterval", "integer", "300", unit="s", min_limit=1, max_limit=604800),
        V(comm, "MessageTimeout", "integer", "30", ro, instance="Default", unit="s"),
        V(comm, "MessageAttempts", "integer", "3", instance="TransactionEvent", min_limit=0, max_limit=100),
        V(comm, "MessageAttemptInterval", "integer", "60", instance="TransactionEvent", unit="s", min_limit=0, max_limit=86400),
        V(comm, "NetworkConfigurationPriority", "SequenceList", "0", values_list=("0", "1", "2"), allow_empty=False),
        V(comm, "NetworkProfileConnectionAttempts", "integer", "3", min_limit=1, max_limit=100),
        V(comm, "OfflineThreshold", "integer", "60", unit="s", min_limit=0, max_limit=86400),
        V(comm, "QueueAllMessages", "boolean", "false"),
        V(comm, "ResetRetries", "integer", "3", min_limit=0, max_limit=100),
        V(comm, "RetryBackOffRandomRange", "integer", "10", unit="s", min_limit=0, max_limit=3600),
        V(comm, "RetryBackOffRepeatTimes", "integer", "5", min_limit=0, max_limit=100),
        V(comm, "RetryBackOffWaitMinimum", "integer", "3", unit="s", min_limit=0, max_limit=3600),
        V(comm, "UnlockOnEVSideDisconnect", "boolean", "true"),
        # 180 s: see Config16's WebSocketPingInterval (the idle day's byte budget)
        V(comm, "WebSocketPingInterval", "integer", "180", unit="s", min_limit=0, max_limit=86400),
        # vendor: the learning keep-alive's ceiling (see Config16's PlugStreamPingIntervalMax)
        V(comm, "PlugStreamPingIntervalMax", "integer", "1800", unit="s", min_limit=0,
          max_limit=86400),
        V(aligned, "Available", "boolean", "true", ro),
        V(aligned, "Enabled", "boolean", "true"),
        # 0 (off) as 1.6 ClockAlignedDataInterval: an idle fleet sleeps until configured
        V(aligned, "Interval", "integer", "0", unit="s", min_limit=0, max_limit=86400),
        V(aligned, "Measurands", "MemberList", "Energy.Active.Import.Register", values_list=_M201),
        V(aligned, "SendDuringIdle", "boolean", "false"),
        V(aligned, "TxEndedInterval", "integer", "0", unit="s", min_limit=0, max_limit=86400),
        V(aligned, "TxEndedMeasurands", "MemberList", "", values_list=_M201),
        V(sampled, "Available", "boolean", "true", ro),
        V(sampled, "Enabled", "boolean", "true"),
        V(sampled, "RegisterValuesWithoutPhases", "boolean", "true"),
        V(sampled, "TxEndedInterval", "integer", "0", unit="s", min_limit=0, max_limit=86400),
        V(sampled, "TxEndedMeasurands", "MemberList", "Energy.Active.Import.Register", values_list=_M201),
        V(sampled, "TxStartedMeasurands", "MemberList", "Energy.Active.Import.Register", values_list=_M201),
        V(sampled, "TxUpdatedInterval", "integer", "60", unit="s", min_limit=0, max_limit=86400),
        V(sampled, "TxUpdatedMeasurands", "MemberList", DEFAULT_MEASURANDS, values_list=_M201),
        V(tx, "EVConnectionTimeOut", "integer", "60", unit="s", min_limit=0, max_limit=3600),
        V(tx, "MaxEnergyOnInvalidId", "integer", "0", unit="Wh", min_limit=0),
        V(tx, "StopTxOnEVSideDisconnect", "boolean", "true"),
        V(tx, "StopTxOnInvalidId", "boolean", "true"),
        V(tx, "TxBeforeAcceptedEnabled", "boolean", "false"),
        V(tx, "TxStartPoint", "MemberList", "PowerPathClosed", values_list=_TX_POINTS, allow_empty=False),
        V(tx, "TxStopPoint", "MemberList", "EVConnected,Authorized", values_list=_TX_POINTS, allow_empty=False),
        V(auth, "AuthorizeRemoteStart", "boolean", "true"),
        V(auth, "DisableRemoteAuthorization", "boolean", "false"),
        V(auth, "Enabled", "boolean", "true"),
        V(auth, "LocalAuthorizeOffline", "boolean", "true"),
        V(auth, "LocalPreAuthorize", "boolean", "false"),
        V(auth, "MasterPassGroupId", "string", "", max_limit=36),
        V(auth, "OfflineTxForUnknownIdEnabled", "boolean", "false"),
        V(cache, "Available", "boolean", "true", ro),
        V(cache, "DisablePostAuthorize", "boolean", "false"),
        V(cache, "Enabled", "boolean", "true"),
        V(cache, "LifeTime", "integer", "86400", unit="s", min_limit=0),
        V(cache, "Policy", "OptionList", "LRU", values_list=("LRU",)),
        V(cache, "Storage", "integer", "65536", ro, unit="B"),
        V(lal, "Available", "boolean", "true", ro),
        V(lal, "BytesPerMessage", "integer", "65000", ro),
        V(lal, "DisablePostAuthorize", "boolean", "false"),
        V(lal, "Enabled", "boolean", "true"),
        V(lal, "Entries", "integer", "0", ro, max_limit=1000, persistent=False),
        V(lal, "ItemsPerMessage", "integer", "100", ro),
        V(lal, "Storage", "integer", "262144", ro, unit="B"),
        V(sc, "ACPhaseSwitchingSupported", "boolean", "false", ro),
        V(sc, "Available", "boolean", "true", ro),
        V(sc, "Enabled", "boolean", "true"),
        V(sc, "Entries", "integer", "0", ro, instance="ChargingProfiles", max_limit=16, persistent=False),
        V(sc, "LimitChangeSignificance", "decimal", "5.0", unit="Percent", min_limit=0, max_limit=100),
        V(sc, "NotifyChargingLimitWithSchedules", "boolean", "false"),
        V(sc, "PeriodsPerSchedule", "integer", "24", ro),
        V(sc, "Phases3to1", "boolean", "false", ro),
        V(sc, "ProfileStackLevel", "integer", "8", ro),
        V(sc, "RateUnit", "MemberList", "A,W", ro, values_list=("A", "W")),
        V(res, "Available", "boolean", "true", ro),
        V(res, "Enabled", "boolean", "true"),
        V(res, "NonEvseSpecific", "boolean", "true", ro),
        V(sec, "AdditionalRootCertificateCheck", "boolean", "false", ro),
        V(sec, "BasicAuthPassword", "string", "", "WriteOnly", max_limit=40, min_length=16),
        V(sec, "CertificateEntries", "integer", "0", ro, persistent=False),
        V(sec, "CertSigningRepeatTimes", "integer", "3", min_limit=0, max_limit=100),
        V(sec, "CertSigningWaitMinimum", "integer", "60", unit="s", min_limit=0, max_limit=86400),
        V(sec, "Identity", "string", identity, ro, max_limit=48),
        V(sec, "OrganizationName", "string", "PlugStream", max_limit=128),
        V(sec, "SecurityProfile", "integer", str(security_profile), ro, min_limit=0, max_limit=3),
        V(dd, "BytesPerMessage", "integer", "65000", ro, instance="GetReport"),
        V(dd, "BytesPerMessage", "integer", "65000", ro, instance="GetVariables"),
        V(dd, "BytesPerMessage", "integer", "65000", ro, instance="SetVariables"),
        V(dd, "ConfigurationValueSize", "integer", "1000", ro),
        V(dd, "ItemsPerMessage", "integer", "100", ro, instance="GetReport"),
        V(dd, "ItemsPerMessage", "integer", "50", ro, instance="GetVariables"),
        V(dd, "ItemsPerMessage", "integer", "50", ro, instance="SetVariables"),
        V(dd, "ReportingValueSize", "integer", "2500", ro),
        V(dd, "ValueSize", "integer", "2500", ro),
        V(clock, "DateTime", "dateTime", "", ro, persistent=False),
        V(clock, "NextTimeOffsetTransitionDateTime", "dateTime", ""),
        V(clock, "NtpServerUri", "string", "pool.ntp.org", max_limit=512),
        V(clock, "NtpSource", "OptionList", "DHCP", values_list=("DHCP", "manual")),
        V(clock, "TimeAdjustmentReportingThreshold", "integer", "20", unit="s", min_limit=0),
        V(clock, "TimeOffset", "string", "", max_limit=6),
        V(clock, "TimeSource", "SequenceList", "NTP,Heartbeat", values_list=("Heartbeat", "NTP", "RealTimeClock"), allow_empty=False),
        V(clock, "TimeZone", "string", "", max_limit=64),
    ]  # fmt: skip


_AVAILABILITY = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")


def _infrastructure(
    evses: Mapping[int, int], vendor: str, model: str, supply_phases: int, max_power_w: float
) -> list[VariableDef]:
    """ChargingStation, EVSE and Connector components (2.0.1 part 2, "Physical Components")."""
    V = VariableDef
    ro: Mutability = "ReadOnly"
    out = [
        V("ChargingStation", "AllowNewSessionsPendingFirmwareUpdate", "boolean", "false"),
        V("ChargingStation", "AvailabilityState", "OptionList", "Available", ro, values_list=_AVAILABILITY),
        V("ChargingStation", "Available", "boolean", "true", ro),
        V("ChargingStation", "Model", "string", model, ro),
        V("ChargingStation", "SupplyPhases", "integer", str(supply_phases), ro),
        V("ChargingStation", "VendorName", "string", vendor, ro),
    ]  # fmt: skip
    for evse_id, connectors in sorted(evses.items()):
        out += [
            V("EVSE", "AvailabilityState", "OptionList", "Available", ro, values_list=_AVAILABILITY, evse=evse_id),
            V("EVSE", "Available", "boolean", "true", ro, evse=evse_id),
            V("EVSE", "Power", "decimal", "0", ro, unit="W", max_limit=max_power_w, persistent=False, evse=evse_id),
            V("EVSE", "SupplyPhases", "integer", str(supply_phases), ro, evse=evse_id),
        ]  # fmt: skip
        for connector_id in range(1, connectors + 1):
            out += [
                V("Connector", "AvailabilityState", "OptionList", "Available", ro, values_list=_AVAILABILITY, evse=evse_id, connector=connector_id),
                V("Connector", "Available", "boolean", "true", ro, evse=evse_id, connector=connector_id),
                V("Connector", "ConnectorType", "string", "cType2", ro, evse=evse_id, connector=connector_id),
                V("Connector", "SupplyPhases", "integer", str(supply_phases), ro, evse=evse_id, connector=connector_id),
            ]  # fmt: skip
    return out


def _status_info(reason: str, info: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"reasonCode": reason}
    if info:
        out["additionalInfo"] = info
    return out


def _default_values(d: VariableDef) -> dict[AttributeType, str]:
    return {a: d.default if a == "Actual" else "" for a in d.attributes}


_IDENTITY = ("SecurityCtrlr", "Identity")  # (component, variable): the station's own default


@dataclass(frozen=True, slots=True, eq=False)
class _SharedVariable:
    """One variable as every device model of a kind has it (hashed by identity: a
    station's own values and providers are keyed with it, not with a new tuple)."""

    definition: VariableDef
    defaults: dict[AttributeType, str]
    """The default value of each attribute type the variable supports."""
    identity: bool
    """Its default is the station's identity (SecurityCtrlr.Identity)."""


@dataclass(frozen=True, slots=True, eq=False)
class _SharedModel:
    """What every device model of one kind holds alike, made once a process and never
    written: a station keeps only what differs from it (see :class:`DeviceModel201`)."""

    variables: dict[_Ident, _SharedVariable]
    """Every variable, in report order."""
    components: frozenset[_ComponentIdent]


@functools.lru_cache(maxsize=64)
def _shared_model(
    security_profile: int,
    evses: tuple[tuple[int, int], ...],
    vendor: str,
    model: str,
    supply_phases: int,
    max_power_w: float,
    extra: tuple[VariableDef, ...],
) -> _SharedModel:
    """The variables of a device model of this kind (the station's identity filled in
    per station) with their default values and components: made once for a fleet, not
    once per station."""
    definitions: dict[_Ident, VariableDef] = {}
    for d in (
        *_controllers("", security_profile),
        *_infrastructure(dict(evses), vendor, model, supply_phases, max_power_w),
        *extra,
    ):
        definitions[d.ident] = d  # a later one replaces an earlier one, in its place
    variables = {
        ident: _SharedVariable(d, _default_values(d), (d.component, d.name) == _IDENTITY)
        for ident, d in definitions.items()
    }
    return _SharedModel(variables, frozenset(ident[:4] for ident in variables))


class DeviceModel201:
    """The OCPP 2.0.1 device model of one station, persisted in one JSON file.

    ``path`` is the JSON file (or a directory, which then holds ``device_model201.json``);
    None keeps everything in memory. ``evses`` maps each EVSE id to its number of
    connectors. ``extra`` adds (vendor) variables or replaces standard ones.

    A fleet runs thousands of these in one process, nearly all at their defaults: the
    variables' definitions and default values are held once for every station of a
    kind; a station holds only the values it changed (a dict made at its first change),
    its live-value providers and its identity, and reads fall back to the defaults.
    """

    FILENAME = "device_model201.json"
    path: PathAsText[Path | None] = PathAsText()

    __slots__ = (
        "_identity",
        "_listeners",
        "_own",
        "_path_text",
        "_providers",
        "_redefined",
        "_shared",
        "sync",
    )

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        evses: Mapping[int, int] | None = None,
        identity: str = "",
        vendor_name: str = "PlugStream",
        model: str = "PlugStream 22",
        supply_phases: int = 3,
        max_power_w: float = 22000.0,
        security_profile: int = 0,
        extra: Iterable[VariableDef] = (),
    ) -> None:
        self.path = None if path is None else _file(path, self.FILENAME)
        self.sync = True  # fsync each save; False: survives the process dying, not the OS
        self._shared = _shared_model(
            security_profile,
            tuple(sorted((evses or {1: 1}).items())),
            vendor_name,
            model,
            supply_phases,
            max_power_w,
            tuple(extra),
        )
        self._identity = identity  # the default of SecurityCtrlr.Identity
        self._own: dict[tuple[_SharedVariable, AttributeType], str] | None = None
        """The values that differ from the defaults; None until the first."""
        self._providers: dict[_SharedVariable, Callable[[], str]] | None = None
        self._redefined: dict[_SharedVariable, VariableDef] | None = None
        self._listeners: list[Callable[[VariableChange], None]] = []

    # -- one variable

    def _definition(self, var: _SharedVariable) -> VariableDef:
        """The variable's characteristics, as this station has them."""
        if self._redefined is not None:
            found = self._redefined.get(var)
            if found is not None:
                return found
        if var.identity and self._identity:
            return replace(var.definition, default=self._identity)
        return var.definition

    def _default(self, var: _SharedVariable, attribute: AttributeType) -> str:
        if var.identity and self._identity and attribute == "Actual":
            return self._identity
        return var.defaults.get(attribute, "")

    def _stored_value(self, var: _SharedVariable, attribute: AttributeType) -> str:
        """The value set (or the default), without asking a provider."""
        if self._own is not None:
            found = self._own.get((var, attribute))
            if found is not None:
                return found
        return self._default(var, attribute)

    def _read(self, var: _SharedVariable, attribute: AttributeType) -> str:
        """The value as read: a provider's for Actual, else the stored one."""
        if self._providers is not None and attribute == "Actual":
            provider = self._providers.get(var)
            if provider is not None:
                return provider()
        return self._stored_value(var, attribute)

    def _write(self, var: _SharedVariable, attribute: AttributeType, value: str) -> None:
        """Set one attribute: held by this station unless it is the default again."""
        if value == self._default(var, attribute):  # the default again: nothing to hold
            if self._own is not None:
                self._own.pop((var, attribute), None)
            return
        if self._own is None:
            self._own = {}
        self._own[var, attribute] = value

    # -- persistence

    @classmethod
    def load(cls, path: Path | str, **kwargs: Any) -> DeviceModel201:
        """The device model persisted at ``path``, or the defaults when there is none yet."""
        model = cls(path, **kwargs)
        assert model.path is not None
        data = _read_json(model.path)
        entries = data.get("variables") if isinstance(data, dict) else None
        for entry in entries if isinstance(entries, list) else ():
            try:
                ident = _ident(
                    entry["component"],
                    entry.get("componentInstance"),
                    entry.get("evse"),
                    entry.get("connector"),
                    entry["variable"],
                    entry.get("variableInstance"),
                )
                attribute, value = entry["attribute"], entry["value"]
            except (KeyError, TypeError, AttributeError):
                continue
            var = model._shared.variables.get(ident)
            if var is None or attribute not in var.defaults:
                continue
            d = model._definition(var)
            if not model._stored(d):
                continue
            if isinstance(value, str) and (value == "" or d.problem(value) is None):
                model._write(var, attribute, value)
        return model

    @staticmethod
    def _stored(d: VariableDef) -> bool:
        return d.persistent and d.mutability != "ReadOnly"

    def save(self) -> None:
        """Write the operator-settable values to the file, atomically; a no-op without a file."""
        if self.path is None:
            return
        entries = []
        for var in self._shared.variables.values():
            d = self._definition(var)
            if not self._stored(d):
                continue
            for attribute in var.defaults:
                entries.append(
                    {
                        "component": d.component,
                        "componentInstance": d.component_instance,
                        "evse": d.evse,
                        "connector": d.connector,
                        "variable": d.name,
                        "variableInstance": d.instance,
                        "attribute": attribute,
                        "value": self._stored_value(var, attribute),
                    }
                )
        atomic_write_json(self.path, {"format": _FORMAT, "variables": entries}, sync=self.sync)

    # -- listeners

    def add_listener(self, callback: Callable[[VariableChange], None]) -> None:
        """Call ``callback(change)`` after each change that takes effect now."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[VariableChange], None]) -> None:
        self._listeners.remove(callback)

    def _notify(self, changes: Iterable[VariableChange]) -> None:
        for change in changes:
            for listener in list(self._listeners):
                listener(change)

    # -- GetVariables / SetVariables

    def _lookup(
        self, component: Mapping[str, Any], variable: Mapping[str, Any]
    ) -> tuple[str, _SharedVariable | None]:
        ident = _request_ident(component, variable)
        if ident[:4] not in self._shared.components:
            return "UnknownComponent", None
        var = self._shared.variables.get(ident)
        if var is None:
            return "UnknownVariable", None
        return "Accepted", var

    def get_variables(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One GetVariableResultType per GetVariableDataType, in order (use case B06)."""
        results = []
        for item in requests:
            attribute: AttributeType = item.get("attributeType", "Actual")
            result: dict[str, Any] = {
                "attributeType": attribute,
                "component": dict(item["component"]),
                "variable": dict(item["variable"]),
            }
            status, var = self._lookup(item["component"], item["variable"])
            if var is not None:
                if attribute not in var.defaults:
                    status = "NotSupportedAttributeType"
                elif self._definition(var).mutability == "WriteOnly":
                    status = "Rejected"  # B06.FR.09
                    result["attributeStatusInfo"] = _status_info("WriteOnly")
                else:
                    result["attributeValue"] = self._read(var, attribute)
            result["attributeStatus"] = status
            results.append(result)
        return results

    def set_variables(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One SetVariableResultType per SetVariableDataType, in order (use case B05).

        Accepted values are on disk before this returns; listeners are called after.
        """
        results = []
        changes: list[VariableChange] = []
        undo: list[tuple[_SharedVariable, AttributeType, str]] = []
        for item in requests:
            attribute: AttributeType = item.get("attributeType", "Actual")
            value = str(item["attributeValue"])
            result: dict[str, Any] = {
                "attributeType": attribute,
                "component": dict(item["component"]),
                "variable": dict(item["variable"]),
            }
            status, var = self._lookup(item["component"], item["variable"])
            if var is not None:
                d = self._definition(var)
                problem = d.problem(value)
                if attribute not in var.defaults:
                    status = "NotSupportedAttributeType"
                elif d.mutability == "ReadOnly" or d.constant:
                    status = "Rejected"
                    result["attributeStatusInfo"] = _status_info("ReadOnly")
                elif problem is not None:
                    status = "Rejected"
                    result["attributeStatusInfo"] = _status_info(problem)
                else:
                    undo.append((var, attribute, self._stored_value(var, attribute)))
                    self._write(var, attribute, value)
                    if d.reboot:
                        status = "RebootRequired"
                    else:
                        changes.append(VariableChange(d, attribute, value))
            result["attributeStatus"] = status
            results.append(result)
        if undo:
            try:
                self.save()
            except OSError:
                for var, attribute, old in reversed(undo):
                    self._write(var, attribute, old)
                changes = []
                for result in results:
                    if result["attributeStatus"] in ("Accepted", "RebootRequired"):
                        result["attributeStatus"] = "Rejected"
                        result["attributeStatusInfo"] = _status_info("OutOfStorage")
        self._notify(changes)
        return results

    # -- station-side access

    def _var(
        self,
        component: str,
        variable: str,
        *,
        instance: str | None = None,
        evse: int | None = None,
        connector: int | None = None,
        component_instance: str | None = None,
    ) -> _SharedVariable:
        ident = _ident(component, component_instance, evse, connector, variable, instance)
        var = self._shared.variables.get(ident)
        if var is None:
            raise KeyError(f"no variable {component}.{variable} ({ident})")
        return var

    def definition(self, component: str, variable: str, **where: Any) -> VariableDef:
        return self._definition(self._var(component, variable, **where))

    def value(
        self, component: str, variable: str, *, attribute: AttributeType = "Actual", **where: Any
    ) -> str:
        """The value of one attribute, write-only ones included (the station needs them)."""
        return self._read(self._var(component, variable, **where), attribute)

    def get_int(self, component: str, variable: str, **where: Any) -> int:
        return int(self.value(component, variable, **where))

    def get_bool(self, component: str, variable: str, **where: Any) -> bool:
        return self.value(component, variable, **where) == "true"

    def get_list(self, component: str, variable: str, **where: Any) -> list[str]:
        return _csl(self.value(component, variable, **where))

    def set_value(
        self,
        component: str,
        variable: str,
        value: str,
        *,
        attribute: AttributeType = "Actual",
        **where: Any,
    ) -> None:
        """Set a value from inside the station, read-only ones included (e.g. AvailabilityState).

        The value must still be valid for the variable's characteristics. Listeners
        are called when the value changed.
        """
        var = self._var(component, variable, **where)
        d = self._definition(var)
        problem = d.problem(value) if value else None
        if problem is not None:
            raise ValueError(f"{component}.{variable}: {value!r} ({problem})")
        if attribute not in var.defaults:
            raise ValueError(f"{component}.{variable} has no {attribute} attribute")
        if self._stored_value(var, attribute) == value:
            return
        self._write(var, attribute, value)
        if self._stored(d):
            self.save()
        self._notify([VariableChange(d, attribute, value)])

    def provide(
        self, component: str, variable: str, provider: Callable[[], str], **where: Any
    ) -> None:
        """Read the Actual value from ``provider`` (e.g. ClockCtrlr.DateTime from the clock)."""
        var = self._var(component, variable, **where)
        if self._providers is None:
            self._providers = {}
        self._providers[var] = provider

    def variables(self) -> list[VariableDef]:
        return [self._definition(var) for var in self._shared.variables.values()]

    def redefine(self, definition: VariableDef) -> None:
        """Replace the characteristics of an existing variable, keeping its values."""
        var = self._shared.variables[definition.ident]
        if self._redefined is None:
            self._redefined = {}
        self._redefined[var] = replace(definition)

    # -- GetBaseReport

    def report(self, base: str) -> list[dict[str, Any]]:
        """The ReportDataType entries of a GetBaseReport for ``base`` (use case B07).

        ConfigurationInventory: every variable the operator can set (ReadWrite,
        WriteOnly). FullInventory: every variable. SummaryInventory: the
        AvailabilityState of the station, its EVSEs and connectors, and any active
        Problem. Write-only values are never reported.
        """
        if base not in REPORT_BASES:
            raise ValueError(f"unsupported reportBase {base!r}")
        out = []
        for var in self._shared.variables.values():
            d = self._definition(var)
            if base == "ConfigurationInventory" and d.mutability == "ReadOnly":
                continue
            if base == "SummaryInventory" and not (
                d.name == "AvailabilityState"
                or (d.name == "Problem" and self._read(var, "Actual") == "true")
            ):
                continue
            attributes = []
            for attribute in var.defaults:
                entry: dict[str, Any] = {
                    "type": attribute,
                    "mutability": d.mutability,
                    "persistent": d.persistent,
                    "constant": d.constant,
                }
                if d.mutability != "WriteOnly":
                    entry["value"] = self._read(var, attribute)
                attributes.append(entry)
            out.append(
                {
                    "component": d.component_json(),
                    "variable": d.variable_json(),
                    "variableAttribute": attributes,
                    "variableCharacteristics": d.characteristics(),
                }
            )
        return out

    def notify_reports(
        self, base: str, request_id: int, generated_at: str, items_per_message: int | None = None
    ) -> list[dict[str, Any]]:
        """The NotifyReportRequest payloads of a report, split into ItemsPerMessage[GetReport] parts."""
        data = self.report(base)
        size = items_per_message or self.get_int(
            "DeviceDataCtrlr", "ItemsPerMessage", instance="GetReport"
        )
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [[]]
        messages = []
        for seq, chunk in enumerate(chunks):
            msg: dict[str, Any] = {
                "requestId": request_id,
                "generatedAt": generated_at,
                "seqNo": seq,
                "tbc": seq < len(chunks) - 1,
            }
            if chunk:
                msg["reportData"] = chunk
            messages.append(msg)
        return messages

    # -- typed access to what the station's features need

    @property
    def heartbeat_interval(self) -> int:
        return self.get_int("OCPPCommCtrlr", "HeartbeatInterval")

    @property
    def offline_threshold(self) -> int:
        return self.get_int("OCPPCommCtrlr", "OfflineThreshold")

    @property
    def message_attempts_transaction_event(self) -> int:
        return self.get_int("OCPPCommCtrlr", "MessageAttempts", instance="TransactionEvent")

    @property
    def message_attempt_interval_transaction_event(self) -> int:
        return self.get_int("OCPPCommCtrlr", "MessageAttemptInterval", instance="TransactionEvent")

    @property
    def message_timeout(self) -> int:
        return self.get_int("OCPPCommCtrlr", "MessageTimeout", instance="Default")

    @property
    def retry_back_off_wait_minimum(self) -> int:
        return self.get_int("OCPPCommCtrlr", "RetryBackOffWaitMinimum")

    @property
    def retry_back_off_random_range(self) -> int:
        return self.get_int("OCPPCommCtrlr", "RetryBackOffRandomRange")

    @property
    def retry_back_off_repeat_times(self) -> int:
        return self.get_int("OCPPCommCtrlr", "RetryBackOffRepeatTimes")

    @property
    def websocket_ping_interval(self) -> int:
        return self.get_int("OCPPCommCtrlr", "WebSocketPingInterval")

    @property
    def ping_interval_max(self) -> int:
        return self.get_int("OCPPCommCtrlr", "PlugStreamPingIntervalMax")

    @property
    def reset_retries(self) -> int:
        return self.get_int("OCPPCommCtrlr", "ResetRetries")

    @property
    def ev_connection_timeout(self) -> int:
        return self.get_int("TxCtrlr", "EVConnectionTimeOut")

    @property
    def stop_tx_on_ev_side_disconnect(self) -> bool:
        return self.get_bool("TxCtrlr", "StopTxOnEVSideDisconnect")

    @property
    def stop_tx_on_invalid_id(self) -> bool:
        return self.get_bool("TxCtrlr", "StopTxOnInvalidId")

    @property
    def tx_start_point(self) -> list[str]:
        return self.get_list("TxCtrlr", "TxStartPoint")

    @property
    def tx_stop_point(self) -> list[str]:
        return self.get_list("TxCtrlr", "TxStopPoint")

    @property
    def aligned_data_interval(self) -> int:
        return self.get_int("AlignedDataCtrlr", "Interval")

    @property
    def aligned_data_measurands(self) -> list[str]:
        return self.get_list("AlignedDataCtrlr", "Measurands")

    @property
    def sampled_data_tx_updated_interval(self) -> int:
        return self.get_int("SampledDataCtrlr", "TxUpdatedInterval")

    @property
    def sampled_data_tx_updated_measurands(self) -> list[str]:
        return self.get_list("SampledDataCtrlr", "TxUpdatedMeasurands")

    @property
    def local_authorize_offline(self) -> bool:
        return self.get_bool("AuthCtrlr", "LocalAuthorizeOffline")

    @property
    def local_pre_authorize(self) -> bool:
        return self.get_bool("AuthCtrlr", "LocalPreAuthorize")

    @property
    def offline_tx_for_unknown_id_enabled(self) -> bool:
        return self.get_bool("AuthCtrlr", "OfflineTxForUnknownIdEnabled")

    @property
    def authorize_remote_start(self) -> bool:
        return self.get_bool("AuthCtrlr", "AuthorizeRemoteStart")

    @property
    def auth_cache_enabled(self) -> bool:
        return self.get_bool("AuthCacheCtrlr", "Enabled")

    @property
    def local_auth_list_enabled(self) -> bool:
        return self.get_bool("LocalAuthListCtrlr", "Enabled")

    @property
    def security_profile(self) -> int:
        return self.get_int("SecurityCtrlr", "SecurityProfile")

    @property
    def basic_auth_password(self) -> str | None:
        return self.value("SecurityCtrlr", "BasicAuthPassword") or None
