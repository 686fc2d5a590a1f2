"""DHCP: "DHCP is used on the local network to assign an IP address to PlugStream and
give the IP address to the DNS server" (vendor article).

Packets and the state machine are tested without sockets or sleeping; the lease
readers on sample files of systemd-networkd, dhclient and dhcpcd; and the whole
thing against a real dnsmasq in a lab network namespace, including a station that
keeps its lease by renewing it (a station runs for years on one lease).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import queue
import random
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plugstream.lab.netns import Host, Netns, lab_unavailable
from plugstream.net.dhcp import (
    BROADCAST_FLAG,
    INFINITE_LEASE,
    MAGIC_COOKIE,
    Bound,
    DhcpClient,
    DhcpError,
    DhcpMessage,
    Expired,
    Failed,
    Lease,
    Lost,
    MalformedPacket,
    MessageType,
    Offered,
    Option,
    Send,
    apply_lease,
    broadcast_frame,
    build_discover,
    build_release,
    build_renew,
    build_request,
    lease_from_message,
    parse,
    parse_dhclient_leases,
    read_system_lease,
    remove_lease,
)
from tests.support import WAIT, until_sync

MAC = "02:00:00:00:00:01"
MAC_BYTES = bytes.fromhex("020000000001")
SERVER = "192.0.2.1"

# --------------------------------------------------------------------------- packets


@pytest.mark.unit
def test_discover_golden_bytes() -> None:
    packet = build_discover(0x12345678, MAC)
    assert len(packet) == 300  # BOOTP minimum, some relays drop shorter messages
    assert packet[:4] == bytes([1, 1, 6, 0])  # BOOTREQUEST, Ethernet, hlen 6, hops 0
    assert packet[4:8] == bytes.fromhex("12345678")  # xid
    assert packet[8:10] == b"\x00\x00"  # secs
    assert packet[10:12] == b"\x80\x00"  # broadcast flag: we have no address yet
    assert packet[12:28] == bytes(16)  # ciaddr, yiaddr, siaddr, giaddr
    assert packet[28:44] == MAC_BYTES + bytes(10)
    assert packet[44:236] == bytes(192)  # sname, file
    assert packet[236:240] == MAGIC_COOKIE == bytes.fromhex("63825363")
    options = bytes.fromhex(
        "350101"  # 53 message type: DISCOVER
        "3d0701020000000001"  # 61 client id: htype 1 + MAC
        "37080103060f33363a3b"  # 55: 1,3,6,15,51,54,58,59
        "ff"
    )
    assert packet[240 : 240 + len(options)] == options
    assert packet[240 + len(options) :] == bytes(300 - 240 - len(options))


@pytest.mark.unit
def test_request_names_the_chosen_server_and_the_offered_address() -> None:
    message = parse(
        build_request(7, MAC, requested_ip="192.0.2.120", server_id=SERVER, hostname="ps7-0001")
    )
    assert message.op == 1 and message.xid == 7 and message.chaddr == MAC_BYTES
    assert message.message_type is MessageType.REQUEST
    assert message.flags == BROADCAST_FLAG
    assert message.ciaddr == "0.0.0.0"  # SELECTING state: not yet ours
    assert message.options[Option.REQUESTED_IP] == bytes([192, 0, 2, 120])
    assert message.options[Option.SERVER_ID] == bytes([192, 0, 2, 1])
    assert message.options[Option.HOSTNAME] == b"ps7-0001"
    assert message.options[Option.PARAMETER_REQUEST_LIST] == bytes([1, 3, 6, 15, 51, 54, 58, 59])


@pytest.mark.unit
def test_release_is_unicast_with_the_address_in_ciaddr() -> None:
    message = parse(build_release(9, MAC, address="192.0.2.120", server_id=SERVER))
    assert message.message_type is MessageType.RELEASE
    assert message.ciaddr == "192.0.2.120"
    assert message.flags == 0
    assert message.server_id == SERVER
    assert Option.REQUESTED_IP not in message.options


def handmade_reply(
    kind: MessageType,
    *,
    xid: int = 0xCAFEF00D,
    yiaddr: str = "192.0.2.120",
    chaddr: bytes = MAC_BYTES,
    options: Sequence[tuple[int, bytes]] = (),
    op: int = 2,
) -> bytes:
    """A server's reply packed by hand (not by the code under test), like on the wire."""
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,
        6,
        0,
        xid,
        0,
        0x8000,
        bytes(4),
        bytes(int(x) for x in yiaddr.split(".")),
        bytes([192, 0, 2, 1]),
        bytes(4),
        chaddr.ljust(16, b"\x00"),
        b"",
        b"",
    )
    body = MAGIC_COOKIE + bytes([53, 1, kind])
    for code, value in options:
        body += bytes([code, len(value)]) + value
    return header + body + b"\xff" + bytes(8)


def ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


OFFER_OPTIONS = (
    (54, ip(SERVER)),
    (51, (3600).to_bytes(4, "big")),
    (1, ip("255.255.255.0")),
    (3, ip(SERVER)),
    (0, b""),  # packed as two pad bytes (option 0), which parsers must skip
    (6, ip("192.0.2.53") + ip("192.0.2.54")),
)


@pytest.mark.unit
def test_parse_a_handmade_offer() -> None:
    message = parse(handmade_reply(MessageType.OFFER, options=OFFER_OPTIONS))
    assert message.op == 2 and message.xid == 0xCAFEF00D
    assert message.message_type is MessageType.OFFER
    assert message.yiaddr == "192.0.2.120" and message.siaddr == SERVER
    assert message.server_id == SERVER
    assert message.subnet_mask == "255.255.255.0"
    assert message.routers == (SERVER,)
    assert message.dns_servers == ("192.0.2.53", "192.0.2.54")
    assert message.lease_time == 3600
    lease = lease_from_message(message, obtained_at=1000.0)
    assert lease == Lease(
        address="192.0.2.120",
        prefix_len=24,
        routers=(SERVER,),
        dns_servers=("192.0.2.53", "192.0.2.54"),
        lease_time=3600,
        server_id=SERVER,
        obtained_at=1000.0,
    )
    assert lease.netmask == "255.255.255.0" and lease.expires_at == 4600.0


@pytest.mark.unit
def test_dns_servers_keep_the_servers_order_not_sorted() -> None:
    packet = handmade_reply(MessageType.ACK, options=[(6, ip("198.51.100.9") + ip("192.0.2.53"))])
    assert parse(packet).dns_servers == ("198.51.100.9", "192.0.2.53")


@pytest.mark.unit
def test_message_round_trip_and_long_options_are_split_and_joined() -> None:
    long_value = bytes(range(256)) + bytes(100)  # > 255 bytes: RFC 3396 split
    message = DhcpMessage(
        op=2,
        xid=42,
        chaddr=MAC_BYTES,
        options={53: b"\x05", 54: ip(SERVER), 6: ip("192.0.2.53") * 3, 77: long_value},
        yiaddr="192.0.2.130",
        flags=BROADCAST_FLAG,
        secs=3,
    )
    wire = message.encode()
    assert wire.count(bytes([77, 255])) >= 1
    assert parse(wire) == message


@pytest.mark.unit
def test_infinite_lease_has_no_expiry() -> None:
    packet = handmade_reply(MessageType.ACK, options=[(51, INFINITE_LEASE.to_bytes(4, "big"))])
    lease = lease_from_message(parse(packet), obtained_at=0.0)
    assert lease.lease_time == INFINITE_LEASE and lease.expires_at is None
    assert lease.prefix_len == 24  # no mask option: classful (192.x is class C)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x02" * 100, "too short"),
        (bytes(236) + b"\x00\x00\x00\x00\x35\x01\x02", "magic cookie"),
        (bytes([2, 1, 6]) + bytes(233) + MAGIC_COOKIE + bytes([6, 8, 192, 0]), "cut off"),
    ],
)
@pytest.mark.unit
def test_garbage_is_rejected_with_its_reason(data: bytes, why: str) -> None:
    with pytest.raises(MalformedPacket, match=why):
        parse(data)


# --------------------------------------------------------------------------- state machine


def new_client(**kwargs: Any) -> DhcpClient:
    return DhcpClient(MAC, rng=random.Random(7), **kwargs)


def sends(actions: Sequence[object]) -> list[DhcpMessage]:
    return [parse(a.payload) for a in actions if isinstance(a, Send)]


def offer_for(
    client: DhcpClient, *, xid: int | None = None, chaddr: bytes = MAC_BYTES, op: int = 2
) -> bytes:
    """dnsmasq-like DHCPOFFER of 192.0.2.120 to ``client``'s current transaction."""
    xid = client.xid if xid is None else xid
    return handmade_reply(MessageType.OFFER, xid=xid, chaddr=chaddr, op=op, options=OFFER_OPTIONS)


@pytest.mark.unit
def test_discover_is_retransmitted_with_rfc_backoff_then_gives_up() -> None:
    client = new_client()
    [first] = sends(client.start(now=100.0))
    assert first.message_type is MessageType.DISCOVER and first.xid == client.xid
    sent_at = [100.0]
    for _ in range(3):
        deadline = client.next_deadline
        assert deadline is not None
        assert client.tick(deadline - 0.01) == []  # not yet
        [again] = sends(client.tick(deadline))
        assert again.xid == first.xid  # same transaction
        sent_at.append(deadline)
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    for gap, nominal in zip(gaps, (4, 8, 16), strict=True):
        assert nominal - 1 <= gap <= nominal + 1  # RFC 2131 §4.1: 4, 8, 16 s, ±1 s
    assert client.next_deadline is not None
    assert 31 <= client.next_deadline - sent_at[-1] <= 33
    [failed] = client.tick(client.next_deadline)
    assert isinstance(failed, Failed)
    assert "no DHCPOFFER after 4 DHCPDISCOVERs" in failed.reason
    assert client.tick(10_000.0) == []  # finished: nothing more, ever


@pytest.mark.unit
def test_backoff_is_capped_at_64_seconds() -> None:
    client = new_client(max_transmissions=9)
    client.start(0.0)
    gaps = []
    for _ in range(8):
        assert client.next_deadline is not None
        before = client.next_deadline
        client.tick(before)
        assert client.next_deadline is not None
        gaps.append(client.next_deadline - before)
    assert all(63 <= gap <= 65 for gap in gaps[-3:])


@pytest.mark.unit
def test_replies_that_are_not_for_us_are_ignored() -> None:
    client = new_client()
    client.start(0.0)
    assert client.datagram(offer_for(client, xid=client.xid ^ 1), 0.1) == []
    assert client.datagram(offer_for(client, chaddr=bytes.fromhex("020000000099")), 0.2) == []
    assert client.datagram(offer_for(client, op=1), 0.3) == []
    assert client.datagram(b"\x00" * 20, 0.4) == []
    no_server_id = handmade_reply(MessageType.OFFER, xid=client.xid)
    assert client.datagram(no_server_id, 0.5) == []
    ack_too_early = handmade_reply(MessageType.ACK, xid=client.xid, options=OFFER_OPTIONS)
    assert client.datagram(ack_too_early, 0.6) == []
    assert client.state == "SELECTING" and client.ignored == 6


@pytest.mark.unit
def test_offer_then_ack_binds_the_lease_with_dns_order_kept() -> None:
    client = new_client(hostname="ps22-0042")
    client.start(10.0)
    actions = client.datagram(offer_for(client), 10.5)
    assert isinstance(actions[0], Offered)
    [request] = sends(actions)
    assert request.message_type is MessageType.REQUEST and request.xid == client.xid
    assert request.options[Option.REQUESTED_IP] == ip("192.0.2.120")
    assert request.options[Option.SERVER_ID] == ip(SERVER)
    assert request.options[Option.HOSTNAME] == b"ps22-0042"
    assert client.state == "REQUESTING"

    ack = handmade_reply(
        MessageType.ACK,
        xid=client.xid,
        options=[
            (54, ip(SERVER)),
            (51, (7200).to_bytes(4, "big")),
            (1, ip("255.255.255.128")),
            (3, ip("192.0.2.126") + ip(SERVER)),
            (6, ip("192.0.2.54") + ip("192.0.2.53")),
        ],
    )
    [bound] = client.datagram(ack, 11.0)
    assert isinstance(bound, Bound)
    assert bound.lease == Lease(
        address="192.0.2.120",
        prefix_len=25,
        routers=("192.0.2.126", SERVER),
        dns_servers=("192.0.2.54", "192.0.2.53"),  # primary first, as the server said
        lease_time=7200,
        server_id=SERVER,
        obtained_at=11.0,
    )
    assert (client.state, client.next_deadline) == ("BOUND", 11.0 + 3600)  # T1: half the lease
    [release] = client.release()
    assert isinstance(release, Send) and release.destination == SERVER
    assert parse(release.payload).message_type is MessageType.RELEASE


@pytest.mark.unit
def test_request_is_retransmitted_then_the_client_starts_over() -> None:
    client = new_client(max_transmissions=2)
    client.start(0.0)
    client.datagram(offer_for(client), 0.1)
    first_xid = client.xid
    assert client.next_deadline is not None and 3.1 <= client.next_deadline <= 5.1
    [again] = sends(client.tick(client.next_deadline))
    assert again.message_type is MessageType.REQUEST and again.xid == first_xid
    assert client.waiting_for() == f"DHCPACK from {SERVER} for 192.0.2.120"
    [discover] = sends(client.tick(client.next_deadline))
    assert discover.message_type is MessageType.DISCOVER
    assert client.state == "SELECTING" and client.restarts == 1


@pytest.mark.unit
def test_nak_sends_the_client_back_to_discover_with_a_new_xid() -> None:
    client = new_client(max_restarts=1)
    client.start(0.0)
    client.datagram(offer_for(client), 0.1)
    old_xid = client.xid
    nak = handmade_reply(
        MessageType.NAK,
        xid=old_xid,
        yiaddr="0.0.0.0",
        options=[(54, ip(SERVER)), (56, b"wrong network")],
    )
    [discover] = sends(client.datagram(nak, 0.2))
    assert discover.message_type is MessageType.DISCOVER
    assert discover.xid == client.xid != old_xid
    assert client.last_nak == f"DHCPNAK from {SERVER}: wrong network"

    client.datagram(offer_for(client), 0.3)
    nak_again = handmade_reply(
        MessageType.NAK, xid=client.xid, options=[(54, ip(SERVER)), (56, b"wrong network")]
    )
    [failed] = client.datagram(nak_again, 0.4)
    assert isinstance(failed, Failed) and "wrong network" in failed.reason


@pytest.mark.unit
def test_nak_from_another_server_is_ignored() -> None:
    client = new_client()
    client.start(0.0)
    client.datagram(offer_for(client), 0.1)
    rogue = handmade_reply(MessageType.NAK, xid=client.xid, options=[(54, ip("192.0.2.66"))])
    assert client.datagram(rogue, 0.2) == []
    assert client.state == "REQUESTING"


@pytest.mark.unit
def test_discover_only_client_stops_at_the_offer() -> None:
    client = new_client(discover_only=True)
    client.start(0.0)
    [offered] = client.datagram(offer_for(client), 0.1)
    assert isinstance(offered, Offered)
    assert offered.lease.dns_servers == ("192.0.2.53", "192.0.2.54")
    assert client.state == "OFFERED" and client.next_deadline is None


def lifetimes(value: str) -> list[str]:
    return ["valid_lft", value, "preferred_lft", value]


@pytest.mark.unit
def test_apply_lease_runs_iproute2_replace_commands_with_the_time_left() -> None:
    commands: list[list[str]] = []
    lease = Lease("192.0.2.120", 24, (SERVER,), ("192.0.2.53",), 3600, SERVER, 0.0)
    apply_lease(lease, "eth0", run=lambda argv: commands.append(list(argv)), now=600.5)
    # the kernel drops the address itself when the lease runs out, even if we died
    assert commands == [
        ["ip", "addr", "replace", "192.0.2.120/24", "dev", "eth0", *lifetimes("3000")],
        ["ip", "route", "replace", "default", "via", SERVER, "dev", "eth0"],
    ]


@pytest.mark.unit
def test_apply_lease_infinite_is_forever_and_a_moved_address_replaces_the_old() -> None:
    commands: list[list[str]] = []
    old = Lease("192.0.2.120", 24, (), (), 3600, SERVER, 0.0)
    new = Lease("192.0.2.121", 24, (), (), INFINITE_LEASE, SERVER, 100.0)
    apply_lease(new, "eth0", run=lambda argv: commands.append(list(argv)), previous=old, now=1e9)
    assert commands == [
        ["ip", "addr", "del", "192.0.2.120/24", "dev", "eth0"],
        ["ip", "addr", "replace", "192.0.2.121/24", "dev", "eth0", *lifetimes("forever")],
    ]
    commands.clear()
    apply_lease(new, "eth0", run=lambda argv: commands.append(list(argv)), previous=new, now=0.0)
    assert [c[2] for c in commands] == ["replace"]  # same address: nothing removed


@pytest.mark.unit
def test_remove_lease_takes_route_and_address_off_and_tolerates_what_is_gone() -> None:
    commands: list[list[str]] = []

    def run(argv: Sequence[str]) -> None:
        commands.append(list(argv))
        raise DhcpError("RTNETLINK answers: Cannot assign requested address")  # expired already

    lease = Lease("192.0.2.120", 24, (SERVER,), (), 3600, SERVER, 0.0)
    remove_lease(lease, "eth0", run=run)
    assert commands == [
        ["ip", "route", "del", "default", "via", SERVER, "dev", "eth0"],
        ["ip", "addr", "del", "192.0.2.120/24", "dev", "eth0"],
    ]


# --------------------------------------------------------------------------- keeping the lease


def bound_client(
    lease_time: int = 1000, *, t1: int | None = None, t2: int | None = None, **kwargs: Any
) -> tuple[DhcpClient, Lease]:
    """A client that got 192.0.2.120 from SERVER at t=11.0 (DISCOVER at 10.0)."""
    client = new_client(**kwargs)
    client.start(10.0)
    client.datagram(offer_for(client), 10.5)
    [bound] = client.datagram(ack_for(client, lease_time, t1=t1, t2=t2), 11.0)
    assert isinstance(bound, Bound)
    return client, bound.lease


def ack_for(
    client: DhcpClient,
    lease_time: int,
    *,
    t1: int | None = None,
    t2: int | None = None,
    server: str = SERVER,
    yiaddr: str = "192.0.2.120",
) -> bytes:
    options = [(54, ip(server)), (51, lease_time.to_bytes(4, "big")), (1, ip("255.255.255.0"))]
    if t1 is not None:
        options.append((58, t1.to_bytes(4, "big")))
    if t2 is not None:
        options.append((59, t2.to_bytes(4, "big")))
    return handmade_reply(MessageType.ACK, xid=client.xid, yiaddr=yiaddr, options=options)


def state(client: DhcpClient) -> str:
    """The client's state, unnarrowed (the type checker cannot see events change it)."""
    return client.state


def only_send(actions: Sequence[object]) -> Send:
    [action] = actions
    assert isinstance(action, Send)
    return action


def assert_extension_request(message: DhcpMessage) -> None:
    """RFC 2131 §4.3.2 RENEWING/REBINDING: ciaddr is ours, no 50/54, no broadcast flag."""
    assert message.message_type is MessageType.REQUEST
    assert message.ciaddr == "192.0.2.120"
    assert Option.REQUESTED_IP not in message.options
    assert Option.SERVER_ID not in message.options
    assert message.flags == 0


@pytest.mark.unit
def test_renew_request_bytes() -> None:
    message = parse(build_renew(5, MAC, address="192.0.2.120", hostname="ps7-0001", secs=2))
    assert_extension_request(message)
    assert message.xid == 5 and message.secs == 2 and message.chaddr == MAC_BYTES
    assert message.options[Option.HOSTNAME] == b"ps7-0001"
    assert message.options[Option.PARAMETER_REQUEST_LIST] == bytes([1, 3, 6, 15, 51, 54, 58, 59])


@pytest.mark.unit
def test_options_58_and_59_are_read_into_the_lease_and_set_t1_t2() -> None:
    client, lease = bound_client(1000, t1=300, t2=600)
    assert (lease.renewal_time, lease.rebinding_time) == (300, 600)
    assert (lease.renew_at, lease.rebind_at, lease.expires_at) == (311.0, 611.0, 1011.0)
    assert client.next_deadline == 311.0
    assert client.tick(310.9) == []
    send = only_send(client.tick(311.0))
    assert send.destination == SERVER and client.state == "RENEWING"


@pytest.mark.unit
def test_bound_lease_is_renewed_unicast_at_t1_then_rebound_broadcast_at_t2_then_lost() -> None:
    """No server answers: T1 = 0.5, T2 = 0.875 x 1000 s; retries at half the time left,
    no sooner than 60 s; at expiry the address is given up and DISCOVER starts over."""
    client, lease = bound_client(1000, hostname="ps7-0001")
    bound_xid = client.xid
    assert (lease.renew_at, lease.rebind_at) == (511.0, 886.0)
    assert client.tick(510.99) == [] and client.state == "BOUND"

    timeline: list[tuple[float, str, str]] = []
    xids = set()
    for _ in range(10):  # bounded: 7 sends and then the expiry
        now = client.next_deadline
        assert now is not None
        actions = client.tick(now)
        if state(client) == "SELECTING":
            break
        send = only_send(actions)
        message = parse(send.payload)
        assert_extension_request(message)
        assert message.options[Option.HOSTNAME] == b"ps7-0001"
        xids.add((client.state, message.xid))
        timeline.append((now, client.state, send.destination))
    assert timeline == [
        (511.0, "RENEWING", SERVER),  # T1: unicast to the server that gave the lease
        (698.5, "RENEWING", SERVER),  # + (886 - 511) / 2
        (792.25, "RENEWING", SERVER),  # + (886 - 698.5) / 2
        (852.25, "RENEWING", SERVER),  # half would be < 60 s: 60 s
        (886.0, "REBINDING", "255.255.255.255"),  # T2 comes first: any server, broadcast
        (948.5, "REBINDING", "255.255.255.255"),  # + (1011 - 886) / 2
        (1008.5, "REBINDING", "255.255.255.255"),  # + 60 s
    ]
    assert len(xids) == 2 and bound_xid not in {xid for _, xid in xids}
    assert now == 1011.0  # expiry
    expired, discover = actions
    assert expired == Expired(lease)
    assert isinstance(discover, Send) and discover.destination == "255.255.255.255"
    assert parse(discover.payload).message_type is MessageType.DISCOVER
    assert state(client) == "SELECTING" and client.lease is None


@pytest.mark.unit
def test_min_retry_scales_with_injected_time() -> None:
    client, _ = bound_client(10, t1=4, t2=7, min_retry=1.0)
    times = []
    for _ in range(8):
        assert client.next_deadline is not None
        times.append(client.next_deadline)
        client.tick(client.next_deadline)
        if client.state == "SELECTING":
            break
    # renew 15, 16.5 (half of 3 s), 17.5 (min 1 s), T2 18, rebind 19.5, 20.5, expiry 21
    assert times == [15.0, 16.5, 17.5, 18.0, 19.5, 20.5, 21.0]


@pytest.mark.unit
def test_ack_while_renewing_extends_the_lease_from_now() -> None:
    client, first = bound_client(1000)
    client.tick(511.0)
    assert client.state == "RENEWING"
    [bound] = client.datagram(ack_for(client, 1000), 512.0)
    assert isinstance(bound, Bound)
    assert bound.lease == dataclasses.replace(first, obtained_at=512.0, routers=(), dns_servers=())
    assert state(client) == "BOUND" and client.next_deadline == 1012.0  # the new T1
    assert client.tick(1011.0) == []  # the old expiry passes harmlessly


@pytest.mark.unit
def test_ack_while_renewing_from_another_server_is_ignored_but_rebinding_takes_any() -> None:
    client, _ = bound_client(1000)
    client.tick(511.0)
    assert client.datagram(ack_for(client, 1000, server="192.0.2.66"), 512.0) == []
    assert client.state == "RENEWING" and client.ignored == 1
    client.tick(886.0)
    assert state(client) == "REBINDING"
    [bound] = client.datagram(ack_for(client, 600, server="192.0.2.66"), 887.0)
    assert isinstance(bound, Bound) and bound.lease.server_id == "192.0.2.66"
    assert client.next_deadline == 887.0 + 300  # the new server's T1, renewed with it
    assert only_send(client.tick(1187.0)).destination == "192.0.2.66"


@pytest.mark.unit
def test_nak_while_renewing_loses_the_lease_and_starts_over() -> None:
    client, lease = bound_client(1000)
    client.tick(511.0)
    renew_xid = client.xid
    nak = handmade_reply(
        MessageType.NAK, xid=renew_xid, yiaddr="0.0.0.0", options=[(54, ip(SERVER)), (56, b"moved")]
    )
    lost, discover = client.datagram(nak, 512.0)
    assert lost == Lost(lease, f"DHCPNAK from {SERVER}: moved")
    assert isinstance(discover, Send) and discover.destination == "255.255.255.255"
    message = parse(discover.payload)
    assert message.message_type is MessageType.DISCOVER and message.xid != renew_xid
    assert client.state == "SELECTING" and client.lease is None
    client.datagram(offer_for(client), 513.0)  # and a new lease is had the usual way
    [bound] = client.datagram(ack_for(client, 1000), 514.0)
    assert isinstance(bound, Bound) and state(client) == "BOUND"


@pytest.mark.unit
def test_nak_while_rebinding_loses_the_lease_too() -> None:
    client, _ = bound_client(1000)
    client.tick(886.0)  # straight to T2 (e.g. the station was suspended past T1)
    assert client.state == "REBINDING"
    nak = handmade_reply(MessageType.NAK, xid=client.xid, options=[(54, ip("192.0.2.66"))])
    actions = client.datagram(nak, 887.0)
    assert isinstance(actions[0], Lost) and state(client) == "SELECTING"


@pytest.mark.unit
def test_waking_up_after_expiry_gives_the_lease_up_at_once() -> None:
    client, lease = bound_client(1000)
    expired, discover = client.tick(5000.0)
    assert expired == Expired(lease) and isinstance(discover, Send)


@pytest.mark.unit
def test_infinite_lease_is_never_renewed() -> None:
    client, lease = bound_client(INFINITE_LEASE)
    assert lease.renew_at is None and lease.rebind_at is None and lease.remaining(1e12) is None
    assert client.next_deadline is None
    assert client.tick(1e12) == [] and client.state == "BOUND"


@pytest.mark.unit
def test_a_client_that_failed_can_start_over() -> None:
    client = new_client(max_transmissions=1)
    client.start(0.0)
    assert client.next_deadline is not None
    [failed] = client.tick(client.next_deadline)
    assert isinstance(failed, Failed)
    [discover] = sends(client.start(100.0))
    assert discover.message_type is MessageType.DISCOVER and client.state == "SELECTING"


# --------------------------------------------------------------------------- lease files

NETWORKD_LEASE = """\
# This is private data. Do not parse.
ADDRESS=192.0.2.77
NETMASK=255.255.255.0
ROUTER=192.0.2.1
SERVER_ADDRESS=192.0.2.1
NEXT_SERVER=192.0.2.1
BROADCAST=192.0.2.255
T1=1800
T2=3150
LIFETIME=3600
DNS=198.51.100.53 192.0.2.53
NTP=192.0.2.123
DOMAINNAME=site.example
CLIENTID=ff3a1f2b0c00020000ab11d2c1a1e7a1b2c3d4
"""

DHCLIENT_LEASES = """\
default-duid "\\000\\001\\000\\001\\036\\233\\240\\240\\002\\000\\000\\000\\000\\001";
lease {
  interface "eth0";
  fixed-address 192.0.2.50;
  option subnet-mask 255.255.255.0;
  option routers 192.0.2.1;
  option dhcp-lease-time 600;
  option dhcp-message-type 5;
  option domain-name-servers 192.0.2.9;
  option dhcp-server-identifier 192.0.2.1;
  renew 4 2026/11/26 00:05:00;
  rebind 4 2026/11/26 00:08:45;
  expire 4 2026/11/26 00:10:00;
}
lease {
  interface "eth0";
  fixed-address 192.0.2.51;
  option subnet-mask 255.255.254.0;
  option routers 192.0.2.1;
  option dhcp-lease-time 86400;
  option dhcp-message-type 5;
  option domain-name-servers 198.51.100.53, 192.0.2.53;
  option dhcp-server-identifier 192.0.2.2;
  option domain-name "site; {example}";
  renew 4 2026/11/26 12:00:00;
  rebind 5 2026/11/27 09:00:00;
  expire 5 2026/11/27 00:00:00;
}
lease {
  interface "wlan0";
  fixed-address 203.0.113.20;
  option subnet-mask 255.255.255.0;
  option routers 203.0.113.1;
  option domain-name-servers 203.0.113.53;
  expire epoch 1795651200; # Thu Nov 26 00:00:00 2026
}
"""


def fake_root(tmp_path: Path, ifname: str = "eth0", ifindex: int = 2) -> Path:
    sysfs = tmp_path / "sys/class/net" / ifname
    sysfs.mkdir(parents=True)
    (sysfs / "ifindex").write_text(f"{ifindex}\n")
    (sysfs / "address").write_text(f"{MAC}\n")
    return tmp_path


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


@pytest.mark.unit
def test_systemd_networkd_lease_is_read(tmp_path: Path) -> None:
    root = fake_root(tmp_path, ifindex=3)
    path = write(root / "run/systemd/netif/leases/3", NETWORKD_LEASE)
    os.utime(path, (1_795_650_000, 1_795_650_000))
    assert read_system_lease("eth0", root=root) == Lease(
        address="192.0.2.77",
        prefix_len=24,
        routers=("192.0.2.1",),
        dns_servers=("198.51.100.53", "192.0.2.53"),
        lease_time=3600,
        server_id="192.0.2.1",
        obtained_at=1_795_650_000,
        renewal_time=1800,  # T1, T2 are kept
        rebinding_time=3150,
    )


@pytest.mark.unit
def test_dhclient_last_lease_block_of_the_interface_wins(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    write(root / "var/lib/dhcp/dhclient.eth0.leases", DHCLIENT_LEASES)
    lease = read_system_lease("eth0", root=root)
    assert lease == Lease(
        address="192.0.2.51",
        prefix_len=23,
        routers=("192.0.2.1",),
        dns_servers=("198.51.100.53", "192.0.2.53"),
        lease_time=86400,
        server_id="192.0.2.2",
        obtained_at=1_795_651_200.0,  # expire 2026-11-27 00:00 UTC minus one day
    )
    wlan = parse_dhclient_leases(DHCLIENT_LEASES, "wlan0", file_time=5.0)
    assert wlan is not None and wlan.address == "203.0.113.20"
    assert wlan.lease_time is None and wlan.server_id is None and wlan.obtained_at == 5.0


@pytest.mark.unit
def test_dhclient_redhat_path_is_read(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    write(root / "var/lib/dhclient/dhclient--eth0.lease", DHCLIENT_LEASES)
    lease = read_system_lease("eth0", root=root)
    assert lease is not None and lease.address == "192.0.2.51"


@pytest.mark.unit
def test_dhcpcd_binary_lease_is_read(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    ack = handmade_reply(
        MessageType.ACK,
        yiaddr="198.51.100.23",
        options=[
            (54, ip("198.51.100.1")),
            (51, (43200).to_bytes(4, "big")),
            (1, ip("255.255.255.0")),
            (3, ip("198.51.100.1")),
            (6, ip("198.51.100.53") + ip("192.0.2.53")),
        ],
    )
    path = write(root / "var/lib/dhcpcd/eth0.lease", ack)
    os.utime(path, (1_795_640_000, 1_795_640_000))
    assert read_system_lease("eth0", root=root) == Lease(
        address="198.51.100.23",
        prefix_len=24,
        routers=("198.51.100.1",),
        dns_servers=("198.51.100.53", "192.0.2.53"),
        lease_time=43200,
        server_id="198.51.100.1",
        obtained_at=1_795_640_000,
    )


@pytest.mark.unit
def test_networkd_is_preferred_and_no_lease_is_none(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    assert read_system_lease("eth0", root=root) is None
    write(root / "var/lib/dhcpcd/eth0.lease", b"garbage")
    assert read_system_lease("eth0", root=root) is None  # garbled counts as absent
    write(root / "var/lib/dhcp/dhclient.leases", DHCLIENT_LEASES)
    assert read_system_lease("eth0", root=root) is not None
    write(root / "run/systemd/netif/leases/2", NETWORKD_LEASE)
    lease = read_system_lease("eth0", root=root)
    assert lease is not None and lease.address == "192.0.2.77"
    assert read_system_lease("eth1", root=root) is None


# --------------------------------------------------------------------------- real exchange


@dataclass
class DhcpLab:
    """A DHCP server host (192.0.2.1/24) and a station host (no address), one cable."""

    netns: Netns
    server: Host
    client: Host
    tmp: Path

    @property
    def leasefile(self) -> Path:
        return self.tmp / "dnsmasq.leases"

    def start_dnsmasq(
        self, lease_time: str = "1h", *extra: str, pool: str = "192.0.2.100,192.0.2.150"
    ) -> subprocess.Popen[bytes]:
        """dnsmasq as a site router runs it: a pool, a router and two DNS servers."""
        log_path = self.tmp / "dnsmasq.log"
        with log_path.open("wb") as log:
            dnsmasq = self.server.start(
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--port=0",
                "--interface=eth0",
                "--bind-interfaces",
                f"--dhcp-range={pool},255.255.255.0,{lease_time}",
                "--dhcp-option=option:router,192.0.2.1",
                "--dhcp-option=option:dns-server,192.0.2.53,192.0.2.54",
                f"--dhcp-leasefile={self.leasefile}",
                f"--pid-file={self.tmp / 'dnsmasq.pid'}",
                "--user=root",
                "--log-dhcp",
                "--log-facility=-",
                *extra,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def listening() -> bool:  # on UDP 67 (0x0043)
            if dnsmasq.poll() is not None:
                pytest.fail(f"dnsmasq exited: {log_path.read_text()}")
            return ":0043 " in self.server.run("cat", "/proc/net/udp")

        until_sync(listening, "dnsmasq listening on UDP 67")
        return dnsmasq

    def dhcp_argv(self, *args: str) -> list[str]:
        """``python -m plugstream.net.dhcp eth0 ARGS`` in the station's namespace."""
        return self.client.argv(sys.executable, "-m", "plugstream.net.dhcp", "eth0", *args)

    def dhcp(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.dhcp_argv(*args), capture_output=True, text=True, timeout=timeout
        )

    def client_addresses(self) -> str:
        return self.client.ip("-4", "-o", "addr", "show", "dev", "eth0")


def make_lab(tmp_path: Path, *, with_server: bool) -> Iterator[DhcpLab]:
    why = lab_unavailable()
    if why is not None:
        pytest.fail(f"DHCP lab cannot run: {why}")
    with Netns(prefix=f"dh{os.getpid()}") as netns:
        server, client = netns.host("dhcpsrv"), netns.host("station")
        netns.veth(server, "eth0", client, "eth0", a_addr=f"{SERVER}/24")
        lab = DhcpLab(netns, server, client, tmp_path)
        if with_server:
            lab.start_dnsmasq()
        yield lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DhcpLab]:
    yield from make_lab(tmp_path, with_server=True)


@pytest.fixture
def silent_lab(tmp_path: Path) -> Iterator[DhcpLab]:
    yield from make_lab(tmp_path, with_server=False)


@pytest.mark.lab
def test_real_exchange_gives_an_address_router_and_dns_in_order(lab: DhcpLab) -> None:
    done = lab.dhcp("--json", "--hostname", "ps7-lab")
    assert done.returncode == 0, done.stderr
    lease = json.loads(done.stdout)
    last = int(lease["address"].rsplit(".", 1)[1])
    assert lease["address"].startswith("192.0.2.") and 100 <= last <= 150
    assert lease["prefix_len"] == 24
    assert lease["routers"] == ["192.0.2.1"]
    assert lease["dns_servers"] == ["192.0.2.53", "192.0.2.54"]  # primary, secondary
    assert lease["lease_time"] == 3600 and lease["server_id"] == SERVER
    assert f"inet {lease['address']}/24" in lab.client_addresses()
    assert "default via 192.0.2.1 dev eth0" in lab.client.ip("-4", "route")
    recorded = lab.leasefile.read_text()  # the server's lease database
    assert lease["address"] in recorded and "ps7-lab" in recorded  # option 12 arrived
    # and the station can now talk from its new address: the server side sees it as the peer
    listener = lab.server.start(
        sys.executable,
        "-c",
        "import socket; s = socket.create_server(('192.0.2.1', 8080)); "
        "c, peer = s.accept(); print(peer[0], flush=True)",
        stdout=subprocess.PIPE,
        text=True,
    )
    until_sync(lambda: ":8080 " in lab.server.run("ss", "-Hltn"), "the server listening on 8080")
    connect = "import socket; socket.create_connection(('192.0.2.1', 8080), timeout=10).close()"
    lab.client.run(sys.executable, "-c", connect)
    out, _ = listener.communicate(timeout=WAIT)
    assert out.strip() == lease["address"]


@pytest.mark.lab
def test_discover_sees_the_offer_but_takes_no_address(lab: DhcpLab) -> None:
    done = lab.dhcp("--json", "--discover")
    assert done.returncode == 0, done.stderr
    offer = json.loads(done.stdout)
    assert offer["dns_servers"] == ["192.0.2.53", "192.0.2.54"]
    assert offer["routers"] == ["192.0.2.1"]
    assert offer["address"].startswith("192.0.2.")
    assert "inet " not in lab.client_addresses()
    leases = lab.leasefile.read_text() if lab.leasefile.exists() else ""
    assert offer["address"] not in leases


@pytest.mark.lab
def test_no_server_times_out_with_a_clear_error(silent_lab: DhcpLab) -> None:
    started = time.monotonic()
    done = silent_lab.dhcp("--timeout", "2")
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "timed out: no DHCPOFFER within 2 s" in done.stderr
    assert "eth0" in done.stderr
    assert elapsed < 2 + 3  # the timeout, plus starting Python
    assert "inet " not in silent_lab.client_addresses()


@pytest.mark.lab
def test_station_plugged_in_before_the_server_is_up_gets_a_lease_by_retransmitting(
    silent_lab: DhcpLab,
) -> None:
    station = silent_lab.client.start(
        sys.executable,
        "-m",
        "plugstream.net.dhcp",
        "eth0",
        "--json",
        "--timeout",
        "15",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    discover = "udp dport 67"
    count_packets(silent_lab.server, discover)
    # the first DHCPDISCOVER arrives with no server to answer it
    until_sync(lambda: nft_packets(silent_lab.server, discover) >= 1, "the first DHCPDISCOVER")
    silent_lab.start_dnsmasq()
    out, err = station.communicate(timeout=20)
    assert station.returncode == 0, err
    assert json.loads(out)["dns_servers"] == ["192.0.2.53", "192.0.2.54"]
    log = (silent_lab.tmp / "dnsmasq.log").read_text()
    assert "DHCPDISCOVER(eth0)" in log and "DHCPACK(eth0)" in log


def read_lines(process: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    """Hand ``process``'s stdout lines to ``into`` from a thread (it ends with the process),
    so the test can wait for each with a timeout."""

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            into.put(line)

    threading.Thread(target=pump, daemon=True).start()


def udp68_sockets(host: Host) -> list[str]:
    """The host's open UDP sockets on port 68 (``ss -H -lun``: unconnected = listening)."""
    return [line for line in host.run("ss", "-H", "-lun").splitlines() if ":68 " in line]


def count_packets(host: Host, *matches: str) -> None:
    """An nft counter in ``host``'s input path for each ``match`` (read with nft_packets)."""
    host.run("nft", "add", "table", "inet", "dhcplab")
    host.run(
        "nft", "add chain inet dhcplab input { type filter hook input priority 0; policy accept; }"
    )
    for match in matches:
        host.run("nft", f"add rule inet dhcplab input {match} counter")


def keeping(lab: DhcpLab, *extra: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """``python -m plugstream.net.dhcp eth0 --keep`` in the station host, and its lease
    lines as they come (one JSON line per lease bound)."""
    station = lab.client.start(
        sys.executable, "-m", "plugstream.net.dhcp", "eth0", "--keep", *extra,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    read_lines(station, lines)
    return station, lines


def nft_packets(host: Host, match: str) -> int:
    """Packets counted by the rule ``match ... counter`` in the lab's input chain."""
    listing = host.run("nft", "list", "chain", "inet", "dhcplab", "input")
    found = re.search(re.escape(match) + r" counter packets (\d+)", listing)
    assert found is not None, listing
    return int(found.group(1))


@pytest.mark.lab
def test_station_keeps_its_lease_by_renewing_and_keeps_no_port_open_between(
    silent_lab: DhcpLab,
) -> None:
    """``--keep`` against dnsmasq: dnsmasq's shortest lease is 2 minutes, but it sends the
    options 58/59 it is given, so T1 = 4 s and T2 = 7 s make renewals come quickly."""
    lab = silent_lab
    unicast, broadcast = "ip daddr 192.0.2.1 udp dport 67", "ip daddr 255.255.255.255 udp dport 67"
    count_packets(lab.server, unicast, broadcast)
    station, lines = keeping(lab, "--hostname", "ps7-lab")

    # No server yet: the DHCPDISCOVER is in flight, the only time UDP 68 may be open.
    until_sync(lambda: udp68_sockets(lab.client), "UDP 68 open for the DHCPDISCOVER")
    lab.start_dnsmasq("2m", "--dhcp-option=58,4", "--dhcp-option=59,7", "--no-ping")

    leases: list[dict[str, Any]] = []
    for _ in range(3):  # the lease (after a DISCOVER retransmission), then two renewals
        try:
            leases.append(json.loads(lines.get(timeout=WAIT)))
        except queue.Empty:
            station.kill()
            pytest.fail(f"no lease line in {WAIT:g} s; stderr: {station.communicate(timeout=5)[1]}")
        # between exchanges: the socket is closed before the lease line is printed, and
        # the next exchange is T1 (4 s) away
        assert udp68_sockets(lab.client) == [], "UDP 68 stays open between renewals"

    first = leases[0]
    assert first["lease_time"] == 120 and first["server_id"] == SERVER
    assert (first["renewal_time"], first["rebinding_time"]) == (4, 7)
    assert {lease["address"] for lease in leases} == {first["address"]}  # the same address
    for before, after in itertools.pairwise(leases):
        # renewed at T1 and answered before T2: the unicast RENEWING request worked
        assert 3.5 <= after["obtained_at"] - before["obtained_at"] < 6.5
    assert nft_packets(lab.server, unicast) >= 2  # the renewals went to the server itself
    assert nft_packets(lab.server, broadcast) >= 2  # DISCOVER (sent twice) and REQUEST

    shown = lab.client_addresses()
    assert f"inet {first['address']}/24" in shown
    valid = re.search(r"valid_lft (\d+)sec", shown)  # the kernel drops it if we stop renewing
    assert valid is not None and 100 <= int(valid.group(1)) <= 120, shown
    expiry = int(lab.leasefile.read_text().split()[0])  # the server's record was extended
    assert expiry >= int(leases[-1]["obtained_at"]) + 119
    log = (lab.tmp / "dnsmasq.log").read_text()
    assert log.count("DHCPACK(eth0)") >= 3 and "DHCPNAK" not in log


@pytest.mark.lab
def test_renumbered_site_naks_the_renewal_and_the_station_moves_to_a_new_address(
    silent_lab: DhcpLab,
) -> None:
    """The site's DHCP server is replaced by one with another pool: at T1 it NAKs the
    renewal; the station drops the old address and takes one from the new pool."""
    lab = silent_lab
    short = ("--dhcp-option=58,4", "--dhcp-option=59,7", "--no-ping")
    old_server = lab.start_dnsmasq("2m", *short)
    station, lines = keeping(lab)
    first = json.loads(lines.get(timeout=WAIT))
    assert 100 <= int(first["address"].rsplit(".", 1)[1]) <= 150
    lab.server.stop(old_server)
    lab.leasefile.unlink()
    lab.start_dnsmasq("2m", *short, "--dhcp-authoritative", pool="192.0.2.200,192.0.2.250")
    try:
        second = json.loads(lines.get(timeout=WAIT))  # T1 (4 s), NAK, DISCOVER, new lease
    except queue.Empty:
        station.kill()
        pytest.fail(f"no new lease in {WAIT:g} s; stderr: {station.communicate(timeout=5)[1]}")
    assert 200 <= int(second["address"].rsplit(".", 1)[1]) <= 250
    shown = lab.client_addresses()
    assert f"inet {second['address']}/24" in shown
    assert f"inet {first['address']}/" not in shown  # the lost address is gone
    assert "default via 192.0.2.1 dev eth0" in lab.client.ip("-4", "route")
    lab.client.stop(station)
    assert station.stderr is not None
    assert "lost: DHCPNAK from 192.0.2.1" in station.stderr.read()
    assert "DHCPNAK(eth0)" in (lab.tmp / "dnsmasq.log").read_text()


@pytest.mark.unit
def test_broadcast_frame_is_from_address_0_with_valid_checksums() -> None:
    """RFC 2131 4.1: until it has an address, the client sends from 0.0.0.0."""
    payload = build_discover(0x1234, MAC)
    frame = broadcast_frame(payload, bytes.fromhex(MAC.replace(":", "")))
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x00"
    ip_header, udp = frame[14:34], frame[34:]
    assert ip_header[12:16] == bytes(4) and ip_header[16:20] == b"\xff" * 4
    assert _ones_sum(ip_header) == 0xFFFF  # the header checksum verifies
    assert struct.unpack("!HHH", udp[:6]) == (68, 67, 8 + len(payload))
    pseudo = bytes(4) + b"\xff" * 4 + struct.pack("!BBH", 0, 17, len(udp))
    assert _ones_sum(pseudo + udp) == 0xFFFF and udp[8:] == payload


def _ones_sum(data: bytes) -> int:
    data += b"\x00" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.lab
def test_a_station_with_another_link_up_still_asks_from_address_0(lab: DhcpLab) -> None:
    """With the LTE modem's address up, a UDP socket would send the DISCOVER from it; the
    server must see 0.0.0.0 (RFC 2131 4.1), and the exchange still completes."""
    lab.client.ip("link", "add", "lte0", "type", "veth", "peer", "name", "modem0")
    lab.client.ip("addr", "add", "203.0.113.2/24", "dev", "lte0")
    lab.client.ip("link", "set", "lte0", "up")
    lab.client.ip("link", "set", "modem0", "up")
    zero, other = "ip saddr 0.0.0.0 udp dport 67", "ip saddr 203.0.113.2 udp dport 67"
    count_packets(lab.server, zero, other)
    done = lab.dhcp("--json")
    assert done.returncode == 0, done.stderr
    assert nft_packets(lab.server, zero) >= 2  # DISCOVER and REQUEST
    assert nft_packets(lab.server, other) == 0
