"""Scheduling math with an injected clock: spreading, drift, overrun skipping."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from monitor.core.clock import FakeClock
from monitor.engine.scheduler import Dispatch, Schedule, Scheduler, next_due, phase_of


async def run_until(clock: FakeClock, when: float, max_steps: int = 100_000) -> None:
    """Yield to the loop until the scheduler's fake sleeps have moved the clock to `when`.

    Bounded: a scheduler that crashed never moves the clock, and must fail, not hang."""
    for _ in range(max_steps):
        if clock.time() >= when:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"the clock stopped at {clock.time()}: is the scheduler still running?")


def test_the_phase_is_stable_and_inside_the_interval() -> None:
    assert phase_of("orders-api", 60) == phase_of("orders-api", 60)
    assert phase_of("orders-api", 60) != phase_of("billing-api", 60)
    assert all(0 <= phase_of(f"c{i}", 60) < 60 for i in range(1000))


@pytest.mark.parametrize(
    ("now", "interval", "phase", "due"),
    [
        (100.0, 60.0, 10.0, 130.0),
        (130.0, 60.0, 10.0, 190.0),
        (129.999, 60.0, 10.0, 130.0),
        (0.0, 0.25, 0.1, 0.1),
    ],
    ids=["mid-interval", "exactly-on-slot-goes-to-next", "just-before-slot", "sub-second"],
)
def test_next_due_is_the_next_grid_point(
    now: float, interval: float, phase: float, due: float
) -> None:
    assert next_due(now, interval, phase) == pytest.approx(due)


def test_a_thousand_checks_at_60s_spread_across_the_minute() -> None:
    schedule = Schedule({f"check-{i}": 60.0 for i in range(1000)}, now=0.0)
    per_second = [0] * 60
    for second in range(60):
        started, _ = schedule.due(second + 1.0)
        per_second[second] = len(started)
        for d in started:
            schedule.finished(d.name)
    assert sum(per_second) == 1000
    # Evenly spread means ~16.7 per second; a thundering herd would put hundreds in one.
    assert max(per_second) < 40
    assert min(per_second) > 3


def test_due_times_do_not_drift_when_the_loop_wakes_late() -> None:
    schedule = Schedule({"a": 10.0}, now=0.0)
    phase = phase_of("a", 10.0)
    starts = []
    for tick in range(7):
        # The loop wakes 0.7 s late every time; runs must stay on the grid.
        started, _ = schedule.due(phase + tick * 10.0 + 0.7)
        starts += [d.due for d in started]
        for d in started:
            schedule.finished(d.name)
    assert starts == pytest.approx([phase + k * 10.0 for k in range(7)])


def test_a_run_that_overruns_its_interval_skips_the_next_slot_instead_of_stacking() -> None:
    schedule = Schedule({"slow": 1.0}, now=0.0)
    phase = phase_of("slow", 1.0)
    started, skipped = schedule.due(phase + 0.001)
    assert [d.name for d in started] == ["slow"] and skipped == []
    # Still running at the next two slots: both skipped, nothing queued behind it.
    for k in (1, 2):
        started, skipped = schedule.due(phase + k + 0.001)
        assert started == [] and skipped == ["slow"]
    schedule.finished("slow")
    started, skipped = schedule.due(phase + 3 + 0.001)
    assert [d.name for d in started] == ["slow"] and skipped == []


def test_a_long_sleep_catches_up_with_one_run_not_a_burst() -> None:
    schedule = Schedule({"a": 1.0}, now=0.0)
    started, _ = schedule.due(100.0)
    assert len(started) == 1
    assert started[0].lateness == pytest.approx(100.0 - phase_of("a", 1.0))
    schedule.finished("a")
    # The missed slots are gone; the next run is back on the grid, one interval on.
    assert schedule.next_wakeup() == pytest.approx(100.0 + phase_of("a", 1.0))


def test_removed_checks_stop_and_added_checks_start() -> None:
    schedule = Schedule({"a": 1.0, "b": 1.0}, now=0.0)
    schedule.remove("a")
    schedule.add("c", 1.0, now=0.0)
    names = {d.name for d in schedule.due(1.5)[0]}
    assert names == {"b", "c"}


async def test_the_scheduler_loop_runs_each_check_on_its_grid_with_a_fake_clock() -> None:
    clock = FakeClock(start=0.0)
    runs: list[tuple[str, float]] = []

    async def start(dispatch: Dispatch) -> None:
        runs.append((dispatch.name, clock.time()))

    schedule = Schedule({"fast": 0.5, "slow": 2.0}, now=clock.time())
    scheduler = Scheduler(schedule, clock, start)
    task = asyncio.create_task(scheduler.run())
    await run_until(clock, 10.0)
    scheduler.stop()
    await task
    await scheduler.drain(1)
    fast = [t for n, t in runs if n == "fast"]
    slow = [t for n, t in runs if n == "slow"]
    assert len(fast) in (19, 20, 21)
    assert len(slow) in (4, 5, 6)
    assert all(b - a == pytest.approx(0.5) for a, b in itertools.pairwise(fast))


async def test_the_scheduler_reports_skips_of_a_hanging_check() -> None:
    clock = FakeClock(start=0.0)
    release = asyncio.Event()
    skipped: list[str] = []

    async def start(dispatch: Dispatch) -> None:
        await release.wait()

    scheduler = Scheduler(Schedule({"hang": 1.0}, now=0.0), clock, start, on_skip=skipped.append)
    task = asyncio.create_task(scheduler.run())
    await run_until(clock, 5.5)
    scheduler.stop()
    await task
    release.set()
    await scheduler.drain(1)
    assert len(skipped) in (4, 5)


def test_a_check_removed_and_added_again_has_one_slot_not_two() -> None:
    schedule = Schedule({"a": 10.0}, now=0.0)
    schedule.remove("a")
    schedule.add("a", 5.0, now=0.0)
    starts = []
    for second in range(1, 31):
        started, _ = schedule.due(float(second))
        starts += [d.due for d in started]
        for d in started:
            schedule.finished(d.name)
    # Every 5 s on the new grid, and nothing from the old 10 s one.
    assert len(starts) == 6
    assert all(b - a == pytest.approx(5.0) for a, b in itertools.pairwise(starts))


def test_checks_left_out_of_the_share_get_no_slot_and_resume_on_their_grid() -> None:
    schedule = Schedule({"mine": 10.0, "theirs": 10.0}, now=0.0)
    assert schedule.only({"mine"}, now=0.0) is False  # nothing came back
    starts: list[tuple[str, float]] = []

    def until(end: float) -> None:
        while (wakeup := schedule.next_wakeup()) is not None and wakeup <= end:
            started, _ = schedule.due(wakeup)
            starts.extend((d.name, d.due) for d in started)
            for d in started:
                schedule.finished(d.name)

    until(30.0)
    # Every wake-up was for a slot of "mine": "theirs" woke nothing, yet keeps its grid.
    assert [name for name, _ in starts] == ["mine"] * 3
    assert schedule.started() == {"mine"}
    assert schedule.due_at("theirs", 30.0) == next_due(30.0, 10.0, phase_of("theirs", 10.0))
    assert schedule.only({"mine", "theirs"}, now=30.0) is True
    until(60.0)
    theirs = [due for name, due in starts if name == "theirs"]
    assert theirs == pytest.approx([phase_of("theirs", 10.0) + k * 10.0 for k in (3, 4, 5)])
