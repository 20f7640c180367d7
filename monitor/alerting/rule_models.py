"""Config models of the alert rules: thresholds, pending time, resolve hysteresis, reminders.

Each rule's model validates one merged `alerts.<rule>` mapping; rules.py decides which rules a
check gets and evaluates them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from checks.base import Model
from monitor.core.units import Duration, PositiveDuration, Ratio, format_duration, parse_duration

Severity = Literal["warning", "critical"]
DAY = 86400.0


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
            raise ValueError(f"{value!r}: a relative latency threshold must exceed 1x")
        return Bound(factor=factor)
    try:
        return Bound(seconds=parse_duration(value))
    except ValueError:
        raise ValueError(f"{value!r} is neither a duration (800ms) nor a factor (2x)") from None


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


class LatencyRule(ThresholdRule):
    window: PositiveDuration = 900.0
    warning: LatencyBound | None = Bound(factor=2.0)
    critical: LatencyBound | None = Bound(factor=5.0)
    min_runs: int = Field(default=3, ge=1)


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


_HIGHER_IS_WORSE: dict[type[Model], bool] = {
    ErrorRateRule: True,
    LatencyRule: True,
    RateLimitedRule: True,
    ConsecutiveFailuresRule: True,
    FreshnessRule: True,
    SunsetRule: False,
    CertificateRule: False,
}


class AlertConfigError(ValueError):
    """Every problem found in one check's `alerts:` (or `defaults.alerts`), with key paths
    relative to that mapping, so the config loader can point at file lines."""

    def __init__(self, issues: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.issues = issues
        super().__init__("; ".join(f"{_dotted(path)}: {message}" for path, message in issues))


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path)


# Thresholds that are spans of time, shown as durations in messages.
_TIME_RULES = (SunsetRule, CertificateRule, FreshnessRule)
