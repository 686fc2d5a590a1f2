"""Logins on a hostile network: a throttle that refuses before any password hash is
computed, the bounded pool the hashes run on, and a cache of recent successful checks.

An argon2id check costs ~30 ms of CPU. Unthrottled, 200 parallel bad logins took most of
both cores and stalled the stations already connected, and the checks queued in the
default thread pool with the store's writer. So:

- :class:`LoginThrottle` (sans-I/O, a monotonic clock passed in) counts failures per
  station id and per source address. The first few are free; each one after that locks
  the key for a delay that doubles up to a ceiling. Attempts in flight count as
  failures-to-be, so a burst of parallel guesses cannot all slip past before the first
  fails. A locked key is refused (HTTP 429 with ``Retry-After``) before any store read
  or hash work, and the refusal is held back for a few seconds (the gateway's tarpit),
  so that a client's next guess waits too. A success clears the station's count (not
  the address's: an attacker behind the same NAT as a good station must not get a fresh
  budget from it), and makes that address the station's trusted one (see the class).
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
    "LoginAttempt",
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


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One login's place in the throttle: ``wait`` > 0 means refused for that many seconds;
    otherwise the attempt is begun and must be ended with :meth:`LoginThrottle.done`."""

    station_id: str
    address: str
    station_key: str
    trusted: bool
    wait: float


class LoginThrottle:
    """Per station id and per source address: may this login try its password now?

    A station id's failures are counted apart for the address it last logged in from
    (its *trusted* address) and for everywhere else, so a stranger's guesses lock the
    id against strangers only: the real station, from where it was last admitted, is not
    locked out by them. A trusted (id, address) pair is not held by the address's own
    lock either (a neighbour behind the same NAT guessing other ids does not shut the
    site's good stations out); its own id's failures still count, so guessing a trusted
    id from its address is throttled as before. Unknown station ids count as failures of
    their address (:meth:`unknown`), so a scan of ids is throttled like one of passwords.

    Sans-I/O: ``clock`` is a monotonic clock in seconds."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        per_station: ThrottleLimits,
        per_address: ThrottleLimits,
        max_keys: int = 100_000,
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._stations = _Counter(per_station, max_keys)
        self._addresses = _Counter(per_address, max_keys)
        self._trusted: dict[str, str] = {}  # station id -> address of its last admission

    def _key(self, station_id: str, address: str) -> tuple[str, bool]:
        trusted = self._trusted.get(station_id) == address
        return (station_id if trusted else f"{station_id}\0elsewhere"), trusted

    def _wait(self, key: str, trusted: bool, address: str, now: float) -> float:
        wait = self._stations.wait(key, now)
        if not trusted:
            wait = max(wait, self._addresses.wait(address, now))
        return wait

    def allow(self, station_id: str, address: str) -> LoginAttempt:
        """The attempt, begun (``wait`` 0), or refused for ``wait`` seconds."""
        now = self._clock()
        key, trusted = self._key(station_id, address)
        wait = self._wait(key, trusted, address, now)
        if wait <= 0:
            self._stations.begin(key, now)
            self._addresses.begin(address, now)
        return LoginAttempt(station_id, address, key, trusted, max(wait, 0.0))

    def retry_after(self, station_id: str, address: str) -> float:
        """The seconds :meth:`allow` would answer now, without beginning an attempt."""
        key, trusted = self._key(station_id, address)
        return self._wait(key, trusted, address, self._clock())

    def done(self, attempt: LoginAttempt, *, ok: bool | None) -> None:
        """The begun attempt ended: the password was right (``ok``), wrong, or (None) never
        checked (the server was busy): no failure, no success."""
        if attempt.wait > 0:
            return
        now = self._clock()
        self._stations.end(attempt.station_key, now, failed=ok is False)
        self._addresses.end(attempt.address, now, failed=ok is False)
        if ok:
            self._stations.clear(attempt.station_key)
            self.admitted(attempt.station_id, attempt.address)

    def admitted(self, station_id: str, address: str) -> None:
        """The station got in from ``address`` (by password, certificate or profile 0):
        from now on that is its trusted address."""
        trusted = self._trusted
        trusted.pop(station_id, None)
        if len(trusted) >= self._max_keys:
            for old in list(trusted)[: len(trusted) // 2]:  # the least recently admitted
                del trusted[old]
        trusted[station_id] = address

    def unknown(self, address: str) -> None:
        """A login named a station id that is not registered: a failure of the address."""
        now = self._clock()
        self._addresses.begin(address, now)
        self._addresses.end(address, now, failed=True)

    @property
    def keys(self) -> int:
        """Station ids and addresses remembered (for tests and diagnostics)."""
        return len(self._stations) + len(self._addresses) + len(self._trusted)


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
