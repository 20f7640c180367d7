"""The status page's day of history per check: hours rolling over, exact p95, restore."""

from __future__ import annotations

import random

from monitor.core.clock import FakeClock
from monitor.core.quantile import quantile
from monitor.core.units import HOUR, hour_of
from monitor.signals.history import CheckHistory, HistoryBook, HourSummary
from monitor.storage.store import RunRecord, Store

MINUTE = 60.0


def run(check: str, ts: float, ok: bool, latency: float | None) -> RunRecord:
    return RunRecord(check, ts, ok, None if ok else "http_5xx", 200 if ok else 503, latency, "", {})


def test_an_hour_closes_with_its_counts_and_exact_p95_when_the_next_one_starts(
    clock: FakeClock,
) -> None:
    clock.now = hour_of(clock.time())  # on the hour, so a minute a run spans one hour
    history = CheckHistory()
    latencies = [random.Random(7).uniform(0.05, 2.0) for _ in range(60)]
    for minute, latency in enumerate(latencies):
        history.add(clock.time() + minute * MINUTE, ok=minute % 10 != 0, latency=latency)
    first = hour_of(clock.time())

    [open_hour] = history.snapshot(clock.time() + 59 * MINUTE)
    assert open_hour == HourSummary(first, 60, 6, quantile(list(latencies), 0.95))

    clock.advance(HOUR)
    history.add(clock.time(), ok=True, latency=None)
    closed, current = history.snapshot(clock.time())
    assert closed == open_hour
    assert current == HourSummary(first + int(HOUR), 1, 0, None)
    assert closed.failure_ratio == 6 / 60


def test_hours_older_than_the_day_are_dropped_and_hours_without_runs_are_left_out(
    clock: FakeClock,
) -> None:
    history = CheckHistory(hours=24)
    for hour in range(30):
        if hour % 3:
            history.add(clock.time() + hour * HOUR, ok=True, latency=0.1)
    now = clock.time() + 29 * HOUR
    hours = [h.hour for h in history.snapshot(now)]

    assert hours == sorted(hours)
    assert min(hours) >= hour_of(now) - 23 * HOUR
    assert len(hours) == sum(1 for hour in range(6, 30) if hour % 3)


def test_a_late_run_of_a_closed_hour_is_counted_without_touching_its_p95(
    clock: FakeClock,
) -> None:
    history = CheckHistory()
    history.add(clock.time(), ok=True, latency=0.2)
    clock.advance(HOUR)
    history.add(clock.time(), ok=True, latency=0.3)
    history.add(clock.time() - HOUR, ok=False, latency=9.0)

    closed, _ = history.snapshot(clock.time())
    assert (closed.runs, closed.failures, closed.p95) == (2, 1, 0.2)


def test_the_book_restores_rolled_up_hours_and_the_runs_after_them(
    store: Store, clock: FakeClock
) -> None:
    now = clock.time()
    start = hour_of(now) - 5 * int(HOUR)
    runs = [
        run(name, start + i * 10 * MINUTE, ok=i % 4 != 0, latency=0.1 + i / 100)
        for name in ("a", "b")
        for i in range(32)  # every ten minutes up to now
    ]
    store.write_runs(runs)
    for hour in range(start, hour_of(now) - 2 * int(HOUR), int(HOUR)):  # three hours rolled up
        store.rollups.rollup(hour)
    live = HistoryBook()
    for r in runs:
        live.add(r.check, r.ts, r.ok, r.latency)

    restored = HistoryBook()
    restored.restore(store, now, ["a"])

    assert restored.snapshot("a", now) == live.snapshot("a", now)
    assert len(restored.snapshot("a", now)) == 6
    assert restored.snapshot("b", now) == ()  # not asked for


def test_a_forgotten_check_has_no_history() -> None:
    book = HistoryBook()
    book.add("gone", 1_700_000_000.0, ok=True, latency=0.1)
    book.forget("gone")
    assert book.snapshot("gone", 1_700_000_000.0) == ()
