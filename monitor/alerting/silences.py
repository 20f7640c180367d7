"""Silences and maintenance windows: alerts that match are tracked but not sent.

Two sources: `silences:` in the config (one-off or weekly) and runtime silences that
`intmon silence` writes to the database, which the daemon reloads (`load_active`) every 15 s
and before it commits a page, so a new silence holds at once on every replica.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from sqlalchemy import Engine, update
from sqlmodel import Field as SQLField
from sqlmodel import Session, SQLModel, col, select

from monitor.config.alerting import SilenceConfig


class SilenceRow(SQLModel, table=True):
    __tablename__ = "silences"

    id: int | None = SQLField(default=None, primary_key=True)
    pattern: str
    starts_at: float
    until: float
    comment: str = ""
    created_at: float
    expired_at: float | None = None  # set when expired by hand before `until`


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
    # Direct: only `intmon silence` writes silences, from its own process, without a writer.
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
    # Direct: only `intmon silence` writes silences, from its own process, without a writer.
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1
