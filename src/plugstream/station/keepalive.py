"""A keep-alive that learns the path: how long a connection may stay quiet on this link.

An idle station's bytes are mostly keep-alive: a WebSocket ping and its pong every
WebSocketPingInterval (180 s by default) is ~480 exchanges a day. The interval only has to
be shorter than the idle timeout of the NATs and firewalls on the way, and those differ by
link: a site's router keeps an idle TCP mapping for hours, an LTE carrier's NAT sometimes
for only minutes. So the station starts at the configured interval and, while pings are
answered, lengthens it step by step up to a ceiling (30 minutes by default); when the
connection drops at an interval, it goes back to the last interval that held and probes no
higher than that one that failed. What it learned is kept per link (Ethernet, WiFi, LTE) in
the station's persisted state.

:class:`KeepaliveLearner` is sans-I/O: it is told what happened (:meth:`connected`, a pong
after a quiet :meth:`held` interval, :meth:`dropped`) and answers with the next interval;
the runtime (:mod:`plugstream.station.runtime`) sleeps, pings and persists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

DEFAULT_START_S: Final = 180.0
DEFAULT_CEILING_S: Final = 1800.0  # 30 minutes
GROWTH: Final = 1.5  # each interval that held is followed by one 50 % longer
FLOOR_S: Final = 20.0  # never below: a path that drops 20 s of quiet is not a path to learn
RESOLUTION: Final = 0.1  # stop probing once within 10 % of the interval that failed
PROBE_AGAIN_AFTER: Final = 48  # settled pongs before the failed interval is tried again


@dataclass
class KeepaliveLearner:
    """The learned keep-alive interval of one link, in seconds of quiet.

    ``held``: the longest interval a pong came back after (None: none yet). ``trial``: the
    interval the next ping waits. ``failed``: the shortest interval the connection dropped
    at, which growth stays below (None: none failed). A drop may have had another cause (a
    CSMS restart), so after :data:`PROBE_AGAIN_AFTER` answered pings at the settled interval
    the failed one is forgotten and probing resumes.
    """

    start: float = DEFAULT_START_S
    ceiling: float = DEFAULT_CEILING_S
    held: float | None = None
    trial: float | None = None
    failed: float | None = None
    settled_pongs: int = 0

    def connected(self) -> float:
        """A connection opened: the interval its first ping waits."""
        if self.trial is None:
            self.trial = self._bounded(self.start)
        return self.trial

    def held_after(self, interval: float) -> float:
        """A pong came back after ``interval`` s of quiet: the next interval."""
        if self.held is None or interval > self.held:
            self.held = interval
        current = self.trial if self.trial is not None else interval
        grown = float(round(min(self.ceiling, max(current, interval) * GROWTH)))
        failed = self.failed
        if failed is not None and grown >= failed:
            if failed - current > max(FLOOR_S / 2, current * RESOLUTION):
                grown = float(
                    round((current + failed) / 2)
                )  # between the one that held and the one that failed
            else:
                grown = current  # settled just below the interval that failed
                self.settled_pongs += 1
                if self.settled_pongs >= PROBE_AGAIN_AFTER:
                    self.failed = None  # the drop may not have been the path's: try again
                    self.settled_pongs = 0
        self.trial = self._bounded(grown)
        return self.trial

    def dropped(self, interval: float | None = None) -> float:
        """The connection dropped while ``interval`` s quiet (default: the trial): the
        interval of the next connection -- the last that held, or, when even that failed,
        a shorter one."""
        failing = interval if interval is not None else self.trial
        if failing is None:
            failing = self._bounded(self.start)
        self.failed = failing if self.failed is None else min(self.failed, failing)
        self.settled_pongs = 0
        if self.held is not None and self.held < failing:
            self.trial = self.held
        else:
            self.held = None  # what held before does not hold now: the path changed
            self.trial = self._bounded(round(failing / GROWTH))
        return self.trial

    def configure(self, start: float, ceiling: float) -> None:
        """The configured start and ceiling (they may change between connections)."""
        self.start = start
        self.ceiling = max(start, ceiling)
        if self.trial is not None:
            self.trial = self._bounded(self.trial)

    def _bounded(self, interval: float) -> float:
        return float(max(min(FLOOR_S, self.start), min(self.ceiling, interval)))

    def to_json(self) -> dict[str, Any]:
        return {
            "held": self.held,
            "trial": self.trial,
            "failed": self.failed,
            "settled_pongs": self.settled_pongs,
        }

    @classmethod
    def from_json(cls, data: Any, start: float, ceiling: float) -> KeepaliveLearner:
        """What :meth:`to_json` saved; a fresh learner from what cannot be read."""
        learner = cls(start=start, ceiling=max(start, ceiling))
        if not isinstance(data, dict):
            return learner

        def number(key: str) -> float | None:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                return None
            return float(value)

        learner.held = number("held")
        learner.failed = number("failed")
        trial = number("trial")
        learner.trial = None if trial is None else learner._bounded(trial)
        pongs = data.get("settled_pongs")
        learner.settled_pongs = pongs if isinstance(pongs, int) and pongs >= 0 else 0
        return learner
