"""Sampled values and timestamps as stations send them, read into exact, UTC records.

Shared by the 1.6 and the 2.0.1 handlers. Energy registers are normalised to Wh
(``kWh`` times 1000) with :class:`~decimal.Decimal`, so that a register of
``"12345.678"`` kWh is 12345678 Wh exactly. Every number a station sends (sampled
values, meterStart, meterStop) goes through the one parser, :func:`read_decimal`: the
JSON number grammar only. A sample that cannot be read or stored exactly is kept as a
:class:`Rejected` sample (flagged ``UnreadableValue`` or ``ValueOutOfRange`` by the
store), never a reason to fail the whole message and never dropped without a trace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, localcontext
from typing import Any

from plugstream.cloud.payloads import str_or_none
from plugstream.cloud.storage.records import MeterSample
from plugstream.ocpp.datetimes import parse_time

log = logging.getLogger("plugstream.cloud")

ENERGY_REGISTER = "Energy.Active.Import.Register"  # the default measurand in 1.6 and 2.0.1
DEFAULT_UNIT = "Wh"  # the default unit in 1.6 and 2.0.1

# kilo-units of energy and power, normalised to their base unit (times 1000)
_KILO = {"kWh": "Wh", "kvarh": "varh", "kVAh": "VAh", "kW": "W", "kvar": "var", "kVA": "VA"}
_THOUSAND = Decimal(1000)


def parse_time_or(text: object, default: datetime) -> datetime:
    """:func:`parse_time`, or ``default`` when the field is missing or unreadable."""
    if isinstance(text, str):
        try:
            return parse_time(text)
        except ValueError:
            log.warning("unreadable timestamp %r", text)
    return default


#: the JSON number grammar (RFC 8259 §6), ASCII digits only: no NaN, Infinity, hex,
#: underscores, spaces or other scripts' digits, all of which ``Decimal()`` would take
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
#: the widest value stored exactly: ``ExactDecimal`` is text of 64 characters on SQLite
MAX_STORED_CHARS = 64
#: arithmetic on values that fit (kWh to Wh, 10^multiplier, register differences) is
#: exact in this context: 64 stored characters need far fewer than 200 digits
EXACT = Context(prec=200, Emax=MAX_EMAX, Emin=MIN_EMIN)
UNREADABLE = "UnreadableValue"
OUT_OF_RANGE = "ValueOutOfRange"


@dataclass(frozen=True, slots=True)
class NotANumber:
    """Why a station's number was not read: ``UnreadableValue`` (not the JSON number
    grammar) or ``ValueOutOfRange`` (finite, but not storable exactly); ``raw`` is what
    was sent, as text for a flag's detail."""

    code: str
    raw: str


def _raw(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:200]) + (f" ({len(text)} characters)" if len(text) > 200 else "")


def fits(value: Decimal) -> bool:
    """Whether the value is stored exactly: finite, and its plain text within
    :data:`MAX_STORED_CHARS` (checked without writing out a huge exponent)."""
    if not value.is_finite():
        return False
    if value.is_zero():
        return True
    if len(value.as_tuple().digits) > MAX_STORED_CHARS or abs(value.adjusted()) > MAX_STORED_CHARS:
        return False
    return len(format(plain(value), "f")) <= MAX_STORED_CHARS


def read_decimal(value: object) -> Decimal | NotANumber:
    """The one reader of a station's number, exact: a 1.6 string in the JSON number
    grammar, or a 2.0.1 JSON number (an int exactly, a float by its shortest repr, so
    ``1234.5`` stays 1234.5). Anything else is :class:`NotANumber`, never an exception."""
    if isinstance(value, bool):
        return NotANumber(UNREADABLE, _raw(value))
    if isinstance(value, str):
        text = value
    elif isinstance(value, int):
        text = str(value) if abs(value) < 10**MAX_STORED_CHARS else "1e999"
    elif isinstance(value, float):
        text = repr(value)
        if text in ("nan", "inf", "-inf"):
            return NotANumber(UNREADABLE, _raw(value))
        text = text.replace("e+", "e")
    elif isinstance(value, Decimal):
        text = str(value)
    else:
        return NotANumber(UNREADABLE, _raw(value))
    if len(text) > 1000 or _JSON_NUMBER.fullmatch(text) is None:
        return NotANumber(UNREADABLE, _raw(value))
    number = Decimal(text)  # exact: the constructor does not round
    if not fits(number):
        return NotANumber(OUT_OF_RANGE, _raw(value))
    return number


def to_decimal(value: object) -> Decimal | None:
    """:func:`read_decimal`, with None for a value that is not read."""
    number = read_decimal(value)
    return number if isinstance(number, Decimal) else None


def normalise(value: Decimal, unit: str | None, measurand: str) -> tuple[Decimal, str | None]:
    """Kilo-units to base units (kWh → Wh). A missing unit of an energy measurand is
    the spec's default, Wh; of any other measurand it stays unknown (the spec's
    default of Wh for, say, a Voltage would be a station's mistake, not a fact)."""
    if unit is None and measurand.startswith("Energy"):
        unit = DEFAULT_UNIT
    base = _KILO.get(unit) if unit is not None else None
    if base is not None:
        value, unit = EXACT.multiply(value, _THOUSAND), base
    return plain(value), unit


def plain(value: Decimal) -> Decimal:
    """The same number without exponent or trailing zeros: 12345.000 → 12345, 1.5E+3 → 1500.
    A value far too wide to be stored (see :func:`fits`) is returned as it is."""
    if value.is_zero():
        return Decimal(0)
    if len(value.as_tuple().digits) > 2 * MAX_STORED_CHARS or abs(value.adjusted()) > 100:
        return value
    with localcontext(EXACT):
        if value == value.to_integral_value():
            return value.quantize(Decimal(1))
        return value.normalize()


@dataclass(slots=True)
class Rejected:
    """A sampled value that was sent but not read as a number: kept, to be flagged."""

    timestamp: datetime
    measurand: str
    why: NotANumber

    @property
    def detail(self) -> str:
        return f"{self.measurand} at {self.timestamp.isoformat()}: {self.why.raw}"


@dataclass(slots=True)
class Readings:
    """What a message's meter values read as: the samples, and the values not read."""

    samples: list[MeterSample] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def flags(self) -> list[tuple[str, str, datetime]]:
        """(code, detail, at) of each value not read, for the store to flag."""
        return [(r.why.code, r.detail, r.timestamp) for r in self.rejected]


def _sample(
    timestamp: datetime,
    raw: Mapping[str, Any],
    number: Decimal,
    unit: str | None,
) -> MeterSample:
    """A sample of a value already read and normalised."""
    return MeterSample(
        timestamp=timestamp,
        measurand=str_or_none(raw.get("measurand")) or ENERGY_REGISTER,
        value=number,
        unit=unit,
        phase=str_or_none(raw.get("phase")),
        context=str_or_none(raw.get("context")),
        location=str_or_none(raw.get("location")),
    )


# Payloads come from JSON, so objects are dicts: ``isinstance(x, dict)`` is a plain
# type check where ``Mapping`` would go through the ABC machinery for every sample.


def _meter_values(meter_values: object) -> Iterable[dict[str, Any]]:
    if isinstance(meter_values, list):
        for item in meter_values:
            if isinstance(item, dict):
                yield item


def _sampled(meter_value: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    sampled = meter_value.get("sampledValue")
    if isinstance(sampled, list):
        for item in sampled:
            if isinstance(item, dict):
                yield item


def read_16(meter_values: object, received_at: datetime) -> Readings:
    """OCPP 1.6 ``meterValue`` / ``transactionData``: values are strings, read exactly.

    Signed data (``format: SignedData``) is not a number and is skipped here; the
    message itself is logged whole by the gateway.
    """
    out = Readings()
    for meter_value in _meter_values(meter_values):
        timestamp = parse_time_or(meter_value.get("timestamp"), received_at)
        for raw in _sampled(meter_value):
            if raw.get("format") == "SignedData":
                continue
            measurand = str_or_none(raw.get("measurand")) or ENERGY_REGISTER
            value = read_decimal(raw.get("value"))
            if isinstance(value, Decimal):
                number, unit = normalise(value, str_or_none(raw.get("unit")), measurand)
                if fits(number):
                    out.samples.append(_sample(timestamp, raw, number, unit))
                    continue
                value = NotANumber(OUT_OF_RANGE, _raw(raw.get("value")))
            out.rejected.append(Rejected(timestamp, measurand, value))
    return out


def read_201(meter_values: object, received_at: datetime) -> Readings:
    """OCPP 2.0.1 ``meterValue``: numbers, scaled by ``unitOfMeasure.multiplier`` (10^n)."""
    out = Readings()
    for meter_value in _meter_values(meter_values):
        timestamp = parse_time_or(meter_value.get("timestamp"), received_at)
        for raw in _sampled(meter_value):
            measurand = str_or_none(raw.get("measurand")) or ENERGY_REGISTER
            value = read_decimal(raw.get("value"))
            if isinstance(value, Decimal):
                unit: str | None = None
                measure = raw.get("unitOfMeasure")
                if isinstance(measure, Mapping):
                    unit = str_or_none(measure.get("unit"))
                    multiplier = measure.get("multiplier")
                    if isinstance(multiplier, int) and not isinstance(multiplier, bool):
                        if abs(multiplier) > MAX_STORED_CHARS:
                            value = Decimal("1e999")  # out of range whatever the value
                        elif multiplier:
                            value = value.scaleb(multiplier, EXACT)
                number, unit = normalise(value, unit, measurand)
                if fits(number):
                    out.samples.append(_sample(timestamp, raw, number, unit))
                    continue
                value = NotANumber(OUT_OF_RANGE, _raw(raw.get("value")))
            out.rejected.append(Rejected(timestamp, measurand, value))
    return out


def samples_16(meter_values: object, received_at: datetime) -> list[MeterSample]:
    """The samples of :func:`read_16`."""
    return read_16(meter_values, received_at).samples


def samples_201(meter_values: object, received_at: datetime) -> list[MeterSample]:
    """The samples of :func:`read_201`."""
    return read_201(meter_values, received_at).samples
