"""The division of a site's current (sans-I/O) and the check of an EV's schedule against
the profile the cloud sent (K15.FR.11/12)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugstream.cloud.smart_charging.schedules import (
    cloud_profile_id,
    tx_profile_16,
    tx_profile_201,
    within_limits,
)
from plugstream.cloud.smart_charging.site_limit import MIN_CURRENT_A, Session, allocate
from plugstream.ocpp import OcppVersion, schemas

pytestmark = pytest.mark.unit

A = Decimal


def sessions(*maxima: int | str) -> list[Session]:
    return [Session(f"CS{i}", 1, f"T{i}", A(m)) for i, m in enumerate(maxima)]


def test_two_sessions_share_32_a_equally() -> None:
    allocation = allocate(A(32), sessions(32, 32))
    assert [share for _, share in allocation.shares] == [A(16), A(16)]
    assert not allocation.oversubscribed


def test_one_session_gets_the_whole_site_capped_at_its_station() -> None:
    assert allocate(A(32), sessions(32)).shares[0][1] == A(32)
    assert allocate(A(63), sessions(32)).shares[0][1] == A(32)


def test_what_a_small_station_leaves_goes_to_the_others() -> None:
    allocation = allocate(A(40), sessions(10, 32, 32))
    assert [share for _, share in allocation.shares] == [A(10), A(15), A(15)]


def test_shares_are_rounded_down_to_a_tenth_never_over_the_limit() -> None:
    allocation = allocate(A(32), sessions(32, 32, 32))
    shares = sorted(share for _, share in allocation.shares)
    assert shares == [A("10.6"), A("10.7"), A("10.7")]  # the tenth left over is passed on
    assert allocation.total_a == A(32)


def test_a_site_with_more_sessions_than_fit_serves_the_first_and_says_so() -> None:
    allocation = allocate(A(16), sessions(32, 32, 32))
    assert [share for _, share in allocation.shares] == [A(8), A(8), A(0)]
    assert allocation.oversubscribed
    assert [s.transaction_id for s in allocation.waiting] == ["T2"]


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="not negative"):
        allocate(A(-1), sessions(32))


@given(
    limit=st.decimals(min_value=0, max_value=500, places=1),
    maxima=st.lists(st.decimals(min_value=6, max_value=80, places=1), max_size=30),
)
def test_the_sum_is_never_over_the_limit_and_nobody_gets_less_than_the_minimum(
    limit: Decimal, maxima: list[Decimal]
) -> None:
    allocation = allocate(limit, [Session(f"S{i}", 1, str(i), m) for i, m in enumerate(maxima)])
    assert allocation.total_a <= limit
    served = 0
    for session, share in allocation.shares:
        assert share <= session.max_current_a
        assert share == 0 or share >= MIN_CURRENT_A
        served += share > 0
    # whoever waits does so because the site cannot give one more the minimum
    assert allocation.oversubscribed == (served < len(maxima))
    if allocation.oversubscribed:
        assert (served + 1) * MIN_CURRENT_A > limit
    # the first to start are the ones served
    shares = [share for _, share in allocation.shares]
    assert shares == sorted(shares, key=lambda s: s == 0)


def test_the_profiles_built_are_valid_requests_of_each_version() -> None:
    v201 = tx_profile_201(1, "T-1", A("10.5"), phases=3)
    assert schemas(OcppVersion.V201).validate("SetChargingProfile", "request", v201) is None
    assert v201["chargingProfile"]["id"] == cloud_profile_id(1)
    v16 = tx_profile_16(1, 7, A(16), phases=1)
    assert schemas(OcppVersion.V16).validate("SetChargingProfile", "request", v16) is None


def _schedule(unit: str, *periods: tuple[int, float]) -> dict[str, object]:
    return {
        "id": 1,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": x} for s, x in periods],
    }


def test_an_ev_schedule_within_ours_is_accepted_one_over_it_is_not() -> None:
    ours = _schedule("A", (0, 16))
    assert within_limits(_schedule("A", (0, 16), (600, 10)), ours)
    assert not within_limits(_schedule("A", (0, 10), (600, 20)), ours)
    stepped = _schedule("A", (0, 32), (300, 8))
    assert not within_limits(_schedule("A", (0, 16)), stepped)  # over ours from 300 s
    assert within_limits(_schedule("W", (0, 99_000)), ours)  # other units: not compared
