"""Alert state and the outbox on a real SQLite file, delivering to a real json:// receiver.

The issue's acceptance scenarios at component level: the daemon's part (building the signal
view) is played by a dataclass; everything after it is the real thing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, SQLModel, col, create_engine, select

from monitor.alerting.machine import AlertBook, AlertState, Phase
from monitor.alerting.notify import Message, Notify
from monitor.alerting.outbox import (
    Delivery,
    OutboxRow,
    StaleStateError,
    claim,
    commit,
    create_tables,
    load_states,
    pending,
)
from monitor.alerting.silences import Silences, add_silence, expire_silence, list_silences
from monitor.config.alerting import AlertingSettings
from monitor.config.rules import RuleConfig, parse_alerts
from monitor.core.clock import FakeClock
from monitor.core.redact import Redactor
from monitor.storage.backend import engine_url
from monitor.storage.store import Store
from monitor.storage.writer import Writer
from tests.fakes import Notifier, View
from tests.postgres import postgres_only
from tests.receiver import Receiver


@pytest.fixture
def db(db_url: str) -> str:
    """A fresh SQLite file, then a fresh Postgres database: every test runs on both."""
    return db_url


class Daemon:
    """The wiring monitor/engine/daemon.py does, reduced to what alerting needs."""

    def __init__(self, url: str, clock: FakeClock, receiver: Receiver, group_wait: float = 0):
        self.store = Store(url)
        self.store.open()
        self.writer = Writer(self.store)
        self.engine: Engine = self.store.engine
        self.clock = clock
        self.rules: dict[str, RuleConfig] = parse_alerts({}, {}, "http")
        self.book = AlertBook(load_states(self.engine))
        self.notify = Notify(
            [Notifier("chat", [receiver.url])], Redactor(), AlertingSettings(group_wait=group_wait)
        )
        self.delivery = Delivery(self.writer, self.notify, clock)
        self.silences = Silences()

    async def tick(self, view: View, provider: str | None = None) -> None:
        now = self.clock.time()
        silenced = self.silences.is_silenced(view.check, now)
        outcome = self.book.evaluate(view, self.rules, now, silenced=silenced, provider=provider)
        messages = self.notify.messages(outcome.intents, {view.check: ["chat"]})
        await self.writer.submit(commit, self.engine, outcome.changes, messages)
        self.book.accept(outcome)
        await self.delivery.run_once()

    async def close(self) -> None:
        self.notify.close()
        await self.writer.close()
        self.store.close()


def titles(receiver: Receiver) -> list[str]:
    return [post["title"] for post in receiver.posts]


def test_the_tables_are_declared_on_the_shared_metadata(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    SQLModel.metadata.create_all(engine)
    assert {"alert_states", "outbox", "silences"} <= set(inspect(engine).get_table_names())


async def test_healthy_sends_nothing_and_writes_no_state(db: str, receiver: Receiver) -> None:
    daemon = Daemon(db, FakeClock(), receiver)
    for _ in range(5):
        await daemon.tick(View())
        daemon.clock.advance(60)
    assert receiver.posts == []
    assert load_states(daemon.engine) == []
    await daemon.close()


async def test_an_outage_pages_once_reminds_after_repeat_survives_a_restart_and_resolves_once(
    db: str, receiver: Receiver
) -> None:
    clock = FakeClock()
    daemon = Daemon(db, clock, receiver)
    broken = View(failure_ratio=1.0, last_error="http_5xx: HTTP 503")
    await daemon.tick(broken)
    assert titles(receiver) == ["FIRING: orders-api error_rate (critical)"]
    assert "Last error: http_5xx: HTTP 503" in receiver.posts[0]["message"]
    assert receiver.posts[0]["type"] == "failure"

    for _ in range(10):  # staying broken, well short of `repeat`
        clock.advance(60)
        await daemon.tick(broken)
    assert len(receiver.posts) == 1

    await daemon.close()  # restart: new objects over the same SQLite file
    daemon = Daemon(db, clock, receiver)
    assert [(s.rule, s.phase) for s in daemon.book.active()] == [("error_rate", Phase.FIRING)]
    clock.advance(60)
    await daemon.tick(broken)
    assert len(receiver.posts) == 1

    clock.advance(4 * 3600)
    await daemon.tick(broken)
    assert titles(receiver)[1:] == ["FIRING: orders-api error_rate (critical, still)"]

    for _ in range(3):
        clock.advance(60)
        await daemon.tick(View())
    assert titles(receiver)[2:] == ["RESOLVED: orders-api error_rate"]
    assert receiver.posts[2]["type"] == "success"
    await daemon.close()


async def test_a_receiver_down_for_a_while_gets_the_page_once_it_recovers(
    db: str, receiver: Receiver
) -> None:
    clock = FakeClock()
    daemon = Daemon(db, clock, receiver)
    receiver.failing = True
    await daemon.tick(View(failure_ratio=1.0))
    waits = []
    for _ in range(6):  # a minute of outage: 1+2+4+8+16+30 s of backoff
        (row,) = pending(daemon.engine)
        waits.append(row.next_attempt_at - clock.time())
        clock.advance(row.next_attempt_at - clock.time())
        await daemon.delivery.run_once()
    assert waits == [1, 2, 4, 8, 16, 30]
    assert receiver.refused == 7  # the first try, then one per backoff step
    receiver.failing = False
    clock.advance(29)
    assert await daemon.delivery.run_once() == 0  # not due yet: backoff is honoured
    clock.advance(1)
    assert await daemon.delivery.run_once() == 1
    for _ in range(3):
        clock.advance(60)
        await daemon.delivery.run_once()
    assert titles(receiver) == ["FIRING: orders-api error_rate (critical)"]
    with Session(daemon.engine) as session:
        row = session.exec(select(OutboxRow)).one()
    assert (row.status, row.attempts, row.last_error) == ("sent", 8, None)
    await daemon.close()


async def refused_again(daemon: Daemon, times: int) -> None:
    """The oldest unsent page is tried `times` more, each at the end of its backoff."""
    for _ in range(times):
        daemon.clock.advance(pending(daemon.engine)[0].next_attempt_at - daemon.clock.time())
        await daemon.delivery.run_once()


async def test_an_alerts_messages_arrive_in_the_order_they_were_queued(
    db: str, receiver: Receiver
) -> None:
    """A RESOLVED queued while its FIRING waits out a long backoff must not overtake it."""
    clock = FakeClock()
    daemon = Daemon(db, clock, receiver)
    receiver.failing = True
    await daemon.tick(View(failure_ratio=1.0))
    await refused_again(daemon, 3)  # the FIRING's next try is now 8 s away
    clock.advance(1)
    await daemon.tick(View())  # clear once
    receiver.failing = False
    clock.advance(1)
    await daemon.tick(View())  # clear twice: RESOLVED queued, due now, its FIRING is not
    assert titles(receiver) == []
    for _ in range(3):
        clock.advance(10)
        await daemon.delivery.run_once()
    assert titles(receiver) == [
        "FIRING: orders-api error_rate (critical)",
        "RESOLVED: orders-api error_rate",
    ]
    await daemon.close()


async def test_a_notifier_that_answers_again_gets_what_waited_at_once(
    db: str, receiver: Receiver
) -> None:
    clock = FakeClock()
    daemon = Daemon(db, clock, receiver)
    receiver.failing = True
    await daemon.tick(View("charges", failure_ratio=1.0))
    await refused_again(daemon, 4)  # charges' page is now 16 s from its next try
    receiver.failing = False
    await daemon.tick(View("refunds", failure_ratio=1.0))  # a first try, which goes through
    await daemon.delivery.run_once()
    assert titles(receiver) == [
        "FIRING: refunds error_rate (critical)",
        "FIRING: charges error_rate (critical)",
    ]
    await daemon.close()


async def test_a_message_nobody_could_take_for_a_day_expires_unsent(
    db: str, receiver: Receiver
) -> None:
    clock = FakeClock()
    daemon = Daemon(db, clock, receiver)
    expired: list[str] = []
    daemon.delivery.on_expired = expired.append
    receiver.failing = True
    await daemon.tick(View(failure_ratio=1.0))
    clock.advance(24 * 3600)
    receiver.failing = False
    assert await daemon.delivery.run_once() == 0
    assert (receiver.posts, expired, pending(daemon.engine)) == ([], ["chat"], [])
    await daemon.close()


async def test_checks_of_one_provider_firing_together_make_one_message(
    db: str, receiver: Receiver
) -> None:
    clock = FakeClock()
    daemon = Daemon(db, clock, receiver, group_wait=30)
    await daemon.tick(View("charges", failure_ratio=1.0), provider="stripe")
    clock.advance(10)
    await daemon.tick(View("refunds", failure_ratio=1.0), provider="stripe")
    assert receiver.posts == []  # waiting for the group
    clock.advance(20)
    await daemon.delivery.run_once()
    assert titles(receiver) == [
        "FIRING: 2 alerts for stripe: charges error_rate (critical), refunds error_rate (critical)"
    ]
    await daemon.close()


async def test_a_silenced_check_is_tracked_but_not_sent(db: str, receiver: Receiver) -> None:
    clock = FakeClock()
    daemon = Daemon(db, clock, receiver)
    row = add_silence(daemon.engine, "orders-*", clock.time() + 3600, clock.time(), "deploy")
    daemon.silences = Silences(runtime=tuple(list_silences(daemon.engine, clock.time())))
    await daemon.tick(View(failure_ratio=1.0))
    assert receiver.posts == []
    assert daemon.book.get("orders-api", "error_rate").phase is Phase.FIRING
    assert row.id is not None
    assert expire_silence(daemon.engine, row.id, clock.time())
    daemon.silences = Silences(runtime=tuple(list_silences(daemon.engine, clock.time())))
    clock.advance(60)
    await daemon.tick(View(failure_ratio=1.0))
    assert titles(receiver) == ["FIRING: orders-api error_rate (critical)"]
    await daemon.close()


def test_a_state_changed_by_another_writer_is_not_overwritten(db: str) -> None:
    engine = create_engine(engine_url(db))
    create_tables(engine)
    fresh = AlertState("a", "error_rate")
    firing = replace(fresh, phase=Phase.FIRING, severity="warning", version=1)
    commit(engine, [(fresh, firing)], [])
    assert load_states(engine) == [firing]
    with pytest.raises(StaleStateError):
        commit(engine, [(fresh, firing)], [])  # we thought there was no row yet
    ok = AlertState("a", "error_rate", version=2)
    commit(engine, [(firing, ok)], [])
    with pytest.raises(StaleStateError):
        commit(engine, [(firing, replace(ok, version=3))], [])  # a second resolver loses
    assert load_states(engine) == [ok]
    engine.dispose()


def message(dedup: str) -> Message:
    return Message("chat", "a", "r", "FIRING", "t", "b", "failure", dedup, 0.0, 0.0, 100.0)


def test_a_message_is_queued_once_and_a_failed_commit_queues_nothing(db: str) -> None:
    engine = create_engine(engine_url(db))
    create_tables(engine)
    commit(engine, [], [message("k1")])
    fresh = AlertState("a", "r")
    with pytest.raises(StaleStateError):
        commit(engine, [(fresh, replace(fresh, version=1))], [message("k1"), message("k2")])
    assert [row.dedup_key for row in pending(engine)] == ["k1"]
    engine.dispose()


def test_only_one_worker_can_claim_a_row(db: str) -> None:
    engine = create_engine(engine_url(db))
    create_tables(engine)
    commit(engine, [], [message("k1")])
    rows = pending(engine)
    assert claim(engine, rows, 0.0, 30)
    assert not claim(engine, rows, 0.0, 30)  # same snapshot, already taken
    engine.dispose()


@postgres_only
def test_a_row_another_worker_is_claiming_is_skipped_without_waiting(db: str) -> None:
    engine = create_engine(engine_url(db))
    create_tables(engine)
    commit(engine, [], [message("k1"), message("k2")])
    with Session(engine) as session:
        rows = list(session.exec(select(OutboxRow).order_by(col(OutboxRow.id))))
    other = create_engine(engine_url(db))
    with other.begin() as claiming:  # another replica, mid-claim of k1
        claiming.execute(text("SELECT id FROM outbox WHERE dedup_key = 'k1' FOR UPDATE"))
        # No lock timeout is set here: a claim that waited for the other would hang the test.
        assert not claim(engine, rows, 0.0, 30)
        assert claim(engine, rows[1:], 0.0, 30)  # k2 is nobody else's
    with engine.connect() as connection:
        statuses = connection.execute(text("SELECT dedup_key, status FROM outbox ORDER BY id"))
        assert [tuple(row) for row in statuses] == [("k1", "pending"), ("k2", "sending")]
    other.dispose()
    engine.dispose()


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (50, 30)],
    ids=["first", "second", "third", "fifth", "capped", "long-after"],
)
def test_backoff_doubles_up_to_thirty_seconds(db: str, attempts: int, wait: float) -> None:
    engine = create_engine(engine_url(db))
    create_tables(engine)
    commit(engine, [], [message("k1")])
    for _ in range(attempts):  # each claim is one more try
        assert claim(engine, pending(engine), 0.0, 30)
    assert pending(engine)[0].next_attempt_at == wait
    engine.dispose()
