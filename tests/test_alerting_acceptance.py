"""Issue 4's acceptance, end to end through the daemon: a real Daemon on a real SQLite file runs
real HTTP checks against an in-process target, and Apprise delivers `json://` to an in-process
receiver. Nothing between the check and the receiver is stubbed.

Time is real but short (100 ms intervals, 1 s windows). Where the issue names a long duration
(the 4 h reminder, a 10 s receiver outage) the daemon gets a `TestClock`: real time that a test
can speed up or jump forward. Only the daemon's sense of time changes; every request, every
database write and every Apprise call still happens for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import event

from monitor.cli import main
from monitor.config.loader import parse_config
from monitor.config.settings import Config
from monitor.core.clock import Clock, SystemClock
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.store import Store
from monitor.web.server import build_app
from tests.conftest import start_app
from tests.receiver import Receiver
from tests.waiting import eventually

ServeFn = Callable[[web.Application], Awaitable[str]]
Record = Callable[[str, object], None]
HOUR = 3600.0


class TestClock:
    """Wall and monotonic time that run `speed` times faster than real time and can `jump`.

    `sleep` waits the real time that corresponds, so the scheduler, the delivery loop and its
    backoff all see a consistent, faster clock."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._wall = time.time()
        self._mono = time.monotonic()
        self._jumped = 0.0

    def _elapsed(self) -> float:
        return (time.monotonic() - self._mono) * self.speed + self._jumped

    def time(self) -> float:
        return self._wall + self._elapsed()

    def monotonic(self) -> float:
        return self._mono + self._elapsed()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / self.speed)

    def jump(self, seconds: float) -> None:
        self._jumped += seconds


@dataclass
class Target:
    """The monitored API: `/api/{name}` answers 200, or 503 while `name` is in `broken`."""

    broken: set[str] = field(default_factory=set)
    url: str = ""

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["name"] in self.broken:
            return web.json_response({"error": {"message": "upstream unavailable"}}, status=503)
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/{name}", self._handle)
        return app


@pytest.fixture
async def target(serve: ServeFn) -> Target:
    t = Target()
    t.url = await serve(t.app())
    return t


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def start() -> Receiver:
        started.append(await Receiver().start())
        return started[-1]

    yield start
    for r in started:
        await r.stop()


@pytest.fixture
async def chat(receivers: Callable[[], Awaitable[Receiver]]) -> Receiver:
    return await receivers()


def check(
    target: Target,
    name: str,
    *,
    interval: str = "100ms",
    alerts: str = "error_rate: {window: 1s, min_runs: 3, resolve_after: 2}",
    notify: str = "[chat]",
    extra: str = "",
) -> str:
    return (
        f"  - {{name: {name}, interval: {interval}, request: {{url: '{target.url}/api/{name}'}},"
        f" alerts: {{{alerts}}}, notify: {notify}{extra}}}"
    )


def make_config(
    db: Path | str,
    notifiers: dict[str, Receiver],
    checks: list[str],
    *,
    head: str = "",
    group_wait: str = "0s",
    critical_only: frozenset[str] = frozenset(),
) -> Config:
    lines = [f"monitor: {{database: '{db}'}}", f"alerting: {{group_wait: {group_wait}}}", head]
    lines.append("notifiers:")
    for name, receiver in notifiers.items():
        severity = "critical" if name in critical_only else "warning"
        lines.append(f"  - {{name: {name}, urls: ['{receiver.url}'], min_severity: {severity}}}")
    lines += ["checks:", *checks]
    return parse_config("\n".join(lines), env={})


@dataclass
class Running:
    daemon: Daemon
    url: str

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as client, client.get(self.url + path) as response:
            assert response.status == 200
            if path == "/metrics":
                return await response.text()
            return await response.json()

    def sample(self, name: str, **labels: str) -> float:
        """A metric's current value, read from the registry rather than over HTTP."""
        value = self.daemon.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def alerts(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = (await self.get("/api/alerts"))["alerts"]
        return answer


@contextlib.asynccontextmanager
async def running(
    config: Config, clock: Clock | None = None, store: Store | None = None
) -> AsyncIterator[Running]:
    store = store or Store(config.monitor.database_url)
    daemon = Daemon(config, store, Metrics(), clock or SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    try:
        yield Running(daemon, url)
    finally:
        await daemon.stop(grace=1.0)
        await runner.cleanup()


def titles(receiver: Receiver) -> list[str]:
    return [post["title"] for post in receiver.posts]


def series(metrics: str, name: str) -> dict[str, float]:
    """`{labels}` -> value of every sample of `name` in a Prometheus text exposition."""
    found = re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", metrics, flags=re.MULTILINE)
    return {labels: float(value) for labels, value in found}


FIRING = "FIRING: orders-api error_rate (critical)"
RESOLVED = "RESOLVED: orders-api error_rate"


# ---- 1. healthy ------------------------------------------------------------------------------


async def test_healthy_checks_send_no_message_at_all(
    target: Target, chat: Receiver, db_path: Path
) -> None:
    checks = [check(target, "orders-api"), check(target, "billing-api")]
    async with running(make_config(db_path, {"chat": chat}, checks)) as rig:
        await asyncio.sleep(1.2)  # a full window and then some: 12 healthy runs per check
        alerts = await rig.alerts()
        metrics = await rig.get("/metrics")
    runs = series(metrics, "intmon_check_runs_total")
    assert runs['check="orders-api",result="success"'] >= 10
    assert runs['check="billing-api",result="success"'] >= 10
    assert runs['check="orders-api",result="failure"'] == 0
    assert (chat.posts, chat.refused, alerts) == ([], 0, [])


# ---- 2. firing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alerts", "severity", "threshold", "notify_type"),
    [
        ("error_rate: {window: 1s, min_runs: 3}", "critical", ">= critical 5%", "failure"),
        (
            "error_rate: {window: 1s, min_runs: 3, warning: 50%}",
            "warning",
            ">= warning 50%",
            "warning",
        ),
    ],
    ids=["critical", "warning"],
)
async def test_a_check_failing_every_run_pages_exactly_once_within_the_window_plus_an_interval(
    target: Target,
    chat: Receiver,
    db_path: Path,
    record_property: Record,
    alerts: str,
    severity: str,
    threshold: str,
    notify_type: str,
) -> None:
    target.broken.add("orders-api")
    config = make_config(db_path, {"chat": chat}, [check(target, "orders-api", alerts=alerts)])
    # make_config writes `monitor:` itself, so the page's address is set here.
    config.monitor = config.monitor.model_copy(
        update={"external_url": "https://intmon.example.com/ops"}
    )
    async with running(config):
        # From the daemon's start, so this includes waiting for the first slot.
        took = await eventually("the page", lambda: bool(chat.posts), within=1.1)
        await asyncio.sleep(0.6)  # six more failing runs: none may page again
    record_property(f"firing_page_after_s[{severity}]", round(took, 3))
    (post,) = chat.posts
    assert post["title"] == f"FIRING: orders-api error_rate ({severity})"
    assert post["type"] == notify_type
    measured, since, last_error, link, _, nid = post["message"].splitlines()
    assert nid == f"Notification id: {post['notification_id']}"
    assert re.fullmatch(
        rf"error rate 100% over 1s \(\d+ of \d+ runs failed\) {threshold}", measured
    )
    # It fires on the run that made the condition true: no "(0ms ago)".
    assert re.fullmatch(r"Since: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(just now\)", since)
    assert last_error == "Last error: http_5xx: HTTP 503 (expected 2xx)"
    assert link == "Check page: https://intmon.example.com/ops/checks/orders-api"


# ---- 3. staying broken -----------------------------------------------------------------------


async def test_an_alert_that_stays_broken_is_not_repeated_before_repeat_and_reminded_after_it(
    target: Target, chat: Receiver, db_path: Path
) -> None:
    # The real default `repeat` (4 h), reached by jumping the daemon's clock. The window is
    # longer than the jumps, so the failures before a jump still count after it.
    clock = TestClock()
    target.broken.add("orders-api")
    alerts = "error_rate: {window: 8h, min_runs: 3}"
    config = make_config(db_path, {"chat": chat}, [check(target, "orders-api", alerts=alerts)])
    (rule,) = [r for n, r in config.rules["orders-api"].items() if n == "error_rate"]
    assert rule.repeat == 4 * HOUR
    async with running(config, clock) as rig:
        await eventually("the page", lambda: bool(chat.posts))
        clock.jump(4 * HOUR - 60)
        failures = {"check": "orders-api", "result": "failure"}
        before = rig.sample("intmon_check_runs_total", **failures)
        await eventually(
            "five runs after the jump",
            lambda: rig.sample("intmon_check_runs_total", **failures) >= before + 5,
        )
        assert titles(chat) == [FIRING]
        clock.jump(61)
        await eventually("the reminder", lambda: len(chat.posts) == 2)
        await asyncio.sleep(0.5)  # and no second reminder on the runs after it
    assert titles(chat) == [FIRING, "FIRING: orders-api error_rate (critical, still)"]
    assert chat.posts[1]["type"] == "failure"


# ---- 4. restart ------------------------------------------------------------------------------
# On both databases: what a restart keeps is what the database kept.


async def test_a_restart_while_firing_does_not_page_again_nor_forget_the_alert(
    target: Target, chat: Receiver, db_url: str
) -> None:
    target.broken.add("orders-api")
    checks = [check(target, "orders-api")]
    async with running(make_config(db_url, {"chat": chat}, checks)):
        await eventually("the page", lambda: bool(chat.posts))
    async with running(make_config(db_url, {"chat": chat}, checks)) as second:
        failures = {"check": "orders-api", "result": "failure"}
        await eventually(
            "the new daemon's runs",
            lambda: second.sample("intmon_check_runs_total", **failures) >= 5,
        )
        alerts = await second.alerts()
        assert titles(chat) == [FIRING]
        target.broken.clear()
        await eventually("the resolution", lambda: len(chat.posts) == 2)
    assert [(a["check"], a["rule"], a["phase"]) for a in alerts] == [
        ("orders-api", "error_rate", "firing")
    ]
    assert titles(chat) == [FIRING, RESOLVED]


async def test_a_page_still_queued_when_the_daemon_stops_is_sent_once_by_the_next_one(
    target: Target, chat: Receiver, db_url: str
) -> None:
    chat.failing = True
    target.broken.add("orders-api")
    checks = [check(target, "orders-api")]
    async with running(make_config(db_url, {"chat": chat}, checks)):
        await eventually("a refused try", lambda: chat.refused >= 1)
    chat.failing = False
    async with running(make_config(db_url, {"chat": chat}, checks)) as second:
        assert second.sample("intmon_outbox_pending") == 1
        await eventually("the page, after its 1 s backoff", lambda: bool(chat.posts))
        await asyncio.sleep(0.3)
    assert titles(chat) == [FIRING]


async def test_a_restart_that_outlasts_the_window_does_not_page_again(
    target: Target, chat: Receiver, db_url: str
) -> None:
    target.broken.add("orders-api")
    checks = [check(target, "orders-api")]
    async with running(make_config(db_url, {"chat": chat}, checks)):
        await eventually("the page", lambda: bool(chat.posts))
    await asyncio.sleep(1.1)  # down for longer than the 1 s window
    async with running(make_config(db_url, {"chat": chat}, checks)):
        await asyncio.sleep(0.6)
    assert titles(chat) == [FIRING]  # today: [FIRING, RESOLVED, FIRING]


# ---- 5. recovery -----------------------------------------------------------------------------


async def test_recovery_sends_exactly_one_resolved_message(
    target: Target, chat: Receiver, db_path: Path, record_property: Record
) -> None:
    target.broken.add("orders-api")
    async with running(make_config(db_path, {"chat": chat}, [check(target, "orders-api")])):
        await eventually("the page", lambda: bool(chat.posts))
        target.broken.clear()
        # The 1 s window must first lose its failures (<5%), then 2 evaluations confirm it.
        took = await eventually("the resolution", lambda: len(chat.posts) == 2, within=2.0)
        await asyncio.sleep(0.5)
    record_property("resolved_after_recovery_s", round(took, 3))
    assert titles(chat) == [FIRING, RESOLVED]
    resolved = chat.posts[1]
    assert resolved["type"] == "success"
    assert "was critical, firing since" in resolved["message"]
    assert re.search(
        r"Now: error rate \d+% over 1s \(0 of \d+ runs failed\) < warning 1%", resolved["message"]
    )


# ---- 6. receiver outage ----------------------------------------------------------------------


async def test_a_page_held_up_by_a_receiver_outage_arrives_once_after_it_recovers(
    target: Target, chat: Receiver, db_path: Path, record_property: Record
) -> None:
    # The 10 s outage in daemon time, at ten times real speed: the backoff (1, 2, 4,
    # 8 s) runs on the daemon's clock, the 503s and the final delivery are real.
    clock = TestClock(speed=10)
    alerts = "error_rate: {window: 10s, min_runs: 3}"
    config = make_config(
        db_path, {"chat": chat}, [check(target, "orders-api", interval="1s", alerts=alerts)]
    )
    chat.failing = True
    target.broken.add("orders-api")
    async with running(config, clock) as rig:
        await eventually("the first refused try", lambda: chat.refused >= 1)
        down_at, real_down_at = clock.time(), time.monotonic()
        await eventually("10 s of outage", lambda: clock.time() - down_at >= 10)
        chat.failing = False
        took = await eventually("the page", lambda: bool(chat.posts))
        delivered_at = clock.time()
        await asyncio.sleep(0.5)  # 5 s of daemon time: no second delivery
        metrics = await rig.get("/metrics")
    record_property("outage_refused_tries", chat.refused)
    record_property("page_after_outage_end_daemon_s", round(delivered_at - down_at - 10, 3))
    record_property("outage_test_real_s", round(time.monotonic() - real_down_at, 3))
    assert titles(chat) == [FIRING]
    # Tries at 0, 1, 3 and 7 s are refused, the one at 15 s gets through (the delivery loop
    # polls every 1 s of daemon time, so each try may come up to a poll late).
    assert chat.refused in (3, 4)
    assert 10 < delivered_at - down_at <= 19
    assert took < 1.0
    counts = series(metrics, "intmon_notifications_total")
    assert counts['notifier="chat",result="failure"'] == chat.refused
    assert counts['notifier="chat",result="success"'] == 1


# ---- 7. metrics and /api/alerts --------------------------------------------------------------


async def test_the_firing_gauge_notification_counter_and_api_follow_the_alert(
    target: Target, chat: Receiver, db_path: Path
) -> None:
    target.broken.add("orders-api")
    firing = 'check="orders-api",rule="error_rate",severity="critical"'
    async with running(make_config(db_path, {"chat": chat}, [check(target, "orders-api")])) as rig:
        sent = {"notifier": "chat", "result": "success"}
        # The receiver has the post a moment before Apprise tells the daemon it got through.
        await eventually("the page", lambda: rig.sample("intmon_notifications_total", **sent) == 1)
        during, alerts = await rig.get("/metrics"), await rig.alerts()
        target.broken.clear()
        await eventually(
            "the resolution", lambda: rig.sample("intmon_notifications_total", **sent) == 2
        )
        after, alerts_after = await rig.get("/metrics"), await rig.alerts()
    assert series(during, "intmon_alert_firing") == {firing: 1.0}
    assert series(during, "intmon_notifications_total") == {
        'notifier="chat",result="success"': 1.0,
        'notifier="chat",result="failure"': 0.0,
        'notifier="chat",result="expired"': 0.0,
    }
    (alert,) = alerts
    assert alert["check"] == "orders-api" and alert["rule"] == "error_rate"
    assert (alert["phase"], alert["severity"], alert["silenced"]) == ("firing", "critical", False)
    assert alert["value"] == 1.0 and alert["threshold"] == 0.05
    assert alert["summary"].startswith("error rate 100% over 1s")
    assert series(after, "intmon_alert_firing") == {}
    assert series(after, "intmon_notifications_total") == {
        'notifier="chat",result="success"': 2.0,
        'notifier="chat",result="failure"': 0.0,
        'notifier="chat",result="expired"': 0.0,
    }
    assert alerts_after == []


# ---- 8. routing and silences -----------------------------------------------------------------


async def test_a_page_goes_to_the_checks_notifiers_whose_min_severity_it_reaches(
    target: Target, receivers: Callable[[], Awaitable[Receiver]], db_path: Path
) -> None:
    chat, pager = await receivers(), await receivers()
    target.broken.update({"orders-api", "billing-api"})
    # error_rate pages critical, consecutive_failures warning; billing-api notifies nobody.
    both = "error_rate: {window: 1s, min_runs: 3}, consecutive_failures: {warning: 3}"
    checks = [
        check(target, "orders-api", alerts=both, notify="[chat, pager]"),
        check(target, "billing-api", notify="[]"),
    ]
    notifiers = {"chat": chat, "pager": pager}
    config = make_config(db_path, notifiers, checks, critical_only=frozenset({"pager"}))
    async with running(config) as rig:
        await eventually("the page to chat", lambda: len(chat.posts) == 1)
        await eventually("billing-api firing", lambda: len(rig.daemon.alerter.firing()) == 3)
        await asyncio.sleep(0.3)
    # Both rules fire at the third failure: one message lists them.
    assert titles(chat) == [
        "FIRING: 2 alerts for orders-api: orders-api error_rate (critical), "
        "orders-api consecutive_failures (warning)"
    ]
    assert titles(pager) == [FIRING]  # min_severity: critical keeps the warning out


async def test_a_check_silenced_in_the_config_is_tracked_but_not_sent(
    target: Target, chat: Receiver, db_path: Path
) -> None:
    target.broken.update({"orders-api", "billing-api"})
    config = make_config(
        db_path,
        {"chat": chat},
        [check(target, "orders-api"), check(target, "billing-api")],
        head="silences: [{checks: ['orders-*'], end: '2999-01-01T00:00:00Z', comment: deploy}]",
    )
    async with running(config) as rig:
        await eventually("billing-api's page", lambda: bool(chat.posts))
        await eventually("both firing", lambda: len(rig.daemon.alerter.firing()) == 2)
        await asyncio.sleep(0.3)
        alerts = {a["check"]: a for a in await rig.alerts()}
        metrics = await rig.get("/metrics")
    assert titles(chat) == ["FIRING: billing-api error_rate (critical)"]
    assert (alerts["orders-api"]["phase"], alerts["orders-api"]["silenced"]) == ("firing", True)
    assert (
        series(metrics, "intmon_alert_firing")[
            'check="orders-api",rule="error_rate",severity="critical"'
        ]
        == 1.0
    )


@pytest.fixture
def intmon(capsys: pytest.CaptureFixture[str]) -> Callable[..., Awaitable[tuple[int, str]]]:
    """`intmon ARGS...` -> (exit code, stdout): the real main(), in a thread (see test_cli_alerts)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    async def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, list(args))
        finally:
            root.handlers[:], root.level = saved[0][:], saved[1]
        return code, capsys.readouterr().out

    return run


async def test_a_check_silenced_with_intmon_silence_is_tracked_and_pages_when_the_silence_ends(
    target: Target,
    chat: Receiver,
    db_path: Path,
    tmp_path: Path,
    intmon: Callable[..., Awaitable[tuple[int, str]]],
) -> None:
    # The daemon re-reads `intmon silence`'s rows every 15 s of its clock; at 20x, under 1 s.
    clock = TestClock(speed=20)
    alerts = "error_rate: {window: 20s, min_runs: 3}"
    checks = [check(target, "orders-api", interval="2s", alerts=alerts)]
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(
        f"monitor: {{database: '{db_path}'}}\n"
        f"notifiers: [{{name: chat, urls: ['{chat.url}']}}]\n"
        "checks:\n" + "\n".join(checks) + "\n"
    )
    config = make_config(db_path, {"chat": chat}, checks)
    async with running(config, clock) as rig:
        code, out = await intmon("silence", "orders-*", "--for", "1h", "--config", str(config_file))
        assert (code, out.strip()) == (0, "silence 1: orders-* for 1h (1 checks match)")
        await eventually("the daemon to see it", lambda: bool(rig.daemon.alerter.silences.runtime))
        target.broken.add("orders-api")
        await eventually("the alert firing", lambda: bool(rig.daemon.alerter.firing()))
        await asyncio.sleep(0.3)
        assert chat.posts == []
        assert (await rig.alerts())[0]["silenced"] is True
        code, out = await intmon("silence", "--expire", "1", "--config", str(config_file))
        assert (code, out.strip()) == (0, "silence 1 ended")
        await eventually("the page", lambda: bool(chat.posts))
        await asyncio.sleep(0.3)
    assert titles(chat) == [FIRING]


# ---- 9. grouping -----------------------------------------------------------------------------


async def test_checks_of_one_provider_firing_within_group_wait_make_one_message(
    target: Target, chat: Receiver, db_path: Path, record_property: Record
) -> None:
    names = ["charges", "refunds", "payouts"]
    target.broken.update({*names, "orders-api"})
    checks = [check(target, n, extra=", provider: stripe") for n in names]
    checks.append(check(target, "orders-api"))
    config = make_config(db_path, {"chat": chat}, checks, group_wait="300ms")
    async with running(config):
        started = time.monotonic()
        await eventually("two messages", lambda: len(chat.posts) == 2)
        took = time.monotonic() - started
        await asyncio.sleep(0.5)
    record_property("grouped_message_after_s", round(took, 3))
    assert len(chat.posts) == 2
    assert FIRING in titles(chat)  # no provider: not held back for a group
    (grouped,) = [p for p in chat.posts if p["title"] != FIRING]
    assert grouped["title"].startswith("FIRING: 3 alerts for stripe: ")
    for name in names:
        assert f"{name} error_rate (critical)" in grouped["title"]
        assert f"FIRING: {name} error_rate (critical)\nerror rate 100%" in grouped["message"]
    assert grouped["type"] == "failure"


# ---- one writer ------------------------------------------------------------------------------


async def test_every_write_of_the_daemon_commits_on_the_writers_thread(
    target: Target, chat: Receiver, db_path: Path
) -> None:
    """Schema, runs, alert state, outbox claims and marks, heartbeats: SQLite sees one writer."""
    target.broken.add("orders-api")
    nightly = (
        "  - {name: nightly, type: freshness, interval: 1h, max_age: 1h, source: {type: heartbeat}}"
    )
    config = make_config(db_path, {"chat": chat}, [check(target, "orders-api"), nightly])
    store = Store(config.monitor.database_url)
    committed_on: set[str] = set()
    event.listen(
        store.engine, "commit", lambda _: committed_on.add(threading.current_thread().name)
    )
    async with running(config, store=store) as rig:
        async with (
            aiohttp.ClientSession() as client,
            client.post(f"{rig.url}/heartbeat/nightly") as response,
        ):
            assert response.status == 202
        await eventually("the page", lambda: bool(chat.posts))
    with sqlite3.connect(db_path) as db:
        counts = [
            db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("runs", "alert_states", "heartbeats")
        ]
        sent = db.execute("SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone()[0]
    assert all(counts) and sent == 1
    assert committed_on and {name.split("_")[0] for name in committed_on} == {"intmon-writer"}
