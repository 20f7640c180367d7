"""Pushed heartbeats in the database, one row per check, so a restart keeps the last one.

Otherwise every restart would either forget a job that stopped reporting or, worse, report it
stale until it next runs.
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import Engine, Table
from sqlmodel import Field, Session, SQLModel, select

from checks.heartbeats import Heartbeat
from monitor.storage.backend import BIG_INTEGER, upsert


class HeartbeatRow(SQLModel, table=True):
    __tablename__ = "heartbeats"

    check: str = Field(primary_key=True)
    last_success: float | None = None  # unix seconds
    count: int | None = Field(default=None, sa_type=BIG_INTEGER)  # rows the last run moved
    last_failure: float | None = None
    message: str | None = None  # what the last failed run said about itself


HEARTBEATS: Table = HeartbeatRow.__table__  # type: ignore[attr-defined]


def load_heartbeats(engine: Engine) -> dict[str, Heartbeat]:
    """Every persisted heartbeat (blocking: call from a thread, after Store.open)."""
    with Session(engine) as session:
        return {
            row.check: Heartbeat(row.last_success, row.count, row.last_failure, row.message)
            for row in session.exec(select(HeartbeatRow))
        }


def load_heartbeat(engine: Engine, check: str) -> Heartbeat | None:
    """One check's persisted heartbeat: a push may have reached another replica."""
    with Session(engine) as session:
        row = session.get(HeartbeatRow, check)
    if row is None:
        return None
    return Heartbeat(row.last_success, row.count, row.last_failure, row.message)


def save_heartbeat(engine: Engine, check: str, beat: Heartbeat, failed: bool = False) -> None:
    """Persist what one push changed of a check's heartbeat (blocking: call from a thread).
    Only that half of the row: with several replicas, this one's idea of the other half may be
    older than what another replica stored."""
    changed = ("last_failure", "message") if failed else ("last_success", "count")
    with engine.begin() as connection:
        upsert(connection, HEARTBEATS, [{"check": check, **asdict(beat)}], only=changed)
