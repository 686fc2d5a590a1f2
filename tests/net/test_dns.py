"""The article's DNS priority resolver: DHCP primary, DHCP secondary, 1.1.1.1, 1.0.0.1.

Loopback only: every server here is our own dnspython UDP server on 127.0.0.1 and a
random port; the article's defaults are asserted as constants, never sent to.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, cast

import dns.message
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugstream.net.dns import (
    ARTICLE_FALLBACKS,
    DEFAULT_STALE_FOR,
    DEFAULT_TIMEOUT,
    DNS_PORT,
    DnsError,
    DnsFailure,
    DnsResolver,
    DnsServer,
    Query,
    Resolved,
    resolve,
    resolver_order,
)
from tests.support import WAIT

NAME = "ocpp.ampnexus.net"
#: the timeout of each silent server in the article-order test (wall time)
SILENT_S = 2.0
SOA = "ampnexus.net. 300 IN SOA ns.ampnexus.net. hostmaster.ampnexus.net. 1 7200 900 1209600 60"

Behaviour = Literal[
    "answer", "servfail", "refused", "nxdomain", "nodata", "silent", "garbage", "wrong-id"
]


@dataclass
class FakeDns(asyncio.DatagramProtocol):
    """A tiny UDP DNS server on loopback that counts the queries it gets."""

    behaviour: Behaviour = "answer"
    addresses: tuple[str, ...] = ("192.0.2.10",)
    ttl: int = 300
    queries: list[str] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    port: int = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        query = dns.message.from_wire(data)
        self.queries.append(query.question[0].name.to_text())
        if self.behaviour == "silent":
            return
        if self.behaviour == "garbage":
            self.transport.sendto(data[:2] + b"\xff\x00\x01garbage", addr)  # our id, then junk
            return
        response = dns.message.make_response(query)
        if self.behaviour == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif self.behaviour == "refused":
            response.set_rcode(dns.rcode.REFUSED)
        elif self.behaviour in ("nxdomain", "nodata"):
            if self.behaviour == "nxdomain":
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(
                dns.rrset.from_text("ampnexus.net.", 300, "IN", "SOA", SOA.split(" IN SOA ")[1])
            )
        else:
            qname = query.question[0].name
            if self.behaviour == "wrong-id":
                # A spoofer racing the real answer: a different id and a different address.
                spoof = dns.message.make_response(query)
                spoof.id = (query.id + 1) % 65536
                spoof.answer.append(dns.rrset.from_text(qname, self.ttl, "IN", "A", "203.0.113.66"))
                self.transport.sendto(spoof.to_wire(), addr)
            response.answer.append(dns.rrset.from_text(qname, self.ttl, "IN", "A", *self.addresses))
        self.transport.sendto(response.to_wire(), addr)

    def server(self, source: str = "fallback") -> DnsServer:
        return DnsServer("127.0.0.1", self.port, source=source)


StartDns = Callable[..., Awaitable[FakeDns]]


@pytest.fixture
async def fake_dns() -> AsyncIterator[StartDns]:
    loop = asyncio.get_running_loop()
    started: list[FakeDns] = []

    async def start(behaviour: Behaviour = "answer", **kwargs: object) -> FakeDns:
        _, proto = await loop.create_datagram_endpoint(
            lambda: FakeDns(behaviour, **kwargs),  # type: ignore[arg-type]
            local_addr=("127.0.0.1", 0),
        )
        started.append(proto)
        return proto

    yield start
    for proto in started:
        assert proto.transport is not None
        proto.transport.close()


class Clock:
    """The monotonic clock plus a skew the test winds forward (TTLs pass, waits stay real)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.t


# --- the article's defaults and order -------------------------------------------------


@pytest.mark.unit
def test_the_article_defaults_are_cloudflare_on_port_53_with_a_prompt_timeout() -> None:
    assert ARTICLE_FALLBACKS == ("1.1.1.1", "1.0.0.1")
    assert DNS_PORT == 53
    assert DEFAULT_TIMEOUT == 2.0
    assert DEFAULT_STALE_FOR == 3600.0
    assert DnsServer("10.0.0.1").port == 53
    order = resolver_order(["10.0.0.1", "10.0.0.2"])
    assert order == [
        DnsServer("10.0.0.1", source="dhcp-primary"),
        DnsServer("10.0.0.2", source="dhcp-secondary"),
        DnsServer("1.1.1.1", source="fallback"),
        DnsServer("1.0.0.1", source="fallback"),
    ]
    assert [str(s) for s in order] == [
        "DHCP primary 10.0.0.1",
        "DHCP secondary 10.0.0.2",
        "fallback 1.1.1.1",
        "fallback 1.0.0.1",
    ]


@pytest.mark.unit
def test_no_dhcp_dns_servers_means_the_fallbacks_only() -> None:
    assert resolver_order([]) == [DnsServer("1.1.1.1"), DnsServer("1.0.0.1")]
    assert resolver_order(["", " "]) == [DnsServer("1.1.1.1"), DnsServer("1.0.0.1")]


@pytest.mark.unit
def test_a_server_is_asked_once_in_its_first_place() -> None:
    order = resolver_order(["1.1.1.1", "10.0.0.2", "1.1.1.1"])
    assert [(s.address, s.source) for s in order] == [
        ("1.1.1.1", "dhcp-primary"),
        ("10.0.0.2", "dhcp-secondary"),
        ("1.0.0.1", "fallback"),
    ]
    with pytest.raises(ValueError):
        resolver_order(["dns.example"])  # DHCP option 6 carries addresses, not names


# --- sans-I/O core: time is driven by the test ----------------------------------------

A = DnsServer("127.0.0.1", 5301, source="dhcp-primary")
B = DnsServer("127.0.0.1", 5302, source="dhcp-secondary")


def _reply(
    query: Query,
    *,
    ttl: int = 60,
    addresses: tuple[str, ...] = ("192.0.2.10",),
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
) -> bytes:
    q = dns.message.from_wire(query.wire)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if rcode == dns.rcode.NOERROR and addresses:
        r.answer.append(dns.rrset.from_text(q.question[0].name, ttl, "IN", "A", *addresses))
    return r.to_wire()


def _answer(resolver: DnsResolver, now: float, *, ttl: int = 60) -> Resolved:
    res = resolver.lookup(NAME, [A, B])
    step = res.start(now)
    assert isinstance(step, Query) and step.server == A
    out = res.datagram(_reply(step, ttl=ttl), ("127.0.0.1", A.port), now + 0.01)
    assert isinstance(out, Resolved)
    return out


@pytest.mark.unit
def test_an_answer_is_cached_for_its_ttl_then_asked_again() -> None:
    resolver = DnsResolver()
    first = _answer(resolver, 1000.0, ttl=60)
    assert first.addresses == ("192.0.2.10",) and first.server == A and not first.from_cache
    # Within the TTL nobody is asked.
    hit = resolver.lookup(NAME.upper() + ".", [A, B]).start(1059.0)
    assert isinstance(hit, Resolved) and hit.from_cache and hit.addresses == ("192.0.2.10",)
    assert hit.ttl == pytest.approx(1.01)
    # After it, the first server is asked again.
    assert isinstance(resolver.lookup(NAME, [A, B]).start(1060.5), Query)


@pytest.mark.unit
def test_ttls_are_clamped_to_the_floor_and_ceiling() -> None:
    resolver = DnsResolver(min_ttl=30, max_ttl=3600)
    assert _answer(resolver, 0.0, ttl=0).ttl == 30
    assert isinstance(resolver.lookup(NAME, [A]).start(29.0), Resolved)
    assert _answer(DnsResolver(min_ttl=30, max_ttl=3600), 0.0, ttl=604800).ttl == 3600


@pytest.mark.unit
def test_a_stray_or_spoofed_datagram_changes_nothing() -> None:
    res = DnsResolver().lookup(NAME, [A, B])
    step = res.start(0.0)
    assert isinstance(step, Query)
    good = _reply(step)
    wrong_id = bytes([good[0] ^ 0x55]) + good[1:]
    assert res.datagram(wrong_id, ("127.0.0.1", A.port), 0.1) is None
    assert res.datagram(good, ("127.0.0.2", A.port), 0.1) is None  # wrong host
    assert res.datagram(good, ("127.0.0.1", B.port), 0.1) is None  # wrong port
    other = dns.message.make_query("evil.example", "A")
    other.id = dns.message.from_wire(step.wire).id
    assert (
        res.datagram(dns.message.make_response(other).to_wire(), ("127.0.0.1", A.port), 0.1) is None
    )
    assert res.datagram(b"\x00", ("127.0.0.1", A.port), 0.1) is None
    assert res.attempts == [] and res.server == A
    out = res.datagram(good, ("127.0.0.1", A.port), 0.2)
    assert isinstance(out, Resolved) and out.server == A


@pytest.mark.unit
def test_a_failing_server_is_passed_over_and_the_attempt_says_why() -> None:
    res = DnsResolver(timeout=2.0).lookup(NAME, [A, B])
    first = res.start(0.0)
    assert isinstance(first, Query)
    second = res.timed_out(2.0)
    assert isinstance(second, Query) and second.server == B
    out = res.datagram(_reply(second, rcode=dns.rcode.SERVFAIL), ("127.0.0.1", B.port), 2.01)
    assert isinstance(out, DnsFailure) and out.kind == "unreachable"
    assert str(out) == (
        f"{NAME} A could not be resolved: DHCP primary 127.0.0.1:5301 timed out after 2.0 s; "
        "DHCP secondary 127.0.0.1:5302 answered SERVFAIL at once"
    )


@pytest.mark.unit
def test_the_last_good_answer_is_served_stale_for_a_bounded_time() -> None:
    resolver = DnsResolver(timeout=2.0, stale_for=600.0)
    _answer(resolver, 0.0, ttl=60)

    def all_fail(now: float) -> Resolved | DnsFailure:
        res = resolver.lookup(NAME, [A, B])
        assert isinstance(res.start(now), Query)
        assert isinstance(res.timed_out(now + 2.0), Query)
        out = res.unreachable(now + 2.0, "Connection refused")
        assert isinstance(out, Resolved | DnsFailure)
        return out

    stale = all_fail(100.0)
    assert isinstance(stale, Resolved) and stale.stale
    assert stale.addresses == ("192.0.2.10",) and stale.server == A
    assert stale.age == pytest.approx(102.0, abs=0.1)
    assert [a.reason for a in stale.attempts] == ["timeout", "unreachable"]
    # 600 s after the TTL ran out (t=60), the old address is no longer good enough.
    assert isinstance(all_fail(655.0), Resolved)
    gone = all_fail(700.0)
    assert isinstance(gone, DnsFailure) and gone.kind == "unreachable"
    assert "DHCP primary 127.0.0.1:5301 timed out after 2.0 s" in str(gone)
    assert "DHCP secondary 127.0.0.1:5302 was unreachable (Connection refused)" in str(gone)


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=64))
@pytest.mark.unit
def test_junk_after_our_id_is_ignored_or_passed_over_never_a_crash(junk: bytes) -> None:
    res = DnsResolver().lookup(NAME, [A, B])
    step = res.start(0.0)
    assert isinstance(step, Query)
    out = res.datagram(step.wire[:2] + junk, ("127.0.0.1", A.port), 0.01)
    # Either it is ignored (not a response to our question) or A is passed over or it answered.
    assert out is None or isinstance(out, Query | Resolved | DnsFailure)
    if isinstance(out, Query):
        assert out.server == B and res.attempts[0].reason in {
            "malformed",
            "servfail",
            "refused",
            "rcode",
            "truncated",
        }


@pytest.mark.unit
def test_nxdomain_is_final_cached_and_forgets_the_old_address() -> None:
    resolver = DnsResolver(stale_for=3600.0)
    _answer(resolver, 0.0, ttl=60)
    res = resolver.lookup(NAME, [A, B])
    step = res.start(100.0)
    assert isinstance(step, Query)
    out = res.datagram(_reply(step, rcode=dns.rcode.NXDOMAIN), ("127.0.0.1", A.port), 100.0)
    assert isinstance(out, DnsFailure) and out.kind == "nxdomain"
    assert [a.server for a in out.attempts] == [A]  # B never asked
    cached = resolver.lookup(NAME, [A, B]).start(101.0)
    assert isinstance(cached, DnsFailure) and cached.from_cache and cached.kind == "nxdomain"
    # Once the negative answer expires and every server fails, the pre-NXDOMAIN
    # address does not come back as a stale answer.
    res = resolver.lookup(NAME, [A])
    assert isinstance(res.start(1000.0), Query)
    assert isinstance(res.timed_out(1002.0), DnsFailure)


@pytest.mark.unit
def test_no_servers_at_all_is_a_failure_that_says_so() -> None:
    out = DnsResolver().lookup(NAME, []).start(0.0)
    assert (
        isinstance(out, DnsFailure)
        and str(out) == f"{NAME} A could not be resolved: no DNS servers"
    )


# --- the asyncio shell over real UDP on loopback --------------------------------------


@pytest.mark.socket
async def test_servers_are_asked_in_the_article_order_each_for_its_timeout(
    fake_dns: StartDns,
) -> None:
    primary, secondary, cf1 = [await fake_dns("silent") for _ in range(3)]
    cf2 = await fake_dns("answer")
    order = resolver_order(
        [primary.server(), secondary.server()], fallbacks=[cf1.server(), cf2.server()]
    )
    # Each silent server costs its whole timeout; the answering one has as long. Long
    # enough that a loaded machine's answer is never late, and the bounds below are a
    # timeout's lower bound (exact) and a loaded loop's upper one.
    started = time.monotonic()
    got = await resolve(NAME, servers=order, timeout=SILENT_S)
    elapsed = time.monotonic() - started
    assert 3 * SILENT_S <= elapsed < 3 * SILENT_S + 3.0
    assert got.addresses == ("192.0.2.10",) and got.server == cf2.server()
    assert [(a.server.source, a.reason) for a in got.attempts] == [
        ("dhcp-primary", "timeout"),
        ("dhcp-secondary", "timeout"),
        ("fallback", "timeout"),
        ("fallback", "answer"),
    ]
    for a in got.attempts[:3]:
        assert SILENT_S - 0.01 <= a.elapsed < SILENT_S + 1.0
    assert re.fullmatch(
        rf"DHCP primary 127\.0\.0\.1:{primary.port} timed out after {SILENT_S:.0f}\.\d s",
        str(got.attempts[0]),
    )
    assert [len(s.queries) for s in (primary, secondary, cf1, cf2)] == [1, 1, 1, 1]


@pytest.mark.socket
async def test_servfail_refused_and_garbage_are_passed_over_at_once(fake_dns: StartDns) -> None:
    servers = [await fake_dns(b) for b in ("servfail", "refused", "garbage", "answer")]
    started = time.monotonic()
    got = await resolve(NAME, servers=[s.server() for s in servers], timeout=WAIT)
    assert time.monotonic() - started < WAIT / 3  # nobody waited for a timeout
    assert [a.reason for a in got.attempts] == ["servfail", "refused", "malformed", "answer"]
    assert got.server == servers[3].server()


@pytest.mark.socket
async def test_nxdomain_from_a_working_server_is_final(fake_dns: StartDns) -> None:
    nx, spare = await fake_dns("nxdomain"), await fake_dns("answer")
    with pytest.raises(DnsError) as info:
        await resolve(NAME, servers=[nx.server("dhcp-primary"), spare.server()], timeout=WAIT)
    assert info.value.failure.kind == "nxdomain"
    assert len(nx.queries) == 1 and spare.queries == []
    assert str(info.value) == (
        f"{NAME} A does not exist: DHCP primary 127.0.0.1:{nx.port} answered NXDOMAIN (no such name) at once"
    )


@pytest.mark.socket
async def test_no_data_from_a_working_server_is_final(fake_dns: StartDns) -> None:
    empty, spare = await fake_dns("nodata"), await fake_dns("answer")
    with pytest.raises(DnsError) as info:
        await resolve(NAME, servers=[empty.server(), spare.server()], timeout=WAIT)
    assert info.value.failure.kind == "nodata" and spare.queries == []


@pytest.mark.socket
async def test_without_dhcp_dns_servers_the_fallbacks_answer(fake_dns: StartDns) -> None:
    cf1, cf2 = await fake_dns("answer", addresses=("192.0.2.1", "192.0.2.2")), await fake_dns()
    got = await resolve(NAME, servers=resolver_order([], fallbacks=[cf1.server(), cf2.server()]))
    assert sorted(got.addresses) == ["192.0.2.1", "192.0.2.2"]
    assert got.server.source == "fallback" and got.server.port == cf1.port
    assert cf2.queries == []


@pytest.mark.socket
async def test_a_cached_answer_is_not_asked_for_again_within_its_ttl(fake_dns: StartDns) -> None:
    server = await fake_dns("answer", ttl=60)
    clock, resolver = Clock(), DnsResolver()
    servers = [server.server("dhcp-primary")]
    await resolve(NAME, servers=servers, now=clock, resolver=resolver)
    clock.t += 59
    hit = await resolve(NAME, servers=servers, now=clock, resolver=resolver)
    assert hit.from_cache and len(server.queries) == 1
    clock.t += 2
    fresh = await resolve(NAME, servers=servers, now=clock, resolver=resolver)
    assert not fresh.from_cache and len(server.queries) == 2


@pytest.mark.socket
async def test_when_every_server_fails_the_last_good_address_is_used_and_reported(
    fake_dns: StartDns,
) -> None:
    primary, fallback = await fake_dns("answer", ttl=60), await fake_dns("answer", ttl=60)
    clock, resolver = Clock(), DnsResolver(stale_for=300.0)
    servers = [primary.server("dhcp-primary"), fallback.server()]
    await resolve(NAME, servers=servers, now=clock, resolver=resolver, timeout=WAIT)
    primary.behaviour, fallback.behaviour = "silent", "servfail"
    clock.t += 120
    stale = await resolve(NAME, servers=servers, now=clock, resolver=resolver, timeout=SILENT_S)
    assert (
        stale.stale
        and stale.addresses == ("192.0.2.10",)
        and 120 <= stale.age < 120 + SILENT_S + 2  # the 120 s wound on, the primary's wait
    )
    # (the times are the wall's: a loaded machine may add a few tenths, never take any off)
    primary_timed_out, fallback_failed = (str(a) for a in stale.attempts)
    assert re.fullmatch(
        rf"DHCP primary 127\.0\.0\.1:{primary.port} timed out after {SILENT_S:.0f}\.\d s",
        primary_timed_out,
    )
    assert re.fullmatch(
        rf"fallback 127\.0\.0\.1:{fallback.port} answered SERVFAIL (at once|after 0\.\d s)",
        fallback_failed,
    )
    clock.t += 300  # now 360 s after the TTL ran out: beyond stale_for
    with pytest.raises(DnsError) as info:
        await resolve(NAME, servers=servers, now=clock, resolver=resolver, timeout=SILENT_S)
    assert info.value.failure.kind == "unreachable"
    assert f"timed out after {SILENT_S:.0f}." in str(info.value)
    assert "answered SERVFAIL" in str(info.value)


@pytest.mark.socket
async def test_a_spoofed_answer_with_the_wrong_id_is_ignored(fake_dns: StartDns) -> None:
    server = await fake_dns("wrong-id")
    got = await resolve(NAME, servers=[server.server()], timeout=WAIT)
    assert got.addresses == ("192.0.2.10",)  # not the spoofer's 203.0.113.66
    assert [a.reason for a in got.attempts] == ["answer"]


@pytest.mark.socket
async def test_a_closed_port_is_passed_over_without_waiting(fake_dns: StartDns) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    spare = await fake_dns("answer")
    started = time.monotonic()
    got = await resolve(
        NAME, servers=[DnsServer("127.0.0.1", closed), spare.server()], timeout=WAIT
    )
    assert time.monotonic() - started < WAIT / 3  # not a timeout's wait
    assert [a.reason for a in got.attempts] == ["unreachable", "answer"]
