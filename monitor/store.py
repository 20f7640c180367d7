"""History in SQLite (or Postgres) through SQLModel. Synchronous; the writer and the API
call it from worker threads so the event loop never waits on disk."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, event, func, insert, inspect, text
from sqlalchemy import select as sa_select
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, SQLModel, col, create_engine, select

from monitor.schema import (
    SCHEMA_VERSION,
    DeprecationRow,
    MetaRow,
    RollupRow,
    RunRecord,
    RunRow,
    SchemaError,
)
from monitor.stats import HOUR, quantile

__all__ = [
    "SCHEMA_VERSION",
    "DeprecationRow",
    "MetaRow",
    "RollupRow",
    "RunRecord",
    "RunRow",
    "SchemaError",
    "Store",
    "hour_of",
    "summarise_hour",
]

log = logging.getLogger(__name__)

# An existing database without auto_vacuum is switched (one VACUUM, a full copy) on open only
# up to this size; a bigger one keeps working, it just never gives freed pages back to the OS.
VACUUM_ON_UPGRADE_MAX_BYTES = 64 * 1024 * 1024


def _sqlite_pragmas(busy_timeout: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        # Only takes effect on a brand-new file, and only before anything else writes to it
        # (switching to WAL already does), so it comes first. On an existing file it is a no-op.
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        # WAL lets the status API read while the writer writes; NORMAL is durable across a
        # crash of the process (only a power loss can lose the last commits).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    return on_connect


def _distinct_checks(table: str) -> str:
    """SQL for the distinct check names of `table`, one index seek each.

    A loose index scan by hand: `SELECT DISTINCT` or `GROUP BY` would read every entry of the
    (check, ...) index, millions of them, to find a thousand names.
    """
    return f"""
        WITH RECURSIVE checks(name) AS (
            SELECT min("check") FROM {table}
            UNION ALL
            SELECT (SELECT min("check") FROM {table} WHERE "check" > checks.name)
            FROM checks WHERE checks.name IS NOT NULL
        )
    """


def summarise_hour(
    check: str, hour: int, runs: list[tuple[bool, float | None, int | None]]
) -> dict[str, Any]:
    """The rollup row of one check's (ok, latency, status) runs in one hour."""
    timed = [latency for _, latency, _ in runs if latency is not None]
    timed_ok = [latency for ok, latency, _ in runs if ok and latency is not None]
    timed.sort()
    return {
        "check": check,
        "hour": hour,
        "count": len(runs),
        "failures": sum(1 for ok, _, _ in runs if not ok),
        "rate_limited": sum(1 for _, _, status in runs if status == 429),
        "timed": len(timed),
        "p50": quantile(timed, 0.5),
        "p95": quantile(timed, 0.95),
        "p99": quantile(timed, 0.99),
        "p95_ok": quantile(timed_ok, 0.95),
    }


def hour_of(ts: float) -> int:
    return int(ts - ts % HOUR)


class Store:
    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout))
        # End of the last hour rolled up, and hours before it that got late runs since (a
        # backlog flushed after an outage): both only touched on the writer's thread.
        self._rolled_until: int | None = None
        self._late_hours: set[int] = set()

    def open(self) -> None:
        """Create the schema if needed, upgrade an older one, and check its version marker."""
        with self.engine.connect() as connection:
            had_runs = inspect(connection).has_table("runs")
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            row = session.get(MetaRow, "schema_version")
            if row is not None and int(row.value) > SCHEMA_VERSION:
                raise SchemaError(
                    f"database schema version {row.value} is newer than this intmon "
                    f"understands ({SCHEMA_VERSION}); upgrade intmon"
                )
            if row is None:
                session.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(row.value) < SCHEMA_VERSION:
                # 1 -> 2 was additive: create_all above made the rollups table. Its hours are
                # filled from the raw runs by the next maintenance pass.
                log.info("database schema upgraded from %s to %s", row.value, SCHEMA_VERSION)
                row.value = str(SCHEMA_VERSION)
                session.add(row)
            session.commit()
        if self.sqlite and had_runs:
            self._enable_incremental_vacuum()
        self._rolled_until = self.rolled_up_until()

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

    def close(self) -> None:
        self.engine.dispose()

    def write_runs(self, records: list[RunRecord]) -> None:
        """One transaction for the whole batch."""
        if not records:
            return
        with self.engine.begin() as connection:
            connection.execute(insert(RunRow), [r.as_row() for r in records])
        if self._rolled_until is not None:
            self._late_hours.update(hour_of(r.ts) for r in records if r.ts < self._rolled_until)

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
        # Per check: walk its index entries back to the newest success, count what is after.
        query = text(
            _distinct_checks("runs")
            + """
            SELECT name, (
                SELECT count(*) FROM runs r WHERE r."check" = checks.name AND r.ts > coalesce(
                    (SELECT o.ts FROM runs o WHERE o."check" = checks.name AND o.ok
                     ORDER BY o.ts DESC LIMIT 1),
                    -1e300)
            ) FROM checks WHERE name IS NOT NULL
            """
        )
        with self.engine.connect() as connection:
            return {row[0]: int(row[1]) for row in connection.execute(query) if row[1]}

    def latest_runs(self) -> dict[str, RunRow]:
        """The newest run of every check that has one."""
        query = text(
            _distinct_checks("runs")
            + """
            SELECT runs.* FROM checks JOIN runs ON runs.id = (
                SELECT r.id FROM runs r WHERE r."check" = checks.name
                ORDER BY r.ts DESC, r.id DESC LIMIT 1)
            WHERE checks.name IS NOT NULL
            """
        )
        with Session(self.engine) as session:
            rows = session.execute(select(RunRow).from_statement(query)).scalars()
            return {row.check: row for row in rows}

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

    # Retention: hourly rollups, pruning, incremental vacuum. Run on the writer's thread only.

    def checks_in(self, table: str) -> list[str]:
        """Every check name with rows in `runs` or `rollups`."""
        if table not in ("runs", "rollups"):
            raise ValueError(table)
        query = text(_distinct_checks(table) + "SELECT name FROM checks WHERE name IS NOT NULL")
        with self.engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def rolled_up_until(self) -> int | None:
        """The end of the last hour rolled up; None before the first rollup."""
        with Session(self.engine) as session:
            row = session.get(MetaRow, "rolled_up_until")
            return None if row is None else int(row.value)

    def hours_to_roll_up(self, until: float) -> list[int]:
        """Every hour ending by `until` not rolled up yet, plus earlier hours that got late runs."""
        end = hour_of(until)
        start = self._rolled_until
        if start is None:
            oldest = self._oldest_run()
            if oldest is None:
                return []
            start = hour_of(oldest)
        late = sorted(h for h in self._late_hours if h < start)
        return [*late, *range(start, end, int(HOUR))]

    def _oldest_run(self) -> float | None:
        query = text(
            _distinct_checks("runs")
            + """SELECT min((SELECT min(ts) FROM runs WHERE "check" = checks.name))
            FROM checks WHERE name IS NOT NULL"""
        )
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
            return None if value is None else float(value)

    def rollup(self, hour: int, checks: list[str] | None = None, last: bool = True) -> int:
        """(Re)compute one hour's rollups of `checks` (default: all) in one transaction.

        Idempotent: their old rows for the hour are replaced, so a re-run after late runs is
        exact. A caller splitting an hour into chunks of checks passes `last` on the final one,
        which alone marks the hour done. Returns the rows written.
        """
        names = self.checks_in("runs") if checks is None else checks
        runs = RunRow.__table__.c  # type: ignore[attr-defined]
        rollups = RollupRow.__table__  # type: ignore[attr-defined]
        # `check IN (...)` turns one scan of every run into one index range per check.
        query = (
            sa_select(runs.check, runs.ok, runs.latency, runs.status)
            .where(runs.check.in_(names), runs.ts >= hour, runs.ts < hour + HOUR)
            .order_by(runs.check)
        )
        with self.engine.begin() as connection:
            grouped: dict[str, list[tuple[bool, float | None, int | None]]] = {}
            for check, ok, latency, status in connection.execute(query):
                grouped.setdefault(check, []).append((bool(ok), latency, status))
            rows = [summarise_hour(check, hour, group) for check, group in grouped.items()]
            stale = rollups.delete().where(rollups.c.hour == hour)
            if checks is not None:
                stale = stale.where(rollups.c.check.in_(names))
            connection.execute(stale)
            if rows:
                connection.execute(insert(rollups), rows)
            end = hour + int(HOUR)
            advance = last and (self._rolled_until is None or end > self._rolled_until)
            if advance:
                self._set_meta(connection, "rolled_up_until", str(end))
        if advance:
            self._rolled_until = end
        if last:
            self._late_hours.discard(hour)
        return len(rows)

    def _set_meta(self, connection: Connection, key: str, value: str) -> None:
        meta = MetaRow.__table__  # type: ignore[attr-defined]
        updated = connection.execute(meta.update().where(meta.c.key == key).values(value=value))
        if not updated.rowcount:
            connection.execute(insert(meta).values(key=key, value=value))

    def prune_runs(self, before: float, limit: int, checks: list[str]) -> int:
        """Delete up to `limit` runs older than `before` of `checks`, in one transaction."""
        return self._prune("runs", "id", "ts", before, limit, checks)

    def prune_rollups(self, before: float, limit: int, checks: list[str]) -> int:
        """Delete up to `limit` rollups of hours that started before `before`."""
        return self._prune("rollups", '"check", hour', "hour", before, limit, checks)

    def _prune(
        self, table: str, key: str, ts: str, before: float, limit: int, checks: list[str]
    ) -> int:
        if not checks:
            return 0
        names = ", ".join(f":c{i}" for i in range(len(checks)))
        query = text(
            f"""DELETE FROM {table} WHERE ({key}) IN (
                SELECT {key} FROM {table} WHERE "check" IN ({names}) AND {ts} < :before
                LIMIT :limit)"""
        )
        params: dict[str, Any] = {f"c{i}": name for i, name in enumerate(checks)}
        params.update(before=before, limit=limit)
        with self.engine.begin() as connection:
            return int(connection.execute(query, params).rowcount)

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

    def hourly_p95s(self, since: float) -> Iterator[tuple[str, int, float]]:
        """(check, hour start, p95 of passing runs) of every rolled-up hour starting at or
        after `since`, by check then hour: what the baseline is seeded from."""
        rollups = RollupRow.__table__.c  # type: ignore[attr-defined]
        query = (
            sa_select(rollups.check, rollups.hour, rollups.p95_ok)
            .where(rollups.hour >= since, rollups.p95_ok.is_not(None))
            .order_by(rollups.check, rollups.hour)
        )
        with self.engine.connect() as connection:
            for row in connection.execution_options(stream_results=True).execute(query):
                yield row[0], int(row[1]), float(row[2])

    def rollups(self, check: str, since: float, until: float | None = None) -> list[RollupRow]:
        """One check's hourly rollups starting in [since, until), oldest first."""
        query = select(RollupRow).where(RollupRow.check == check, RollupRow.hour >= since)
        if until is not None:
            query = query.where(RollupRow.hour < until)
        with Session(self.engine) as session:
            return list(session.exec(query.order_by(col(RollupRow.hour))))
