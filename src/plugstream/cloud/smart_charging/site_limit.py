"""How a site's current is divided among the transactions running there, sans-I/O.

A site is one grid connection: its stations may together draw at most ``limit`` A per
phase. Each running transaction gets an equal share, capped at its station's own maximum
(what one leaves unused goes to the others), and never less than :data:`MIN_CURRENT_A`,
below which an EV stops charging (IEC 61851-1 signals nothing lower). When the site
cannot give everyone the minimum, the transactions that started first are served and the
rest get 0 A, and the allocation says that the site is oversubscribed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

__all__ = ["MIN_CURRENT_A", "STEP_A", "Allocation", "Session", "allocate"]

#: the least current an EV charges with (IEC 61851-1 PWM)
MIN_CURRENT_A = Decimal(6)
#: the resolution of a limit sent to a station: shares are rounded down to it
STEP_A = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Session:
    """A running transaction in the site, in the order the transactions started."""

    station_id: str
    evse_id: int
    transaction_id: str
    max_current_a: Decimal  # the station's own maximum per phase


@dataclass(frozen=True, slots=True)
class Allocation:
    """Each session's limit in A per phase (0: it waits), in the order given."""

    limit_a: Decimal
    shares: tuple[tuple[Session, Decimal], ...]

    @property
    def total_a(self) -> Decimal:
        return sum((share for _, share in self.shares), Decimal(0))

    @property
    def waiting(self) -> tuple[Session, ...]:
        """The sessions that get nothing because the site cannot give them the minimum."""
        return tuple(s for s, share in self.shares if share == 0)

    @property
    def oversubscribed(self) -> bool:
        return bool(self.waiting)


def _floor(value: Decimal) -> Decimal:
    return value.quantize(STEP_A, rounding=ROUND_FLOOR)


def allocate(
    limit_a: Decimal, sessions: Sequence[Session], min_a: Decimal = MIN_CURRENT_A
) -> Allocation:
    """Divide ``limit_a`` among ``sessions`` (oldest first): equal shares, each capped at
    its station's maximum, every share either 0 or at least ``min_a``, the sum never over
    ``limit_a``. A station whose maximum is below ``min_a`` is given its maximum, which is
    all it can take."""
    if limit_a < 0:
        raise ValueError("a site's limit is not negative")
    served_count = min(len(sessions), int(limit_a // min_a)) if min_a > 0 else len(sessions)
    served = list(sessions[:served_count])
    shares: dict[int, Decimal] = {}
    remaining = Decimal(limit_a)
    # Water-filling: the smallest maxima are settled first, so what they leave unused
    # is shared among the rest. Each share is at least remaining / left >= min_a, since
    # at most limit_a // min_a are served and a capped one never takes more than its share.
    order = sorted(range(served_count), key=lambda i: served[i].max_current_a)
    for n, i in enumerate(order):
        left = served_count - n
        share = _floor(min(served[i].max_current_a, remaining / left))
        shares[i] = share
        remaining -= share
    return Allocation(
        limit_a=Decimal(limit_a),
        shares=tuple(
            (session, shares.get(i, Decimal(0)) if i < served_count else Decimal(0))
            for i, session in enumerate(sessions)
        ),
    )
