"""Every metric intmon counts, defined in one place on a registry the `Metrics` owns."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

from checks.base import Result
from monitor import __version__
from monitor.metrics.exposition import Family, Registry, TextCollector, bucket_bounds
from monitor.metrics.values import Buckets, CheckSeries, Histogram, Values
from monitor.storage.upkeep import MaintenanceReport

# Few buckets on purpose: at 2,000 checks each bucket is 150 kB of every scrape. The exact
# per-check p95 is intmon_latency_p95_seconds; these serve thresholds and aggregation.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
NOTIFICATION_RESULTS = ("success", "failure", "expired")


class Metrics:
    def __init__(self) -> None:
        self.registry = Registry()
        self._checks: dict[str, CheckSeries] = {}
        self._duration_les = bucket_bounds(DURATION_BUCKETS)
        self.notifications = Values(
            "counter", "intmon_notifications",
            "Notification delivery attempts by notifier and result.", ("notifier", "result"),
        )  # fmt: skip
        self.notifier_up = Values(
            "gauge", "intmon_notifier_up",
            "1 while the notifier's last delivery attempt succeeded (or none failed yet).",
            ("notifier",),
        )  # fmt: skip
        self.lateness = Buckets(
            "intmon_scheduler_lateness_seconds",
            "How late runs started against their scheduled time.",
            LATENESS_BUCKETS,
        )
        self.db_write_errors = Values(
            "counter", "intmon_db_write_errors", "Failed database writes (the rows are retried)."
        )
        self.db_up = Values(
            "gauge", "intmon_db_up",
            "1 while the database takes writes, 0 from a failed write until one succeeds.",
        )  # fmt: skip
        self.db_up.set(1)
        self.db_dropped_rows = Values(
            "counter", "intmon_db_dropped_rows",
            "Results dropped unwritten: the oldest, past the writer's cap of queued results.",
        )  # fmt: skip
        self.heartbeat_pings = Values(
            "counter", "intmon_heartbeat_pings",
            "Dead-man's switch pings (monitor.heartbeat_url) by result.", ("result",),
        )  # fmt: skip
        self.maintenance_errors = Values(
            "counter", "intmon_db_maintenance_errors",
            "Failed rollup, pruning or vacuum passes (retried at the next pass).",
        )  # fmt: skip
        self.rows_pruned = Values(
            "counter", "intmon_db_rows_pruned", "Rows deleted by retention, by table.", ("table",)
        )
        # Rows, not hours: Prometheus names carry base units, and a row is one check's hour.
        self.rollup_rows = Values(
            "counter", "intmon_db_rollup_rows",
            "Hourly rollup rows written (one per check and hour).",
        )  # fmt: skip
        self.db_size = Values(
            "gauge", "intmon_db_size_bytes",
            "Size of the database file after the last maintenance pass.",
        )  # fmt: skip
        self.cluster_replicas = Values(
            "gauge", "intmon_cluster_replicas",
            "Live replicas on the database as this one sees them (1 for a process alone).",
        )  # fmt: skip
        self.cluster_replicas.set(1)
        self.cluster_config_mismatch = Values(
            "gauge", "intmon_cluster_config_mismatch",
            "1 while a live replica runs with a config digest other than this one's.",
        )  # fmt: skip
        self.cluster_config_mismatch.set(0)
        self.cluster_leader = Values(
            "gauge", "intmon_cluster_leader",
            "1 while this replica does the storage maintenance of the cluster (1 for one alone).",
        )  # fmt: skip
        self.cluster_leader.set(1)
        # Per-check gauges are exported by the replica that runs the check only, so summing or
        # taking max by `check` across replicas stays right; counters stay per replica.
        self.owns: Callable[[str], bool] = lambda check: True
        self.build_info = Values(
            "gauge", "intmon_build_info", "Always 1; labels say which intmon runs.", ("version",)
        )
        self.build_info.labels(__version__).set(1)
        self.registry.register(_Counted(self))
        # The process's CPU, memory and file descriptors, and the interpreter's GC: what an
        # operator checks first when the daemon itself misbehaves.
        for standard in (ProcessCollector, PlatformCollector, GCCollector):
            standard(registry=self.registry)

    def _series(self, check: str) -> CheckSeries:
        series = self._checks.get(check)
        if series is None:
            duration = Histogram(DURATION_BUCKETS, self._duration_les)
            series = self._checks[check] = CheckSeries(check, duration)
        return series

    def observe(self, check: str, result: Result) -> None:
        series = self._series(check)
        if result.ok:
            series.success += 1
        else:
            series.failure += 1
        series.up = 1 if result.ok else 0
        if result.latency is not None:
            series.duration.observe(result.latency)
        if result.status is not None:
            code = str(result.status)
            series.codes[code] = series.codes.get(code, 0) + 1
            if result.status == 429:
                series.rate_limited += 1

    def count_skipped(self, check: str) -> None:
        self._series(check).skipped += 1

    def count_throttled(self, check: str) -> None:
        self._series(check).throttled += 1

    def maintained(self, report: MaintenanceReport) -> None:
        self.rows_pruned.labels("runs").inc(report.runs_pruned)
        self.rows_pruned.labels("rollups").inc(report.rollups_pruned)
        self.rollup_rows.inc(report.rollup_rows)
        if report.size_bytes:
            self.db_size.set(report.size_bytes)

    def forget(self, check: str) -> None:
        """Drop a removed check's series, so dashboards stop showing it."""
        self._checks.pop(check, None)

    def declare_notifier(self, notifier: str) -> None:
        """Zeroed series, so a delivery before the first scrape still shows in increase()."""
        for result in NOTIFICATION_RESULTS:
            self.notifications.labels(notifier, result)

    def declare(self, check: str) -> None:
        """Export zeroed series for a configured check so dashboards see it before its first run."""
        self._series(check)

    def check_families(self) -> Iterator[Family]:
        def family(kind: str, name: str, doc: str, *labels: str) -> Family:
            return Family(name, kind, doc, ("check", *labels))

        runs = family("counter", "intmon_check_runs", "Check runs by result.", "result")
        up = family("gauge", "intmon_check_up", "1 if the last run of the check passed.")
        duration = family("histogram", "intmon_check_duration_seconds", "Latency of check runs.")
        codes = family("counter", "intmon_http_responses", "HTTP responses by status code.", "code")
        limited = family("counter", "intmon_rate_limited", "HTTP 429 responses received.")
        throttled = family(
            "counter", "intmon_check_throttled",
            "Scheduled runs not sent because the provider asked us to wait (429, quota).",
        )  # fmt: skip
        skipped = family(
            "counter", "intmon_check_skipped",
            "Scheduled runs skipped because the previous run was still going.",
        )  # fmt: skip
        for name, s in list(self._checks.items()):
            key = s.key
            runs.add((name, "success"), s.success)
            runs.add((name, "failure"), s.failure)
            if s.up is not None and self.owns(name):
                up.add(key, s.up)
            s.duration.add_to(duration, key)
            for code, count in s.codes.items():
                codes.add((name, code), count)
            limited.add(key, s.rate_limited)
            throttled.add(key, s.throttled)
            skipped.add(key, s.skipped)
        yield from (runs, up, duration, codes, limited, throttled, skipped)


class _Counted(TextCollector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def families(self) -> Iterator[Family]:
        m = self._metrics
        yield from m.check_families()
        for values in (
            m.notifications, m.notifier_up, m.db_write_errors, m.db_up, m.db_dropped_rows,
            m.heartbeat_pings, m.maintenance_errors, m.rows_pruned, m.rollup_rows, m.db_size,
            m.cluster_replicas, m.cluster_config_mismatch, m.cluster_leader, m.build_info,
        ):  # fmt: skip
            yield values.family()
        yield m.lateness.family()
