"""Check names interned in the `checks` table: runs and rollups refer to a check by its id."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    Row,
    Select,
    Table,
    TextClause,
    bindparam,
    insert,
    text,
)
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from monitor.storage.schema import CheckRow

CHECKS: Table = CheckRow.__table__  # type: ignore[attr-defined]
# Names in one `IN (...)`: each is a host parameter, of which SQLite takes at most 32,766 in a
# statement (Postgres 65,535), and a list of a few hundred still plans as one key range each.
NAMES_PER_QUERY = 500
M = TypeVar("M", bound=SQLModel)


def batches(only: Collection[str] | None) -> Iterator[list[str] | None]:
    """How a read of the checks named in `only` is split: one statement per item, restricted
    to those names (`name IN (...)`), or a single None, for every check, when `only` is None.

    The one place a read is narrowed to some checks: a takeover or a reload reads what its own
    checks stored, in SQL, and never every check's rows to drop most of them.
    """
    if only is None:
        yield None
        return
    names = sorted(only)
    for start in range(0, len(names), NAMES_PER_QUERY):
        yield names[start : start + NAMES_PER_QUERY]


def by_check(engine: Engine, model: type[M], only: Collection[str] | None = None) -> dict[str, M]:
    """Every row of `model`, a table with one row per check keyed by its `check` column, by
    check name; or those of the checks named in `only` (blocking: call from a thread)."""
    found: dict[str, M] = {}
    with Session(engine) as session:
        for batch in batches(only):
            query = select(model)
            if batch is not None:
                query = query.where(col(model.check).in_(batch))  # type: ignore[attr-defined]
            found.update((row.check, row) for row in session.exec(query))  # type: ignore[attr-defined]
    return found


def narrowed(sql: str, batch: list[str] | None) -> TextClause:
    """`sql`, a query that reads the `checks` table as `c`, for one of `batches`: its
    `{checks}` becomes `c.name IN (...)`, or a condition that always holds for None."""
    if batch is None:
        return text(sql.format(checks="1 = 1"))
    names: BindParameter[list[str]] = bindparam("names", batch, expanding=True)
    return text(sql.format(checks="c.name IN :names")).bindparams(names)


class CheckIds:
    """The name <-> id lookup, shared by the store and its rollups."""

    def __init__(self) -> None:
        # Only ever filled from committed rows (ids are never reused).
        self._ids: dict[str, int] = {}

    def lookup(
        self, connection: Connection, names: Iterable[str], create: bool = False
    ) -> dict[str, int]:
        """Ids of `names` that have one (with `create`, all: new ones are inserted).

        Uncommitted ids are returned but not cached: the caller's transaction may roll back;
        it passes them to `committed` once it has committed.
        """
        found = {name: self._ids[name] for name in names if name in self._ids}
        missing = [name for name in names if name not in found]
        if missing:
            query = sa_select(CHECKS.c.name, CHECKS.c.id).where(CHECKS.c.name.in_(missing))
            stored = {row[0]: int(row[1]) for row in connection.execute(query)}
            self._ids.update(stored)
            found.update(stored)
            new = sorted(name for name in missing if name not in stored)
            if create and new:
                connection.execute(insert(CHECKS), [{"name": name} for name in new])
                query = sa_select(CHECKS.c.name, CHECKS.c.id).where(CHECKS.c.name.in_(new))
                found.update((row[0], int(row[1])) for row in connection.execute(query))
        return found

    def committed(self, ids: dict[str, int]) -> None:
        self._ids.update(ids)

    def names(self, connection: Connection, only: Collection[str] | None = None) -> dict[int, str]:
        """Every check's name by id (or of those named in `only` that have one), read afresh."""
        found: dict[int, str] = {}
        for batch in batches(only):
            query = sa_select(CHECKS)
            if batch is not None:
                query = query.where(CHECKS.c.name.in_(batch))
            found.update((int(row[0]), row[1]) for row in connection.execute(query))
        return found

    def stream(
        self,
        engine: Engine,
        query: Callable[[int], Select[*tuple[Any, ...]]],
        only: Collection[str] | None = None,
    ) -> Iterator[tuple[str, Row[*tuple[Any, ...]]]]:
        """(name, row) of `query(check_id)` for every check (or those named in `only`), by
        name, rows in query order.

        One short query per check, streamed: reading a week of history never holds it all in
        memory, and each query is a key range of one check.
        """
        with engine.connect() as connection:
            names = self.names(connection, only)
            streaming = connection.execution_options(stream_results=True)
            for check_id, name in sorted(names.items(), key=lambda item: item[1]):
                for row in streaming.execute(query(check_id)):
                    yield name, row
