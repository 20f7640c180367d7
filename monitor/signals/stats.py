"""Exact window statistics per check: error rate, latency quantiles, 429s, and a baseline p95.

Pure: every figure is computed from samples the caller adds, at the `now` the caller passes.

Windows are left-open, `(now - window, now]`, like Prometheus range selectors (3.x): a run exactly
one window old has left it, so the figures line up with `rate()` over the same range.

Quantiles use linear interpolation between closest ranks (rank = q * (n - 1)), the definition
Prometheus' `quantile_over_time` and numpy's default use: p95 of 1..100 is 95.05.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable
from statistics import median
from typing import NamedTuple

from monitor.core.quantile import interpolate, quantile
from monitor.core.units import HOUR, WEEK, hour_of

CACHE_SECONDS = 60.0  # how stale a baseline may be: it is a median over hours


class Run(NamedTuple):
    ts: float  # unix seconds the run started
    ok: bool
    latency: float | None  # seconds; None when no answer was timed (e.g. a connect error)
    rate_limited: bool
    error_class: str | None = None  # why it failed; what alert inhibition sorts failures by


class CheckWindows:
    """The recent runs of one check, in time order, with memory bounded two ways.

    Runs older than the longest window any rule asks for are pruned as new ones arrive; the
    hard cap is a safety net for a misconfigured tiny interval, past which the oldest runs go
    first (the long windows then under-count, which beats exhausting memory).

    Queried after every run (alert rules) and at every scrape, so the common questions avoid
    scanning the window: failures and 429s are prefix sums, and the latencies inside
    `quantile_window` are kept sorted, which makes the p95 an index lookup.
    """

    def __init__(
        self, max_window: float, max_samples: int = 20_000, quantile_window: float | None = None
    ) -> None:
        if max_window <= 0 or max_samples <= 0:
            raise ValueError("max_window and max_samples must be positive")
        self.max_window = max_window
        self.max_samples = max_samples
        # A sorted list plus a start offset instead of a deque: bisect needs O(1) indexing.
        self._ts: list[float] = []
        self._runs: list[Run] = []
        self._start = 0
        # Running totals up to and including each run; `_base` is the total before index 0.
        self._failed: list[int] = []
        self._limited: list[int] = []
        self._base = (0, 0)
        self.quantile_window = quantile_window
        self._sorted: list[float] = []  # latencies of timed runs from index _sorted_from on
        self._sorted_from = 0

    def __len__(self) -> int:
        return len(self._ts) - self._start

    def add(
        self,
        ts: float,
        ok: bool,
        latency: float | None,
        rate_limited: bool = False,
        error_class: str | None = None,
    ) -> None:
        run = Run(ts, ok, latency, rate_limited, error_class)
        if not self._ts or ts >= self._ts[-1]:
            failed, limited = (self._failed[-1], self._limited[-1]) if self._ts else self._base
            self._ts.append(ts)
            self._runs.append(run)
            self._failed.append(failed + (not ok))
            self._limited.append(limited + rate_limited)
            if latency is not None and self.quantile_window is not None:
                insort(self._sorted, latency)
        else:
            # Concurrent runs may finish out of order; rare, so O(n) rebuilds are fine.
            index = bisect_right(self._ts, ts, self._start)
            self._ts.insert(index, ts)
            self._runs.insert(index, run)
            self._failed.insert(index, 0)
            self._limited.insert(index, 0)
            self._recount(index)
            self._rebuild_sorted()
        self.prune(self._ts[-1])

    def prune(self, now: float) -> None:
        """Forget runs that no window ending at `now` or later can contain."""
        start = bisect_right(self._ts, now - self.max_window, self._start)
        start = max(start, len(self._ts) - self.max_samples)
        self._expire_sorted(now, start)
        self._start = start
        # Compact only once the dead prefix is large, so pruning stays amortised O(1).
        if start > 1024 and start * 2 > len(self._ts):
            self._base = (self._failed[start - 1], self._limited[start - 1])
            for column in (self._ts, self._runs, self._failed, self._limited):
                del column[:start]
            self._sorted_from -= start
            self._start = 0

    def set_quantile_window(self, window: float | None) -> None:
        self.quantile_window = window
        self._rebuild_sorted()

    def runs(self, now: float, window: float) -> list[Run]:
        """The runs in `(now - window, now]`, oldest first."""
        low, high = self._bounds(now, window)
        return self._runs[low:high]

    def error_rate(self, now: float, window: float) -> tuple[float | None, int]:
        """(failure ratio, runs in window); the ratio is None when there were no runs."""
        low, high = self._bounds(now, window)
        if high <= low:
            return None, 0
        return self._total(self._failed, 0, low, high) / (high - low), high - low

    def latency_quantile(self, now: float, window: float, q: float) -> tuple[float | None, int]:
        """(q-quantile of latency, timed runs in window); None when no run was timed."""
        if window == self.quantile_window and self._ts and now >= self._ts[-1]:
            self._expire_sorted(now, self._start)
            return interpolate(self._sorted, q), len(self._sorted)
        latencies = [run.latency for run in self.runs(now, window) if run.latency is not None]
        return quantile(latencies, q), len(latencies)

    def latency_p95(self, now: float, window: float) -> tuple[float | None, int]:
        return self.latency_quantile(now, window, 0.95)

    def rate_limited(self, now: float, window: float) -> int:
        low, high = self._bounds(now, window)
        return self._total(self._limited, 1, low, high) if high > low else 0

    def _bounds(self, now: float, window: float) -> tuple[int, int]:
        low = bisect_right(self._ts, now - window, self._start)
        return low, bisect_right(self._ts, now, low)

    def _total(self, column: list[int], which: int, low: int, high: int) -> int:
        before = column[low - 1] if low > 0 else self._base[which]
        return column[high - 1] - before

    def _recount(self, index: int) -> None:
        failed, limited = (
            (self._failed[index - 1], self._limited[index - 1]) if index else self._base
        )
        for i in range(index, len(self._runs)):
            failed += not self._runs[i].ok
            limited += self._runs[i].rate_limited
            self._failed[i], self._limited[i] = failed, limited

    def _expire_sorted(self, now: float, floor: int) -> None:
        """Drop from the sorted latencies the runs before `now - quantile_window`, and any
        before index `floor` (pruned by the hard cap)."""
        if self.quantile_window is None:
            return
        edge = max(bisect_right(self._ts, now - self.quantile_window, self._sorted_from), floor)
        for run in self._runs[self._sorted_from : edge]:
            if run.latency is not None:
                del self._sorted[bisect_left(self._sorted, run.latency)]
        self._sorted_from = max(self._sorted_from, edge)

    def _rebuild_sorted(self) -> None:
        if self.quantile_window is None or not self._ts:
            self._sorted, self._sorted_from = [], len(self._ts)
            return
        edge = bisect_right(self._ts, self._ts[-1] - self.quantile_window, self._start)
        self._sorted_from = edge
        self._sorted = sorted(r.latency for r in self._runs[edge:] if r.latency is not None)


def baseline_p95(hourly_p95s: Iterable[float]) -> float | None:
    """The median of hourly p95s: one bad hour (or three) does not move it."""
    values = list(hourly_p95s)
    return median(values) if values else None


class HourlyBaseline:
    """Hourly p95 buckets over the last week, fed live and seeded from the database.

    While fewer than `min_hours` full hours exist, the p95 of every sample seen so far stands
    in, provided there are at least `min_samples` of them: a fresh check gets a baseline within
    minutes, but not from a handful of runs whose p95 is just their maximum. Those early samples
    are dropped once enough full hours exist, so memory stays at about one hour of samples.
    """

    def __init__(
        self,
        history: float = WEEK,
        min_hours: int = 3,
        min_samples: int = 20,
        max_early_samples: int = 10_000,
    ) -> None:
        self.history = history
        self.min_hours = min_hours
        self.min_samples = min_samples
        self._hours: deque[tuple[float, float]] = deque()  # (hour start, p95), oldest first
        self._closed_until = -math.inf  # samples before this belong to a summarised hour
        self._current_hour: float | None = None
        self._current: list[float] = []
        # None once full hours suffice; bounded in case a sparse check never gets there.
        self._early: deque[float] | None = deque(maxlen=max_early_samples)
        self._cached: tuple[float, float | None] | None = None  # (minute, baseline)

    def seed_hour(self, hour_start: float, p95: float) -> None:
        """A full hour's p95 from storage; seed in time order, before live samples."""
        self._cached = None
        hour = hour_of(hour_start)
        self._hours.append((hour, p95))
        self._closed_until = max(self._closed_until, hour + HOUR)
        if len(self._hours) >= self.min_hours:
            self._early = None

    def add(self, ts: float, latency: float) -> None:
        hour = hour_of(ts)
        if hour < self._closed_until or (
            self._current_hour is not None and hour < self._current_hour
        ):
            return  # a straggler from an hour already summarised: its p95 is final
        self._roll(hour)
        self._current_hour = hour
        self._current.append(latency)
        if self._early is not None:
            self._early.append(latency)

    def hourly_p95s(self, now: float) -> list[float]:
        """The p95 of every full hour in the history window before `now`."""
        self._roll(hour_of(now))
        cutoff = now - self.history
        while self._hours and self._hours[0][0] < cutoff:
            self._hours.popleft()
        return [p95 for _, p95 in self._hours]

    def baseline(self, now: float) -> float | None:
        """Computed at most once a minute: rules ask after every run and Prometheus at every
        scrape, while the early fallback sorts up to `max_early_samples` latencies."""
        minute = now // CACHE_SECONDS
        if self._cached is not None and self._cached[0] == minute:
            return self._cached[1]
        hourly = self.hourly_p95s(now)
        if len(hourly) >= self.min_hours:
            value = baseline_p95(hourly)
        elif self._early is not None and len(self._early) >= self.min_samples:
            value = quantile(list(self._early), 0.95)
        else:
            return None  # not cached: a baseline counts from the run that makes it possible
        self._cached = (minute, value)
        return value

    def _roll(self, hour: float) -> None:
        """Close the current bucket once `hour` is past it."""
        if self._current_hour is None or hour <= self._current_hour:
            return
        p95 = quantile(self._current, 0.95)
        if p95 is not None:
            self._hours.append((self._current_hour, p95))
        self._closed_until = self._current_hour + HOUR
        self._current_hour, self._current = None, []
        if len(self._hours) >= self.min_hours:
            self._early = None
