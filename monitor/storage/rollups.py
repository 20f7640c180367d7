"""Retention of the store's history: hourly rollups, and pruning what they summarise.

Run on the writer's thread only (see monitor/storage/upkeep.py), one short transaction per call.
"""

from __future__ import annotations

import json
import uuid
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


def _token() -> str:
    return uuid.uuid4().hex


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


ROLLED_UP_UNTIL = "rolled_up_until"  # every hour before it is rolled up (what readers use)
ROLLING_UNTIL = "rolling_until"  # every hour before it is rolled up, or being rolled up now
LATE = "late_hour/"  # + an hour: it got runs after its rollup began, so it is rolled up again
LEGACY_LATE = "late_hours"  # the same, as one JSON list, written by earlier releases


class Rollups:
    """A store's hourly rollups and the pruning that bounds its history.

    With several replicas on one database, any of them may write a run of an hour that the one
    doing maintenance has rolled up already (a backlog flushed after an outage), so the
    bookkeeping lives in the database, not in a process: how far rollups have got, and one
    `meta` row per hour that must be rolled up again. A writer that stores a run of an hour
    before ROLLING_UNTIL marks that hour (`mark_late`, in the transaction of the runs) with a
    fresh token; the rollup of an hour first sets its own token on the hour's mark and, once
    done, deletes the mark only if it still holds that token. A run marked meanwhile is thus
    never lost: either the rollup read it, or its mark outlives the rollup and the next pass
    redoes the hour. Only the writer's thread of the process doing maintenance rolls up.
    """

    def __init__(self, engine: Engine, checks: CheckIds) -> None:
        self.engine = engine
        self.checks = checks
        self._tokens: dict[int, str] = {}  # hour -> this process's token on its mark

    def mark_late(self, connection: Connection, timestamps: Iterable[float]) -> None:
        """In the transaction that writes runs at `timestamps`: mark the hours whose rollup
        has begun already, so they are rolled up again (by whichever replica does it, after a
        restart too).

        On Postgres the progress is read FOR SHARE: a rollup about to begin an hour waits for
        this transaction to commit (and then reads these runs), or this one waits for it (and
        then marks the hour). SQLite has one writer, whose thread also rolls up. (Before the
        first rollup of a database there is no row to lock: a batch flushed at that moment,
        with a run of that first hour, could go unmarked.) ROLLED_UP_UNTIL as well, for a
        database whose rollups an earlier release began.
        """
        query = (
            sa_select(META.c.value)
            .where(META.c.key.in_([ROLLED_UP_UNTIL, ROLLING_UNTIL]))
            .with_for_update(read=True)
        )
        values = [int(value) for value in connection.execute(query).scalars()]
        if not values:
            return  # nothing rolled up yet
        until = max(values)
        late = sorted({hour_of(ts) for ts in timestamps if ts < until})
        upsert(connection, META, [{"key": f"{LATE}{hour}", "value": _token()} for hour in late])

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
        with self.engine.connect() as connection:
            return self._meta_int(connection, ROLLED_UP_UNTIL)

    def hours_to_roll_up(self, until: float) -> list[int]:
        """Every hour ending by `until` not rolled up yet, plus earlier hours that got late runs."""
        end = hour_of(until)
        with self.engine.connect() as connection:
            start = self._meta_int(connection, ROLLED_UP_UNTIL)
            late_hours = self._late_hours(connection)
        if start is None:
            oldest = self._oldest_run()
            if oldest is None:
                return []
            start = hour_of(oldest)
        late = sorted(h for h in late_hours if h < start)
        return [*late, *range(start, end, int(HOUR))]

    def _oldest_run(self) -> float | None:
        query = text("SELECT min((SELECT min(ts) FROM runs WHERE check_id = c.id)) FROM checks c")
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
            return None if value is None else float(value)

    def rollup(
        self, hour: int, checks: list[str] | None = None, first: bool = True, last: bool = True
    ) -> int:
        """(Re)compute one hour's rollups of `checks` (default: all) in one transaction.

        Idempotent: their old rows for the hour are replaced, so a re-run after late runs is
        exact. A caller splitting an hour into chunks of checks passes `first` on the first
        chunk only, which begins the hour (see the class), and `last` on the final one, which
        alone marks the hour done. Returns the rows written.
        """
        if first:
            self._begin(hour)
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
            if last:
                self._finish(connection, hour)
        return len(rows)

    def _begin(self, hour: int) -> None:
        """Before an hour's first chunk: from now on a run written for it marks it late, and
        its mark carries this rollup's token."""
        end = hour + int(HOUR)
        token = _token()
        with self.engine.begin() as connection:
            rolling = self._meta_int(connection, ROLLING_UNTIL)
            if rolling is None or end > rolling:
                # Waits for writers that read the old value to commit (see mark_late).
                self._set_meta(connection, ROLLING_UNTIL, str(end))
            self._set_meta(connection, f"{LATE}{hour}", token)
        self._tokens[hour] = token

    def _finish(self, connection: Connection, hour: int) -> None:
        """In the last chunk's transaction: the hour is done, unless it was marked since."""
        end = hour + int(HOUR)
        rolled = self._meta_int(connection, ROLLED_UP_UNTIL)
        if rolled is None or end > rolled:
            self._set_meta(connection, ROLLED_UP_UNTIL, str(end))
        token = self._tokens.pop(hour, None)
        connection.execute(
            META.delete().where(META.c.key == f"{LATE}{hour}", META.c.value == token)
        )
        legacy = connection.execute(
            sa_select(META.c.value).where(META.c.key == LEGACY_LATE)
        ).scalar()
        if legacy is not None and hour in json.loads(legacy):
            left = sorted(set(json.loads(legacy)) - {hour})
            self._set_meta(connection, LEGACY_LATE, json.dumps(left))

    def _late_hours(self, connection: Connection) -> set[int]:
        marks = sa_select(META.c.key).where(META.c.key.startswith(LATE, autoescape=True))
        hours = {int(key.removeprefix(LATE)) for key in connection.execute(marks).scalars()}
        legacy = connection.execute(
            sa_select(META.c.value).where(META.c.key == LEGACY_LATE)
        ).scalar()
        return hours | set(json.loads(legacy) if legacy else ())

    def _meta_int(self, connection: Connection, key: str) -> int | None:
        value = connection.execute(sa_select(META.c.value).where(META.c.key == key)).scalar()
        return None if value is None else int(value)

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
