"""A transaction's lifecycle, sans I/O: Started → Updated → Ended, and what each later
event may still change. Events in (a start, samples, a stop), decisions out (may the
data change the billed transaction, which flags to write).

Once a transaction has ended (1.6 StopTransaction, 2.0.1 TransactionEvent Ended) it is
billed: later samples are kept as late data (``LateMeterValue``) and never change its
energy; a second stop with other data is kept in a flag (``ConflictingStop``) and the
first one stays billed, while the same stop sent again changes nothing; a second start
is flagged (``DuplicateStart``) and a changed idToken is recorded, not written over."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum

__all__ = [
    "CONFLICTING_STOP",
    "DUPLICATE_START",
    "LATE_METER_VALUE",
    "Decision",
    "Phase",
    "StopData",
    "on_samples",
    "on_start",
    "on_stop",
]

LATE_METER_VALUE = "LateMeterValue"
CONFLICTING_STOP = "ConflictingStop"
DUPLICATE_START = "DuplicateStart"


class Phase(Enum):
    """The states of a transaction, named after 2.0.1's TransactionEventEnumType."""

    STARTED = "Started"
    UPDATED = "Updated"
    ENDED = "Ended"

    @classmethod
    def of(cls, *, active: bool, updated: bool = False) -> Phase:
        if not active:
            return cls.ENDED
        return cls.UPDATED if updated else cls.STARTED


@dataclass(frozen=True, slots=True)
class StopData:
    """What a stop says: its time, the meter's stop value (if sent) and the reason."""

    at: datetime
    meter_stop_wh: Decimal | None
    reason: str | None

    def describe(self) -> str:
        meter = "no meter stop" if self.meter_stop_wh is None else f"{self.meter_stop_wh} Wh"
        return f"{meter} at {self.at.isoformat()}, reason {self.reason}"


@dataclass(slots=True)
class Decision:
    """``billable``: the event may change the transaction's billed data (energy, stop);
    ``flags``: (code, detail) to write on the transaction."""

    billable: bool
    flags: list[tuple[str, str]] = field(default_factory=list)


def on_samples(phase: Phase, count: int, first: datetime, last: datetime, what: str) -> Decision:
    """Samples for a transaction: billable until it ended, then late data."""
    if phase is not Phase.ENDED or count == 0:
        return Decision(billable=True)
    return Decision(
        billable=False,
        flags=[
            (
                LATE_METER_VALUE,
                f"{count} sample(s) {first.isoformat()} - {last.isoformat()} in {what} after "
                "the transaction ended: kept, not billed",
            )
        ],
    )


def on_stop(phase: Phase, billed: StopData, new: StopData, what: str) -> Decision:
    """A stop: billable while the transaction runs. After the end, the same stop again
    (a retry) changes nothing, and one with other data is kept in a ConflictingStop
    flag while the first stays billed. A stop without a meter value does not contradict
    one with it."""
    if phase is not Phase.ENDED:
        return Decision(billable=True)
    same = (
        new.at == billed.at
        and (new.reason or "Local") == (billed.reason or "Local")
        and (new.meter_stop_wh is None or new.meter_stop_wh == billed.meter_stop_wh)
    )
    if same:
        return Decision(billable=False)
    return Decision(
        billable=False,
        flags=[
            (
                CONFLICTING_STOP,
                f"{what}: {new.describe()}; billed: {billed.describe()}",
            )
        ],
    )


def on_start(
    started_before: bool, stored_token: str | None, new_token: str | None, what: str
) -> Decision:
    """A start for a transaction already known: a second start is flagged, and its
    idToken, when another than the stored one, recorded in the flag (not stored).
    ``billable`` tells whether the new idToken may fill one that is missing."""
    if not started_before:
        return Decision(billable=True)
    detail = what
    if new_token is not None and stored_token is not None and new_token != stored_token:
        detail += f": idToken {new_token!r}, stored idToken {stored_token!r} kept"
    return Decision(billable=stored_token is None, flags=[(DUPLICATE_START, detail)])
