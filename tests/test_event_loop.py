"""The event loop switch (`monitor.event_loop`) and the start-up freeze of the collector."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
import uvloop
from aiohttp import web

from monitor.config.loader import load_config, parse_config
from monitor.config.reload import plan
from monitor.core.clock import SystemClock
from monitor.core.errors import ConfigError
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.service import Service, loop_factory
from monitor.storage.store import Store
from tests.conftest import start_app
from tests.test_reload import check, config_text, until


@pytest.mark.parametrize(
    ("choice", "loop_type"),
    [("asyncio", asyncio.BaseEventLoop), ("uvloop", uvloop.Loop), ("auto", uvloop.Loop)],
    ids=["asyncio", "uvloop", "auto-takes-uvloop-when-installed"],
)
def test_the_setting_chooses_the_loop(choice: str, loop_type: type) -> None:
    loop = loop_factory(choice)()
    try:
        assert isinstance(loop, loop_type)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_an_unknown_loop_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    text = config_text(tmp_path / "m.db", [], monitor={"event_loop": "trio"})
    with pytest.raises(ConfigError, match=r"monitor\.event_loop"):
        parse_config(text, env={})


def test_changing_the_loop_needs_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    old = parse_config(config_text(Path(db), []), env={})
    new = parse_config(
        config_text(Path(db), [], monitor={"database": db, "event_loop": "uvloop"}), env={}
    )
    assert plan(old, new).needs_restart == ["event_loop"]


def test_the_daemon_runs_checks_on_uvloop(tmp_path: Path) -> None:
    async def two_runs() -> str:
        async def ok(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_get("/", ok)
        # The target on the same loop: the test's own loop does not run meanwhile.
        target, url = await start_app(app)
        path = tmp_path / "monitor.yaml"
        path.write_text(config_text(tmp_path / "m.db", [check("a", url + "/")]))
        config = load_config(str(path), env={})
        daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
        await daemon.start()
        try:
            await until(lambda: daemon.states["a"].runs >= 2)
        finally:
            await daemon.stop()
            await target.cleanup()
        assert daemon.states["a"].last is not None and daemon.states["a"].last.ok
        return type(asyncio.get_running_loop()).__module__

    with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
        assert runner.run(two_runs()).startswith("uvloop")


async def test_a_reload_after_the_freeze_adds_and_removes_checks(
    tmp_path: Path, sandbox: str
) -> None:
    path = tmp_path / "monitor.yaml"
    db = tmp_path / "m.db"
    path.write_text(config_text(db, [check("a", sandbox + "/healthy"), check("b", sandbox)]))
    config = load_config(str(path), env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    await daemon.start()
    try:
        Service.freeze_startup_objects()
        path.write_text(config_text(db, [check("a", sandbox + "/healthy"), check("c", sandbox)]))
        change = await daemon.reload()
        Service.refreeze()  # what Service.reload does after the daemon's
        assert (change.added, change.removed) == (["c"], ["b"])
        assert gc.get_freeze_count() > 0
        runs = daemon.states["a"].runs
        await until(lambda: daemon.states["c"].runs >= 2 and daemon.states["a"].runs > runs)
    finally:
        gc.unfreeze()
        await daemon.stop()
