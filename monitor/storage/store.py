"""History in SQLite (or Postgres) through SQLModel. Synchronous; the writer and the API
call it from worker threads so the event loop never waits on disk."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, Table, event, func, insert, inspect, make_url, text
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, SQLModel, create_engine, select

from monitor.storage import heartbeats as _heartbeat_table  # noqa: F401 (creates its table)
from monitor.storage.checkids import CheckIds
from monitor.storage.migrate import legacy_version, upgrade_legacy
from monitor.storage.rollups import Rollups
from monitor.storage.schema import (
    SCHEMA_VERSION,
    DeprecationRow,
    MetaRow,
    RunRecord,
    SchemaError,
    StoredRun,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeprecationRow",
    "MetaRow",
    "RunRecord",
    "SchemaError",
    "Store",
]

log = logging.getLogger(__name__)

RUNS: Table = StoredRun.__table__  # type: ignore[attr-defined]
# What readers of the history use: a read-only open requires them all.
READ_TABLES = {"runs", "checks", "meta", "deprecations", "rollups", "heartbeats"}

# An existing database without auto_vacuum is switched (one VACUUM, a full copy) on open only
# up to this size; a bigger one keeps working, it just never gives freed pages back to the OS.
VACUUM_ON_UPGRADE_MAX_BYTES = 64 * 1024 * 1024


def _sqlite_pragmas(busy_timeout: float, read_only: bool) -> Any:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        if not read_only:
            # Only takes effect on a brand-new file, and only before anything else writes to
            # it (switching to WAL already does), so it comes first. On an existing file it is
            # a no-op.
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
            # WAL lets the status API read while the writer writes; NORMAL is durable across a
            # crash of the process (only a power loss can lose the last commits).
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    return on_connect


def _sqlite_file(url: URL) -> Path | None:
    """The file of an SQLite URL; None for an in-memory database or one given as a URI."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _read_only(url: URL, path: Path) -> URL:
    """The same file opened with mode=ro: SQLite itself refuses every write, and never
    creates a missing file."""
    query = {**url.query, "mode": "ro", "uri": "true"}
    return url.set(database=path.absolute().as_uri(), query=query)


def _refuse_newer(version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {version} is newer than this intmon "
            f"understands ({SCHEMA_VERSION}); upgrade intmon"
        )


class Store:
    """`read_only`: for readers in another process (`intmon status`): `open` creates, upgrades
    and vacuums nothing, and an SQLite file is opened so that nothing can write to it."""

    def __init__(self, url: str, busy_timeout: float = 5.0, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        parsed = make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        self.path = _sqlite_file(parsed) if self.sqlite else None
        if read_only and self.path is not None:
            parsed = _read_only(parsed, self.path)
        self.engine: Engine = create_engine(parsed)
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout, read_only))
        self.checks = CheckIds()
        self.rollups = Rollups(self.engine, self.checks)

    def open(self) -> None:
        """Create the schema if needed, upgrade an older one, and check its version marker.

        Read-only: only check that the database is there and of this intmon's schema.
        """
        if self.read_only:
            self._check_readable()
            self.rollups.resume()
            return
        with self.engine.connect() as connection:
            had_runs = inspect(connection).has_table("runs")
            version = legacy_version(connection)
        _refuse_newer(version)
        if version is not None and version < SCHEMA_VERSION:
            with self.engine.begin() as connection:
                upgrade_legacy(connection, version)
            log.info("database schema upgraded from %s to %s", version, SCHEMA_VERSION)
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            if session.get(MetaRow, "schema_version") is None:
                session.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
                session.commit()
        if self.sqlite and had_runs:
            self._enable_incremental_vacuum()
        self.rollups.resume()

    def _check_readable(self) -> None:
        if self.path is not None and not self.path.exists():
            raise SchemaError("no such file (`intmon run` creates it)")
        with self.engine.connect() as connection:
            version = legacy_version(connection)
            missing = sorted(READ_TABLES - set(inspect(connection).get_table_names()))
        _refuse_newer(version)
        if version is None:
            raise SchemaError("not an intmon database (it has no schema version)")
        if version < SCHEMA_VERSION:
            problem = f"database schema version {version} is older than this intmon's"
            raise SchemaError(f"{problem} ({SCHEMA_VERSION}); run `intmon run` once to upgrade it")
        if missing:
            problem = f"database has no table {', '.join(missing)}"
            raise SchemaError(f"{problem}; run `intmon run` once to add it")

    def _enable_incremental_vacuum(self) -> None:
        """A database created before auto_vacuum was set needs one VACUUM to switch."""
        with self.engine.connect() as connection:
            if connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 0:
                return
            if self.size_bytes() > VACUUM_ON_UPGRADE_MAX_BYTES:
                log.warning(
                    "database %s has no incremental vacuum; pruned space is reused but the file "
                    "will not shrink. To switch, stop intmon and run: sqlite3 FILE "
                    "'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;'",
                    self.url,
                )
                return
            connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            connection.exec_driver_sql("VACUUM")

    def incremental_vacuum(self, pages: int) -> int:
        """Give up to `pages` free pages back to the OS; returns the free pages left."""
        if not self.sqlite:
            return 0
        with self.engine.begin() as connection:
            free = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
            if free and connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2:
                # Each step of the pragma frees one page, and Python's sqlite3 steps a
                # statement without result columns exactly once: so, one execute per page.
                for _ in range(min(pages, free)):
                    connection.exec_driver_sql("PRAGMA incremental_vacuum(1)")
                free = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
            return free

    def size_bytes(self) -> int:
        """Pages in use and free, times page size: the main file's size, WAL excluded."""
        if not self.sqlite:
            return 0
        with self.engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar() or 0
            size = connection.exec_driver_sql("PRAGMA page_size").scalar() or 0
            return int(pages) * int(size)

    def close(self) -> None:
        self.engine.dispose()

    def write_runs(self, records: list[RunRecord]) -> None:
        """One transaction for the whole batch."""
        if not records:
            return
        try:
            ids = self._insert_runs(records, resolve_ties=False)
        except IntegrityError:
            # A run of a check at the very `ts` of a stored one (a clock step back, a replayed
            # backlog): numbered past the stored ones rather than lost.
            ids = self._insert_runs(records, resolve_ties=True)
        self.checks.committed(ids)
        self.rollups.written(r.ts for r in records)

    def _insert_runs(self, records: list[RunRecord], resolve_ties: bool) -> dict[str, int]:
        with self.engine.begin() as connection:
            ids = self.checks.lookup(connection, {r.check for r in records}, create=True)
            seen: dict[tuple[int, float], int] = {}
            rows = []
            for record in records:
                key = (ids[record.check], record.ts)
                if resolve_ties and key not in seen:
                    seen[key] = self._next_seq(connection, *key) - 1
                seen[key] = seq = seen.get(key, -1) + 1
                rows.append(record.as_row(key[0], seq))
            connection.execute(insert(RUNS), rows)
        return ids

    def _next_seq(self, connection: Connection, check_id: int, ts: float) -> int:
        query = sa_select(func.max(RUNS.c.seq)).where(RUNS.c.check_id == check_id, RUNS.c.ts == ts)
        last = connection.execute(query).scalar()
        return 0 if last is None else int(last) + 1

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
        # One key range per check (CROSS JOIN keeps SQLite from scanning every run instead).
        query = text(
            """
            SELECT c.name, r.ts, r.ok, r.latency, r.status FROM checks c CROSS JOIN runs r
            WHERE r.check_id = c.id AND r.ts >= :since ORDER BY r.ts, c.name, r.seq
            """
        ).bindparams(since=since)
        with self.engine.connect() as connection:
            return [(r[0], r[1], bool(r[2]), r[3], r[4]) for r in connection.execute(query)]

    def healthy_latencies(self, since: float) -> Iterator[tuple[str, float, float]]:
        """(check, ts, latency) of every passing run since `since`, by check then time.

        Streamed, so seeding baselines from a week of history never holds it all in memory.
        """
        rows = self.checks.stream(
            self.engine,
            lambda check_id: (
                sa_select(RUNS.c.ts, RUNS.c.latency)
                .where(RUNS.c.check_id == check_id, RUNS.c.ts >= since)
                .where(RUNS.c.ok.is_(True), RUNS.c.latency.is_not(None))
                .order_by(RUNS.c.ts)
            ),
        )
        return ((name, row[0], row[1]) for name, row in rows)

    def consecutive_failures(self) -> dict[str, int]:
        """Per check, how many runs failed since its last success (all runs if none passed)."""
        # Per check: walk its rows back to the newest success, count what is after.
        query = text(
            """
            SELECT c.name, (
                SELECT count(*) FROM runs r WHERE r.check_id = c.id AND r.ts > coalesce(
                    (SELECT o.ts FROM runs o WHERE o.check_id = c.id AND o.ok
                     ORDER BY o.ts DESC LIMIT 1),
                    -1e300)
            ) FROM checks c
            """
        )
        with self.engine.connect() as connection:
            return {row[0]: int(row[1]) for row in connection.execute(query) if row[1]}

    def latest_runs(self) -> dict[str, RunRecord]:
        """The newest run of every check that has one."""
        # CROSS JOIN makes SQLite walk the checks and seek each one's newest run; with a plain
        # join its planner may scan every run instead. Standard SQL, so Postgres plans it freely.
        # Of runs at the very same ts, the last one written (highest seq) wins.
        query = text(
            """
            SELECT c.name, r.* FROM checks c CROSS JOIN runs r
            WHERE r.check_id = c.id
              AND r.ts = (SELECT max(m.ts) FROM runs m WHERE m.check_id = c.id)
            ORDER BY r.seq
            """
        )
        with self.engine.connect() as connection:
            return {row[0]: RunRecord.from_row(row[0], row) for row in connection.execute(query)}

    def runs_since(self, check: str, since: float) -> list[RunRecord]:
        with self.engine.connect() as connection:
            ids = self.checks.lookup(connection, [check])
            if not ids:
                return []
            query = (
                sa_select(RUNS)
                .where(RUNS.c.check_id == ids[check], RUNS.c.ts >= since)
                .order_by(RUNS.c.ts, RUNS.c.seq)
            )
            return [RunRecord.from_row(check, row) for row in connection.execute(query)]

    def count_runs(self, check: str | None = None) -> int:
        query = sa_select(func.count()).select_from(RUNS)
        with self.engine.connect() as connection:
            if check is not None:
                ids = self.checks.lookup(connection, [check])
                if not ids:
                    return 0
                query = query.where(RUNS.c.check_id == ids[check])
            return int(connection.execute(query).scalar() or 0)
