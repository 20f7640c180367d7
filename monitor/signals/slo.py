"""The SLI of a check with an `slo:`: good and total runs in time buckets, for burn rates.

Pure: every figure is computed from runs the caller adds, at the `now` the caller passes.

Two rings of buckets per check: one per minute over the last 6 hours (the burn-rate windows
5m, 30m, 1h and 6h) and one per hour over the SLO window (30d by default, at least the 3d of the
slowest alert pair). A window sums a few dozen buckets: minutes up to 1h; beyond, whole hours
plus the minutes of the hour its far edge falls in. Memory is fixed: about 16 bytes a bucket,
19 KB for a 30-day objective (tracemalloc), however often the check runs.

Error bound: a window `(now - W, now]` counts every bucket it overlaps, so it may also count
the runs of up to one bucket before its far edge: up to one minute early for windows within
the last 6 hours (5m counts 5 to 6 minutes), up to one hour for longer ones (3d counts 72 to 73
hours). The near edge is exact. Failures leave a window at most one bucket late, never early.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from checks.slo import SloConfig
from monitor.core.units import DAY, HOUR, MINUTE, hour_of
from monitor.signals.status import BurnRate, SloStatus
from monitor.storage.store import Store

# The windows of the SRE workbook's multi-window, multi-burn-rate alerts, by label.
BURN_WINDOWS: dict[str, float] = {
    "5m": 5 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": HOUR,
    "6h": 6 * HOUR,
    "3d": 3 * DAY,
}
MINUTE_SPAN = 6 * HOUR  # the minute ring covers the short windows
LONGEST_BURN_WINDOW = max(BURN_WINDOWS.values())


@dataclass(frozen=True)
class BurnAlert:
    """Fires when the burn rate reaches `factor` over both windows: the long one says enough
    budget went, the short one that it is still going (so it resets soon after a fix)."""

    severity: Literal["warning", "critical"]
    factor: float
    long: str
    short: str

    def __str__(self) -> str:
        return f"{self.severity} at {self.factor:g}x over {self.long} and {self.short}"


# The SRE workbook's table (chapter 5): 2% of a 30-day budget in 1 hour, 5% in 6 hours
# page; 10% in 3 days is a ticket.
BURN_ALERTS = (
    BurnAlert("critical", 14.4, "1h", "5m"),
    BurnAlert("critical", 6.0, "6h", "30m"),
    BurnAlert("warning", 1.0, "3d", "6h"),
)


def share(alert: BurnAlert, rates: Mapping[str, float | None]) -> float | None:
    """How near `alert` is to firing: its lower burn rate over its factor (1 fires)."""
    long, short = rates.get(alert.long), rates.get(alert.short)
    if long is None or short is None:
        return None
    return min(long, short) / alert.factor


def nearest(shares: Sequence[tuple[BurnAlert, float]]) -> tuple[BurnAlert, float]:
    """Of judged alerts (in BURN_ALERTS order), the most severe one at or past its factor,
    else the one nearest to it."""
    reached = [pair for pair in shares if pair[1] >= 1]
    return reached[0] if reached else max(shares, key=lambda pair: pair[1])


def closest(rates: Mapping[str, float | None]) -> tuple[BurnAlert, float | None]:
    """The alert nearest to firing; the first (fastest) when none can be judged."""
    judged = [(alert, value) for alert in BURN_ALERTS if (value := share(alert, rates)) is not None]
    return nearest(judged) if judged else (BURN_ALERTS[0], None)


@dataclass(frozen=True)
class Counts:
    total: int = 0
    failed: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.total + other.total, self.failed + other.failed)

    @property
    def error_ratio(self) -> float | None:
        return self.failed / self.total if self.total else None


class _Ring:
    """Counts per bucket of `width` seconds, for the last `size` buckets. A slot remembers which
    bucket it holds, so a slot left over from an earlier lap is never counted."""

    def __init__(self, width: float, size: int) -> None:
        self.width = int(width)
        self.size = size
        self._start = array("q", [-1]) * size
        self._total = array("I", [0]) * size
        self._failed = array("I", [0]) * size
        self.newest = -1

    def bucket(self, ts: float) -> int:
        return int(ts - ts % self.width)

    def covers(self, start: int) -> bool:
        return start > self.newest - self.size * self.width

    def add(self, ts: float, total: int, failed: int) -> bool:
        """Count runs into `ts`'s bucket; False (nothing counted) if it has left the ring."""
        start = self.bucket(ts)
        if not self.covers(start):
            return False
        slot = start // self.width % self.size
        if self._start[slot] != start:
            self._start[slot], self._total[slot], self._failed[slot] = start, 0, 0
        self._total[slot] += total
        self._failed[slot] += failed
        self.newest = max(self.newest, start)
        return True

    def sum(self, first: int, last: int) -> Counts:
        """The buckets starting in [first, last], both bucket starts."""
        total = failed = 0
        for start in range(max(first, self.newest - (self.size - 1) * self.width), last + 1,
                           self.width):  # fmt: skip
            slot = start // self.width % self.size
            if self._start[slot] == start:
                total += self._total[slot]
                failed += self._failed[slot]
        return Counts(total, failed)


class SliStore:
    """One check's runs, bucketed. Fed on every run (`add`), seeded at start from stored runs
    and hourly rollups; asked for `counts` by the burn_rate rule and for `budget` at scrape.

    Failures are also counted by error class, sparsely (only buckets with failures hold any),
    so inhibition can leave out the failures a firing cause rule explains. Hours restored from
    rollups have no classes: their failures always count.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        span = max(window, LONGEST_BURN_WINDOW)
        self._minutes = _Ring(MINUTE, int(MINUTE_SPAN // MINUTE) + 1)
        self._hours = _Ring(HOUR, math.ceil(span / HOUR) + 1)
        self._classes: dict[tuple[int, int, str], int] = {}  # (width, start, class) -> failed
        # Closed hours do not change: their sum over a window is kept until the hour turns.
        self._closed: dict[float, tuple[tuple[int, int], Counts]] = {}
        self._pruned_at = -1

    def add(
        self, ts: float, ok: bool, error_class: str | None = None, *, hourly: bool = True
    ) -> None:
        """One run. `hourly=False` for a restored run whose hour a rollup has already counted."""
        failed = int(not ok)
        for ring, wanted in ((self._minutes, True), (self._hours, hourly)):
            if wanted and ring.add(ts, 1, failed) and failed and error_class is not None:
                key = (ring.width, ring.bucket(ts), error_class)
                self._classes[key] = self._classes.get(key, 0) + 1
        if hourly and hour_of(ts) < self._hours.newest:
            self._closed.clear()  # a late run of a closed hour
        self._prune()

    def seed_hour(self, hour: float, total: int, failed: int) -> None:
        """A rolled-up hour from storage."""
        self._hours.add(hour, total, failed)
        self._closed.clear()

    def counts(
        self, now: float, window: float, explained: Mapping[str, float] | None = None
    ) -> Counts:
        """Runs and failures in the buckets overlapping `(now - window, now]`, without the
        failures of class `c` in buckets that began by `explained[c]`."""
        counts = Counts()
        for ring, first, last in self._spans(now, window):
            if ring is self._hours and not explained and first < last:
                counts += self._closed_hours(window, first, last)
            else:
                counts += ring.sum(first, last)
            if explained:
                counts += Counts(0, -self._explained(ring, first, last, explained))
        return counts

    def burn_rate(self, now: float, window: float, budget: float) -> tuple[float | None, Counts]:
        """(error ratio / budget, the counts); None without runs in the window."""
        counts = self.counts(now, window)
        ratio = counts.error_ratio
        return (None if ratio is None else ratio / budget), counts

    def budget_remaining(self, now: float, budget: float) -> float | None:
        """1 - failures / failures allowed over the SLO window; below 0 once overspent. The
        allowance is the budget's share of the runs seen, so a young check has a small one."""
        counts = self.counts(now, self.window)
        if not counts.total:
            return None
        return 1.0 - counts.failed / (budget * counts.total)

    def _spans(self, now: float, window: float) -> Iterator[tuple[_Ring, int, int]]:
        edge = now - window
        if window <= HOUR:
            yield self._minutes, self._minutes.bucket(edge), self._minutes.bucket(now)
            return
        first_hour = hour_of(edge)
        minute = self._minutes.bucket(edge)
        if minute > first_hour and self._minutes.covers(minute):
            # The far edge's hour in minutes, the rest in whole hours.
            yield self._minutes, minute, first_hour + int(HOUR) - int(MINUTE)
            first_hour += int(HOUR)
        yield self._hours, first_hour, hour_of(now)

    def _closed_hours(self, window: float, first: int, last: int) -> Counts:
        cached = self._closed.get(window)
        if cached is None or cached[0] != (first, last):
            cached = self._closed[window] = ((first, last), self._hours.sum(first, last - 1))
        return cached[1] + self._hours.sum(last, last)

    def _explained(self, ring: _Ring, first: int, last: int, explained: Mapping[str, float]) -> int:
        return sum(
            count
            for (width, start, error_class), count in self._classes.items()
            if width == ring.width
            and first <= start <= last
            and ring.covers(start)
            and start <= explained.get(error_class, -math.inf)
        )

    def _prune(self) -> None:
        """Forget class counts whose bucket has left its ring, once a minute."""
        if self._minutes.newest == self._pruned_at:
            return
        self._pruned_at = self._minutes.newest
        rings = {self._minutes.width: self._minutes, self._hours.width: self._hours}
        for key in [k for k in self._classes if not rings[k[0]].covers(k[1])]:
            del self._classes[key]


def restore(store: Store, now: float, slis: Mapping[str, SliStore]) -> None:
    """Blocking, at start-up: each store's hours from the rollups, as far back as its window
    (raw runs are pruned long before rollups), then from raw runs the hours not rolled up yet
    and the last 6 hours' minutes. Reads once here, never per evaluation."""
    if not slis:
        return
    rolled = store.rollups.rolled_up_until()
    oldest = now
    for name, sli in slis.items():
        since = now - max(sli.window, LONGEST_BURN_WINDOW)
        oldest = min(oldest, since)
        if rolled is not None:
            for row in store.rollups.hours(name, hour_of(since), rolled):
                sli.seed_hour(row.hour, row.count, row.failures)
    # Nothing rolled up yet: every hour comes from raw runs.
    raw_since = oldest if rolled is None else max(oldest, min(rolled, now - MINUTE_SPAN))
    for check, ts, ok, _, _, error_class in store.recent_runs(raw_since, slis.keys()):
        slis[check].add(ts, ok, error_class, hourly=rolled is None or ts >= rolled)


def slo_status(sli: SliStore, slo: SloConfig, now: float) -> SloStatus:
    """What `/api/status` and the pages show of one check's SLO, as of `now`."""
    rates = {
        label: sli.burn_rate(now, window, slo.budget)[0] for label, window in BURN_WINDOWS.items()
    }
    counts = sli.counts(now, slo.window)
    alert, nearest = closest(rates)
    return SloStatus(
        objective=slo.objective,
        window=slo.window,
        runs=counts.total,
        failures=counts.failed,
        budget_remaining=sli.budget_remaining(now, slo.budget),
        burn_rates=tuple(BurnRate(window=label, rate=rate) for label, rate in rates.items()),
        closest=str(alert),
        closest_share=nearest,
    )
