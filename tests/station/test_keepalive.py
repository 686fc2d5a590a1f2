"""The learning keep-alive (:mod:`plugstream.station.keepalive`), on simulated paths."""

from __future__ import annotations

import pytest

from plugstream.station.keepalive import FLOOR_S, PROBE_AGAIN_AFTER, KeepaliveLearner

pytestmark = pytest.mark.unit


def run_path(learner: KeepaliveLearner, nat_timeout: float | None, pings: int) -> list[float]:
    """A station on a path whose NAT forgets a mapping after ``nat_timeout`` s of quiet
    (None: never), on a manual clock: every interval the learner asks for, pinged after
    that much quiet; a ping after the NAT forgot is lost and the connection drops, and the
    station reconnects. The intervals asked for, in order."""
    asked: list[float] = []
    interval = learner.connected()
    for _ in range(pings):
        asked.append(interval)
        if nat_timeout is not None and interval >= nat_timeout:
            learner.dropped()
            interval = learner.connected()
        else:
            interval = learner.held_after(interval)
    return asked


def test_a_quiet_path_grows_step_by_step_to_the_ceiling() -> None:
    learner = KeepaliveLearner(start=180, ceiling=1800)
    asked = run_path(learner, None, 10)
    assert asked[:7] == [180, 270, 405, 608, 912, 1368, 1800]
    assert asked[7:] == [1800, 1800, 1800]
    assert learner.held == 1800


def test_a_drop_returns_to_the_last_interval_that_held_and_settles_below_the_nat() -> None:
    learner = KeepaliveLearner(start=180, ceiling=1800)
    asked = run_path(learner, 600, 30)
    assert asked[:4] == [180, 270, 405, 608]  # 608 s of quiet is past the NAT's 600 s
    assert asked[4] == 405  # the last interval that held
    settled = asked[-5:]
    assert len(set(settled)) == 1
    assert 540 <= settled[0] < 600  # within 10 % below the NAT's timeout
    assert learner.failed is not None and learner.failed >= 600


def test_a_path_shorter_than_the_start_goes_below_the_start() -> None:
    learner = KeepaliveLearner(start=180, ceiling=1800)
    asked = run_path(learner, 100, 20)
    assert asked[0] == 180
    assert asked[-1] < 100
    assert asked[-1] >= FLOOR_S


def test_the_failed_interval_is_tried_again_after_a_settled_day() -> None:
    """A drop may have been the CSMS's, not the path's: after PROBE_AGAIN_AFTER pongs at
    the settled interval the learner probes again (and on a path that changed, grows)."""
    learner = KeepaliveLearner(start=180, ceiling=1800)
    run_path(learner, 600, 30)
    settled = learner.trial
    assert settled is not None
    for _ in range(PROBE_AGAIN_AFTER):
        assert learner.held_after(settled) == settled or learner.failed is None
    assert learner.failed is None
    assert learner.held_after(settled) > settled


def test_the_ceiling_is_configurable_and_never_passed() -> None:
    learner = KeepaliveLearner(start=180, ceiling=600)
    assert max(run_path(learner, None, 12)) == 600
    learner.configure(180, 300)
    assert learner.connected() == 300


def test_what_was_learned_survives_a_restart() -> None:
    learner = KeepaliveLearner(start=180, ceiling=1800)
    run_path(learner, 600, 30)
    again = KeepaliveLearner.from_json(learner.to_json(), 180, 1800)
    assert again == learner
    assert again.connected() == learner.trial


def test_unreadable_state_starts_afresh() -> None:
    for junk in (None, [], {"held": "x", "trial": -5, "failed": True}):
        learner = KeepaliveLearner.from_json(junk, 180, 1800)
        assert learner.connected() == 180
        assert learner.held is None and learner.failed is None
