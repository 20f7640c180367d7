"""Retention of the store's history: hourly rollups, and pruning what they summarise.

Run on the writer's thread only (see monitor/storage/upkeep.py), one short transaction per call.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, Row, Table, text
from sqlalchemy import select as sa_select

from monitor.core.quantile import quantile
from monitor.core.units import HOUR, hour_of
from monitor.storage.backend import upsert
from monitor.storage.checkids import CheckIds
from monitor.storage.schema import MetaRow, RollupRow, StoredRollup, StoredRun

RUNS: Table = StoredRun.__table__  # type: ignore[attr-defined]
ROLLUPS: Table = StoredRollup.__table__  # type: ignore[attr-defined]
META: Table = MetaRow.__table__  # type: ignore[attr-defined]


def summarise_hour(hour: int, runs: list[tuple[bool, float | None, int | None]]) -> dict[str, Any]:
    """The rollup row (without its check id) of one check's (ok, latency, status) runs in one
    hour."""
    timed = [latency for _, latency, _ in runs if latency is not None]
    timed_ok = [latency for ok, latency, _ in runs if ok and latency is not None]
    timed.sort()
    return {
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


class Rollups:
    """A store's hourly rollups and the pruning that bounds its history.

    Owned by the Store, which tells it about written runs (`written`) so hours that get late
    runs are rolled up again. The bookkeeping is only touched on the writer's thread.
    """

    def __init__(self, engine: Engine, checks: CheckIds) -> None:
        self.engine = engine
        self.checks = checks
        # End of the last hour rolled up, and hours before it that got late runs since (a
        # backlog flushed after an outage).
        self._rolled_until: int | None = None
        self._late_hours: set[int] = set()

    def resume(self) -> None:
        """Pick up where the last process left off (on open), late hours included."""
        self._rolled_until = self.rolled_up_until()
        query = sa_select(META.c.value).where(META.c.key == "late_hours")
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
        self._late_hours = set(json.loads(value)) if value else set()

    def mark_late(self, connection: Connection, timestamps: Iterable[float]) -> set[int]:
        """In the transaction that writes runs at `timestamps`: note the hours already rolled
        up that must be redone, so a restart before the re-rollup does not lose it. Returns
        them, for `written` once the transaction has committed."""
        if self._rolled_until is None:
            return set()
        until = self._rolled_until
        late = {hour_of(ts) for ts in timestamps if ts < until}
        if not late <= self._late_hours:
            self._set_meta(connection, "late_hours", json.dumps(sorted(self._late_hours | late)))
        return late

    def written(self, late: set[int]) -> None:
        """The runs `mark_late` looked at were committed."""
        self._late_hours |= late

    def checks_in(self, table: str) -> list[str]:
        """Every check name with rows in `runs` or `rollups`, by name."""
        if table not in ("runs", "rollups"):
            raise ValueError(table)
        # One index seek per check: far cheaper than DISTINCT over millions of rows.
        query = text(
            f"SELECT name FROM checks c WHERE EXISTS "
            f"(SELECT 1 FROM {table} WHERE check_id = c.id) ORDER BY name"
        )
        with self.engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def rolled_up_until(self) -> int | None:
        """The end of the last hour rolled up; None before the first rollup."""
        query = sa_select(META.c.value).where(META.c.key == "rolled_up_until")
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
            return None if value is None else int(value)

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
        query = text("SELECT min((SELECT min(ts) FROM runs WHERE check_id = c.id)) FROM checks c")
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
        with self.engine.begin() as connection:
            ids = self.checks.lookup(connection, names)
            # `check_id IN (...)` turns one scan of every run into one key range per check.
            query = (
                sa_select(RUNS.c.check_id, RUNS.c.ok, RUNS.c.latency, RUNS.c.status)
                .where(RUNS.c.check_id.in_(ids.values()))
                .where(RUNS.c.ts >= hour, RUNS.c.ts < hour + HOUR)
            )
            grouped: dict[int, list[tuple[bool, float | None, int | None]]] = {}
            for check_id, ok, latency, status in connection.execute(query):
                grouped.setdefault(check_id, []).append((bool(ok), latency, status))
            rows = []
            for check_id in ids.values():
                if check_id in grouped:
                    rows.append({"check_id": check_id, **summarise_hour(hour, grouped[check_id])})
            # Rows of checks without runs in the hour any more go; the others are replaced in
            # place, so a second process rolling up the same hour cannot collide on the key.
            stale = ROLLUPS.delete().where(ROLLUPS.c.hour == hour)
            if checks is not None:
                stale = stale.where(ROLLUPS.c.check_id.in_(ids.values()))
            connection.execute(stale.where(ROLLUPS.c.check_id.not_in(list(grouped))))
            upsert(connection, ROLLUPS, rows)
            end = hour + int(HOUR)
            advance = last and (self._rolled_until is None or end > self._rolled_until)
            if advance:
                self._set_meta(connection, "rolled_up_until", str(end))
            if last and hour in self._late_hours:
                left = json.dumps(sorted(self._late_hours - {hour}))
                self._set_meta(connection, "late_hours", left)
        if advance:
            self._rolled_until = end
        if last:
            self._late_hours.discard(hour)
        return len(rows)

    def _set_meta(self, connection: Connection, key: str, value: str) -> None:
        upsert(connection, META, [{"key": key, "value": value}])

    def prune_runs(self, before: float, limit: int, checks: list[str]) -> int:
        """Delete up to `limit` runs older than `before` of `checks`, in one transaction."""
        return self._prune("runs", "check_id, ts, seq", "ts", before, limit, checks)

    def prune_rollups(self, before: float, limit: int, checks: list[str]) -> int:
        """Delete up to `limit` rollups of hours that started before `before`."""
        return self._prune("rollups", "check_id, hour", "hour", before, limit, checks)

    def _prune(
        self, table: str, key: str, ts: str, before: float, limit: int, checks: list[str]
    ) -> int:
        with self.engine.begin() as connection:
            ids = list(self.checks.lookup(connection, checks).values())
            if not ids:
                return 0
            marks = ", ".join(f":c{i}" for i in range(len(ids)))
            query = text(
                f"""DELETE FROM {table} WHERE ({key}) IN (
                    SELECT {key} FROM {table} WHERE check_id IN ({marks}) AND {ts} < :before
                    LIMIT :limit)"""
            )
            params: dict[str, Any] = {f"c{i}": check_id for i, check_id in enumerate(ids)}
            params.update(before=before, limit=limit)
            return int(connection.execute(query, params).rowcount)

    def hourly_p95s(
        self, since: float, only: Collection[str] | None = None
    ) -> Iterator[tuple[str, int, float]]:
        """(check, hour start, p95 of passing runs) of every rolled-up hour starting at or
        after `since`, by check then hour: what the baseline is seeded from."""
        rows = self.checks.stream(
            self.engine,
            lambda check_id: (
                sa_select(ROLLUPS.c.hour, ROLLUPS.c.p95_ok)
                .where(ROLLUPS.c.check_id == check_id, ROLLUPS.c.hour >= since)
                .where(ROLLUPS.c.p95_ok.is_not(None))
                .order_by(ROLLUPS.c.hour)
            ),
            only,
        )
        return ((name, int(row[0]), float(row[1])) for name, row in rows)

    def hours_since(self, since: float, only: Collection[str] | None = None) -> Iterator[RollupRow]:
        """Every check's (or those named in `only`) rollups of the hours starting at or after
        `since`, by check then hour: what the status page's day of history is restored from."""
        rows = self.checks.stream(
            self.engine,
            lambda check_id: (
                sa_select(ROLLUPS)
                .where(ROLLUPS.c.check_id == check_id, ROLLUPS.c.hour >= since)
                .order_by(ROLLUPS.c.hour)
            ),
            only,
        )
        return (_rollup_row(name, row) for name, row in rows)

    def hours(self, check: str, since: float, until: float | None = None) -> list[RollupRow]:
        """One check's hourly rollups starting in [since, until), oldest first."""
        with self.engine.connect() as connection:
            ids = self.checks.lookup(connection, [check])
            if not ids:
                return []
            query = sa_select(ROLLUPS).where(
                ROLLUPS.c.check_id == ids[check], ROLLUPS.c.hour >= since
            )
            if until is not None:
                query = query.where(ROLLUPS.c.hour < until)
            rows = connection.execute(query.order_by(ROLLUPS.c.hour))
            return [_rollup_row(check, row) for row in rows]


def _rollup_row(check: str, row: Row[Any]) -> RollupRow:
    return RollupRow(check=check, **{k: v for k, v in row._mapping.items() if k != "check_id"})
