"""Window statistics, driven by a fake clock: exact ratios, quantiles, edges, pruning, baseline."""

from __future__ import annotations

import random

import pytest

from monitor.core.clock import FakeClock
from monitor.core.quantile import quantile
from monitor.core.units import HOUR
from monitor.signals.stats import CheckWindows, HourlyBaseline, baseline_p95

MINUTE = 60.0


def feed(windows: CheckWindows, clock: FakeClock, runs: list[tuple[bool, float | None]]) -> None:
    """One run per second, starting now; the clock ends on the last run."""
    for index, (ok, latency) in enumerate(runs):
        if index:
            clock.advance(1)
        windows.add(clock.time(), ok, latency)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([True] * 100, 0.0),
        ([False] * 3 + [True] * 97, 0.03),
        ([False, True] * 50, 0.5),
        ([False] * 10, 1.0),
    ],
    ids=["all-pass", "three-percent", "half", "all-fail"],
)
def test_it_computes_the_exact_error_rate(
    clock: FakeClock, outcomes: list[bool], expected: float
) -> None:
    windows = CheckWindows(max_window=15 * MINUTE)
    feed(windows, clock, [(ok, 0.1) for ok in outcomes])
    assert windows.error_rate(clock.time(), 5 * MINUTE) == (pytest.approx(expected), len(outcomes))


def test_it_has_no_error_rate_without_runs(clock: FakeClock) -> None:
    windows = CheckWindows(max_window=5 * MINUTE)
    assert windows.error_rate(clock.time(), 5 * MINUTE) == (None, 0)
    windows.add(clock.time(), False, 1.0)
    clock.advance(10 * MINUTE)
    assert windows.error_rate(clock.time(), 5 * MINUTE) == (None, 0)


@pytest.mark.parametrize(
    ("latencies", "q", "expected"),
    [
        ([float(n) for n in range(1, 101)], 0.95, 95.05),
        ([float(n) for n in range(100, 0, -1)], 0.95, 95.05),
        ([float(n) for n in range(1, 101)], 0.5, 50.5),
        ([0.2] * 19 + [5.0], 0.95, 0.2 + (5.0 - 0.2) * 0.05),
        ([0.3], 0.95, 0.3),
        ([1.0, 2.0], 0.0, 1.0),
        ([1.0, 2.0], 1.0, 2.0),
    ],
    ids=["p95-of-1-to-100", "unsorted", "median", "one-outlier", "single", "min", "max"],
)
def test_it_interpolates_quantiles_linearly(
    latencies: list[float], q: float, expected: float
) -> None:
    assert quantile(list(latencies), q) == pytest.approx(expected)


def test_it_computes_p95_from_timed_runs_only(clock: FakeClock) -> None:
    windows = CheckWindows(max_window=15 * MINUTE)
    runs: list[tuple[bool, float | None]] = [(True, n / 100) for n in range(1, 101)]
    runs += [(False, None)] * 50  # connect errors: nothing was timed
    feed(windows, clock, runs)
    p95, count = windows.latency_p95(clock.time(), 15 * MINUTE)
    assert count == 100
    assert p95 == pytest.approx(0.9505)
    assert windows.latency_quantile(clock.time(), 15 * MINUTE, 0.5)[0] == pytest.approx(0.505)


def test_it_has_no_p95_without_timed_runs(clock: FakeClock) -> None:
    windows = CheckWindows(max_window=15 * MINUTE)
    windows.add(clock.time(), False, None)
    assert windows.latency_p95(clock.time(), 15 * MINUTE) == (None, 0)


@pytest.mark.parametrize(
    ("age", "inside"),
    [(0.0, True), (299.999, True), (300.0, False), (300.001, False), (-1.0, False)],
    ids=["now", "just-inside", "exactly-at-the-edge", "just-outside", "in-the-future"],
)
def test_it_treats_the_window_as_left_open(clock: FakeClock, age: float, inside: bool) -> None:
    windows = CheckWindows(max_window=15 * MINUTE)
    windows.add(clock.time() - age, False, 1.0, rate_limited=True)
    expected = 1 if inside else 0
    assert windows.error_rate(clock.time(), 5 * MINUTE)[1] == expected
    assert windows.latency_p95(clock.time(), 5 * MINUTE)[1] == expected
    assert windows.rate_limited(clock.time(), 5 * MINUTE) == expected


def test_it_counts_rate_limited_runs_per_window(clock: FakeClock) -> None:
    windows = CheckWindows(max_window=15 * MINUTE)
    windows.add(clock.time(), False, 0.1, rate_limited=True)
    clock.advance(10 * MINUTE)
    windows.add(clock.time(), False, 0.1, rate_limited=True)
    windows.add(clock.time(), True, 0.1)
    assert windows.rate_limited(clock.time(), 5 * MINUTE) == 1
    assert windows.rate_limited(clock.time(), 15 * MINUTE) == 2


def test_it_keeps_runs_that_arrive_out_of_order_sorted(clock: FakeClock) -> None:
    windows = CheckWindows(max_window=15 * MINUTE)
    now = clock.time()
    for offset in (0, 20, 10, 30, 5):
        windows.add(now + offset, True, float(offset))
    assert [run.ts - now for run in windows.runs(now + 30, 60)] == [0, 5, 10, 20, 30]


def test_it_prunes_runs_older_than_the_longest_window(clock: FakeClock) -> None:
    windows = CheckWindows(max_window=15 * MINUTE)
    for _ in range(10_000):
        windows.add(clock.time(), True, 0.1)
        clock.advance(1)
    assert len(windows) == 15 * 60
    assert windows.error_rate(clock.time(), 15 * MINUTE) == (0.0, 15 * 60 - 1)
    # The compaction keeps the backing lists near the live size, not the total ever added.
    assert len(windows._ts) < 2 * 15 * 60 + 1024


def test_it_caps_memory_when_runs_come_too_fast(clock: FakeClock) -> None:
    windows = CheckWindows(max_window=HOUR, max_samples=500)
    for index in range(5_000):
        windows.add(clock.time(), index % 2 == 0, 0.1)
        clock.advance(0.01)
    assert len(windows) == 500
    assert len(windows._ts) <= 500 + 1024 * 2
    assert windows.error_rate(clock.time(), HOUR) == (0.5, 500)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], None), ([0.4], 0.4), ([0.2, 9.0, 0.3], 0.3), ([0.1, 0.2, 0.3, 0.4], 0.25)],
    ids=["empty", "one-hour", "odd-with-a-bad-hour", "even"],
)
def test_it_takes_the_median_of_hourly_p95s_as_baseline(
    values: list[float], expected: float | None
) -> None:
    assert baseline_p95(values) == (pytest.approx(expected) if expected is not None else None)


def hour_start(clock: FakeClock) -> float:
    return clock.time() - clock.time() % HOUR


def test_it_builds_a_baseline_from_full_hours(clock: FakeClock) -> None:
    clock.now = hour_start(clock)
    baseline = HourlyBaseline()
    for hour_latency in (0.1, 0.5, 0.2, 0.3):
        for _ in range(60):
            baseline.add(clock.time(), hour_latency)
            clock.advance(MINUTE)
    # Four full hours; the hour just started is not yet part of it.
    assert baseline.hourly_p95s(clock.time()) == pytest.approx([0.1, 0.5, 0.2, 0.3])
    assert baseline.baseline(clock.time()) == pytest.approx(0.25)


def test_it_falls_back_to_all_samples_while_history_is_short(clock: FakeClock) -> None:
    clock.now = hour_start(clock)
    baseline = HourlyBaseline(min_hours=3, min_samples=20)
    for n in range(1, 20):
        baseline.add(clock.time(), float(n))
        clock.advance(MINUTE)
    assert baseline.baseline(clock.time()) is None  # 19 samples are too few
    baseline.add(clock.time(), 20.0)
    assert baseline.baseline(clock.time()) == pytest.approx(quantile([*range(1, 21)], 0.95))


def test_it_stops_falling_back_once_enough_hours_are_full(clock: FakeClock) -> None:
    clock.now = hour_start(clock)
    baseline = HourlyBaseline(min_hours=3, min_samples=1)
    for latency in (1.0, 1.0, 1.0, 100.0):
        baseline.add(clock.time(), latency)
        clock.advance(HOUR)
    # The 100 s hour is now full too: median of 1, 1, 1, 100 -- not the p95 of all samples.
    assert baseline.baseline(clock.time()) == pytest.approx(1.0)
    assert baseline._early is None


def test_it_seeds_the_baseline_from_stored_hours(clock: FakeClock) -> None:
    start = hour_start(clock)
    baseline = HourlyBaseline()
    for index, p95 in enumerate((0.2, 0.4, 0.3)):
        baseline.seed_hour(start - (3 - index) * HOUR, p95)
    baseline.add(start - 2 * HOUR + 5, 50.0)  # a straggler for a seeded hour is ignored
    baseline.add(start + 5, 0.9)
    assert baseline.baseline(clock.time()) == pytest.approx(0.3)


def test_it_forgets_hours_older_than_a_week(clock: FakeClock) -> None:
    start = hour_start(clock)
    baseline = HourlyBaseline(min_samples=1)
    baseline.seed_hour(start - 8 * 24 * HOUR, 9.0)
    for index in range(3):
        baseline.seed_hour(start - (3 - index) * HOUR, 0.5)
    assert baseline.hourly_p95s(clock.time()) == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fast_paths_agree_with_recomputing_from_the_runs(seed: int) -> None:
    # Prefix sums and the sorted latency window must give exactly what a plain scan gives,
    # through out-of-order runs, pruning, compaction and the hard cap.
    rng = random.Random(seed)
    fast = CheckWindows(max_window=300, max_samples=1500, quantile_window=120)
    kept: list[tuple[float, bool, float | None, bool]] = []
    now = 1_000_000.0
    for step in range(6000):
        now += rng.uniform(0.01, 0.3)
        ts = now - (rng.uniform(0, 5) if step % 50 == 0 else 0)  # now and then a late finisher
        run = (
            ts,
            rng.random() > 0.2,
            None if rng.random() < 0.05 else rng.random(),
            rng.random() < 0.1,
        )
        fast.add(*run)
        kept.append(run)
        if step % 97 == 0:
            newest = max(r[0] for r in kept)
            live = sorted(r for r in kept if r[0] > newest - 300)[-1500:]
            for window in (60, 120, 300):
                inside = [r for r in live if now - window < r[0] <= now]
                failures = sum(1 for r in inside if not r[1])
                expected_rate = (failures / len(inside), len(inside)) if inside else (None, 0)
                assert fast.error_rate(now, window) == expected_rate
                assert fast.rate_limited(now, window) == sum(1 for r in inside if r[3])
                timed = [r[2] for r in inside if r[2] is not None]
                assert fast.latency_p95(now, window) == (quantile(timed, 0.95), len(timed))


def test_the_baseline_is_reused_within_a_minute_and_recomputed_after(clock: FakeClock) -> None:
    clock.now = hour_start(clock)
    baseline = HourlyBaseline(min_hours=3, min_samples=20)
    for n in range(1, 21):
        baseline.add(clock.time(), float(n))
    first = baseline.baseline(clock.time())
    baseline.add(clock.time(), 1000.0)
    assert baseline.baseline(clock.time() + 1) == first  # same minute: no re-sort per run
    clock.advance(MINUTE)
    assert baseline.baseline(clock.time()) == pytest.approx(quantile([*range(1, 21), 1000.0], 0.95))
