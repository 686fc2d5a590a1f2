"""Meter values, sans I/O: when to sample, what to send, what to keep for the end.

* :class:`MeterSchedule` says when readings are due: every sample interval counted
  from the start of the transaction (1.6 ``MeterValueSampleInterval``, 2.0.1
  ``SampledDataCtrlr.TxUpdatedInterval``) and on the clock-aligned grid, multiples of
  the aligned interval since midnight UTC (1.6 ``ClockAlignedDataInterval``, 2.0.1
  ``AlignedDataCtrlr.Interval``). An interval of 0 disables that kind.
* :class:`ClockAligned` is the station's clock-aligned grid (1.6 ``ClockAlignedDataInterval``,
  2.0.1 ``AlignedDataCtrlr.Interval``), running whether or not a transaction does, and
  says which grid point a reading belongs to (its timestamp).
* :func:`build_meter_value_16` and :func:`build_meter_value_201` turn the
  :class:`~plugstream.station.hardware.Measurements` of one moment into one
  ``meterValue`` element with the configured measurands, per phase where the meter
  measures per phase. Fields equal to the spec's defaults (context
  ``Sample.Periodic``, format ``Raw``, measurand ``Energy.Active.Import.Register``,
  location ``Outlet``, unit ``Wh``, multiplier 0) are left out: the messages stay
  small and just as valid.
* :class:`TransactionData` keeps the readings for StopTransaction ``transactionData``
  (1.6 ``StopTxnSampledData`` / ``StopTxnAlignedData``) or TransactionEvent(Ended)
  ``meterValue`` (2.0.1 ``SampledDataCtrlr.TxEndedMeasurands`` / ``TxEndedInterval``,
  ``AlignedDataCtrlr.TxEndedMeasurands`` / ``TxEndedInterval``).

Time is passed in as timezone-aware :class:`~datetime.datetime` values.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from plugstream.ocpp.datetimes import format_time
from plugstream.station.hardware import (
    ENERGY_REGISTER,
    VOLTAGE,
    Measurements,
    SampledValue,
)

__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_LOCATION",
    "DEFAULT_MEASURAND",
    "DEFAULT_UNIT",
    "ClockAligned",
    "MeterKind",
    "MeterSchedule",
    "Reading",
    "ReadingContext",
    "TransactionData",
    "build_meter_value_16",
    "build_meter_value_201",
    "parse_measurands",
    "select",
]


class ReadingContext(enum.StrEnum):
    """The ReadingContext values this station uses (1.6 7.30, 2.0.1 ReadingContextEnumType)."""

    SAMPLE_PERIODIC = "Sample.Periodic"
    SAMPLE_CLOCK = "Sample.Clock"
    TRANSACTION_BEGIN = "Transaction.Begin"
    TRANSACTION_END = "Transaction.End"
    TRIGGER = "Trigger"


class MeterKind(enum.StrEnum):
    """What a :class:`MeterSchedule` says is due; the value is the reading context."""

    SAMPLED = ReadingContext.SAMPLE_PERIODIC.value
    CLOCK = ReadingContext.SAMPLE_CLOCK.value


# the spec's defaults of SampledValue (1.6 7.44, 2.0.1 SampledValueType)
DEFAULT_CONTEXT = ReadingContext.SAMPLE_PERIODIC.value
DEFAULT_FORMAT = "Raw"  # 1.6 only
DEFAULT_MEASURAND = ENERGY_REGISTER
DEFAULT_LOCATION = "Outlet"
DEFAULT_UNIT = "Wh"

# phases that may qualify a configured measurand, e.g. "Current.Import.L1" (1.6 9.1.17)
_PHASES = frozenset({"L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1"})
_DAY = timedelta(days=1)


# -- the schedule ------------------------------------------------------------------


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"a naive datetime is no point in time: {now!r}")
    return now.astimezone(UTC)


def _next_on_grid(anchor: datetime, interval_s: int, after: datetime) -> datetime:
    """The first ``anchor + k * interval`` (k >= 1) strictly later than ``after``."""
    step = timedelta(seconds=interval_s)
    k = max(1, (after - anchor) // step + 1)
    return anchor + k * step


def _next_aligned(interval_s: int, after: datetime) -> datetime:
    """The first multiple of ``interval_s`` since midnight UTC strictly after ``after``.

    The grid starts again at every midnight, so an interval that does not divide a day
    still has a reading at 00:00:00 (1.6 9.1.5: intervals "per day, starting at
    00:00:00").
    """
    midnight = after.replace(hour=0, minute=0, second=0, microsecond=0)
    candidate = _next_on_grid(midnight, interval_s, after)
    return min(candidate, midnight + _DAY)


def _last_aligned(interval_s: int, at: datetime) -> datetime:
    """The latest grid point (multiple of ``interval_s`` since midnight UTC) not after ``at``."""
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(seconds=interval_s)
    return midnight + ((at - midnight) // step) * step


class ClockAligned:
    """The clock-aligned grid of a station: when the next reading is due and which grid
    point (its timestamp) it belongs to; an interval of 0 disables it.

    It runs always, in and outside transactions (1.6 errata 3.15: "the Charge Point
    SHALL send MeterValues at the given interval(s)"; 2.0.1 J01.FR.14 / J01.FR.22).
    Readings are stamped with the grid point, not with the moment the station woke up,
    so consecutive timestamps differ by exactly the interval (TC_J_01_CS). Missed
    points collapse into one, stamped with the latest; a clock set backwards re-plans
    instead of failing.
    """

    def __init__(self, interval: int, now: datetime) -> None:
        self._interval = 0
        self.next_due: datetime | None = None
        self.configure(interval, now)

    @property
    def interval(self) -> int:
        return self._interval

    def configure(self, interval: int, now: datetime) -> None:
        """Apply a (changed) interval: the first reading is at the next grid point after ``now``."""
        if interval < 0:
            raise ValueError(f"an interval cannot be negative: {interval}")
        self._interval = interval
        self.next_due = _next_aligned(interval, _aware(now)) if interval > 0 else None

    def due(self, now: datetime) -> datetime | None:
        """The grid point whose reading is due at ``now`` (None: nothing due); moves on."""
        now = _aware(now)
        if self.next_due is None:
            return None
        step = timedelta(seconds=self._interval)
        if now < self.next_due - step:  # the clock was set back: plan from the new time
            self.next_due = _next_aligned(self._interval, now)
            return None
        if now < self.next_due:
            return None
        self.next_due = _next_aligned(self._interval, now)
        return _last_aligned(self._interval, now)


class MeterSchedule:
    """When sampled and clock-aligned readings are due; 0 disables an interval.

    Sampled readings run only during a transaction and are counted from its start;
    clock-aligned readings run always. ``due(now)`` returns the kinds due at ``now``
    (at most one of each, however late the call) and moves on; ``next_due`` is when to
    wake up next.
    """

    def __init__(self, sample_interval: int, clock_interval: int, now: datetime) -> None:
        self._now = _aware(now)
        self._sample_interval = 0
        self._clock_interval = 0
        self._tx_start: datetime | None = None
        self.next_sample: datetime | None = None
        self.next_clock: datetime | None = None
        self.configure(sample_interval=sample_interval, clock_interval=clock_interval)

    @property
    def sample_interval(self) -> int:
        return self._sample_interval

    @property
    def clock_interval(self) -> int:
        return self._clock_interval

    @property
    def transaction_start(self) -> datetime | None:
        return self._tx_start

    def configure(
        self,
        *,
        sample_interval: int | None = None,
        clock_interval: int | None = None,
        now: datetime | None = None,
    ) -> None:
        """Apply a changed interval; the grids stay anchored (transaction start, midnight).

        ``now`` (when given) is the time of the change: the next reading is planned after
        it, not after the last one taken (which may be long ago)."""
        if now is not None:
            self._now = max(self._now, _aware(now))
        for value in (sample_interval, clock_interval):
            if value is not None and value < 0:
                raise ValueError(f"an interval cannot be negative: {value}")
        if sample_interval is not None:
            self._sample_interval = sample_interval
            self._plan_sample(self._now)
        if clock_interval is not None:
            self._clock_interval = clock_interval
            self.next_clock = (
                _next_aligned(clock_interval, self._now) if clock_interval > 0 else None
            )

    def start_transaction(self, now: datetime) -> None:
        """The transaction starts: samples follow at start + k * interval."""
        self._now = _aware(now)
        self._tx_start = self._now
        self._plan_sample(self._now)

    def stop_transaction(self, now: datetime) -> None:
        self._now = _aware(now)
        self._tx_start = None
        self.next_sample = None

    @property
    def next_due(self) -> datetime | None:
        """The earliest time something is due, None when nothing ever will be."""
        times = [t for t in (self.next_sample, self.next_clock) if t is not None]
        return min(times) if times else None

    def due(self, now: datetime) -> list[MeterKind]:
        """The kinds of reading due at ``now``; missed slots collapse into one."""
        now = _aware(now)
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        kinds: list[MeterKind] = []
        if self.next_clock is not None and self.next_clock <= now:
            kinds.append(MeterKind.CLOCK)
            self.next_clock = _next_aligned(self._clock_interval, now)
        if self.next_sample is not None and self.next_sample <= now:
            kinds.append(MeterKind.SAMPLED)
            self._plan_sample(now)
        return kinds

    def _plan_sample(self, after: datetime) -> None:
        if self._tx_start is None or self._sample_interval <= 0:
            self.next_sample = None
        else:
            self.next_sample = _next_on_grid(self._tx_start, self._sample_interval, after)


# -- choosing and rendering values -------------------------------------------------


def parse_measurands(csl: str | Iterable[str]) -> tuple[str, ...]:
    """A configured measurand list (a comma separated list, or already split)."""
    items = csl.split(",") if isinstance(csl, str) else csl
    return tuple(s for s in (item.strip() for item in items) if s)


def _wire_phase(value: SampledValue) -> str | None:
    """The hardware's voltages are line to neutral: "L1" there is "L1-N" in OCPP."""
    if value.phase is not None and value.measurand == VOLTAGE and value.phase in ("L1", "L2", "L3"):
        return f"{value.phase}-N"
    return value.phase


@functools.lru_cache(maxsize=64)
def _split_measurands(
    measurands: str | tuple[str, ...],
) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """(whole measurands, (measurand, phase) pairs): parsed once per configured list, not
    once per sample (a fleet samples thousands of meters a minute)."""
    whole: set[str] = set()
    phased: set[tuple[str, str]] = set()
    for entry in parse_measurands(measurands):
        head, _, tail = entry.rpartition(".")
        if head and tail in _PHASES:
            phased.add((head, tail))
        else:
            whole.add(entry)
    return frozenset(whole), frozenset(phased)


def select(measurements: Measurements, measurands: Iterable[str]) -> list[SampledValue]:
    """The readings of the configured measurands, register first, phases in order.

    An entry may name a phase ("Voltage.L1", "Current.Import.L2"); measurands this
    meter does not measure (or not now, like SoC without an EV) are left out.
    """
    key = measurands if isinstance(measurands, str) else tuple(measurands)
    whole, phased = _split_measurands(key)

    def wanted(value: SampledValue) -> bool:
        if value.measurand in whole:
            return True
        return value.phase is not None and (
            (value.measurand, value.phase) in phased
            or (value.measurand, _wire_phase(value) or "") in phased
        )

    named = _measurand_names(whole, phased)
    return [
        v if v.phase is None or v.measurand != VOLTAGE else v._replace(phase=_wire_phase(v))
        for v in measurements.sampled_values(named)
        if wanted(v)
    ]


@functools.lru_cache(maxsize=64)
def _measurand_names(whole: frozenset[str], phased: frozenset[tuple[str, str]]) -> frozenset[str]:
    """The measurands a configured list names, with or without a phase."""
    return whole | {measurand for measurand, _ in phased}


def _number(value: float | Decimal) -> int | float:
    """A JSON number, as short as it is exact: 230 rather than 230.0."""
    if isinstance(value, Decimal):
        value = float(value)  # a register in mWh fits a double exactly enough
    if value == int(value):
        return int(value)
    return value


def _text(value: float | Decimal) -> str:
    """A 1.6 value string: a plain decimal, no exponent, no trailing zeros."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return str(value.quantize(Decimal(1)))
        return format(value.normalize(), "f")
    return str(_number(value))


def _sampled_value_16(value: SampledValue, context: str) -> dict[str, Any]:
    out: dict[str, Any] = {"value": _text(value.value)}
    if context != DEFAULT_CONTEXT:
        out["context"] = context
    if value.measurand != DEFAULT_MEASURAND:
        out["measurand"] = value.measurand
    if value.phase is not None:
        out["phase"] = value.phase
    # 1.6: unit defaults to Wh "if the (default) measurand is an Energy type"
    if value.unit != DEFAULT_UNIT or not value.measurand.startswith("Energy"):
        out["unit"] = value.unit
    return out


def _sampled_value_201(value: SampledValue, context: str) -> dict[str, Any]:
    out: dict[str, Any] = {"value": _number(value.value)}
    if context != DEFAULT_CONTEXT:
        out["context"] = context
    if value.measurand != DEFAULT_MEASURAND:
        out["measurand"] = value.measurand
    if value.phase is not None:
        out["phase"] = value.phase
    if value.unit != DEFAULT_UNIT:
        out["unitOfMeasure"] = {"unit": value.unit}
    return out


def build_meter_value_16(
    measurements: Measurements,
    measurands: Iterable[str],
    context: str,
    timestamp: datetime,
) -> dict[str, Any] | None:
    """One 1.6 MeterValue (7.41), or None when no configured measurand has a value."""
    values = select(measurements, measurands)
    if not values:
        return None
    return {
        "timestamp": format_time(timestamp),
        "sampledValue": [_sampled_value_16(v, str(context)) for v in values],
    }


def build_meter_value_201(
    measurements: Measurements,
    measurands: Iterable[str],
    context: str,
    timestamp: datetime,
) -> dict[str, Any] | None:
    """One 2.0.1 MeterValueType, or None when no configured measurand has a value."""
    values = select(measurements, measurands)
    if not values:
        return None
    return {
        "timestamp": format_time(timestamp),
        "sampledValue": [_sampled_value_201(v, str(context)) for v in values],
    }


# -- transaction data --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """The chosen values of one moment, version-neutral until rendered."""

    timestamp: datetime
    context: str
    values: tuple[SampledValue, ...]


class TransactionData:
    """The meter values a transaction's last message carries.

    1.6: StopTransaction ``transactionData`` with ``StopTxnSampledData`` at the start,
    every ``MeterValueSampleInterval`` from the start and at the end, and
    ``StopTxnAlignedData`` every ``ClockAlignedDataInterval``. 2.0.1: TransactionEvent
    (Ended) ``meterValue`` with ``SampledDataCtrlr.TxEndedMeasurands`` at the start,
    every ``SampledDataCtrlr.TxEndedInterval`` and at the end (only start and end when
    that interval is 0, E06.FR.11), and ``AlignedDataCtrlr.TxEndedMeasurands`` every
    ``AlignedDataCtrlr.TxEndedInterval``. Empty measurand lists keep nothing (1.6 3.16.1).

    Call :meth:`begin`, then :meth:`tick` at least by :attr:`next_due`, then :meth:`end`.
    """

    def __init__(
        self,
        *,
        sampled_measurands: str | Iterable[str],
        sampled_interval: int,
        aligned_measurands: str | Iterable[str] = (),
        aligned_interval: int = 0,
    ) -> None:
        self.sampled_measurands = parse_measurands(sampled_measurands)
        self.aligned_measurands = parse_measurands(aligned_measurands)
        self._sampled_interval = sampled_interval
        self._aligned_interval = aligned_interval
        self._schedule: MeterSchedule | None = None
        self.readings: list[Reading] = []
        self.ended = False

    @property
    def next_due(self) -> datetime | None:
        return None if self._schedule is None or self.ended else self._schedule.next_due

    def begin(self, now: datetime, measurements: Measurements) -> None:
        if self._schedule is not None:
            raise RuntimeError("the transaction has begun already")
        self._schedule = MeterSchedule(
            self._sampled_interval if self.sampled_measurands else 0,
            self._aligned_interval if self.aligned_measurands else 0,
            now,
        )
        self._schedule.start_transaction(now)
        self._keep(now, ReadingContext.TRANSACTION_BEGIN, self.sampled_measurands, measurements)

    def tick(self, now: datetime, measurements: Measurements) -> None:
        """Keep whatever is due at ``now``."""
        if self._schedule is None or self.ended:
            raise RuntimeError("tick outside a transaction")
        for kind in self._schedule.due(now):
            measurands = (
                self.aligned_measurands if kind is MeterKind.CLOCK else self.sampled_measurands
            )
            self._keep(now, kind.value, measurands, measurements)

    def end(self, now: datetime, measurements: Measurements) -> None:
        if self._schedule is None or self.ended:
            raise RuntimeError("end outside a transaction")
        self.tick(now, measurements)
        self._keep(now, ReadingContext.TRANSACTION_END, self.sampled_measurands, measurements)
        self._schedule.stop_transaction(now)
        self.ended = True

    def meter_values_16(self) -> list[dict[str, Any]]:
        """StopTransaction.req ``transactionData``: leave the field out when empty."""
        return [
            {
                "timestamp": format_time(r.timestamp),
                "sampledValue": [_sampled_value_16(v, r.context) for v in r.values],
            }
            for r in self.readings
        ]

    def meter_values_201(self) -> list[dict[str, Any]]:
        """TransactionEventRequest(Ended) ``meterValue``: leave the field out when empty."""
        return [
            {
                "timestamp": format_time(r.timestamp),
                "sampledValue": [_sampled_value_201(v, r.context) for v in r.values],
            }
            for r in self.readings
        ]

    def _keep(
        self, now: datetime, context: str, measurands: Sequence[str], measurements: Measurements
    ) -> None:
        values = select(measurements, measurands)
        if values:
            self.readings.append(Reading(_aware(now), str(context), tuple(values)))
