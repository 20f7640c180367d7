"""Inhibition: one problem, one page.

A cause rule (rate_limited, freshness, certificate, ...) that is pending or firing for a check
explains failures of some classes (monitor.config.rules.RULES `explains`, or `alerting.inhibit`).
The generic rules of that check (error_rate, latency_p95, consecutive_failures) then judge an
`ExplainedView`: the same signals without those failures, so they page only for what the cause
does not explain (5xx alongside 429s still page error_rate).

A failure stays explained after its cause resolves: what counts is whether the cause was active
when, or after, the failure happened. Otherwise a generic window that still holds the stale
source's failures would page the moment the source recovers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from checks.slo import SloConfig
from monitor.alerting.rules import SignalView
from monitor.config.alerting import InhibitRule
from monitor.config.rules import Severity
from monitor.core.quantile import quantile
from monitor.signals.headers import Quota
from monitor.signals.quota import Forecast
from monitor.signals.shapes import Drift
from monitor.signals.slo import Counts
from monitor.signals.stats import Run


@dataclass(frozen=True)
class Inhibited:
    """A generic rule whose own figures call for `severity`, held back because the failures
    that make it so are explained by cause rules of the same check (`by`)."""

    check: str
    rule: str
    severity: Severity
    summary: str
    by: tuple[str, ...]


def explained(
    target: str, inhibit: Sequence[InhibitRule], active: Mapping[str, float | None]
) -> tuple[dict[str, float], tuple[str, ...]]:
    """(error class -> failures up to then are explained, the cause rules explaining them)
    for the generic rule `target`; `active` maps the check's rules to when each was last
    pending or firing (None: never)."""
    until: dict[str, float] = {}
    by: list[str] = []
    for inhibition in inhibit:
        last = active.get(inhibition.source)
        if last is None or target not in inhibition.target:
            continue
        by.append(inhibition.source)
        for error_class in inhibition.explained:
            until[error_class] = max(until.get(error_class, last), last)
    return until, tuple(by)


class ExplainedView:
    """A SignalView that leaves out the failures `until` explains: a failed run of class `c`
    that started at or before `until[c]`."""

    def __init__(self, view: SignalView, until: Mapping[str, float]) -> None:
        self.view = view
        self.until = until

    def _explained(self, run: Run) -> bool:
        if run.ok or run.error_class is None:
            return False
        return run.ts <= self.until.get(run.error_class, -math.inf)

    def runs(self, window: float) -> list[Run]:
        return [run for run in self.view.runs(window) if not self._explained(run)]

    def error_rate(self, window: float) -> tuple[float | None, int]:
        runs = self.runs(window)
        if not runs:
            return None, 0
        return sum(not run.ok for run in runs) / len(runs), len(runs)

    def latency_p95(self, window: float) -> tuple[float | None, int]:
        latencies = [run.latency for run in self.runs(window) if run.latency is not None]
        return quantile(latencies, 0.95), len(latencies)

    def slo_counts(self, window: float, explained: Mapping[str, float] | None = None) -> Counts:
        """Burn-rate windows leave out the same failures, at their buckets' granularity."""
        until = dict(self.until)
        for error_class, ts in (explained or {}).items():
            until[error_class] = max(until.get(error_class, ts), ts)
        return self.view.slo_counts(window, until)

    @property
    def consecutive_failures(self) -> int:
        """The current streak without its explained failures (they neither count nor break it).
        Failures older than the windows hold are counted as unexplained: their class is gone."""
        counted = seen = 0
        for run in reversed(self.view.runs(math.inf)):
            if run.ok:
                return counted
            seen += 1
            counted += not self._explained(run)
        return counted + max(self.view.consecutive_failures - seen, 0)

    # The rest is the underlying view's.

    @property
    def check(self) -> str:
        return self.view.check

    @property
    def deprecated_since(self) -> float | None:
        return self.view.deprecated_since

    @property
    def sunset_at(self) -> float | None:
        return self.view.sunset_at

    @property
    def certificate_not_after(self) -> float | None:
        return self.view.certificate_not_after

    @property
    def freshness_age(self) -> float | None:
        return self.view.freshness_age

    @property
    def last_error(self) -> str | None:
        return self.view.last_error

    @property
    def migration_link(self) -> str | None:
        return self.view.migration_link

    @property
    def last_request_id(self) -> str | None:
        return self.view.last_request_id

    @property
    def last_error_class(self) -> str | None:
        return self.view.last_error_class

    @property
    def slo(self) -> SloConfig | None:
        return self.view.slo

    @property
    def schema_drift(self) -> Drift | None:
        return self.view.schema_drift

    def baseline_p95(self) -> float | None:
        return self.view.baseline_p95()

    def rate_limited(self, window: float) -> int:
        return self.view.rate_limited(window)

    @property
    def quota(self) -> Quota | None:
        return self.view.quota

    def quota_forecast(self, window: float) -> Forecast | None:
        return self.view.quota_forecast(window)
