"""The PlugStream 7 / 22 hardware: meter, contactor, cable lock, RFID reader, fault flag.

A plain, sans-I/O model. Time is passed in (``advance(now)`` integrates power since
the previous call), and so is randomness (the grid's voltage jitter), so a whole fleet
runs under one simulated clock and every test is reproducible.

The interlocks are the ones a user can see on a real charge point: the contactor only
closes on a locked cable and without an active fault; the cable stays locked while the
contactor is closed; a fault opens the contactor at once.

Callers change state at a moment in time: call ``advance(now)`` first, so that the
energy up to ``now`` is integrated at the old rate.
"""

from __future__ import annotations

import random
from collections.abc import Container
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from plugstream.station.ev import CHARGER_EFFICIENCY, TAPER_START_SOC, Ev

VENDOR = "PlugStream"
PHASES = ("L1", "L2", "L3")
MIN_CURRENT_A = 6.0  # IEC 61851: below this the control pilot cannot offer current
VOLTAGE_SIGMA_V = 0.8  # a quiet low-voltage grid; enough to make samples look real
MAX_STEP_S = 10.0  # integration step, so the EV's taper is followed during long advances

# measurands, units and phases as OCPP names them
ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
VOLTAGE = "Voltage"
SOC = "SoC"

_MWH_PER_WH = 1000


@dataclass(frozen=True, slots=True)
class Model:
    """A charge point model, as it reports itself in BootNotification."""

    name: str  # the model name, e.g. "PlugStream 7"
    phases: int
    nominal_voltage_v: float  # per phase, line to neutral
    max_current_a: float  # per phase
    max_power_w: int  # the rated power on the name plate
    vendor: str = VENDOR
    connector: str = "Type 2 socket"

    @property
    def phase_names(self) -> tuple[str, ...]:
        return PHASES[: self.phases]


PLUGSTREAM_7 = Model(
    "PlugStream 7", phases=1, nominal_voltage_v=230.0, max_current_a=32.0, max_power_w=7400
)
PLUGSTREAM_22 = Model(
    "PlugStream 22", phases=3, nominal_voltage_v=230.0, max_current_a=32.0, max_power_w=22000
)
MODELS = {m.name: m for m in (PLUGSTREAM_7, PLUGSTREAM_22)}


class SampledValue(NamedTuple):
    """One reading, ready for a MeterValues / TransactionEvent sampledValue."""

    measurand: str
    value: float | Decimal
    unit: str
    phase: str | None = None


@dataclass(frozen=True, slots=True)
class Measurements:
    """What the meter reads at one moment."""

    voltage_v: dict[str, float]  # per phase of the station
    current_a: dict[str, float]  # per phase of the station; 0 where the EV draws nothing
    power_w: float
    energy_wh: Decimal  # the register: monotonic, exact
    soc: float | None  # the EV's, when one is plugged in (ISO 15118 would tell; we know)

    def sampled_values(self, measurands: Container[str] | None = None) -> list[SampledValue]:
        """The readings under their OCPP measurand names, register first; only those of
        ``measurands`` (None: all) -- a sample of the register alone makes one, not eight."""

        def wanted(name: str) -> bool:
            return measurands is None or name in measurands

        values: list[SampledValue] = []
        if wanted(ENERGY_REGISTER):
            values.append(SampledValue(ENERGY_REGISTER, self.energy_wh, "Wh"))
        if wanted(POWER):
            values.append(SampledValue(POWER, round(self.power_w, 1), "W"))
        if wanted(CURRENT):
            values += [SampledValue(CURRENT, a, "A", p) for p, a in self.current_a.items()]
        if wanted(VOLTAGE):
            values += [SampledValue(VOLTAGE, v, "V", p) for p, v in self.voltage_v.items()]
        if self.soc is not None and wanted(SOC):
            values.append(SampledValue(SOC, round(self.soc, 1), "Percent"))
        return values


class ChargePointHardware:
    """One PlugStream charge point with its single Type 2 connector."""

    def __init__(
        self,
        model: Model,
        rng: random.Random,
        now: float = 0.0,
        energy_wh: Decimal | int = 0,
    ) -> None:
        self.model = model
        self._rng = rng
        self._last = now
        self._mwh = _to_mwh(energy_wh)  # the register, in integer mWh: exact and monotonic
        self._carry_wh = 0.0  # energy below one mWh, not yet on the register
        self.ev: Ev | None = None
        self.contactor_closed = False
        self.cable_locked = False
        self.fault: str | None = None
        self.current_limit_a: float | None = None
        self._tokens: list[str] = []  # RFID cards presented, oldest first (a few at most)
        self._voltage = self._sample_voltage()

    # -- the meter -------------------------------------------------------------------

    @property
    def energy_wh(self) -> Decimal:
        """The energy register: persist this value, restore it with ``energy_wh=``."""
        return Decimal(self._mwh) / _MWH_PER_WH

    def advance(self, now: float) -> None:
        """Integrate power from the previous call to ``now`` and charge the EV with it."""
        if now < self._last:
            raise ValueError(f"time went backwards: {now} < {self._last}")
        if now == self._last:  # no time passed (a tick, then its state saved): as it was
            return
        self._voltage = self._sample_voltage()
        t, ev = self._last, self.ev
        self._last = now
        if ev is None or not self.contactor_closed:
            return
        phases = self.model.phase_names[: ev.phases]
        volts = sum(self._voltage[p] for p in phases)
        offered = self.offered_current_a
        while t < now:
            amps = round(min(ev.requested_current(), offered), 2)  # as measurements() shows
            if amps <= 0:  # the car is full (or nothing is offered): nothing more flows
                break
            power = amps * volts
            step = min(MAX_STEP_S, now - t)
            if ev.soc < TAPER_START_SOC:  # constant current up to the taper: one step
                to_taper = (TAPER_START_SOC - ev.soc) / 100.0 * ev.capacity_wh
                step = max(step, min(now - t, to_taper / CHARGER_EFFICIENCY / power * 3600.0))
            energy = min(power * step / 3600.0, ev.energy_to_target_wh())
            ev.charge(energy)
            self._add_energy(energy)
            t += step

    def measurements(self) -> Measurements:
        currents = self._currents()
        return Measurements(
            voltage_v=dict(self._voltage),
            current_a=currents,
            power_w=self._power_w(currents),
            energy_wh=self.energy_wh,
            soc=None if self.ev is None else self.ev.soc,
        )

    @property
    def offered_current_a(self) -> float:
        """What the control pilot offers per phase: rating, capped by smart charging."""
        offered = self.model.max_current_a
        if self.current_limit_a is not None:
            offered = min(offered, self.current_limit_a)
        return offered if offered >= MIN_CURRENT_A else 0.0

    def seconds_to_ev_full(self) -> float | None:
        """Seconds until the car stops drawing current, at the earliest: the energy it
        still takes at the power it draws now (its curve only tapers, so the car is
        never full sooner). None when no energy flows."""
        if self.ev is None:
            return None
        power = self._power_w(self._currents())
        if power <= 0:
            return None
        return self.ev.energy_to_target_wh() / power * 3600.0

    @property
    def charging(self) -> bool:
        """True while energy flows (OCPP Charging, not SuspendedEV/SuspendedEVSE)."""
        return any(a > 0 for a in self._currents().values())

    def set_current_limit(self, amps: float | None) -> None:
        """Cap the current per phase (a charging profile's limit); None lifts the cap."""
        if amps is not None and amps < 0:
            raise ValueError("a current limit cannot be negative")
        self.current_limit_a = amps

    # -- the connector ---------------------------------------------------------------

    def plug_in(self, ev: Ev) -> bool:
        """Refused (False) while another cable is in the socket."""
        if self.ev is not None:
            return False
        self.ev = ev
        return True

    def unplug(self) -> bool:
        """Refused (False) while the lock holds the plug."""
        if self.cable_locked:
            return False
        self.ev = None
        return True

    def lock_cable(self) -> bool:
        """Refused (False) with nothing in the socket."""
        if self.ev is None:
            return False
        self.cable_locked = True
        return True

    def unlock_cable(self) -> bool:
        """Refused (False) while the contactor is closed: never pull a live plug."""
        if self.contactor_closed:
            return False
        self.cable_locked = False
        return True

    def close_contactor(self) -> bool:
        """Refused (False) on an unlocked cable or an active fault."""
        if not self.cable_locked or self.fault is not None:
            return False
        self.contactor_closed = True
        return True

    def open_contactor(self) -> None:
        self.contactor_closed = False

    # -- faults and the RFID reader --------------------------------------------------

    def raise_fault(self, code: str) -> None:
        """Record a fault (an OCPP ChargePointErrorCode, e.g. "GroundFailure") and trip."""
        self.fault = code
        self.contactor_closed = False

    def clear_fault(self) -> None:
        """The fault is gone; the contactor stays open until closed again."""
        self.fault = None

    def swipe(self, token: str) -> None:
        """A card is held to the reader."""
        self._tokens.append(token)

    def read(self) -> str | None:
        """The oldest swiped token not yet read, or None."""
        return self._tokens.pop(0) if self._tokens else None

    # -- internals -------------------------------------------------------------------

    def _currents(self) -> dict[str, float]:
        currents = dict.fromkeys(self.model.phase_names, 0.0)
        if not self.contactor_closed or self.ev is None:
            return currents
        drawn = min(self.ev.requested_current(), self.offered_current_a)
        for phase in self.model.phase_names[: self.ev.phases]:
            currents[phase] = round(drawn, 2)
        return currents

    def _power_w(self, currents: dict[str, float]) -> float:
        return sum(self._voltage[p] * a for p, a in currents.items())

    def _sample_voltage(self) -> dict[str, float]:
        nominal = self.model.nominal_voltage_v
        return {
            p: round(self._rng.gauss(nominal, VOLTAGE_SIGMA_V), 1) for p in self.model.phase_names
        }

    def _add_energy(self, energy_wh: float) -> None:
        self._carry_wh += energy_wh
        whole_mwh = int(self._carry_wh * _MWH_PER_WH)
        if whole_mwh > 0:
            self._mwh += whole_mwh
            self._carry_wh -= whole_mwh / _MWH_PER_WH


Hardware = ChargePointHardware


def _to_mwh(energy_wh: Decimal | int) -> int:
    mwh = Decimal(energy_wh) * _MWH_PER_WH
    if mwh < 0 or mwh != mwh.to_integral_value():
        raise ValueError(f"an energy register is a non-negative count of mWh: {energy_wh}")
    return int(mwh)
