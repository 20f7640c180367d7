"""Silences and maintenance windows: alerts that match are tracked but not sent.

Two sources: `silences:` in the config (one-off or weekly) and runtime silences that
`intmon silence` writes to the database, which the daemon reloads (`load_active`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from sqlalchemy import Engine, update
from sqlmodel import Field as SQLField
from sqlmodel import Session, SQLModel, col, select

from checks.base import Model

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
        if not _matches(self.checks, check):
            return False
        if self.weekly is not None:
            return self.weekly.covers(now)
        start = self.start.timestamp() if self.start else float("-inf")
        return self.end is not None and start <= now < self.end.timestamp()


class SilenceRow(SQLModel, table=True):
    __tablename__ = "silences"

    id: int | None = SQLField(default=None, primary_key=True)
    pattern: str
    starts_at: float
    until: float
    comment: str = ""
    created_at: float
    expired_at: float | None = None  # set when expired by hand before `until`


def _matches(patterns: Iterable[str], check: str) -> bool:
    return any(fnmatch.fnmatchcase(check, pattern) for pattern in patterns)


@dataclass(frozen=True)
class Silences:
    config: tuple[SilenceConfig, ...] = ()
    runtime: tuple[SilenceRow, ...] = ()

    def is_silenced(self, check: str, now: float) -> bool:
        if any(s.covers(check, now) for s in self.config):
            return True
        return any(
            r.expired_at is None
            and r.starts_at <= now < r.until
            and fnmatch.fnmatchcase(check, r.pattern)
            for r in self.runtime
        )


# ---- runtime silences (`intmon silence`) -------------------------------------------------


def add_silence(
    engine: Engine, pattern: str, until: float, now: float, comment: str = ""
) -> SilenceRow:
    if until <= now:
        raise ValueError("a silence must end in the future")
    row = SilenceRow(pattern=pattern, starts_at=now, until=until, comment=comment, created_at=now)
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        session.commit()
    return row


def list_silences(engine: Engine, now: float, include_ended: bool = False) -> list[SilenceRow]:
    query = select(SilenceRow).order_by(col(SilenceRow.until))
    if not include_ended:
        query = query.where(col(SilenceRow.until) > now, col(SilenceRow.expired_at).is_(None))
    with Session(engine) as session:
        return list(session.exec(query))


def load_active(engine: Engine, now: float) -> tuple[SilenceRow, ...]:
    return tuple(list_silences(engine, now))


def expire_silence(engine: Engine, silence_id: int, now: float) -> bool:
    """End a silence now. False when there is no such silence or it had already ended."""
    statement = (
        update(SilenceRow)
        .where(col(SilenceRow.id) == silence_id, col(SilenceRow.expired_at).is_(None))
        .where(col(SilenceRow.until) > now)
        .values(expired_at=now)
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1
