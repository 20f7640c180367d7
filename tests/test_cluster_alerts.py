"""Alerts of several replicas on one Postgres database page as one monitor would: a replica
killed while it holds a notification, grouping, reminders and silences, across replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from monitor.alerting.notify import ID_FIELD
from monitor.storage.store import Store
from tests.cluster import Replicas, Target, intmon_run, sender, shares
from tests.postgres import postgres_only
from tests.receiver import Receiver
from tests.test_cli import free_port, intmon
from tests.waiting import eventually, until_ready

pytestmark = postgres_only
RULE = "consecutive_failures"  # critical at the second failure in a row: one alert, at once


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with Target.serving() as t:
        yield t


def config_text(
    db_url: str,
    target: Target,
    receiver: Receiver,
    replica: str,
    checks: Iterable[str],
    *,
    port: int = 9464,
    alerting: str = "group_wait: 0s",
    extra: str = "",
    repeat: str = "4h",
) -> str:
    """A replica's config: `checks` every 100 ms against `target`, each alerting by one rule."""
    rules = f"error_rate: false, latency_p95: false, {RULE}: {{critical: 2, repeat: {repeat}}}"
    return "\n".join(
        [
            f"monitor: {{database: '{db_url}', listen: '127.0.0.1:{port}',",
            f"  replica: {{id: {replica}, lease: 1s}}}}",
            f"alerting: {{{alerting}}}",
            f"notifiers: [{{name: chat, urls: ['{receiver.url}']}}]",
            "checks:",
            *(
                f"  - {{name: {name}, interval: 100ms, request: {{url: '{target.url}/{name}'}},"
                f" notify: [chat], alerts: {{{rules}}}{extra}}}"
                for name in checks
            ),
        ]
    )


@dataclass(frozen=True)
class Queued:
    """An outbox row, as the replicas left it."""

    check: str
    kind: str
    status: str
    created_at: float
    sent_at: float | None
    attempts: int


def outbox(db: Engine, checks: Iterable[str] | None = None) -> list[Queued]:
    query = 'SELECT "check", kind, status, created_at, sent_at, attempts FROM outbox ORDER BY id'
    with db.connect() as connection:
        rows = [Queued(*row) for row in connection.execute(text(query))]
    return rows if checks is None else [row for row in rows if row.check in set(checks)]


def alert(db: Engine, check: str) -> tuple[str, str | None] | None:
    """(phase, the severity anyone was told of) of the check's alert."""
    query = text(
        'SELECT phase, notified_severity FROM alert_states WHERE "check" = :c AND rule = :r'
    )
    with db.connect() as connection:
        row = connection.execute(query, {"c": check, "r": RULE}).first()
    return None if row is None else (str(row[0]), row[1])


def live(db: Engine) -> int:
    with db.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM replicas")).scalar_one())


def pages(receiver: Receiver, check: str) -> list[tuple[str, str]]:
    """(FIRING / RESOLVED, notification id) of each message about `check`, as they arrived."""
    found = []
    for post in receiver.posts:
        state, _, about = str(post["title"]).partition(": ")
        if about.startswith(f"{check} {RULE}"):
            found.append((state, str(post[ID_FIELD])))
    return found


async def test_a_replica_killed_holding_a_notification_leaves_one_repeat_with_its_id_in_order(
    db_url: str, store: Store, target: Target, receiver: Receiver, tmp_path: Path
) -> None:
    db = store.engine  # what the replicas recorded
    # An attempt's lease is its backoff (1 s) plus send_timeout: long enough for `a` to have
    # resolved (after a takeover, if the killed replica ran it) before its FIRING may go again.
    alerting = "group_wait: 0s, send_timeout: 3s"
    processes, ports = {}, {}
    for replica in ("r1", "r2", "r3"):
        ports[replica] = free_port()
        config = tmp_path / f"{replica}.yaml"
        config.write_text(
            config_text(
                db_url,
                target,
                receiver,
                replica,
                ["a", "b"],
                port=ports[replica],
                alerting=alerting,
            )
        )
        processes[replica] = await intmon_run(config, tmp_path / f"{replica}.log")
    senders: list[int | None] = []

    def kill_the_first_sender(post: dict[str, object]) -> None:
        # The page has arrived and its replica waits for the answer: `sent` is not committed.
        senders.append(sender(receiver.ports[-1], [p.pid for p in processes.values()]))
        if len(senders) == 1 and senders[0] is not None:
            os.kill(senders[0], signal.SIGKILL)
            target.broken = {"/b"}  # `a` recovers while its FIRING is held; `b` fails meanwhile

    try:
        for port in ports.values():
            await until_ready(f"http://127.0.0.1:{port}", within=30)
        await eventually("three live replicas", lambda: live(db) == 3, within=10)
        receiver.on_post = kill_the_first_sender
        target.broken = {"/a"}
        await eventually("a's FIRING arriving", lambda: bool(senders), within=10)
        assert senders[0] is not None, "the first page came from none of the replicas"
        victim = next(r for r, p in processes.items() if p.pid == senders[0])
        assert await asyncio.wait_for(processes[victim].wait(), 10) == -signal.SIGKILL
        (held,) = outbox(db, ["a"])[:1]
        assert (held.kind, held.status, held.attempts) == ("FIRING", "sending", 1)

        await eventually("b's FIRING", lambda: pages(receiver, "b") != [], within=10)
        target.broken = set()
        sent = [("a", "FIRING"), ("a", "RESOLVED"), ("b", "FIRING"), ("b", "RESOLVED")]
        await eventually(
            "every page sent",
            lambda: sorted((r.check, r.kind) for r in outbox(db) if r.status == "sent") == sent,
            within=20,
        )
        for replica, process in processes.items():
            if replica != victim:
                process.terminate()
                assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        receiver.on_post = None
        for process in processes.values():
            if process.returncode is None:
                process.kill()
                await process.wait()

    (firing, first), (again, copy), (resolved, later) = pages(receiver, "a")
    assert (firing, again, resolved) == ("FIRING", "FIRING", "RESOLVED")
    assert first == copy != later
    assert [state for state, _ in pages(receiver, "b")] == ["FIRING", "RESOLVED"]
    # That one message, and no other, came twice; the copy from a replica still alive.
    repeated = [nid for nid, n in Counter(p[ID_FIELD] for p in receiver.posts).items() if n > 1]
    assert repeated == [first]
    copy_at = [p[ID_FIELD] for p in receiver.posts].index(first, 1)
    assert senders[copy_at] in {p.pid for r, p in processes.items() if r != victim}
    # The RESOLVED was queued while the dead replica's claim held the FIRING, and waited.
    a_firing, a_resolved = outbox(db, ["a"])
    assert a_firing.attempts == 2
    assert a_firing.sent_at is not None and a_resolved.created_at < a_firing.sent_at


async def test_checks_of_one_provider_failing_on_different_replicas_page_once_together(
    db_url: str, store: Store, target: Target, receiver: Receiver
) -> None:
    db = store.engine  # what the replicas recorded
    names = shares("acme-", ["r1", "r2"], 2)
    checks = [*names["r1"], *names["r2"]]
    replicas = Replicas(
        lambda r: config_text(
            db_url, target, receiver, r, checks, alerting="group_wait: 2s", extra=", provider: acme"
        ),
        checks,
    )
    try:
        for replica in ("r1", "r2"):
            await replicas.start(replica)
        await eventually("two replicas dividing the checks", lambda: replicas.settled("r1", "r2"))
        target.broken = {f"/{name}" for name in checks}
        await eventually(
            "the four FIRINGs sent",
            lambda: [r.status for r in outbox(db)] == ["sent"] * 4,
            within=10,
        )
        # Each replica judged, and queued, the FIRINGs of the checks it runs.
        assert replicas.settled("r1", "r2")
    finally:
        await replicas.close()
    assert [r.kind for r in outbox(db)] == ["FIRING"] * 4
    (post,) = receiver.posts
    title = str(post["title"])
    assert title.startswith("FIRING: 4 alerts for acme: "), title
    assert all(f"{name} {RULE} (critical)" in title for name in checks), title


async def test_a_reminder_goes_once_a_period_across_replicas_and_a_handover_keeps_its_time(
    db_url: str, store: Store, target: Target, receiver: Receiver
) -> None:
    db = store.engine  # what the replicas recorded
    repeat = 2.5
    replicas = Replicas(
        lambda r: config_text(db_url, target, receiver, r, ["api"], repeat="2500ms"), ["api"]
    )
    try:
        for replica in ("r1", "r2"):
            await replicas.start(replica)
        await eventually("two replicas dividing the checks", lambda: replicas.settled("r1", "r2"))
        target.broken = {"/api"}
        await eventually("the first reminder", lambda: len(outbox(db)) == 2, within=10)
        reminded = outbox(db)[1].created_at
        # The owner leaves halfway through the period: a handover that started the period
        # afresh would put the next reminder a whole period after it.
        await eventually(
            "halfway to the next reminder", lambda: time.time() >= reminded + repeat / 2, 2 * repeat
        )
        left = time.time()
        await replicas.stop(replicas.owner("api"))
        (successor,) = replicas.daemons
        await eventually("the handover", lambda: replicas.settled(successor))
        await eventually(
            "two reminders after the handover", lambda: len(outbox(db)) >= 4, within=3 * repeat
        )
        await eventually("those sent", lambda: [r.status for r in outbox(db)][:4] == ["sent"] * 4)
    finally:
        await replicas.close()
    rows = outbox(db)
    assert [r.kind for r in rows[:4]] == ["FIRING", "REMINDER", "REMINDER", "REMINDER"]
    # Once a period, not once a period per replica, and none skipped.
    gaps = [b.created_at - a.created_at for a, b in pairwise(rows)]
    assert all(repeat <= gap < repeat + 1.0 for gap in gaps), gaps
    handed_over = next(r for r in rows if r.created_at > left)
    assert handed_over.created_at < left + repeat, (handed_over.created_at - left, gaps)
    # Each sent once: the receiver has exactly the rows that are marked sent.
    titles = [str(post["title"]) for post in receiver.posts]
    assert len(titles) == len([r for r in rows if r.status == "sent"])
    assert titles[0] == f"FIRING: api {RULE} (critical)"
    assert set(titles[1:]) == {f"FIRING: api {RULE} (critical, still)"}


async def test_a_silence_set_by_intmon_silence_holds_on_every_replica_until_it_ends(
    db_url: str, store: Store, target: Target, receiver: Receiver, tmp_path: Path
) -> None:
    db = store.engine  # what the replicas recorded
    names = shares("quiet-", ["r1", "r2"], 1)
    quiet = [*names["r1"], *names["r2"]]  # one run by each replica
    checks = [*quiet, "loud"]
    config = tmp_path / "intmon.yaml"
    config.write_text(config_text(db_url, target, receiver, "cli", checks))
    replicas = Replicas(lambda r: config_text(db_url, target, receiver, r, checks), checks)
    try:
        for replica in ("r1", "r2"):
            await replicas.start(replica)
        await eventually("two replicas dividing the checks", lambda: replicas.settled("r1", "r2"))
        code, out, _ = await intmon("silence", "quiet-*", "--for", "5s", "--config", str(config))
        assert (code, out) == (0, "silence 1: quiet-* for 5s (2 checks match)\n")
        with db.connect() as connection:
            until = connection.execute(text("SELECT until FROM silences")).scalar_one()
        # At once, not at the replicas' next periodic reload of the silences.
        target.broken = {f"/{name}" for name in checks}

        def judged() -> bool:
            loud = [(r.kind, r.status) for r in outbox(db, ["loud"])]
            return loud == [("FIRING", "sent")] and all(
                alert(db, name) == ("firing", None) for name in quiet
            )

        await eventually("the quiet checks firing unheard, the loud one paging", judged)
        assert time.time() < until  # all while the silence held
        assert outbox(db, quiet) == []  # recorded, queued for no one

        await eventually(
            "the quiet checks' FIRINGs once the silence ended",
            lambda: [(r.kind, r.status) for r in outbox(db, quiet)] == [("FIRING", "sent")] * 2,
            within=10,
        )
    finally:
        await replicas.close()
    assert all(row.created_at >= until for row in outbox(db, quiet))
    for name in quiet:
        assert [state for state, _ in pages(receiver, name)] == ["FIRING"]
    assert [state for state, _ in pages(receiver, "loud")] == ["FIRING"]
