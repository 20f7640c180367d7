"""Databases written by older intmon versions, made with raw SQL, opened by today's Store: SQLite
files, and the Postgres databases those versions created the same way."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
from sqlalchemy import create_engine, inspect, text

from monitor.alerting.machine import Phase
from monitor.alerting.outbox import load_states
from monitor.core.errors import StorageError
from monitor.storage import migrate
from monitor.storage.backend import engine_url
from monitor.storage.shapes import ShapeRow, load_shapes, save_learning
from monitor.storage.store import SCHEMA_VERSION, RunRecord, Store
from tests.old_schemas import VERSION_1, VERSION_2, VERSION_3, VERSION_5, for_postgres

QUOTA = '{"quota_remaining":7,"quota_limit":50}'
# (check, ts, ok, error_class, status, latency, reason, signals), in insertion (id) order.
RUNS = [
    ("api", 7300.0, 1, None, 200, 0.05, "HTTP 200", "{}"),
    ("api", 7360.0, 0, "http_5xx", 503, 0.5, "HTTP 503 (expected 2xx)", "{}"),
    ("api", 7420.0, 0, "rate_limited", 429, 0.1, "HTTP 429", '{"retry_after":30}'),
    ("api", 7420.0, 0, "timeout", None, None, "timed out after 5s", "{}"),  # the same ts
    ("quota-api", 7300.0, 1, None, 200, 0.07, "HTTP 200", QUOTA),
    ("quota-api", 7360.0, 1, None, 201, 0.07, "HTTP 200", "{}"),  # not what 201 would say
    ("quota-api", 7420.0, 1, None, None, None, "", "{}"),
]


def execute(url: str, script: str, rows: list[tuple[object, ...]] = ()) -> None:
    """Run an old version's `script` (then insert its `rows` of runs) as that version would."""
    engine = create_engine(engine_url(url))
    if engine.dialect.name == "postgresql":
        script = for_postgres(script)
    with engine.begin() as db:
        for statement in filter(str.strip, script.split(";")):
            db.execute(text(statement))
        if rows:
            names = ["check", "ts", "ok", "error_class", "status", "latency", "reason", "signals"]
            db.execute(
                text(
                    'INSERT INTO runs ("check", ts, ok, error_class, status, latency, reason, '
                    "signals) VALUES (:check, :ts, :ok, :error_class, :status, :latency, "
                    ":reason, :signals)"
                ),
                # As bool: Postgres takes no integer for a boolean, SQLite stores it as 1 or 0.
                [dict(zip(names, (*row[:2], bool(row[2]), *row[3:]), strict=True)) for row in rows],
            )
    engine.dispose()


def make_legacy(url: str, script: str) -> None:
    execute(url, script, RUNS)


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(engine_url(url))
    with engine.connect() as db:
        rows = [tuple(row) for row in db.execute(text(sql))]
    engine.dispose()
    return rows


def signals(run: RunRecord) -> str:
    """The signals of a run as the old layout stored them (RUNS)."""
    return json.dumps(run.signals, separators=(",", ":"))


def columns(url: str, table: str) -> list[str]:
    engine = create_engine(engine_url(url))
    names = [column["name"] for column in inspect(engine).get_columns(table)]
    engine.dispose()
    return names


def schema_names(url: str) -> set[str]:
    """Every table and index."""
    engine = create_engine(engine_url(url))
    found = inspect(engine)
    tables = set(found.get_table_names())
    indexes = {index["name"] or "" for table in tables for index in found.get_indexes(table)}
    engine.dispose()
    return tables | indexes


@pytest.mark.parametrize("script", [VERSION_1, VERSION_2], ids=["v1", "v2"])
def test_an_old_database_is_copied_into_the_new_layout_with_every_run_intact(
    db_url: str, script: str
) -> None:
    make_legacy(db_url, script)
    store = Store(db_url)
    store.open()
    try:
        stored = [
            (r.check, r.ts, int(r.ok), r.error_class, r.status, r.latency, r.reason, signals(r))
            for check in ("api", "quota-api")
            for r in store.runs_since(check, 0)
        ]
        assert stored == RUNS
        latest = store.latest_runs()
        # Of the two runs at the same ts, the one written last is the newest.
        assert (latest["api"].error_class, latest["quota-api"].reason) == ("timeout", "")
        assert store.consecutive_failures() == {"api": 3}
    finally:
        store.close()
    assert "check" not in columns(db_url, "runs")
    assert "check_id" in columns(db_url, "runs")
    [version] = query(db_url, "SELECT value FROM meta WHERE key = 'schema_version'")
    tables = schema_names(db_url)
    # The redundant reasons and empty signals are stored as NULL, not as text.
    [(nulls,)] = query(db_url, "SELECT count(*) FROM runs WHERE reason IS NULL")
    [(empty,)] = query(db_url, "SELECT count(*) FROM runs WHERE signals IS NULL")
    assert int(str(version[0])) == SCHEMA_VERSION == 7
    assert not tables & {"runs_v3", "rollups_v3", "ix_runs_check_ts"}
    assert (nulls, empty) == (3, 5)  # "HTTP <status>" of 200, 429, 200; five "{}"


def test_rollups_and_their_progress_marker_survive_the_upgrade(db_url: str) -> None:
    make_legacy(db_url, VERSION_2)
    store = Store(db_url)
    store.open()
    try:
        [api] = store.rollups.hours("api", 0)
        assert (api.check, api.hour, api.count, api.failures, api.timed) == ("api", 3600, 60, 1, 59)
        assert (api.p50, api.p95, api.p99, api.p95_ok) == (0.1, 0.2, 0.3, 0.19)
        # A check with rollups only (its raw runs long pruned) keeps them too.
        assert [r.hour for r in store.rollups.hours("old-api", 0)] == [0]
        assert store.rollups.rolled_up_until() == 7200
        assert store.rollups.checks_in("rollups") == ["api", "old-api"]
        assert store.rollups.checks_in("runs") == ["api", "quota-api"]
        assert list(store.rollups.hourly_p95s(0)) == [("api", 3600, 0.19), ("old-api", 0, 0.5)]
    finally:
        store.close()


def test_the_upgrade_logs_its_progress(
    db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_legacy(db_url, VERSION_2)
    monkeypatch.setattr(migrate, "CHECKS_PER_CHUNK", 1)
    store = Store(db_url)
    with caplog.at_level(logging.INFO, logger="monitor.storage.migrate"):
        store.open()
    store.close()
    progress = [r.getMessage() for r in caplog.records if "copied" in r.getMessage()]
    # Three checks (one with rollups only), one chunk each.
    assert [message.split(" (")[0] for message in progress] == [
        f"upgrading the database: runs of {n}/3 checks copied" for n in (1, 2, 3)
    ]


def test_an_upgrade_that_fails_half_way_leaves_the_old_database_as_it_was(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_legacy(db_url, VERSION_2)
    copy = migrate._copy_runs
    calls: list[int] = []

    def copy_then_fail(connection: object, first: int, last: int) -> int:
        calls.append(first)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return copy(connection, first, last)  # type: ignore[arg-type]

    monkeypatch.setattr(migrate, "CHECKS_PER_CHUNK", 1)
    monkeypatch.setattr(migrate, "_copy_runs", copy_then_fail)
    store = Store(db_url)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        store.open()
    store.close()

    assert "check" in columns(db_url, "runs")
    [version] = query(db_url, "SELECT value FROM meta WHERE key = 'schema_version'")
    tables = schema_names(db_url)
    [(count,)] = query(db_url, "SELECT count(*) FROM runs")
    assert version[0] == "2"
    assert not tables & {"checks", "runs_v3", "rollups_v3"}
    assert count == len(RUNS)

    monkeypatch.setattr(migrate, "_copy_runs", copy)
    retried = Store(db_url)
    retried.open()  # the next start upgrades it
    assert retried.count_runs() == len(RUNS)
    retried.close()


def test_a_current_database_opens_without_an_upgrade(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = Store(db_url)
    first.open()
    first.close()
    with caplog.at_level(logging.INFO, logger="monitor.storage.database"):
        second = Store(db_url)
        second.open()
        second.close()
    assert not [r for r in caplog.records if "upgraded" in r.getMessage()]


def test_a_version_3_database_gains_request_ids_without_a_copy(db_url: str) -> None:
    execute(db_url, VERSION_3)
    store = Store(db_url)
    store.open()
    try:
        before = store.runs_since("api", 0)
        failed = RunRecord("api", 7420.0, False, "http_5xx", 503, 0.4, "HTTP 503", {}, "req-7")
        store.write_runs([failed])
        after = store.runs_since("api", 0)
    finally:
        store.close()
    assert [(r.ts, r.ok, r.reason, r.request_id) for r in before] == [
        (7300.0, True, "HTTP 200", None),
        (7360.0, False, "HTTP 503 (expected 2xx)", None),
    ]
    assert after[-1] == failed
    assert columns(db_url, "runs")[-2:] == ["request_id", "slot"]
    [version] = query(db_url, "SELECT value FROM meta WHERE key = 'schema_version'")
    assert int(str(version[0])) == SCHEMA_VERSION


def test_a_run_of_a_slot_stored_already_is_left_out_and_runs_without_a_slot_are_not(
    store: Store,
) -> None:
    first = RunRecord("api", 10.0, True, None, 200, 0.1, "HTTP 200", {}, slot=10_000)
    again = RunRecord("api", 10.2, True, None, 200, 0.1, "HTTP 200", {}, slot=10_000)
    alone = RunRecord("api", 11.0, True, None, 200, 0.1, "HTTP 200", {})
    store.write_runs([first])
    store.write_runs([again, alone, alone])  # an unclaimed tie still gets its own seq
    assert [(r.ts, r.slot) for r in store.runs_since("api", 0)] == [
        (10.0, 10_000),
        (11.0, None),
        (11.0, None),
    ]


def test_only_a_failed_run_keeps_its_request_id_on_disk(db_url: str) -> None:
    store = Store(db_url)
    store.open()
    try:
        passed = RunRecord("api", 10.0, True, None, 200, 0.1, "HTTP 200", {}, "req-ok")
        failed = RunRecord("api", 20.0, False, "http_5xx", 502, 0.1, "HTTP 502", {}, "req-bad")
        store.write_runs([passed, failed])
        stored = [r.request_id for r in store.runs_since("api", 0)]
    finally:
        store.close()
    assert stored == [None, "req-bad"]


def test_a_version_4_database_keeps_its_firing_alerts_which_gain_no_cause(db_url: str) -> None:
    store = Store(db_url)
    store.open()
    store.close()
    # Version 4 as it was: alert_states without `cause`.
    execute(
        db_url,
        "ALTER TABLE alert_states DROP COLUMN cause;"
        "UPDATE meta SET value = '4' WHERE key = 'schema_version';"
        'INSERT INTO alert_states ("check", rule, phase, severity, since, fired_at, '
        "notified_severity, clear_count, lower_count, version) "
        "VALUES ('api', 'error_rate', 'firing', 'critical', 100, 160, 'critical', 0, 0, 3)",
    )
    store = Store(db_url)
    store.open()
    try:
        states = load_states(store.engine)
    finally:
        store.close()
    assert [(s.check, s.phase, s.notified_severity, s.cause, s.version) for s in states] == [
        ("api", Phase.FIRING, "critical", None, 3)
    ]
    assert "cause" in columns(db_url, "alert_states")


def test_a_version_5_database_gains_the_shapes_table_and_keeps_its_runs(db_url: str) -> None:
    execute(db_url, VERSION_5)
    reader = Store(db_url, read_only=True)
    with pytest.raises(StorageError, match="run `intmon run` once to upgrade it"):
        reader.open()
    reader.close()
    store = Store(db_url)
    store.open()
    try:
        runs = [(r.ts, r.ok) for r in store.runs_since("api", 0)]
        save_learning(
            store.engine, ShapeRow(check="api", learned='{"truncated":false,"fields":[]}')
        )
        kept = load_shapes(store.engine)["api"].learned
    finally:
        store.close()
    assert runs == [(7300.0, True), (7360.0, False)]
    assert kept == '{"truncated":false,"fields":[]}'
    [version] = query(db_url, "SELECT value FROM meta WHERE key = 'schema_version'")
    assert int(str(version[0])) == SCHEMA_VERSION
    reader = Store(db_url, read_only=True)
    reader.open()  # now current: the read-only open finds every table it reads
    reader.close()
