"""Config of the alert rules: their models and which rules each check gets.

Each rule's model validates one merged `alerts.<rule>` mapping (thresholds, pending time, resolve
hysteresis, reminders); `parse_alerts` layers built-ins, `defaults.alerts` and a check's own
`alerts:`. How a rule is evaluated is monitor.alerting.rules' business.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from monitor.core.errors import IntmonError
from monitor.core.model import Model
from monitor.core.units import (
    DAY,
    Duration,
    PositiveDuration,
    Ratio,
    brief,
    format_duration,
    parse_duration,
)

Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class Bound:
    """A latency threshold: absolute seconds, or a factor of the check's baseline p95."""

    seconds: float | None = None
    factor: float | None = None

    def resolve(self, baseline: float | None) -> float | None:
        if self.factor is None:
            return self.seconds
        return None if baseline is None else baseline * self.factor

    def __str__(self) -> str:
        if self.factor is not None:
            return f"{self.factor:g}x baseline"
        return format_duration(self.seconds or 0.0)


_FACTOR = re.compile(r"(\d+(?:\.\d+)?)\s*x")


def _parse_bound(value: Any) -> Any:
    if isinstance(value, Bound) or value is None:
        return value
    if isinstance(value, str) and (match := _FACTOR.fullmatch(value.strip())):
        factor = float(match.group(1))
        if factor <= 1:
            raise ValueError(f"{brief(value)}: a relative latency threshold must exceed 1x")
        if not math.isfinite(factor):  # 400 digits make an infinite float
            raise ValueError(f"{brief(value)}: not a finite factor")
        return Bound(factor=factor)
    try:
        return Bound(seconds=parse_duration(value))
    except ValueError:
        raise ValueError(
            f"{brief(value)} is neither a duration (800ms) nor a factor (2x)"
        ) from None


LatencyBound = Annotated[Bound, BeforeValidator(_parse_bound)]


class RuleConfig(Model):
    """Fields every rule has. `for` is a Python keyword, hence the alias."""

    for_: Duration = Field(default=0.0, alias="for")
    resolve_after: int = Field(default=2, ge=1)
    keep_firing_for: Duration | None = None
    repeat: Duration = 4 * 3600.0  # 0 turns reminders off
    enabled: bool = True


class ThresholdRule(RuleConfig):
    """A rule with a warning and/or critical threshold, ordered by `_HIGHER_IS_WORSE`."""

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdRule:
        warning, critical = getattr(self, "warning", None), getattr(self, "critical", None)
        if warning is None and critical is None:
            raise ValueError("set warning, critical or both (or enabled: false)")
        if warning is None or critical is None:
            return self
        (w_relative, w), (c_relative, c) = _comparable(warning), _comparable(critical)
        if w_relative != c_relative:
            return self  # 2x baseline vs 800ms: which is worse depends on the baseline
        worse = c >= w if _HIGHER_IS_WORSE[type(self)] else c <= w
        if not worse:
            show = format_duration if type(self) in _TIME_RULES else str
            raise ValueError(
                f"critical ({show(critical)}) is less severe than warning ({show(warning)})"
            )
        return self


def _comparable(value: Any) -> tuple[bool, float]:
    if isinstance(value, Bound):
        return (True, value.factor) if value.factor is not None else (False, value.seconds or 0.0)
    return False, float(value)


class ErrorRateRule(ThresholdRule):
    window: PositiveDuration = 300.0
    warning: Annotated[Ratio, Field(gt=0)] | None = 0.01
    critical: Annotated[Ratio, Field(gt=0)] | None = 0.05
    min_runs: int = Field(default=3, ge=1)
    # Critical also needs this many failed runs in the window: one failed probe among a few
    # runs is a high ratio but not yet an outage, so it may warn and never pages critical.
    min_failures: int = Field(default=3, ge=1)


class LatencyRule(ThresholdRule):
    window: PositiveDuration = 900.0
    warning: LatencyBound | None = Bound(factor=2.0)
    critical: LatencyBound | None = Bound(factor=5.0)
    min_runs: int = Field(default=3, ge=1)
    # Critical also needs this many runs at or above the critical latency: over a few runs
    # the p95 is about the slowest one, so one slow probe alone would otherwise page.
    min_slow_runs: int = Field(default=3, ge=1)


class RateLimitedRule(ThresholdRule):
    window: PositiveDuration = 900.0
    warning: Annotated[int, Field(ge=1)] | None = 1
    critical: Annotated[int, Field(ge=1)] | None = None


class ConsecutiveFailuresRule(ThresholdRule):
    warning: Annotated[int, Field(ge=1)] | None = None
    critical: Annotated[int, Field(ge=1)] | None = None


class DeprecationRule(RuleConfig):
    severity: Severity = "warning"


class SunsetRule(ThresholdRule):
    warning: Duration | None = 90 * DAY  # time left before the announced Sunset
    critical: Duration | None = 14 * DAY


class CertificateRule(ThresholdRule):
    warning: Duration | None = 21 * DAY  # time left before notAfter
    critical: Duration | None = 7 * DAY


class FreshnessRule(ThresholdRule):
    warning: PositiveDuration | None = None  # age of the newest data
    critical: PositiveDuration | None = None  # defaults to the check's max_age


class BurnRateRule(RuleConfig):
    """The SRE workbook's multi-window, multi-burn-rate alerts on the check's `slo:` (the pairs
    are monitor.signals.slo.BURN_ALERTS). An alert's short window must also hold `min_runs`
    runs of which `min_failures` failed, as error_rate's critical needs: at one run a minute
    a single failed probe is a 20% error ratio over 5m, 200x a 99.9% budget."""

    min_runs: int = Field(default=3, ge=1)
    min_failures: int = Field(default=3, ge=1)


class SchemaDriftRule(RuleConfig):
    severity: Severity = "warning"


class QuotaRule(ThresholdRule):
    warning: Annotated[Ratio, Field(gt=0)] | None = 0.2  # share of the limit remaining
    critical: Annotated[Ratio, Field(gt=0)] | None = 0.05


class QuotaExhaustionRule(ThresholdRule):
    # Time left until the quota runs out at the current spend rate; it only counts while that
    # comes before the quota's reset (after it, the reset rescues the quota first).
    warning: Duration | None = 3600.0
    critical: Duration | None = 900.0
    window: Annotated[PositiveDuration, Field(le=DAY)] = 900.0  # readings the rate is fitted to
    min_readings: int = Field(default=3, ge=2)


_HIGHER_IS_WORSE: dict[type[Model], bool] = {
    ErrorRateRule: True,
    LatencyRule: True,
    RateLimitedRule: True,
    ConsecutiveFailuresRule: True,
    FreshnessRule: True,
    SunsetRule: False,
    CertificateRule: False,
    QuotaRule: False,
    QuotaExhaustionRule: False,
}


class AlertConfigError(IntmonError):
    """Every problem found in one check's `alerts:` (or `defaults.alerts`), with key paths
    relative to that mapping, so the config loader can point at file lines.

    Not a ConfigError itself: it knows no file or line. The loader turns each issue into a
    ConfigIssue. Raised by `parse_alerts`, never inside a pydantic validator, so it need not be
    a ValueError.
    """

    def __init__(self, issues: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.issues = issues
        super().__init__("; ".join(f"{_dotted(path)}: {message}" for path, message in issues))


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path)


# Thresholds that are spans of time, shown as durations in messages.
_TIME_RULES = (SunsetRule, CertificateRule, FreshnessRule, QuotaExhaustionRule)


# ---- the registry: which rules a check gets ------------------------------------------------------


def _everywhere(check_type: str) -> bool:
    return True


def _http_signals(check_type: str) -> bool:
    # Headers, latency and certificates come from HTTP-speaking checks; every type except
    # freshness speaks HTTP to its target (check types added later are assumed to as well).
    return check_type != "freshness"


def _freshness_only(check_type: str) -> bool:
    return check_type == "freshness"


@dataclass(frozen=True)
class RuleType:
    """A rule's place in the registry.

    `explains`: the failure classes a firing rule accounts for (a cause rule: 429s are what
    rate_limited is about). `generic`: the rule judges failures or slowness whatever their
    cause, so a firing cause rule of the same check inhibits it for the failures it explains
    (see monitor.config.alerting.InhibitRule and the built-ins `builtin_inhibitions`).
    """

    model: type[RuleConfig]
    applies: Callable[[str], bool]
    on_by_default: bool  # False: only where `alerts:` or `defaults.alerts` names it
    explains: tuple[str, ...] = ()
    generic: bool = False


# Each rule's evaluation is in monitor.alerting.rules.EVALUATORS, under the same name.
RULES: dict[str, RuleType] = {
    "error_rate": RuleType(ErrorRateRule, _everywhere, True, generic=True),
    "latency_p95": RuleType(LatencyRule, _http_signals, True, generic=True),
    "rate_limited": RuleType(RateLimitedRule, _http_signals, True, explains=("rate_limited",)),
    "consecutive_failures": RuleType(ConsecutiveFailuresRule, _everywhere, False, generic=True),
    # A retired API answers 410 Gone or 404: the announcement is the cause of those.
    "deprecation": RuleType(DeprecationRule, _http_signals, True, explains=("http_4xx",)),
    "sunset": RuleType(SunsetRule, _http_signals, True, explains=("http_4xx",)),
    "certificate": RuleType(CertificateRule, _http_signals, True, explains=("tls",)),
    # A freshness check fails as `assertion` exactly when its data is too old or too few.
    "freshness": RuleType(FreshnessRule, _freshness_only, True, explains=("assertion",)),
    # On for checks with an `slo:` (parse_alerts). Generic: it judges failures of any cause, so
    # a firing cause rule leaves out what it explains; the budget itself counts every failure.
    "burn_rate": RuleType(BurnRateRule, _everywhere, True, generic=True),
    # A field that vanished or changed type is what breaks `expect.json` assertions. It judges
    # only checks whose answers are JSON: others never learn a shape and it never fires.
    "schema_drift": RuleType(SchemaDriftRule, _http_signals, True, explains=("assertion",)),
    # Silent for answers without quota headers, so on by default: the provider's own counter
    # needs no tuning, and a drained quota is the cause of the 429s that follow.
    "quota": RuleType(QuotaRule, _http_signals, True, explains=("rate_limited",)),
    "quota_exhaustion": RuleType(
        QuotaExhaustionRule, _http_signals, True, explains=("rate_limited",)
    ),
}
# Rules that need a check's `slo:`; without one they are off, and naming them is an error.
NEEDS_SLO = frozenset({"burn_rate"})


def generic_rules() -> tuple[str, ...]:
    return tuple(name for name, kind in RULES.items() if kind.generic)


def parse_alerts(
    raw: dict[str, Any],
    defaults: dict[str, Any],
    check_type: str,
    max_age: float | None = None,
    slo: bool = False,
) -> dict[str, RuleConfig]:
    """The enabled rules of one check: built-ins < `defaults.alerts` < the check's `alerts:`.

    A layer that sets `warning` or `critical` replaces both thresholds below it, so a check
    that says `critical: 10%` does not inherit a default warning that might exceed it.
    Raises AlertConfigError (paths relative to the check's `alerts:`).
    """
    issues: list[tuple[tuple[str | int, ...], str]] = []
    for name in raw:
        if name not in RULES:
            issues.append(((name,), f"unknown alert rule (known: {', '.join(RULES)})"))
        elif not RULES[name].applies(check_type):
            issues.append(((name,), f"does not apply to {check_type} checks"))
        elif name in NEEDS_SLO and not slo:
            issues.append(((name,), "needs the check's slo: (e.g. slo: {objective: 99.9%})"))
    rules: dict[str, RuleConfig] = {}
    for name, kind in RULES.items():
        if not kind.applies(check_type) or (name in NEEDS_SLO and not slo):
            continue
        merged: dict[str, Any] | None = {} if kind.on_by_default else None
        for layer in (defaults, raw):
            if name in layer:
                merged = _overlay(merged, layer[name], name, issues)
        if merged is None:
            continue
        if name == "freshness" and "critical" not in merged:
            if max_age is None and "warning" not in merged:
                issues.append(((name,), "set warning or critical (the check has no max_age)"))
                continue
            merged = {**merged, "critical": max_age}
        try:
            rule = kind.model.model_validate(merged)
        except ValidationError as exc:
            issues.extend(((name, *e["loc"]), _message(e["msg"])) for e in exc.errors())
            continue
        if rule.enabled:
            rules[name] = rule
    if issues:
        raise AlertConfigError(issues)
    return rules


def validate_defaults(defaults: dict[str, Any]) -> None:
    """Check `defaults.alerts` on its own, so its errors point at it rather than at a check."""
    issues: list[tuple[tuple[str | int, ...], str]] = []
    for name, value in defaults.items():
        if name not in RULES:
            issues.append(((name,), f"unknown alert rule (known: {', '.join(RULES)})"))
            continue
        merged = _overlay({}, value, name, issues)
        if merged is None:
            continue
        if name == "freshness" and not {"warning", "critical"} & merged.keys():
            continue  # the check's max_age fills it in
        try:
            RULES[name].model.model_validate(merged)
        except ValidationError as exc:
            issues.extend(((name, *e["loc"]), _message(e["msg"])) for e in exc.errors())
    if issues:
        raise AlertConfigError(issues)


def _overlay(
    base: dict[str, Any] | None,
    value: Any,
    name: str,
    issues: list[tuple[tuple[str | int, ...], str]],
) -> dict[str, Any] | None:
    if value is False or value is None:
        return {**(base or {}), "enabled": False}
    if value is True:
        return {**(base or {}), "enabled": True}
    if not isinstance(value, dict):
        issues.append(((name,), "must be a mapping of settings, true or false"))
        return base
    merged = dict(base or {})
    if {"warning", "critical"} & value.keys():
        # The layer's thresholds are the pair; the one it leaves out is off, not inherited.
        merged.update({"warning": None, "critical": None})
    merged.update(value)
    return merged


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")
