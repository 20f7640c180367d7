"""History in a real SQLite file and a real Postgres database: schema, batching, restarts, and
outages that lose nothing."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, text

from monitor.alerting.machine import AlertState, Phase
from monitor.alerting.outbox import commit, load_states
from monitor.storage.backend import engine_url
from monitor.storage.database import Database
from monitor.storage.shapes import (
    ShapeRow,
    load_shapes,
    save_accepted,
    save_learning,
    save_observed,
)
from monitor.storage.store import SCHEMA_VERSION, DeprecationRow, RunRecord, SchemaError, Store
from monitor.storage.writer import Writer
from tests.postgres import sqlite_only
from tests.statements import compiled_afresh


def record(check: str, ts: float, ok: bool = True, **extra: object) -> RunRecord:
    fields: dict[str, object] = {
        "error_class": None if ok else "http_5xx",
        "status": 200 if ok else 503,
        "latency": 0.05,
        "reason": "HTTP 200" if ok else "HTTP 503 (expected 2xx)",
        "signals": {},
    }
    fields.update(extra)
    return RunRecord(check=check, ts=ts, ok=ok, **fields)  # type: ignore[arg-type]


def fetch(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    """Rows of raw SQL, read past the store: what is really stored."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


@contextlib.contextmanager
def locked(store: Store, db_path: Path) -> Iterator[None]:
    """Another process holds the runs' lock (longer than the store waits for it)."""
    if store.database.sqlite:
        with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as blocker:
            blocker.execute("BEGIN EXCLUSIVE")
            yield
            blocker.execute("ROLLBACK")
        return
    other = create_engine(store.engine.url)
    with other.connect() as blocker:  # one transaction, rolled back when it closes
        blocker.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
        yield
    other.dispose()


def test_the_schema_is_created_with_a_version_marker(store: Store) -> None:
    version = fetch(store.engine, "SELECT value FROM meta WHERE key='schema_version'")
    assert version == [(str(SCHEMA_VERSION),)]


@sqlite_only
def test_an_sqlite_file_is_in_wal_mode(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_from_a_newer_intmon_is_refused(store: Store, db_url: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE meta SET value='999' WHERE key='schema_version'"))
    newer = Store(db_url)
    with pytest.raises(SchemaError, match="newer than this intmon"):
        newer.open()
    newer.close()


def test_a_read_only_store_reads_history_and_can_write_nothing(store: Store, db_url: str) -> None:
    store.write_runs([record("a", 1), record("a", 2, ok=False)])
    reader = Store(db_url, read_only=True)
    reader.open()
    try:
        assert [(r.ts, r.ok) for r in reader.runs_since("a", 0)] == [(1, True), (2, False)]
        # SQLite opens the file read-only; Postgres makes every transaction read-only.
        refused = "readonly database|read-only transaction"
        with pytest.raises(sqlalchemy.exc.DBAPIError, match=refused):
            reader.write_runs([record("a", 3)])
    finally:
        reader.close()
    assert store.count_runs() == 2


@sqlite_only
def test_a_read_only_store_leaves_the_sqlite_file_untouched(store: Store, db_path: Path) -> None:
    store.write_runs([record("a", 1), record("a", 2, ok=False)])
    store.close()  # the last connection checkpoints the WAL into the file
    before = (db_path.read_bytes(), db_path.stat().st_mtime_ns)
    reader = Store(f"sqlite:///{db_path}", read_only=True)
    reader.open()
    try:
        assert reader.count_runs() == 2
    finally:
        reader.close()
    assert (db_path.read_bytes(), db_path.stat().st_mtime_ns) == before


def test_a_read_only_store_refuses_a_database_without_the_tables_it_reads(db_url: str) -> None:
    engine = create_engine(engine_url(db_url))
    with engine.begin() as db:
        db.execute(text("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)"))
        db.execute(text(f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}')"))
    engine.dispose()
    reader = Store(db_url, read_only=True)
    with pytest.raises(
        SchemaError,
        match="no table checks, deprecations, heartbeats, rollups, runs, shapes; run `intmon run` once",
    ):
        reader.open()
    reader.close()


def test_latest_runs_returns_the_newest_run_of_each_check(store: Store) -> None:
    store.write_runs([record("a", 1), record("a", 3, ok=False), record("a", 2), record("b", 5)])
    latest = store.latest_runs()
    assert {name: (row.ts, row.ok) for name, row in latest.items()} == {
        "a": (3, False),
        "b": (5, True),
    }


def test_signals_are_stored_as_json_and_read_back_decoded(store: Store) -> None:
    store.write_runs([record("a", 1, signals={"quota_remaining": 7})])
    assert store.runs_since("a", 0)[0].signals == {"quota_remaining": 7}
    assert fetch(store.engine, "SELECT signals FROM runs") == [('{"quota_remaining":7}',)]


def test_a_deprecation_is_stored_once_per_check_and_updated_in_place(store: Store) -> None:
    first = DeprecationRow(check="a", first_seen=1, last_seen=1, sunset_at=99, links='["/v2"]')
    store.write_deprecations([first, DeprecationRow(check="b", first_seen=2, last_seen=2)])
    store.write_deprecations([first.model_copy(update={"last_seen": 5, "active": False})])
    stored = store.deprecations()
    assert sorted(stored) == ["a", "b"]
    a = stored["a"]
    assert (a.first_seen, a.last_seen, a.sunset_at, a.links, a.active) == (
        1,
        5,
        99,
        '["/v2"]',
        False,
    )


def test_a_learned_shape_and_the_observed_one_never_overwrite_each_other(store: Store) -> None:
    save_observed(store.engine, "a", '{"o":1}', 10)  # first sight: a new row
    save_learning(store.engine, ShapeRow(check="a", learned='{"l":1}', samples=3))
    save_observed(store.engine, "a", '{"o":2}', 20)  # the daemon's: leaves `learned` alone
    save_accepted(store.engine, "a", '{"l":2}', 5, 30)  # `intmon schema --accept`'s
    row = load_shapes(store.engine)["a"]
    assert (row.learned, row.samples, row.accepted_at) == ('{"l":2}', 5, 30)
    assert (row.observed, row.observed_since) == ('{"o":2}', 20)


def test_history_survives_reopening_the_database(db_url: str) -> None:
    first = Store(db_url)
    first.open()
    first.write_runs([record("a", float(i)) for i in range(50)])
    first.close()
    second = Store(db_url)
    second.open()
    assert second.count_runs("a") == 50
    second.close()


def test_write_batches_of_any_size_reuse_their_compiled_statements(store: Store) -> None:
    """The writer's batches vary in size with the load; none must be compiled afresh."""

    def write(size: int, at: float) -> None:
        names = [f"c{at:g}-{i}" for i in range(size)]  # new checks: their ids are inserted too
        store.write_runs([record(name, at, slot=round(at * 1000)) for name in names])
        store.write_deprecations(
            [DeprecationRow(check=n, first_seen=1, last_seen=at) for n in names]
        )
        save_learning(store.engine, ShapeRow(check=names[0], samples=size))

    for size in (1, 2):  # compiled here: for one row, and for several (an executemany)
        write(size, 100.0 + size)
    with compiled_afresh(store.engine) as fresh:
        for size in (1, 3, 7):
            write(size, 200.0 + size)
    assert fresh == []


async def test_the_writer_batches_everything_it_is_given(store: Store) -> None:
    writer = Writer(store, batch_size=100)
    for i in range(1234):
        writer.record(record(f"c{i % 7}", float(i)))
    assert await writer.flush_once()
    assert store.count_runs() == 1234
    assert not writer.pending


async def test_a_locked_database_loses_no_result_and_counts_the_error(
    db_url: str, db_path: Path
) -> None:
    store = Store(db_url, busy_timeout=0.05)
    store.open()
    errors: list[int] = []
    writer = Writer(store, on_error=lambda: errors.append(1))
    for i in range(10):
        writer.record(record("a", float(i)))
    with locked(store, db_path):
        assert not await writer.flush_once()
        assert len(writer.pending) == 10
        assert errors == [1]
    assert await writer.flush_once()
    assert store.count_runs("a") == 10
    store.close()


async def test_closing_the_writer_flushes_what_is_pending(store: Store) -> None:
    writer = Writer(store, flush_interval=3600)
    writer.start()
    for i in range(20):
        writer.record(record("a", float(i)))
    await writer.close()
    assert store.count_runs("a") == 20


async def test_past_the_pending_cap_the_oldest_results_are_dropped_and_counted(
    store: Store,
) -> None:
    writer = Writer(store, max_pending=5)
    for i in range(8):
        writer.record(record("a", float(i)))
    assert writer.dropped == 3
    assert [r.ts for r in writer.pending] == [3, 4, 5, 6, 7]


def test_consecutive_failures_count_runs_since_the_last_success(store: Store) -> None:
    a = [
        record("a", 1, ok=False),
        record("a", 2),
        record("a", 3, ok=False),
        record("a", 4, ok=False),
    ]
    never_ok = [record("never-ok", 1, ok=False), record("never-ok", 2, ok=False)]
    fine = [record("fine", 1, ok=False), record("fine", 2)]
    store.write_runs([*a, *never_ok, *fine])
    assert store.consecutive_failures() == {"a": 2, "never-ok": 2}


def test_recent_runs_returns_plain_tuples_since_a_time(store: Store) -> None:
    store.write_runs([record("a", 1), record("a", 5, ok=False), record("b", 6)])
    assert store.recent_runs(4) == [
        ("a", 5, False, 0.05, 503, "http_5xx"),
        ("b", 6, True, 0.05, 200, None),
    ]


def test_healthy_latencies_stream_passing_timed_runs_by_check_name_then_time(
    store: Store,
) -> None:
    # "b" is stored first, so ids run against name order: the order is by name, not id.
    store.write_runs([record("b", 5, latency=0.5), record("b", 1, latency=0.1)])
    store.write_runs([record("a", 3, latency=0.3), record("a", 2, ok=False)])
    store.write_runs([record("a", 4, latency=None), record("a", 9, latency=0.9)])
    assert list(store.healthy_latencies(2)) == [
        ("a", 3, 0.3),
        ("a", 9, 0.9),
        ("b", 5, 0.5),
    ]


@pytest.mark.parametrize(
    ("status", "reason", "signals", "stored"),
    [
        (200, "HTTP 200", {}, (None, None)),
        (429, "HTTP 429", {"retry_after": 30}, (None, '{"retry_after":30}')),
        (503, "HTTP 503 (expected 2xx)", {}, ("HTTP 503 (expected 2xx)", None)),
        (201, "HTTP 200", {}, ("HTTP 200", None)),  # not what its status says: kept as is
        (None, "", {}, ("", None)),
        (None, "HTTP None", {}, ("HTTP None", None)),
    ],
    ids=["passing", "429-with-retry-after", "failure-text", "other-text", "no-status", "odd"],
)
def test_a_reason_that_only_repeats_the_status_is_stored_as_null_and_read_back_in_full(
    store: Store,
    status: int | None,
    reason: str,
    signals: dict[str, object],
    stored: tuple[str | None, str | None],
) -> None:
    store.write_runs([record("a", 1, status=status, reason=reason, signals=signals)])
    assert fetch(store.engine, "SELECT reason, signals FROM runs") == [stored]
    for row in (store.runs_since("a", 0)[0], store.latest_runs()["a"]):
        assert (row.status, row.reason) == (status, reason)
        assert row.signals == signals


async def test_runs_of_one_check_at_the_same_instant_are_all_kept(store: Store) -> None:
    store.write_runs([record("a", 5), record("a", 5, ok=False)])  # one batch
    store.write_runs([record("a", 5, latency=0.9)])  # a later batch, the same ts again
    assert store.count_runs("a") == 3
    assert [(r.ok, r.latency) for r in store.runs_since("a", 0)] == [
        (True, 0.05),
        (False, 0.05),
        (True, 0.9),
    ]
    assert store.latest_runs()["a"].latency == 0.9  # the last one written
    writer = Writer(store)
    writer.record(record("a", 5))
    assert await writer.flush_once()
    assert store.count_runs("a") == 4


def test_each_check_name_is_stored_once_however_many_runs_it_has(store: Store, db_url: str) -> None:
    store.write_runs([record(name, float(i)) for i in range(100) for name in ("a", "b")])
    reopened = Store(db_url)  # no cached ids: they are read back
    reopened.open()
    reopened.write_runs([record("c", 1.0), record("a", 200.0)])
    assert reopened.count_runs("a") == 101
    reopened.close()
    assert fetch(store.engine, "SELECT name FROM checks ORDER BY id") == [("a",), ("b",), ("c",)]


# A rule that refuses every run, and its removal, in each database's own SQL.
REFUSE = {
    "sqlite": "CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'no'); END",
    "postgresql": "ALTER TABLE runs ADD CONSTRAINT no CHECK (false)",
}
ALLOW = {"sqlite": "DROP TRIGGER refuse", "postgresql": "ALTER TABLE runs DROP CONSTRAINT no"}


def test_a_failed_batch_leaves_no_check_name_behind(store: Store) -> None:
    dialect = store.engine.dialect.name
    with store.engine.begin() as db:
        db.execute(text(REFUSE[dialect]))
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="no"):
        store.write_runs([record("new", 1)])
    with store.engine.begin() as db:
        db.execute(text(ALLOW[dialect]))
    assert fetch(store.engine, "SELECT count(*) FROM checks") == [(0,)]
    store.write_runs([record("new", 1)])  # the id is not cached from the rolled-back attempt
    assert [r.check for r in store.runs_since("new", 0)] == ["new"]


def _two_checks_everywhere(store: Store) -> None:
    """Rows of checks a and b in every table a restore reads."""
    for name in ("a", "b"):
        store.write_runs([record(name, 10, ok=False), record(name, 20, latency=0.2)])
        store.write_runs([record(name, 30, ok=False)])
        store.write_deprecations([DeprecationRow(check=name, first_seen=1, last_seen=2)])
        save_learning(store.engine, ShapeRow(check=name, learned='{"l":1}', samples=3))
        firing = AlertState(name, "error_rate", Phase.FIRING, "critical", version=1)
        commit(store.engine, [(AlertState(name, "error_rate"), firing)], [])
    store.rollups.rollup(0)


def test_a_restore_of_some_checks_reads_their_rows_and_no_others(store: Store) -> None:
    _two_checks_everywhere(store)
    only = {"a", "not-stored"}
    assert list(store.latest_runs(only)) == ["a"]
    assert store.consecutive_failures(only) == {"a": 1}
    assert {row[0] for row in store.recent_runs(0, only)} == {"a"}
    assert list(store.deprecations(only)) == ["a"]
    assert list(load_shapes(store.engine, only)) == ["a"]
    assert [s.check for s in load_states(store.engine, only)] == ["a"]
    assert {row[0] for row in store.healthy_latencies(0, only)} == {"a"}
    assert {row[0] for row in store.rollups.hourly_p95s(0, only)} == {"a"}
    assert {row.check for row in store.rollups.hours_since(0, only)} == {"a"}
    # Without `only`, every check, as at start-up.
    assert sorted(store.latest_runs()) == sorted(store.consecutive_failures()) == ["a", "b"]
    assert {row[0] for row in store.recent_runs(0)} == {"a", "b"}


def test_a_restore_of_more_checks_than_a_statement_can_name_reads_every_one(
    store: Store,
) -> None:
    # More names than SQLite (32,766) or Postgres (65,535) take as parameters of one statement.
    stored = [f"c{i:05d}" for i in range(0, 70_000, 997)]
    store.write_runs([record(name, 5, ok=False) for name in stored])
    only = {f"c{i:05d}" for i in range(70_000)}
    assert sorted(store.latest_runs(only)) == stored
    assert store.consecutive_failures(only) == dict.fromkeys(stored, 1)
    assert sorted(row[0] for row in store.recent_runs(0, only)) == stored


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"connect_timeout": "10", "tcp_user_timeout": "30000"}),
        ("?connect_timeout=3", {"connect_timeout": "3", "tcp_user_timeout": "30000"}),
    ],
)
def test_postgres_connections_time_out_unless_the_url_says_otherwise(
    db_url: str, query: str, expected: dict[str, str]
) -> None:
    database = Database(db_url + query)
    try:
        with database.engine.connect() as connection:
            params = connection.connection.driver_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        database.engine.dispose()
    assert {k: params.get(k) for k in expected} == expected
