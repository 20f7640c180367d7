"""Outages are quiet and true: a database or notifier that is down logs one warning when it
starts and one when it ends, is visible as a metric, and never pages anyone falsely.

The database is made unavailable by another connection holding SQLite's write lock; retries
are a few milliseconds apart, so many attempts fail in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from monitor.alerting.notify import ID_FIELD
from monitor.alerting.outbox import commit
from monitor.core.clock import FakeClock
from monitor.storage.store import RunRecord, Store
from monitor.storage.writer import Writer
from tests.receiver import Receiver
from tests.test_alerting_acceptance import Target, check, make_config, running
from tests.test_delivery import delivering, message
from tests.waiting import eventually


@contextlib.contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process's write transaction: every write of intmon is refused until it ends."""
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[Collected]:
    """What reaches the root logger's handlers (the daemon's stderr) at warning and above.
    Not caplog: pytest also hooks loggers that do not propagate, like Apprise's here."""
    handler = Collected()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def loud(logged: Collected) -> list[logging.LogRecord]:
    return logged.records


def run(check: str, ts: float) -> RunRecord:
    return RunRecord(check, ts, True, None, 200, 0.01, None, {})


def runs_stored(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM runs").fetchone()[0])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    # A short busy timeout: a refused write fails in 10 ms rather than waiting 5 s.
    s = Store(f"sqlite:///{tmp_path / 'm.db'}", busy_timeout=0.01)
    s.open()
    yield s
    s.close()


async def test_a_database_outage_logs_two_lines_and_loses_no_result(
    store: Store, tmp_path: Path, logged: Collected
) -> None:
    clock, errors, changes = FakeClock(), [], []
    writer = Writer(
        store,
        on_error=lambda: errors.append(1),
        flush_interval=0.001,
        max_backoff=0.002,
        clock=clock,
        on_change=changes.append,
    )
    writer.start()
    with locked(tmp_path / "m.db"):
        for i in range(30):
            writer.record(run("api", clock.time() + i))
            await asyncio.sleep(0.002)
        await eventually("many refused writes", lambda: len(errors) >= 20)
        clock.advance(20)
    await eventually("the results are written", lambda: not writer.pending)
    await writer.close()
    assert runs_stored(tmp_path / "m.db") == 30
    assert changes == [False, True]
    start, end = (r.getMessage() for r in loud(logged))
    assert start.startswith("database unavailable: OperationalError: database is locked; ")
    assert end.startswith(f"database available again after 20s: {len(errors)} attempts failed; ")
    assert end.endswith("30 results waited and are written now")
    assert not [r for r in logged.records if r.exc_info]


async def test_past_the_cap_the_oldest_results_are_dropped_counted_and_logged_once(
    store: Store, tmp_path: Path, logged: Collected
) -> None:
    drops: list[int] = []
    writer = Writer(store, flush_interval=0.001, max_backoff=0.002, max_pending=5,
                    on_drop=drops.append)  # fmt: skip
    writer.start()
    with locked(tmp_path / "m.db"):
        for i in range(12):
            writer.record(run("api", 1000.0 + i))
        await eventually("a refused write", lambda: not writer.available)
    await eventually("the rest is written", lambda: not writer.pending)
    await writer.close()
    assert drops == [1, 2, 3, 4, 5, 6, 7] and writer.dropped == 7
    with sqlite3.connect(tmp_path / "m.db") as connection:
        kept = [ts for (ts,) in connection.execute("SELECT ts FROM runs ORDER BY ts")]
    assert kept == [1007.0, 1008.0, 1009.0, 1010.0, 1011.0]
    dropping = [r for r in loud(logged) if "dropping the oldest" in r.getMessage()]
    assert len(dropping) == 1 and dropping[0].levelno == logging.ERROR
    assert loud(logged)[-1].getMessage().endswith("5 results waited and are written now, "
                                                  "7 older ones were dropped")  # fmt: skip


async def test_results_dropped_while_a_batch_is_written_never_take_the_batch_with_them(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, write = threading.Event(), store.write_runs
    monkeypatch.setattr(store, "write_runs", lambda batch: (gate.wait(5), write(batch)))
    writer = Writer(store, batch_size=2, max_pending=3)
    writer.record(run("api", 0.0))
    writer.record(run("api", 1.0))
    flushing = asyncio.create_task(writer.flush_once())
    await asyncio.sleep(0)  # the batch [0, 1] is on its way
    for i in range(2, 7):
        writer.record(run("api", float(i)))
    gate.set()
    assert await flushing
    await writer.close()
    with sqlite3.connect(tmp_path / "m.db") as connection:
        kept = [ts for (ts,) in connection.execute("SELECT ts FROM runs ORDER BY ts")]
    assert kept == [0.0, 1.0, 4.0, 5.0, 6.0] and writer.dropped == 2


async def test_a_notifier_outage_logs_two_lines_and_delivers_once_after_it(
    store: Store, receiver: Receiver, logged: Collected
) -> None:
    clock, changes, results = FakeClock(), [], []
    hooks = {
        "on_result": lambda notifier, result: results.append(result),
        "on_notifier": lambda notifier, up: changes.append((notifier, up)),
    }
    receiver.failing = True
    async with delivering(store, receiver, clock, **hooks) as (writer, delivery):
        await writer.submit(commit, store.engine, [], [message("a/FIRING")])
        for _ in range(12):
            assert await delivery.run_once() == 0
            clock.advance(30)  # the longest backoff: every pass is an attempt
        receiver.failing = False
        assert await delivery.run_once() == 1
        assert await delivery.run_once() == 0
    assert (receiver.refused, len(receiver.posts), results.count("failure")) == (12, 1, 12)
    assert changes == [("chat", False), ("chat", True)]
    start, end = (r.getMessage() for r in loud(logged))
    assert start == (
        "notifier 'chat' unavailable: Failed to send JSON POST notification: Servers are "
        "overloaded., error=503.; notifications stay in the outbox and are retried (at most "
        "30 s apart) until they expire"
    )
    assert end == (
        "notifier 'chat' available again after 6m: 12 attempts failed; "
        "1 notification waited and go out now"
    )
    assert not [r for r in logged.records if r.exc_info]


async def test_a_database_outage_under_a_running_daemon_is_quiet_and_pages_nobody(
    tmp_path: Path, serve: Callable[..., asyncio.Future[str]], receiver: Receiver,
    logged: Collected,
) -> None:  # fmt: skip
    target = Target()
    target.url = await serve(target.app())
    db = tmp_path / "m.db"
    config = make_config(db, {"chat": receiver}, [check(target, "api", interval="50ms")])
    async with running(config, store=Store(config.monitor.database_url, 0.01)) as rig:
        writer = rig.daemon.writer
        writer.max_backoff = 0.005  # many attempts in a short outage
        rig.daemon.alerter.delivery.poll = 0.005
        await eventually("a run stored", lambda: runs_stored(db) > 0)
        with locked(db):
            await eventually("many refused writes", lambda: rig.sample(
                "intmon_db_write_errors_total") >= 20)  # fmt: skip
            assert rig.sample("intmon_db_up") == 0
            writer.max_pending = 3
            await eventually("results dropped", lambda: rig.sample(
                "intmon_db_dropped_rows_total") >= 2)  # fmt: skip
            await eventually("the notifiers told", lambda: len(receiver.posts) == 1)
            writer.max_pending = 1_000_000  # a cap of 3 overflows even while writes succeed
        await eventually("the backlog written", lambda: writer.available and not writer.pending)
        assert rig.sample("intmon_db_up") == 1
    assert len(receiver.posts) == 1, receiver.posts
    (post,) = receiver.posts  # no alert, only intmon's own news
    assert post["title"] == "intmon: results are being dropped" and post[ID_FIELD]
    # A 50 ms interval on a loaded machine may overrun a slot; that is the scheduler's news.
    lines = [r.getMessage() for r in loud(logged) if r.name != "monitor.engine.daemon"]
    assert len(lines) == 3, lines
    start, dropping, end = lines
    assert start.startswith("database unavailable: OperationalError: database is locked")
    assert dropping.startswith("3 results wait for the database: dropping the oldest")
    assert re.fullmatch(r"database available again after \d+ms: \d+ attempts failed; "
                        r"\d results waited and are written now, \d+ older ones were dropped",
                        end)  # fmt: skip
    assert not [r for r in logged.records if r.exc_info]


async def test_a_throttle_pause_met_during_an_outage_holds_in_memory_without_a_traceback(
    tmp_path: Path, serve: Callable[..., asyncio.Future[str]], receiver: Receiver,
    logged: Collected,
) -> None:  # fmt: skip
    limit = asyncio.Event()  # 200s until the database is locked, then a 429 and a pause

    async def limited(_: web.Request) -> web.Response:
        if not limit.is_set():
            return web.json_response({"status": "ok"})
        return web.Response(status=429, headers={"Retry-After": "60"})

    app = web.Application()
    app.router.add_get("/api/api", limited)
    target = Target(url=await serve(app))
    db = tmp_path / "m.db"
    config = make_config(db, {"chat": receiver}, [check(target, "api", interval="50ms")])
    async with running(config, store=Store(config.monitor.database_url, 0.01)) as rig:
        await eventually("a run stored", lambda: runs_stored(db) > 0)
        with locked(db):
            limit.set()
            await eventually(
                "the pause", lambda: rig.daemon.throttle.state("check:api") is not None
            )
            # The writer's thread is first in, first out: once two more of its batches were
            # refused after the pause, the pause's own write (queued before them) was too.
            seen = rig.daemon.writer.outage.failures
            await eventually("later writes refused", lambda: rig.daemon.writer.outage.failures
                             >= seen + 2)  # fmt: skip
    assert not [r for r in logged.records if r.exc_info or r.levelno >= logging.ERROR]
