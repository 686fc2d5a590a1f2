"""The station's security log and the queue of security events it reports to the CSMS.

Every security event (2.0.1 part 2 appendix 1 "Security Events", 1.6 Security Whitepaper
§8) is stored in the security log (A04.FR.04, a rolling log of :data:`MAX_LOG` entries),
and reported with SecurityEventNotification (A04.FR.01). The report is queued durably
with the log in one file (``security_log.json`` in the data dir, written atomically), so
that an event raised offline -- the CSMS's certificate failed the check, the CSMS refused
the password -- is sent once the station reaches a CSMS it trusts, even after a restart
(A04.FR.02: "queued with a guaranteed delivery").

Why not the transaction journal: its retry/discard rules and its strict order are the
transaction messages' (1.6 §3.7, E13); a CSMS without the 1.6 security extension answers
NotImplemented, and that must neither hold up a StopTransaction nor be retried forever.
This queue is delivered after boot, apart from the journal, and an event the CSMS does
not support is kept in the log only.

Names: the 2.0.1 names are canonical here; a 1.6 station reports the whitepaper's names
where they differ (:func:`event_name`). Both are accepted as ``kind``.

A connection failure (:data:`RETRIED`) repeated while its report is still queued: logged
each time, reported once, so a station retrying for a day does not queue thousands of
notifications. The queue holds at most
:data:`MAX_PENDING`; beyond that the oldest non-critical reports go first.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from plugstream.ocpp.datetimes import format_time
from plugstream.station.config import atomic_write_json

__all__ = [
    "CRITICAL",
    "MAX_LOG",
    "MAX_PENDING",
    "RETRIED",
    "SecurityLog",
    "SecurityLogEntry",
    "event_name",
]

MAX_LOG = 1000  # rolling security log (A04.FR.04 recommends a rolling format)
MAX_PENDING = 200  # reports waiting for the CSMS
MAX_TECH_INFO = 255  # SecurityEventNotification techInfo: string[0..255]
MAX_TYPE = 50  # the type field: string[0..50]
FILENAME = "security_log.json"

# 2.0.1 name -> 1.6 whitepaper name, where they differ.
_TO_16 = {
    "FailedToAuthenticationAtCsms": "FailedToAuthenticationAtCentralSystem",
    "CsmsFailedToAuthentication": "CentralSystemFailedToAuthentication",
    "InvalidCsmsCertificate": "InvalidCentralSystemCertificate",
    "InvalidChargingStationCertificate": "InvalidChargePointCertificate",
}
_TO_201 = {v: k for k, v in _TO_16.items()}
# Spellings used elsewhere in the code base (the briefs say "FailedToAuthenticateAtCsms").
_ALIASES = {
    "FailedToAuthenticateAtCsms": "FailedToAuthenticationAtCsms",
    "FailedToAuthenticateAtCentralSystem": "FailedToAuthenticationAtCsms",
}

CRITICAL = frozenset(
    {
        # 2.0.1 part 2 appendix 1, "Critical: Yes"
        "FirmwareUpdated",
        "SettingSystemTime",
        "StartupOfTheDevice",
        "ResetOrReboot",
        "SecurityLogWasCleared",
        "MemoryExhaustion",
        "TamperDetectionActivated",
        "InvalidFirmwareSignature",
        "InvalidFirmwareSigningCertificate",
        "InvalidCsmsCertificate",
        "InvalidChargingStationCertificate",
        "InvalidTLSVersion",
        "InvalidTLSCipherSuite",
        "MaintenanceLoginAccepted",
        "MaintenanceLoginFailed",
    }
)
"""Critical events by their 2.0.1 names (the 2.0.1 list; 1.6 marks fewer, we report all)."""

RETRIED = frozenset(
    {
        "FailedToAuthenticationAtCsms",
        "InvalidCsmsCertificate",
        "InvalidTLSVersion",
        "InvalidTLSCipherSuite",
    }
)
"""Raised by every failed connection attempt: one report waits in the queue at a time
(its techInfo may differ per attempt, e.g. the station's clock in it)."""

State = Literal["pending", "sent", "logged", "unsupported"]


def canonical(kind: str) -> str:
    """The 2.0.1 name of a security event given by its 1.6 or 2.0.1 name."""
    kind = _ALIASES.get(kind, kind)
    return _TO_201.get(kind, kind)


def event_name(kind: str, ocpp_version: str) -> str:
    """The name of ``kind`` as the station's OCPP version spells it ("1.6" or "2.0.1")."""
    name = canonical(kind)
    return _TO_16.get(name, name) if ocpp_version == "1.6" else name


@dataclass(slots=True)
class SecurityLogEntry:
    """One security event: ``type`` as reported (the version's name), ``timestamp`` as the
    station's clock said, ``state``: pending (queued for the CSMS), sent, logged (a repeat
    of a queued one: not reported again), unsupported (the CSMS does not take it)."""

    seq: int
    type: str
    timestamp: str
    tech_info: str | None
    critical: bool
    state: State

    def payload(self) -> dict[str, Any]:
        """The SecurityEventNotification request."""
        payload: dict[str, Any] = {"type": self.type, "timestamp": self.timestamp}
        if self.tech_info:
            payload["techInfo"] = self.tech_info
        return payload


class SecurityLog:
    """The rolling security log and the durable report queue, in one JSON file.

    Each change rewrites the file (at most ``max_entries``, ~150 KB): security events are
    rare, and a file that is not held open costs a fleet of thousands no descriptors.

    ``sync``: fsync each write (a real station); without it a write still survives the
    process dying (a simulated fleet of thousands).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        sync: bool = True,
        ocpp_version: str = "2.0.1",
        max_entries: int = MAX_LOG,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.path = Path(path)
        self.sync = sync
        self.ocpp_version = ocpp_version
        self.max_entries = max_entries
        self.max_pending = max_pending
        self._entries: list[SecurityLogEntry] = []
        self._next_seq = 1
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return
        if not isinstance(data, dict):
            return
        for raw in data.get("entries", ()):
            try:
                self._entries.append(SecurityLogEntry(**raw))
            except TypeError:
                continue
        self._next_seq = max([int(data.get("next_seq", 1))] + [e.seq + 1 for e in self._entries])

    def _save(self) -> None:
        data = {"next_seq": self._next_seq, "entries": [asdict(e) for e in self._entries]}
        if self.sync:
            atomic_write_json(self.path, data)
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    # -- writing ------------------------------------------------------------------------

    def record(
        self, kind: str, timestamp: datetime | str, tech_info: str | None = None
    ) -> SecurityLogEntry:
        """Log one event and queue its report, durably, before returning it."""
        name = event_name(kind, self.ocpp_version)[:MAX_TYPE]
        stamp = timestamp if isinstance(timestamp, str) else format_time(timestamp)
        info = tech_info[:MAX_TECH_INFO] if tech_info else None
        critical = canonical(kind) in CRITICAL
        repeat = canonical(kind) in RETRIED and any(
            e.state == "pending" and e.type == name for e in self._entries
        )
        entry = SecurityLogEntry(
            self._next_seq, name, stamp, info, critical, "logged" if repeat else "pending"
        )
        self._next_seq += 1
        self._entries.append(entry)
        self._trim()
        self._save()
        return entry

    def _trim(self) -> None:
        pending = [e for e in self._entries if e.state == "pending"]
        excess = len(pending) - self.max_pending
        if excess > 0:  # the oldest non-critical reports first, then the oldest
            ordered = [e for e in pending if not e.critical] + [e for e in pending if e.critical]
            for entry in ordered[:excess]:
                entry.state = "logged"
        while len(self._entries) > self.max_entries:
            # roll over: drop the oldest entry that is not waiting to be reported
            for i, entry in enumerate(self._entries):
                if entry.state != "pending":
                    del self._entries[i]
                    break
            else:
                del self._entries[0]

    def _mark(self, seq: int, state: State) -> None:
        for entry in self._entries:
            if entry.seq == seq:
                entry.state = state
                self._save()
                return

    def delivered(self, seq: int) -> None:
        """The CSMS confirmed the report (A04.FR.03)."""
        self._mark(seq, "sent")

    def unsupported(self, *seqs: int) -> None:
        """The CSMS answered NotImplemented / NotSupported, or is known to (a CSMS without
        the 1.6 security extension): kept in the log, not sent. One write for all."""
        wanted = set(seqs)
        for entry in self._entries:
            if entry.seq in wanted:
                entry.state = "unsupported"
        self._save()

    # -- reading ------------------------------------------------------------------------

    def entries(self) -> list[SecurityLogEntry]:
        """The log, oldest first."""
        return list(self._entries)

    def pending(self) -> list[SecurityLogEntry]:
        """The reports still to be sent, oldest first."""
        return [e for e in self._entries if e.state == "pending"]

    def types(self) -> list[str]:
        """The event names in the log, oldest first (what a test or an installer reads)."""
        return [e.type for e in self._entries]
