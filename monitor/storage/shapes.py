"""Learned response shapes in the database, one row per check, so a restart keeps them.

Otherwise every restart would learn the shape again from whatever the API answers now, and a
drift would pass for the normal shape. Shapes are stored as JSON text (monitor.core.jsonshape)
and are bounded (500 paths), so a row stays small.

The daemon writes `learned` while it learns and then only `observed`; `intmon schema
--accept` writes `learned` and `accepted_at` from its own process, and the daemon takes that
up at the check's next run. Neither write overwrites what the other owns.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Engine, Table, update
from sqlmodel import Field, Session, SQLModel, col

from monitor.storage.backend import upsert
from monitor.storage.checkids import by_check


class ShapeRow(SQLModel, table=True):
    __tablename__ = "shapes"

    check: str = Field(primary_key=True)
    learned: str | None = None  # JSON (monitor.core.jsonshape.Shape.to_json)
    samples: int = 0  # bodies learned from
    observed: str | None = None  # the last 2xx JSON body's shape
    observed_since: float | None = None  # unix seconds it was first seen
    accepted_at: float | None = None  # unix seconds of the last accept


SHAPES: Table = ShapeRow.__table__  # type: ignore[attr-defined]


def load_shapes(engine: Engine, only: Collection[str] | None = None) -> dict[str, ShapeRow]:
    """Every stored shape, or those of the checks named in `only` (blocking: call from a
    thread, after Store.open)."""
    return by_check(engine, ShapeRow, only)


def load_shape(engine: Engine, check: str) -> ShapeRow | None:
    with Session(engine) as session:
        return session.get(ShapeRow, check)


def save_learning(engine: Engine, row: ShapeRow) -> None:
    """The whole row, while the daemon learns (blocking: on the writer's thread)."""
    with engine.begin() as connection:
        upsert(connection, SHAPES, [row.model_dump()])


def save_observed(engine: Engine, check: str, observed: str, since: float) -> None:
    """Only the observed shape: a learned one accepted meanwhile stays as it was."""
    row = ShapeRow(check=check, observed=observed, observed_since=since).model_dump()
    with engine.begin() as connection:
        upsert(connection, SHAPES, [row], only=["observed", "observed_since"])


def save_accepted(engine: Engine, check: str, learned: str, samples: int, at: float) -> None:
    """An accepted shape: the learned one and when (from the daemon or `intmon schema`)."""
    with Session(engine) as session:
        session.execute(
            update(ShapeRow)
            .where(col(ShapeRow.check) == check)
            .values(learned=learned, samples=samples, accepted_at=at)
        )
        session.commit()
