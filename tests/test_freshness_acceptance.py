"""Sync freshness end to end: a job's heartbeats keep a check fresh; silence pages someone."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.store import Store
from monitor.web.heartbeats import signature
from monitor.web.server import build_app
from tests.conftest import start_app
from tests.receiver import Receiver
from tests.waiting import eventually

SECRET = "s3cret-s3cret-s3cret"


async def test_a_job_that_stops_pushing_fails_its_check_and_notifies(db_path: Path) -> None:
    receiver = await Receiver().start()
    text = f"""
monitor: {{database: '{db_path}'}}
alerting: {{group_wait: 0s}}
notifiers: [{{name: chat, urls: ['{receiver.url}']}}]
checks:
  - name: nightly-export
    type: freshness
    interval: 50ms
    max_age: 1200ms
    source: {{type: heartbeat, secret: '{SECRET}'}}
    notify: [chat]
"""
    config = parse_config(text, env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as client:
            body = b'{"count": 120}'
            stamp = str(int(time.time()))
            headers = {"X-Timestamp": stamp, "X-Signature": signature(SECRET, stamp, body)}
            async with client.post(
                f"{url}/heartbeat/nightly-export", data=body, headers=headers
            ) as r:
                assert r.status == 202
            forged = {**headers, "X-Signature": "sha256=" + "0" * 64}
            async with client.post(
                f"{url}/heartbeat/nightly-export", data=body, headers=forged
            ) as r:
                assert r.status == 401
        state = daemon.states["nightly-export"]
        await eventually("a passing run", lambda: state.last is not None and state.last.ok, 3.0)
        assert receiver.posts == []

        # Heartbeats count from their signed (whole-second) timestamp. The job stops pushing:
        # once the data is older than max_age the check fails and pages.
        def freshness_pages() -> list[dict[str, str]]:
            return [p for p in receiver.posts if "freshness" in p["title"]]

        await eventually("one page", lambda: len(freshness_pages()) == 1, 3.0)
        assert state.last is not None and not state.last.ok
        page = freshness_pages()[0]
        assert "nightly-export" in page["title"]
        assert "FIRING" in page["title"]
        assert page["type"] == "failure"
        assert daemon.signals["nightly-export"].freshness_age is not None
        assert daemon.signals["nightly-export"].freshness_age > 1.2
    finally:
        await daemon.stop()
        await runner.cleanup()
        await receiver.stop()
