"""The SLI store, pure: bucketed counts over each burn-rate window, their error bound, ring
rollover, and the budget of a 30-day window restored from rollups beyond raw retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.slo import SloConfig
from monitor.core.units import DAY, HOUR, MINUTE, hour_of
from monitor.signals import slo
from monitor.signals.slo import BURN_WINDOWS, Counts, SliStore
from monitor.storage.store import RunRecord, Store

# Mid-minute and mid-hour, so every window's far edge falls inside a bucket.
START = hour_of(1_700_000_000.0) + 17 * MINUTE + 23.0
THIRTY_DAYS = 30 * DAY


def pattern(i: int) -> bool:
    """Whether run i passes: every 7th fails, and a burst of 40 in a row near the end."""
    return i % 7 != 0 and not 12_000 <= i < 12_040


def feed(sli: SliStore, runs: list[tuple[float, bool]]) -> None:
    for ts, ok in runs:
        sli.add(ts, ok, None if ok else "http_5xx")


def exact(runs: list[tuple[float, bool]], since: float, now: float) -> Counts:
    """The runs in (since, now], counted one by one."""
    chosen = [ok for ts, ok in runs if since < ts <= now]
    return Counts(len(chosen), sum(not ok for ok in chosen))


def bucket_width(window: float) -> float:
    """The documented granularity of the far edge: minutes within 6 h, hours beyond."""
    return MINUTE if window <= 6 * HOUR else HOUR


@pytest.fixture
def history() -> list[tuple[float, bool]]:
    """A run every 20 s for three days and two hours."""
    count = int((3 * DAY + 2 * HOUR) / 20)
    return [(START + 20.0 * i, pattern(i)) for i in range(count)]


@pytest.mark.parametrize("label", list(BURN_WINDOWS))
def test_each_window_counts_every_bucket_it_overlaps(
    history: list[tuple[float, bool]], label: str
) -> None:
    sli = SliStore(THIRTY_DAYS)
    feed(sli, history)
    now = history[-1][0] + 7.0
    window = BURN_WINDOWS[label]
    width = bucket_width(window)
    edge = now - window
    expected = exact(history, edge - edge % width - 1e-9, now)
    assert sli.counts(now, window) == expected
    # The error bound: never fewer runs than the window holds, at most one bucket's more.
    within, widened = exact(history, edge, now), exact(history, edge - width, now)
    assert within.total <= expected.total <= widened.total
    assert within.failed <= expected.failed <= widened.failed


def test_the_burn_rate_is_the_error_ratio_over_the_budget(
    history: list[tuple[float, bool]],
) -> None:
    objective = SloConfig(objective="99.5%")
    sli = SliStore(objective.window)
    feed(sli, history)
    now = history[-1][0] + 7.0
    for window in BURN_WINDOWS.values():
        rate, counts = sli.burn_rate(now, window, objective.budget)
        assert rate == pytest.approx(counts.failed / counts.total / (1 - 0.995))


def test_a_check_failing_every_run_burns_one_over_the_budget() -> None:
    objective = SloConfig(objective="99%")
    sli = SliStore(objective.window)
    feed(sli, [(START + 10.0 * i, False) for i in range(400)])
    rate, _ = sli.burn_rate(START + 4000, BURN_WINDOWS["5m"], objective.budget)
    assert rate == pytest.approx(1 / (1 - 0.99))
    assert sli.budget_remaining(START + 4000, objective.budget) == pytest.approx(1 - 1 / 0.01)


def test_the_budget_left_is_what_the_failures_have_not_spent() -> None:
    objective = SloConfig(objective="99%", window="1d")
    sli = SliStore(objective.window)
    runs = [(START + 60.0 * i, i % 400 != 0) for i in range(1200)]  # 3 failures in 1,200
    feed(sli, runs)
    allowed = 1200 * (1 - 0.99)
    assert sli.budget_remaining(runs[-1][0], objective.budget) == pytest.approx(1 - 3 / allowed)


def test_a_window_forgets_failures_once_their_buckets_roll_out() -> None:
    sli = SliStore(3 * DAY)
    failing = [(START + 60.0 * i, False) for i in range(10)]
    healthy = [(START + 600 + 60.0 * i, True) for i in range(int(7 * HOUR / 60))]
    feed(sli, failing + healthy)
    now = healthy[-1][0]
    # More than one lap of the minute ring later, its reused slots hold none of the failures...
    for label in ("5m", "30m", "1h", "6h"):
        assert sli.counts(now, BURN_WINDOWS[label]).failed == 0, label
    # ...while the hourly buckets still do.
    assert sli.counts(now, BURN_WINDOWS["3d"]).failed == len(failing)
    later = now + 3 * DAY + 2 * HOUR
    sli.add(later, True)
    assert sli.counts(later, BURN_WINDOWS["3d"]) == Counts(1, 0)


def test_a_check_silent_for_longer_than_the_ring_counts_no_stale_bucket() -> None:
    sli = SliStore(3 * DAY)
    feed(sli, [(START + 60.0 * i, False) for i in range(30)])
    back = START + 6 * HOUR + 45 * MINUTE
    sli.add(back, True)
    for label in ("5m", "30m", "1h", "6h"):
        assert sli.counts(back, BURN_WINDOWS[label]) == Counts(1, 0), label


def test_explained_failures_are_left_out_by_class_and_time() -> None:
    sli = SliStore(3 * DAY)
    sli.add(START, False, "rate_limited")
    sli.add(START + 120, False, "http_5xx")
    sli.add(START + 240, False, "rate_limited")
    now = START + 250
    assert sli.counts(now, HOUR) == Counts(3, 3)
    # The cause was active until just after the first 429: the later one still counts.
    assert sli.counts(now, HOUR, {"rate_limited": START + 30}) == Counts(3, 2)
    assert sli.counts(now, 3 * DAY, {"rate_limited": now}) == Counts(3, 1)


def test_a_30_day_budget_is_restored_from_rollups_beyond_raw_retention(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'monitor.db'}")
    store.open()
    objective = SloConfig(objective="99.9%", window="30d")
    runs = [(START + 600.0 * i, pattern(i)) for i in range(int(THIRTY_DAYS / 600))]
    store.write_runs(
        [
            RunRecord("orders", ts, ok, None if ok else "http_5xx", 200, 0.1, "", {})
            for ts, ok in runs
        ]
    )
    now = runs[-1][0] + 60
    for hour in store.rollups.hours_to_roll_up(now):
        store.rollups.rollup(hour)
    raw_retention = 7 * DAY
    store.rollups.prune_runs(now - raw_retention, 1_000_000, ["orders"])
    assert store.count_runs("orders") < len(runs) / 4  # the raw runs hold a week at most
    live, restored = SliStore(objective.window), SliStore(objective.window)
    feed(live, runs)
    slo.restore(store, now, {"orders": restored})
    store.close()
    for window in (*BURN_WINDOWS.values(), objective.window):
        assert restored.counts(now, window) == live.counts(now, window), window
    assert (
        restored.counts(now, objective.window).failed > exact(runs, now - raw_retention, now).failed
    )
    assert restored.budget_remaining(now, objective.budget) == live.budget_remaining(
        now, objective.budget
    )
