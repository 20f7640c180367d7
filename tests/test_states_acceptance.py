"""States and request ids end to end: a real daemon against a real target, its API, its
metrics, Apprise delivering to a local receiver, a restart on the same SQLite file, and the
`intmon status` / `intmon check` tables."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.cli import main
from monitor.config.loader import load_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.engine.scheduler import next_due, phase_of
from monitor.metrics import Metrics
from monitor.storage.store import Store
from monitor.web.server import build_app
from tests.conftest import start_app
from tests.receiver import Receiver
from tests.waiting import eventually

ServeFn = Callable[[web.Application], Awaitable[str]]
HOUR = 3600.0


SERVED = web.AppKey("served", itertools.count)


async def answer(request: web.Request) -> web.Response:
    """The provider: each path answers the way one kind of trouble looks."""
    path = request.match_info["path"]
    if path == "broken":
        seq = next(request.app[SERVED])
        body = {"error": {"message": "upstream unavailable"}}
        return web.json_response(body, status=503, headers={"X-Request-Id": f"req-{seq}"})
    if path == "limited":
        return web.json_response({}, status=429, headers={"Retry-After": "3600"})
    if path == "slow":
        await asyncio.sleep(0.05)
    return web.json_response({"status": "ok"})


def late_name(prefix: str, interval: float) -> str:
    """A check name whose first slot is over a minute away: it cannot run during the test, so
    what it shows comes from its sibling's pause, not from a run of its own."""
    now = time.time()
    for i in range(100):
        name = f"{prefix}-{i}"
        if next_due(now, interval, phase_of(name, interval)) - now > 60:
            return name
    raise AssertionError("no name with a late first slot")  # 1 chance in 10**150


def paged(chat: Receiver) -> list[dict[str, Any]]:
    return [p for p in chat.posts if "FIRING" in p["title"] and "broken" in p["title"]]


@pytest.fixture
def intmon(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Awaitable[tuple[int, str]]]:
    """`intmon ARGS...` -> (exit code, stdout): the real main(), in a thread."""
    root = logging.getLogger()
    # main() sets logging up as for a process of its own; the suite's comes back afterwards.
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)

    async def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        return code, capsys.readouterr().out

    return run


def write_config(tmp_path: Path, target: str, chat: Receiver, sibling: str) -> Path:
    fast = "interval: 100ms, notify: [chat]"
    paging = "alerts: {error_rate: {window: 1s, min_runs: 3, resolve_after: 2}}"
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"""monitor: {{database: '{tmp_path / "m.db"}'}}
alerting: {{group_wait: 0s}}
notifiers:
  - {{name: chat, urls: ['{chat.url}']}}
checks:
  - {{name: broken, {fast}, {paging}, request: {{url: '{target}/broken'}}}}
  - {{name: limited, provider: acme, {fast}, request: {{url: '{target}/limited'}}}}
  - {{name: {sibling}, provider: acme, interval: 1h, request: {{url: '{target}/ok'}}}}
  - {{name: slow, {fast}, request: {{url: '{target}/slow'}}, expect: {{degraded_latency: 10ms}}}}
  - {{name: fine, {fast}, request: {{url: '{target}/ok'}}, expect: {{degraded_latency: 10s}}}}
"""
    )
    return config


async def fetch(url: str) -> Any:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        assert response.status == 200
        return await response.json() if url.endswith("/api/status") else await response.text()


async def test_states_request_ids_and_their_metric_from_a_running_daemon_to_intmon_status(
    tmp_path: Path,
    serve: ServeFn,
    intmon: Callable[..., Awaitable[tuple[int, str]]],
) -> None:
    app = web.Application()
    app[SERVED] = itertools.count(1)
    app.router.add_get("/{path}", answer)
    target = await serve(app)
    sibling = late_name("acme-orders", HOUR)
    chat = await Receiver().start()
    config_file = write_config(tmp_path, target, chat, sibling)
    config = load_config(config_file, env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    try:
        ran = ("broken", "limited", "slow", "fine")
        await eventually("every fast check ran", lambda: all(daemon.states[n].runs for n in ran))
        await eventually("broken's FIRING message", lambda: bool(paged(chat)))
        status = await fetch(url + "/api/status")
        metrics = await fetch(url + "/metrics")
        page = await fetch(url + "/?state=throttled")
    finally:
        await daemon.stop(grace=0.5)
        await runner.cleanup()
        await chat.stop()

    checks = {c["name"]: c for c in status["checks"]}
    states = {name: c["state"] for name, c in checks.items()}
    assert states == {
        "broken": "down",
        "limited": "throttled",
        sibling: "throttled",
        "slow": "degraded",
        "fine": "up",
    }
    # Paused by the provider's Retry-After for an hour, and its sibling with it, unrun.
    limited, held = checks["limited"], checks[sibling]
    assert limited["until"] == pytest.approx(limited["last"]["ts"] + HOUR, abs=5)
    assert limited["state_reason"] == "the provider's Retry-After"
    assert held["last"] is None and held["until"] == limited["until"]
    assert (
        held["state_reason"] == "held back with limited (provider acme): the provider's Retry-After"
    )
    assert re.fullmatch(r"latency \S+ms over degraded_latency 10ms", checks["slow"]["state_reason"])
    # The page says the same: both held back, with the time the pause ends.
    until = datetime.fromtimestamp(limited["until"], UTC).strftime("%H:%M UTC")
    for name in ("limited", sibling):
        row = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*>{name}</a>(?:(?!</tr>).)*</tr>", page, re.S)
        assert row is not None, name
        assert "Throttled" in row[0] and f"until {until}" in row[0], row[0]

    broken = checks["broken"]["last"]
    request_id = broken["request_id"]
    assert re.fullmatch(r"req-\d+", request_id)
    assert broken["reason"] == f"HTTP 503 (expected 2xx) (request id {request_id})"
    assert checks["broken"]["state_reason"] == f"http_5xx: {broken['reason']}"
    [firing] = paged(chat)
    assert re.search(r"\(request id req-\d+\)", firing["message"]), firing["message"]

    samples = re.findall(
        r'^intmon_check_state\{check="([^"]+)",state="(\w+)"\} (\S+)$', metrics, re.M
    )
    ones = {check: state for check, state, value in samples if float(value) == 1.0}
    assert ones == states
    assert len(samples) == 5 * len(states)  # every state of every check, 0 but for one

    # A restart on the same file: the last failure keeps its request id, and `intmon status`
    # (a reader of the database) derives the same states with the same function. broken runs
    # every 100ms, so it may have run again after /api/status answered: the last run stored is
    # the daemon's last, not necessarily the one the API showed.
    last = daemon.states["broken"].last
    assert last is not None and last.request_id is not None
    request_id = last.request_id
    code, table = await intmon("status", "--config", str(config_file))
    assert code == 0
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert re.search(rf"^broken +DOWN .* {request_id} +http_5xx: HTTP 503", rows["broken"])
    assert re.search(r"^limited +THROTTLED \((59|60)m left\)", rows["limited"])
    assert "held back with limited (provider acme)" in rows[sibling]
    assert "error_rate critical" in rows["broken"]
    restarted = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    await restarted.start()
    try:
        assert restarted.states["broken"].last is not None
        assert restarted.status().checks[0].last.request_id == request_id  # type: ignore[union-attr]
        assert restarted.signals["broken"].last_request_id == request_id  # for the next message
    finally:
        await restarted.stop(grace=0.5)


async def test_intmon_check_shows_quota_sunset_and_the_request_id(
    tmp_path: Path, sandbox: str, intmon: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    sunset = int(time.time() + 30 * 86400)
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"""monitor: {{database: '{tmp_path / "m.db"}'}}
checks:
  - {{name: quota, request: {{url: '{sandbox}/quota/x-ratelimit?remaining=7&limit=50'}}}}
  - {{name: legacy, request: {{url: '{sandbox}/deprecated/epoch?sunset={sunset}'}}}}
  - {{name: failing, request: {{url: '{sandbox}/request-id/503?via=envelope'}}}}
"""
    )
    code, table = await intmon("check", "--config", str(config))
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert code == 1
    assert table.splitlines()[0].split() == [
        "CHECK", "RESULT", "STATUS", "LATENCY", "QUOTA", "SUNSET", "REQUEST", "ID", "ERROR", "REASON"
    ]  # fmt: skip
    assert re.search(r"^quota +PASS +200 +\S+ +7/50 +- +- ", rows["quota"])
    assert re.search(r"^legacy +PASS +200 +\S+ +- +(29|30)d +- ", rows["legacy"])
    found = re.search(r"^failing +FAIL +503 +\S+ +- +- +(\S+) +http_5xx ", rows["failing"])
    assert found is not None and found.group(1).startswith("req-")  # from the error body
    assert rows["failing"].endswith(f"(request id {found.group(1)})")
