"""Each check's last day, hour by hour: runs, failures and p95 latency, kept in memory.

The status page draws a 24-hour bar and a p95 sparkline for every check on every load. With
thousands of checks that must not cost a query per check, so the daemon feeds this book on
each run and restores it at start from the hourly rollups plus the runs not rolled up yet.
Pure: time is the `ts` of the runs fed and the `now` the caller passes.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.core.quantile import interpolate
from monitor.core.units import HOUR, hour_of
from monitor.storage.store import Store

HOURS = 24
# Latencies kept for the open hour's p95: one run every 250 ms fills an hour with 14,400.
MAX_HOUR_SAMPLES = 20_000


@dataclass(frozen=True)
class HourSummary:
    """One check's runs in one clock hour."""

    hour: int  # unix seconds at the start of the hour
    runs: int
    failures: int
    p95: float | None  # seconds, over the runs that were timed; None when none was

    @property
    def failure_ratio(self) -> float | None:
        return self.failures / self.runs if self.runs else None


class CheckHistory:
    """The closed hours of the last day plus the open one, whose p95 is kept exact by holding
    its latencies sorted (the page asks for it on every load)."""

    def __init__(self, hours: int = HOURS) -> None:
        self.hours = hours
        self._closed: deque[HourSummary] = deque(maxlen=hours)
        self._hour: int | None = None
        self._runs = 0
        self._failures = 0
        self._latencies: list[float] = []

    def seed_hour(self, summary: HourSummary) -> None:
        """A rolled-up hour from storage; seed in time order, before any run is added."""
        self._closed.append(summary)

    def add(self, ts: float, ok: bool, latency: float | None) -> None:
        hour = hour_of(ts)
        if self._is_closed(hour) or (self._hour is not None and hour < self._hour):
            self._count_late(hour, ok)
            return
        self._roll(hour)
        self._hour = hour
        self._runs += 1
        self._failures += not ok
        if latency is not None and len(self._latencies) < MAX_HOUR_SAMPLES:
            insort(self._latencies, latency)

    def snapshot(self, now: float) -> tuple[HourSummary, ...]:
        """The hours with runs among the last `hours` up to `now`'s, oldest first."""
        self._roll(hour_of(now))
        oldest = hour_of(now) - (self.hours - 1) * HOUR
        hours = [h for h in self._closed if h.hour >= oldest]
        if self._hour is not None and self._runs:
            hours.append(
                HourSummary(
                    self._hour, self._runs, self._failures, interpolate(self._latencies, 0.95)
                )
            )
        return tuple(hours)

    def _is_closed(self, hour: int) -> bool:
        return bool(self._closed) and hour <= self._closed[-1].hour

    def _count_late(self, hour: int, ok: bool) -> None:
        """A run of an hour already summarised (out of order at a restore): counted, while its
        latency is left out of a p95 that is final."""
        for i, summary in enumerate(self._closed):
            if summary.hour == hour:
                failures = summary.failures + (not ok)
                self._closed[i] = HourSummary(hour, summary.runs + 1, failures, summary.p95)
                return
            if summary.hour > hour and len(self._closed) < self.hours:
                self._closed.insert(i, HourSummary(hour, 1, int(not ok), None))
                return

    def _roll(self, hour: int) -> None:
        """Close the open hour once `hour` is past it."""
        if self._hour is None or hour <= self._hour:
            return
        p95 = interpolate(self._latencies, 0.95)
        self._closed.append(HourSummary(self._hour, self._runs, self._failures, p95))
        self._hour, self._runs, self._failures, self._latencies = None, 0, 0, []


class HistoryBook:
    """Every check's `CheckHistory`, by name."""

    def __init__(self, hours: int = HOURS) -> None:
        self.hours = hours
        self._checks: dict[str, CheckHistory] = {}

    def add(self, check: str, ts: float, ok: bool, latency: float | None) -> None:
        self._history(check).add(ts, ok, latency)

    def forget(self, check: str) -> None:
        self._checks.pop(check, None)

    def snapshot(self, check: str, now: float) -> tuple[HourSummary, ...]:
        history = self._checks.get(check)
        return () if history is None else history.snapshot(now)

    def restore(self, store: Store, now: float, names: Iterable[str]) -> None:
        """Blocking, at start-up: finished hours from the rollups, the rest from raw runs."""
        wanted = set(names)
        for name in wanted:
            self._checks[name] = CheckHistory(self.hours)
        since = hour_of(now) - (self.hours - 1) * HOUR
        for row in store.rollups.hours_since(since, wanted):
            summary = HourSummary(row.hour, row.count, row.failures, row.p95)
            self._checks[row.check].seed_hour(summary)
        raw_since = max(since, store.rollups.rolled_up_until() or since)
        for check, ts, ok, latency, *_ in store.recent_runs(raw_since, wanted):
            self._checks[check].add(ts, ok, latency)

    def _history(self, check: str) -> CheckHistory:
        history = self._checks.get(check)
        if history is None:
            history = self._checks[check] = CheckHistory(self.hours)
        return history
