"""What a charging session costs, sans-I/O: a tariff's prices applied to a session's
energy and times, in exact Decimal.

A tariff has a start fee, a price per kWh, a price per minute of charging and a price per
minute of idle time after charging (the EV stays plugged in but draws nothing), all
excluding VAT, plus a VAT rate. :class:`SessionClock` turns the TransactionEvents'
``chargingState`` changes into charging and idle seconds.

Rounding, stated once: each component (start fee, energy, charging time, idle time) is
rounded half-up to the currency's minor unit (ISO 4217: 2 decimals, 0 for JPY, ...), the
net is their sum, the VAT is the net times the rate rounded half-up to the minor unit, and
the total is net plus VAT. Every step is monotone, so a cost never decreases as energy
or time grow, and the parts always add up to the total the driver is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext

__all__ = [
    "CHARGING",
    "CostBreakdown",
    "SessionClock",
    "TariffPrices",
    "Usage",
    "minor_unit",
    "price",
]

#: the TransactionEvent chargingState in which the charging-time price runs
CHARGING = "Charging"
#: states in which the EV is plugged in but draws nothing: idle once it has charged
_PLUGGED_NOT_CHARGING = frozenset({"EVConnected", "SuspendedEV", "SuspendedEVSE"})

# ISO 4217 currencies without the usual two decimals
_EXPONENTS = {
    "BHD": 3,
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}
_ZERO = Decimal(0)
# enough digits that no product of a price and a quantity is rounded before the quantize
_EXACT = Context(prec=60)


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of ``currency`` (0.01 EUR, 1 JPY, 0.001 KWD)."""
    return Decimal(1).scaleb(-_EXPONENTS.get(currency.upper(), 2))


@dataclass(frozen=True, slots=True)
class TariffPrices:
    """A tariff's prices, excluding VAT, in ``currency`` (ISO 4217)."""

    currency: str
    start_fee: Decimal = _ZERO
    per_kwh: Decimal = _ZERO
    per_charging_minute: Decimal = _ZERO
    per_idle_minute: Decimal = _ZERO
    vat_percent: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class Usage:
    """What a session used so far: exact Wh and seconds."""

    energy_wh: Decimal = _ZERO
    charging_s: Decimal = _ZERO
    idle_s: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Each part in the currency's minor unit; ``total`` = ``net`` + ``vat``."""

    currency: str
    start_fee: Decimal
    energy: Decimal
    charging_time: Decimal
    idle_time: Decimal
    net: Decimal
    vat: Decimal
    total: Decimal


def price(prices: TariffPrices, usage: Usage) -> CostBreakdown:
    """The cost of ``usage`` at ``prices`` (see the module's rounding rule)."""
    unit = minor_unit(prices.currency)
    with localcontext(_EXACT):

        def rounded(amount: Decimal) -> Decimal:
            return amount.quantize(unit, rounding=ROUND_HALF_UP)

        start_fee = rounded(prices.start_fee)
        energy = rounded(prices.per_kwh * max(usage.energy_wh, _ZERO) / 1000)
        charging = rounded(prices.per_charging_minute * max(usage.charging_s, _ZERO) / 60)
        idle = rounded(prices.per_idle_minute * max(usage.idle_s, _ZERO) / 60)
        net = start_fee + energy + charging + idle
        vat = rounded(net * prices.vat_percent / 100)
        return CostBreakdown(
            currency=prices.currency,
            start_fee=start_fee,
            energy=energy,
            charging_time=charging,
            idle_time=idle,
            net=net,
            vat=vat,
            total=net + vat,
        )


@dataclass(frozen=True, slots=True)
class SessionClock:
    """The charging and idle seconds of a transaction, from its TransactionEvents.

    ``state`` is the last ``chargingState`` reported and ``since`` the event time it was
    reported at. Idle time is time plugged in without charging after the EV has charged
    (waiting before the first kWh is free); time in ``Idle`` (no EV) costs nothing."""

    state: str | None = None
    since: datetime | None = None
    charged: bool = False
    charging_s: Decimal = _ZERO
    idle_s: Decimal = _ZERO

    def _credit(self, at: datetime) -> SessionClock:
        if self.since is None or at <= self.since:
            return self  # the first event, or one older than the last: no time to add
        seconds = Decimal(str((at - self.since).total_seconds()))
        if self.state == CHARGING:
            return replace(self, charging_s=self.charging_s + seconds, since=at)
        if self.charged and self.state in _PLUGGED_NOT_CHARGING:
            return replace(self, idle_s=self.idle_s + seconds, since=at)
        return replace(self, since=at)

    def advance(self, at: datetime, state: str | None) -> SessionClock:
        """An event at ``at``: the time since the last one is credited to the state then
        in force, and ``state`` (None: unchanged) is in force from now on."""
        clock = self._credit(at)
        if clock.since is None:
            clock = replace(clock, since=at)
        if state is not None:
            clock = replace(clock, state=state, charged=clock.charged or state == CHARGING)
        return clock

    def usage(self, energy_wh: Decimal | None, at: datetime | None = None) -> Usage:
        """The session's use up to ``at`` (default: the last event), the open interval
        included."""
        clock = self._credit(at) if at is not None else self
        return Usage(
            energy_wh=energy_wh if energy_wh is not None else _ZERO,
            charging_s=clock.charging_s,
            idle_s=clock.idle_s,
        )
