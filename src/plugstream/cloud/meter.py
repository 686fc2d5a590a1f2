"""Sampled values and timestamps as stations send them, read into exact, UTC records.

Shared by the 1.6 and the 2.0.1 handlers. Energy registers are normalised to Wh
(``kWh`` times 1000) with :class:`~decimal.Decimal`, so that a register of
``"12345.678"`` kWh is 12345678 Wh exactly. Readers are lenient: a station whose
payloads break the schema (a lenient station) may send odd fields; a sample that
cannot be read is skipped, never a reason to fail the whole message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
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


def to_decimal(value: object) -> Decimal | None:
    """A number from the wire as an exact Decimal: strings (1.6) as written, ints exactly,
    floats (2.0.1 JSON numbers) by their shortest repr, so ``1234.5`` stays 1234.5."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            number = Decimal(value.strip())
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, Decimal):
            number = value
        else:
            return None
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def normalise(value: Decimal, unit: str | None, measurand: str) -> tuple[Decimal, str | None]:
    """Kilo-units to base units (kWh → Wh). A missing unit of an energy measurand is
    the spec's default, Wh; of any other measurand it stays unknown (the spec's
    default of Wh for, say, a Voltage would be a station's mistake, not a fact)."""
    if unit is None and measurand.startswith("Energy"):
        unit = DEFAULT_UNIT
    base = _KILO.get(unit) if unit is not None else None
    if base is not None:
        value, unit = value * _THOUSAND, base
    return plain(value), unit


def plain(value: Decimal) -> Decimal:
    """The same number without exponent or trailing zeros: 12345.000 → 12345, 1.5E+3 → 1500."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _sample(
    timestamp: datetime,
    raw: Mapping[str, Any],
    value: Decimal,
    unit: str | None,
) -> MeterSample:
    measurand = str_or_none(raw.get("measurand")) or ENERGY_REGISTER
    number, unit = normalise(value, unit, measurand)
    return MeterSample(
        timestamp=timestamp,
        measurand=measurand,
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


def samples_16(meter_values: object, received_at: datetime) -> list[MeterSample]:
    """OCPP 1.6 ``meterValue`` / ``transactionData``: values are strings, read exactly.

    Signed data (``format: SignedData``) is not a number and is skipped here; the
    message itself is logged whole by the gateway.
    """
    out: list[MeterSample] = []
    for meter_value in _meter_values(meter_values):
        timestamp = parse_time_or(meter_value.get("timestamp"), received_at)
        for raw in _sampled(meter_value):
            if raw.get("format") == "SignedData":
                continue
            value = to_decimal(raw.get("value"))
            if value is None:
                log.warning("sampled value %r is not a number; skipped", raw.get("value"))
                continue
            out.append(_sample(timestamp, raw, value, str_or_none(raw.get("unit"))))
    return out


def samples_201(meter_values: object, received_at: datetime) -> list[MeterSample]:
    """OCPP 2.0.1 ``meterValue``: numbers, scaled by ``unitOfMeasure.multiplier`` (10^n)."""
    out: list[MeterSample] = []
    for meter_value in _meter_values(meter_values):
        timestamp = parse_time_or(meter_value.get("timestamp"), received_at)
        for raw in _sampled(meter_value):
            value = to_decimal(raw.get("value"))
            if value is None:
                log.warning("sampled value %r is not a number; skipped", raw.get("value"))
                continue
            unit: str | None = None
            measure = raw.get("unitOfMeasure")
            if isinstance(measure, Mapping):
                unit = str_or_none(measure.get("unit"))
                multiplier = measure.get("multiplier")
                if isinstance(multiplier, int) and not isinstance(multiplier, bool) and multiplier:
                    value = value.scaleb(multiplier)
            out.append(_sample(timestamp, raw, value, unit))
    return out
