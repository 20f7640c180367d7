"""Three replicas on one Postgres database, end to end: each slot runs and is stored once,
a dead replica's checks move on, an alert pages once, a heartbeat counts wherever it lands;
a replica that joins or stops is heard at once, not at the others' next renewal."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, text

from monitor.cluster.division import leader, owned_by
from monitor.metrics.values import Values
from monitor.storage.backend import engine_url
from monitor.storage.store import RunRecord, Store
from monitor.web.heartbeats import signature
from tests.cluster import Replicas, Target, intmon_run, stored_slots
from tests.postgres import postgres_only
from tests.receiver import Receiver
from tests.test_cli import free_port
from tests.waiting import eventually

pytestmark = postgres_only
CHECKS = [f"c{i:02d}" for i in range(30)]
EVERYTHING = [*CHECKS, "flaky", "job"]
SECRET = "s3cret-s3cret-s3cret"
# Renewed every 10 s: a join or a stop noticed within a second or two was heard, not renewed.
LONG_LEASE = "30s"
Record = Callable[[str, object], None]


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with Target.serving() as t:
        yield t


def config_text(db_url: str, target: Target, receiver: Receiver, replica: str, **kw: str) -> str:
    interval, lease = kw.get("interval", "300ms"), kw.get("lease", "500ms")
    hold = f", outage_hold: {kw['outage_hold']}" if "outage_hold" in kw else ""
    lines = [
        f"monitor: {{database: '{db_url}', listen: '127.0.0.1:{kw.get('port', 9464)}',",
        f"  replica: {{id: {replica}, lease: {lease}{hold}}}}}",
        "alerting: {group_wait: 0s}",
        f"notifiers: [{{name: chat, urls: ['{receiver.url}']}}]",
        "checks:",
        *(
            f"  - {{name: {n}, interval: {interval}, request: {{url: '{target.url}/{n}'}}}}"
            for n in CHECKS
        ),
        f"  - {{name: flaky, interval: 100ms, request: {{url: '{target.url}/flaky'}},",
        "     alerts: {error_rate: {window: 1s, min_runs: 3, resolve_after: 2}}, notify: [chat]}",
        "  - {name: job, type: freshness, interval: 100ms, max_age: 1h,",
        f"     source: {{type: heartbeat, secret: '{SECRET}'}}}}",
    ]
    return "\n".join(lines)


async def test_three_replicas_run_and_store_each_slot_once_and_page_once(
    db_url: str, target: Target, receiver: Receiver
) -> None:
    replicas = Replicas(lambda r: config_text(db_url, target, receiver, r), EVERYTHING)
    try:
        for name in ("r1", "r2", "r3"):
            await replicas.start(name)
        await eventually(
            "three replicas dividing the checks", lambda: replicas.settled("r1", "r2", "r3")
        )
        report = await replicas.cluster("r2")
        assert [r["id"] for r in report["replicas"]] == ["r1", "r2", "r3"]  # type: ignore[index]
        assert report["digests_agree"] is True

        # One request per check and interval, not three.
        before = sum(len(target.hits.pop(f"/{n}", [])) for n in CHECKS)
        await asyncio.sleep(1.5)
        for name in CHECKS:
            hits = target.hits[f"/{name}"]
            # Three replicas would make ~15; at least one shows it runs (a starved machine may
            # skip slots whose claim or run overran, never add any).
            assert 1 <= len(hits) <= 6, (name, len(hits))

        # A broken target: one FIRING and, once fixed, one RESOLVED, whoever runs it.
        target.broken.add("/flaky")

        def pages() -> list[str]:
            posts = [p["title"] for p in receiver.posts if "flaky error_rate" in p["title"]]
            return [title.split(":")[0] for title in posts]

        await eventually("FIRING", lambda: "FIRING" in pages(), within=10.0)
        target.broken.clear()
        await eventually("RESOLVED", lambda: "RESOLVED" in pages(), within=10.0)
        await asyncio.sleep(0.5)  # time for a duplicate to show up, if there were one
        assert pages() == ["FIRING", "RESOLVED"]

        # A heartbeat pushed to a replica that does not run the check freshens it.
        owner = next(n for n, d in replicas.daemons.items() if "job" in d.replica.owned)
        other = next(n for n in replicas.daemons if n != owner)
        stamp = str(int(time.time()))
        headers = {"X-Timestamp": stamp, "X-Signature": signature(SECRET, stamp, b"")}
        push = f"{replicas.urls[other]}/heartbeat/job"
        async with aiohttp.ClientSession() as client, client.post(push, headers=headers) as r:
            assert r.status == 202
        state = replicas.daemons[owner].states["job"]

        def fresh() -> bool:
            last = state.last
            return last is not None and last.ok and last.signals.get("freshness_age", 99) < 5

        await eventually("the owner's run sees the push", fresh)
    finally:
        await replicas.close()

    twice, stored = stored_slots(db_url, "c")
    assert twice == []
    # Every request any replica sent to the 30 checks' paths is stored, and once.
    assert stored == sum(len(target.hits[f"/{n}"]) for n in CHECKS) + before


async def test_a_killed_replicas_checks_resume_elsewhere_within_two_leases(
    db_url: str, target: Target, receiver: Receiver, tmp_path: Path
) -> None:
    # The lease dominates, as in production (15 s against a few ms of takeover): the takeover's
    # own cost (reading the checks' history, up to a second on a starved 2-core machine) is
    # then a small part of the bound.
    interval, lease = 0.2, 2.0
    timing = {"interval": "200ms", "lease": "2s"}
    replicas = Replicas(lambda r: config_text(db_url, target, receiver, r, **timing), EVERYTHING)
    config = tmp_path / "r3.yaml"
    config.write_text(config_text(db_url, target, receiver, "r3", port=str(free_port()), **timing))
    process = await intmon_run(config, tmp_path / "r3.log")
    try:
        for name in ("r1", "r2"):
            await replicas.start(name)
        await eventually("r3 joining", lambda: replicas.settled("r1", "r2", "r3"), within=20.0)
        theirs = owned_by("r3", CHECKS, ["r1", "r2", "r3"])
        assert theirs
        await asyncio.sleep(0.5)
        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert await process.wait() == -signal.SIGKILL

        def resumed() -> bool:
            return all(any(t > killed for t in target.hits[f"/{n}"]) for n in theirs)

        await eventually("r3's checks resuming", resumed, within=10.0)
        worst = max(min(t for t in target.hits[f"/{n}"] if t > killed) for n in theirs)
        assert worst - killed <= 2 * max(interval, lease), worst - killed
        # The checks resume once their new owners run them; the other replica may still be
        # renewing, or adopting its share (it owns a gained check only once it is restored).
        await eventually("r1 and r2 alone", lambda: replicas.settled("r1", "r2"))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await replicas.close()


async def test_one_replica_maintains_the_database_and_another_takes_over_when_it_leaves(
    db_url: str, target: Target, receiver: Receiver
) -> None:
    # Two hours of history from before the replicas, and a third replica's backlog later.
    hour = int(time.time() // 3600 * 3600) - 3 * 3600
    earlier = Store(db_url)
    earlier.open()
    earlier.write_runs([stored_run(hour + 60 * i) for i in range(4)])
    replicas = Replicas(lambda r: config_text(db_url, target, receiver, r), EVERYTHING)
    try:
        for name in ("r1", "r2"):
            await replicas.start(name, maintenance=0.05)
        await eventually("two replicas", lambda: replicas.settled("r1", "r2"))
        first = leader(["r1", "r2"])
        assert first is not None
        second = "r2" if first == "r1" else "r1"
        one, other = replicas.daemons[first], replicas.daemons[second]
        await eventually("the leader maintaining", lambda: value(one.metrics.cluster_leader) == 1)
        assert not other.replica.leads()
        await eventually("the hour rolled up", lambda: rollup_count(earlier, hour) == 4)
        await eventually("a pass reported", lambda: value(one.metrics.db_size) > 0)
        await asyncio.sleep(0.3)  # a few passes of the other's loop, which must all skip
        # What a scrape shows: only the leader passes (and reports the database's size).
        assert await replicas.metric(first, "intmon_cluster_leader") == 1
        assert await replicas.metric(second, "intmon_cluster_leader") == 0
        assert await replicas.metric(first, "intmon_db_rollup_rows_total") >= 1
        assert await replicas.metric(second, "intmon_db_rollup_rows_total") == 0
        assert await replicas.metric(second, "intmon_db_size_bytes") == 0

        await replicas.stop(first)
        earlier.write_runs([stored_run(hour + 1800)])  # a late run of that hour, from elsewhere
        await eventually("the other leading", lambda: value(other.metrics.cluster_leader) == 1)
        await eventually("the late run rolled up", lambda: rollup_count(earlier, hour) == 5)
        await eventually("its pass reported", lambda: value(other.metrics.rollup_rows) >= 1)
        assert await replicas.metric(second, "intmon_db_size_bytes") > 0
    finally:
        await replicas.close()
        earlier.close()


def stored_run(ts: float) -> RunRecord:
    return RunRecord("c00", ts, True, None, 200, 0.1, "HTTP 200", {})


def value(values: Values) -> float:
    """The one series of a daemon's own unlabelled metric, as its next scrape shows it."""
    [(_, _, number)] = values.family().rows
    return number


def rollup_count(store: Store, hour: int) -> int:
    return sum(row.count for row in store.rollups.hours("c00", hour, hour + 3600))


async def test_a_joining_replica_is_seen_by_the_others_at_once(
    db_url: str, target: Target, receiver: Receiver, record_property: Record
) -> None:
    replicas = Replicas(
        partial(config_text, db_url, target, receiver, lease=LONG_LEASE), EVERYTHING
    )
    try:
        first = await replicas.start("r1")
        listener = first.replica.listener
        assert listener is not None
        await eventually("r1 listening", lambda: listener.listening)
        await replicas.start("r2")  # returns once r2 has joined
        took = await eventually("r1 seeing r2", lambda: replicas.settled("r1", "r2"), within=2.0)
        report = await replicas.cluster("r1")
        assert [r["id"] for r in report["replicas"]] == ["r1", "r2"]  # type: ignore[index]
        record_property("join_seen_after_s", round(took, 3))
    finally:
        await replicas.close()


async def test_a_replica_stopped_with_sigterm_hands_its_checks_over_at_once(
    db_url: str, target: Target, receiver: Receiver, tmp_path: Path, record_property: Record
) -> None:
    # Seconds from SIGTERM to the first run elsewhere: well under the 10 s to r1's next renewal,
    # with room for a starved machine (2.6 s once on a 2-core machine at load 8).
    bound = 4.0
    replicas = Replicas(
        partial(config_text, db_url, target, receiver, lease=LONG_LEASE), EVERYTHING
    )
    r2 = tmp_path / "r2.yaml"
    r2.write_text(
        config_text(db_url, target, receiver, "r2", lease=LONG_LEASE, port=str(free_port()))
    )
    process: asyncio.subprocess.Process | None = None
    try:
        await replicas.start("r1")
        process = await intmon_run(r2, tmp_path / "r2.log")
        # Heard at once with the change; without it, at r1's next renewal (10 s at most).
        await eventually("r1 and r2 dividing", lambda: replicas.settled("r1", "r2"), 15.0)
        theirs = owned_by("r2", EVERYTHING, ["r1", "r2"])
        assert theirs
        stopped = time.time()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=15)
        assert code == 0, (tmp_path / "r2.log").read_text()
        exited_at = time.monotonic()

        def resumed() -> bool:  # every request from now on is r1's
            return all(
                any(t > exited_at for t in target.hits[f"/{n}"]) for n in theirs & set(CHECKS)
            )

        await eventually("r1 running r2's checks", resumed)
        engine = create_engine(engine_url(db_url))
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    'SELECT "check", min(slot) FROM slot_claims '
                    "WHERE replica = 'r1' AND slot >= :t GROUP BY 1"
                ),
                {"t": round(stopped * 1000)},
            ).all()
        engine.dispose()
        first_run = {str(check): int(slot) / 1000 for check, slot in rows}
        assert theirs <= set(first_run), sorted(theirs - set(first_run))
        worst = max(first_run[check] for check in theirs) - stopped
        record_property("sigterm_handover_s", round(worst, 3))
        assert worst <= bound, worst
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await replicas.close()
