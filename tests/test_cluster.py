"""Replicas on one database: the division of the checks, slot claims and leases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp import web

from monitor.cluster.division import config_digest, leader, owned_by, owner
from monitor.cluster.leases import ReplicaRow, claim, leave, renew
from monitor.cluster.replica import Replica
from monitor.config.loader import parse_config
from monitor.config.settings import ReplicaSettings
from monitor.core.clock import FakeClock, SystemClock
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.store import Store
from monitor.storage.writer import Writer
from tests.postgres import postgres_only
from tests.statements import compiled_afresh
from tests.waiting import eventually

CHECKS = [f"check-{i}" for i in range(1000)]


def test_every_check_has_exactly_one_owner_whichever_replica_computes_it() -> None:
    replicas = ["a", "b", "c"]
    shares = [owned_by(me, CHECKS, replicas) for me in replicas]
    assert sum(len(share) for share in shares) == len(CHECKS)
    assert set().union(*shares) == set(CHECKS)
    assert all(250 < len(share) < 420 for share in shares), [len(s) for s in shares]


def test_a_replica_joining_takes_about_a_quarter_and_moves_nothing_else() -> None:
    before = {check: owner(check, ["a", "b", "c"]) for check in CHECKS}
    after = {check: owner(check, ["a", "b", "c", "d"]) for check in CHECKS}
    moved = [check for check in CHECKS if before[check] != after[check]]
    assert all(after[check] == "d" for check in moved)
    assert 0.18 < len(moved) / len(CHECKS) < 0.32


def test_the_division_does_not_depend_on_the_order_replicas_are_listed_in() -> None:
    assert owned_by("b", CHECKS, ["c", "a", "b"]) == owned_by("b", CHECKS, ["a", "b", "c"])


def test_the_config_digest_ignores_the_replica_id_but_not_the_checks() -> None:
    text = "monitor: {{replica: {{id: {id}}}}}\nchecks:\n  - {{name: a, request: {{url: {url}}}}}"
    one = parse_config(text.format(id="one", url="http://x/"), env={})
    two = parse_config(text.format(id="two", url="http://x/"), env={})
    other = parse_config(text.format(id="one", url="http://y/"), env={})
    assert config_digest(one) == config_digest(two) != config_digest(other)


def test_of_two_replicas_claiming_one_slot_exactly_one_wins(store: Store) -> None:
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda r: claim(store.engine, [("api", 1000)], r), ["a", "b"] * 4))
    assert [len(w) for w in won].count(1) == 1
    both = claim(store.engine, [("api", 1000), ("api", 2000), ("db", 1000)], "b")
    assert both == {("api", 2000), ("db", 1000)}  # the next slot, another check: new claims


def test_a_claim_of_any_batch_size_reuses_the_compiled_statement(store: Store) -> None:
    # Compiled twice, and only then: for one row, and for several (an executemany).
    claim(store.engine, [("api", 1000)], "a")
    claim(store.engine, [("api", 1001), ("db", 1001)], "a")
    with compiled_afresh(store.engine) as fresh:
        for size in (1, 2, 3, 5, 8):
            won = claim(store.engine, [(f"c{i}", 2000 + size) for i in range(size)], "a")
            assert len(won) == size
    assert fresh == []


def row(replica: str, digest: str = "d") -> ReplicaRow:
    return ReplicaRow(
        id=replica, host="h", pid=1, started_at=0.0, lease_until=0.0, config_digest=digest
    )


def test_a_lease_not_renewed_runs_out_on_the_database_clock_and_its_row_goes(store: Store) -> None:
    renew(store.engine, row("a"), lease=0.2)
    now, live = renew(store.engine, row("b"), lease=30.0)
    assert [r.id for r in live] == ["a", "b"]
    assert live[0].lease_until == pytest.approx(now + 0.2, abs=0.1)
    time.sleep(0.3)  # past a's lease, on the database's clock
    _, live = renew(store.engine, row("b"), lease=30.0)
    assert [r.id for r in live] == ["b"]
    leave(store.engine, "b")
    _, live = renew(store.engine, row("c"), lease=30.0)
    assert [r.id for r in live] == ["c"]


def replica_on(
    store: Store, name: str, lease: float, monotonic: Callable[[], float] = time.monotonic
) -> Replica:
    """A replica of one check, `api`, on `store`'s database, as the daemon makes one."""
    return Replica(
        ReplicaSettings(id=name, lease=lease),
        Writer(store),
        FakeClock(),
        Metrics(),
        clustered=not store.database.sqlite,
        digest="d",
        checks=["api"],
        on_gain=lambda names: asyncio.sleep(0),
        monotonic=monotonic,
    )


@postgres_only
async def test_a_replica_whose_lease_ran_out_claims_nothing_until_it_renews(store: Store) -> None:
    now = [100.0]
    replica = replica_on(store, "solo", lease=5.0, monotonic=lambda: now[0])
    await replica.join()
    assert replica.owned == {"api"} and replica.ready
    assert await replica.claim("api", 10.0) == (True, 10_000)
    assert await replica.claim("api", 10.0) == (False, 10_000)  # claimed already
    now[0] += 5.0
    assert not replica.may_run() and not replica.ready
    assert await replica.claim("api", 20.0) == (False, None)
    await replica.join()
    assert await replica.claim("api", 20.0) == (True, 20_000)
    await replica.leave()
    await replica.writer.close()


@postgres_only
async def test_the_maintenance_moves_to_another_replica_when_its_leader_dies(store: Store) -> None:
    lease = 0.3
    writer = Writer(store)

    def replica(name: str) -> Replica:
        return Replica(
            ReplicaSettings(id=name, lease=lease),
            writer,
            FakeClock(),
            Metrics(),
            clustered=True,
            digest=name,  # another config each: one leader all the same
            checks=["api"],
            on_gain=lambda names: asyncio.sleep(0),
        )

    first, second = sorted(["a", "b"], key=lambda name: name != leader(["a", "b"]))
    elected, other = replica(first), replica(second)
    assert not elected.leads()  # before its first renewal it knows of no election
    for r in (elected, other):
        await r.join()
    tasks = [asyncio.create_task(r.run()) for r in (elected, other)]
    try:
        await eventually("one lease after its election", elected.leads)
        assert not other.leads()
        tasks[0].cancel()  # it dies: no more renewals, and its row stays until the lease ends
        died = time.monotonic()
        await eventually("the other leading", other.leads, within=4 * lease + 2.0)
        assert not elected.leads()  # its own lease ran out first
        assert time.monotonic() - died >= lease  # not before the dead one's lease was over
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await other.leave()
        await writer.close()


@postgres_only
async def test_a_replica_schedules_only_its_share_and_all_once_it_is_alone(
    store: Store, serve: Callable[[web.Application], Awaitable[str]]
) -> None:
    """The other replicas' checks would wake the scheduler and start a task each, only to
    be refused at the claim."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/{name}", ok)
    url = await serve(app)
    names = [f"c{i}" for i in range(12)]
    lines = [
        f"monitor: {{database: '{store.database.url}', replica: {{id: a}}}}",
        "checks:",
        *(f"  - {{name: {n}, interval: 1h, request: {{url: '{url}/{n}'}}}}" for n in names),
    ]
    config = parse_config("\n".join(lines), env={})
    renew(store.engine, row("b", config_digest(config)), lease=60.0)  # a peer, same config
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    await daemon.start()
    schedule = daemon._scheduler_schedule()
    mine = owned_by("a", names, ["a", "b"])
    assert 0 < len(mine) < len(names)
    assert schedule.started() == mine == daemon.replica.owned
    leave(store.engine, "b")
    await daemon.replica.join()  # the next renewal: alone now
    assert schedule.started() == set(names) == daemon.replica.owned
    await daemon.stop(grace=1.0)
