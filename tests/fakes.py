"""Stand-ins for the alert rules' input, shared by the alerting tests."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.signals.headers import Quota
from monitor.signals.quota import Forecast
from monitor.signals.shapes import Drift


@dataclass
class View:
    """A SignalView with fixed figures: what the rules see, set by the test."""

    check: str = "orders-api"
    failure_ratio: float = 0.0
    runs: int = 10
    consecutive_failures: int = 0
    deprecated_since: float | None = None
    sunset_at: float | None = None
    certificate_not_after: float | None = None
    freshness_age: float | None = None
    schema_drift: Drift | None = None
    last_error: str | None = None
    migration_link: str | None = None
    last_request_id: str | None = None
    last_error_class: str | None = None
    quota: Quota | None = None

    def error_rate(self, window: float) -> tuple[float | None, int]:
        return self.failure_ratio, self.runs

    def latency_p95(self, window: float) -> tuple[float | None, int]:
        return 0.1, self.runs

    def baseline_p95(self) -> float | None:
        return 0.1

    def rate_limited(self, window: float) -> int:
        return 0

    def quota_forecast(self, window: float) -> Forecast | None:
        return None


@dataclass(frozen=True)
class Notifier:
    """Notifier settings as monitor.alerting.notify reads them, without a config file."""

    name: str
    urls: list[str]
    min_severity: str = "warning"
    error_classes: tuple[str, ...] | None = None
