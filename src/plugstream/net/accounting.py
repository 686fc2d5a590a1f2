"""Byte accounting: every byte the station sends and receives, per UTC day, per charge cycle, per link.

The vendor article quotes approx. 5 MB per charge cycle and around 3 MB a day
(:data:`ARTICLE_CYCLE_BYTES`, :data:`ARTICLE_DAY_BYTES`, decimal megabytes); we
count so that we can show how far below that we stay.

:class:`ByteCounter` is a plain class: the caller passes the time of every
event (``at``, an aware datetime) and decides when to persist. ``record`` runs
on every frame, so it only does a few dictionary look-ups and integer adds.

Durability: :meth:`ByteCounter.save` writes one small JSON file
(``traffic.json`` in the data dir) atomically — temporary file, fsync, rename,
fsync of the directory — so a crash leaves the old or the new file, never half
of one. The flush policy is the caller's (e.g. every N minutes, at the end of a
charge cycle, before a reboot): counts recorded since the last ``save`` are lost
on power loss. :attr:`ByteCounter.unsaved_bytes` tells how much is at stake.

Charge cycles: bytes recorded while a cycle is open (between ``start_cycle``
and ``end_cycle``) are attributed to it; bytes while no cycle is open are
counted as *outside cycles*. When cycles overlap (two connectors charging at
once) the bytes of the overlap are attributed to each open cycle, so the cycles'
figures may add up to more than the totals, which count every byte once.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "ARTICLE_CYCLE_BYTES",
    "ARTICLE_DAY_BYTES",
    "FILENAME",
    "LINKS",
    "ByteCounter",
    "CycleTraffic",
    "Direction",
    "Link",
]

Direction = Literal["tx", "rx"]
Link = Literal["ethernet", "wifi", "lte"]
LINKS: Final[tuple[Link, ...]] = ("ethernet", "wifi", "lte")

ARTICLE_DAY_BYTES: Final = 3_000_000
"""The article's "around 3 MB a day" (decimal megabytes)."""
ARTICLE_CYCLE_BYTES: Final = 5_000_000
"""The article's "approx. 5MB for each charge cycle performed" (decimal megabytes)."""

FILENAME: Final = "traffic.json"
_FORMAT: Final = 1
_INDEX: Final[dict[str, int]] = {"tx": 0, "rx": 1}


@dataclass(frozen=True, slots=True)
class CycleTraffic:
    """The bytes of one charge cycle; ``ended`` is None while it is open."""

    tx: int
    rx: int
    started: datetime
    ended: datetime | None


class _Cycle:
    __slots__ = ("counts", "ended", "started")

    def __init__(self, started: datetime, ended: datetime | None, counts: list[int]) -> None:
        self.started = started
        self.ended = ended
        self.counts = counts  # [tx, rx], shared with ByteCounter._open while open


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: pass an aware (UTC) time")
    return at if at.tzinfo is UTC else at.astimezone(UTC)


class ByteCounter:
    """Counts bytes per UTC day and link, per charge cycle, and outside cycles.

    ``keep_days`` and ``keep_cycles`` bound the file: older days and ended
    cycles are dropped when saving (totals keep counting them).
    """

    def __init__(self, *, keep_days: int = 400, keep_cycles: int = 1000) -> None:
        self.keep_days = keep_days
        self.keep_cycles = keep_cycles
        self._days: dict[date, dict[str, list[int]]] = {}
        self._cycles: dict[str, _Cycle] = {}
        self._open: dict[str, list[int]] = {}
        self._outside = [0, 0]
        self._totals = [0, 0]
        self._unsaved = 0
        # The last day's buckets, so that most calls skip the day look-up.
        self._day: date | None = None
        self._day_links: dict[str, list[int]] = {}

    # -- events ---------------------------------------------------------------

    def record(self, direction: Direction, nbytes: int, *, link: Link, at: datetime) -> None:
        """Count ``nbytes`` sent ("tx") or received ("rx") on ``link`` at time ``at``."""
        try:
            i = _INDEX[direction]
        except KeyError:
            raise ValueError(f"direction must be 'tx' or 'rx', not {direction!r}") from None
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, not {nbytes}")
        day = _utc(at).date()
        if day != self._day:
            self._day_links = self._days.get(day, {})  # kept in _days once it has a bucket
            self._day = day
        bucket = self._day_links.get(link)
        if bucket is None:
            if link not in LINKS:
                raise ValueError(f"unknown link {link!r}: one of {', '.join(LINKS)}")
            bucket = self._day_links[link] = [0, 0]
            self._days[day] = self._day_links
        bucket[i] += nbytes
        self._totals[i] += nbytes
        if self._open:
            for counts in self._open.values():
                counts[i] += nbytes
        else:
            self._outside[i] += nbytes
        self._unsaved += nbytes

    def start_cycle(self, cycle_id: str, at: datetime) -> None:
        """Open charge cycle ``cycle_id``: bytes from now on are attributed to it."""
        if cycle_id in self._cycles:
            raise ValueError(f"charge cycle {cycle_id!r} already started")
        counts = [0, 0]
        self._cycles[cycle_id] = _Cycle(_utc(at), None, counts)
        self._open[cycle_id] = counts

    def end_cycle(self, cycle_id: str, at: datetime) -> None:
        """Close charge cycle ``cycle_id``; later bytes are no longer attributed to it."""
        if cycle_id not in self._open:
            raise ValueError(f"charge cycle {cycle_id!r} is not open")
        del self._open[cycle_id]
        self._cycles[cycle_id].ended = _utc(at)
        self._unsaved += 1  # an ended cycle is worth saving even without new bytes

    # -- queries --------------------------------------------------------------

    def per_day(self) -> dict[date, dict[str, tuple[int, int]]]:
        """``{UTC day: {link: (tx, rx)}}``, oldest day first."""
        return {
            day: {link: (c[0], c[1]) for link, c in links.items()}
            for day, links in sorted(self._days.items())
        }

    def per_cycle(self) -> dict[str, tuple[int, int, datetime, datetime | None]]:
        """``{cycle_id: (tx, rx, started, ended)}``, in order of start; ended is None while open."""
        return {
            cid: (c.counts[0], c.counts[1], c.started, c.ended) for cid, c in self._cycles.items()
        }

    def cycles(self) -> dict[str, CycleTraffic]:
        """:meth:`per_cycle` with named fields."""
        return {
            cid: CycleTraffic(c.counts[0], c.counts[1], c.started, c.ended)
            for cid, c in self._cycles.items()
        }

    def per_link(self) -> dict[str, tuple[int, int]]:
        """``{link: (tx, rx)}`` over the days kept."""
        out: dict[str, list[int]] = {}
        for links in self._days.values():
            for link, c in links.items():
                acc = out.setdefault(link, [0, 0])
                acc[0] += c[0]
                acc[1] += c[1]
        return {link: (out[link][0], out[link][1]) for link in LINKS if link in out}

    def totals(self) -> tuple[int, int]:
        """``(tx, rx)`` of every byte ever recorded (including days no longer kept)."""
        return self._totals[0], self._totals[1]

    def outside_cycles(self) -> tuple[int, int]:
        """``(tx, rx)`` recorded while no charge cycle was open."""
        return self._outside[0], self._outside[1]

    @property
    def open_cycles(self) -> tuple[str, ...]:
        return tuple(self._open)

    @property
    def unsaved_bytes(self) -> int:
        """Bytes recorded since the last :meth:`save` (lost if power fails now)."""
        return self._unsaved

    # -- persistence ----------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-ready dict (the file's content)."""
        return {
            "format": _FORMAT,
            "totals": list(self._totals),
            "outside_cycles": list(self._outside),
            "days": {
                day.isoformat(): {link: list(c) for link, c in links.items()}
                for day, links in sorted(self._days.items())
            },
            "cycles": {
                cid: {
                    "tx": c.counts[0],
                    "rx": c.counts[1],
                    "started": c.started.isoformat(),
                    "ended": None if c.ended is None else c.ended.isoformat(),
                }
                for cid, c in self._cycles.items()
            },
        }

    @classmethod
    def from_json(cls, data: Any, **kwargs: int) -> ByteCounter:
        """The counter saved as ``data`` by :meth:`to_json`; ValueError when it is not one."""
        counter = cls(**kwargs)
        try:
            if data.get("format") != _FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            counter._totals = _pair(data["totals"])
            counter._outside = _pair(data["outside_cycles"])
            for day, links in data["days"].items():
                buckets = counter._days[date.fromisoformat(day)] = {}
                for link, pair in links.items():
                    if link not in LINKS:
                        raise ValueError(f"unknown link {link!r}")
                    buckets[link] = _pair(pair)
            for cid, c in data["cycles"].items():
                ended = None if c["ended"] is None else _utc(datetime.fromisoformat(c["ended"]))
                cycle = _Cycle(
                    _utc(datetime.fromisoformat(c["started"])), ended, _pair([c["tx"], c["rx"]])
                )
                counter._cycles[str(cid)] = cycle
                if ended is None:
                    counter._open[str(cid)] = cycle.counts
        except (AttributeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a traffic file: {exc!r}") from None
        return counter

    def save(self, data_dir: Path) -> Path:
        """Write the counters to ``data_dir/traffic.json`` atomically; returns the path."""
        self._prune()
        path = Path(data_dir) / FILENAME
        _atomic_write(path, json.dumps(self.to_json(), separators=(",", ":")).encode())
        self._unsaved = 0
        return path

    @classmethod
    def load(cls, data_dir: Path, **kwargs: int) -> ByteCounter:
        """The counters saved in ``data_dir``; empty ones when nothing was saved there yet.

        ValueError when the file is there but unreadable.
        """
        path = Path(data_dir) / FILENAME
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(**kwargs)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON: {exc}") from None
        return cls.from_json(data, **kwargs)

    def _prune(self) -> None:
        if len(self._days) > self.keep_days:
            for day in sorted(self._days)[: len(self._days) - self.keep_days]:
                del self._days[day]
            self._day = None
        ended = [cid for cid, c in self._cycles.items() if c.ended is not None]
        for cid in ended[: max(0, len(ended) - self.keep_cycles)]:
            del self._cycles[cid]


def _pair(value: Any) -> list[int]:
    tx, rx = value
    if not (isinstance(tx, int) and isinstance(rx, int)) or tx < 0 or rx < 0:
        raise ValueError(f"not a pair of byte counts: {value!r}")
    return [tx, rx]


def _atomic_write(path: Path, payload: bytes) -> None:
    """Temporary file, fsync, rename, fsync of the directory: the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
