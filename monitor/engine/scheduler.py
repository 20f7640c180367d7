"""When each check runs. The math is pure; `Scheduler.run` is the only part that waits.

Every check gets a stable phase inside its interval (derived from its name), so 1,000 checks at
60 s spread across the minute instead of firing together, and the spread survives restarts.
Due times sit on a fixed grid (phase + k * interval), so lateness in one run never drifts later
ones. A run still going when its next slot comes makes that slot be skipped, never stacked.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from monitor.core.clock import Clock

log = logging.getLogger(__name__)


def phase_of(name: str, interval: float) -> float:
    """A stable pseudo-random offset in [0, interval) for the check called `name`."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


def next_due(now: float, interval: float, phase: float) -> float:
    """The first slot on the grid phase + k*interval strictly after `now`."""
    k = math.floor((now - phase) / interval) + 1
    due = phase + k * interval
    # Floating point can land a hair at or before `now`; the grid point after it is meant.
    return due if due > now else due + interval


@dataclass(order=True)
class _Slot:
    due: float
    name: str = field(compare=False)
    generation: int = field(default=0, compare=False)


@dataclass
class Dispatch:
    """A check due to start now, and how late its start is against the grid."""

    name: str
    due: float
    lateness: float


class Schedule:
    """The pure part of scheduling: which checks are due, which slots get skipped."""

    def __init__(self, intervals: dict[str, float], now: float) -> None:
        # name -> (interval, phase, generation). A slot whose generation is not the current one
        # belongs to an earlier add of that name and is dropped when it comes up.
        self._intervals: dict[str, tuple[float, float, int]] = {}
        self._generation = 0
        self._heap: list[_Slot] = []
        # Scheduled, but with no slot in the heap: another replica runs them (`only`).
        self._parked: set[str] = set()
        self.running: set[str] = set()
        for name, interval in intervals.items():
            self.add(name, interval, now)

    def add(self, name: str, interval: float, now: float) -> None:
        phase = phase_of(name, interval)
        self._generation += 1
        self._intervals[name] = (interval, phase, self._generation)
        self._parked.discard(name)
        heapq.heappush(self._heap, _Slot(next_due(now, interval, phase), name, self._generation))

    def remove(self, name: str) -> None:
        self._intervals.pop(name, None)  # its heap slot is dropped lazily when it comes up
        self._parked.discard(name)

    def only(self, names: Collection[str], now: float) -> bool:
        """From now on start only the checks in `names` (a replica's share); the others keep
        their grid (`due_at`) but get no slot, so they cost no wake-up and no task just to be
        skipped. One back in `names` starts at its first slot after `now`, as an added check
        does. True when one came back: a sleeping scheduler must look again (`poke`)."""
        wanted = set(names)
        resumed = False
        for name, (interval, phase, _) in list(self._intervals.items()):
            if (name in wanted) != (name in self._parked):
                continue  # started and wanted, or parked and not wanted: as it should be
            self._generation += 1  # a slot still in the heap is dropped when it comes up
            self._intervals[name] = (interval, phase, self._generation)
            if name in wanted:
                self._parked.discard(name)
                due = next_due(now, interval, phase)
                heapq.heappush(self._heap, _Slot(due, name, self._generation))
                resumed = True
            else:
                self._parked.add(name)
        return resumed

    def started(self) -> set[str]:
        """The checks that get slots: every scheduled one but those `only` left out."""
        return set(self._intervals) - self._parked

    def due_at(self, name: str, now: float) -> float | None:
        """When `name` next starts: its first grid slot after `now` (None if not scheduled)."""
        timing = self._intervals.get(name)
        return None if timing is None else next_due(now, timing[0], timing[1])

    def next_wakeup(self) -> float | None:
        while self._heap and not self._current(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0].due if self._heap else None

    def due(self, now: float) -> tuple[list[Dispatch], list[str]]:
        """Pop every slot due by `now`: the checks to start, and those skipped as overrunning."""
        start: list[Dispatch] = []
        skipped: list[str] = []
        while self._heap and self._heap[0].due <= now:
            slot = heapq.heappop(self._heap)
            if not self._current(slot):
                continue
            interval, phase, generation = self._intervals[slot.name]
            due = next_due(max(now, slot.due), interval, phase)
            heapq.heappush(self._heap, _Slot(due, slot.name, generation))
            if slot.name in self.running:
                skipped.append(slot.name)
            else:
                self.running.add(slot.name)
                start.append(Dispatch(slot.name, slot.due, now - slot.due))
        return start, skipped

    def _current(self, slot: _Slot) -> bool:
        timing = self._intervals.get(slot.name)
        return timing is not None and timing[2] == slot.generation

    def finished(self, name: str) -> None:
        self.running.discard(name)


class Scheduler:
    """Drives a Schedule in real (or fake) time, starting each due check as its own task."""

    def __init__(
        self,
        schedule: Schedule,
        clock: Clock,
        start: Callable[[Dispatch], Awaitable[None]],
        on_skip: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.schedule = schedule
        self.clock = clock
        self._start = start
        self._on_skip = on_skip
        self.tasks: set[asyncio.Task[None]] = set()
        self._sleeper: asyncio.Task[None] | None = None
        self._poked = False
        self._stopping = False

    def poke(self) -> None:
        """Re-evaluate the next wake-up (after checks are added or removed)."""
        self._poked = True
        if self._sleeper is not None:
            self._sleeper.cancel()

    def stop(self) -> None:
        self._stopping = True
        self.poke()

    async def run(self) -> None:
        while not self._stopping:
            start, skipped = self.schedule.due(self.clock.time())
            for dispatch in start:
                task = asyncio.create_task(self._run_one(dispatch), name=f"check:{dispatch.name}")
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            for name in skipped:
                self._on_skip(name)
            wakeup = self.schedule.next_wakeup()
            delay = 3600.0 if wakeup is None else max(wakeup - self.clock.time(), 0.0)
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Until `delay` passes or `poke()`. One task a wake-up, and at 500 checks a second
        the loop wakes about that often: a second task and asyncio.wait showed in profiles."""
        if self._poked:  # poked since the last wake-up: the schedule is already re-read
            self._poked = False
            return
        self._sleeper = asyncio.create_task(self.clock.sleep(delay))
        try:
            await self._sleeper
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._poked or (current is not None and current.cancelling()):
                raise  # run() itself is cancelled, not merely poked
        finally:
            self._sleeper = None
            self._poked = False

    async def _run_one(self, dispatch: Dispatch) -> None:
        try:
            await self._start(dispatch)
        except Exception:
            log.exception("check %s crashed the runner", dispatch.name)
        finally:
            self.schedule.finished(dispatch.name)

    async def drain(self, grace: float) -> None:
        """Let in-flight runs finish (they are bounded by their own timeouts), up to `grace`."""
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
