"""Replicas through a Postgres outage longer than their lease: they keep running their own
checks with the results waiting in memory, none is lost or stored twice, the alert that
started during the outage pages once, and the cluster re-forms without moving a check.

The server is this module's own (the session's is shared by every other test), stopped and
started for real; the outage lasts a few leases of real time, which is the point."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import aiohttp
import pytest
from sqlalchemy import create_engine, text

from monitor.cluster.replica import Replica
from monitor.config.settings import ReplicaSettings
from monitor.core.clock import FakeClock
from monitor.metrics import Metrics
from monitor.storage.backend import engine_url
from monitor.storage.store import Store
from monitor.storage.writer import Writer
from tests.cluster import Replicas, Target, stored_slots
from tests.postgres import PostgresServer
from tests.receiver import Receiver
from tests.test_cluster_acceptance import CHECKS, EVERYTHING, config_text, target  # noqa: F401
from tests.waiting import eventually

LEASE = 1.5  # seconds: retries every 0.5 s while the database is away


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def outage_db(server: PostgresServer) -> Iterator[str]:
    with server.database() as url:
        yield url


async def ready(url: str) -> int:
    async with aiohttp.ClientSession() as client, client.get(f"{url}/readyz") as response:
        return response.status


async def test_an_outage_longer_than_the_lease_loses_no_run_and_pages_once(
    server: PostgresServer,
    outage_db: str,
    target: Target,  # noqa: F811
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    timing = {"lease": f"{LEASE}s", "interval": "200ms", "outage_hold": "30s"}
    replicas = Replicas(lambda r: config_text(outage_db, target, receiver, r, **timing), EVERYTHING)
    caplog.set_level(logging.INFO, logger="monitor.cluster.replica")
    try:
        for name in ("r1", "r2"):
            await replicas.start(name)
        await eventually("two replicas dividing", lambda: replicas.settled("r1", "r2"))
        shares = {name: d.replica.owned for name, d in replicas.daemons.items()}
        caplog.clear()
        # Each replica claims its slots in order, one batch at a time: once each has a claim
        # of a slot after the division in the table, no claim from before it is on its way.
        # (One that the outage answered would run a slot its new owner runs too: stored once,
        # by the unique key, but requested twice, as the README says of outages.)
        engine = create_engine(engine_url(outage_db))
        divided = round(time.time() * 1000)

        def claimed_since() -> bool:
            query = text("SELECT count(DISTINCT replica) FROM slot_claims WHERE slot > :t")
            with engine.connect() as connection:
                return connection.execute(query, {"t": divided}).scalar_one() == 2

        await eventually("claims after the division", claimed_since, poll=0.05)
        engine.dispose()

        await asyncio.to_thread(server.pg_ctl, "stop")
        down = time.monotonic()
        target.broken.add("/flaky")  # fails while nothing can be recorded
        await asyncio.sleep(3 * LEASE)  # the outage: three leases of real time
        statuses = [await ready(url) for url in replicas.urls.values()]
        await asyncio.to_thread(server.pg_ctl, "start")
        up = time.monotonic()

        assert statuses == [503, 503]
        # Past the lease, each replica still ran its own checks, every interval.
        for name in CHECKS:
            late = [t for t in target.hits[f"/{name}"] if down + LEASE + 0.5 < t < up]
            assert len(late) >= 5, (name, len(late))

        await eventually(
            "results written and both replicas back",
            lambda: (
                replicas.settled("r1", "r2")
                and all(d.writer.available and d.replica.ready for d in replicas.daemons.values())
            ),
            within=10.0,
        )
        assert [await ready(url) for url in replicas.urls.values()] == [200, 200]
        # Re-formed with no check moved, not even for a moment.
        assert {name: d.replica.owned for name, d in replicas.daemons.items()} == shares
        moved = [r.getMessage() for r in caplog.records if " runs " in r.getMessage()]
        assert moved == []

        def pages() -> list[str]:
            posts = [p["title"] for p in receiver.posts if "flaky error_rate" in p["title"]]
            return [title.split(":")[0] for title in posts]

        await eventually("FIRING", lambda: "FIRING" in pages())
        target.broken.clear()
        await eventually("RESOLVED", lambda: "RESOLVED" in pages())
        await asyncio.sleep(0.5)  # time for a duplicate to show up, if there were one
        assert pages() == ["FIRING", "RESOLVED"]
        report = await replicas.cluster("r1")
        assert [r["id"] for r in report["replicas"]] == ["r1", "r2"]  # type: ignore[index]
    finally:
        await replicas.close()

    twice, stored = stored_slots(outage_db, "c")
    assert twice == []
    # Every request sent to the 30 checks, before, during and after the outage, is stored.
    assert stored == sum(len(target.hits[f"/{n}"]) for n in CHECKS)


@pytest.mark.parametrize("hold", [0.0, 30.0])
async def test_without_the_database_a_replica_runs_its_checks_until_the_hold_runs_out(
    server: PostgresServer, outage_db: str, hold: float
) -> None:
    now = [0.0]
    store = Store(outage_db)
    store.open()
    writer = Writer(store)
    replica = Replica(
        ReplicaSettings(id="solo", lease=0.3, outage_hold=hold),
        writer,
        FakeClock(),
        Metrics(),
        clustered=True,
        digest="d",
        checks=["api"],
        on_gain=lambda names: asyncio.sleep(0),
        monotonic=lambda: now[0],
    )
    await replica.join()
    renewing = asyncio.create_task(replica.run())
    await asyncio.to_thread(server.pg_ctl, "stop")
    try:
        await eventually("a failed renewal", lambda: not replica.reachable)
        assert not replica.ready
        now[0] += 0.3  # past the lease
        assert replica.may_run() is (hold > 0)
        assert await replica.claim("api", 10.0) == ((True, 10_000) if hold else (False, None))
        now[0] += hold
        assert not replica.may_run()
    finally:
        await asyncio.to_thread(server.pg_ctl, "start")
        await replica.leave()
        await renewing
        await writer.close()
        store.close()
