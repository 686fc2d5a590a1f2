"""The station's uplinks: Ethernet > WiFi > LTE, health checks, failover and failback.

Why: the vendor article (Table 1) lists Ethernet, "WiFi 2.4 GHz 802.11 b/g/n
(channel 1-11)" and optional 4G LTE. The station uses the best link that works,
moves off a link that lost its carrier or fails its health checks, and returns
to a better link only once it has stayed healthy for a hold-down, so a flapping
cable does not make the OCPP connection flap with it. LTE is metered: while on
it the station saves data (:class:`LinkPolicy`).

Layers, like :mod:`plugstream.ocpp`:

* :class:`WifiConfig`: refuses what the radio cannot do (5 GHz, channels 12-14);
* :class:`LinkManager`: sans-I/O; events (``carrier``, ``health``, ``tick``) carry
  the time and return actions (:class:`UseLink`, :class:`ReportLinkDown`);
* :func:`monitor`: a thin asyncio shell that runs the health probes (e.g. a TCP
  connect to port 443, done by the caller) and hands the actions to a callback.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from plugstream.net.accounting import LINKS, Link

from .timeouts import within

__all__ = [
    "BAND_2_4_GHZ",
    "POLICIES",
    "WIFI_CHANNELS",
    "Action",
    "LinkHealth",
    "LinkManager",
    "LinkPolicy",
    "LinkStatus",
    "ManagerState",
    "ReportLinkDown",
    "UseLink",
    "WifiConfig",
    "monitor",
    "policy_for",
]

log = logging.getLogger(__name__)

BAND_2_4_GHZ: Final = "2.4GHz"
WIFI_CHANNELS: Final = range(1, 12)
"""Channels 1 to 11: the article, Table 1 ("WiFi 2.4 GHz 802.11 b/g/n (channel 1-11)")."""

_WIFI_REASON: Final = "PlugStream's WiFi supports 2.4 GHz channels 1 to 11 (the article, Table 1)"


@dataclass(frozen=True, slots=True)
class WifiConfig:
    """A WiFi network the station may join; invalid settings raise ``ValueError`` at once,
    so an installer learns at configuration time, not when the station fails to connect."""

    ssid: str
    passphrase: str
    channel: int
    band: str = BAND_2_4_GHZ

    def __post_init__(self) -> None:
        if self.band.replace(" ", "").lower() != BAND_2_4_GHZ.lower():
            raise ValueError(f"band {self.band!r} is not supported: {_WIFI_REASON}")
        if isinstance(self.channel, bool) or not isinstance(self.channel, int):
            raise ValueError(f"channel {self.channel!r} is not a channel number: {_WIFI_REASON}")
        if self.channel not in WIFI_CHANNELS:
            raise ValueError(f"channel {self.channel} is outside 1-11: {_WIFI_REASON}")
        if not 1 <= len(self.ssid.encode()) <= 32:
            raise ValueError("SSID must be 1 to 32 bytes (IEEE 802.11)")
        if not 8 <= len(self.passphrase) <= 63:
            raise ValueError(
                f"WPA2 passphrase must be 8 to 63 characters, got {len(self.passphrase)}"
            )
        if not all(" " <= c <= "~" for c in self.passphrase):
            raise ValueError("WPA2 passphrase must be printable ASCII (IEEE 802.11i)")


# --- data saving on LTE ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """What the station should do on a link type: the *shortest* heartbeat and meter
    intervals (seconds; 0 = use what the CSMS set) and whether optional uploads
    (diagnostics, logs) may be sent. The station lengthens intervals only where the CSMS
    allows (B01.FR.04: the heartbeat interval follows BootNotificationResponse.interval;
    SampledDataCtrlr.TxUpdatedInterval is the CSMS's to set)."""

    heartbeat_interval_s: int
    meter_interval_s: int
    optional_uploads: bool

    def heartbeat(self, csms_interval_s: int) -> int:
        """The heartbeat interval to use given the CSMS's: never shorter than the floor."""
        return max(csms_interval_s, self.heartbeat_interval_s)

    def meter(self, csms_interval_s: int) -> int:
        """The meter-values interval to use given the CSMS's (0 = off stays off)."""
        if csms_interval_s <= 0:
            return csms_interval_s
        return max(csms_interval_s, self.meter_interval_s)


POLICIES: Final[Mapping[Link, LinkPolicy]] = {
    "ethernet": LinkPolicy(heartbeat_interval_s=0, meter_interval_s=0, optional_uploads=True),
    "wifi": LinkPolicy(heartbeat_interval_s=0, meter_interval_s=0, optional_uploads=True),
    "lte": LinkPolicy(heartbeat_interval_s=3600, meter_interval_s=300, optional_uploads=False),
}
"""Recommendations per link type. LTE is metered: heartbeats at most hourly, meter
values at most every 5 min, no optional uploads (the article budgets ~3 MB a day)."""


def policy_for(link: Link) -> LinkPolicy:
    """The :class:`LinkPolicy` for ``link``."""
    return POLICIES[link]


# --- sans-I/O link manager -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UseLink:
    """Route the station's traffic over ``link`` (reconnect OCPP if it was elsewhere)."""

    link: Link
    reason: str


@dataclass(frozen=True, slots=True)
class ReportLinkDown:
    """``link`` went down: show it, log it (and, if it was the last one, that the station
    stays on it for want of a better one)."""

    link: Link
    reason: str


Action = UseLink | ReportLinkDown

LinkHealth = Literal["unknown", "up", "down"]


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """One link as a status display shows it."""

    link: Link
    health: LinkHealth
    carrier: bool | None
    consecutive_failures: int
    healthy_since: float | None
    last_check: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class ManagerState:
    """The manager at a glance; ``degraded`` when the active link is not up."""

    active: Link | None
    data_saving: bool
    degraded: bool
    links: tuple[LinkStatus, ...]


class _Link:
    __slots__ = ("carrier", "detail", "failures", "health", "healthy_since", "last_check", "name")

    def __init__(self, name: Link) -> None:
        self.name: Link = name
        self.health: LinkHealth = "unknown"
        self.carrier: bool | None = None  # None: the shell does not report carrier
        self.failures = 0
        self.healthy_since: float | None = None
        self.last_check: float | None = None
        self.detail = ""


class LinkManager:
    """Chooses the link. Rules:

    * a link is *up* after a passing health check (carrier not known to be down) and
      *down* after losing carrier or ``failures_to_down`` consecutive failed checks, or
      when no check result came for ``(failures_to_down + 1) * check_interval`` s;
    * with no active link, or the active one down, use the best up link at once;
    * leave a working link for a better one only once the better one has passed every
      check for ``hold_down`` s (any failure restarts the count): no flapping;
    * if nothing is up keep the last link and say so in the :class:`ReportLinkDown`.
    """

    def __init__(
        self,
        links: Iterable[Link],
        now: float,
        *,
        failures_to_down: int = 3,
        check_interval: float = 10.0,
        hold_down: float = 60.0,
    ) -> None:
        names = list(links)
        unknown = [n for n in names if n not in LINKS]
        if unknown:
            raise ValueError(f"unknown link(s) {unknown}: expected some of {list(LINKS)}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"links must be distinct and not empty, got {names}")
        if failures_to_down < 1 or check_interval <= 0 or hold_down < 0:
            raise ValueError("failures_to_down >= 1, check_interval > 0, hold_down >= 0")
        ordered = sorted(names, key=LINKS.index)  # priority: ethernet > wifi > lte
        self._links: dict[Link, _Link] = {n: _Link(n) for n in ordered}
        self.failures_to_down = failures_to_down
        self.check_interval = check_interval
        self.hold_down = hold_down
        self._active: Link | None = None

    @property
    def active(self) -> Link | None:
        """The link in use; None until one has passed a health check."""
        return self._active

    @property
    def links(self) -> tuple[Link, ...]:
        """The managed links, best first."""
        return tuple(self._links)

    @property
    def data_saving(self) -> bool:
        """True on LTE: lengthen intervals and skip optional uploads (:data:`POLICIES`)."""
        return self._active == "lte"

    @property
    def policy(self) -> LinkPolicy:
        """The :class:`LinkPolicy` of the active link (the Ethernet one before any)."""
        return POLICIES[self._active or "ethernet"]

    def state(self) -> ManagerState:
        """A snapshot for status displays."""
        active = self._links[self._active] if self._active else None
        return ManagerState(
            active=self._active,
            data_saving=self.data_saving,
            degraded=active is None or active.health != "up",
            links=tuple(
                LinkStatus(
                    link=s.name,
                    health=s.health,
                    carrier=s.carrier,
                    consecutive_failures=s.failures,
                    healthy_since=s.healthy_since,
                    last_check=s.last_check,
                    detail=s.detail,
                )
                for s in self._links.values()
            ),
        )

    # -- events --------------------------------------------------------------------

    def carrier(self, link: Link, up: bool, now: float) -> list[Action]:
        """The interface's carrier changed (cable, WiFi association, LTE attach)."""
        s = self._get(link)
        actions: list[Action] = []
        if up:
            if s.carrier is not True:
                s.carrier = True
                s.failures = 0
                if s.health == "down":
                    s.health = "unknown"  # wait for a passing check
        elif s.carrier is not False:
            s.carrier = False
            s.healthy_since = None
            self._mark_down(s, f"{link}: carrier lost", actions)
        self._decide(now, actions)
        return actions

    def health(self, link: Link, ok: bool, now: float, detail: str = "") -> list[Action]:
        """The result of one health check of ``link`` (e.g. TCP 443 reachable)."""
        s = self._get(link)
        actions: list[Action] = []
        if s.carrier is False:
            return actions  # a late result for an interface without carrier
        s.last_check = now
        s.detail = detail
        if ok:
            s.failures = 0
            if s.health != "up":
                s.health = "up"
                s.healthy_since = now
            elif s.healthy_since is None:
                s.healthy_since = now
        else:
            s.failures += 1
            s.healthy_since = None  # a better link must pass hold_down without a miss
            if s.failures >= self.failures_to_down:
                why = f"{link}: {s.failures} consecutive failed health checks"
                self._mark_down(s, f"{why} ({detail})" if detail else why, actions)
        self._decide(now, actions)
        return actions

    def tick(self, now: float) -> list[Action]:
        """Time passed: finish hold-downs, treat silent links as down."""
        actions: list[Action] = []
        limit = (self.failures_to_down + 1) * self.check_interval
        silent = [
            s
            for s in self._links.values()
            if s.health == "up" and s.last_check is not None and now - s.last_check >= limit
        ]
        for s in silent:
            s.healthy_since = None
            s.health = "unknown"  # so the report below knows no silent link is healthy
        for s in silent:
            age = now - (s.last_check or now)
            self._mark_down(s, f"{s.name}: no health check result for {age:.0f} s", actions)
        self._decide(now, actions)
        return actions

    # -- internals -----------------------------------------------------------------

    def _get(self, link: Link) -> _Link:
        try:
            return self._links[link]
        except KeyError:
            raise ValueError(f"link {link!r} is not managed here ({list(self._links)})") from None

    def _best_up(self, exclude: Link | None = None) -> _Link | None:
        for s in self._links.values():
            if s.health == "up" and s.name != exclude:
                return s
        return None

    def _mark_down(self, s: _Link, reason: str, actions: list[Action]) -> None:
        if s.health == "down":
            return
        s.health = "down"
        if s.name == self._active and self._best_up(exclude=s.name) is None:
            reason += f"; no healthy link, staying on {s.name}"
        actions.append(ReportLinkDown(s.name, reason))

    def _decide(self, now: float, actions: list[Action]) -> None:
        best = self._best_up()
        if best is None:
            return  # keep the last link (already reported)
        if self._active is None:
            self._switch(best.name, f"{best.name} is healthy", actions)
            return
        current = self._links[self._active]
        if current.health != "up":
            if best.name != current.name:
                self._switch(best.name, f"failover from {current.name} ({current.health})", actions)
            return
        for s in self._links.values():
            if s.name == current.name:
                return  # nothing better than the active link
            if (
                s.health == "up"
                and s.healthy_since is not None
                and now - s.healthy_since >= self.hold_down
            ):
                held = now - s.healthy_since
                self._switch(
                    s.name,
                    f"failback from {current.name}: {s.name} healthy for {held:.0f} s",
                    actions,
                )
                return

    def _switch(self, link: Link, reason: str, actions: list[Action]) -> None:
        self._active = link
        actions.append(UseLink(link, reason))


# --- asyncio shell ---------------------------------------------------------------------


Probe = Callable[[], Awaitable[bool]]


async def _run_probe(probe: Probe, timeout: float) -> tuple[bool, str]:
    try:
        ok = await within(probe(), timeout)
    except TimeoutError:
        return False, f"no answer within {timeout:g} s"
    except Exception as exc:  # a probe's failure is a failed check, not a crash
        return False, f"{type(exc).__name__}: {exc}"
    return bool(ok), "ok" if ok else "check failed"


async def monitor(
    manager: LinkManager,
    probes: Mapping[Link, Probe],
    apply: Callable[[Action], Awaitable[None] | None],
    *,
    interval: float | None = None,
    timeout: float | None = None,
    rounds: int | None = None,
    clock: Callable[[], float] | None = None,
) -> None:
    """Probe every link each ``interval`` s (default ``manager.check_interval``) in
    parallel, feed the results to ``manager`` and pass each action to ``apply`` (sync or
    async). A probe that raises or takes longer than ``timeout`` (default ``interval``)
    counts as a failed check. Runs until cancelled, or ``rounds`` rounds."""
    period = manager.check_interval if interval is None else interval
    limit = period if timeout is None else timeout
    now = clock or asyncio.get_running_loop().time
    checked = [link for link in manager.links if link in probes]
    done = 0
    while rounds is None or done < rounds:
        done += 1
        started = now()
        results = await asyncio.gather(*(_run_probe(probes[link], limit) for link in checked))
        actions: list[Action] = []
        for link, (ok, detail) in zip(checked, results, strict=True):
            actions += manager.health(link, ok, now(), detail)
        actions += manager.tick(now())
        for action in actions:
            log.info("link: %s", action)
            try:
                result = apply(action)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("link: applying %s failed", action)
        if rounds is not None and done >= rounds:
            return
        await asyncio.sleep(max(0.0, period - (now() - started)))
