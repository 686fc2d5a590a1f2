"""Logins on a hostile network: a throttle that refuses before any password hash is
computed, the bounded pool the hashes run on, and a cache of recent successful checks.

An argon2id check costs ~30 ms of CPU. Unthrottled, 200 parallel bad logins took most of
both cores and stalled the stations already connected, and the checks queued in the
default thread pool with the store's writer. So:

- :class:`LoginThrottle` (sans-I/O, a monotonic clock passed in) counts failures per
  station id and per source address. The first few are free; each one after that locks
  the key for a delay that doubles up to a ceiling. Attempts in flight count as
  failures-to-be, so a burst of parallel guesses cannot all slip past before the first
  fails. A locked key is refused at once (HTTP 429 with ``Retry-After``), before any
  hash work. A success clears the station's count (not the address's: an attacker
  behind the same NAT as a good station must not get a fresh budget from it).
- :class:`PasswordPool` runs the hashes on a small thread pool of its own with a
  bounded queue: beyond it a check is refused (busy) instead of queued without end.
- :class:`VerifiedCache` remembers (station id, password) pairs that verified, as an
  HMAC under a per-process random key (no password or hash is kept in memory in the
  clear), for a while and per password hash: a station whose password changes is
  forgotten. A reconnect storm then costs one hash per station, not one per connect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "LoginThrottle",
    "PasswordPool",
    "PoolBusy",
    "ThrottleLimits",
    "VerifiedCache",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """Failures allowed for free, then a lock of ``base_s`` doubling up to ``max_s``."""

    free: int
    base_s: float = 1.0
    max_s: float = 300.0
    forget_s: float = 900.0  # a key without a failure for this long starts afresh


@dataclass(slots=True)
class _Entry:
    failures: int = 0
    in_flight: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class _Counter:
    """Failures of one kind of key (station ids, or addresses)."""

    def __init__(self, limits: ThrottleLimits, max_keys: int) -> None:
        self.limits = limits
        self._max_keys = max_keys
        self._entries: dict[str, _Entry] = {}

    def wait(self, key: str, now: float) -> float:
        """Seconds the key is locked for (0: it may try)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        if now - entry.last > self.limits.forget_s and entry.in_flight == 0:
            del self._entries[key]
            return 0.0
        if entry.locked_until > now:
            return entry.locked_until - now
        if entry.failures + entry.in_flight >= self.limits.free and entry.in_flight > 0:
            # the budget is taken by attempts not decided yet: wait for them
            return self.limits.base_s
        return 0.0

    def begin(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self._max_keys:
                self._sweep(now)
            entry = self._entries[key] = _Entry()
        entry.in_flight += 1
        entry.last = now

    def end(self, key: str, now: float, failed: bool) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.in_flight = max(0, entry.in_flight - 1)
        entry.last = now
        if not failed:
            return
        entry.failures += 1
        over = entry.failures - self.limits.free
        if over >= 0:
            delay = min(self.limits.max_s, self.limits.base_s * (2.0 ** min(over, 30)))
            entry.locked_until = max(entry.locked_until, now + delay)

    def clear(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.in_flight == 0:
            del self._entries[key]
        elif entry is not None:
            entry.failures = 0
            entry.locked_until = 0.0

    def _sweep(self, now: float) -> None:
        """Drop keys not seen for ``forget_s``; if still full, the oldest half (bounded memory)."""
        forget = self.limits.forget_s
        self._entries = {
            k: e for k, e in self._entries.items() if e.in_flight or now - e.last <= forget
        }
        if len(self._entries) >= self._max_keys:
            keep = sorted(self._entries.items(), key=lambda kv: kv[1].last)
            self._entries = dict(keep[len(keep) // 2 :])

    def __len__(self) -> int:
        return len(self._entries)


class LoginThrottle:
    """Per station id and per source address: may this login try its password now?

    ``allow`` answers the seconds to wait (0: go ahead, and the attempt is counted in
    flight until ``done``). Sans-I/O: ``clock`` is a monotonic clock in seconds."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        per_station: ThrottleLimits,
        per_address: ThrottleLimits,
        max_keys: int = 100_000,
    ) -> None:
        self._clock = clock
        self._stations = _Counter(per_station, max_keys)
        self._addresses = _Counter(per_address, max_keys)

    def allow(self, station_id: str, address: str) -> float:
        """0.0 and the attempt is begun, or the seconds until this login may try again."""
        now = self._clock()
        wait = max(self._stations.wait(station_id, now), self._addresses.wait(address, now))
        if wait > 0:
            return wait
        self._stations.begin(station_id, now)
        self._addresses.begin(address, now)
        return 0.0

    def retry_after(self, station_id: str, address: str) -> float:
        """The seconds :meth:`allow` would answer now, without beginning an attempt."""
        now = self._clock()
        return max(self._stations.wait(station_id, now), self._addresses.wait(address, now))

    def done(self, station_id: str, address: str, *, ok: bool | None) -> None:
        """The attempt begun by :meth:`allow` ended: the password was right (``ok``), wrong,
        or (None) never checked (the server was busy): no failure, no success."""
        now = self._clock()
        self._stations.end(station_id, now, failed=ok is False)
        self._addresses.end(address, now, failed=ok is False)
        if ok:
            self._stations.clear(station_id)

    @property
    def keys(self) -> int:
        """Station ids and addresses remembered (for tests and diagnostics)."""
        return len(self._stations) + len(self._addresses)


class PoolBusy(Exception):
    """More password checks are waiting than the pool takes: try again later."""


class PasswordPool:
    """A small thread pool of its own for password hashing, with a bounded queue.

    Not the default executor: the store's writer runs there, and a flood of hashes
    queued in front of it would stall every station's writes."""

    def __init__(self, workers: int = 2, max_waiting: int = 64) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="plugstream-argon2")
        self._max = workers + max_waiting
        self._pending = 0
        self.runs = 0  # hashes computed or checked (for tests and diagnostics)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the pool; :class:`PoolBusy` when too many are in line."""
        if self._pending >= self._max:
            raise PoolBusy()
        self._pending += 1
        self.runs += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1

    @property
    def pending(self) -> int:
        return self._pending

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class VerifiedCache:
    """(station id, password) pairs that verified against a given stored hash, kept as
    HMACs under a per-process random key for ``ttl_s`` (monotonic ``clock``)."""

    def __init__(
        self, clock: Callable[[], float], *, ttl_s: float = 600.0, max_entries: int = 200_000
    ) -> None:
        self._clock = clock
        self._ttl = ttl_s
        self._max = max_entries
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        # station id -> (digest of id, password and stored hash, valid until)
        self._entries: dict[str, tuple[bytes, float]] = {}

    def _digest(self, station_id: str, password: str, stored_hash: str) -> bytes:
        message = b"\0".join(s.encode("utf-8", "surrogatepass") for s in (station_id, password))
        message += b"\0" + hashlib.sha256(stored_hash.encode()).digest()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def hit(self, station_id: str, password: str, stored_hash: str) -> bool:
        """Whether this password verified against this stored hash not long ago."""
        with self._lock:
            found = self._entries.get(station_id)
        if found is None or found[1] < self._clock():
            return False
        return hmac.compare_digest(found[0], self._digest(station_id, password, stored_hash))

    def add(self, station_id: str, password: str, stored_hash: str) -> None:
        digest = self._digest(station_id, password, stored_hash)
        now = self._clock()
        with self._lock:
            if len(self._entries) >= self._max and station_id not in self._entries:
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                if len(self._entries) >= self._max:
                    self._entries.clear()
            self._entries[station_id] = (digest, now + self._ttl)

    def forget(self, station_id: str) -> None:
        """The station's password changed (or is changing)."""
        with self._lock:
            self._entries.pop(station_id, None)

    def __len__(self) -> int:
        return len(self._entries)
