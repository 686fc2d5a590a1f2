"""Links Ethernet > WiFi > LTE with failover and failback (issue 6; the article, Table 1).

The manager is driven with explicit times (no sleeping); the asyncio monitor runs with
fake probes — plain async functions, the I/O boundary — and small intervals.
"""

from __future__ import annotations

import asyncio

import pytest

from plugstream.net.accounting import Link
from plugstream.net.links import (
    POLICIES,
    Action,
    LinkManager,
    LinkPolicy,
    ReportLinkDown,
    UseLink,
    WifiConfig,
    monitor,
    policy_for,
)
from tests.support import until

pytestmark = pytest.mark.unit

# --- WiFi configuration ----------------------------------------------------------------


@pytest.mark.parametrize("channel", [1, 6, 11])
def test_wifi_channels_1_to_11_accepted(channel: int) -> None:
    cfg = WifiConfig(ssid="Depot", passphrase="correct horse", channel=channel)
    assert cfg.channel == channel
    assert cfg.band == "2.4GHz"


@pytest.mark.parametrize("channel", [0, 12, 13, 14, 36])
def test_wifi_channel_outside_1_to_11_refused_with_reason(channel: int) -> None:
    with pytest.raises(ValueError) as info:
        WifiConfig(ssid="Depot", passphrase="correct horse", channel=channel)
    assert str(info.value) == (
        f"channel {channel} is outside 1-11: PlugStream's WiFi supports 2.4 GHz channels"
        " 1 to 11 (the article, Table 1)"
    )


@pytest.mark.parametrize("band", ["5GHz", "5 GHz", "6GHz"])
def test_wifi_5ghz_band_refused_with_reason(band: str) -> None:
    with pytest.raises(ValueError, match=r"2\.4 GHz channels 1 to 11 \(the article, Table 1\)"):
        WifiConfig(ssid="Depot", passphrase="correct horse", channel=6, band=band)


def test_wifi_band_spelled_with_space_accepted() -> None:
    assert WifiConfig(ssid="Depot", passphrase="12345678", channel=1, band="2.4 GHz").channel == 1


@pytest.mark.parametrize("passphrase", ["short", "1234567", "x" * 64])
def test_wifi_wpa2_passphrase_length_refused(passphrase: str) -> None:
    with pytest.raises(ValueError, match="8 to 63 characters"):
        WifiConfig(ssid="Depot", passphrase=passphrase, channel=6)


def test_wifi_wpa2_passphrase_8_and_63_accepted() -> None:
    WifiConfig(ssid="Depot", passphrase="x" * 8, channel=6)
    WifiConfig(ssid="Depot", passphrase="x" * 63, channel=6)


def test_wifi_ssid_length_checked() -> None:
    with pytest.raises(ValueError, match="SSID"):
        WifiConfig(ssid="", passphrase="12345678", channel=6)
    with pytest.raises(ValueError, match="SSID"):
        WifiConfig(ssid="x" * 33, passphrase="12345678", channel=6)


# --- helpers ---------------------------------------------------------------------------


def feed(m: LinkManager, start: float, end: float, results: dict[Link, bool]) -> list[Action]:
    """Health checks every 10 s from ``start`` to ``end`` inclusive."""
    actions: list[Action] = []
    t = start
    while t <= end:
        for link, ok in results.items():
            actions += m.health(link, ok, t, "tcp 443")
        actions += m.tick(t)
        t += 10.0
    return actions


def uses(actions: list[Action]) -> list[Link]:
    return [a.link for a in actions if isinstance(a, UseLink)]


def settled(links: tuple[Link, ...] = ("ethernet", "wifi", "lte")) -> LinkManager:
    """A manager on Ethernet with every link healthy for a long time."""
    m = LinkManager(links, now=0.0)
    feed(m, 0.0, 100.0, dict.fromkeys(links, True))
    assert m.active == "ethernet"
    return m


# --- priority ----------------------------------------------------------------------------


def test_links_ethernet_preferred_over_wifi_and_lte() -> None:
    m = LinkManager(["lte", "wifi", "ethernet"], now=0.0)
    assert m.links == ("ethernet", "wifi", "lte")
    assert m.active is None
    actions = m.health("ethernet", True, 0.0) + m.health("wifi", True, 0.0)
    assert uses(actions) == ["ethernet"]
    assert m.active == "ethernet"


def test_links_first_healthy_link_used_at_once() -> None:
    m = LinkManager(["ethernet", "wifi"], now=0.0)
    assert uses(m.health("ethernet", False, 0.0)) == []
    assert uses(m.health("wifi", True, 0.5)) == ["wifi"]
    assert m.active == "wifi"


def test_links_unknown_or_duplicate_links_refused() -> None:
    with pytest.raises(ValueError, match="unknown link"):
        LinkManager(["ethernet", "bluetooth"], now=0.0)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="distinct"):
        LinkManager(["wifi", "wifi"], now=0.0)
    with pytest.raises(ValueError, match="distinct"):
        LinkManager([], now=0.0)


def test_links_lte_is_optional() -> None:
    m = settled(("ethernet", "wifi"))
    assert m.links == ("ethernet", "wifi")
    with pytest.raises(ValueError, match="not managed"):
        m.health("lte", True, 200.0)


# --- failover ----------------------------------------------------------------------------


def test_links_failover_on_carrier_loss() -> None:
    m = settled()
    actions = m.carrier("ethernet", False, 105.0)
    assert actions == [
        ReportLinkDown("ethernet", "ethernet: carrier lost"),
        UseLink("wifi", "failover from ethernet (down)"),
    ]
    assert m.active == "wifi"
    assert m.state().links[0].health == "down"


def test_links_failover_after_three_failed_checks_not_before() -> None:
    m = settled()
    assert m.health("ethernet", False, 110.0, "connect timeout") == []
    assert m.health("ethernet", False, 120.0, "connect timeout") == []
    assert m.active == "ethernet"
    actions = m.health("ethernet", False, 130.0, "connect timeout")
    assert actions == [
        ReportLinkDown(
            "ethernet", "ethernet: 3 consecutive failed health checks (connect timeout)"
        ),
        UseLink("wifi", "failover from ethernet (down)"),
    ]
    assert m.state().active == "wifi"


def test_links_one_good_check_resets_the_failure_count() -> None:
    m = settled()
    for t, ok in [(110, False), (120, False), (130, True), (140, False), (150, False)]:
        assert m.health("ethernet", ok, float(t)) == []
    assert m.active == "ethernet"


def test_links_failover_skips_unhealthy_wifi_to_lte() -> None:
    m = LinkManager(["ethernet", "wifi", "lte"], now=0.0)
    feed(m, 0.0, 30.0, {"ethernet": True, "wifi": False, "lte": True})
    assert m.active == "ethernet"
    assert uses(m.carrier("ethernet", False, 35.0)) == ["lte"]
    assert m.data_saving


def test_links_nothing_healthy_keeps_last_link_and_reports() -> None:
    m = settled(("ethernet", "wifi"))
    m.carrier("wifi", False, 101.0)
    actions = m.carrier("ethernet", False, 102.0)
    assert actions == [
        ReportLinkDown("ethernet", "ethernet: carrier lost; no healthy link, staying on ethernet")
    ]
    assert m.active == "ethernet"
    assert m.state().degraded
    # the first link back is used at once, without hold-down
    m.carrier("wifi", True, 110.0)
    assert uses(m.health("wifi", True, 111.0)) == ["wifi"]
    assert not m.state().degraded


def test_links_silent_link_counts_as_down() -> None:
    m = settled(("ethernet", "wifi"))
    # wifi keeps answering; ethernet's checks stop (a hung probe the shell did not time out)
    actions = feed(m, 110.0, 140.0, {"wifi": True})
    assert ReportLinkDown("ethernet", "ethernet: no health check result for 40 s") in actions
    assert m.active == "wifi"


def test_links_late_result_after_carrier_loss_ignored() -> None:
    m = settled(("ethernet", "wifi"))
    m.carrier("ethernet", False, 101.0)
    assert m.health("ethernet", True, 102.0) == []
    assert m.active == "wifi"
    assert m.state().links[0].health == "down"


# --- failback and hold-down --------------------------------------------------------------


def test_links_no_failback_before_hold_down_then_failback() -> None:
    m = settled(("ethernet", "wifi"))
    m.carrier("ethernet", False, 105.0)
    assert m.active == "wifi"
    m.carrier("ethernet", True, 200.0)
    actions = feed(m, 200.0, 250.0, {"ethernet": True, "wifi": True})
    assert uses(actions) == []  # healthy for 50 s only
    assert m.active == "wifi"
    assert uses(m.tick(259.0)) == []
    assert m.tick(260.0) == [UseLink("ethernet", "failback from wifi: ethernet healthy for 60 s")]
    assert m.state().active == "ethernet"


def test_links_hold_down_is_configurable() -> None:
    m = LinkManager(["ethernet", "wifi"], now=0.0, hold_down=5.0)
    m.health("wifi", True, 0.0)
    m.health("ethernet", True, 1.0)
    assert m.active == "wifi"
    assert uses(m.tick(5.9)) == []
    assert uses(m.tick(6.0)) == ["ethernet"]


def test_links_flapping_ethernet_does_not_flap_the_choice() -> None:
    m = settled(("ethernet", "wifi"))
    switches: list[Link] = []
    t = 105.0
    # ethernet's cable drops and returns every 25 s for ten minutes; checks every 10 s
    while t < 705.0:
        switches += uses(m.carrier("ethernet", False, t))
        switches += uses(m.carrier("ethernet", True, t + 5.0))
        switches += uses(m.health("ethernet", True, t + 10.0))
        switches += uses(m.health("wifi", True, t + 10.0))
        switches += uses(m.health("ethernet", True, t + 20.0))
        switches += uses(m.health("wifi", True, t + 20.0))
        switches += uses(m.tick(t + 24.0))
        t += 25.0
    assert switches == ["wifi"]  # moved once, stayed
    # once it stays up for the hold-down, the station returns to Ethernet
    m.carrier("ethernet", True, t)
    switches += uses(feed(m, t, t + 60.0, {"ethernet": True, "wifi": True}))
    assert switches == ["wifi", "ethernet"]


def test_links_intermittent_health_failures_reset_hold_down() -> None:
    m = settled(("ethernet", "wifi"))
    m.carrier("ethernet", False, 105.0)
    m.carrier("ethernet", True, 110.0)
    switches: list[Link] = []
    # ethernet alternates pass/fail (never 3 failures in a row): never stable
    for i in range(60):
        t = 110.0 + 10.0 * i
        switches += uses(m.health("ethernet", i % 2 == 0, t))
        switches += uses(m.health("wifi", True, t))
        switches += uses(m.tick(t))
    assert switches == []
    assert m.active == "wifi"


# --- LTE data saving ---------------------------------------------------------------------


def test_links_data_saving_on_lte_only() -> None:
    m = settled()
    assert not m.data_saving
    assert m.policy.optional_uploads
    m.carrier("ethernet", False, 101.0)
    m.carrier("wifi", False, 102.0)
    assert m.active == "lte"
    assert m.data_saving
    assert m.state().data_saving
    assert m.policy == policy_for("lte")


def test_links_lte_policy_lengthens_intervals_and_skips_optional_uploads() -> None:
    lte = policy_for("lte")
    assert lte.heartbeat_interval_s >= 3600
    assert lte.meter_interval_s >= 300
    assert not lte.optional_uploads
    assert lte.heartbeat(300) == 3600  # CSMS asked for 5 min: hourly on LTE
    assert lte.heartbeat(7200) == 7200  # already longer: kept
    assert lte.meter(60) == 300
    assert lte.meter(0) == 0  # off stays off
    eth = POLICIES["ethernet"]
    assert eth == POLICIES["wifi"] == LinkPolicy(0, 0, True)
    assert eth.heartbeat(300) == 300
    assert eth.meter(60) == 60


# --- status --------------------------------------------------------------------------------


def test_links_state_for_status_display() -> None:
    m = LinkManager(["ethernet", "wifi"], now=0.0)
    m.carrier("ethernet", True, 0.0)
    m.health("ethernet", True, 1.0, "tcp 443 ok")
    m.health("wifi", False, 1.0, "connect refused")
    st = m.state()
    assert st.active == "ethernet"
    assert not st.degraded
    eth, wifi = st.links
    assert (eth.link, eth.health, eth.carrier, eth.healthy_since, eth.detail) == (
        "ethernet",
        "up",
        True,
        1.0,
        "tcp 443 ok",
    )
    assert (wifi.health, wifi.consecutive_failures, wifi.carrier) == ("unknown", 1, None)


# --- asyncio monitor ---------------------------------------------------------------------


class FakeProbe:
    """A health probe whose answer the test sets; counts its calls."""

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls = 0
        self.hang = False

    async def __call__(self) -> bool:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(10.0)
        return self.ok


async def wait_for_use(actions: list[Action], link: Link, seen: int) -> int:
    """Until a new UseLink(link) appears after index ``seen``; the index after it. Looks
    every 5 ms: the monitor's rounds are 20 ms apart and the tests count them."""

    def used() -> int:
        for i in range(seen, len(actions)):
            a = actions[i]
            if isinstance(a, UseLink) and a.link == link:
                return i + 1
        return 0

    return await until(used, f"UseLink({link}) after action {seen}", interval=0.005)


async def test_links_monitor_fails_over_and_back_with_fake_probes() -> None:
    interval = 0.02
    m = LinkManager(["ethernet", "wifi"], now=0.0, check_interval=interval, hold_down=5 * interval)
    eth, wifi = FakeProbe(), FakeProbe()
    actions: list[Action] = []
    task = asyncio.create_task(
        monitor(m, {"ethernet": eth, "wifi": wifi}, actions.append, rounds=500)
    )
    try:
        seen = await wait_for_use(actions, "ethernet", 0)
        eth.ok = False
        before = eth.calls
        seen = await wait_for_use(actions, "wifi", seen)
        assert 3 <= eth.calls - before <= 4  # three failed checks (+1 for a round in flight)
        assert any(isinstance(a, ReportLinkDown) and a.link == "ethernet" for a in actions)
        eth.ok = True
        before, since = eth.calls, asyncio.get_running_loop().time()
        await wait_for_use(actions, "ethernet", seen)
        # not back before the hold-down (5 intervals) has passed, and soon after it
        assert asyncio.get_running_loop().time() - since >= m.hold_down
        assert 2 <= eth.calls - before <= 8
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_links_monitor_hung_probe_times_out_as_failure() -> None:
    interval = 0.02
    m = LinkManager(["ethernet", "lte"], now=0.0, check_interval=interval)
    eth, lte = FakeProbe(), FakeProbe()
    actions: list[Action] = []

    async def apply(action: Action) -> None:  # an async callback works too
        actions.append(action)

    task = asyncio.create_task(monitor(m, {"ethernet": eth, "lte": lte}, apply, rounds=500))
    try:
        seen = await wait_for_use(actions, "ethernet", 0)
        eth.hang = True
        await wait_for_use(actions, "lte", seen)
        assert m.data_saving
        assert "no answer within" in m.state().links[0].detail
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_links_monitor_rounds_bound_and_probe_errors() -> None:
    m = LinkManager(["ethernet", "wifi"], now=0.0, check_interval=0.01)

    async def broken() -> bool:
        raise OSError("network unreachable")

    wifi = FakeProbe()
    actions: list[Action] = []
    await asyncio.wait_for(
        monitor(m, {"ethernet": broken, "wifi": wifi}, actions.append, rounds=3), 2.0
    )
    assert wifi.calls == 3
    assert m.active == "wifi"
    assert actions[0] == UseLink("wifi", "wifi is healthy")
    assert (
        ReportLinkDown(
            "ethernet",
            "ethernet: 3 consecutive failed health checks (OSError: network unreachable)",
        )
        in actions
    )


async def test_links_monitor_callback_error_does_not_stop_monitoring() -> None:
    m = LinkManager(["ethernet", "wifi"], now=0.0, check_interval=0.01)
    eth = FakeProbe()
    calls: list[Action] = []

    def apply(action: Action) -> None:
        calls.append(action)
        raise RuntimeError("route table busy")

    await asyncio.wait_for(monitor(m, {"ethernet": eth}, apply, rounds=3), 2.0)
    assert eth.calls == 3
    assert calls == [UseLink("ethernet", "ethernet is healthy")]


def test_links_all_links_silent_reports_staying_on_last() -> None:
    m = settled(("ethernet", "wifi"))
    actions = m.tick(140.0)
    assert actions == [
        ReportLinkDown(
            "ethernet",
            "ethernet: no health check result for 40 s; no healthy link, staying on ethernet",
        ),
        ReportLinkDown("wifi", "wifi: no health check result for 40 s"),
    ]
    assert m.active == "ethernet"
