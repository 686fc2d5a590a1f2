"""Byte accounting: per UTC day, per charge cycle, per link; durable; shown by ``station stats``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from plugstream.net.accounting import FILENAME, ByteCounter

T0 = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)


@pytest.mark.unit
def test_bytes_land_in_their_utc_day_across_midnight() -> None:
    c = ByteCounter()
    c.record("tx", 100, link="ethernet", at=T0)
    c.record("rx", 7, link="ethernet", at=T0 + timedelta(seconds=1))  # 00:00:00 next day
    # 01:30 at UTC+02:00 is 23:30 UTC of the day before.
    plus2 = timezone(timedelta(hours=2))
    c.record("rx", 5, link="ethernet", at=datetime(2026, 11, 25, 1, 30, tzinfo=plus2))
    assert c.per_day() == {
        date(2026, 11, 24): {"ethernet": (100, 5)},
        date(2026, 11, 25): {"ethernet": (0, 7)},
    }
    assert c.totals() == (100, 12)


@pytest.mark.unit
def test_naive_times_and_bad_input_are_refused() -> None:
    c = ByteCounter()
    with pytest.raises(ValueError):
        c.record("tx", 1, link="ethernet", at=datetime(2026, 11, 25))
    with pytest.raises(ValueError):
        c.record("up", 1, link="ethernet", at=T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.record("tx", 1, link="carrier-pigeon", at=T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.record("tx", -1, link="ethernet", at=T0)
    assert c.totals() == (0, 0) and c.per_day() == {}


@pytest.mark.unit
def test_per_link_split() -> None:
    c = ByteCounter()
    c.record("tx", 10, link="ethernet", at=T0)
    c.record("tx", 20, link="wifi", at=T0)
    c.record("rx", 30, link="lte", at=T0)
    c.record("rx", 1, link="wifi", at=T0 + timedelta(hours=1))
    assert c.per_link() == {"ethernet": (10, 0), "wifi": (20, 1), "lte": (0, 30)}
    assert c.per_day()[T0.date()] == {"ethernet": (10, 0), "wifi": (20, 0), "lte": (0, 30)}


@pytest.mark.unit
def test_cycle_attribution_and_bytes_outside_cycles() -> None:
    c = ByteCounter()
    t = T0
    c.record("tx", 1, link="lte", at=t)  # before any cycle
    c.start_cycle("A", t)
    c.record("tx", 10, link="lte", at=t + timedelta(seconds=1))
    c.start_cycle("B", t + timedelta(seconds=2))
    c.record("rx", 100, link="lte", at=t + timedelta(seconds=3))  # both open: both see it
    c.end_cycle("A", t + timedelta(seconds=4))
    c.record("tx", 1000, link="wifi", at=t + timedelta(seconds=5))  # only B
    c.end_cycle("B", t + timedelta(seconds=6))
    c.record("rx", 2, link="wifi", at=t + timedelta(seconds=7))  # after every cycle

    assert c.per_cycle() == {
        "A": (10, 100, t, t + timedelta(seconds=4)),
        "B": (1000, 100, t + timedelta(seconds=2), t + timedelta(seconds=6)),
    }
    assert c.outside_cycles() == (1, 2)
    assert c.totals() == (1011, 102)  # each byte once in the totals
    assert c.open_cycles == ()
    with pytest.raises(ValueError):
        c.end_cycle("A", t)
    with pytest.raises(ValueError):
        c.start_cycle("B", t)


@pytest.mark.unit
def test_persistence_round_trip_including_an_open_cycle(tmp_path: Path) -> None:
    c = ByteCounter()
    c.record("tx", 3, link="ethernet", at=T0)
    c.start_cycle("done", T0)
    c.record("rx", 4, link="wifi", at=T0 + timedelta(seconds=2))
    c.end_cycle("done", T0 + timedelta(seconds=3))
    c.start_cycle("open", T0 + timedelta(seconds=4))
    c.record("tx", 5, link="lte", at=T0 + timedelta(seconds=5))
    assert c.unsaved_bytes > 0
    path = c.save(tmp_path)
    assert path == tmp_path / FILENAME
    assert c.unsaved_bytes == 0

    back = ByteCounter.load(tmp_path)
    assert back.per_day() == c.per_day()
    assert back.per_cycle() == c.per_cycle()
    assert back.per_link() == c.per_link()
    assert back.totals() == c.totals() == (8, 4)
    assert back.outside_cycles() == c.outside_cycles() == (3, 0)
    # The open cycle is still open after the restart and keeps counting.
    back.record("rx", 6, link="lte", at=T0 + timedelta(seconds=6))
    assert back.per_cycle()["open"][:2] == (5, 6)


@pytest.mark.unit
def test_load_of_an_empty_dir_is_an_empty_counter_and_garbage_is_refused(tmp_path: Path) -> None:
    assert ByteCounter.load(tmp_path).totals() == (0, 0)
    (tmp_path / FILENAME).write_text('{"format": 1, "totals": "lots"}')
    with pytest.raises(ValueError):
        ByteCounter.load(tmp_path)
    (tmp_path / FILENAME).write_text("{half a fi")
    with pytest.raises(ValueError):
        ByteCounter.load(tmp_path)


@pytest.mark.unit
def test_atomic_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = ByteCounter()
    c.record("tx", 1, link="ethernet", at=T0)
    c.save(tmp_path)
    before = (tmp_path / FILENAME).read_bytes()

    c.record("tx", 999, link="ethernet", at=T0)

    def power_cut(fd: int) -> None:
        raise OSError("power cut during fsync")

    monkeypatch.setattr(os, "fsync", power_cut)  # the module accounting uses
    with pytest.raises(OSError, match="power cut"):
        c.save(tmp_path)
    monkeypatch.undo()
    # The old file is whole, no temporary file is left, nothing else appeared.
    assert (tmp_path / FILENAME).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]
    assert ByteCounter.load(tmp_path).totals() == (1, 0)
    # A later save succeeds and replaces it whole.
    c.save(tmp_path)
    assert ByteCounter.load(tmp_path).totals() == (1000, 0)
    assert sorted(os.listdir(tmp_path)) == [FILENAME]


@pytest.mark.unit
def test_save_prunes_old_days_and_ended_cycles_but_keeps_totals(tmp_path: Path) -> None:
    c = ByteCounter(keep_days=2, keep_cycles=1)
    for i in range(4):
        at = T0 + timedelta(days=i)
        c.start_cycle(f"c{i}", at)
        c.record("tx", 1, link="ethernet", at=at)
        c.end_cycle(f"c{i}", at)
    c.save(tmp_path)
    back = ByteCounter.load(tmp_path)
    assert len(back.per_day()) == 2 and list(back.per_cycle()) == ["c3"]
    assert back.totals() == (4, 0)


# -- the CLI ------------------------------------------------------------------


def stats(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugstream.cli", "station", "stats", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    c = ByteCounter()
    c.record("tx", 1_234, link="ethernet", at=T0)  # 2026-11-24, outside cycles
    c.start_cycle("tx-42", T0 + timedelta(seconds=1))
    c.record("tx", 250_000, link="lte", at=T0 + timedelta(seconds=2))  # 2026-11-25
    c.record("rx", 180_000, link="lte", at=T0 + timedelta(seconds=3))
    c.end_cycle("tx-42", T0 + timedelta(hours=1))
    c.record("rx", 66, link="wifi", at=T0 + timedelta(hours=2))
    c.save(tmp_path)
    return tmp_path


@pytest.mark.socket
def test_stats_prints_the_figures(data_dir: Path) -> None:
    done = stats("--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for figure in ("2026-11-24", "2026-11-25", "1,234", "250,000", "180,000", "430,066"):
        assert figure in out, out
    assert "tx-42" in out and "8.6%" in out  # 430,000 of the article's 5 MB a cycle
    assert "14.3%" in out  # 430,066 of the article's 3 MB a day
    for link in ("ethernet", "wifi", "lte"):
        assert link in out
    assert "total: tx 251,234, rx 180,066, 431,300 bytes" in out


@pytest.mark.socket
def test_stats_json_is_one_object_with_the_right_totals(data_dir: Path) -> None:
    done = stats("--data-dir", str(data_dir), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["totals"] == {"tx": 251_234, "rx": 180_066, "total": 431_300}
    assert report["outside_cycles"] == {"tx": 1_234, "rx": 66, "total": 1_300}
    assert [d["date"] for d in report["days"]] == ["2026-11-24", "2026-11-25"]
    assert report["days"][1]["total"] == 430_066
    [cycle] = report["cycles"]
    assert cycle["cycle_id"] == "tx-42" and cycle["total"] == 430_000
    assert cycle["of_article"] == pytest.approx(430_000 / 5_000_000)
    assert report["links"]["lte"] == {"tx": 250_000, "rx": 180_000, "total": 430_000}


@pytest.mark.socket
def test_stats_on_a_missing_or_empty_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for path in (tmp_path / "nope", tmp_path):
        done = stats("--data-dir", str(path))
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and "--data-dir" in done.stderr
        assert done.stdout == ""


@pytest.mark.socket
def test_stats_on_a_dir_without_counters_says_no_data_yet(tmp_path: Path) -> None:
    (tmp_path / "journal.db").write_bytes(b"")  # the station's other files
    done = stats("--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"no data yet: no byte counters in {tmp_path}"
    done = stats("--data-dir", str(tmp_path), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["totals"]["total"] == 0


@pytest.mark.socket
def test_stats_on_a_broken_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_text("{broken")
    done = stats("--data-dir", str(tmp_path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
