"""Local authorization: the Local Authorization List, the Authorization Cache and the offline rules.

OCPP 1.6 §3.5 (Local Authorization & Offline Behavior), §5.9 GetLocalListVersion,
§5.15 SendLocalList and the configuration keys ``LocalAuthorizeOffline``,
``LocalPreAuthorize``, ``AuthorizationCacheEnabled``, ``LocalAuthListEnabled``,
``AllowOfflineTxForUnknownId``, ``SendLocalListMaxLength`` and
``LocalAuthListMaxLength``; OCPP 2.0.1 use cases C10-C15 and D01-D02 with the
``AuthCtrlr``, ``AuthCacheCtrlr`` and ``LocalAuthListCtrlr`` variables.

Three plain classes, no network, no clock (``now`` is passed in, timezone-aware):

- :class:`LocalAuthList` -- the list the CSMS synchronises with SendLocalList; only
  :meth:`LocalAuthList.send_local_list` changes it (1.6 §3.5.2, D01.FR.09).
- :class:`AuthCache` -- every idTagInfo / idTokenInfo the CSMS sent back, valid or not
  (1.6 §3.5.1, C10), with expiry, ``AuthCacheLifeTime`` and LRU eviction.
- :class:`Authorizer` -- given the flags of :class:`AuthConfig` and whether the station
  is online, decides what to do with a presented token: ask the CSMS, accept locally
  or reject (:class:`AuthDecision`).

Tokens are keyed by :class:`TokenKey`: a 1.6 ``idTag`` has no type, a 2.0.1 ``idToken``
is the pair (idToken, type), so ``"04A1"`` and ``{"idToken": "04A1", "type": "ISO14443"}``
are different entries. The identifier itself is case-insensitive in both versions
(1.6 CiString20Type, 2.0.1 IdTokenType).

The info objects (``idTagInfo`` in 1.6, ``idTokenInfo`` in 2.0.1) are kept as the
plain JSON dicts from the wire; expiry is read from ``expiryDate`` (1.6) or
``cacheExpiryDateTime`` (2.0.1).

The list and the cache persist, if given a path, to one JSON file each, written
atomically (temporary file, fsync, rename) before the change is acknowledged.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from plugstream.station.config import PathAsText, atomic_write_json

__all__ = [
    "AuthCache",
    "AuthConfig",
    "AuthDecision",
    "Authorizer",
    "ClearCacheStatus",
    "LocalAuthList",
    "TokenKey",
    "UpdateStatus",
    "UpdateType",
    "Verdict",
    "effective_status",
    "expiry_of",
]

_FORMAT = 1  # version of the JSON files we write

UpdateType = Literal["Full", "Differential"]
UpdateStatus = Literal["Accepted", "Failed", "VersionMismatch"]
ClearCacheStatus = Literal["Accepted", "Rejected"]
Info = dict[str, Any]

# Statuses that count as "valid" for cache eviction (1.6 §3.5.2: valid = Accepted/ConcurrentTx).
_VALID = frozenset({"Accepted", "ConcurrentTx"})


@dataclass(frozen=True, slots=True)
class TokenKey:
    """The identity of a presented token: 1.6 idTag (``type`` None) or 2.0.1 (idToken, type).

    ``id_token`` is kept as given; equality and hashing use its case-folded form.
    """

    id_token: str
    type: str | None = None

    @property
    def _norm(self) -> tuple[str, str | None]:
        return (self.id_token.casefold(), self.type)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenKey) and self._norm == other._norm

    def __hash__(self) -> int:
        return hash(self._norm)

    @classmethod
    def id_tag(cls, id_tag: str) -> TokenKey:
        """A 1.6 ``idTag``."""
        return cls(id_tag, None)

    @classmethod
    def from_id_token(cls, id_token: Mapping[str, Any]) -> TokenKey:
        """A 2.0.1 ``IdTokenType`` object (``{"idToken": ..., "type": ...}``)."""
        return cls(str(id_token["idToken"]), str(id_token["type"]))

    def to_json(self) -> dict[str, Any]:
        return {"idToken": self.id_token, "type": self.type}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenKey:
        t = data.get("type")
        return cls(str(data["idToken"]), None if t is None else str(t))


def _parse_dt(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def expiry_of(info: Mapping[str, Any]) -> datetime | None:
    """The expiry of an idTagInfo (``expiryDate``) or idTokenInfo (``cacheExpiryDateTime``)."""
    return _parse_dt(info.get("expiryDate", info.get("cacheExpiryDateTime")))


def effective_status(info: Mapping[str, Any], now: datetime) -> str:
    """The info's status, ``Expired`` if its expiry has passed (1.6 §3.5.4, C13.FR.05)."""
    status = str(info.get("status", "Invalid"))
    exp = expiry_of(info)
    if exp is not None and exp <= now:
        return "Expired"
    return status


def _entry_key_info(entry: Mapping[str, Any]) -> tuple[TokenKey, Info | None]:
    """Key and info of one AuthorizationData (1.6 idTag/idTagInfo, 2.0.1 idToken/idTokenInfo)."""
    if "idToken" in entry:
        key = TokenKey.from_id_token(entry["idToken"])
        info = entry.get("idTokenInfo")
    else:
        key = TokenKey.id_tag(str(entry["idTag"]))
        info = entry.get("idTagInfo")
    return key, (dict(info) if info is not None else None)


def _load_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a PlugStream auth file of format {_FORMAT}")
    return data


# --------------------------------------------------------------------------- local list


class LocalAuthList:
    """The Local Authorization List (1.6 §3.5.2, D01/D02).

    ``version`` 0 means no list has been received yet (D02.FR.02).
    """

    sync: bool = True
    """fsync each write (a real station); False: survives the process dying, not the OS
    (a fleet: every station caches its driver's card on its first Authorize)."""

    path: PathAsText[Path | None] = PathAsText()

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.version = 0
        self._entries: dict[TokenKey, Info] = {}

    @classmethod
    def load(cls, path: Path) -> LocalAuthList:
        """The list persisted at ``path``, or an empty one (version 0) if there is no file."""
        lst = cls(path)
        data = _load_json(path)
        if data is not None:
            lst.version = int(data["version"])
            for item in data["entries"]:
                lst._entries[TokenKey.from_json(item["key"])] = dict(item["info"])
        return lst

    def persist(self) -> None:
        """Write the list to its file, atomically; a no-op without a path."""
        if self.path is None:
            return
        entries = [{"key": k.to_json(), "info": v} for k, v in self._entries.items()]
        atomic_write_json(
            self.path,
            {"format": _FORMAT, "version": self.version, "entries": entries},
            sync=self.sync,
        )

    def get_version(self) -> int:
        """The listVersion / versionNumber for GetLocalListVersion (0: no list yet)."""
        return self.version

    def get(self, key: TokenKey) -> Info | None:
        info = self._entries.get(key)
        return dict(info) if info is not None else None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[TokenKey]:
        return list(self._entries)

    def send_local_list(
        self,
        version: int,
        update_type: UpdateType,
        entries: Sequence[Mapping[str, Any]] | None,
        *,
        max_length: int | None = None,
        max_per_message: int | None = None,
    ) -> UpdateStatus:
        """Apply a SendLocalList request and answer its status.

        ``max_length`` is ``LocalAuthListMaxLength`` (the list's size after the update),
        ``max_per_message`` is ``SendLocalListMaxLength`` / ``ItemsPerMessageSendLocalList``.
        On anything but ``Accepted`` the list and its version stay as they were.

        - Full: the entries replace the list; every entry needs its info (1.6 §6.41).
          No entries empties the list (D01.FR.04).
        - Differential: the version must be higher than the current one, else
          ``VersionMismatch``; an entry with info is added or updated, one without is
          removed. No entries changes nothing but the version (D01.FR.05).
        - version <= 0 is ``Failed``: 0 and -1 are reserved (1.6 errata §3.52).
        """
        entries = list(entries or ())
        if version <= 0:
            return "Failed"
        if max_per_message is not None and len(entries) > max_per_message:
            return "Failed"
        if update_type == "Differential" and version <= self.version:
            return "VersionMismatch"
        try:
            parsed = [_entry_key_info(e) for e in entries]
        except (KeyError, TypeError):
            return "Failed"
        if len({k for k, _ in parsed}) != len(parsed):
            return "Failed"  # D01.FR.06: all idTokens unique
        if update_type == "Full":
            if any(info is None for _, info in parsed):
                return "Failed"
            new: dict[TokenKey, Info] = {k: info for k, info in parsed if info is not None}
        elif update_type == "Differential":
            new = dict(self._entries)
            for k, info in parsed:
                if info is None:
                    new.pop(k, None)
                else:
                    new.pop(k, None)  # re-insert so a new spelling of the id replaces the old
                    new[k] = info
        else:
            return "Failed"
        if max_length is not None and len(new) > max_length:
            return "Failed"
        old_entries, old_version = self._entries, self.version
        self._entries, self.version = new, version
        try:
            self.persist()
        except OSError:
            self._entries, self.version = old_entries, old_version
            return "Failed"
        return "Accepted"


# --------------------------------------------------------------------------- cache


@dataclass(slots=True)
class _CacheEntry:
    info: Info
    last_used: datetime


class AuthCache:
    """The Authorization Cache (1.6 §3.5.1, C10/C11).

    - Holds every latest info received, valid or not (C10.FR.01).
    - An entry whose ``expiryDate`` / ``cacheExpiryDateTime`` has passed is changed to
      ``Expired`` (1.6 §3.5.1, C10.FR.10).
    - Without such a date, an entry unused for ``lifetime`` seconds
      (``AuthCacheCtrlr.LifeTime``) is removed (C10.FR.08).
    - When full, a new entry evicts the least recently used NOT-valid entry, and only
      if there is none, the least recently used valid one (1.6 §3.5.1, C10.FR.07).
    """

    sync: bool = True
    """fsync each write (a real station); False: survives the process dying, not the OS
    (a fleet: every station caches its driver's card on its first Authorize)."""

    path: PathAsText[Path | None] = PathAsText()

    def __init__(
        self,
        *,
        capacity: int = 1000,
        lifetime: float | None = None,
        path: Path | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.lifetime = lifetime
        self.path = path
        self._entries: OrderedDict[TokenKey, _CacheEntry] = OrderedDict()  # LRU first

    @classmethod
    def load(cls, path: Path, *, capacity: int = 1000, lifetime: float | None = None) -> AuthCache:
        """The cache persisted at ``path``, or an empty one if there is no file."""
        cache = cls(capacity=capacity, lifetime=lifetime, path=path)
        data = _load_json(path)
        if data is not None:
            for item in data["entries"]:
                last = datetime.fromisoformat(item["last_used"])
                cache._entries[TokenKey.from_json(item["key"])] = _CacheEntry(
                    dict(item["info"]), last
                )
        while len(cache._entries) > capacity:
            cache._evict_one()
        return cache

    def persist(self) -> None:
        """Write the cache to its file, atomically; a no-op without a path."""
        if self.path is None:
            return
        entries = [
            {"key": k.to_json(), "info": e.info, "last_used": e.last_used.isoformat()}
            for k, e in self._entries.items()
        ]
        atomic_write_json(self.path, {"format": _FORMAT, "entries": entries}, sync=self.sync)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def update(self, key: TokenKey, info: Mapping[str, Any], *, now: datetime) -> None:
        """Store the info the CSMS sent for ``key`` (Authorize, Start/StopTransaction, TransactionEvent)."""
        self._entries.pop(key, None)
        while len(self._entries) >= self.capacity:
            self._evict_one()
        self._entries[key] = _CacheEntry(dict(info), now)
        self.persist()

    def lookup(self, key: TokenKey, *, now: datetime) -> Info | None:
        """The info for ``key`` as of ``now`` (status ``Expired`` once expired), marking it used.

        None if unknown or dropped after ``lifetime`` without use.
        """
        self.expire(now=now)
        entry = self._entries.get(key)
        if entry is None:
            return None
        entry.last_used = now
        self._entries.move_to_end(key)
        self.persist()
        return dict(entry.info)

    def expire(self, *, now: datetime) -> None:
        """Apply expiry dates and the lifetime to every entry."""
        changed = False
        for key in list(self._entries):
            entry = self._entries[key]
            exp = expiry_of(entry.info)
            if exp is not None:
                if exp <= now and entry.info.get("status") != "Expired":
                    entry.info["status"] = "Expired"
                    changed = True
            elif self.lifetime is not None and now - entry.last_used >= timedelta(
                seconds=self.lifetime
            ):
                del self._entries[key]
                changed = True
        if changed:
            self.persist()

    def remove(self, key: TokenKey) -> None:
        if self._entries.pop(key, None) is not None:
            self.persist()

    def clear(self) -> None:
        """Empty the cache (ClearCache)."""
        self._entries.clear()
        self.persist()

    def _evict_one(self) -> None:
        for key, entry in self._entries.items():  # least recently used first
            if entry.info.get("status") not in _VALID:
                del self._entries[key]
                return
        self._entries.popitem(last=False)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The flags that steer local authorization, with their 1.6 key / 2.0.1 variable."""

    local_authorize_offline: bool = True
    """1.6 ``LocalAuthorizeOffline`` / 2.0.1 ``AuthCtrlr.LocalAuthorizeOffline``."""
    local_pre_authorize: bool = False
    """1.6 ``LocalPreAuthorize`` / 2.0.1 ``AuthCtrlr.LocalPreAuthorize``."""
    cache_enabled: bool = True
    """1.6 ``AuthorizationCacheEnabled`` / 2.0.1 ``AuthCacheCtrlr.Enabled``."""
    local_list_enabled: bool = True
    """1.6 ``LocalAuthListEnabled`` / 2.0.1 ``LocalAuthListCtrlr.Enabled``."""
    allow_offline_tx_for_unknown_id: bool = False
    """1.6 ``AllowOfflineTxForUnknownId`` / 2.0.1 ``AuthCtrlr.OfflineTxForUnknownIdEnabled``."""
    cache_disable_post_authorize: bool = False
    """2.0.1 ``AuthCacheCtrlr.DisablePostAuthorize``."""
    local_list_disable_post_authorize: bool = False
    """2.0.1 ``LocalAuthListCtrlr.DisablePostAuthorize``."""


class Verdict(StrEnum):
    ASK_CSMS = "ask_csms"
    ACCEPT_LOCALLY = "accept_locally"
    REJECT = "reject"


Source = Literal["local_list", "cache", "unknown"]


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """What to do with a presented token, and the info that decided it.

    ``info`` is the local list's or cache's entry (status ``Expired`` if its date has
    passed), None for an unknown token; ``source`` says where it came from.
    """

    verdict: Verdict
    info: Info | None = None
    source: Source = "unknown"

    @property
    def ask_csms(self) -> bool:
        return self.verdict is Verdict.ASK_CSMS

    @property
    def accept_locally(self) -> bool:
        return self.verdict is Verdict.ACCEPT_LOCALLY

    @property
    def reject(self) -> bool:
        return self.verdict is Verdict.REJECT


class Authorizer:
    """Decides whether a presented token may start a transaction.

    Local Authorization List entries take priority over cache entries (1.6 §3.5.3,
    C13.FR.01 / C14.FR.01).

    Online:
      - known and Accepted, with ``local_pre_authorize`` -> accept locally (C12, C14.FR.02);
      - known and not Accepted with the source's DisablePostAuthorize -> reject;
      - otherwise -> ask the CSMS with Authorize (1.6 §5.2, C10.FR.03, C14.FR.03).

    Offline:
      - known and not Accepted (Invalid, Blocked, Expired, or past its expiry date)
        -> reject, whatever the flags (1.6 §3.5.4, C13);
      - known and Accepted with ``local_authorize_offline`` -> accept locally;
      - otherwise (unknown, or Accepted but local authorization offline is off)
        -> accept if ``allow_offline_tx_for_unknown_id``, else reject (C15).
    """

    def __init__(
        self,
        local_list: LocalAuthList,
        cache: AuthCache,
        config: AuthConfig | None = None,
    ) -> None:
        self.local_list = local_list
        self.cache = cache
        self.config = config or AuthConfig()

    def _known(self, key: TokenKey, now: datetime) -> tuple[Info, Source] | None:
        cfg = self.config
        if cfg.local_list_enabled:
            info = self.local_list.get(key)
            if info is not None:
                info["status"] = effective_status(info, now)
                return info, "local_list"
        if cfg.cache_enabled:
            info = self.cache.lookup(key, now=now)
            if info is not None:
                info["status"] = effective_status(info, now)
                return info, "cache"
        return None

    def authorize(self, key: TokenKey, *, online: bool, now: datetime) -> AuthDecision:
        """The decision for token ``key`` presented at ``now``."""
        cfg = self.config
        known = self._known(key, now)
        if online:
            if known is None:
                return AuthDecision(Verdict.ASK_CSMS)
            info, source = known
            if info["status"] == "Accepted":
                if cfg.local_pre_authorize:
                    return AuthDecision(Verdict.ACCEPT_LOCALLY, info, source)
                return AuthDecision(Verdict.ASK_CSMS, info, source)
            no_post = (
                cfg.local_list_disable_post_authorize
                if source == "local_list"
                else cfg.cache_disable_post_authorize
            )
            return AuthDecision(Verdict.REJECT if no_post else Verdict.ASK_CSMS, info, source)
        if known is not None:
            info, source = known
            if info["status"] != "Accepted":
                return AuthDecision(Verdict.REJECT, info, source)
            if cfg.local_authorize_offline:
                return AuthDecision(Verdict.ACCEPT_LOCALLY, info, source)
        if cfg.allow_offline_tx_for_unknown_id:
            return AuthDecision(Verdict.ACCEPT_LOCALLY)
        return AuthDecision(Verdict.REJECT)

    def on_csms_info(self, key: TokenKey, info: Mapping[str, Any], *, now: datetime) -> bool:
        """Take the idTagInfo / idTokenInfo of an Authorize, Start/StopTransaction or
        TransactionEvent response (or a ReserveNow) into the cache.

        Tokens on the Local Authorization List are never cached (1.6 §3.5.3). Returns
        True if the info conflicts with the list's entry: the 1.6 station then sends a
        StatusNotification with connectorId 0 and errorCode ``LocalListConflict``.
        """
        if key in self.local_list:
            entry = self.local_list.get(key)
            listed = effective_status(entry, now) if entry is not None else None
            return listed != info.get("status")
        if self.config.cache_enabled:
            self.cache.update(key, info, now=now)
        return False

    def clear_cache(self) -> ClearCacheStatus:
        """Answer ClearCache: Rejected while the cache is disabled (C11.FR.04) or on failure."""
        if not self.config.cache_enabled:
            return "Rejected"
        try:
            self.cache.clear()
        except OSError:
            return "Rejected"
        return "Accepted"

    def get_local_list_version(self) -> int:
        """Answer GetLocalListVersion: 0 while the list is disabled (D02.FR.03)."""
        return self.local_list.get_version() if self.config.local_list_enabled else 0
