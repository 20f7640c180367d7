"""A check's service level objective: `slo: {objective: 99.9%, window: 30d}`.

Not a check type: a field every check may have (and `defaults:` may set). The SLI is the share
of runs that passed; what the objective leaves is the error budget that `burn_rate` watches.
"""

from __future__ import annotations

from pydantic import field_validator

from monitor.core.model import Model
from monitor.core.units import DAY, HOUR, Ratio, format_duration, parse_duration

MIN_WINDOW = HOUR
# Hourly buckets hold the window in memory (24 per day per check): 90 days is 2,160.
MAX_WINDOW = 90 * DAY


class SloConfig(Model):
    """`objective`: the share of runs that must pass, as a percentage (`99.9%`) or a ratio
    (`0.999`), strictly between 0 and 100%. `window`: the span the budget is counted over."""

    objective: Ratio
    window: float = 30 * DAY

    @field_validator("objective")
    @classmethod
    def _leaves_a_budget(cls, value: float) -> float:
        if value >= 1:
            raise ValueError("100% leaves no error budget: use a share below it, e.g. 99.9%")
        if value <= 0:
            raise ValueError("must be above 0%, e.g. 99.9%")
        return value

    @field_validator("window", mode="before")
    @classmethod
    def _span(cls, value: object) -> float:
        seconds = parse_duration(value)
        if not MIN_WINDOW <= seconds <= MAX_WINDOW:
            raise ValueError(
                f"{format_duration(seconds)} is outside {format_duration(MIN_WINDOW)} to "
                f"{format_duration(MAX_WINDOW, coarse=True)}"
            )
        return seconds

    @property
    def budget(self) -> float:
        """The share of runs that may fail: 0.001 for 99.9%."""
        return 1.0 - self.objective
