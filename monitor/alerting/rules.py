"""How each alert rule is evaluated (their config is in monitor.config.rules).

Evaluation is pure: a rule looks at a `SignalView` and the time and says which severity (if any)
its condition has right now. Whether that pages is the state machine's business
(monitor/alerting/machine.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from checks.slo import SloConfig
from monitor.config.rules import (
    BurnRateRule,
    CertificateRule,
    ConsecutiveFailuresRule,
    DeprecationRule,
    ErrorRateRule,
    FreshnessRule,
    LatencyRule,
    QuotaExhaustionRule,
    QuotaRule,
    RateLimitedRule,
    RuleConfig,
    SchemaDriftRule,
    Severity,
    SunsetRule,
    ThresholdRule,
)
from monitor.core.units import format_duration
from monitor.signals.headers import Quota
from monitor.signals.quota import Forecast
from monitor.signals.shapes import Drift
from monitor.signals.slo import BURN_ALERTS, BURN_WINDOWS, BurnAlert, Counts, nearest, share
from monitor.signals.stats import Run

__all__ = ["EVALUATORS", "Evaluation", "SignalView", "evaluate"]


class SignalView(Protocol):
    """What the daemon knows about one check, as the rules need it."""

    # Read-only properties, so implementations may compute them.
    @property
    def check(self) -> str: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def deprecated_since(self) -> float | None: ...
    @property
    def sunset_at(self) -> float | None: ...
    @property
    def certificate_not_after(self) -> float | None: ...
    @property
    def freshness_age(self) -> float | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def migration_link(self) -> str | None: ...
    @property
    def last_request_id(self) -> str | None: ...
    @property
    def last_error_class(self) -> str | None: ...
    @property
    def slo(self) -> SloConfig | None: ...
    @property
    def schema_drift(self) -> Drift | None: ...

    def error_rate(self, window: float) -> tuple[float | None, int]: ...
    def latency_p95(self, window: float) -> tuple[float | None, int]: ...
    def baseline_p95(self) -> float | None: ...
    def rate_limited(self, window: float) -> int: ...
    def runs(self, window: float) -> list[Run]: ...
    def slo_counts(self, window: float, explained: Mapping[str, float] | None = None) -> Counts: ...
    @property
    def quota(self) -> Quota | None: ...
    def quota_forecast(self, window: float) -> Forecast | None: ...


@dataclass(frozen=True)
class Evaluation:
    severity: Severity | None
    value: float | None
    threshold: float | str | None
    summary: str
    # False when there is not enough data to judge (a thin window, no baseline, no reading).
    # The state machine then holds its state: "unknown" must neither fire nor resolve.
    known: bool = True


# ---- evaluation ------------------------------------------------------------------------------


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.4g}%"


def _grade(
    value: float, warning: float | None, critical: float | None, higher_is_worse: bool
) -> tuple[Severity | None, float | None, Severity]:
    """(severity crossed or None, its threshold or the nearest one, that threshold's level)."""
    levels: tuple[tuple[Severity, float | None], ...] = (
        ("critical", critical),
        ("warning", warning),
    )
    for severity, threshold in levels:
        if threshold is not None and (
            value >= threshold if higher_is_worse else value <= threshold
        ):
            return severity, threshold, severity
    if warning is not None:
        return None, warning, "warning"
    return None, critical, "critical"


def _verdict(
    grade: tuple[Severity | None, float | None, Severity], shown: str, worse: str, better: str
) -> str:
    fired, _, level = grade
    return f"{worse if fired else better} {level} {shown}"


def _error_rate(rule: ErrorRateRule, view: SignalView, now: float) -> Evaluation:
    ratio, runs = view.error_rate(rule.window)
    where = f"over {format_duration(rule.window)} ({runs} runs)"
    if ratio is None or runs < rule.min_runs:
        shown = "n/a" if ratio is None else _percent(ratio)
        summary = f"error rate {shown} {where}: fewer than min_runs {rule.min_runs}"
        return Evaluation(None, ratio, None, summary, known=False)
    failed = round(ratio * runs)
    where = f"over {format_duration(rule.window)} ({failed} of {runs} runs failed)"
    grade = severity, threshold, _ = _grade(ratio, rule.warning, rule.critical, True)
    verdict = _verdict(grade, _percent(threshold or 0.0), ">=", "<")
    if severity == "critical" and failed < rule.min_failures:
        # A high ratio from a failure or two is a blip, not an outage: it warns at most.
        severity, threshold, _ = _grade(ratio, rule.warning, None, True)
        held = f"critical {_percent(rule.critical or 0.0)} needs {rule.min_failures} failures"
        verdict = f">= warning {_percent(threshold or 0.0)}; {held}" if severity else held
        threshold = threshold if severity else rule.critical
    return Evaluation(severity, ratio, threshold, f"error rate {_percent(ratio)} {where} {verdict}")


def _latency(rule: LatencyRule, view: SignalView, now: float) -> Evaluation:
    p95, runs = view.latency_p95(rule.window)
    where = f"over {format_duration(rule.window)} ({runs} runs)"
    if p95 is None or runs < rule.min_runs:
        shown = "n/a" if p95 is None else format_duration(p95)
        summary = f"p95 latency {shown} {where}: fewer than min_runs {rule.min_runs}"
        return Evaluation(None, p95, None, summary, known=False)
    baseline = view.baseline_p95()
    bounds = {"warning": rule.warning, "critical": rule.critical}
    limits = {sev: b.resolve(baseline) if b is not None else None for sev, b in bounds.items()}
    if all(limit is None for limit in limits.values()):
        summary = f"p95 latency {format_duration(p95)} {where}: no baseline yet for {rule.warning}"
        return Evaluation(None, p95, None, summary, known=False)
    grade = _grade(p95, limits["warning"], limits["critical"], True)
    held = ""
    if grade[0] == "critical" and grade[1] is not None:
        slow = sum(1 for r in view.runs(rule.window) if (r.latency or 0.0) >= grade[1])
        if slow < rule.min_slow_runs:
            # One slow probe among a few runs is the p95: it may warn, never page critical.
            held = f"; critical needs {rule.min_slow_runs} runs that slow ({slow} were)"
            grade = _grade(p95, limits["warning"], None, True)
    severity, threshold, level = grade
    bound = bounds[level]
    shown = format_duration(threshold or 0.0)
    if bound is not None and bound.factor is not None and baseline is not None:
        shown = f"{bound} {format_duration(baseline)} ({shown})"
    verdict = _verdict(grade, shown, ">=", "<") + held
    return Evaluation(
        severity, p95, threshold, f"p95 latency {format_duration(p95)} {where} {verdict}"
    )


def _rate_limited(rule: RateLimitedRule, view: SignalView, now: float) -> Evaluation:
    count = view.rate_limited(rule.window)
    grade = severity, threshold, _ = _grade(count, rule.warning, rule.critical, True)
    verdict = _verdict(grade, f"{threshold:g}", ">=", "<")
    where = f"in {format_duration(rule.window)}"
    return Evaluation(severity, count, threshold, f"{count} HTTP 429 responses {where} {verdict}")


def _consecutive(rule: ConsecutiveFailuresRule, view: SignalView, now: float) -> Evaluation:
    count = view.consecutive_failures
    grade = severity, threshold, _ = _grade(count, rule.warning, rule.critical, True)
    verdict = _verdict(grade, f"{threshold:g}", ">=", "<")
    return Evaluation(severity, count, threshold, f"{count} consecutive failures {verdict}")


def _deprecation(rule: DeprecationRule, view: SignalView, now: float) -> Evaluation:
    since = view.deprecated_since
    if since is None:
        return Evaluation(None, None, None, "no Deprecation announced")
    summary = f"the API announces deprecation (first seen {_iso(since)})"
    return Evaluation(rule.severity, since, None, summary)


def _time_left(
    what: str, deadline: float | None, rule: ThresholdRule, now: float, *, announced: bool
) -> Evaluation:
    if deadline is None:
        # No Sunset header means none is announced; an unreadable certificate means unknown.
        return Evaluation(None, None, None, f"no {what} known", known=announced)
    left = deadline - now
    warning, critical = getattr(rule, "warning", None), getattr(rule, "critical", None)
    grade = severity, threshold, _ = _grade(left, warning, critical, False)
    span = format_duration(abs(left), coarse=True)
    when = f"in {span}" if left >= 0 else f"{span} ago"
    verdict = _verdict(grade, f"{format_duration(threshold or 0.0, coarse=True)} left", "<=", ">")
    return Evaluation(severity, left, threshold, f"{what} {when} ({_iso(deadline)}) {verdict}")


def _sunset(rule: SunsetRule, view: SignalView, now: float) -> Evaluation:
    return _time_left("Sunset", view.sunset_at, rule, now, announced=True)


def _certificate(rule: CertificateRule, view: SignalView, now: float) -> Evaluation:
    return _time_left("certificate expiry", view.certificate_not_after, rule, now, announced=False)


def _freshness(rule: FreshnessRule, view: SignalView, now: float) -> Evaluation:
    age = view.freshness_age
    if age is None:
        return Evaluation(None, None, None, "no data timestamp yet", known=False)
    grade = severity, threshold, _ = _grade(age, rule.warning, rule.critical, True)
    verdict = _verdict(
        grade, format_duration(threshold or 0.0, coarse=True), "older than", "within"
    )
    return Evaluation(
        severity,
        age,
        threshold,
        f"newest data is {format_duration(age, coarse=True)} old, {verdict}",
    )


def _burn_rate(rule: BurnRateRule, view: SignalView, now: float) -> Evaluation:
    slo = view.slo
    if slo is None:
        return Evaluation(None, None, None, "no slo", known=False)
    counts = {label: view.slo_counts(window) for label, window in BURN_WINDOWS.items()}
    rates = {
        label: None if c.error_ratio is None else c.error_ratio / slo.budget
        for label, c in counts.items()
    }
    judged = []
    for alert in BURN_ALERTS:  # most severe and fastest first
        short, value = counts[alert.short], share(alert, rates)
        if value is None or short.total < rule.min_runs:
            continue  # too few runs in the short window to judge this pair
        judged.append((alert, value))
        if value >= 1 and short.failed >= rule.min_failures:
            summary = f"{_burning(alert, rates)}; {alert.factor:g}x {_acts(alert)}"
            return Evaluation(alert.severity, value * alert.factor, alert.factor, summary)
    objective = f"objective {_percent(slo.objective)}"
    if not judged:
        summary = f"{objective}: fewer than min_runs {rule.min_runs} in every short window"
        return Evaluation(None, None, None, summary, known=False)
    alert, value = nearest(judged)
    held = ""
    if value >= 1:
        failed = counts[alert.short].failed
        held = f"; {alert.short} needs {rule.min_failures} failures ({failed} failed)"
    summary = f"{_burning(alert, rates)}, {objective}: below {alert}{held}"
    return Evaluation(None, value * alert.factor, alert.factor, summary)


def _burning(alert: BurnAlert, rates: Mapping[str, float | None]) -> str:
    long, short = rates[alert.long] or 0.0, rates[alert.short] or 0.0
    if f"{long:.3g}" == f"{short:.3g}":
        return f"burning {long:.3g}x the budget over {alert.long} and {alert.short}"
    return f"burning {long:.3g}x the budget over {alert.long} and {short:.3g}x over {alert.short}"


def _acts(alert: BurnAlert) -> str:
    return "pages" if alert.severity == "critical" else "warns"


def _schema_drift(rule: SchemaDriftRule, view: SignalView, now: float) -> Evaluation:
    drift = view.schema_drift
    if drift is None:  # still learning, or no JSON answer yet
        return Evaluation(None, None, None, "no response shape learned yet", known=False)
    if not drift.drifted:
        new = f" ({len(drift.new)} new fields)" if drift.new else ""
        return Evaluation(None, 0, None, f"the response matches its learned shape{new}")
    summary = f"the response shape drifted: {drift.summary()}"
    return Evaluation(rule.severity, len(drift.changes), None, summary)


def _quota(rule: QuotaRule, view: SignalView, now: float) -> Evaluation:
    quota = view.quota
    if quota is None or quota.remaining is None:
        return Evaluation(None, None, None, "no quota announced")
    if not quota.limit:
        summary = f"quota {quota.remaining:g} left of an unknown limit"
        return Evaluation(None, None, None, summary, known=False)
    share = quota.remaining / quota.limit
    grade = severity, threshold, _ = _grade(share, rule.warning, rule.critical, False)
    verdict = _verdict(grade, _percent(threshold or 0.0), "<=", ">")
    resets = "" if quota.reset_at is None else f", resets {_iso(quota.reset_at)}"
    left = f"{quota.remaining:g} of {quota.limit:g}"
    return Evaluation(
        severity, share, threshold, f"quota {_percent(share)} left ({left}{resets}) {verdict}"
    )


def _quota_exhaustion(rule: QuotaExhaustionRule, view: SignalView, now: float) -> Evaluation:
    forecast = view.quota_forecast(rule.window)
    if forecast is None:
        return Evaluation(None, None, None, "no quota announced")
    where = f"over {format_duration(rule.window)} ({forecast.readings} readings)"
    if forecast.readings < rule.min_readings:
        summary = f"quota spend rate {where}: fewer than min_readings {rule.min_readings}"
        return Evaluation(None, None, None, summary, known=False)
    left = forecast.seconds_left(now)
    if left is None:
        summary = f"quota {forecast.remaining:g} left, not falling {where}"
        return Evaluation(None, None, None, summary)
    span = format_duration(left, coarse=True)
    pace = f"spending {forecast.rate * 60:.3g}/min {where}"
    reset = forecast.reset_at
    if not forecast.before_reset:
        assert reset is not None  # only a known reset can come first
        summary = f"quota would run out in {span} ({pace}), after its reset at {_iso(reset)}"
        return Evaluation(None, left, None, summary)
    grade = severity, threshold, _ = _grade(left, rule.warning, rule.critical, False)
    verdict = _verdict(grade, format_duration(threshold or 0.0, coarse=True), "<=", ">")
    if reset is not None:
        ahead = f"before its reset in {format_duration(max(reset - now, 0.0), coarse=True)}"
    else:
        ahead = "a leaky bucket, no reset" if forecast.leaky else "no reset announced"
    summary = f"quota runs out in {span}, {ahead} ({pace}) {verdict}"
    return Evaluation(severity, left, threshold, summary)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


EVALUATORS: dict[str, Callable[[Any, SignalView, float], Evaluation]] = {
    "error_rate": _error_rate,
    "latency_p95": _latency,
    "rate_limited": _rate_limited,
    "consecutive_failures": _consecutive,
    "deprecation": _deprecation,
    "sunset": _sunset,
    "certificate": _certificate,
    "freshness": _freshness,
    "burn_rate": _burn_rate,
    "schema_drift": _schema_drift,
    "quota": _quota,
    "quota_exhaustion": _quota_exhaustion,
}


def evaluate(name: str, rule: RuleConfig, view: SignalView, now: float) -> Evaluation:
    return EVALUATORS[name](rule, view, now)
