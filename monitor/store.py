"""History in SQLite (or Postgres) through SQLModel. Synchronous; the writer and the API
call it from worker threads so the event loop never waits on disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Index, and_, event, func, insert
from sqlalchemy import select as sa_select
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

SCHEMA_VERSION = 1


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_check_ts", "check", "ts"),)

    id: int | None = Field(default=None, primary_key=True)
    check: str
    ts: float  # unix seconds when the run started
    ok: bool
    error_class: str | None = None
    status: int | None = None
    latency: float | None = None  # seconds
    reason: str = ""
    signals: str = "{}"  # small JSON object


class DeprecationRow(SQLModel, table=True):
    """The latest deprecation announcement per check, with when it was first and last seen."""

    __tablename__ = "deprecations"

    check: str = Field(primary_key=True)
    first_seen: float
    last_seen: float
    deprecated_at: float | None = None
    sunset_at: float | None = None
    links: str = "[]"  # JSON list: the migration guide
    sunset_links: str = "[]"
    message: str | None = None
    active: bool = True


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"

    key: str = Field(primary_key=True)
    value: str


@dataclass(frozen=True)
class RunRecord:
    """One run as handed to the writer: plain data, already redacted."""

    check: str
    ts: float
    ok: bool
    error_class: str | None
    status: int | None
    latency: float | None
    reason: str
    signals: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ts": self.ts,
            "ok": self.ok,
            "error_class": self.error_class,
            "status": self.status,
            "latency": self.latency,
            "reason": self.reason,
            "signals": json.dumps(self.signals, separators=(",", ":"), default=str),
        }


class SchemaError(Exception):
    pass


def _sqlite_pragmas(busy_timeout: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the status API read while the writer writes; NORMAL is durable across a
        # crash of the process (only a power loss can lose the last commits).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    return on_connect


class Store:
    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout))

    def open(self) -> None:
        """Create the schema if needed and check its version marker."""
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            row = session.get(MetaRow, "schema_version")
            if row is None:
                session.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
                session.commit()
            elif int(row.value) > SCHEMA_VERSION:
                raise SchemaError(
                    f"database schema version {row.value} is newer than this intmon "
                    f"understands ({SCHEMA_VERSION}); upgrade intmon"
                )

    def close(self) -> None:
        self.engine.dispose()

    def write_runs(self, records: list[RunRecord]) -> None:
        """One transaction for the whole batch."""
        if not records:
            return
        with self.engine.begin() as connection:
            connection.execute(insert(RunRow), [r.as_row() for r in records])

    def write_deprecations(self, rows: list[DeprecationRow]) -> None:
        if not rows:
            return
        with Session(self.engine) as session:
            for row in rows:
                session.merge(row)
            session.commit()

    def deprecations(self) -> dict[str, DeprecationRow]:
        with Session(self.engine) as session:
            return {row.check: row for row in session.exec(select(DeprecationRow))}

    def recent_runs(self, since: float) -> list[tuple[str, float, bool, float | None, int | None]]:
        """(check, ts, ok, latency, status) of every run since `since`, oldest first."""
        runs = RunRow.__table__.c  # type: ignore[attr-defined]
        query = (
            sa_select(runs.check, runs.ts, runs.ok, runs.latency, runs.status)
            .where(runs.ts >= since)
            .order_by(runs.ts)
        )
        with self.engine.connect() as connection:
            return [(r[0], r[1], bool(r[2]), r[3], r[4]) for r in connection.execute(query)]

    def healthy_latencies(self, since: float) -> Iterator[tuple[str, float, float]]:
        """(check, ts, latency) of every passing run since `since`, by check then time.

        Streamed, so seeding baselines from a week of history never holds it all in memory.
        """
        runs = RunRow.__table__.c  # type: ignore[attr-defined]
        query = (
            sa_select(runs.check, runs.ts, runs.latency)
            .where(runs.ts >= since, runs.ok.is_(True), runs.latency.is_not(None))
            .order_by(runs.check, runs.ts)
        )
        with self.engine.connect() as connection:
            for row in connection.execution_options(stream_results=True).execute(query):
                yield row[0], row[1], row[2]

    def consecutive_failures(self) -> dict[str, int]:
        """Per check, how many runs failed since its last success (all runs if none passed)."""
        table = RunRow.__table__  # type: ignore[attr-defined]
        runs = table.c
        last_ok = (
            sa_select(runs.check, func.max(runs.ts).label("ts"))
            .where(runs.ok.is_(True))
            .group_by(runs.check)
            .subquery()
        )
        query = (
            sa_select(runs.check, func.count())
            .select_from(table.outerjoin(last_ok, runs.check == last_ok.c.check))
            .where((last_ok.c.ts.is_(None)) | (runs.ts > last_ok.c.ts))
            .group_by(runs.check)
        )
        with self.engine.connect() as connection:
            return {row[0]: int(row[1]) for row in connection.execute(query)}

    def latest_runs(self) -> dict[str, RunRow]:
        """The newest run of every check that has one."""
        newest = (
            select(RunRow.check, func.max(RunRow.ts).label("ts")).group_by(RunRow.check).subquery()
        )
        query = select(RunRow).join(
            newest, and_(col(RunRow.check) == newest.c.check, col(RunRow.ts) == newest.c.ts)
        )
        with Session(self.engine) as session:
            return {row.check: row for row in session.exec(query)}

    def runs_since(self, check: str, since: float) -> list[RunRow]:
        query = (
            select(RunRow).where(RunRow.check == check, RunRow.ts >= since).order_by(col(RunRow.ts))
        )
        with Session(self.engine) as session:
            return list(session.exec(query))

    def count_runs(self, check: str | None = None) -> int:
        query = select(func.count()).select_from(RunRow)
        if check is not None:
            query = query.where(RunRow.check == check)
        with Session(self.engine) as session:
            return int(session.exec(query).one())
