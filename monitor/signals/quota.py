"""When a rate-limit quota runs out, at the rate it is being spent. Pure: time is passed in.

The spend rate is the fall of the provider's own `remaining` counter, not intmon's request
count: what other clients of the same account spend is exactly what exhausts a quota, and only
the counter sees it. A `QuotaLedger` keeps the readings of the current quota period (a reset
starts a new one) and fits a line through those inside the rule's window, so one noisy reading
does not swing the forecast.

One ledger serves one check, or every check of a `provider`: siblings whose answers announce the
same quota (same limit, same policy name, same reset time) are forecast from their readings
pooled, so a provider's quota is judged from all the traffic intmon sees of it. When they do not
agree, or their pooled counter climbs in a way no reset explains (two quotas that only look
alike), each check is forecast from its own readings.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from statistics import linear_regression

from monitor.signals.headers import LEAKY_DIALECTS, Quota

# Readings kept per check. Older ones are thinned, so memory is bounded however short a
# check's interval and however long its window.
MAX_READINGS = 360
# A counter that climbs by more than this share of the limit has been refilled; less is the
# noise of a provider whose replicas count apart (eventually consistent counters).
REFILL_SHARE = 0.02
# Resets announced as deltas drift by the rounding of the delta and the answer's latency.
RESET_TOLERANCE = 5.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer's quota: when it was seen, by which check."""

    at: float
    check: str
    remaining: float
    limit: float | None
    reset_at: float | None
    policy: str | None
    leaky: bool

    def same_quota(self, other: Reading) -> bool:
        """Whether two answers announce one quota: same limit, policy and reset."""
        if (self.limit, self.policy, self.leaky) != (other.limit, other.policy, other.leaky):
            return False
        if self.reset_at is None or other.reset_at is None:
            return self.reset_at is other.reset_at
        return abs(self.reset_at - other.reset_at) <= RESET_TOLERANCE


@dataclass(frozen=True, slots=True)
class Forecast:
    """A quota's latest reading and, when it is falling, when it runs out."""

    remaining: float
    limit: float | None
    reset_at: float | None  # None: unknown, or a leaky bucket that never resets at once
    leaky: bool
    rate: float  # units spent per second (the counter's fall); 0 when not falling
    exhaustion_at: float | None  # unix seconds; None while the counter is not falling
    readings: int  # how many readings the rate was fitted to
    shared_with: tuple[str, ...]  # sibling checks whose readings were pooled

    def seconds_left(self, now: float) -> float | None:
        return None if self.exhaustion_at is None else max(self.exhaustion_at - now, 0.0)

    @property
    def before_reset(self) -> bool:
        """The quota runs out before it resets (or no reset is known to rescue it)."""
        if self.exhaustion_at is None:
            return False
        return self.reset_at is None or self.exhaustion_at < self.reset_at


class QuotaLedger:
    """The readings of one quota, from one check or from every check of a provider."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._readings: dict[str, deque[Reading]] = {}
        # A forecast changes only with a new reading; scrapes and rule evaluations between two
        # readings reuse it, so /metrics stays cheap with thousands of checks.
        self._version = 0
        self._cache: dict[tuple[str, float], tuple[int, Forecast | None]] = {}

    def widen(self, window: float) -> None:
        """Keep readings for at least `window` (the longest window of the checks sharing it)."""
        self.window = max(self.window, window)

    def observe(self, check: str, quota: Quota, at: float) -> None:
        if quota.remaining is None:
            return
        leaky = quota.dialect in LEAKY_DIALECTS
        reading = Reading(
            at, check, quota.remaining, quota.limit, quota.reset_at, quota.policy, leaky
        )
        self._version += 1
        readings = self._readings.setdefault(check, deque())
        while readings and readings[0].at < at - self.window:
            readings.popleft()
        readings.append(reading)
        if len(readings) > MAX_READINGS:
            # Thinning: every other reading of the older half goes, so the recent readings
            # stay dense and a long window of a short interval still fits in MAX_READINGS.
            kept = list(readings)
            half = len(kept) // 2
            self._readings[check] = deque(kept[:half:2] + kept[half:])

    def forget(self, check: str) -> None:
        self._version += 1
        self._readings.pop(check, None)
        self._cache = {key: value for key, value in self._cache.items() if key[0] != check}

    def forecast(self, check: str, window: float) -> Forecast | None:
        """From the readings of the `window` that ends with the check's newest reading."""
        cached = self._cache.get((check, window))
        if cached is not None and cached[0] == self._version:
            return cached[1]
        forecast = self._forecast(check, window)
        self._cache[(check, window)] = (self._version, forecast)
        return forecast

    def _forecast(self, check: str, window: float) -> Forecast | None:
        mine = self._readings.get(check)
        if not mine:
            return None
        latest = mine[-1]
        since = latest.at - window
        own = [r for r in mine if r.at >= since]
        siblings = [
            r
            for name, readings in self._readings.items()
            if name != check
            for r in readings
            if r.at >= since and r.same_quota(latest)
        ]
        own_period, own_refills = _current_period(own)
        period = own_period
        if siblings:
            pooled, pooled_refills = _current_period(sorted([*own, *siblings], key=_at))
            # A pooled counter that climbs more often than the check's own is two counters.
            if pooled_refills <= own_refills:
                period = pooled
        newest = period[-1]  # a sibling's may be fresher news of a shared counter
        rate = _fall_rate(period)
        return Forecast(
            remaining=latest.remaining,
            limit=latest.limit,
            reset_at=latest.reset_at,
            leaky=latest.leaky,
            rate=rate,
            exhaustion_at=None if rate <= 0 else newest.at + newest.remaining / rate,
            readings=len(period),
            shared_with=tuple(sorted({r.check for r in period} - {check})),
        )


def _at(reading: Reading) -> float:
    return reading.at


def _current_period(readings: list[Reading]) -> tuple[list[Reading], int]:
    """The readings since the last refill, and how many refills there were."""
    start, refills = 0, 0
    for i in range(1, len(readings)):
        before, after = readings[i - 1], readings[i]
        noise = REFILL_SHARE * (after.limit or max(before.remaining, after.remaining, 1.0))
        reset_passed = before.reset_at is not None and after.at >= before.reset_at
        if after.remaining - before.remaining > noise or reset_passed:
            start, refills = i, refills + 1
    return readings[start:], refills


def _fall_rate(readings: list[Reading]) -> float:
    """Units per second the counter falls, by least squares; 0 when it does not fall."""
    if len(readings) < 2 or readings[-1].at <= readings[0].at:
        return 0.0
    slope, _ = linear_regression([r.at for r in readings], [r.remaining for r in readings])
    return max(-slope, 0.0)


class QuotaBook:
    """One ledger per quota key: a provider's name, or a check's own for checks without one."""

    def __init__(self) -> None:
        self._ledgers: dict[str, QuotaLedger] = {}

    def ledger(self, key: str, window: float) -> QuotaLedger:
        found = self._ledgers.get(key)
        if found is None:
            found = self._ledgers[key] = QuotaLedger(window)
        found.widen(window)
        return found

    def forget(self, key: str) -> None:
        self._ledgers.pop(key, None)
