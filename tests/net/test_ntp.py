"""SNTP client and the station's corrected clock (issue 6; the article's "NTP" section).

Packets are checked with fixed timestamps; the exchanges run against our own SNTP
server on 127.0.0.1 (random port) — never pool.ntp.org. Why the clock matters: OCPP
2.0.1 part 2, Security: "When the Charging Station does not have the correct date and
time set, it cannot validate the server certificate ... use NTP"; a step of the clock
is the security event SettingSystemTime (1.6 security whitepaper; 2.0.1 appendix,
ClockCtrlr.TimeAdjustmentReportingThreshold).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import pytest

from plugstream.net.ntp import (
    NTP_EPOCH_OFFSET,
    NTP_HOST,
    NTP_PORT,
    CorrectedClock,
    KissOfDeath,
    NTPError,
    NTPTimeout,
    OriginMismatch,
    Sample,
    build_request,
    from_ntp_timestamp,
    keep_synchronized,
    parse_response,
    query,
    to_ntp_timestamp,
)
from tests.support import WAIT

LOOPBACK = "127.0.0.1"


def ntp(unix: float) -> int:
    """An independent encoder (not the module's), so a shared bug cannot cancel out."""
    seconds = int(unix // 1) + 2_208_988_800
    frac = int((unix - unix // 1) * 2**32)
    return ((seconds % 2**32) << 32) | frac


def reply(
    *,
    origin: int,
    receive: float,
    transmit: float,
    leap: int = 0,
    version: int = 4,
    mode: int = 4,
    stratum: int = 2,
    ref_id: bytes = bytes([192, 0, 2, 1]),
    transmit_raw: int | None = None,
) -> bytes:
    first = (leap << 6) | (version << 3) | mode
    return struct.pack(
        "!BBbbII4sQQQQ",
        first,
        stratum,
        6,
        -20,
        0,
        0,
        ref_id,
        ntp(receive - 10),
        origin,
        ntp(receive),
        ntp(transmit) if transmit_raw is None else transmit_raw,
    )


# --- packets -----------------------------------------------------------------------------


@pytest.mark.unit
def test_request_is_a_48_byte_sntp_v4_client_packet_carrying_our_transmit_time() -> None:
    t1 = 1_764_097_200.25  # 2025-11-25T19:00:00.25Z
    packet = build_request(t1)
    assert len(packet) == 48
    assert packet[0] == 0b00_100_011  # LI 0, version 4, mode 3 (client)
    assert packet[1:40] == bytes(39)  # everything else zero (RFC 4330 section 5)
    seconds, frac = struct.unpack("!II", packet[40:48])
    assert seconds == 1_764_097_200 + 2_208_988_800  # seconds since 1900
    assert frac == 0x4000_0000  # .25 in 32.32 fixed point


@pytest.mark.unit
def test_ntp_timestamps_count_from_1900_and_wrap_into_era_1_in_2036() -> None:
    assert NTP_EPOCH_OFFSET == 2_208_988_800
    assert to_ntp_timestamp(0.0) == 2_208_988_800 << 32  # 1970 in NTP seconds
    assert from_ntp_timestamp(2_208_988_800 << 32) == 0.0
    # 2036-02-07T06:28:16Z: the 32-bit seconds wrap to 0 (era 1); decoded as 2036, not 1900.
    wrap = 2_085_978_496
    assert to_ntp_timestamp(wrap) == 0
    assert from_ntp_timestamp(0) == wrap
    assert datetime.fromtimestamp(from_ntp_timestamp(to_ntp_timestamp(wrap + 86400.5)), UTC) == (
        datetime(2036, 2, 8, 6, 28, 16, 500000, tzinfo=UTC)
    )
    # fractions survive the round trip to within a 2**-32 s step (plus float resolution)
    for t in (1_764_097_200.123456, 1_764_097_200.999_999_9, 2_100_000_000.5):
        assert from_ntp_timestamp(to_ntp_timestamp(t)) == pytest.approx(t, abs=1e-6)
    # a fraction that rounds up carries into the seconds
    assert to_ntp_timestamp(10.999_999_999_99) == (10 + 1 + 2_208_988_800) << 32


@pytest.mark.unit
def test_offset_and_delay_from_fixed_timestamps() -> None:
    """RFC 5905 section 8: offset = ((t2-t1)+(t3-t4))/2, delay = (t4-t1)-(t3-t2)."""
    t1 = 1_764_097_200.0  # our transmit
    t2 = t1 + 3600.510  # server receive: server is ~1 h ahead, 10 ms one way
    t3 = t2 + 0.002  # server transmit, 2 ms later
    t4 = t1 + 0.030  # we receive 30 ms after sending
    sample = parse_response(
        reply(origin=ntp(t1), receive=t2, transmit=t3), origin=t1, destination=t4
    )
    assert sample.offset == pytest.approx(3600.496, abs=1e-6)
    assert sample.delay == pytest.approx(0.028, abs=1e-6)
    assert sample.stratum == 2
    assert sample.reference_id == "192.0.2.1"
    assert sample.server_time == pytest.approx(t3, abs=1e-6)
    # stratum 1 names its source
    s1 = parse_response(
        reply(origin=ntp(t1), receive=t1, transmit=t1, stratum=1, ref_id=b"GPS\0"),
        origin=t1,
        destination=t1,
    )
    assert s1.reference_id == "GPS"
    assert s1.offset == pytest.approx(0.0, abs=1e-6)


@pytest.mark.unit
def test_version_3_servers_are_understood() -> None:
    t1 = 1_764_097_200.0
    sample = parse_response(
        reply(origin=ntp(t1), receive=t1 + 5, transmit=t1 + 5, version=3),
        origin=t1,
        destination=t1,
    )
    assert sample.offset == pytest.approx(5.0, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"mode": 3}, NTPError, "not a server reply (mode 3)"),
        ({"mode": 5}, NTPError, "not a server reply (mode 5)"),
        ({"version": 2}, NTPError, "unsupported NTP version 2"),
        ({"origin": 12345}, OriginMismatch, "origin timestamp does not echo"),
        ({"stratum": 0, "leap": 3, "ref_id": b"RATE"}, KissOfDeath, "kiss-o'-death RATE"),
        ({"stratum": 0, "leap": 3, "ref_id": b"DENY"}, KissOfDeath, "kiss-o'-death DENY"),
        ({"stratum": 16}, NTPError, "server unsynchronized (stratum 16)"),
        ({"leap": 3}, NTPError, "server clock not synchronized (leap indicator 3)"),
        ({"transmit_raw": 0}, NTPError, "server sent no transmit timestamp"),
    ],
)
@pytest.mark.unit
def test_unusable_replies_are_rejected_with_their_reason(
    kwargs: dict[str, object], error: type[NTPError], words: str
) -> None:
    t1 = 1_764_097_200.0
    fields: dict[str, object] = {"origin": ntp(t1), "receive": t1 + 1, "transmit": t1 + 1}
    fields.update(kwargs)
    data = reply(**fields)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        parse_response(data, origin=t1, destination=t1 + 0.01)
    assert words in str(caught.value)


@pytest.mark.unit
def test_kiss_of_death_carries_its_code() -> None:
    t1 = 1_764_097_200.0
    data = reply(origin=ntp(t1), receive=t1, transmit=t1, stratum=0, leap=3, ref_id=b"RSTR")
    with pytest.raises(KissOfDeath) as caught:
        parse_response(data, origin=t1, destination=t1)
    assert caught.value.code == "RSTR"


@pytest.mark.unit
def test_short_reply_is_rejected() -> None:
    with pytest.raises(NTPError, match=r"reply too short \(47 bytes, need 48\)"):
        parse_response(bytes(47), origin=0.0, destination=0.0)


# --- the corrected clock (fixed clocks, no network) -----------------------------------------


class FakeTime:
    """A system clock and a monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.system = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.system

    def monotonic(self) -> float:
        return self.mono


def sample(offset: float) -> Sample:
    return Sample(offset, 0.02, 2, 0, "192.0.2.1", 0.0, server="lab:123")


@pytest.mark.unit
def test_clock_is_corrected_by_the_sample_and_steps_are_reported() -> None:
    t = FakeTime()
    clock = CorrectedClock(t.now, t.monotonic)
    steps: list[tuple[datetime, datetime]] = []
    clock.on_step(lambda old, new: steps.append((old, new)))
    assert not clock.synchronized
    assert clock.why_not_synchronized() == "no NTP query made yet to pool.ntp.org:123"

    step = clock.apply(sample(-42.5))
    assert clock.synchronized and clock.why_not_synchronized() is None
    assert clock.now() == datetime(2026, 11, 25, 18, 59, 17, 500000, tzinfo=UTC)
    assert step.seconds == -42.5
    assert steps == [(t.system, datetime(2026, 11, 25, 18, 59, 17, 500000, tzinfo=UTC))]

    # a correction within RFC 5905's 128 ms is not a step: no SettingSystemTime noise
    step = clock.apply(sample(-42.45))
    assert step.seconds == pytest.approx(0.05)
    assert len(steps) == 1


@pytest.mark.unit
def test_a_failing_step_listener_does_not_stop_the_clock_or_the_others() -> None:
    t = FakeTime()
    clock = CorrectedClock(t.now, t.monotonic)
    heard: list[float] = []

    def broken(old: datetime, new: datetime) -> None:
        raise RuntimeError("boom")

    clock.on_step(broken)
    clock.on_step(lambda old, new: heard.append((new - old).total_seconds()))
    clock.apply(sample(5.0))
    assert heard == [5.0]
    assert clock.synchronized and clock.offset == 5.0


@pytest.mark.unit
def test_a_stopped_stations_listener_hears_no_more_steps() -> None:
    """A clock outlives a station (setup re-pointed it to another CSMS): the old station
    must not log SettingSystemTime for the new one."""
    t = FakeTime()
    clock = CorrectedClock(t.now, t.monotonic)
    old: list[float] = []
    new: list[float] = []

    def old_station(a: datetime, b: datetime) -> None:
        old.append((b - a).total_seconds())

    clock.on_step(old_station)
    clock.apply(sample(5.0))
    clock.off_step(old_station)
    clock.off_step(old_station)  # twice is harmless
    clock.on_step(lambda a, b: new.append((b - a).total_seconds()))
    clock.apply(sample(10.0))
    assert old == [5.0] and new == [5.0]


@pytest.mark.unit
def test_clock_is_unsynchronized_when_its_last_sample_is_older_than_max_age() -> None:
    t = FakeTime()
    clock = CorrectedClock(t.now, t.monotonic)
    clock.apply(sample(1.0))
    t.mono += 23 * 3600
    assert clock.synchronized
    t.mono += 2 * 3600  # 25 h: the RTC may have drifted too far
    clock.record_failure("timeout after 2.0 s", server="lab:123")
    assert not clock.synchronized
    assert clock.why_not_synchronized() == (
        "last NTP answer from lab:123 is 25.0 h old (max 24.0 h); "
        "since then 1 attempt, last: timeout after 2.0 s"
    )
    # the offset is still the best estimate meanwhile
    assert clock.now() == datetime(2026, 11, 25, 19, 0, 1, tzinfo=UTC)


# --- over loopback: our own SNTP server -------------------------------------------------------


@dataclass
class LabServer:
    """SNTP server on 127.0.0.1 with a chosen behaviour."""

    behaviour: str = (
        "correct"  # correct | shifted | silent | kod-rate | bad-origin | leap3 | spoof-then-correct
    )
    shift: float = 0.0
    port: int = 0
    requests: int = 0

    def answer(self, data: bytes) -> list[bytes]:
        self.requests += 1
        if len(data) < 48 or self.behaviour == "silent":
            return []
        origin = struct.unpack("!Q", data[40:48])[0]
        now = time.time() + (3600.0 if self.behaviour == "shifted" else self.shift)
        if self.behaviour == "kod-rate":
            return [
                reply(origin=origin, receive=now, transmit=now, stratum=0, leap=3, ref_id=b"RATE")
            ]
        if self.behaviour == "bad-origin":
            return [reply(origin=origin ^ 1, receive=now, transmit=now)]
        if self.behaviour == "leap3":
            return [reply(origin=origin, receive=now, transmit=now, leap=3)]
        good = reply(origin=origin, receive=now, transmit=now)
        if self.behaviour == "spoof-then-correct":
            spoof = reply(origin=origin ^ 1, receive=now + 999, transmit=now + 999)
            return [spoof, good]
        return [good]


class _LabProtocol(asyncio.DatagramProtocol):
    def __init__(self, lab: LabServer) -> None:
        self.lab = lab
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.transport is not None
        for packet in self.lab.answer(data):
            self.transport.sendto(packet, addr)


@contextlib.asynccontextmanager
async def sntp_server() -> AsyncIterator[LabServer]:
    """Our SNTP responder on 127.0.0.1, a random port, for as long as the block runs."""
    server = LabServer()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _LabProtocol(server), local_addr=(LOOPBACK, 0)
    )
    server.port = transport.get_extra_info("sockname")[1]
    try:
        yield server
    finally:
        transport.close()


@pytest.fixture
async def lab() -> AsyncIterator[LabServer]:
    async with sntp_server() as server:
        yield server


class Sleeps:
    """Records keep_synchronized's waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.socket
async def test_correct_server_synchronizes_the_clock(lab: LabServer) -> None:
    got = await query(LOOPBACK, lab.port, timeout=2.0)
    assert got.offset == pytest.approx(0.0, abs=0.05)
    assert 0.0 <= got.delay < 0.5
    assert got.server == f"{LOOPBACK}:{lab.port}"
    clock = CorrectedClock()
    steps: list[tuple[datetime, datetime]] = []
    clock.on_step(lambda old, new: steps.append((old, new)))
    await keep_synchronized(clock, LOOPBACK, lab.port, rounds=1, sleep=Sleeps())
    assert clock.synchronized and clock.why_not_synchronized() is None
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 0.1
    assert steps == []  # the system clock was right: nothing to report


@pytest.mark.socket
async def test_server_an_hour_ahead_steps_the_clock_by_an_hour(lab: LabServer) -> None:
    """The station's clock follows the server, and the step reaches the on_step listeners
    (the station raises SettingSystemTime from it)."""
    lab.behaviour = "shifted"
    clock = CorrectedClock()
    steps: list[tuple[datetime, datetime]] = []
    clock.on_step(lambda old, new: steps.append((old, new)))
    sleeps = Sleeps()
    await keep_synchronized(clock, LOOPBACK, lab.port, rounds=2, poll=1024.0, sleep=sleeps)
    assert clock.synchronized
    assert (clock.now() - datetime.now(UTC)).total_seconds() == pytest.approx(3600, abs=0.1)
    assert len(steps) == 1  # the second poll agreed: no second step
    old, new = steps[0]
    assert (new - old).total_seconds() == pytest.approx(3600, abs=0.1)
    assert abs((old - datetime.now(UTC)).total_seconds()) < 1.0
    assert sleeps.waits == [1024.0]
    assert lab.requests == 2


@pytest.mark.socket
async def test_silent_server_leaves_the_clock_unsynchronized_and_says_why(lab: LabServer) -> None:
    lab.behaviour = "silent"
    with pytest.raises(NTPTimeout, match=r"^timeout after 0\.2 s$"):
        await query(LOOPBACK, lab.port, timeout=0.2)
    clock = CorrectedClock()
    sleeps = Sleeps()
    await keep_synchronized(
        clock, LOOPBACK, lab.port, rounds=3, timeout=0.2, poll=64.0, sleep=sleeps
    )
    assert not clock.synchronized
    assert clock.why_not_synchronized() == (
        f"no NTP answer yet from {LOOPBACK}:{lab.port} (3 attempts, last: timeout after 0.2 s)"
    )
    assert sleeps.waits == [16.0, 32.0]  # back-off from RFC 4330's 15 s floor
    # the back-off is bounded by the poll interval
    more = Sleeps()
    await keep_synchronized(
        clock, LOOPBACK, lab.port, rounds=5, timeout=0.05, poll=64.0, sleep=more
    )
    # never synchronized: a station without time cannot authenticate, so it keeps asking
    # at least every 32 s (a firewall opened later is noticed soon)
    assert more.waits == [16.0, 32.0, 32.0, 32.0]
    assert clock.attempts == 8
    # once synchronized, a silent server is backed off from up to the poll interval
    lab.behaviour = "correct"
    await keep_synchronized(clock, LOOPBACK, lab.port, rounds=1, timeout=0.5, poll=64.0)
    assert clock.synchronized
    lab.behaviour = "silent"
    later = Sleeps()
    await keep_synchronized(
        clock, LOOPBACK, lab.port, rounds=4, timeout=0.05, poll=64.0, sleep=later
    )
    assert later.waits == [16.0, 32.0, 64.0]


@pytest.mark.socket
async def test_kiss_of_death_rate_is_reported_and_backs_off(lab: LabServer) -> None:
    lab.behaviour = "kod-rate"
    with pytest.raises(KissOfDeath) as caught:
        await query(LOOPBACK, lab.port, timeout=2.0)
    assert caught.value.code == "RATE"
    clock = CorrectedClock()
    sleeps = Sleeps()
    await keep_synchronized(
        clock, LOOPBACK, lab.port, rounds=4, poll=1024.0, max_backoff=5000.0, sleep=sleeps
    )
    assert sleeps.waits == [2048.0, 4096.0, 5000.0]  # doubling, bounded
    assert not clock.synchronized
    assert clock.why_not_synchronized() == (
        f"no NTP answer yet from {LOOPBACK}:{lab.port} (4 attempts, last: kiss-o'-death RATE)"
    )


@pytest.mark.socket
async def test_reply_with_wrong_origin_is_dropped(lab: LabServer) -> None:
    """Anti-spoofing: a reply that does not echo our transmit timestamp is not ours."""
    lab.behaviour = "bad-origin"
    clock = CorrectedClock()
    await keep_synchronized(clock, LOOPBACK, lab.port, rounds=1, timeout=0.3, sleep=Sleeps())
    assert not clock.synchronized
    assert clock.offset == 0.0
    assert clock.why_not_synchronized() == (
        f"no NTP answer yet from {LOOPBACK}:{lab.port} (1 attempt, last: timeout after 0.3 s "
        "(ignored 1 reply: origin timestamp does not echo our transmit timestamp))"
    )


@pytest.mark.socket
async def test_spoofed_reply_does_not_hide_the_real_one(lab: LabServer) -> None:
    lab.behaviour = "spoof-then-correct"
    got = await query(LOOPBACK, lab.port, timeout=2.0)
    assert got.offset == pytest.approx(0.0, abs=0.05)  # not the spoof's +999 s


@pytest.mark.socket
async def test_unsynchronized_server_is_rejected(lab: LabServer) -> None:
    lab.behaviour = "leap3"
    clock = CorrectedClock()
    await keep_synchronized(clock, LOOPBACK, lab.port, rounds=1, sleep=Sleeps())
    assert not clock.synchronized
    assert clock.why_not_synchronized() == (
        f"no NTP answer yet from {LOOPBACK}:{lab.port} "
        "(1 attempt, last: server clock not synchronized (leap indicator 3))"
    )


@pytest.mark.socket
async def test_no_server_on_the_port_fails_fast() -> None:
    """Loopback answers a closed UDP port with ICMP port unreachable: reported, no timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(NTPError, match="ConnectionRefusedError"):
        await query(LOOPBACK, port, timeout=WAIT)
    assert time.monotonic() - started < WAIT / 3  # the ICMP error, not the timeout


@pytest.mark.unit
def test_ntp_server_is_the_articles_and_the_default_everywhere() -> None:
    """Article, NTP: "The NTP server used by PlugStream is pool.ntp.org", UDP port 123,
    static. Only asserted: the tests never send there."""
    assert (NTP_HOST, NTP_PORT) == ("pool.ntp.org", 123)
    params = inspect.signature(keep_synchronized).parameters
    assert params["host"].default == NTP_HOST
    assert params["port"].default == NTP_PORT
    assert CorrectedClock().server == "pool.ntp.org:123"
