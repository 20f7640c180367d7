"""What a check's signals add up to, as `/api/status` shows them under `metrics`.

Built by `CheckSignals.status()`; read by the status page and `intmon status`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import MISSING

from monitor.core.model import StatusModel
from monitor.signals.headers import Quota


class DeprecationStatus(StatusModel):
    """A deprecation as the API announced it, with when intmon first and last saw it."""

    first_seen: float
    last_seen: float
    deprecated_at: float | None
    sunset_at: float | None
    links: tuple[str, ...]
    sunset_links: tuple[str, ...]
    message: str | None
    active: bool
    """False once the API stops announcing it."""
    days_to_sunset: float | MISSING = MISSING
    """Days left until `sunset_at`, 0 once it has passed; absent without a sunset date."""


class CertificateStatus(StatusModel):
    not_after: float
    days_left: float


class BurnRate(StatusModel):
    window: str
    """The window's label: 5m, 30m, 1h, 6h or 3d."""
    rate: float | None
    """Error ratio over the window divided by the error budget (1 - objective): 1 spends the
    budget exactly over the SLO window. Null without runs in the window."""


class SloStatus(StatusModel):
    """A check's service level objective and how its error budget stands."""

    objective: float
    """The share of runs that must pass, e.g. 0.999."""
    window: float
    """Seconds the budget is counted over."""
    runs: int
    failures: int
    budget_remaining: float | None
    """1 - failures / failures allowed over the window; below 0 once overspent; null
    without runs."""
    burn_rates: tuple[BurnRate, ...]
    closest: str
    """The burn-rate alert nearest to firing, e.g. `critical at 14.4x over 1h and 5m`."""
    closest_share: float | None
    """That alert's lower burn rate over its threshold: 1 or more fires it."""


class ShapeField(StatusModel):
    """One path of a learned response shape."""

    path: str
    types: str
    """JSON types seen there, `|`-separated: `string|null`."""
    optional: bool
    """Absent from some of the bodies (or array elements) it was learned from."""


class ShapeStatus(StatusModel):
    """The response shape the check learned, and how its latest JSON body differs from it."""

    state: Literal["learning", "matching", "drifted"]
    learned_from: int
    """Bodies the shape was learned from (learning ends at 3); an accepted shape counts 3."""
    fields: int
    """JSON paths in the learned shape."""
    truncated: bool
    """The body had more paths (or levels) than a shape keeps: the first 500 are compared."""
    changes: tuple[str, ...]
    """What drifted: `$.data.total: number → string`, `$.data.currency: removed`."""
    new_fields: tuple[str, ...]
    """Fields the learned shape does not know: `$.data.tax: new (number)`. Not drift."""
    observed_since: float | None
    """When the latest body's shape was first seen."""
    accepted_at: float | None
    """When the shape was last accepted (`intmon schema CHECK --accept`); null if never."""


class QuotaForecastStatus(StatusModel):
    """When the quota runs out at the rate its `remaining` counter has been falling."""

    window: float
    """Seconds of readings the spend rate is fitted to (the quota_exhaustion window)."""
    readings: int
    """Readings of the current quota period in the window, pooled across the provider's checks
    when they share the quota."""
    rate: float
    """Units spent per second, by everyone using the quota; 0 while the counter is not falling."""
    exhaustion_at: float | None
    """Unix seconds the quota runs out at that rate; null while it is not falling."""
    seconds_to_exhaustion: float | None
    before_reset: bool
    """True when it runs out before the announced reset (or no reset is known)."""
    leaky: bool
    """A leaky bucket (Shopify's call limit): it refills continuously and has no reset time."""
    shared_with: tuple[str, ...]
    """Sibling checks of the same provider whose readings of the same quota were pooled."""


class SignalsStatus(StatusModel):
    """Window statistics and the facts the latest answers carried."""

    error_rate: float | None
    """Failure ratio over `error_rate_window`; null without runs in it."""
    error_rate_window: float
    error_rate_runs: int
    latency_p95: float | None
    latency_p95_window: float
    latency_p95_runs: int
    latency_p95_baseline: float | None
    """Median of the hourly p95 over the past week."""
    rate_limited_15m: int
    """HTTP 429 answers in the last 15 minutes."""
    consecutive_failures: int
    quota: Quota | MISSING = MISSING
    """The last rate-limit quota an answer announced: the very object the throttle reads."""
    quota_forecast: QuotaForecastStatus | MISSING = MISSING
    deprecation: DeprecationStatus | MISSING = MISSING
    certificate: CertificateStatus | MISSING = MISSING
    freshness_age: float | MISSING = MISSING
    """Age in seconds of the newest synced data, for freshness checks."""
    slo: SloStatus | MISSING = MISSING
    """For checks with an `slo:`."""
    shape: ShapeStatus | MISSING = MISSING
    """The learned response shape and its drift; absent until a JSON body was seen."""
