"""The station image's kernel settings: what its sysctl.d file says and the lab applies."""

from __future__ import annotations

import pytest

from plugstream.net.image import STATION_IMAGE_SYSCTLS, sysctl_conf

pytestmark = pytest.mark.unit


def test_the_image_turns_tcp_timestamps_off_in_its_sysctl_file() -> None:
    """12 bytes on every packet of a trickle connection (tests/lab/test_traffic_lab.py
    counts the headers without them)."""
    assert STATION_IMAGE_SYSCTLS["net.ipv4.tcp_timestamps"] == "0"
    lines = sysctl_conf().splitlines()
    assert lines[0].startswith("#")
    assert "net.ipv4.tcp_timestamps = 0" in lines[1:]
