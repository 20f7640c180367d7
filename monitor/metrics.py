"""Every metric intmon exports, defined in one place on a registry the caller owns."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from checks.base import Result
from monitor import __version__
from monitor.signals.per_check import CheckSignals
from monitor.storage.upkeep import MaintenanceReport

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "intmon_check_runs", "Check runs by result.", ["check", "result"], registry=r
        )
        self.up = Gauge(
            "intmon_check_up", "1 if the last run of the check passed.", ["check"], registry=r
        )
        self.duration = Histogram(
            "intmon_check_duration_seconds",
            "Latency of check runs.",
            ["check"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.http_responses = Counter(
            "intmon_http_responses", "HTTP responses by status code.", ["check", "code"], registry=r
        )
        self.rate_limited = Counter(
            "intmon_rate_limited", "HTTP 429 responses received.", ["check"], registry=r
        )
        self.throttled = Counter(
            "intmon_check_throttled",
            "Scheduled runs not sent because the provider asked us to wait (429, quota).",
            ["check"],
            registry=r,
        )
        self.notifications = Counter(
            "intmon_notifications",
            "Notification delivery attempts by notifier and result.",
            ["notifier", "result"],
            registry=r,
        )
        self.skipped = Counter(
            "intmon_check_skipped",
            "Scheduled runs skipped because the previous run was still going.",
            ["check"],
            registry=r,
        )
        self.lateness = Histogram(
            "intmon_scheduler_lateness_seconds",
            "How late runs started against their scheduled time.",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.db_write_errors = Counter(
            "intmon_db_write_errors", "Failed database writes (the rows are retried).", registry=r
        )
        self.db_up = Gauge(
            "intmon_db_up",
            "1 while the database takes writes, 0 from a failed write until one succeeds.",
            registry=r,
        )
        self.db_up.set(1)
        self.db_dropped_rows = Counter(
            "intmon_db_dropped_rows",
            "Results dropped unwritten: the oldest, past the writer's cap of queued results.",
            registry=r,
        )
        self.notifier_up = Gauge(
            "intmon_notifier_up",
            "1 while the notifier's last delivery attempt succeeded (or none failed yet).",
            ["notifier"],
            registry=r,
        )
        self.heartbeat_pings = Counter(
            "intmon_heartbeat_pings",
            "Dead-man's switch pings (monitor.heartbeat_url) by result.",
            ["result"],
            registry=r,
        )
        self.maintenance_errors = Counter(
            "intmon_db_maintenance_errors",
            "Failed rollup, pruning or vacuum passes (retried at the next pass).",
            registry=r,
        )
        self.rows_pruned = Counter(
            "intmon_db_rows_pruned",
            "Rows deleted by retention, by table.",
            ["table"],
            registry=r,
        )
        self.rollup_hours = Counter(
            "intmon_db_rollup_hours", "Hours of runs rolled up into hourly rows.", registry=r
        )
        self.db_size = Gauge(
            "intmon_db_size_bytes", "Size of the database file after the last maintenance pass.",
            registry=r,
        )  # fmt: skip
        self.build_info = Gauge(
            "intmon_build_info", "Always 1; labels say which intmon runs.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        self._codes: dict[str, set[str]] = {}  # check -> status codes seen, for forget()

    def observe(self, check: str, result: Result) -> None:
        self.runs.labels(check, "success" if result.ok else "failure").inc()
        self.up.labels(check).set(1 if result.ok else 0)
        if result.latency is not None:
            self.duration.labels(check).observe(result.latency)
        if result.status is not None:
            code = str(result.status)
            self.http_responses.labels(check, code).inc()
            self._codes.setdefault(check, set()).add(code)
            if result.status == 429:
                self.rate_limited.labels(check).inc()

    def maintained(self, report: MaintenanceReport) -> None:
        self.rows_pruned.labels("runs").inc(report.runs_pruned)
        self.rows_pruned.labels("rollups").inc(report.rollups_pruned)
        self.rollup_hours.inc(report.hours_rolled_up)
        if report.size_bytes:
            self.db_size.set(report.size_bytes)

    def forget(self, check: str) -> None:
        """Drop a removed check's series, so dashboards stop showing it."""
        per_check = (self.up, self.duration, self.rate_limited, self.skipped, self.throttled)
        for metric in per_check:
            with contextlib.suppress(KeyError):  # a series it never had
                metric.remove(check)
        for result in ("success", "failure"):
            with contextlib.suppress(KeyError):
                self.runs.remove(check, result)
        for code in self._codes.pop(check, ()):
            self.http_responses.remove(check, code)

    def declare_notifier(self, notifier: str) -> None:
        """Zeroed series, so a delivery before the first scrape still shows in increase()."""
        for result in ("success", "failure", "expired"):
            self.notifications.labels(notifier, result)

    def declare(self, check: str) -> None:
        """Export zeroed series for a configured check so dashboards see it before its first run."""
        for outcome in ("success", "failure"):
            self.runs.labels(check, outcome)
        self.rate_limited.labels(check)
        self.skipped.labels(check)
        self.throttled.labels(check)


@dataclass(frozen=True)
class Firing:
    check: str
    rule: str
    severity: str


# The values of intmon_check_state's `state` label (monitor.engine.status.STATES).
CHECK_STATES = ("up", "degraded", "down", "throttled", "unknown")


class SignalCollector(Collector):
    """Gauges computed when Prometheus scrapes, from the daemon's live per-check signals.

    Window statistics change with time even when no run happens, so they are computed at
    scrape time rather than set on every run.
    """

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

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("check",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=list(labels))

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
        for s in self._signals():
            now = s.clock.time()
            rate, _ = s.windows.error_rate(now, s.error_window)
            if rate is not None:
                error_rate.add_metric([s.check], rate)
            latency, _ = s.windows.latency_p95(now, s.latency_window)
            if latency is not None:
                p95.add_metric([s.check], latency)
            base = s.baseline.baseline(now)
            if base is not None:
                baseline.add_metric([s.check], base)
            if s.quota is not None and s.quota.remaining is not None:
                remaining.add_metric([s.check], s.quota.remaining)
            if s.quota is not None and s.quota.limit is not None:
                limit.add_metric([s.check], s.quota.limit)
            deprecated.add_metric([s.check], 1.0 if s.deprecated_since is not None else 0.0)
            if s.sunset_at is not None:
                sunset.add_metric([s.check], s.sunset_at)
            if s.freshness_age is not None:
                freshness.add_metric([s.check], s.freshness_age)
            if s.certificate_not_after is not None:
                certificate.add_metric([s.check], s.certificate_not_after)
        yield from (error_rate, p95, baseline, remaining, limit, deprecated, sunset, freshness)
        yield certificate
        alerts = gauge(
            "intmon_alert_firing", "1 while an alert fires.", ("check", "rule", "severity")
        )
        for f in self._firing():
            alerts.add_metric([f.check, f.rule, f.severity], 1.0)
        yield alerts
        yield self._check_states()
        depth = self._outbox_depth()
        if depth is not None:
            outbox = GaugeMetricFamily("intmon_outbox_pending", "Notifications not yet delivered.")
            outbox.add_metric([], depth)
            yield outbox

    def _check_states(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "intmon_check_state",
            "1 for the check's current state (up, degraded, down, throttled, unknown), else 0.",
            labels=["check", "state"],
        )
        for check, current in self._states():
            for state in CHECK_STATES:
                family.add_metric([check, state], 1.0 if state == current else 0.0)
        return family
