"""Bounded storage on real SQLite files and Postgres: hourly rollups, pruning, incremental
vacuum, upgrades."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from monitor.config.loader import parse_config
from monitor.core.clock import FakeClock
from monitor.core.units import hour_of
from monitor.signals.stats import quantile
from monitor.storage.store import RUNS, SCHEMA_VERSION, RunRecord, Store
from monitor.storage.upkeep import Maintenance, Retention
from monitor.storage.writer import Writer
from tests.old_schemas import VERSION_1
from tests.postgres import postgres_only, sqlite_only
from tests.waiting import eventually

HOUR = 3600
DAY = 86400
NOW = 1_700_002_800.0  # 2023-11-14 23:00 UTC, an hour boundary
H = hour_of(NOW) - 5 * HOUR  # an hour well in the past


def run(
    check: str, ts: float, ok: bool = True, latency: float | None = 0.05, status: int | None = None
) -> RunRecord:
    return RunRecord(
        check=check,
        ts=ts,
        ok=ok,
        error_class=None if ok else "http_5xx",
        status=status if status is not None else (200 if ok else 503),
        latency=latency,
        reason="x" * 200,  # big enough rows that pruning frees whole pages
        signals={},
    )


def maintenance(store: Store, writer: Writer, clock: FakeClock, **options: object) -> Maintenance:
    retention = Retention(raw=options.pop("raw", 7 * DAY), rollups=options.pop("rollups", 30 * DAY))
    return Maintenance(store, writer, retention, clock, **options)  # type: ignore[arg-type]


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(start=NOW)


@pytest.fixture
async def writer(store: Store) -> Writer:
    w = Writer(store)
    yield w
    await w.close()


def test_an_hour_rolls_up_to_exact_counts_and_quantiles(store: Store) -> None:
    healthy = [run("a", H + i, latency=i / 1000) for i in range(1, 101)]  # 1..100 ms
    failed = [
        run("a", H + 200, ok=False, latency=0.5),
        run("a", H + 300, ok=False, latency=0.2, status=429),
        run("a", H + 400, ok=False, latency=None, status=None),  # a timeout: never timed
    ]
    outside = [run("a", H - 1), run("a", H + HOUR)]
    store.write_runs([*healthy, *failed, *outside, run("b", H + 10, latency=0.3)])

    assert store.rollups.rollup(H) == 2
    [a] = store.rollups.hours("a", H, H + HOUR)
    assert (a.count, a.failures, a.rate_limited, a.timed) == (103, 3, 1, 102)
    # Linear interpolation between closest ranks over 1..100 ms, 200 ms and 500 ms.
    assert a.p50 == pytest.approx(0.0515)
    assert a.p95 == pytest.approx(0.09695)
    assert a.p99 == pytest.approx(0.199)
    # The baseline's figure: passing runs only, so the slow failures do not move it.
    assert a.p95_ok == pytest.approx(0.09505)
    [b] = store.rollups.hours("b", 0)
    assert (b.hour, b.count, b.failures, b.p50, b.p95_ok) == (H, 1, 0, 0.3, 0.3)


def test_hours_after_2038_are_rolled_up_and_read_back(store: Store) -> None:
    later = 2_200_000_400  # 2039: past 32-bit unix seconds
    store.write_runs([run("a", later + 5)])
    store.rollups.rollup(hour_of(later))
    assert [(r.hour, r.count) for r in store.rollups.hours("a", 0)] == [(hour_of(later), 1)]


def test_rolling_up_an_hour_again_replaces_it(store: Store) -> None:
    store.write_runs([run("a", H + 1), run("a", H + 2, ok=False)])
    store.rollups.rollup(H)
    store.rollups.rollup(H)
    assert [(r.count, r.failures) for r in store.rollups.hours("a", 0)] == [(2, 1)]
    store.write_runs([run("a", H + 3, ok=False)])
    store.rollups.rollup(H)
    assert [(r.count, r.failures) for r in store.rollups.hours("a", 0)] == [(3, 2)]


def test_only_full_hours_past_the_grace_are_rolled_up_and_late_runs_redo_their_hour(
    store: Store,
) -> None:
    assert store.rollups.hours_to_roll_up(NOW) == []  # nothing stored yet
    store.write_runs([run("a", H + 5), run("a", NOW - 30)])
    pending = store.rollups.hours_to_roll_up(NOW - 120)
    assert pending == [H, H + HOUR, H + 2 * HOUR, H + 3 * HOUR]  # not the hour before NOW
    for hour in pending:
        store.rollups.rollup(hour)
    assert store.rollups.rolled_up_until() == H + 4 * HOUR
    assert store.rollups.hours_to_roll_up(NOW - 120) == []
    # A backlog written after an outage lands in an hour already rolled up: it is redone.
    store.write_runs([run("a", H + 2 * HOUR + 7)])
    assert store.rollups.hours_to_roll_up(NOW - 120) == [H + 2 * HOUR]


def test_a_late_run_of_a_rolled_up_hour_is_still_rolled_up_after_a_restart(
    store: Store, db_url: str
) -> None:
    store.write_runs([run("a", H + 5), run("a", H + HOUR + 5)])
    for hour in store.rollups.hours_to_roll_up(NOW - 120):
        store.rollups.rollup(hour)
    store.write_runs([run("a", H + 7, ok=False)])  # a backlog, after the hour was rolled up
    store.close()  # the process stops before its next maintenance pass

    restarted = Store(db_url)
    restarted.open()
    pending = restarted.rollups.hours_to_roll_up(NOW - 120)
    assert pending[0] == H
    for hour in pending:
        restarted.rollups.rollup(hour)
    assert [(r.hour, r.count, r.failures) for r in restarted.rollups.hours("a", 0, H + HOUR)] == [
        (H, 2, 1)
    ]
    restarted.close()
    again = Store(db_url)
    again.open()  # redone once: a third process has nothing left to redo
    assert again.rollups.hours_to_roll_up(NOW - 120) == []
    again.close()


def test_a_run_another_replica_stores_for_an_hour_rolled_up_already_is_rolled_up_again(
    store: Store, db_url: str
) -> None:
    other = Store(db_url)  # another process on the same database, open since before the rollup
    other.open()
    store.write_runs([run("a", H + 5), run("a", H + HOUR + 5)])
    for hour in store.rollups.hours_to_roll_up(NOW - 120):
        store.rollups.rollup(hour)
    other.write_runs([run("a", H + 7, ok=False)])  # its backlog, flushed after the rollup
    assert store.rollups.hours_to_roll_up(NOW - 120) == [H]
    store.rollups.rollup(H)
    assert [(r.count, r.failures) for r in store.rollups.hours("a", H, H + HOUR)] == [(2, 1)]
    assert store.rollups.hours_to_roll_up(NOW - 120) == []
    other.close()


def test_a_run_stored_between_the_chunks_of_its_hours_rollup_has_the_hour_redone(
    store: Store, db_url: str
) -> None:
    other = Store(db_url)
    other.open()
    store.write_runs([run("a", H + 5), run("b", H + 5)])
    store.rollups.rollup(H, ["a"], first=True, last=False)
    other.write_runs([run("a", H + 9, ok=False)])  # a's chunk is done, the hour is not
    store.rollups.rollup(H, ["b"], first=False, last=True)
    assert store.rollups.rolled_up_until() == H + HOUR
    assert store.rollups.hours_to_roll_up(NOW - 120)[0] == H
    store.rollups.rollup(H)
    assert [(r.count, r.failures) for r in store.rollups.hours("a", H, H + HOUR)] == [(2, 1)]
    other.close()


@postgres_only
async def test_a_rollup_beginning_an_hour_waits_for_a_batch_of_that_hour_being_written(
    store: Store, db_url: str
) -> None:
    # Rolled up to H: a batch writing a run of H is not late, and must not slip past the rollup
    # of H that begins while it is still uncommitted.
    store.write_runs([run("a", H - 5), run("a", H + 5)])
    store.rollups.rollup(H - HOUR)
    other = Store(db_url)
    other.open()
    with other.engine.begin() as batch:  # what Store.write_runs does, held open
        other.rollups.mark_late(batch, [H + 9])
        ids = other.checks.lookup(batch, ["a"])
        batch.execute(insert(RUNS), [run("a", H + 9, ok=False).as_row(ids["a"], 0)])
        rolling = asyncio.create_task(asyncio.to_thread(store.rollups.rollup, H))
        await eventually("the rollup waiting for the batch", lambda: waiting_on_a_lock(store))
        assert not rolling.done()
    await rolling
    assert [(r.count, r.failures) for r in store.rollups.hours("a", H, H + HOUR)] == [(2, 1)]
    other.close()


def waiting_on_a_lock(store: Store) -> bool:
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    with store.engine.connect() as connection:
        return bool(connection.execute(text(query)).scalar())


async def test_maintenance_rolls_up_every_full_hour_once(
    store: Store, writer: Writer, fake_clock: FakeClock
) -> None:
    store.write_runs([run(c, H + i * 600) for c in "abc" for i in range(30)])  # 5 h, 6 runs each
    # One check per step: an hour is only marked done after its last chunk.
    keeper = maintenance(store, writer, fake_clock, grace=120.0, rollup_checks=1)
    # The hour that just ended waits out the grace: runs started in it may still be landing.
    assert (await keeper.run_once()).hours_rolled_up == 4
    assert (await keeper.run_once()).hours_rolled_up == 0
    fake_clock.advance(120)
    assert (await keeper.run_once()).hours_rolled_up == 1
    for check in "abc":
        assert [(r.hour, r.count) for r in store.rollups.hours(check, 0)] == [
            (H + i * HOUR, 6) for i in range(5)
        ]


async def test_pruning_removes_exactly_the_runs_older_than_retention_in_batches(
    store: Store, writer: Writer, fake_clock: FakeClock
) -> None:
    cutoff = NOW - 2 * DAY
    old = [run(c, cutoff - 1 - i * 60) for c in ("a", "b") for i in range(23)]
    kept = [run(c, cutoff + i * 60) for c in ("a", "b") for i in range(5)]
    store.write_runs([*old, *kept])
    store.rollups.rollup(hour_of(NOW) - HOUR)  # rolled up to now: only retention limits pruning

    assert store.rollups.prune_runs(cutoff, 10, ["a", "b"]) == 10  # one batch, at most `limit` rows
    keeper = maintenance(store, writer, fake_clock, raw=2 * DAY, batch=10)
    report = await keeper.run_once()

    assert report.runs_pruned == 36
    remaining = sorted((r.check, r.ts) for c in ("a", "b") for r in store.runs_since(c, 0))
    assert remaining == sorted((r.check, r.ts) for r in kept)


async def test_raw_runs_of_hours_not_rolled_up_are_never_pruned(
    store: Store, writer: Writer, fake_clock: FakeClock
) -> None:
    store.write_runs([run("a", NOW - 9 * DAY), run("a", NOW - 8 * DAY)])
    keeper = maintenance(store, writer, fake_clock, raw=DAY)

    def broken(hour: int, checks: list[str] | None = None) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    store.rollups.rollup = broken  # type: ignore[method-assign]
    errors: list[int] = []
    keeper.on_error = lambda: (errors.append(1), keeper.stop())  # type: ignore[func-returns-value]
    await keeper.run()
    assert errors == [1]
    assert store.count_runs("a") == 2


async def test_rollups_older_than_their_retention_are_pruned(
    store: Store, writer: Writer, fake_clock: FakeClock
) -> None:
    hours = [hour_of(NOW) - d * DAY for d in (40, 31, 29, 1)]
    store.write_runs([run("a", h + 1) for h in hours])
    keeper = maintenance(store, writer, fake_clock, raw=60 * DAY, rollups=30 * DAY, batch=1)
    report = await keeper.run_once()
    assert report.rollups_pruned == 2
    assert [r.hour for r in store.rollups.hours("a", 0)] == hours[2:]
    assert store.count_runs("a") == 4  # raw retention is longer here


def freelist(db_path: Path) -> tuple[int, int]:
    with sqlite3.connect(db_path) as db:
        return (
            db.execute("PRAGMA freelist_count").fetchone()[0],
            db.execute("PRAGMA page_count").fetchone()[0],
        )


@sqlite_only
async def test_incremental_vacuum_gives_pruned_pages_back(
    store: Store, writer: Writer, fake_clock: FakeClock, db_path: Path
) -> None:
    store.write_runs([run("a", NOW - 3 * DAY + i) for i in range(3000)])
    store.write_runs([run("a", NOW - 60 + i / 100) for i in range(50)])
    store.rollups.rollup(hour_of(NOW) - HOUR)
    _, pages_before = freelist(db_path)
    store.rollups.prune_runs(NOW - DAY, 10_000, ["a"])
    free_after_prune, _ = freelist(db_path)
    assert free_after_prune > 50

    keeper = maintenance(store, writer, fake_clock, raw=DAY, vacuum_pages=20)
    assert await keeper.vacuum() == 0
    free, pages = freelist(db_path)
    assert free == 0
    assert pages <= pages_before - free_after_prune
    assert store.count_runs("a") == 50


@sqlite_only
def test_a_new_database_uses_incremental_auto_vacuum(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL


async def test_a_version_1_database_opens_upgrades_and_gets_its_history_rolled_up(
    db_path: Path, fake_clock: FakeClock
) -> None:
    with sqlite3.connect(db_path) as db:
        db.executescript(VERSION_1)
        db.executemany(
            "INSERT INTO runs (\"check\", ts, ok, latency, reason, signals) VALUES (?, ?, 1, ?, '', '{}')",
            [("a", H + i, 0.01 * i) for i in range(1, 11)],
        )
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    store = Store(f"sqlite:///{db_path}")
    store.open()
    try:
        with sqlite3.connect(db_path) as db:
            version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            assert int(version[0]) == SCHEMA_VERSION
            # Small enough for the one-time VACUUM that switches auto_vacuum on.
            assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert store.count_runs("a") == 10
        writer = Writer(store)
        report = await maintenance(store, writer, fake_clock).run_once()
        await writer.close()
        # From the oldest run's hour to the last one past the grace.
        assert report.hours_rolled_up == 4
        [rollup] = store.rollups.hours("a", 0)
        assert (rollup.hour, rollup.count, rollup.p50) == (H, 10, pytest.approx(0.055))
    finally:
        store.close()
    reopened = Store(f"sqlite:///{db_path}")
    reopened.open()  # an upgraded database opens as it is
    assert reopened.rollups.rolled_up_until() == hour_of(NOW) - HOUR
    reopened.close()


@postgres_only
async def test_on_postgres_maintenance_vacuums_nothing_and_reports_the_database_size(
    store: Store, writer: Writer, fake_clock: FakeClock
) -> None:
    store.write_runs([run("a", NOW - 3 * DAY + i) for i in range(100)])
    report = await maintenance(store, writer, fake_clock, raw=DAY).run_once()
    assert report.runs_pruned == 100
    assert report.free_pages == 0  # autovacuum makes the space reusable, the server's business
    with store.engine.connect() as connection:
        size = connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
    assert report.size_bytes == size > 1_000_000


async def test_the_writer_keeps_writing_while_maintenance_prunes(
    store: Store, writer: Writer, fake_clock: FakeClock
) -> None:
    store.write_runs([run("old", NOW - 3 * DAY + i) for i in range(5000)])
    store.rollups.rollup(hour_of(NOW) - HOUR)
    keeper = maintenance(store, writer, fake_clock, raw=DAY, batch=25)  # 200 batches
    task = asyncio.create_task(keeper.run_once())
    await asyncio.sleep(0)  # the first batch is on the writer's thread now

    for i in range(10):
        writer.record(run("live", NOW + i))
    assert await writer.flush_once()
    # Written between two prune batches, not after the whole pass.
    assert store.count_runs("live") == 10
    assert not task.done()
    assert store.count_runs("old") > 0

    report = await task
    assert report.runs_pruned == 5000
    assert store.count_runs("old") == 0


async def test_the_loop_runs_a_pass_every_interval_until_stopped(
    store: Store, writer: Writer, fake_clock: FakeClock
) -> None:
    keeper = maintenance(store, writer, fake_clock, interval=300.0)
    passes: list[float] = []

    def on_report(_report: object) -> None:
        passes.append(fake_clock.time())
        if len(passes) == 3:
            keeper.stop()

    keeper.on_report = on_report
    await keeper.run()
    assert passes == [NOW, NOW + 300, NOW + 600]


def test_baseline_p95s_from_rollups_equal_those_from_raw_healthy_runs(store: Store) -> None:
    runs = [
        run(check, H + h * HOUR + i * 97, ok=i % 9 != 0, latency=((i * 37) % 101) / 1000)
        for check in ("a", "b")
        for h in range(3)
        for i in range(37)
    ]
    store.write_runs(runs)
    for h in range(3):
        store.rollups.rollup(H + h * HOUR)
    from_raw = [
        (check, hour, quantile([latency for _, _, latency in group], 0.95))
        for (check, hour), group in itertools.groupby(
            store.healthy_latencies(0), key=lambda row: (row[0], hour_of(row[1]))
        )
    ]
    assert list(store.rollups.hourly_p95s(0)) == from_raw
    assert len(from_raw) == 6


def test_retention_is_configured_with_durations_and_defaults_to_a_week_and_400_days() -> None:
    default = parse_config("").monitor.retention
    assert (default.raw, default.rollups) == (7 * DAY, 400 * DAY)
    config = parse_config("monitor:\n  retention: {raw: 3d, rollups: 90d}\n")
    assert (config.monitor.retention.raw, config.monitor.retention.rollups) == (3 * DAY, 90 * DAY)
