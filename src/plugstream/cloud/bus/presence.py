"""Which node holds each station's connection: the sans-I/O part of presence.

Presence lives in a NATS key-value bucket (:mod:`plugstream.cloud.bus.cluster`): a
station's key names the node that accepted its newest connection and the OCPP version
it speaks. Every node watches the bucket and keeps this mirror of it, so that "is the
station connected, and where" costs no round trip. A node that stops saying it is
alive (``NODE_TIMEOUT_S``) holds nothing any more: its stations read as offline until
they reconnect elsewhere, which they do, with back-off, when its connections die with it.

Station ids are OCPP identifierStrings (``a-zA-Z0-9*-_=:+|@.``), and a key may only hold
``-/_=.a-zA-Z0-9``, with no empty '.'-token: :func:`station_key` escapes the rest, '.'
and '=' included, as ``=XX``, reversibly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from plugstream.ocpp import OcppVersion

__all__ = ["NODE_TIMEOUT_S", "Holder", "Presence", "decode_holder", "encode_holder", "station_key"]

ALIVE_EVERY_S = 2.0  # a node says it is alive this often
NODE_TIMEOUT_S = 6.0  # a node not heard from for this long holds no station

_KEY_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def station_key(station_id: str) -> str:
    """The station's key in the presence bucket: its id, every character but letters,
    digits, '-' and '_' escaped as '=XX' (its UTF-8 bytes)."""
    return "".join(
        char if char in _KEY_SAFE else "".join(f"={byte:02X}" for byte in char.encode())
        for char in station_id
    )


def key_station(key: str) -> str:
    """The station id of a presence key (:func:`station_key` undone)."""
    if "=" not in key:
        return key
    raw = bytearray()
    i = 0
    while i < len(key):
        if key[i] == "=":
            raw += bytes.fromhex(key[i + 1 : i + 3])
            i += 3
        else:
            raw += key[i].encode()
            i += 1
    return raw.decode()


@dataclass(frozen=True, slots=True)
class Holder:
    """The node holding a station's connection, the version it speaks, and the bucket's
    revision of that entry (a later connection has a higher one)."""

    node: str
    version: OcppVersion
    revision: int = 0


def encode_holder(node: str, version: OcppVersion) -> bytes:
    return f"{node} {version.value}".encode()


def decode_holder(value: bytes, revision: int) -> Holder | None:
    """None for a value that is not ours (written by hand, or by a newer version)."""
    node, _, version = value.decode("utf-8", "replace").partition(" ")
    try:
        return Holder(node, OcppVersion(version), revision)
    except ValueError:
        return None


class Presence:
    """The bucket's entries as this node last saw them, and when each node was last
    heard from (``monotonic`` seconds, injected)."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._holders: dict[str, Holder] = {}
        self._heard: dict[str, float] = {}

    # -- what the bucket and the nodes tell ---------------------------------------------

    def put(self, station_id: str, holder: Holder) -> Holder | None:
        """An entry was written; the one it replaced. An older revision than the one
        known (a watch catching up) changes nothing."""
        known = self._holders.get(station_id)
        if known is not None and known.revision > holder.revision:
            return None
        self._holders[station_id] = holder
        return known

    def delete(self, station_id: str, revision: int) -> Holder | None:
        known = self._holders.get(station_id)
        if known is None or known.revision > revision:
            return None
        del self._holders[station_id]
        return known

    def heard(self, node: str) -> None:
        self._heard[node] = self._monotonic()

    def gone(self, node: str) -> None:
        """The node said it is stopping: it holds nothing from now on."""
        self._heard.pop(node, None)

    # -- what the gateway asks --------------------------------------------------------

    def alive(self, node: str) -> bool:
        heard = self._heard.get(node)
        return heard is not None and self._monotonic() - heard < NODE_TIMEOUT_S

    def nodes(self) -> list[str]:
        """The nodes alive now."""
        return sorted(node for node in self._heard if self.alive(node))

    def holder(self, station_id: str) -> Holder | None:
        """Who holds the station's connection, if that node is alive."""
        holder = self._holders.get(station_id)
        if holder is None or not self.alive(holder.node):
            return None
        return holder

    def entry(self, station_id: str) -> Holder | None:
        """The bucket's entry, whether or not its node is alive."""
        return self._holders.get(station_id)

    def held(self) -> Iterator[tuple[str, Holder]]:
        """Every station held by a node alive now."""
        alive = {node for node in self._heard if self.alive(node)}
        return ((sid, h) for sid, h in self._holders.items() if h.node in alive)

    def held_by(self, node: str) -> list[str]:
        return [sid for sid, h in self._holders.items() if h.node == node]
