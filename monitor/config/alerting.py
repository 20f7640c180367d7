"""Config of the `alerting:` and `silences:` sections, and what makes a notifier URL valid."""

from __future__ import annotations

import contextlib
import fnmatch
import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apprise
from pydantic import AfterValidator, Field, field_validator, model_validator

from checks.base import ERROR_CLASSES
from monitor.config.rules import RULES, generic_rules
from monitor.core.model import Model
from monitor.core.units import Duration


def _cause_rule(value: str) -> str:
    if value not in RULES:
        raise ValueError(f"unknown alert rule {value!r} (known: {', '.join(RULES)})")
    if RULES[value].generic:
        raise ValueError(f"{value} judges failures of any cause: it cannot be a source")
    return value


def _generic_rule(value: str) -> str:
    if value not in generic_rules():
        raise ValueError(
            f"{value!r} cannot be inhibited (rules that can: {', '.join(generic_rules())})"
        )
    return value


def _error_class(value: str) -> str:
    if value not in ERROR_CLASSES:
        raise ValueError(f"unknown error class {value!r} (known: {', '.join(ERROR_CLASSES)})")
    return value


# An item of a list of error classes, validated one by one so an error names its index.
ErrorClass = Annotated[str, AfterValidator(_error_class)]


class InhibitRule(Model):
    """While `source` is pending or firing for a check, the `target` rules of the same check
    leave out the failures of `classes` that happened until then: one problem, one page.

    Like Alertmanager's inhibit_rules with `equal: [check]`. Sources are cause rules and
    targets the generic rules, so a source is always judged before the rules it inhibits.
    Validated item by item, so an error points at `target[1]` and its line.
    """

    source: Annotated[str, AfterValidator(_cause_rule)]
    target: list[Annotated[str, AfterValidator(_generic_rule)]] = Field(
        default_factory=lambda: list(generic_rules()), min_length=1
    )
    # Empty: the classes the source explains (monitor.config.rules.RULES).
    classes: list[ErrorClass] = Field(default_factory=list)

    @property
    def explained(self) -> tuple[str, ...]:
        return tuple(self.classes) or RULES[self.source].explains


def builtin_inhibitions() -> list[InhibitRule]:
    """Every cause rule inhibits every generic rule for the failure classes it explains."""
    return [InhibitRule(source=name) for name, kind in RULES.items() if kind.explains]


class AlertingSettings(Model):
    """The top-level `alerting:` section: how notifications are grouped and delivered."""

    # FIRINGs of one check, or of one provider, within this go out as one message
    group_wait: Duration = 30.0
    expire_after: Duration = Field(default=24 * 3600.0, gt=0)  # give up delivering after this
    send_timeout: Duration = Field(default=60.0, gt=0)  # one Apprise call, all its URLs
    # None: the built-ins; a list replaces them (`inhibit: []` turns inhibition off).
    inhibit: list[InhibitRule] | None = None

    @property
    def inhibitions(self) -> list[InhibitRule]:
        return builtin_inhibitions() if self.inhibit is None else self.inhibit


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Weekly(Model):
    """Every listed day from `start` to `end` local time; an `end` at or before `start`
    runs past midnight into the next day."""

    days: list[Weekday] = Field(min_length=1)
    start: time
    end: time
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use e.g. UTC, Europe/Berlin)") from None
        return value

    def covers(self, now: float) -> bool:
        zone = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(now, zone)
        length = _minutes(self.end) - _minutes(self.start)
        if length <= 0:
            length += 24 * 60
        # A window that began yesterday may still be open: look at today's and yesterday's.
        for back in (0, 1):
            day = (local - timedelta(days=back)).date()
            if WEEKDAYS[day.weekday()] not in self.days:
                continue
            opens = datetime.combine(day, self.start, zone)
            if opens <= local < opens + timedelta(minutes=length):
                return True
        return False


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


class SilenceConfig(Model):
    checks: list[str] = Field(min_length=1)  # glob patterns on check names
    start: datetime | None = None
    end: datetime | None = None
    weekly: Weekly | None = None
    comment: str = ""

    @field_validator("checks", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A timestamp without a zone is read as UTC, the zone the daemon stores and shows.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SilenceConfig:
        if self.weekly is not None and (self.start or self.end):
            raise ValueError("use either start/end or weekly, not both")
        if self.weekly is None and self.end is None:
            raise ValueError("set end (with an optional start) or weekly")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def covers(self, check: str, now: float) -> bool:
        if not matches(self.checks, check):
            return False
        if self.weekly is not None:
            return self.weekly.covers(now)
        start = self.start.timestamp() if self.start else float("-inf")
        return self.end is not None and start <= now < self.end.timestamp()


def matches(patterns: Iterable[str], check: str) -> bool:
    return any(fnmatch.fnmatchcase(check, pattern) for pattern in patterns)


@contextlib.contextmanager
def quiet_plugin_loading() -> Iterator[None]:
    with warnings.catch_warnings():
        # Apprise's email plugin imports the stdlib `imghdr`, deprecated since 3.11, while
        # it loads its plugins on the first `add`. Not ours to fix; everything else warns.
        warnings.filterwarnings(
            "ignore", message="'imghdr' is deprecated", category=DeprecationWarning
        )
        yield


def apprise_rejects(url: str) -> bool:
    """True if Apprise cannot parse `url` (unknown scheme, missing parts): a config error."""
    with quiet_plugin_loading():
        return apprise.Apprise.instantiate(url) is None
