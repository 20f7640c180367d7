"""History in SQLite or Postgres through SQLModel. Synchronous; the writer and the API
call it from worker threads so the event loop never waits on disk."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from sqlalchemy import Connection, Engine, Table, func
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError

from monitor.storage.backend import insert_new, upsert
from monitor.storage.checkids import CheckIds, batches, by_check, narrowed
from monitor.storage.database import Database
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


RUNS: Table = StoredRun.__table__  # type: ignore[attr-defined]
DEPRECATIONS: Table = DeprecationRow.__table__  # type: ignore[attr-defined]


class Store:
    """`read_only`: for readers in another process (`intmon status`), see Database."""

    def __init__(self, url: str, busy_timeout: float = 5.0, read_only: bool = False) -> None:
        self.database = Database(url, busy_timeout, read_only)
        self.engine: Engine = self.database.engine
        self.checks = CheckIds()
        self.rollups = Rollups(self.engine, self.checks)

    def open(self) -> None:
        """Create, upgrade or (read-only) check the schema."""
        self.database.open()

    def close(self) -> None:
        self.database.close()

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

    def _insert_runs(self, records: list[RunRecord], resolve_ties: bool) -> dict[str, int]:
        with self.engine.begin() as connection:
            self.rollups.mark_late(connection, (r.ts for r in records))
            ids = self.checks.lookup(connection, {r.check for r in records}, create=True)
            seen: dict[tuple[int, float], int] = {}
            rows = []
            for record in records:
                key = (ids[record.check], record.ts)
                if resolve_ties and key not in seen:
                    seen[key] = self._next_seq(connection, *key) - 1
                seen[key] = seq = seen.get(key, -1) + 1
                rows.append(record.as_row(key[0], seq))
            # A run of a slot stored already (by another replica) is left out: stored once.
            claimed = RUNS.c.slot.is_not(None)
            connection.execute(insert_new(connection, RUNS, ["check_id", "slot"], claimed), rows)
        return ids

    def _next_seq(self, connection: Connection, check_id: int, ts: float) -> int:
        query = sa_select(func.max(RUNS.c.seq)).where(RUNS.c.check_id == check_id, RUNS.c.ts == ts)
        last = connection.execute(query).scalar()
        return 0 if last is None else int(last) + 1

    def write_deprecations(self, rows: list[DeprecationRow]) -> None:
        if not rows:
            return
        with self.engine.begin() as connection:
            upsert(connection, DEPRECATIONS, [row.model_dump() for row in rows])

    def deprecations(self, only: Collection[str] | None = None) -> dict[str, DeprecationRow]:
        """The stored deprecation of every check (or of those named in `only`)."""
        return by_check(self.engine, DeprecationRow, only)

    def recent_runs(
        self, since: float, only: Collection[str] | None = None
    ) -> list[tuple[str, float, bool, float | None, int | None, str | None]]:
        """(check, ts, ok, latency, status, error_class) of every run since `since` of every
        check (or of those named in `only`), each check's oldest first."""
        # One key range per check (CROSS JOIN keeps SQLite from scanning every run instead).
        sql = """
            SELECT c.name, r.ts, r.ok, r.latency, r.status, r.error_class
            FROM checks c CROSS JOIN runs r
            WHERE r.check_id = c.id AND {checks} AND r.ts >= :since ORDER BY r.ts, c.name, r.seq
            """
        with self.engine.connect() as connection:
            return [
                (r[0], r[1], bool(r[2]), r[3], r[4], r[5])
                for batch in batches(only)
                for r in connection.execute(narrowed(sql, batch).bindparams(since=since))
            ]

    def healthy_latencies(
        self, since: float, only: Collection[str] | None = None
    ) -> Iterator[tuple[str, float, float]]:
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
            only,
        )
        return ((name, row[0], row[1]) for name, row in rows)

    def consecutive_failures(self, only: Collection[str] | None = None) -> dict[str, int]:
        """Per check (of those named in `only`, if given), how many runs failed since its last
        success (all runs if none passed)."""
        # Per check: walk its rows back to the newest success, count what is after.
        sql = """
            SELECT c.name, (
                SELECT count(*) FROM runs r WHERE r.check_id = c.id AND r.ts > coalesce(
                    (SELECT o.ts FROM runs o WHERE o.check_id = c.id AND o.ok
                     ORDER BY o.ts DESC LIMIT 1),
                    -1e300)
            ) FROM checks c WHERE {checks}
            """
        with self.engine.connect() as connection:
            return {
                row[0]: int(row[1])
                for batch in batches(only)
                for row in connection.execute(narrowed(sql, batch))
                if row[1]
            }

    def latest_runs(self, only: Collection[str] | None = None) -> dict[str, RunRecord]:
        """The newest run of every check that has one (of those named in `only`, if given)."""
        # CROSS JOIN makes SQLite walk the checks and seek each one's newest run; with a plain
        # join its planner may scan every run instead. Standard SQL, so Postgres plans it freely.
        # Of runs at the very same ts, the last one written (highest seq) wins.
        sql = """
            SELECT c.name, r.* FROM checks c CROSS JOIN runs r
            WHERE r.check_id = c.id AND {checks}
              AND r.ts = (SELECT max(m.ts) FROM runs m WHERE m.check_id = c.id)
            ORDER BY r.seq
            """
        with self.engine.connect() as connection:
            return {
                row[0]: RunRecord.from_row(row[0], row)
                for batch in batches(only)
                for row in connection.execute(narrowed(sql, batch))
            }

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

    def last_failures(self, check: str, limit: int) -> list[RunRecord]:
        """The newest `limit` failed runs of `check`, newest first: one walk back along its
        key range, which stops at the limit."""
        with self.engine.connect() as connection:
            ids = self.checks.lookup(connection, [check])
            if not ids:
                return []
            query = (
                sa_select(RUNS)
                .where(RUNS.c.check_id == ids[check], RUNS.c.ok.is_(False))
                .order_by(RUNS.c.ts.desc(), RUNS.c.seq.desc())
                .limit(limit)
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
