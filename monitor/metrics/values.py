"""The numbers behind the metrics, as plain floats and lists.

Per-check numbers live in one slotted `CheckSeries` per check, touched only from the event
loop (a result is recorded there), so they need no lock: a few hundred bytes a check instead
of prometheus_client's objects and lock per value. The daemon's own families (notifications,
database, scheduler) have a handful of series, bumped from the event loop and from the
writer's and Apprise's threads too: `Values` and `Buckets` hold one lock each.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence

from monitor.metrics.exposition import Family, bucket_bounds


class Histogram:
    """Counts per bucket (not cumulative) and their sum; not thread-safe on its own."""

    __slots__ = ("bounds", "counts", "les", "total")

    def __init__(self, bounds: Sequence[float], les: tuple[str, ...]) -> None:
        self.bounds = bounds
        self.les = les
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # `le` buckets are inclusive: a value equal to a bound counts in that bucket.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: Family, values: tuple[str, ...]) -> None:
        family.add_histogram(values, self.les, self.counts, self.total)


class CheckSeries:
    """Every per-check number that is counted rather than computed at scrape time."""

    __slots__ = (
        "codes", "duration", "failure", "key", "rate_limited", "skipped", "success", "throttled",
        "up",
    )  # fmt: skip

    def __init__(self, check: str, duration: Histogram) -> None:
        self.key = (check,)
        self.success = 0
        self.failure = 0
        self.up: int | None = None  # no series until the first run
        self.duration = duration
        self.codes: dict[str, int] = {}
        self.rate_limited = 0
        self.skipped = 0
        self.throttled = 0


class Values:
    """A counter or gauge family of the daemon itself."""

    def __init__(self, kind: str, name: str, doc: str, labels: tuple[str, ...] = ()) -> None:
        self.kind, self.name, self.doc, self.label_names = kind, name, doc, labels
        # An unlabelled family has its one series from the start, at 0, as a labelled series
        # has from its first `labels()`: increase() then sees the first event too.
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}
        self._lock = threading.Lock()

    def labels(self, *values: str) -> Series:
        """The series for these label values, created (at 0) if new."""
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, not {values}")
        with self._lock:
            self._values.setdefault(values, 0.0)
        return Series(self, values)

    def inc(self, amount: float = 1.0) -> None:
        self.add((), amount)

    def set(self, value: float) -> None:
        self.put((), value)

    def add(self, key: tuple[str, ...], amount: float) -> None:
        if self.kind == "counter" and amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up")
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def put(self, key: tuple[str, ...], value: float) -> None:
        if self.kind == "counter":
            raise TypeError(f"{self.name}: a counter is not set")
        with self._lock:
            self._values[key] = value

    def family(self) -> Family:
        family = Family(self.name, self.kind, self.doc, self.label_names)
        with self._lock:
            for key, value in self._values.items():
                family.add(key, value)
        return family


class Series:
    """One series of a `Values` family: `metrics.notifications.labels(n, r).inc()`."""

    __slots__ = ("_key", "_values")

    def __init__(self, values: Values, key: tuple[str, ...]) -> None:
        self._values, self._key = values, key

    def inc(self, amount: float = 1.0) -> None:
        self._values.add(self._key, amount)

    def set(self, value: float) -> None:
        self._values.put(self._key, value)


class Buckets:
    """An unlabelled histogram of the daemon itself (scheduler lateness)."""

    def __init__(self, name: str, doc: str, bounds: Sequence[float]) -> None:
        self.name, self.doc = name, doc
        self._histogram = Histogram(bounds, bucket_bounds(bounds))
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._histogram.observe(value)

    def family(self) -> Family:
        family = Family(self.name, "histogram", self.doc)
        with self._lock:
            self._histogram.add_to(family, ())
        return family
