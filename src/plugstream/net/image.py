"""The station image's operating-system settings that concern the uplink.

A PlugStream station runs on its own Linux image; these are the kernel settings that image
sets at boot (``/etc/sysctl.d/50-plugstream.conf`` on the device), kept here so that the
lab's station namespace runs with exactly what a station in the field runs with
(:meth:`plugstream.lab.topology.Lab` applies them) and so that they are reviewed with the
code whose bytes they change.

Why each one:

* ``net.ipv4.tcp_timestamps = 0``: the station's one long-lived connection is a trickle
  (a meter sample a minute, one request, one answer and one ACK), where the TCP
  timestamp option is 12 of the 52 bytes of TCP/IP header on every packet: about 4.5 KB
  of a 2-hour session's ~30 KB on the uplink, and several per cent of an idle day. What
  it buys does not apply to this link: PAWS guards against wrapped sequence numbers at
  gigabit rates over one connection, and RTT sampling per segment matters for bulk
  transfers (without it Linux samples RTT per window, Karn's rule, as TCP did before
  RFC 7323). Firmware downloads are bulk, but a few extra retransmission timer
  imprecisions there cost less than the option costs on every packet of every day. The
  option is negotiated in the SYN, so off on the station means off both ways.
"""

from __future__ import annotations

from typing import Final

__all__ = ["STATION_IMAGE_SYSCTLS", "sysctl_conf"]

STATION_IMAGE_SYSCTLS: Final[dict[str, str]] = {"net.ipv4.tcp_timestamps": "0"}
"""Kernel settings of the station image (sysctl key -> value), applied at boot."""


def sysctl_conf() -> str:
    """The image's ``/etc/sysctl.d/50-plugstream.conf``: what the build writes."""
    lines = ["# PlugStream station image: see plugstream/net/image.py for why"]
    lines += [f"{key} = {value}" for key, value in STATION_IMAGE_SYSCTLS.items()]
    return "\n".join(lines) + "\n"
