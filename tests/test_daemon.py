"""The daemon in-process against the sandbox: every run shows in metrics, API and database."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.store import Store
from monitor.web.server import build_app
from tests.conftest import start_app
from tests.waiting import eventually


def config_text(sandbox: str, db: Path | str, checks: int, interval: str) -> str:
    lines = [f"monitor: {{database: '{db}'}}", "checks:"]
    for i in range(checks):
        path = "/healthy" if i % 5 else "/status/503"
        lines.append(
            f"  - {{name: c{i:02d}, interval: {interval}, request: {{url: '{sandbox}{path}'}}}}"
        )
    return "\n".join(lines)


def runs_in_metrics(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, value in re.findall(
        r'intmon_check_runs_total\{check="([^"]+)",result="[a-z]+"\} (\S+)', text
    ):
        counts[name] = counts.get(name, 0) + int(float(value))
    return counts


async def test_twenty_checks_run_repeatedly_and_every_run_is_visible_everywhere(
    sandbox: str, db_url: str
) -> None:
    config = parse_config(config_text(sandbox, db_url, 20, "200ms"), env={})
    store = Store(config.monitor.database_url)
    daemon = Daemon(config, store, Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    async with aiohttp.ClientSession() as client:
        # Four runs each: about 0.8 s, longer on a starved machine (bounded, then it fails).
        for _ in range(100):
            metrics = await (await client.get(url + "/metrics")).text()
            counts = runs_in_metrics(metrics)
            if len(counts) == 20 and min(counts.values()) >= 4:
                break
            await asyncio.sleep(0.1)
        status = await (await client.get(url + "/api/status")).json()
    await daemon.stop()
    await runner.cleanup()

    assert len(counts) == 20
    assert min(counts.values()) >= 4, counts
    by_name = {c["name"]: c for c in status["checks"]}
    assert by_name["c01"]["state"] == "up" and by_name["c00"]["state"] == "down"
    assert by_name["c00"]["last"]["error_class"] == "http_5xx"
    reopened = Store(config.monitor.database_url)
    reopened.open()
    # Every run counted at scrape time is in the database (later runs may have added more).
    assert all(reopened.count_runs(name) >= n for name, n in counts.items())
    reopened.close()


async def test_readyz_is_503_until_storage_is_open_and_healthz_is_always_200(
    sandbox: str, db_url: str
) -> None:
    config = parse_config(config_text(sandbox, db_url, 1, "1h"), env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    async with aiohttp.ClientSession() as client:
        assert (await client.get(url + "/readyz")).status == 503
        assert (await client.get(url + "/healthz")).status == 200
        await daemon.start()
        assert (await client.get(url + "/readyz")).status == 200
    await daemon.stop()
    await runner.cleanup()


async def test_a_restarted_daemon_shows_the_last_known_state_before_its_first_run(
    sandbox: str, db_url: str
) -> None:
    config = parse_config(config_text(sandbox, db_url, 2, "100ms"), env={})
    first = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    await first.start()
    await eventually(
        "both checks ran", lambda: all(first.states[n].last is not None for n in ("c00", "c01"))
    )
    await first.stop()

    slow = parse_config(config_text(sandbox, db_url, 2, "1h"), env={})
    second = Daemon(slow, Store(slow.monitor.database_url), Metrics(), SystemClock())
    await second.start()
    states = {c.name: c.state for c in second.status().checks}
    await second.stop()
    assert states == {"c00": "down", "c01": "up"}


async def test_a_slow_check_never_delays_the_others(sandbox: str, db_url: str) -> None:
    text = f"""
monitor: {{database: '{db_url}'}}
checks:
  - {{name: hang, interval: 100ms, timeout: 5s, request: {{url: '{sandbox}/hang'}}}}
  - {{name: quick, interval: 100ms, request: {{url: '{sandbox}/healthy'}}}}
"""
    config = parse_config(text, env={})
    metrics = Metrics()
    daemon = Daemon(config, Store(config.monitor.database_url), metrics, SystemClock())
    await daemon.start()

    def quick() -> float:
        return (
            metrics.registry.get_sample_value(
                "intmon_check_runs_total", {"check": "quick", "result": "success"}
            )
            or 0.0
        )

    def skipped() -> float:
        return (
            metrics.registry.get_sample_value("intmon_check_skipped_total", {"check": "hang"})
            or 0.0
        )

    # Waiting for runs to happen, not for time to pass: on an idle machine this takes ~0.6 s,
    # on a loaded one longer; the hanging check's 5 s timeout is the bound that matters.
    try:
        await eventually("runs", lambda: quick() >= 5 and skipped() >= 4, within=4.5)
    finally:
        await daemon.stop(grace=0.1)
    assert quick() >= 5  # the quick check kept its schedule while the other hung
    assert skipped() >= 4  # the hanging check's slots were skipped, not stacked
