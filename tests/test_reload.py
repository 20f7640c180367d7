"""Config reload: SIGHUP and POST /-/reload change what runs without losing what is known."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.config.loader import load_config, parse_config
from monitor.config.reload import plan
from monitor.core.clock import SystemClock
from monitor.core.errors import ConfigError
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.store import Store
from monitor.web.server import build_app
from tests.conftest import network_address, start_app
from tests.receiver import Receiver
from tests.waiting import until_ready


def config_text(db: Path | str, checks: list[dict[str, Any]], **top: Any) -> str:
    # JSON is YAML: the file goes through the same loader as any config.
    return json.dumps({"monitor": {"database": str(db)}, "checks": checks, **top})


def check(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "interval": "100ms", "request": {"url": url}, **fields}


def test_the_plan_names_added_removed_changed_and_rescheduled_checks(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    old = parse_config(
        config_text(
            db, [check("a", "http://x/a"), check("b", "http://x/b"), check("c", "http://x/c")]
        ),
        env={},
    )
    new_checks = [
        check("a", "http://x/a"),
        check("b", "http://x/b", interval="1s"),
        check("d", "http://x/d"),
    ]
    new = parse_config(
        config_text(db, new_checks, defaults={"alerts": {"rate_limited": False}}), env={}
    )
    change = plan(old, new)
    assert (change.added, change.removed) == (["d"], ["c"])
    # Turning a default rule off changes every check's rules, so a and b changed.
    assert change.changed == ["a", "b"]
    assert change.rescheduled == ["b"]
    assert change.needs_restart == []


def test_settings_that_need_a_restart_are_named(tmp_path: Path) -> None:
    old = parse_config(config_text(tmp_path / "a.db", []), env={})
    new = parse_config(config_text(tmp_path / "b.db", []), env={})
    assert plan(old, new).needs_restart == ["database"]


class Running:
    def __init__(self, path: Path, daemon: Daemon, url: str) -> None:
        self.path, self.daemon, self.url = path, daemon, url

    def write(self, text: str) -> None:
        self.path.write_text(text)

    def runs(self) -> dict[str, int]:
        store = Store(self.daemon.config.monitor.database_url)
        store.open()
        try:
            return {name: store.count_runs(name) for name in ("a", "b", "c")}
        finally:
            store.close()


@pytest.fixture
async def running(tmp_path: Path, db_url: str, sandbox: str) -> AsyncIterator[Running]:
    path = tmp_path / "monitor.yaml"
    db = db_url
    path.write_text(
        config_text(db, [check("a", sandbox + "/healthy"), check("b", sandbox + "/healthy")])
    )
    config = load_config(str(path), env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    yield Running(path, daemon, url)
    await daemon.stop()
    await runner.cleanup()


async def until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_a_reload_adds_removes_and_changes_checks_and_keeps_history(
    running: Running, sandbox: str
) -> None:
    daemon = running.daemon
    await until(lambda: daemon.states["a"].runs >= 3 and daemon.states["b"].runs >= 3)
    a_state = daemon.states["a"]
    db = daemon.config.monitor.database
    running.write(
        config_text(
            db,
            [
                check("a", sandbox + "/healthy", expect={"json": {"$.status": "ok"}}),
                check("c", sandbox + "/status/503"),
            ],
        )
    )
    change = await daemon.reload()
    assert (change.added, change.removed, change.changed) == (["c"], ["b"], ["a"])
    assert daemon.states["a"] is a_state  # what was known about `a` is kept, not rebuilt
    await daemon.writer.flush_once()
    b_rows = running.runs()["b"]
    await until(lambda: daemon.states["c"].runs >= 3)
    await daemon.writer.flush_once()
    rows = running.runs()
    assert rows["b"] == b_rows  # removed: runs no more
    assert rows["c"] >= 3  # added: runs
    assert rows["a"] > 3  # kept: its history goes on
    async with aiohttp.ClientSession() as client, client.get(running.url + "/metrics") as r:
        text = await r.text()
    assert 'check="b"' not in text
    assert 'intmon_check_up{check="c"} 0\n' in text


async def test_an_invalid_config_changes_nothing_and_says_why(running: Running) -> None:
    daemon = running.daemon
    running.write("checks:\n  - name: a\n    interval: often\n    request: {url: 'http://x/'}\n")
    with pytest.raises(ConfigError, match=r"checks\[0\]\.interval: 'often' is not a duration"):
        await daemon.reload()
    before = daemon.states["b"].runs
    await until(lambda: daemon.states["b"].runs > before + 2)
    assert set(daemon.checks) == {"a", "b"}


async def test_post_reload_answers_with_the_plan_or_the_error(
    running: Running, sandbox: str
) -> None:
    db = running.daemon.config.monitor.database
    async with aiohttp.ClientSession() as client:
        running.write(config_text(db, [check("a", sandbox + "/healthy")]))
        async with client.post(running.url + "/-/reload") as response:
            assert response.status == 200
            assert (await response.json())["removed"] == ["b"]
        running.write("checks: [{name: a, bogus: 1, request: {url: 'http://x/'}}]")
        async with client.post(running.url + "/-/reload") as response:
            assert response.status == 400
            body = await response.json()
            assert body["reloaded"] is False
            assert "checks[0].bogus: unknown key" in body["error"]
    assert set(running.daemon.checks) == {"a"}


async def test_reload_is_refused_from_other_hosts(running: Running) -> None:
    # Served on this machine's network address, the client's address is not loopback.
    runner, url = await start_app(build_app(running.daemon), network_address())
    try:
        async with aiohttp.ClientSession() as client, client.post(url + "/-/reload") as response:
            assert response.status == 403
            assert "loopback only" in (await response.json())["error"]
    finally:
        await runner.cleanup()


async def test_a_firing_alert_survives_a_reload_without_a_second_page(
    tmp_path: Path, db_url: str, sandbox: str
) -> None:
    receiver = await Receiver().start()
    path = tmp_path / "monitor.yaml"
    alerts = {"error_rate": {"window": "2s", "min_runs": 3}}
    base = {
        "notifiers": [{"name": "chat", "urls": [receiver.url]}],
        "alerting": {"group_wait": "0s"},
    }
    broken = check("a", sandbox + "/status/503", alerts=alerts, notify=["chat"])
    path.write_text(config_text(db_url, [broken], **base))
    config = load_config(str(path), env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    await daemon.start()
    try:
        await until(lambda: len(receiver.posts) == 1)
        # Same alert rules, another check added: the firing alert must not page again.
        other = check("b", sandbox + "/healthy")
        path.write_text(config_text(db_url, [broken, other], **base))
        await daemon.reload()
        await until(lambda: daemon.states["b"].runs >= 5)
        assert [p["title"] for p in receiver.posts] == ["FIRING: a error_rate (critical)"]
        assert [f.check for f in daemon.alerter.firing()] == ["a"]
    finally:
        await daemon.stop()
        await receiver.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sighup_with_a_broken_config_keeps_the_daemon_running_on_the_old_one(
    tmp_path: Path, sandbox: str
) -> None:
    port = free_port()
    path = tmp_path / "monitor.yaml"
    top = {"monitor": {"database": str(tmp_path / "m.db"), "listen": f"127.0.0.1:{port}"}}
    path.write_text(json.dumps({**top, "checks": [check("a", sandbox + "/healthy")]}))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "--config", str(path),
        stderr=asyncio.subprocess.PIPE, env=os.environ.copy(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    async def names() -> set[str]:
        async with aiohttp.ClientSession() as client, client.get(url + "/api/status") as r:
            return {c["name"] for c in (await r.json())["checks"]}

    try:
        await until_ready(url)
        path.write_text("checks: [{name: a, interval: often}]")
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert process.returncode is None
        assert await names() == {"a"}
        checks = [check("a", sandbox + "/healthy"), check("b", sandbox + "/healthy")]
        path.write_text(json.dumps({**top, "checks": checks}))
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while await names() != {"a", "b"}:
            assert time.monotonic() < deadline, "the valid config was not picked up"
            await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=15)
    log = err.decode()
    assert process.returncode == 0
    assert "reload refused, the running config stays" in log
    assert "'often' is not a duration" in log
    assert "config reloaded: added b" in log
