"""DHCP client (RFC 2131 / RFC 2132): the station's address, router and DNS servers.

Why: "DHCP is used on the local network to assign an IP address to PlugStream and
give the IP address to the DNS server" (vendor article, UDP port 68). The DNS
servers the lease names are the resolver's priorities 1 and 2, so their ORDER is
kept from the wire (option 6) to :attr:`Lease.dns_servers`.

Layers, like :mod:`plugstream.net.ntp`:

* sans-I/O packets: :func:`build_discover`, :func:`build_request`,
  :func:`build_release` return bytes; :func:`parse` turns bytes into a
  :class:`DhcpMessage` (and raises :class:`MalformedPacket`);
* :class:`DhcpClient`: the INIT → SELECTING → REQUESTING → BOUND state machine,
  then RENEWING (T1) → REBINDING (T2) → expiry (RFC 2131 §4.4.5): a station runs
  for years on one lease. Events (:meth:`~DhcpClient.start`,
  :meth:`~DhcpClient.datagram`, :meth:`~DhcpClient.tick`) return actions
  (:class:`Send`, :class:`Offered`, :class:`Bound`, :class:`Failed`, :class:`Lost`,
  :class:`Expired`); time and randomness are passed in, so the RFC's
  retransmission back-off and the T1/T2 timers are tested without sleeping;
* a thin asyncio shell: :func:`obtain_lease` (a real exchange on an interface,
  then :func:`apply_lease` with iproute2), :func:`keep_lease` (obtain, then renew
  for ever, the UDP 68 socket open only while an exchange is in flight) and
  :func:`discover` (DISCOVER → OFFER only, takes no address: netcheck's "does
  DHCP give an address and DNS?");
* readers of the system DHCP client's lease on a real device
  (:func:`read_system_lease`): systemd-networkd, dhclient, dhcpcd.

``python -m plugstream.net.dhcp IFACE --json`` runs the shell and prints the lease
(the lab runs it inside a network namespace); ``--keep`` keeps renewing it and
prints every lease (the first and each renewal) as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import math
import random
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Final, Literal

from .timeouts import within

__all__ = [
    "BROADCAST_FLAG",
    "CLIENT_PORT",
    "EXCHANGE_STATES",
    "INFINITE_LEASE",
    "MAGIC_COOKIE",
    "PARAMETER_REQUEST_LIST",
    "SERVER_PORT",
    "Action",
    "Bound",
    "DhcpClient",
    "DhcpError",
    "DhcpMessage",
    "Expired",
    "Failed",
    "Lease",
    "Lost",
    "MalformedPacket",
    "MessageType",
    "Offered",
    "Option",
    "Send",
    "apply_lease",
    "broadcast_frame",
    "build_discover",
    "build_release",
    "build_renew",
    "build_request",
    "discover",
    "keep_lease",
    "lease_from_message",
    "main",
    "obtain_lease",
    "parse",
    "parse_dhclient_leases",
    "parse_dhcpcd_lease",
    "parse_networkd_lease",
    "read_mac",
    "read_system_lease",
    "remove_lease",
]

log = logging.getLogger("plugstream.net.dhcp")

SERVER_PORT: Final = 67
CLIENT_PORT: Final = 68
"""The article's "UDP port 68": the client's port; servers listen on 67."""
MAGIC_COOKIE: Final = b"\x63\x82\x53\x63"
BROADCAST_FLAG: Final = 0x8000
"""RFC 2131 §4.1: the client has no address yet, so the server must broadcast its reply."""
INFINITE_LEASE: Final = 0xFFFF_FFFF
"""Option 51's "infinity" (RFC 2131 §3.3)."""
_BOOTREQUEST: Final = 1
_BOOTREPLY: Final = 2
_HTYPE_ETHERNET: Final = 1
_HEADER: Final = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_HEADER_SIZE: Final = _HEADER.size  # 236
_MIN_PACKET: Final = 300
"""BOOTP's minimum message size (RFC 1542 §2.1); some relays drop shorter ones."""
_ZERO: Final = "0.0.0.0"
_LIMITED_BROADCAST: Final = "255.255.255.255"


class Option(IntEnum):
    """The RFC 2132 options this client sends or reads."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS_SERVERS = 6
    HOSTNAME = 12
    DOMAIN_NAME = 15
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    CLIENT_ID = 61
    END = 255


class MessageType(IntEnum):
    """Option 53's values (RFC 2132 §9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


PARAMETER_REQUEST_LIST: Final[tuple[int, ...]] = (1, 3, 6, 15, 51, 54, 58, 59)
"""Option 55: mask, router, DNS, domain name, lease time, server id, T1, T2."""


class DhcpError(Exception):
    """DHCP gave no lease; ``str()`` says which step failed and why."""


class MalformedPacket(DhcpError):
    """Bytes that are not a DHCP message (too short, no magic cookie, bad options)."""


# --------------------------------------------------------------------------- packets


def _mac_bytes(mac: str | bytes) -> bytes:
    if isinstance(mac, bytes):
        raw = mac
    else:
        parts = re.split(r"[:\-]", mac.strip())
        try:
            raw = bytes(int(part, 16) for part in parts)
        except ValueError:
            raw = b""
    if len(raw) != 6:
        raise ValueError(f"not an Ethernet MAC address: {mac!r}")
    return raw


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ip_bytes(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def _ip_text(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _ip_list(raw: bytes | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(_ip_text(raw[i : i + 4]) for i in range(0, len(raw) - len(raw) % 4, 4))


@dataclass(frozen=True)
class DhcpMessage:
    """One BOOTP/DHCP message; ``options`` keeps the wire order (RFC 3396 parts joined)."""

    op: int
    xid: int
    chaddr: bytes
    """The client's hardware address (``hlen`` bytes, 6 for Ethernet)."""
    options: dict[int, bytes] = field(default_factory=dict)
    ciaddr: str = _ZERO
    yiaddr: str = _ZERO
    siaddr: str = _ZERO
    giaddr: str = _ZERO
    flags: int = 0
    secs: int = 0
    htype: int = _HTYPE_ETHERNET
    hops: int = 0

    @property
    def message_type(self) -> MessageType | None:
        raw = self.options.get(Option.MESSAGE_TYPE)
        if raw is None or len(raw) != 1:
            return None
        try:
            return MessageType(raw[0])
        except ValueError:  # a type this client does not know (RFC 2132 §9.6 lists 8)
            return None

    def _address(self, option: int) -> str | None:
        raw = self.options.get(option)
        return _ip_text(raw) if raw is not None and len(raw) == 4 else None

    def _u32(self, option: int) -> int | None:
        raw = self.options.get(option)
        return int.from_bytes(raw, "big") if raw is not None and len(raw) == 4 else None

    @property
    def server_id(self) -> str | None:
        return self._address(Option.SERVER_ID)

    @property
    def subnet_mask(self) -> str | None:
        return self._address(Option.SUBNET_MASK)

    @property
    def routers(self) -> tuple[str, ...]:
        return _ip_list(self.options.get(Option.ROUTER))

    @property
    def dns_servers(self) -> tuple[str, ...]:
        """Option 6 in the server's order: primary first (the resolver's priority 1)."""
        return _ip_list(self.options.get(Option.DNS_SERVERS))

    @property
    def lease_time(self) -> int | None:
        return self._u32(Option.LEASE_TIME)

    @property
    def renewal_time(self) -> int | None:
        """Option 58, T1 in seconds after the grant."""
        return self._u32(Option.RENEWAL_TIME)

    @property
    def rebinding_time(self) -> int | None:
        """Option 59, T2 in seconds after the grant."""
        return self._u32(Option.REBINDING_TIME)

    @property
    def message(self) -> str | None:
        """Option 56, the server's reason (e.g. in a DHCPNAK)."""
        raw = self.options.get(Option.MESSAGE)
        return raw.decode("utf-8", "replace").rstrip("\x00") if raw is not None else None

    @property
    def mac(self) -> str:
        return _mac_text(self.chaddr)

    def encode(self) -> bytes:
        """The wire bytes: header, magic cookie, options, END, padded to 300 bytes."""
        header = _HEADER.pack(
            self.op,
            self.htype,
            len(self.chaddr),
            self.hops,
            self.xid,
            self.secs,
            self.flags,
            _ip_bytes(self.ciaddr),
            _ip_bytes(self.yiaddr),
            _ip_bytes(self.siaddr),
            _ip_bytes(self.giaddr),
            self.chaddr.ljust(16, b"\x00"),
            b"",
            b"",
        )
        body = bytearray(MAGIC_COOKIE)
        for code, value in self.options.items():
            if code in (Option.PAD, Option.END):
                continue
            for i in range(0, max(len(value), 1), 255):  # RFC 3396: long options split
                part = value[i : i + 255]
                body += bytes((code, len(part))) + part
        body.append(Option.END)
        return (header + bytes(body)).ljust(_MIN_PACKET, b"\x00")


def parse(data: bytes) -> DhcpMessage:
    """Decode one DHCP message; :class:`MalformedPacket` says what is wrong with it.

    Option overload (52) is not followed: ``file``/``sname`` stay unread, which no
    server in practice needs for the options this station uses.
    """
    if len(data) < _HEADER_SIZE + len(MAGIC_COOKIE):
        raise MalformedPacket(f"{len(data)} bytes is too short for a DHCP message")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, _sname, _file) = (
        _HEADER.unpack_from(data)
    )
    if data[_HEADER_SIZE : _HEADER_SIZE + 4] != MAGIC_COOKIE:
        raise MalformedPacket("no DHCP magic cookie (a plain BOOTP message?)")
    if not 1 <= hlen <= 16:
        raise MalformedPacket(f"hardware address length {hlen} is out of range")
    options: dict[int, bytes] = {}
    i = _HEADER_SIZE + 4
    while i < len(data):
        code = data[i]
        if code == Option.END:
            break
        if code == Option.PAD:
            i += 1
            continue
        if i + 1 >= len(data):
            raise MalformedPacket(f"option {code} is cut off before its length")
        length = data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise MalformedPacket(f"option {code} is cut off ({len(value)} of {length} bytes)")
        options[code] = options.get(code, b"") + value  # RFC 3396: parts concatenate
        i += 2 + length
    return DhcpMessage(
        op=op,
        xid=xid,
        chaddr=bytes(chaddr[:hlen]),
        options=options,
        ciaddr=_ip_text(ci),
        yiaddr=_ip_text(yi),
        siaddr=_ip_text(si),
        giaddr=_ip_text(gi),
        flags=flags,
        secs=secs,
        htype=htype,
        hops=hops,
    )


def _client_options(
    kind: MessageType, mac: bytes, hostname: str | None, extra: Iterable[tuple[int, bytes]] = ()
) -> dict[int, bytes]:
    options: dict[int, bytes] = {Option.MESSAGE_TYPE: bytes((kind,))}
    options.update(extra)
    options[Option.CLIENT_ID] = bytes((_HTYPE_ETHERNET,)) + mac
    if hostname:
        options[Option.HOSTNAME] = hostname.encode("ascii", "replace")
    if kind in (MessageType.DISCOVER, MessageType.REQUEST):
        options[Option.PARAMETER_REQUEST_LIST] = bytes(PARAMETER_REQUEST_LIST)
    return options


def build_discover(
    xid: int, mac: str | bytes, *, hostname: str | None = None, secs: int = 0
) -> bytes:
    """DHCPDISCOVER, broadcast flag set: "who will give me an address?"."""
    raw = _mac_bytes(mac)
    return DhcpMessage(
        op=_BOOTREQUEST,
        xid=xid,
        chaddr=raw,
        options=_client_options(MessageType.DISCOVER, raw, hostname),
        flags=BROADCAST_FLAG,
        secs=secs,
    ).encode()


def build_request(
    xid: int,
    mac: str | bytes,
    *,
    requested_ip: str,
    server_id: str,
    hostname: str | None = None,
    secs: int = 0,
) -> bytes:
    """DHCPREQUEST in SELECTING state (RFC 2131 §4.3.2): names the chosen server (54)
    and the offered address (50); ``ciaddr`` stays 0.0.0.0, the reply is broadcast."""
    raw = _mac_bytes(mac)
    extra = (
        (Option.REQUESTED_IP, _ip_bytes(requested_ip)),
        (Option.SERVER_ID, _ip_bytes(server_id)),
    )
    return DhcpMessage(
        op=_BOOTREQUEST,
        xid=xid,
        chaddr=raw,
        options=_client_options(MessageType.REQUEST, raw, hostname, extra),
        flags=BROADCAST_FLAG,
        secs=secs,
    ).encode()


def build_renew(
    xid: int,
    mac: str | bytes,
    *,
    address: str,
    hostname: str | None = None,
    secs: int = 0,
) -> bytes:
    """DHCPREQUEST in RENEWING/REBINDING state (RFC 2131 §4.3.2, §4.4.5): ``ciaddr`` is
    the address we hold, no options 50/54 (the server knows us), no broadcast flag:
    the reply comes back unicast to the address."""
    raw = _mac_bytes(mac)
    return DhcpMessage(
        op=_BOOTREQUEST,
        xid=xid,
        chaddr=raw,
        options=_client_options(MessageType.REQUEST, raw, hostname),
        ciaddr=address,
        secs=secs,
    ).encode()


def build_release(xid: int, mac: str | bytes, *, address: str, server_id: str) -> bytes:
    """DHCPRELEASE (RFC 2131 §4.4.6): unicast to the server, ``ciaddr`` = the address."""
    raw = _mac_bytes(mac)
    extra = ((Option.SERVER_ID, _ip_bytes(server_id)),)
    return DhcpMessage(
        op=_BOOTREQUEST,
        xid=xid,
        chaddr=raw,
        options=_client_options(MessageType.RELEASE, raw, None, extra),
        ciaddr=address,
    ).encode()


# --------------------------------------------------------------------------- lease


@dataclass(frozen=True)
class Lease:
    """What DHCP gave the station: its address and where its DNS queries go first."""

    address: str
    prefix_len: int
    routers: tuple[str, ...]
    dns_servers: tuple[str, ...]
    """In the server's order: primary (priority 1), secondary (priority 2)."""
    lease_time: int | None
    """Seconds; :data:`INFINITE_LEASE` for ever; None when a lease file does not say."""
    server_id: str | None
    obtained_at: float
    """Unix time the lease was granted (a lease file's: its write time or expiry minus lease time)."""
    renewal_time: int | None = None
    """T1, option 58: seconds after the grant to ask the server to extend; None: 0.5 x lease."""
    rebinding_time: int | None = None
    """T2, option 59: seconds after the grant to ask any server; None: 0.875 x lease."""

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.address}/{self.prefix_len}")

    @property
    def netmask(self) -> str:
        return str(self.interface.netmask)

    @property
    def expires_at(self) -> float | None:
        """Unix time the lease runs out; None for an infinite or unknown lease."""
        if self.lease_time is None or self.lease_time == INFINITE_LEASE:
            return None
        return self.obtained_at + self.lease_time

    @property
    def rebind_at(self) -> float | None:
        """Unix time of T2 (RFC 2131 §4.4.5), never after expiry; None for an infinite lease."""
        expires = self.expires_at
        if expires is None or self.lease_time is None:
            return None
        t2 = self.rebinding_time if self.rebinding_time is not None else 0.875 * self.lease_time
        return min(self.obtained_at + t2, expires)

    @property
    def renew_at(self) -> float | None:
        """Unix time of T1, never after T2; None for an infinite lease (it never renews)."""
        rebind = self.rebind_at
        if rebind is None or self.lease_time is None:
            return None
        t1 = self.renewal_time if self.renewal_time is not None else 0.5 * self.lease_time
        return min(self.obtained_at + t1, rebind)

    def remaining(self, now: float) -> float | None:
        """Seconds of the lease left at ``now`` (0 when expired); None for an infinite lease."""
        expires = self.expires_at
        return None if expires is None else max(0.0, expires - now)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists, order kept)."""
        data = dataclasses.asdict(self)
        data["routers"], data["dns_servers"] = list(self.routers), list(self.dns_servers)
        return data


def _prefix_len(mask: str | None, address: str) -> int:
    if mask is not None:
        return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    first = int(address.split(".")[0])  # RFC 2131 leaves it to the client: classful
    return 8 if first < 128 else 16 if first < 192 else 24


def lease_from_message(message: DhcpMessage, obtained_at: float) -> Lease:
    """The :class:`Lease` an OFFER or ACK (or a dhcpcd lease file) describes."""
    address = message.yiaddr if message.yiaddr != _ZERO else message.ciaddr
    if address == _ZERO:
        raise DhcpError("the DHCP message carries no address (yiaddr 0.0.0.0)")
    return Lease(
        address=address,
        prefix_len=_prefix_len(message.subnet_mask, address),
        routers=message.routers,
        dns_servers=message.dns_servers,
        lease_time=message.lease_time,
        server_id=message.server_id,
        obtained_at=obtained_at,
        renewal_time=message.renewal_time,
        rebinding_time=message.rebinding_time,
    )


# --------------------------------------------------------------------------- state machine


@dataclass(frozen=True)
class Send:
    """Transmit ``payload`` to ``destination``:67 (broadcast until the client is bound)."""

    payload: bytes
    destination: str = _LIMITED_BROADCAST


@dataclass(frozen=True)
class Offered:
    """A server offered this (a ``discover_only`` client is then done)."""

    lease: Lease


@dataclass(frozen=True)
class Bound:
    """The server ACKed: the lease is the station's."""

    lease: Lease


@dataclass(frozen=True)
class Failed:
    """The exchange gave up; ``reason`` names the step."""

    reason: str


@dataclass(frozen=True)
class Lost:
    """A server refused to extend the lease (DHCPNAK while RENEWING or REBINDING): stop
    using the address now; the client starts over with a DHCPDISCOVER."""

    lease: Lease
    reason: str


@dataclass(frozen=True)
class Expired:
    """The lease ran out with no server extending it: the address is no longer ours;
    the client starts over with a DHCPDISCOVER."""

    lease: Lease


Action = Send | Offered | Bound | Failed | Lost | Expired

State = Literal[
    "INIT", "SELECTING", "REQUESTING", "BOUND", "RENEWING", "REBINDING", "OFFERED", "FAILED"
]
EXCHANGE_STATES: Final[frozenset[str]] = frozenset(
    {"SELECTING", "REQUESTING", "RENEWING", "REBINDING"}
)
"""States with a message in flight: only then does the shell keep UDP 68 open."""


class DhcpClient:
    """RFC 2131 client, sans-I/O: INIT → SELECTING → REQUESTING → BOUND, then
    BOUND → RENEWING → REBINDING → (expiry) INIT.

    Retransmission (§4.1): 4 s before the first retry, doubled each time up to 64 s,
    each delay randomized by ±1 s; at most ``max_transmissions`` per message. A
    REQUEST that is never answered, or a DHCPNAK, sends the client back to INIT with
    a new xid (§3.1 step 4/5), at most ``max_restarts`` times. Replies with the wrong
    op, xid or chaddr, or that are not DHCP, are dropped (counted in ``ignored``).

    Keeping the lease (§4.4.5): at T1 (:attr:`Lease.renew_at`) a DHCPREQUEST with
    ``ciaddr`` is unicast to the lease's server (RENEWING); unanswered, it is sent
    again after half the time left to T2, but no sooner than ``min_retry`` seconds.
    At T2 the same request is broadcast to any server (REBINDING), retried after half
    the time left to expiry. A DHCPACK binds the extended lease (:class:`Bound`
    again); a DHCPNAK gives :class:`Lost`, expiry :class:`Expired`, and both go back
    to INIT with a DHCPDISCOVER. An infinite lease is never renewed.
    """

    def __init__(
        self,
        mac: str | bytes,
        *,
        rng: random.Random,
        hostname: str | None = None,
        discover_only: bool = False,
        initial_timeout: float = 4.0,
        max_timeout: float = 64.0,
        max_transmissions: int = 4,
        max_restarts: int = 3,
        min_retry: float = 60.0,
    ) -> None:
        self.mac = _mac_bytes(mac)
        self.rng = rng
        self.hostname = hostname
        self.discover_only = discover_only
        self.initial_timeout = initial_timeout
        self.max_timeout = max_timeout
        self.max_transmissions = max_transmissions
        self.max_restarts = max_restarts
        self.min_retry = min_retry
        self.state: State = "INIT"
        self.xid = 0
        self.lease: Lease | None = None
        self.offer: DhcpMessage | None = None
        self.next_deadline: float | None = None
        """When :meth:`tick` next has work (a retransmission or giving up)."""
        self.transmissions = 0
        self.restarts = 0
        self.last_nak: str | None = None
        self.ignored = 0
        self.last_ignored: str | None = None
        self._started_at = 0.0
        self._packet = b""

    # ---- events

    def start(self, now: float) -> list[Action]:
        """Begin (INIT → SELECTING): broadcast the first DHCPDISCOVER. Also starts over
        after :class:`Failed` (a station keeps trying)."""
        if self.state not in ("INIT", "FAILED"):
            raise RuntimeError(f"DhcpClient.start() in state {self.state}")
        self.restarts = 0
        self._started_at = now
        return self._select(now)

    def datagram(self, data: bytes, now: float) -> list[Action]:
        """A datagram arrived on port 68."""
        try:
            message = parse(data)
        except MalformedPacket as exc:
            return self._ignore(str(exc))
        if message.op != _BOOTREPLY:
            return self._ignore("not a BOOTREPLY")
        if message.xid != self.xid:
            return self._ignore(f"xid {message.xid:#010x} is not ours ({self.xid:#010x})")
        if message.chaddr != self.mac:
            return self._ignore(f"chaddr {message.mac} is not ours")
        kind = message.message_type
        if self.state == "SELECTING" and kind == MessageType.OFFER:
            return self._on_offer(message, now)
        if self.state == "REQUESTING" and kind == MessageType.ACK:
            return self._on_ack(message, now)
        if self.state == "REQUESTING" and kind == MessageType.NAK:
            return self._on_nak(message, now)
        if self.state in ("RENEWING", "REBINDING") and kind == MessageType.ACK:
            return self._on_extended(message, now)
        if self.state in ("RENEWING", "REBINDING") and kind == MessageType.NAK:
            return self._on_refused(message, now)
        name = kind.name if kind is not None else "no message type"
        return self._ignore(f"DHCP{name} in state {self.state}")

    def tick(self, now: float) -> list[Action]:
        """Time passed: retransmit, restart or give up when :attr:`next_deadline` is due."""
        if self.next_deadline is None or now < self.next_deadline:
            return []
        if self.state in ("BOUND", "RENEWING", "REBINDING"):
            return self._keep(now)
        if self.state not in ("SELECTING", "REQUESTING"):
            return []
        if self.transmissions < self.max_transmissions:
            return self._transmit(now)
        if self.state == "SELECTING":
            return self._fail(f"no DHCPOFFER after {self.transmissions} DHCPDISCOVERs")
        assert self.offer is not None
        log.info("no DHCPACK from %s, back to INIT", self.offer.server_id)
        return self._restart(
            now, f"no DHCPACK from {self.offer.server_id} after {self.transmissions} DHCPREQUESTs"
        )

    def release(self) -> list[Action]:
        """Give the bound lease back (DHCPRELEASE, unicast to its server)."""
        if (
            self.state not in ("BOUND", "RENEWING", "REBINDING")
            or self.lease is None
            or self.lease.server_id is None
        ):
            return []
        self.state = "INIT"
        self.next_deadline = None
        payload = build_release(
            self.xid, self.mac, address=self.lease.address, server_id=self.lease.server_id
        )
        return [Send(payload, self.lease.server_id)]

    def waiting_for(self) -> str:
        """The step in progress, for error messages: "DHCPOFFER" / "DHCPACK from ..."."""
        if self.state == "REQUESTING" and self.offer is not None:
            return f"DHCPACK from {self.offer.server_id} for {self.offer.yiaddr}"
        if self.state in ("RENEWING", "REBINDING") and self.lease is not None:
            who = self.lease.server_id if self.state == "RENEWING" else "any server"
            return f"DHCPACK from {who} extending {self.lease.address}"
        return "DHCPOFFER"

    # ---- internals

    def _ignore(self, reason: str) -> list[Action]:
        self.ignored += 1
        self.last_ignored = reason
        log.debug("ignored a datagram: %s", reason)
        return []

    def _select(self, now: float) -> list[Action]:
        self.state = "SELECTING"
        self.xid = self.rng.getrandbits(32)
        self.offer = None
        self.transmissions = 0
        self._packet = b""
        return self._transmit(now)

    def _secs(self, now: float) -> int:
        return max(0, min(0xFFFF, int(now - self._started_at)))

    def _transmit(self, now: float) -> list[Action]:
        if self.state == "SELECTING":
            payload = build_discover(
                self.xid, self.mac, hostname=self.hostname, secs=self._secs(now)
            )
        else:
            assert self.offer is not None and self.offer.server_id is not None
            payload = self._packet or build_request(
                self.xid,
                self.mac,
                requested_ip=self.offer.yiaddr,
                server_id=self.offer.server_id,
                hostname=self.hostname,
                secs=self._secs(now),
            )
            self._packet = payload  # retransmit the same REQUEST (same secs, RFC 2131 §4.4.1)
        delay = min(self.initial_timeout * 2**self.transmissions, self.max_timeout)
        self.transmissions += 1
        self.next_deadline = now + delay + self.rng.uniform(-1.0, 1.0)
        return [Send(payload)]

    def _on_offer(self, message: DhcpMessage, now: float) -> list[Action]:
        if message.server_id is None:
            return self._ignore("DHCPOFFER without a server identifier (option 54)")
        if message.yiaddr == _ZERO:
            return self._ignore("DHCPOFFER without an address")
        lease = lease_from_message(message, now)
        if self.discover_only:
            self.state = "OFFERED"
            self.next_deadline = None
            self.lease = lease
            return [Offered(lease)]
        self.state = "REQUESTING"
        self.offer = message
        self.transmissions = 0
        self._packet = b""
        return [Offered(lease), *self._transmit(now)]

    def _on_ack(self, message: DhcpMessage, now: float) -> list[Action]:
        assert self.offer is not None
        if message.server_id not in (None, self.offer.server_id):
            return self._ignore(f"DHCPACK from {message.server_id}, not the chosen server")
        if message.yiaddr == _ZERO:
            return self._ignore("DHCPACK without an address")
        lease = lease_from_message(message, now)
        if lease.server_id is None:
            lease = dataclasses.replace(lease, server_id=self.offer.server_id)
        return self._bind(lease)

    def _bind(self, lease: Lease) -> list[Action]:
        self.state = "BOUND"
        self.lease = lease
        self.offer = None
        self.transmissions = 0
        self._packet = b""
        self.next_deadline = lease.renew_at  # None: an infinite lease never renews
        return [Bound(lease)]

    # ---- keeping the lease (RFC 2131 §4.4.5)

    def _keep(self, now: float) -> list[Action]:
        """A BOUND/RENEWING/REBINDING deadline is due: T1, a retry, T2 or expiry."""
        lease = self.lease
        assert lease is not None
        expires, rebind = lease.expires_at, lease.rebind_at
        if expires is None or rebind is None:  # infinite: nothing to do, ever
            self.next_deadline = None
            return []
        if now >= expires:
            log.warning("lease of %s expired with no DHCPACK; back to INIT", lease.address)
            return [Expired(lease), *self._reinit(now)]
        if now >= rebind or lease.server_id is None:
            if self.state != "REBINDING":
                log.info("no DHCPACK from %s by T2: rebinding", lease.server_id)
                self._enter("REBINDING", now)
            return self._send_extend(now, _LIMITED_BROADCAST, until=expires)
        if self.state != "RENEWING":
            log.info("T1: renewing %s with %s", lease.address, lease.server_id)
            self._enter("RENEWING", now)
        return self._send_extend(now, lease.server_id, until=rebind)

    def _enter(self, state: State, now: float) -> None:
        self.state = state
        self.xid = self.rng.getrandbits(32)
        self.transmissions = 0
        self._started_at = now

    def _send_extend(self, now: float, destination: str, *, until: float) -> list[Action]:
        """One DHCPREQUEST with ``ciaddr``; the next try after half the time left to
        ``until`` (T2 or expiry), no sooner than ``min_retry`` and no later than ``until``."""
        assert self.lease is not None
        payload = build_renew(
            self.xid,
            self.mac,
            address=self.lease.address,
            hostname=self.hostname,
            secs=self._secs(now),
        )
        self.transmissions += 1
        self.next_deadline = min(until, now + max(self.min_retry, (until - now) / 2))
        return [Send(payload, destination)]

    def _on_extended(self, message: DhcpMessage, now: float) -> list[Action]:
        old = self.lease
        assert old is not None
        if self.state == "RENEWING" and message.server_id not in (None, old.server_id):
            return self._ignore(f"DHCPACK from {message.server_id}, not our server")
        if message.yiaddr == _ZERO and message.ciaddr == _ZERO:
            return self._ignore("DHCPACK without an address")
        lease = lease_from_message(message, now)
        if lease.server_id is None:
            lease = dataclasses.replace(lease, server_id=old.server_id)
        log.info("lease of %s extended by %s", lease.address, lease.server_id)
        return self._bind(lease)

    def _on_refused(self, message: DhcpMessage, now: float) -> list[Action]:
        lease = self.lease
        assert lease is not None
        if self.state == "RENEWING" and message.server_id not in (None, lease.server_id):
            return self._ignore(f"DHCPNAK from {message.server_id}, not our server")
        server = message.server_id or lease.server_id
        self.last_nak = f"DHCPNAK from {server}: {message.message or '(no message)'}"
        log.warning("%s; lease of %s lost, back to INIT", self.last_nak, lease.address)
        return [Lost(lease, self.last_nak), *self._reinit(now)]

    def _reinit(self, now: float) -> list[Action]:
        """The lease is gone: INIT, then a fresh DHCPDISCOVER (§4.4.5 last paragraphs)."""
        self.lease = None
        self.state = "INIT"
        return self.start(now)

    def _on_nak(self, message: DhcpMessage, now: float) -> list[Action]:
        assert self.offer is not None
        if message.server_id is not None and message.server_id != self.offer.server_id:
            return self._ignore(f"DHCPNAK from {message.server_id}, not the chosen server")
        server = message.server_id or self.offer.server_id
        self.last_nak = f"DHCPNAK from {server}: {message.message or '(no message)'}"
        log.warning("%s; back to INIT", self.last_nak)
        return self._restart(now, self.last_nak)

    def _restart(self, now: float, why: str) -> list[Action]:
        if self.restarts >= self.max_restarts:
            return self._fail(f"{why} (gave up after {self.restarts} restarts)")
        self.restarts += 1
        return self._select(now)

    def _fail(self, reason: str) -> list[Action]:
        self.state = "FAILED"
        self.next_deadline = None
        return [Failed(reason)]


# --------------------------------------------------------------------------- asyncio shell


def read_mac(ifname: str, *, root: Path = Path("/")) -> str:
    """The interface's MAC from sysfs (``/sys/class/net/IF/address``)."""
    path = root / "sys/class/net" / ifname / "address"
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise DhcpError(f"no interface {ifname!r}: cannot read {path}: {exc.strerror}") from exc


def _open_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        # The station has no address yet: the device, not a route, picks the way out.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode() + b"\x00")
        sock.bind(("0.0.0.0", CLIENT_PORT))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise DhcpError(f"cannot open the DHCP client socket on {ifname} (UDP 68): {exc}") from exc
    return sock


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def broadcast_frame(payload: bytes, mac: bytes) -> bytes:
    """An Ethernet frame carrying ``payload`` from 0.0.0.0:68 to 255.255.255.255:67.

    RFC 2131 4.1: before it has an address, a client sends with source address 0. A UDP
    socket cannot: the kernel takes another interface's address (the LTE modem's, say),
    so the frame is built here and sent on a packet socket."""
    source, destination = bytes(4), b"\xff" * 4
    length = 8 + len(payload)
    pseudo = source + destination + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    udp = struct.pack("!HHHH", CLIENT_PORT, SERVER_PORT, length, 0) + payload
    udp_sum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, socket.IPPROTO_UDP, 0, source, destination
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp


def _unaddressed(payload: bytes) -> bool:
    """A message the client sends before it has an address (ciaddr 0, RFC 2131 4.1)."""
    return payload[12:16] == bytes(4)


async def _send(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, ifname: str, mac: bytes, action: Send
) -> None:
    """One message: from address 0 on a packet socket while the client has none (where
    packet sockets exist), else on the UDP socket."""
    if action.destination == _LIMITED_BROADCAST and _unaddressed(action.payload):
        af_packet = getattr(socket, "AF_PACKET", None)
        if af_packet is not None:
            with socket.socket(af_packet, socket.SOCK_RAW) as raw:
                raw.bind((ifname, 0))
                raw.send(broadcast_frame(action.payload, mac))
            return
    await loop.sock_sendto(sock, action.payload, (action.destination, SERVER_PORT))


async def _run_exchange(
    client: DhcpClient,
    ifname: str,
    timeout: float,
    clock: Callable[[], float],
) -> Lease:
    loop = asyncio.get_running_loop()
    sock = _open_socket(ifname)
    try:
        give_up = loop.time() + timeout
        actions = client.start(clock())
        sent = 0
        while True:
            for action in actions:
                if isinstance(action, Send):
                    try:
                        await _send(loop, sock, ifname, client.mac, action)
                    except OSError as exc:
                        raise DhcpError(f"DHCP on {ifname}: cannot send: {exc}") from exc
                    sent += 1
                elif isinstance(action, Bound) or (
                    isinstance(action, Offered) and client.discover_only
                ):
                    return action.lease
                elif isinstance(action, Failed):
                    raise DhcpError(f"DHCP on {ifname} failed: {action.reason}")
            remaining = give_up - loop.time()
            if remaining <= 0:
                detail = f"; last: {client.last_nak}" if client.last_nak else ""
                raise DhcpError(
                    f"DHCP on {ifname} timed out: no {client.waiting_for()} within "
                    f"{timeout:g} s ({sent} messages sent{detail})"
                )
            wait = remaining
            if client.next_deadline is not None:
                wait = min(wait, max(0.0, client.next_deadline - clock()))
            try:
                data, _ = await within(loop.sock_recvfrom(sock, 4096), wait)
            except TimeoutError:
                actions = client.tick(clock())
            else:
                actions = client.datagram(data, clock())
    finally:
        sock.close()


def _lifetime(lease: Lease, now: float) -> str:
    remaining = lease.remaining(now)
    return "forever" if remaining is None else str(max(1, math.ceil(remaining)))


def apply_lease(
    lease: Lease,
    ifname: str,
    *,
    run: Callable[[Sequence[str]], None] | None = None,
    previous: Lease | None = None,
    now: float | None = None,
) -> None:
    """Put the lease on the interface with iproute2, as an administrator would:
    ``ip addr replace A/P dev IF valid_lft N preferred_lft N`` and ``ip route replace
    default via ROUTER dev IF`` (replace: a renewed lease does not fail on "File
    exists", it just gets its new lifetimes).

    N is the time left on the lease at ``now`` (default: the wall clock), so the
    kernel itself drops the address when the lease runs out, even if this process
    died; ``forever`` for an infinite lease. A ``previous`` lease with another
    address is removed first (the server moved us)."""
    runner = run or _run_ip
    if previous is not None and previous.interface != lease.interface:
        with contextlib.suppress(DhcpError):  # already gone (expired in the kernel)
            runner(["ip", "addr", "del", str(previous.interface), "dev", ifname])
    lifetime = _lifetime(lease, time.time() if now is None else now)
    lifetimes = ["valid_lft", lifetime, "preferred_lft", lifetime]
    runner(["ip", "addr", "replace", str(lease.interface), "dev", ifname, *lifetimes])
    if lease.routers:
        runner(["ip", "route", "replace", "default", "via", lease.routers[0], "dev", ifname])


def remove_lease(
    lease: Lease, ifname: str, *, run: Callable[[Sequence[str]], None] | None = None
) -> None:
    """Take a lost, expired or released lease off the interface: its default route and
    its address. What is already gone (the kernel drops an expired address on its
    own) is not an error."""
    runner = run or _run_ip
    commands: list[list[str]] = []
    if lease.routers:
        commands.append(["ip", "route", "del", "default", "via", lease.routers[0], "dev", ifname])
    commands.append(["ip", "addr", "del", str(lease.interface), "dev", ifname])
    for argv in commands:
        with contextlib.suppress(DhcpError):
            runner(argv)


def _run_ip(argv: Sequence[str]) -> None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10.0)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DhcpError(f"`{' '.join(argv)}` failed: {exc}") from exc
    if done.returncode != 0:
        raise DhcpError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout.strip()}")


async def obtain_lease(
    ifname: str,
    mac: str | None = None,
    *,
    timeout: float = 10.0,
    apply: bool = True,
    hostname: str | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.time,
) -> Lease:
    """A full DISCOVER → OFFER → REQUEST → ACK exchange on ``ifname``; with ``apply``,
    the address and default route are then set (:func:`apply_lease`).

    Raises :class:`DhcpError` naming the step that timed out, or the server's DHCPNAK
    message. Needs root (port 68, SO_BINDTODEVICE, iproute2).
    """
    client = DhcpClient(
        _mac_bytes(mac or read_mac(ifname)), rng=rng or random.SystemRandom(), hostname=hostname
    )
    lease = await _run_exchange(client, ifname, timeout, clock)
    log.info("bound %s/%s on %s from %s", lease.address, lease.prefix_len, ifname, lease.server_id)
    if apply:
        await asyncio.to_thread(apply_lease, lease, ifname)
    return lease


async def keep_lease(
    ifname: str,
    *,
    on_lease: Callable[[Lease], None],
    on_lost: Callable[[str], None] | None = None,
    mac: str | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.time,
    apply: bool = True,
    max_wait: float | None = None,
    hostname: str | None = None,
    min_retry: float = 60.0,
    retry_after: float = 60.0,
) -> None:
    """Obtain a lease on ``ifname`` and keep it for ever (until cancelled): renew at
    T1, rebind at T2, start over after a DHCPNAK or expiry.

    ``on_lease`` gets every lease bound (the first and each extension); ``on_lost``
    the reason a held lease was lost (DHCPNAK, expiry). With ``apply`` the address
    (with the lease's lifetime, :func:`apply_lease`) and default route are set and a
    lost lease is removed (:func:`remove_lease`). The UDP 68 socket is open ONLY while
    an exchange is in flight: the station keeps no listening port between renewals.
    If no server answers at all, it tries again ``retry_after`` s later.

    Times (``min_retry``, ``retry_after``, the lease's T1/T2) are in ``clock``
    seconds; each sleep lasts that many real seconds but at most ``max_wait``, so a
    test can pass a fast clock and a small ``max_wait``. Needs root; raises
    :class:`DhcpError` only if iproute2 cannot apply a lease.
    """
    loop = asyncio.get_running_loop()
    client = DhcpClient(
        _mac_bytes(mac or read_mac(ifname)),
        rng=rng or random.SystemRandom(),
        hostname=hostname,
        min_retry=min_retry,
    )
    cap = math.inf if max_wait is None else max_wait
    sock: socket.socket | None = None
    held: Lease | None = None
    retry_at: float | None = None

    def close() -> None:
        nonlocal sock
        if sock is not None:
            sock.close()
            sock = None

    try:
        actions: list[Action] = client.start(clock())
        while True:
            for action in actions:
                if isinstance(action, Send):
                    # Failing to open or send (interface gone, no route yet) is not fatal
                    # for a station that runs for years: the retry timer sends again.
                    try:
                        if sock is None:
                            sock = _open_socket(ifname)
                        await _send(loop, sock, ifname, client.mac, action)
                    except (OSError, DhcpError) as exc:
                        log.warning(
                            "DHCP on %s: cannot send to %s: %s", ifname, action.destination, exc
                        )
                elif isinstance(action, Bound):
                    close()  # bound: nothing in flight, no open port
                    if apply:
                        await asyncio.to_thread(
                            apply_lease, action.lease, ifname, previous=held, now=clock()
                        )
                    held = action.lease
                    on_lease(action.lease)
                elif isinstance(action, Lost | Expired):
                    if isinstance(action, Lost):
                        why = action.reason
                    else:
                        why = f"lease of {action.lease.address} expired"
                    if apply:
                        await asyncio.to_thread(remove_lease, action.lease, ifname)
                    held = None
                    if on_lost is not None:
                        on_lost(why)
                elif isinstance(action, Failed):
                    close()
                    log.warning(
                        "DHCP on %s: %s; trying again in %g s", ifname, action.reason, retry_after
                    )
                    retry_at = clock() + retry_after
            actions = []
            if client.state in EXCHANGE_STATES and sock is not None:
                wait = cap if client.next_deadline is None else client.next_deadline - clock()
                try:
                    data, _ = await within(loop.sock_recvfrom(sock, 4096), max(0.0, min(wait, cap)))
                except TimeoutError:
                    actions = client.tick(clock())
                else:
                    actions = client.datagram(data, clock())
                continue
            close()
            if client.state == "FAILED":
                assert retry_at is not None
                await asyncio.sleep(max(0.0, min(retry_at - clock(), cap)))
                if clock() >= retry_at:
                    actions = client.start(clock())
            elif client.next_deadline is None:  # an infinite lease: nothing to do, ever
                await asyncio.sleep(min(86400.0, cap))
            else:
                await asyncio.sleep(max(0.0, min(client.next_deadline - clock(), cap)))
                actions = client.tick(clock())
    finally:
        close()


async def discover(
    ifname: str,
    *,
    timeout: float = 10.0,
    mac: str | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.time,
) -> Lease:
    """DISCOVER → OFFER only: what DHCP *would* give, taking no address (netcheck on a
    laptop: "does DHCP give an address and DNS?"). The server's offer just lapses."""
    client = DhcpClient(
        _mac_bytes(mac or read_mac(ifname)), rng=rng or random.SystemRandom(), discover_only=True
    )
    return await _run_exchange(client, ifname, timeout, clock)


# --------------------------------------------------------------------------- lease files


def _ifindex(ifname: str, root: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((root / "sys/class/net" / ifname / "ifindex").read_text().strip())
    return None


def parse_networkd_lease(text: str, *, obtained_at: float) -> Lease | None:
    """A systemd-networkd lease (``/run/systemd/netif/leases/<ifindex>``, KEY=VALUE;
    lists are space separated). None if it names no address."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    address = values.get("ADDRESS")
    if not address:
        return None
    lifetime = values.get("LIFETIME")
    return Lease(
        address=address,
        prefix_len=_prefix_len(values.get("NETMASK"), address),
        routers=tuple(values.get("ROUTER", "").split()),
        dns_servers=tuple(values.get("DNS", "").split()),
        lease_time=int(lifetime) if lifetime and lifetime.isdigit() else None,
        server_id=values.get("SERVER_ADDRESS") or None,
        obtained_at=obtained_at,
        renewal_time=_int_or_none(values.get("T1")),
        rebinding_time=_int_or_none(values.get("T2")),
    )


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


_QUOTED = r'"(?:[^"\\]|\\.)*"'
_STATEMENT = re.compile(rf"(?:[^;\"]|{_QUOTED})*;")
_LEASE_BLOCK = re.compile(rf"\blease\s*\{{((?:[^{{}}\"]|{_QUOTED})*)\}}")
_COMMENT = re.compile(rf"((?:[^\"#\n]|{_QUOTED})*)#[^\n]*")
_DHCLIENT_TIME = re.compile(r"^\d\s+(\d{4}/\d{1,2}/\d{1,2}\s+\d{1,2}:\d{2}:\d{2})$")


def _dhclient_time(value: str) -> float | None:
    """dhclient's ``expire`` value: ``W YYYY/MM/DD HH:MM:SS`` (UTC) or ``epoch N``."""
    value = value.split("#", 1)[0].strip()
    if value.startswith("epoch "):
        with contextlib.suppress(ValueError):
            return float(value.split()[1])
        return None
    match = _DHCLIENT_TIME.match(value)
    if match is None:
        return None
    moment = datetime.strptime(match.group(1), "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
    return moment.timestamp()


def parse_dhclient_leases(text: str, ifname: str, *, file_time: float) -> Lease | None:
    """The LAST ``lease { ... }`` block for ``ifname`` in an ISC dhclient leases file
    (dhclient appends each new lease). ``file_time`` is used when the block has no
    ``expire`` to date it by."""
    found: Lease | None = None
    text = _COMMENT.sub(r"\1", text)
    for block in _LEASE_BLOCK.finditer(text):
        fields: dict[str, str] = {}
        for statement in _STATEMENT.findall(block.group(1)):
            words = statement.strip().rstrip(";").strip()
            if words.startswith("option "):
                words = words[len("option ") :]
            key, _, value = words.partition(" ")
            fields[key] = value.strip()
        if fields.get("interface", "").strip('"') != ifname or "fixed-address" not in fields:
            continue
        address = fields["fixed-address"]
        raw_time = fields.get("dhcp-lease-time", "")
        lease_time = int(raw_time) if raw_time.isdigit() else None
        expire = _dhclient_time(fields.get("expire", ""))
        if expire is not None and lease_time is not None and lease_time != INFINITE_LEASE:
            obtained_at = expire - lease_time
        else:
            obtained_at = file_time
        found = Lease(
            address=address,
            prefix_len=_prefix_len(fields.get("subnet-mask"), address),
            routers=_comma_list(fields.get("routers", "")),
            dns_servers=_comma_list(fields.get("domain-name-servers", "")),
            lease_time=lease_time,
            server_id=fields.get("dhcp-server-identifier") or None,
            obtained_at=obtained_at,
            renewal_time=_int_or_none(fields.get("dhcp-renewal-time")),
            rebinding_time=_int_or_none(fields.get("dhcp-rebinding-time")),
        )
    return found


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_dhcpcd_lease(data: bytes, *, obtained_at: float) -> Lease | None:
    """A dhcpcd lease file: the server's DHCPACK as it came off the wire."""
    try:
        message = parse(data)
        return lease_from_message(message, obtained_at)
    except DhcpError:
        return None


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def read_system_lease(ifname: str, *, root: Path = Path("/")) -> Lease | None:
    """The lease the device's own DHCP client holds for ``ifname``, or None.

    Tried in order: systemd-networkd, dhclient, dhcpcd. ``root`` prefixes every path
    (tests pass a ``tmp_path`` tree); unreadable or garbled files count as absent.
    """
    index = _ifindex(ifname, root)
    if index is not None:
        path = root / "run/systemd/netif/leases" / str(index)
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
            lease = parse_networkd_lease(path.read_text(), obtained_at=_mtime(path))
            if lease is not None:
                return lease

    candidates: list[Path] = []
    for directory, pattern in (
        ("var/lib/dhcp", "dhclient*.leases"),
        ("var/lib/dhclient", "*.lease"),
        ("var/lib/dhclient", "*.leases"),
    ):
        with contextlib.suppress(OSError):
            candidates.extend((root / directory).glob(pattern))
    best: Lease | None = None
    for path in candidates:
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
            lease = parse_dhclient_leases(path.read_text(), ifname, file_time=_mtime(path))
            if lease is not None and (best is None or lease.obtained_at >= best.obtained_at):
                best = lease
    if best is not None:
        return best

    for name in (f"{ifname}.lease", f"dhcpcd-{ifname}.lease"):
        path = root / "var/lib/dhcpcd" / name
        with contextlib.suppress(OSError):
            lease = parse_dhcpcd_lease(path.read_bytes(), obtained_at=_mtime(path))
            if lease is not None:
                return lease
    return None


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m plugstream.net.dhcp IFACE [--json] [--discover] [--no-apply] ...``"""
    parser = argparse.ArgumentParser(
        prog="python -m plugstream.net.dhcp",
        description="Get a DHCP lease on an interface (needs root) and print it.",
    )
    parser.add_argument("ifname")
    parser.add_argument("--mac", help="client hardware address (default: the interface's)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--hostname")
    parser.add_argument("--no-apply", action="store_true", help="do not configure the interface")
    parser.add_argument(
        "--discover", action="store_true", help="DISCOVER/OFFER only: take no address"
    )
    parser.add_argument(
        "--system", action="store_true", help="read the system DHCP client's lease instead"
    )
    parser.add_argument("--json", action="store_true", help="print the lease as JSON")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the lease for ever (renew at T1, rebind at T2): one JSON line per lease",
    )
    args = parser.parse_args(argv)
    if args.keep:
        return _keep_main(args)
    try:
        lease: Lease | None
        if args.system:
            lease = read_system_lease(args.ifname)
            if lease is None:
                raise DhcpError(f"no DHCP lease of the system's client for {args.ifname}")
        elif args.discover:
            lease = asyncio.run(discover(args.ifname, timeout=args.timeout, mac=args.mac))
        else:
            lease = asyncio.run(
                obtain_lease(
                    args.ifname,
                    args.mac,
                    timeout=args.timeout,
                    apply=not args.no_apply,
                    hostname=args.hostname,
                )
            )
    except DhcpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(lease.to_dict()))
    else:
        print(
            f"{lease.address}/{lease.prefix_len} router {', '.join(lease.routers) or '-'} "
            f"dns {', '.join(lease.dns_servers) or '-'} lease {lease.lease_time} s "
            f"server {lease.server_id}"
        )
    return 0


def _keep_main(args: argparse.Namespace) -> int:
    """``--keep``: each lease (first and renewals) as a JSON line, flushed at once so a
    supervisor reading the pipe sees it; a lost lease is reported on stderr."""

    def on_lease(lease: Lease) -> None:
        print(json.dumps(lease.to_dict()), flush=True)

    def on_lost(reason: str) -> None:
        print(f"lost: {reason}", file=sys.stderr, flush=True)

    try:
        asyncio.run(
            keep_lease(
                args.ifname,
                on_lease=on_lease,
                on_lost=on_lost,
                mac=args.mac,
                apply=not args.no_apply,
                hostname=args.hostname,
            )
        )
    except DhcpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
