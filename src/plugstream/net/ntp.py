"""SNTP client (RFC 4330 / RFC 5905) and the station's corrected clock.

Why: "If the PlugStream's real-time clock is wrong, the charge point cannot
authenticate itself with PlugStream Cloud" (vendor article) — a wrong clock
fails the TLS server certificate's validity check (OCPP 2.0.1 part 2, "Security":
"When the Charging Station does not have the correct date and time set, it
cannot validate the server certificate. A solution for this might be to ...
use NTP"). The article fixes the server: :data:`NTP_HOST` on UDP
:data:`NTP_PORT`, "static ... cannot be changed by the user". The ``host`` /
``port`` parameters below exist only for tests and the lab network.

Layers, like :mod:`plugstream.ocpp`:

* sans-I/O packets: :func:`build_request` and :func:`parse_response` take and
  return bytes and Unix times (floats); they validate the reply and compute the
  clock offset and the round-trip delay;
* :class:`CorrectedClock`: the station's own clock, the system clock plus the
  offset of the last good :class:`Sample`; knows whether it is synchronized and
  says why not; reports steps (OCPP security event ``SettingSystemTime``);
* a thin asyncio shell: :func:`query` (one UDP exchange) and
  :func:`keep_synchronized` (polls for ever with bounded back-off).

The station's time is never the system clock being set: the system clock is
read, the offset is added. So tests need no privileges and run on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from plugstream.net.dns import udp_socket_on

from .timeouts import within

__all__ = [
    "NTP_EPOCH_OFFSET",
    "NTP_HOST",
    "NTP_PORT",
    "STEP_THRESHOLD",
    "ClockStep",
    "CorrectedClock",
    "KissOfDeath",
    "NTPError",
    "NTPTimeout",
    "OriginMismatch",
    "Sample",
    "build_request",
    "from_ntp_timestamp",
    "keep_synchronized",
    "parse_response",
    "query",
    "to_ntp_timestamp",
]

log = logging.getLogger("plugstream.net.ntp")

NTP_HOST: Final = "pool.ntp.org"
"""The article's NTP server; static in the product (only tests and the lab pass another)."""
NTP_PORT: Final = 123
"""The article's NTP port, UDP, outgoing (Table 2)."""

NTP_EPOCH_OFFSET: Final = 2_208_988_800
"""Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01)."""
_ERA: Final = 1 << 32
_PACKET: Final = struct.Struct("!BBbbII4sQQQQ")
_PACKET_SIZE: Final = 48
_MODE_CLIENT: Final = 3
_MODE_SERVER: Final = 4
_VERSION: Final = 4
_LEAP_UNSYNCHRONIZED: Final = 3

STEP_THRESHOLD: Final = 0.128
"""RFC 5905's STEPT: a correction larger than this is a step of the clock (``on_step``)."""
MIN_POLL: Final = 16.0
UNSYNCHRONIZED_MAX_WAIT: Final = 32.0
"""Longest wait between tries while the clock has never been set: a station without time
cannot authenticate, so a firewall opened after an hour is noticed within half a minute."""
"""RFC 4330 section 10: a client MUST NOT poll more often than every 15 s."""


class NTPError(Exception):
    """No usable time from the server; ``str()`` says why, for the station's log and UI."""


class NTPTimeout(NTPError):
    """The server did not answer within the timeout."""


class OriginMismatch(NTPError):
    """The reply does not echo our transmit timestamp: not an answer to our request
    (late, duplicated or spoofed); RFC 5905 calls this a bogus packet and drops it."""


class KissOfDeath(NTPError):
    """Stratum 0: the server tells us to go away (RFC 4330 section 8). ``code`` is the
    kiss code: RATE (poll less often), DENY / RSTR (stop using this server), ..."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"kiss-o'-death {code}")


@dataclass(frozen=True, slots=True)
class Sample:
    """One good answer. ``offset`` is what to add to our clock (server minus us),
    ``delay`` the round trip minus the server's processing, both in seconds."""

    offset: float
    delay: float
    stratum: int
    leap: int
    reference_id: str
    server_time: float
    """The server's transmit timestamp (Unix seconds)."""
    server: str = ""
    """``host:port`` asked, filled in by :func:`query`."""


@dataclass(frozen=True, slots=True)
class ClockStep:
    """The station's clock as read just before and just after a sample was applied."""

    old: datetime
    new: datetime

    @property
    def seconds(self) -> float:
        return (self.new - self.old).total_seconds()


# ---------------------------------------------------------------------------
# sans-I/O: timestamps and packets


def to_ntp_timestamp(unix: float) -> int:
    """Unix seconds -> the 64-bit NTP timestamp (32.32 fixed point, seconds since 1900,
    modulo the 2**32 s era: 2036-02-07 wraps to era 1, RFC 5905 section 6)."""
    whole = math.floor(unix)
    frac = round((unix - whole) * _ERA)
    if frac >= _ERA:  # rounding carried into the seconds
        whole, frac = whole + 1, frac - _ERA
    return (((whole + NTP_EPOCH_OFFSET) % _ERA) << 32) | frac


def from_ntp_timestamp(value: int) -> float:
    """The 64-bit NTP timestamp -> Unix seconds. The era is RFC 4330 section 3's rule: the
    seconds' top bit set means era 0 (1968-2036), clear means era 1 (2036-2104), so a
    station whose clock was reset to 1970 still reads the server right."""
    seconds, frac = value >> 32, value & 0xFFFFFFFF
    if not seconds & 0x80000000:
        seconds += _ERA
    return seconds - NTP_EPOCH_OFFSET + frac / _ERA


def build_request(transmit: float) -> bytes:
    """The 48-byte SNTP v4 client request (mode 3). ``transmit`` (our clock, Unix seconds)
    goes in the transmit timestamp; the server echoes it as the origin timestamp, which
    :func:`parse_response` checks. Every other field is zero (RFC 4330 section 5)."""
    first = (0 << 6) | (_VERSION << 3) | _MODE_CLIENT
    return _PACKET.pack(first, 0, 0, 0, 0, 0, b"\0\0\0\0", 0, 0, 0, to_ntp_timestamp(transmit))


def parse_response(data: bytes, *, origin: float, destination: float) -> Sample:
    """Validate a server reply and compute offset and delay (RFC 5905 section 8).

    ``origin`` is the ``transmit`` given to :func:`build_request` (t1), ``destination``
    the time the reply arrived by the same clock (t4). Raises :class:`OriginMismatch`
    for a reply to some other request, :class:`KissOfDeath` for stratum 0, and
    :class:`NTPError` for anything else unusable (short, not a server, unsupported
    version, unsynchronized server, no transmit time)."""
    if len(data) < _PACKET_SIZE:
        raise NTPError(f"reply too short ({len(data)} bytes, need {_PACKET_SIZE})")
    first, stratum, _poll, _precision, _root_delay, _root_disp, ref_id, _ref, org, rec, xmt = (
        _PACKET.unpack_from(data)
    )
    leap, version, mode = first >> 6, (first >> 3) & 0b111, first & 0b111
    if mode != _MODE_SERVER:
        raise NTPError(f"not a server reply (mode {mode})")
    if version not in (3, 4):
        raise NTPError(f"unsupported NTP version {version}")
    if org != to_ntp_timestamp(origin):
        raise OriginMismatch("origin timestamp does not echo our transmit timestamp")
    if stratum == 0:
        raise KissOfDeath(ref_id.rstrip(b"\0").decode("ascii", "replace") or "?")
    if stratum > 15:
        raise NTPError(f"server unsynchronized (stratum {stratum})")
    if leap == _LEAP_UNSYNCHRONIZED:
        raise NTPError("server clock not synchronized (leap indicator 3)")
    if xmt == 0:
        raise NTPError("server sent no transmit timestamp")
    t1, t2, t3, t4 = origin, from_ntp_timestamp(rec), from_ntp_timestamp(xmt), destination
    return Sample(
        offset=((t2 - t1) + (t3 - t4)) / 2,
        delay=(t4 - t1) - (t3 - t2),
        stratum=stratum,
        leap=leap,
        reference_id=_reference_id(stratum, ref_id),
        server_time=t3,
    )


def _reference_id(stratum: int, raw: bytes) -> str:
    """Stratum 1: a source name ("GPS", "PPS"); above: the upstream server's IPv4 address."""
    if stratum == 1:
        return raw.rstrip(b"\0").decode("ascii", "replace")
    return socket.inet_ntoa(raw)


# ---------------------------------------------------------------------------
# the station's clock


class CorrectedClock:
    """The station's clock: the system clock plus the offset of the last good sample.

    ``synchronized`` means a good sample within ``max_age`` (monotonic seconds, so a
    system clock being set does not fake freshness). The offset is always applied by
    :meth:`now`, so a synchronized clock is right however wrong the system clock is.
    The station refuses the authenticated OCPP connection while not synchronized and
    shows :meth:`why_not_synchronized`."""

    def __init__(
        self,
        system_now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        *,
        max_age: float = 24 * 3600.0,
        step_threshold: float = STEP_THRESHOLD,
        server: str = f"{NTP_HOST}:{NTP_PORT}",
    ) -> None:
        self._system_now = system_now
        self._monotonic = monotonic
        self.max_age = max_age
        self.step_threshold = step_threshold
        self.server = server
        self.offset = 0.0
        self.last_sample: Sample | None = None
        self._sampled_at: float | None = None
        self.attempts = 0
        """Failed attempts since the last good sample."""
        self.last_failure: str | None = None
        self._listeners: list[Callable[[datetime, datetime], None]] = []

    def system_time(self) -> float:
        """The uncorrected system clock in Unix seconds: what NTP samples are taken by."""
        return self._system_now().timestamp()

    def now(self) -> datetime:
        """The corrected time (aware, UTC)."""
        return self._system_now().astimezone(UTC) + timedelta(seconds=self.offset)

    def on_step(self, listener: Callable[[datetime, datetime], None]) -> None:
        """Call ``listener(old_now, new_now)`` when a sample moves the clock by more than
        ``step_threshold`` (e.g. the station's ``clock_changed``: SettingSystemTime)."""
        self._listeners.append(listener)

    def off_step(self, listener: Callable[[datetime, datetime], None]) -> None:
        """Stop calling ``listener`` (a station that stopped: the clock outlives it)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def apply(self, sample: Sample) -> ClockStep:
        """Take a good sample: the clock jumps to the server's time. Returns the step;
        listeners hear of it when it exceeds ``step_threshold`` — the first sample counts
        as a step from the bare system clock."""
        old_offset = self.offset
        old = self.now()
        self.offset = sample.offset
        self.last_sample = sample
        self._sampled_at = self._monotonic()
        self.attempts = 0
        self.last_failure = None
        if sample.server:
            self.server = sample.server
        # both ends at the same system instant, so the step is exactly the correction
        step = ClockStep(old, old + timedelta(seconds=sample.offset - old_offset))
        if abs(step.seconds) > self.step_threshold:
            log.info("clock stepped %+.3f s by %s", step.seconds, self.server)
            for listener in list(self._listeners):
                try:
                    listener(step.old, step.new)
                except Exception:  # one broken listener must not stop the clock or the others
                    log.exception("clock step listener %r failed", listener)
        return step

    def record_failure(self, reason: str, *, server: str | None = None) -> None:
        """A query failed (``reason`` as :class:`NTPError` words it)."""
        self.attempts += 1
        self.last_failure = reason
        if server:
            self.server = server

    @property
    def synchronized(self) -> bool:
        return self.why_not_synchronized() is None

    def why_not_synchronized(self) -> str | None:
        """``None`` when synchronized, else one line for the log and the operator."""
        tried = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        last = f", last: {self.last_failure}" if self.last_failure else ""
        if self._sampled_at is None:
            if not self.attempts:
                return f"no NTP query made yet to {self.server}"
            return f"no NTP answer yet from {self.server} ({tried}{last})"
        age = self._monotonic() - self._sampled_at
        if age > self.max_age:
            since = f"; since then {tried}{last}" if self.attempts else ""
            return (
                f"last NTP answer from {self.server} is {age / 3600:.1f} h old "
                f"(max {self.max_age / 3600:.1f} h){since}"
            )
        return None


# ---------------------------------------------------------------------------
# asyncio shell


class _Exchange(asyncio.DatagramProtocol):
    """Queues every datagram (with its monotonic arrival time) or socket error for :func:`query`."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, float] | Exception] = asyncio.Queue(maxsize=16)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a flood is dropped, not buffered
            self.inbox.put_nowait((data, time.monotonic()))

    def error_received(self, exc: Exception) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait(exc)


async def query(
    host: str,
    port: int,
    *,
    timeout: float = 2.0,
    now: Callable[[], float] = time.time,
    resolve: Callable[[str], Awaitable[str]] | None = None,
    device: str | None = None,
) -> Sample:
    """One SNTP exchange with ``host:port`` (the product passes :data:`NTP_HOST`,
    :data:`NTP_PORT`; tests a loopback server). ``now`` is the clock to correct (Unix
    seconds); t4 is t1 plus the monotonic round trip, so a clock set during the exchange
    does not corrupt the delay. Replies that are not ours (origin mismatch) are dropped
    and we keep listening until ``timeout``. Raises :class:`NTPError`.

    ``resolve``: how to look ``host`` up (the station's DNS priority list; default the
    system's resolver); ``device``: the interface to send over (the active link)."""
    loop = asyncio.get_running_loop()
    server = f"{host}:{port}"
    deadline = loop.time() + timeout
    try:
        if resolve is not None:  # bounded per DNS server already: a silent primary
            address = await resolve(host)  # must leave time for the secondary
        else:
            infos = await within(
                loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP),
                timeout,
            )
            address = str(infos[0][4][0])
    except TimeoutError:
        raise NTPTimeout(f"name lookup of {host} timed out after {timeout:.1f} s") from None
    except Exception as exc:  # the resolver's own error says which servers failed
        raise NTPError(f"cannot resolve {host}: {exc}") from None
    deadline = loop.time() + timeout  # the exchange's own time, after the lookup
    origin, started = now(), time.monotonic()
    try:
        if device is None:
            transport, protocol = await loop.create_datagram_endpoint(
                _Exchange, remote_addr=(address, port)
            )
        else:
            sock = udp_socket_on(device, (address, port))
            transport, protocol = await loop.create_datagram_endpoint(_Exchange, sock=sock)
    except OSError as exc:
        raise NTPError(f"cannot reach {server}: {exc}") from None
    ignored: list[str] = []
    try:
        transport.sendto(build_request(origin))
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                item = await within(protocol.inbox.get(), remaining)
            except TimeoutError:
                why = f" (ignored {len(ignored)} reply: {ignored[-1]})" if ignored else ""
                raise NTPTimeout(f"timeout after {timeout:.1f} s{why}") from None
            if isinstance(item, Exception):
                raise NTPError(f"{type(item).__name__}: {item}")  # e.g. ICMP port unreachable
            data, arrived = item
            destination = origin + (arrived - started)
            try:
                sample = parse_response(data, origin=origin, destination=destination)
            except OriginMismatch as exc:
                ignored.append(str(exc))
                continue
            return dataclasses.replace(sample, server=server)
    finally:
        transport.close()


async def keep_synchronized(
    clock: CorrectedClock,
    host: str = NTP_HOST,
    port: int = NTP_PORT,
    *,
    poll: float = 1024.0,
    timeout: float = 2.0,
    min_retry: float = MIN_POLL,
    max_backoff: float = 8 * 1024.0,
    rounds: int | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    resolve: Callable[[str], Awaitable[str]] | None = None,
    device: Callable[[], str | None] | None = None,
) -> None:
    """Poll ``host:port`` and apply every good sample to ``clock``; runs for ever (the
    station cancels it) or ``rounds`` queries. ``host``/``port`` are the article's; only
    tests and the lab pass others.

    Every ``poll`` s when all is well. On failure the retry waits ``min_retry`` s (not
    under RFC 4330's 15 s), doubling per consecutive failure up to ``poll``. A
    kiss-o'-death is obeyed: RATE doubles the interval (at least twice ``poll``), DENY/RSTR
    wait ``max_backoff``; every wait is at most ``max_backoff``. ``resolve`` and ``device``
    (asked before each query: the active link may change) are passed to :func:`query`."""
    server = f"{host}:{port}"
    retry = max(min_retry, 0.0)
    done = 0
    while rounds is None or done < rounds:
        done += 1
        try:
            sample = await query(
                host,
                port,
                timeout=timeout,
                now=clock.system_time,
                resolve=resolve,
                device=None if device is None else device(),
            )
        except KissOfDeath as exc:
            clock.record_failure(str(exc), server=server)
            wait = max_backoff if exc.code in ("DENY", "RSTR") else 2 * max(retry, poll)
            wait = retry = min(wait, max_backoff)
            log.warning("NTP %s: %s; next try in %.0f s", server, exc, wait)
        except NTPError as exc:
            clock.record_failure(str(exc), server=server)
            wait = min(retry, poll, max_backoff)
            retry = min(2 * retry, poll)
            if not clock.synchronized:  # no time, no authentication: keep trying often
                wait = min(wait, max(min_retry, UNSYNCHRONIZED_MAX_WAIT))
            log.warning("NTP %s: %s; next try in %.0f s", server, exc, wait)
        else:
            clock.apply(sample)
            retry = max(min_retry, 0.0)
            wait = min(poll, max_backoff)
        if rounds is not None and done >= rounds:
            return
        await sleep(wait)
