"""Throttle pauses in the database, one row per throttle key, so a restart keeps them.

Otherwise a restart would forget a Retry-After, a backoff streak or an exhausted quota and send
straight into the provider's pause: the 429 the monitor was asked to avoid.
"""

from __future__ import annotations

from sqlalchemy import Engine, Table
from sqlmodel import Field, Session, SQLModel, select

from monitor.storage.backend import upsert


class PauseRow(SQLModel, table=True):
    __tablename__ = "pauses"

    key: str = Field(primary_key=True)  # check:NAME or provider:NAME (engine.throttle_key)
    paused_until: float = 0.0  # unix seconds; in the past once the pause is over
    reason: str | None = None  # retry_after | backoff | quota
    streak: int = 0  # consecutive 429s


PAUSES: Table = PauseRow.__table__  # type: ignore[attr-defined]


def load_pauses(engine: Engine) -> list[PauseRow]:
    """Every persisted pause (blocking: call from a thread, after Store.open)."""
    with Session(engine) as session:
        return list(session.exec(select(PauseRow)).all())


def save_pause(engine: Engine, row: PauseRow) -> None:
    """Persist one key's pause (blocking: call on the writer's thread)."""
    with engine.begin() as connection:
        upsert(connection, PAUSES, [row.model_dump()])
