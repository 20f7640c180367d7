"""Per-check signals: what the results of one check add up to.

One `CheckSignals` per check turns each result into window statistics, the last quota seen,
deprecation and sunset announcements, and certificate and freshness facts. It is the
`SignalView` the alert rules read, the source of the scrape-time gauges, and what the status
API shows.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import MISSING

from checks.base import Result
from checks.slo import SloConfig
from monitor.core.clock import Clock
from monitor.core.quantile import quantile
from monitor.core.units import DAY, hour_of
from monitor.signals.headers import Quota
from monitor.signals.quota import Forecast, QuotaLedger
from monitor.signals.shapes import Drift, ShapeTracker
from monitor.signals.slo import Counts, SliStore, slo_status
from monitor.signals.stats import CheckWindows, HourlyBaseline, Run
from monitor.signals.status import (
    CertificateStatus,
    DeprecationStatus,
    QuotaForecastStatus,
    SignalsStatus,
)
from monitor.storage.store import DeprecationRow, RunRecord

DEFAULT_ERROR_WINDOW = 300.0
DEFAULT_LATENCY_WINDOW = 900.0
DEFAULT_RATE_LIMIT_WINDOW = 900.0
DEFAULT_QUOTA_WINDOW = 900.0
# How often an unchanged deprecation's last-seen time is written back to storage.
LAST_SEEN_WRITE_INTERVAL = 600.0


@dataclass
class DeprecationRecord:
    """A deprecation as the API announced it, with when intmon first and last saw it."""

    first_seen: float
    last_seen: float
    deprecated_at: float | None = None
    sunset_at: float | None = None
    links: list[str] = field(default_factory=list)
    sunset_links: list[str] = field(default_factory=list)
    message: str | None = None
    active: bool = True  # False once the API stops announcing it

    @classmethod
    def from_row(cls, row: DeprecationRow) -> DeprecationRecord:
        return cls(
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            deprecated_at=row.deprecated_at,
            sunset_at=row.sunset_at,
            links=json.loads(row.links),
            sunset_links=json.loads(row.sunset_links),
            message=row.message,
            active=row.active,
        )

    def to_row(self, check: str) -> DeprecationRow:
        values = asdict(self)
        values.update(links=json.dumps(self.links), sunset_links=json.dumps(self.sunset_links))
        return DeprecationRow(check=check, **values)

    def status(self, now: float) -> DeprecationStatus:
        return DeprecationStatus(
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            deprecated_at=self.deprecated_at,
            sunset_at=self.sunset_at,
            links=tuple(self.links),
            sunset_links=tuple(self.sunset_links),
            message=self.message,
            active=self.active,
            days_to_sunset=(
                MISSING
                if self.sunset_at is None
                else round(max(self.sunset_at - now, 0.0) / DAY, 1)
            ),
        )


class CheckSignals:
    def __init__(
        self,
        check: str,
        clock: Clock,
        error_window: float = DEFAULT_ERROR_WINDOW,
        latency_window: float = DEFAULT_LATENCY_WINDOW,
        longest_window: float = DEFAULT_RATE_LIMIT_WINDOW,
        slo: SloConfig | None = None,
        quota_window: float = DEFAULT_QUOTA_WINDOW,
        quota_ledger: QuotaLedger | None = None,
    ) -> None:
        self.check = check
        self.clock = clock
        self.error_window = error_window
        self.latency_window = latency_window
        self.windows = CheckWindows(
            max(error_window, latency_window, longest_window), quantile_window=latency_window
        )
        self.baseline = HourlyBaseline()
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.last_request_id: str | None = None  # of the run that gave last_error
        self.last_error_class: str | None = None  # of that run too: notifiers route by it
        self.quota: Quota | None = None  # the last one seen; the throttle takes it as it is
        self.deprecation: DeprecationRecord | None = None
        self.certificate_not_after: float | None = None
        self.freshness_age: float | None = None
        self.shape = ShapeTracker()  # fed by the daemon, which also stores it
        self._deprecation_written = 0.0
        self.slo = slo
        self.sli = None if slo is None else SliStore(slo.window)
        # The spend-rate window of quota_exhaustion; the ledger is shared by a provider's checks.
        self.quota_window = quota_window
        self.quota_ledger = quota_ledger or QuotaLedger(quota_window)

    def set_slo(self, slo: SloConfig | None) -> bool:
        """A reloaded `slo:`. True if the SLI must be restored: new, or a longer window."""
        old, self.slo = self.sli, slo
        if slo is None:
            self.sli = None
            return False
        if old is not None and old.window >= slo.window:
            old.window = slo.window
            return False
        self.sli = SliStore(slo.window)
        return True

    def resize(self, error_window: float, latency_window: float, longest_window: float) -> bool:
        """New window lengths after a reload. True if history must be replayed to fill them."""
        self.error_window = error_window
        self.latency_window = latency_window
        wanted = max(error_window, latency_window, longest_window)
        if wanted <= self.windows.max_window:
            self.windows.set_quantile_window(latency_window)
            return False
        self.windows = CheckWindows(wanted, quantile_window=latency_window)
        return True

    # SignalView, for the alert rules -------------------------------------------------------

    def error_rate(self, window: float) -> tuple[float | None, int]:
        return self.windows.error_rate(self.clock.time(), window)

    def latency_p95(self, window: float) -> tuple[float | None, int]:
        return self.windows.latency_p95(self.clock.time(), window)

    def baseline_p95(self) -> float | None:
        return self.baseline.baseline(self.clock.time())

    def rate_limited(self, window: float) -> int:
        return self.windows.rate_limited(self.clock.time(), window)

    def runs(self, window: float) -> list[Run]:
        return self.windows.runs(self.clock.time(), window)

    def slo_counts(self, window: float, explained: Mapping[str, float] | None = None) -> Counts:
        """Runs and failures over a burn-rate window (no SLO: none)."""
        if self.sli is None:
            return Counts()
        return self.sli.counts(self.clock.time(), window, explained)

    def quota_forecast(self, window: float) -> Forecast | None:
        return self.quota_ledger.forecast(self.check, window)

    @property
    def deprecated_since(self) -> float | None:
        d = self.deprecation
        return d.first_seen if d is not None and d.active else None

    @property
    def sunset_at(self) -> float | None:
        d = self.deprecation
        return d.sunset_at if d is not None and d.active else None

    @property
    def migration_link(self) -> str | None:
        d = self.deprecation
        if d is None or not d.active:
            return None
        return next(iter(d.links + d.sunset_links), None)

    @property
    def schema_drift(self) -> Drift | None:
        return self.shape.drift

    # Feeding -------------------------------------------------------------------------------

    def observe(self, result: Result) -> bool:
        """Take one result in, as the runner sealed it (header signals derived, redacted). True
        if the deprecation record changed in a way storage should hear about."""
        now = self.clock.time()
        ts = result.started_at or now
        self.windows.add(ts, result.ok, result.latency, result.status == 429, result.error_class)
        if self.sli is not None:
            self.sli.add(ts, result.ok, result.error_class)
        if result.ok and result.latency is not None:
            # Only healthy runs shape the baseline: an outage must not make slowness "normal".
            self.baseline.add(ts, result.latency)
        if result.ok:
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
            self.last_error = f"{result.error_class}: {result.reason}"
            self.last_request_id = result.request_id
            self.last_error_class = result.error_class
        if result.tls_not_after is not None:
            self.certificate_not_after = result.tls_not_after
        age = result.signals.get("freshness_age")
        if isinstance(age, int | float):
            self.freshness_age = float(age)
        # The runner has read the response headers into (redacted) signals.
        quota = _quota(result.signals, now)
        if quota is not None:
            self.quota = quota
            self.quota_ledger.observe(self.check, quota, now)
        return self._track_deprecation(result, result.signals, now)

    def _track_deprecation(self, result: Result, signals: dict[str, Any], now: float) -> bool:
        if signals.get("deprecated"):
            previous = self.deprecation
            record = DeprecationRecord(
                first_seen=previous.first_seen if previous and previous.active else now,
                last_seen=now,
                deprecated_at=signals.get("deprecated_at"),
                sunset_at=signals.get("sunset"),
                links=list(signals.get("deprecation_links", [])),
                sunset_links=list(signals.get("sunset_links", [])),
                message=signals.get("deprecation_message"),
            )
            self.deprecation = record
            changed = (
                previous is None
                or not previous.active
                or _announcement(previous) != _announcement(record)
            )
            if changed or now - self._deprecation_written >= LAST_SEEN_WRITE_INTERVAL:
                self._deprecation_written = now
                return True
            return False
        # Only a healthy answer without the headers means the provider withdrew them; an
        # error page from a proxy says nothing either way.
        if self.deprecation is not None and self.deprecation.active and result.ok:
            self.deprecation.active = False
            return True
        return False

    def seed(
        self,
        ts: float,
        ok: bool,
        latency: float | None,
        rate_limited: bool,
        error_class: str | None = None,
    ) -> None:
        """Replay a stored run, so windows survive a restart."""
        self.windows.add(ts, ok, latency, rate_limited, error_class)

    def seed_baseline(self, samples: Iterable[tuple[float, float]]) -> None:
        """Rebuild the hourly p95 history from stored healthy runs, given in time order."""
        current = hour_of(self.clock.time())
        for hour, group in itertools.groupby(samples, key=lambda sample: hour_of(sample[0])):
            if hour < current:
                p95 = quantile([latency for _, latency in group], 0.95)
                if p95 is not None:
                    self.baseline.seed_hour(hour, p95)
            else:
                for ts, latency in group:
                    self.baseline.add(ts, latency)

    def seed_last(self, record: RunRecord | None) -> None:
        """Restore what the newest stored run said: its error and the quota it carried."""
        if record is None:
            return
        if not record.ok:
            self.last_error = f"{record.error_class}: {record.reason}"
            self.last_request_id = record.request_id  # stored with failed runs
            self.last_error_class = record.error_class
        self.quota = _quota(record.signals, record.ts)
        age = record.signals.get("freshness_age")
        if isinstance(age, int | float):
            self.freshness_age = float(age)

    def status(self) -> SignalsStatus:
        """What `/api/status` shows under `metrics`, as of now."""
        now = self.clock.time()
        error_rate, error_runs = self.windows.error_rate(now, self.error_window)
        p95, p95_runs = self.windows.latency_p95(now, self.latency_window)
        not_after = self.certificate_not_after
        return SignalsStatus(
            error_rate=error_rate,
            error_rate_window=self.error_window,
            error_rate_runs=error_runs,
            latency_p95=p95,
            latency_p95_window=self.latency_window,
            latency_p95_runs=p95_runs,
            latency_p95_baseline=self.baseline.baseline(now),
            rate_limited_15m=self.windows.rate_limited(now, DEFAULT_RATE_LIMIT_WINDOW),
            consecutive_failures=self.consecutive_failures,
            quota=MISSING if self.quota is None else self.quota,
            quota_forecast=self._quota_forecast_status(now),
            deprecation=MISSING if self.deprecation is None else self.deprecation.status(now),
            certificate=(
                MISSING
                if not_after is None
                else CertificateStatus(
                    not_after=not_after, days_left=round((not_after - now) / DAY, 1)
                )
            ),
            freshness_age=MISSING if self.freshness_age is None else self.freshness_age,
            slo=(
                MISSING
                if self.sli is None or self.slo is None
                else slo_status(self.sli, self.slo, now)
            ),
            shape=MISSING if self.shape.observed is None else self.shape.status(),
        )

    def _quota_forecast_status(self, now: float) -> QuotaForecastStatus | MISSING:
        forecast = self.quota_forecast(self.quota_window)
        if forecast is None:
            return MISSING
        return QuotaForecastStatus(
            window=self.quota_window,
            readings=forecast.readings,
            rate=forecast.rate,
            exhaustion_at=forecast.exhaustion_at,
            seconds_to_exhaustion=forecast.seconds_left(now),
            before_reset=forecast.before_reset,
            leaky=forecast.leaky,
            shared_with=forecast.shared_with,
        )


def _quota(signals: dict[str, Any], seen_at: float) -> Quota | None:
    if "quota_dialect" not in signals:
        return None
    return Quota(
        remaining=signals.get("quota_remaining"),
        limit=signals.get("quota_limit"),
        reset_at=signals.get("quota_reset"),
        policy=signals.get("quota_policy"),
        dialect=signals["quota_dialect"],
        seen_at=seen_at,
    )


def _announcement(record: DeprecationRecord) -> tuple[Any, ...]:
    return (
        record.deprecated_at,
        record.sunset_at,
        record.links,
        record.sunset_links,
        record.message,
    )
