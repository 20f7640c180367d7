"""Replicas hear joins and leaves at once (Postgres LISTEN/NOTIFY): what is announced, that a
burst makes one renewal, that the listener outlives a restart of Postgres, and that its errors
are logged once per outage and never with the password."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

import psycopg
import pytest
from sqlalchemy import text

from monitor.cluster import replica as replica_module
from monitor.cluster.leases import CHANNEL, leave, renew
from monitor.cluster.replica import Replica
from monitor.core.clock import FakeClock
from monitor.storage.backend import notify
from monitor.storage.listener import Listener
from monitor.storage.store import Store
from tests.postgres import PostgresServer, postgres_only, sqlite_only
from tests.test_cluster import replica_on, row
from tests.waiting import eventually

Record = Callable[[str, object], None]


def live(replica: Replica) -> list[str]:
    return [r.id for r in replica.replicas]


@contextlib.asynccontextmanager
async def running(store: Store, name: str, lease: float) -> AsyncIterator[Replica]:
    """A replica that has joined, renews as the daemon's does and listens; it leaves after."""
    replica = replica_on(store, name, lease)
    listener = replica.listener
    assert listener is not None
    await replica.join()
    renewing = asyncio.create_task(replica.run())
    try:
        await eventually(f"{name} listening", lambda: listener.listening)
        yield replica
    finally:
        await replica.leave()
        await renewing
        await replica.writer.close()


@postgres_only
def test_a_join_a_rejoin_and_a_leave_are_announced_and_a_renewal_is_not(
    store: Store, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as listening:
        listening.execute(f"LISTEN {CHANNEL}")
        renew(store.engine, row("a"), lease=30.0)  # joins
        renew(store.engine, row("a"), lease=30.0)  # renews: nothing to tell
        renew(store.engine, row("b"), lease=30.0)  # joins
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE replicas SET lease_until = 0 WHERE id = 'a'"))
        renew(store.engine, row("a"), lease=30.0)  # its lease had run out: joins again
        with store.engine.begin() as connection:
            connection.execute(text("DELETE FROM replicas WHERE id = 'b'"))
        renew(store.engine, row("b"), lease=30.0)  # its row was gone: joins again
        leave(store.engine, "a")
        heard = [note.payload for note in listening.notifies(timeout=5.0, stop_after=5)]
    assert heard == ["a", "b", "a", "b", "a"]


@sqlite_only
async def test_on_sqlite_a_replica_listens_to_nothing(store: Store) -> None:
    replica = replica_on(store, "solo", lease=5.0)
    assert replica.listener is None
    await replica.run()  # returns at once: one process, nothing to renew or hear
    await replica.leave()
    await replica.writer.close()


@postgres_only
async def test_a_burst_of_notifications_makes_one_renewal_not_one_each(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="monitor.cluster.replica")

    def renewals() -> list[list[str]]:  # what each renewal at once had heard
        said = [r.getMessage() for r in caplog.records]
        return [m.split(": ", 1)[1].split(", ") for m in said if "renews at once: " in m]

    async with running(store, "a", lease=30.0):
        await eventually("the renewal once listening", lambda: renewals() == [["listening"]])
        names = [f"r{i:02d}" for i in range(20)]
        with store.engine.begin() as connection:
            for name in names:
                notify(connection, CHANNEL, name)
        await eventually("all twenty heard", lambda: sum(map(len, renewals()[1:])) == 20)
        # One renewal, or two if some arrived while the first was under way; not twenty.
        assert 1 <= len(renewals()[1:]) <= 2, renewals()
        assert sorted(n for news in renewals()[1:] for n in news) == names


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of the test's own, to stop and start: the session's is shared."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_after_postgres_restarts_the_listener_reconnects_and_still_hears_a_leave(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture, record_property: Record
) -> None:
    stores = [Store(own_postgres.url("postgres")) for _ in range(2)]
    for store in stores:
        store.open()
    b = replica_on(stores[1], "b", lease=30.0)
    try:
        async with running(stores[0], "a", lease=30.0) as a:
            listener = a.listener
            assert listener is not None
            await b.join()
            await eventually("a hearing b join", lambda: live(a) == ["a", "b"], within=2.0)

            await asyncio.to_thread(own_postgres.pg_ctl, "stop")
            await eventually("a's listener losing its connection", lambda: not listener.listening)
            await asyncio.to_thread(own_postgres.pg_ctl, "start")
            await eventually("a listening again", lambda: listener.listening, within=15.0)

            await b.leave()
            # A renewal is 10 s away: only the notification can tell a this soon.
            took = await eventually("a hearing b leave", lambda: live(a) == ["a"], within=2.0)
            record_property("leave_heard_after_restart_s", round(took, 3))
    finally:
        await b.writer.close()
        for store in stores:
            store.close()
    said = [r for r in caplog.records if r.name == "monitor.storage.listener"]
    warnings = [r.getMessage() for r in said if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # when it went, when it came back
    assert "unavailable" in warnings[0] and "available again" in warnings[1]


async def test_a_listener_that_cannot_connect_logs_one_outage_and_never_the_password(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="monitor.storage.listener")
    password = "pg-password-never-shown"
    # No database has this name, and the server's refusal quotes it: an error may quote
    # anything it was given, so what is logged is masked with the engine's password.
    store = Store(f"postgresql://postgres:{password}@127.0.0.1:{postgres.port}/{password}")
    listener = Listener(
        store.engine,
        CHANNEL,
        FakeClock(),
        on_message=lambda payload: None,
        on_listening=lambda: None,
        retry_base=0.01,
        retry_cap=0.05,
    )
    task = asyncio.create_task(listener.run())
    try:
        await eventually("three failed attempts", lambda: listener.outage.failures >= 3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()
    said = [r for r in caplog.records if r.name == "monitor.storage.listener"]
    warnings = [r.getMessage() for r in said if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert 'database "***" does not exist' in warnings[0], warnings[0]
    assert len(said) >= 3
    assert all(password not in r.getMessage() for r in said)


@postgres_only
async def test_a_replica_that_leaves_while_renewing_stays_gone(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal under way (one a notification asked for, say) must not put the row back
    after the leave deleted it: the others would then wait a whole lease for a ghost. The two
    race in worker threads, so the race is run several times."""
    caplog.set_level(logging.DEBUG, logger="monitor.cluster.replica")
    for attempt in range(20):
        name = f"r{attempt:02d}"
        replica = replica_on(store, name, lease=30.0)
        await replica.join()
        running = asyncio.create_task(replica.run())
        replica.renew_soon("a peer")
        started = f"replica {name} renews at once: a peer"
        await eventually("the renewal", lambda said=started: said in caplog.text, poll=0)
        await replica.leave()
        await running
        await replica.writer.close()
        with store.engine.connect() as connection:
            left = connection.execute(text("SELECT id FROM replicas")).scalars().all()
        assert left == [], (attempt, left)


@postgres_only
async def test_after_an_outage_what_is_heard_waits_for_the_settling_look(
    store: Store, db_url: str
) -> None:
    """After an outage the replicas come back one by one; the first renewal keeps the share
    and the look after it (2 s here) divides with all who are back. A join heard in between
    must not start that division early: with three or more replicas it would move checks to
    the ones back first and then back again."""
    mine = Store(db_url, busy_timeout=0.2)  # a locked table fails a renewal in 0.2 s
    b = replica_on(store, "b", lease=3.0)
    try:
        async with running(mine, "a", lease=3.0) as a:
            # The database refuses a's renewals (as while it is away); the listener stays.
            with psycopg.connect(db_url) as blocker:
                blocker.execute("LOCK TABLE replicas IN ACCESS EXCLUSIVE MODE")
                await eventually("a's renewal failing", lambda: not a.reachable)
            await eventually("a's first renewal after it", lambda: a.reachable)
            back_at = time.monotonic()
            await b.join()  # announced at once, and a hears it
            await eventually("a seeing b", lambda: live(a) == ["a", "b"])
            waited = time.monotonic() - back_at
            assert waited >= 1.5, waited  # the settling look; at once, it would be ~0.05 s
            await b.leave()
    finally:
        await b.writer.close()
        mine.close()


@postgres_only
async def test_a_leave_waits_only_so_long_for_a_renewal_the_database_holds_up(
    db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop must go on (its pending results are written after the leave) even while a
    renewal hangs on the database: the leave waits LEAVE_WAIT for it, not for ever."""
    monkeypatch.setattr(replica_module, "LEAVE_WAIT", 0.5)
    caplog.set_level(logging.DEBUG, logger="monitor.cluster.replica")
    mine = Store(db_url, busy_timeout=60.0)  # a renewal waits as long as the table is locked
    mine.open()
    a = replica_on(mine, "a", lease=30.0)
    await a.join()
    running = asyncio.create_task(a.run())
    try:
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE replicas IN ACCESS EXCLUSIVE MODE")
            a.renew_soon("a peer")
            await eventually("the renewal", lambda: "renews at once: a peer" in caplog.text)
            leaving = asyncio.create_task(a.leave())
            took = await eventually(
                "the leave giving up on it", lambda: "leaves while a renewal" in caplog.text
            )
            assert took < 2.0, took
        await leaving  # the lock is gone: the renewal, then the delete
        with mine.engine.connect() as connection:
            assert connection.execute(text("SELECT id FROM replicas")).all() == []
    finally:
        await a.leave()
        await running
        await a.writer.close()
        mine.close()
