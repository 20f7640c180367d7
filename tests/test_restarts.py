"""A restart changes nothing a user can see: for every rule type, a real Daemon is stopped and
started again on the same SQLite file at each alert state (inactive, pending, firing, resolving,
silenced), and what it notifies is compared with the same scenario run without the restart.

The checks are real (HTTP and HTTPS targets on loopback, heartbeats pushed to the daemon's own
web server), notifications go through the outbox and Apprise to a `json://` receiver. Time is a
`HeldClock`: it only moves when the test moves it, and nothing in the daemon wakes up by
itself, so the test runs each check at the instants it chooses and both scenarios see exactly
the same instants.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import Engine, create_engine, text

from monitor.alerting.machine import AlertState, Phase
from monitor.alerting.outbox import load_states
from monitor.config.loader import parse_config
from monitor.config.settings import Config
from monitor.core.clock import FakeClock
from monitor.engine.daemon import Daemon
from monitor.engine.scheduler import Dispatch
from monitor.metrics import Metrics
from monitor.storage.backend import engine_url
from monitor.storage.store import Store
from monitor.web.server import build_app
from tests import tls
from tests.conftest import start_app
from tests.receiver import Receiver
from tests.waiting import eventually

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
# Two good runs, five bad ones, six good ones: every state of an alert comes up on the way.
SCRIPT = "GGBBBBBGGGGGG"
STATES = ["inactive", "pending", "firing", "resolving", "silenced"]
# Every scenario starts here: real time, for the test certificates' real notAfter.
START = float(int(time.time()))


class HeldClock(FakeClock):
    """Time that moves only when the test moves it. Whatever sleeps (the scheduler, delivery,
    housekeeping, maintenance) sleeps until the daemon stops: the test runs each check."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.Event().wait()  # until cancelled by the daemon's stop


@dataclass(frozen=True)
class Case:
    """One rule type: how its target misbehaves, and the rule's settings."""

    id: str
    rule: str
    alerts: str  # the rule's own settings, besides `for` and `resolve_after`
    step: float = MINUTE  # time between runs
    heartbeat: bool = False  # a heartbeat freshness check instead of an http one
    script: str = SCRIPT  # G: the target behaves, B: it does not, one letter per run
    fires_at: int = 4  # the run at which the alert fires without a silence


CASES = [
    Case("error_rate", "error_rate", "window: 2m, min_runs: 1"),
    # Far above what a healthy run on loopback takes even on a loaded machine.
    Case("latency_p95", "latency_p95", "window: 2m, min_runs: 1, warning: 250ms"),
    Case("rate_limited", "rate_limited", "window: 2m, warning: 1"),
    Case("consecutive_failures", "consecutive_failures", "warning: 1"),
    Case("deprecation", "deprecation", "severity: warning"),
    Case("sunset", "sunset", "warning: 90d, critical: 14d"),
    # The certificate is looked at every 6 h (checks/tls.py): one look per run.
    Case("certificate", "certificate", "warning: 21d, critical: 7d", step=6 * HOUR),
    # Its data turns stale one run after the last push.
    Case(
        "freshness-heartbeat",
        "freshness",
        "critical: 90s",
        heartbeat=True,
        script="GGBBBBBBGGGGGG",
        fires_at=5,
    ),
    # The job never pushed at all: intmon counts from when it began waiting.
    Case(
        "freshness-heartbeat-never-pushed",
        "freshness",
        "critical: 90s",
        heartbeat=True,
        script="BBBBBBBGGGGGG",
    ),
]


# What a provider answers to make intmon wait: (status, headers), by throttle reason.
PAUSES: dict[str, tuple[int, dict[str, str]]] = {
    "retry_after": (429, {"Retry-After": "3600"}),
    "backoff": (429, {}),
    "quota": (
        200,
        {"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "900"},
    ),
}


@dataclass
class Target:
    """The monitored API at /api: behaves while `bad` is false. Over HTTPS it serves the
    certificate of the moment (a renewal swaps it) through the SNI callback."""

    bad: bool = False
    url: str = ""
    secure_url: str = ""
    ca_file: Path = Path()  # both certificates' authorities
    contexts: dict[bool, ssl.SSLContext] = field(default_factory=dict)  # by `bad`
    hits: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        self.hits += 1
        if kind in PAUSES:
            return web.Response(status=PAUSES[kind][0], headers=PAUSES[kind][1])
        if not self.bad:
            return web.json_response({"status": "ok"})
        if kind in ("error_rate", "consecutive_failures"):
            return web.json_response({"error": "upstream unavailable"}, status=503)
        if kind == "latency_p95":
            await asyncio.sleep(0.3)
        if kind == "rate_limited":
            return web.Response(status=429, headers={"Retry-After": "1"})
        headers = {}
        if kind == "deprecation":
            headers["Deprecation"] = f"@{int(START)}"
        if kind == "sunset":
            headers["Sunset"] = formatdate(START + 10 * DAY, usegmt=True)
        return web.json_response({"status": "ok"}, headers=headers)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[tls.TestPKI, tls.TestPKI, Path]:
    """A certificate far from expiry, one a week from it, and a file trusting both."""
    good = tls.make_pki(tmp_path_factory.mktemp("good"), days=60)
    bad = tls.make_pki(tmp_path_factory.mktemp("bad"), days=5)
    both = tmp_path_factory.mktemp("trust") / "cas.pem"
    both.write_text(good.ca_file.read_text() + bad.ca_file.read_text())
    return good, bad, both


@pytest.fixture
async def target(pki: tuple[tls.TestPKI, tls.TestPKI, Path]) -> AsyncIterator[Target]:
    t = Target()
    good, bad, t.ca_file = pki
    app = web.Application()
    app.router.add_get("/api/{kind}", t.handle)
    plain, t.url = await start_app(app)
    t.contexts = {False: good.server_context(), True: bad.server_context()}
    front = t.contexts[False]
    front.sni_callback = lambda sock, name, ctx: setattr(sock, "context", t.contexts[t.bad])
    secure = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await secure.setup()
    site = web.TCPSite(secure, "127.0.0.1", 0, ssl_context=front)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    t.secure_url = f"https://127.0.0.1:{port}"
    yield t
    await secure.cleanup()
    await plain.cleanup()


def make_config(case: Case, target: Target, db: str, chat: Receiver, silence: bool) -> Config:
    settings = f"{case.alerts}, for: {2 * case.step:g}s, resolve_after: 3"
    alerts = f"{case.rule}: {{{settings}}}"
    common = f"interval: {case.step:g}s, notify: [chat]"
    if case.heartbeat:
        kind = "type: freshness, max_age: 90s, source: {type: heartbeat}"
    else:
        # Real latencies against a baseline would make the two scenarios differ by chance.
        alerts += ", latency_p95: {enabled: false}" if case.rule != "latency_p95" else ""
        base = target.secure_url if case.rule == "certificate" else target.url
        kind = f"request: {{url: '{base}/api/{case.rule}'}}, tls_ca_file: '{target.ca_file}'"
    lines = [
        f"monitor: {{database: '{db}'}}",
        "alerting: {group_wait: 0s}",
        f"notifiers: [{{name: chat, urls: ['{chat.url}']}}]",
        f"checks:\n  - {{name: api, {kind}, {common}, alerts: {{{alerts}}}}}",
    ]
    if silence:  # over the first firing, lifted a run and a half later
        end = START + (case.fires_at + 1.5) * case.step
        lines.append(f"silences: [{{checks: [api], end: '{iso(end)}'}}]")
    return parse_config("\n".join(lines), env={})


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class Run:
    """What one scenario showed: the messages queued at each run, and where the alert was."""

    sent: list[tuple[int, str]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    final: list[AlertState] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)


def label(state: AlertState, silenced: bool) -> str:
    if state.phase is Phase.OK:
        return "inactive"
    if state.phase is Phase.PENDING:
        return "pending"
    if silenced and state.notified_severity is None:
        return "silenced"
    return "resolving" if state.clear_count else "firing"


class Rig:
    """One daemon at a time on the scenario's database, with its web server for pushes."""

    def __init__(self, config: Config, clock: HeldClock) -> None:
        self.config, self.clock = config, clock
        self.daemon: Daemon | None = None
        self.web: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Daemon:
        store = Store(self.config.monitor.database_url)
        self.daemon = Daemon(self.config, store, Metrics(), self.clock)
        self.web, self.url = await start_app(build_app(self.daemon))
        await self.daemon.start()
        # Let the scheduler take its first look now, at the start: a run that does not wait
        # for I/O would otherwise keep it from looking until later, where a slot is due.
        for _ in range(3):
            await asyncio.sleep(0)
        return self.daemon

    async def stop(self) -> None:
        assert self.daemon is not None and self.web is not None
        await self.daemon.stop(grace=1.0)
        await self.web.cleanup()


def outbox(db: Engine) -> list[str]:
    with db.connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT title FROM outbox ORDER BY id"))]


async def settle(db: Engine) -> None:
    """Until delivery has sent what was queued (a row stays pending until Apprise is done)."""

    def drained() -> bool:
        with db.connect() as connection:
            query = text("SELECT count(*) FROM outbox WHERE status = 'pending'")
            return bool(connection.execute(query).scalar() == 0)

    await eventually("the outbox to drain", drained)


async def scenario(
    case: Case, target: Target, url: str, chat: Receiver, silence: bool, restart_after: int | None
) -> Run:
    clock = HeldClock(start=START)
    rig = Rig(make_config(case, target, url, chat, silence), clock)
    daemon = await rig.start()
    db = create_engine(engine_url(url))
    run, seen = Run(), 0
    for index, letter in enumerate(case.script):
        clock.advance(START + index * case.step - clock.time())  # a restart took some
        target.bad = letter == "B"
        if case.heartbeat and letter == "G":
            async with (
                aiohttp.ClientSession() as client,
                client.post(f"{rig.url}/heartbeat/api") as response,
            ):
                assert response.status == 202
        # What the scheduler does at the check's slot: the throttle's gate, the run, record.
        await daemon._dispatch(Dispatch("api", clock.time(), 0.0))
        await settle(db)
        titles = outbox(db)
        run.sent += [(index, title) for title in titles[seen:]]
        seen = len(titles)
        state = daemon.alerter.book.get("api", case.rule)
        run.labels.append(label(state, daemon.alerter.silences.is_silenced("api", clock.time())))
        if index == restart_after:  # half-way to the next run, as a restart between runs is
            await rig.stop()
            clock.advance(case.step / 2)
            daemon = await rig.start()
    await rig.stop()
    run.final = load_states(db)
    db.dispose()
    run.delivered = [post["title"] for post in chat.posts]
    return run


# The scenario without a restart, per (case, silenced): the same for every restart point, and
# on either database (a restarted run on Postgres must send what the plain one did on SQLite).
_PLAIN: dict[tuple[str, bool], Run] = {}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_a_restart_at_any_alert_state_sends_what_no_restart_would_have_sent(
    case: Case, state: str, target: Target, new_database: Callable[[str], str]
) -> None:
    silence = state == "silenced"
    receivers = [await Receiver().start(), await Receiver().start()]
    try:
        plain = _PLAIN.get((case.id, silence)) or await scenario(
            case, target, new_database("a"), receivers[0], silence, None
        )
        _PLAIN[(case.id, silence)] = plain
        assert state in plain.labels, f"the script never reaches {state}: {plain.labels}"
        at = plain.labels.index(state)
        restarted = await scenario(
            case, target, new_database("b"), receivers[1], silence, restart_after=at
        )
    finally:
        for receiver in receivers:
            await receiver.stop()
    # The scenario pages once, at the run the rule says, and resolves in the end.
    pages = [(i, title.split(":")[0]) for i, title in plain.sent if f" {case.rule} (" in title]
    resolved = [i for i, title in plain.sent if title == f"RESOLVED: api {case.rule}"]
    assert pages[0] == (case.fires_at + (2 if silence else 0), "FIRING"), plain.sent
    assert len(resolved) == 1, plain.sent
    assert (restarted.labels, restarted.sent) == (plain.labels, plain.sent)
    assert restarted.final == plain.final
    # Messages queued together are sent concurrently: their order at the receiver may vary.
    # Rules of the check that fire together (when a silence ends) arrive as one message.
    assert sorted(ungrouped(restarted.delivered)) == sorted(title for _, title in plain.sent)
    assert sorted(ungrouped(plain.delivered)) == sorted(title for _, title in plain.sent)


def ungrouped(delivered: list[str]) -> list[str]:
    """The titles of the alerts in each message: `FIRING: 2 alerts for api: a, b` is two."""
    titles = []
    for title in delivered:
        state, _, rest = title.partition(": ")
        if rest.startswith(("2 alerts for api: ", "3 alerts for api: ")):
            titles += [f"{state}: {name}" for name in rest.split(": ", 1)[1].split(", ")]
        else:
            titles.append(title)
    return titles


@pytest.mark.parametrize("reason", list(PAUSES))
async def test_a_pause_the_provider_asked_for_outlives_a_restart(
    reason: str, target: Target, db_url: str
) -> None:
    text = (
        f"monitor: {{database: '{db_url}'}}\n"
        f"checks: [{{name: api, interval: 10m, request: {{url: '{target.url}/api/{reason}'}}}}]"
    )
    clock = HeldClock(start=START)
    rig = Rig(parse_config(text, env={}), clock)
    daemon = await rig.start()
    await daemon._dispatch(Dispatch("api", clock.time(), 0.0))
    before = daemon.status().checks[0].throttle, daemon.throttle.streak("check:api")
    await rig.stop()
    # Halfway through the pause: a backoff's is jittered (uniform up to its cap), so a fixed
    # step could land past its end.
    assert before[0].paused_until is not None
    clock.advance((before[0].paused_until - clock.time()) / 2)
    daemon = await rig.start()
    after = daemon.status().checks[0].throttle, daemon.throttle.streak("check:api")
    await daemon._dispatch(Dispatch("api", clock.time(), 0.0))  # still inside the pause
    await rig.stop()
    assert before[0].reason == reason and before[1] == (0 if reason == "quota" else 1)
    pause = before[0].paused_until, before[0].reason, before[1]
    assert (after[0].paused_until, after[0].reason, after[1]) == pause
    assert target.hits == 1
