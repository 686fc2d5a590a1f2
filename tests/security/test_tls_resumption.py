"""A reconnect resumes the TLS session: no certificate chain, no full handshake (issue 17:
an LTE station's bytes). Real TLS from the project's CA, a real PlugStream Cloud, counted
by a TCP relay on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.conftest import PASSWORD, VERSIONS, Pki, make_station, trusting
from tests.station.test_wire_levers import Relay
from tests.support import Cloud, running, until

pytestmark = pytest.mark.socket


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_reconnect_resumes_the_tls_session(
    tmp_path: Path, pki: Pki, cloud: Cloud, version: str
) -> None:
    await cloud.store.stations.register("CPR", password=PASSWORD, security_profile=2)
    station = trusting(make_station(version, tmp_path / "st", "CPR"), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    relay = Relay(cloud.port)
    await relay.start()
    try:
        async with running(station, f"wss://127.0.0.1:{relay.port}/ocpp"):
            await until(lambda: station.online and station.settled, "the first connection")
            assert station.tls_resumed is False  # a full handshake: nothing to resume yet
            first = relay.down + relay.up
            first_down = relay.down
            await station.disconnect()
            await until(lambda: not station.online, "the connection closed")
            before = relay.down + relay.up
            before_down = relay.down
            await until(lambda: station.online and station.settled, "the second connection")
            assert station.tls_resumed is True
            second = relay.down + relay.up - before
            second_down = relay.down - before_down
            assert cloud.gateway.is_connected("CPR")
    finally:
        await relay.stop()
    # the chain the cloud sent the first time (server certificate and its root: ~1 KB) is
    # not sent again; the boot of the first connection is part of its bytes too
    print(f"{version}: first connection {first} bytes, resumed {second} bytes")
    assert second_down < first_down - 500
    assert second < first
