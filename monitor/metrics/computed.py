"""Gauges computed when Prometheus scrapes, from the daemon's live per-check signals."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from monitor.metrics.exposition import Family, TextCollector
from monitor.signals.per_check import CheckSignals
from monitor.signals.slo import BURN_WINDOWS

# The values of intmon_check_state's `state` label (monitor.engine.status.STATES).
CHECK_STATES = ("up", "degraded", "down", "throttled", "unknown")


@dataclass(frozen=True)
class Firing:
    check: str
    rule: str
    severity: str


class SignalCollector(TextCollector):
    """Window statistics change with time even when no run happens, so they are computed at
    scrape time rather than set on every run."""

    def __init__(
        self,
        signals: Callable[[], Iterable[CheckSignals]],
        firing: Callable[[], Iterable[Firing]] = lambda: (),
        outbox_depth: Callable[[], int | None] = lambda: None,
        states: Callable[[], Iterable[tuple[str, str]]] = lambda: (),
    ) -> None:
        self._signals = signals
        self._firing = firing
        self._outbox_depth = outbox_depth
        self._states = states

    def families(self) -> Iterator[Family]:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("check",)) -> Family:
            return Family(name, "gauge", doc, labels)

        error_rate = gauge("intmon_error_rate", "Failure ratio over the check's error-rate window.")
        p95 = gauge("intmon_latency_p95_seconds", "p95 latency over the check's latency window.")
        baseline = gauge(
            "intmon_latency_baseline_p95_seconds", "Median of hourly p95 latency over 7 days."
        )
        remaining = gauge("intmon_ratelimit_remaining", "Last rate-limit quota remaining seen.")
        limit = gauge("intmon_ratelimit_limit", "Last rate-limit quota limit seen.")
        deprecated = gauge("intmon_deprecated", "1 while the API announces deprecation.")
        sunset = gauge("intmon_sunset_timestamp_seconds", "Announced Sunset, unix seconds.")
        freshness = gauge("intmon_freshness_age_seconds", "Age of the newest synced data.")
        certificate = gauge(
            "intmon_certificate_expiry_timestamp_seconds", "TLS certificate notAfter, unix seconds."
        )
        drift = gauge(
            "intmon_schema_drift", "1 while the latest JSON body drifts from the learned shape."
        )
        checks = list(self._signals())
        for s in checks:
            key = (s.check,)
            now = s.clock.time()
            rate, _ = s.windows.error_rate(now, s.error_window)
            if rate is not None:
                error_rate.add(key, rate)
            latency, _ = s.windows.latency_p95(now, s.latency_window)
            if latency is not None:
                p95.add(key, latency)
            base = s.baseline.baseline(now)
            if base is not None:
                baseline.add(key, base)
            if s.quota is not None and s.quota.remaining is not None:
                remaining.add(key, s.quota.remaining)
            if s.quota is not None and s.quota.limit is not None:
                limit.add(key, s.quota.limit)
            deprecated.add(key, 1 if s.deprecated_since is not None else 0)
            if s.sunset_at is not None:
                sunset.add(key, s.sunset_at)
            if s.freshness_age is not None:
                freshness.add(key, s.freshness_age)
            if s.certificate_not_after is not None:
                certificate.add(key, s.certificate_not_after)
            if s.schema_drift is not None:  # only checks that learned a shape have one
                drift.add(key, 1 if s.schema_drift.drifted else 0)
        yield from (error_rate, p95, baseline, remaining, limit, deprecated, sunset, freshness)
        yield certificate
        yield drift
        yield from _slo_families(checks)
        yield from _quota_budget(checks)
        yield from self._alerting_families()

    def _alerting_families(self) -> Iterator[Family]:
        alerts = Family(
            "intmon_alert_firing", "gauge", "1 while an alert fires.", ("check", "rule", "severity")
        )
        for f in self._firing():
            alerts.add((f.check, f.rule, f.severity), 1)
        yield alerts
        states = self._check_states()
        if states.rows:  # a collector given no states (tests, `intmon check`) has no family
            yield states
        depth = self._outbox_depth()
        if depth is not None:
            outbox = Family(
                "intmon_outbox_pending", "gauge", "Notifications not yet delivered.", ()
            )
            outbox.add((), depth)
            yield outbox

    def _check_states(self) -> Family:
        family = Family(
            "intmon_check_state",
            "gauge",
            "1 for the check's current state (up, degraded, down, throttled, unknown), else 0.",
            ("check", "state"),
        )
        for check, current in self._states():
            for state in CHECK_STATES:
                family.add((check, state), 1 if state == current else 0)
        return family


def _slo_families(checks: Iterable[CheckSignals]) -> tuple[Family, Family]:
    """The error budget and burn rates of the checks with an `slo:`."""
    budget = Family(
        "intmon_slo_error_budget_remaining_ratio",
        "gauge",
        "1 - failures / failures allowed over the SLO window; below 0 once overspent.",
        ("check",),
    )
    burn = Family(
        "intmon_slo_burn_rate",
        "gauge",
        "Error ratio over the window divided by the error budget (1 - objective).",
        ("check", "window"),
    )
    for s in checks:
        if s.sli is None or s.slo is None:
            continue
        now = s.clock.time()
        left = s.sli.budget_remaining(now, s.slo.budget)
        if left is not None:
            budget.add((s.check,), left)
        for label, window in BURN_WINDOWS.items():
            rate, _ = s.sli.burn_rate(now, window, s.slo.budget)
            if rate is not None:
                burn.add((s.check, label), rate)
    return budget, burn


def _quota_budget(checks: list[CheckSignals]) -> tuple[Family, Family]:
    """When each check's quota resets, and when it runs out first at its spend rate."""
    reset = Family(
        "intmon_ratelimit_reset_timestamp_seconds",
        "gauge",
        "When the last rate-limit quota seen resets, unix seconds.",
        ("check",),
    )
    exhaustion = Family(
        "intmon_ratelimit_exhaustion_seconds",
        "gauge",
        "Seconds until the quota runs out at its spend rate, while that comes before its reset.",
        ("check",),
    )
    for s in checks:
        if s.quota is None:
            continue
        if s.quota.reset_at is not None:
            reset.add((s.check,), s.quota.reset_at)
        forecast = s.quota_forecast(s.quota_window)
        left = None if forecast is None else forecast.seconds_left(s.clock.time())
        if forecast is not None and left is not None and forecast.before_reset:
            exhaustion.add((s.check,), left)
    return reset, exhaustion
