"""A simulated electric vehicle, so that sessions on a simulated station look like real ones.

The car decides how much current it asks for, as a real on-board charger does: full
current up to ``TAPER_START_SOC``, then a linear taper to a trickle at 100 %, and
nothing once its target state of charge is reached. The station only ever caps that
request (its own rating, a smart-charging limit); see :mod:`plugstream.station.hardware`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TAPER_START_SOC = 80.0  # %: lithium-ion cells slow down from about here
TRICKLE_FRACTION = 0.1  # of the maximum current, asked for just below 100 %
CHARGER_EFFICIENCY = 0.9  # AC from the grid to DC in the cells; the rest is heat
_SNAP = 1e-6  # % of SoC


@dataclass(frozen=True, slots=True)
class EvModel:
    """What a car model can do: a preset shared by every car of that model."""

    name: str
    capacity_kwh: float
    max_current_a: float  # per phase, of the on-board AC charger
    phases: int  # 1 or 3: a 1-phase car on a 3-phase station draws on L1 only

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"an EV charges on 1 or 3 phases, not {self.phases}")
        if self.capacity_kwh <= 0 or self.max_current_a <= 0:
            raise ValueError("capacity and maximum current must be positive")


CITY_CAR = EvModel("city car", capacity_kwh=40.0, max_current_a=32.0, phases=1)
FAMILY_CAR = EvModel("family car", capacity_kwh=75.0, max_current_a=16.0, phases=3)
PERFORMANCE_CAR = EvModel("performance car", capacity_kwh=100.0, max_current_a=32.0, phases=3)
PLUG_IN_HYBRID = EvModel("plug-in hybrid", capacity_kwh=13.0, max_current_a=16.0, phases=1)

PRESETS: tuple[EvModel, ...] = (CITY_CAR, FAMILY_CAR, PERFORMANCE_CAR, PLUG_IN_HYBRID)


class Ev:
    """One car with its battery's state of charge (SoC, in %)."""

    def __init__(self, model: EvModel, soc: float = 20.0, target_soc: float = 100.0) -> None:
        if not 0.0 <= soc <= 100.0 or not 0.0 <= target_soc <= 100.0:
            raise ValueError("SoC and target SoC are percentages, 0 to 100")
        self.model = model
        self.soc = float(soc)
        self.target_soc = float(target_soc)

    def __repr__(self) -> str:
        return f"Ev({self.model.name!r}, soc={self.soc:.1f}, target_soc={self.target_soc:.0f})"

    @property
    def phases(self) -> int:
        return self.model.phases

    @property
    def capacity_wh(self) -> float:
        return self.model.capacity_kwh * 1000.0

    @property
    def done(self) -> bool:
        """True once the car stops asking for current (the session goes SuspendedEV)."""
        return self.soc >= self.target_soc

    def requested_current(self, soc: float | None = None) -> float:
        """Amperes per phase the car asks for at ``soc`` (default: its own SoC)."""
        soc = self.soc if soc is None else soc
        if soc >= self.target_soc or soc >= 100.0:
            return 0.0
        full = self.model.max_current_a
        if soc <= TAPER_START_SOC:
            return full
        trickle = full * TRICKLE_FRACTION
        share = (100.0 - soc) / (100.0 - TAPER_START_SOC)
        return trickle + (full - trickle) * share

    def charge(self, energy_wh: float) -> None:
        """Take ``energy_wh`` from the grid; losses of the on-board charger are not stored."""
        if energy_wh < 0:
            raise ValueError("an EV cannot be charged with negative energy")
        stored = energy_wh * CHARGER_EFFICIENCY
        soc = min(100.0, self.soc + stored / self.capacity_wh * 100.0)
        if self.target_soc - _SNAP < soc < self.target_soc:
            soc = self.target_soc  # float dust must not leave the car one ulp short of done
        self.soc = soc

    def energy_to_target_wh(self) -> float:
        """Grid energy that brings the car to its target SoC (0 when there)."""
        missing = max(0.0, min(self.target_soc, 100.0) - self.soc)
        return missing / 100.0 * self.capacity_wh / CHARGER_EFFICIENCY


def random_ev(rng: random.Random) -> Ev:
    """A plausible arriving car: any preset, fairly empty, a target most drivers set."""
    model = rng.choice(PRESETS)
    soc = round(rng.uniform(10.0, 70.0), 1)
    target = rng.choice((80.0, 90.0, 100.0))
    return Ev(model, soc=soc, target_soc=target)
