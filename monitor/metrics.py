"""Every metric intmon exports, defined in one place on a registry the caller owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from checks.base import Result
from monitor import __version__

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
        self.certificate_expiry = Gauge(
            "intmon_certificate_expiry_timestamp_seconds",
            "notAfter of the target's TLS certificate, unix seconds.",
            ["check"],
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
        self.build_info = Gauge(
            "intmon_build_info", "Always 1; labels say which intmon runs.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)

    def observe(self, check: str, result: Result) -> None:
        self.runs.labels(check, "success" if result.ok else "failure").inc()
        self.up.labels(check).set(1 if result.ok else 0)
        if result.latency is not None:
            self.duration.labels(check).observe(result.latency)
        if result.status is not None:
            self.http_responses.labels(check, str(result.status)).inc()
            if result.status == 429:
                self.rate_limited.labels(check).inc()
        if result.tls_not_after is not None:
            self.certificate_expiry.labels(check).set(result.tls_not_after)

    def declare(self, check: str) -> None:
        """Export zeroed series for a configured check so dashboards see it before its first run."""
        for outcome in ("success", "failure"):
            self.runs.labels(check, outcome)
        self.rate_limited.labels(check)
        self.skipped.labels(check)
