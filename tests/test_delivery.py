"""Delivery is at-least-once, and every copy of a notification carries the same id.

A kill -9 of a real `intmon run` between Apprise's send and the `sent` mark makes the next
process send the row again, with the id of the first copy, so a receiver can drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import Engine, create_engine, text

from monitor.alerting.notify import ID_FIELD, Message, Notify
from monitor.alerting.outbox import SENDING, SENT, Delivery, claim, commit, pending
from monitor.config.alerting import AlertingSettings
from monitor.core.clock import FakeClock
from monitor.core.redact import Redactor
from monitor.storage.backend import engine_url
from monitor.storage.store import Store
from monitor.storage.writer import Writer
from tests.conftest import start_app
from tests.fakes import Notifier
from tests.receiver import Receiver
from tests.test_cli import free_port
from tests.waiting import eventually


def statuses(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT status FROM outbox ORDER BY id"))]


def message(dedup: str, at: float = FakeClock().time()) -> Message:
    return Message("chat", "a", "r", "FIRING", dedup, "b", "failure", dedup, at, at, at + 3600)


def nid_in_body(post: dict[str, Any]) -> str:
    return str(post["message"]).rsplit("Notification id: ", 1)[1]


async def test_a_kill_after_the_send_before_the_mark_resends_with_the_same_id(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/", broken)
    runner, target = await start_app(app)
    db = create_engine(engine_url(db_url))
    config = tmp_path / "intmon.yaml"
    config.write_text(
        f"monitor: {{database: '{db_url}', listen: '127.0.0.1:{free_port()}'}}\n"
        # The lease of an attempt is its backoff (1 s) plus send_timeout.
        "alerting: {group_wait: 0s, send_timeout: 1s}\n"
        f"notifiers: [{{name: chat, urls: ['{receiver.url}']}}]\n"
        f"checks: [{{name: api, interval: 100ms, request: {{url: '{target}/'}}, notify: [chat],"
        " alerts: {error_rate: {window: 1s, min_runs: 2, min_failures: 2}}}]\n"
    )

    async def intmon() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    first = await intmon()
    # The receiver has the page; intmon waits for the answer, so `sent` is not committed yet.
    receiver.on_post = lambda post: os.kill(first.pid, signal.SIGKILL)
    try:
        assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
        assert len(receiver.posts) == 1 and statuses(db) == [SENDING]
        receiver.on_post = None
        second = await intmon()
        try:
            await eventually("the page is marked sent", lambda: statuses(db) == [SENT], 20)
        finally:
            second.terminate()
            assert await asyncio.wait_for(second.wait(), 30) == 0
    finally:
        if first.returncode is None:
            first.kill()
        await runner.cleanup()
        db.dispose()
    copies = receiver.posts
    assert len(copies) == 2 and copies[0]["title"].startswith("FIRING: api error_rate")
    assert copies[0][ID_FIELD] == copies[1][ID_FIELD] == nid_in_body(copies[1])
    assert copies[0]["message"] == copies[1]["message"]


@contextlib.asynccontextmanager
async def delivering(
    store: Store,
    receiver: Receiver,
    clock: FakeClock,
    send_timeout: float = 60.0,
    on_result: Callable[[str, str], None] = lambda notifier, result: None,
    on_notifier: Callable[[str, bool], None] = lambda notifier, up: None,
) -> AsyncIterator[tuple[Writer, Delivery]]:
    """The outbox's writer and delivery loop on `store`, sending to `receiver` as `chat`."""
    writer = Writer(store)
    settings = AlertingSettings(group_wait=0, send_timeout=send_timeout)
    notify = Notify([Notifier("chat", [receiver.url])], Redactor(), settings, on_result)
    try:
        yield writer, Delivery(writer, notify, clock, on_notifier=on_notifier)
    finally:
        notify.close()
        await writer.close()


async def test_each_notification_goes_out_once_with_an_id_of_its_own(
    store: Store, receiver: Receiver
) -> None:
    async with delivering(store, receiver, FakeClock()) as (writer, delivery):
        await writer.submit(commit, store.engine, [], [message("a/FIRING"), message("a/RESOLVED")])
        # One alert's messages go one after the other, in the order they were queued.
        assert await delivery.run_once() == 1
        assert await delivery.run_once() == 1
        assert await delivery.run_once() == 0
    assert [post["title"] for post in receiver.posts] == ["a/FIRING", "a/RESOLVED"]
    ids = [post[ID_FIELD] for post in receiver.posts]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert ids == [nid_in_body(post) for post in receiver.posts]


async def test_a_row_taken_by_a_sender_that_died_goes_out_once_its_lease_ran_out(
    store: Store, receiver: Receiver
) -> None:
    clock = FakeClock()
    async with delivering(store, receiver, clock, send_timeout=10) as (writer, delivery):
        await writer.submit(commit, store.engine, [], [message("a/FIRING")])
        # Another process claimed it (backoff 1 s) and died before marking it sent.
        rows = await asyncio.to_thread(pending, store.engine)
        assert await writer.submit(claim, store.engine, rows, clock.time(), 30.0)
        clock.advance(1 + 10 - 0.1)  # a live sender could still be waiting for Apprise
        assert await delivery.run_once() == 0
        clock.advance(0.1)
        assert await delivery.run_once() == 1
        assert await delivery.run_once() == 0
    assert len(receiver.posts) == 1


async def test_an_alerts_later_page_waits_behind_one_a_dead_sender_still_holds(
    store: Store, receiver: Receiver
) -> None:
    clock = FakeClock()
    async with delivering(store, receiver, clock, send_timeout=10) as (writer, delivery):
        await writer.submit(commit, store.engine, [], [message("a/FIRING")])
        rows = await asyncio.to_thread(pending, store.engine)
        assert await writer.submit(claim, store.engine, rows, clock.time(), 30.0)
        # The alert resolves while a dead process's claim on its FIRING has not run out.
        await writer.submit(commit, store.engine, [], [message("a/RESOLVED", clock.time())])
        clock.advance(5)
        assert await delivery.run_once() == 0  # the RESOLVED is due, but its FIRING is held
        clock.advance(6)  # the lease ran out: the FIRING first, then the RESOLVED
        assert await delivery.run_once() == 1
        assert await delivery.run_once() == 1
    assert [post["title"] for post in receiver.posts] == ["a/FIRING", "a/RESOLVED"]
