"""One problem, one page, end to end: a real Daemon on a real SQLite file runs real checks
against an in-process target, and Apprise delivers `json://` to an in-process receiver.

The rules are the built-ins (inhibition, min_failures) with windows shortened to a second so
the runs of 100 ms intervals fill them quickly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.receiver import Receiver
from tests.test_alerting_acceptance import make_config, running, titles
from tests.waiting import eventually

SHORT = "error_rate: {window: 1s, min_runs: 3}, rate_limited: {window: 1s}"


@dataclass
class Script:
    """The monitored API: `/api/{name}` answers what the name's script says, one status per
    request (200 once the script is used up); `/feed` serves a sync timestamp two hours old."""

    scripts: dict[str, list[int]] = field(default_factory=dict)
    repeat: dict[str, list[int]] = field(default_factory=dict)
    delay: float = 0.0
    url: str = ""

    async def _api(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.scripts.get(name):
            status = self.scripts[name].pop(0)
        elif self.repeat.get(name):
            status = self.repeat[name][0]
            self.repeat[name].append(self.repeat[name].pop(0))
        else:
            status = 200
        return web.json_response({"status": status}, status=status)

    async def _feed(self, request: web.Request) -> web.Response:
        return web.json_response({"updated_at": time.time() - 7200})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/{name}", self._api)
        app.router.add_get("/feed", self._feed)
        return app


@pytest.fixture
async def api(serve: object) -> Script:
    script = Script()
    script.url = await serve(script.app())  # type: ignore[operator]
    return script


@pytest.fixture
def chat(receiver: Receiver) -> Receiver:
    return receiver


def http_check(api: Script, name: str, alerts: str = SHORT) -> str:
    return (
        f"  - {{name: {name}, interval: 100ms, request: {{url: '{api.url}/api/{name}'}},"
        f" alerts: {{{alerts}}}, notify: [chat]}}"
    )


async def test_one_429_among_healthy_runs_sends_no_critical_and_one_message(
    api: Script, chat: Receiver, db_path: Path
) -> None:
    api.scripts["orders-api"] = [200, 200, 200, 429]
    config = make_config(db_path, {"chat": chat}, [http_check(api, "orders-api")])
    async with running(config) as rig:
        await eventually("the rate_limited page", lambda: bool(chat.posts), within=3)
        report = await rig.get("/api/alerts")
        # The window (1 s) and the rate_limited resolution pass: still nothing else may page.
        await eventually("the rate_limited resolution", lambda: len(chat.posts) == 2, within=4)
    assert titles(chat) == [
        "FIRING: orders-api rate_limited (warning)",
        "RESOLVED: orders-api rate_limited",
    ]
    (held,) = report["inhibited"]
    assert (held["rule"], held["inhibited_by"]) == ("error_rate", ["rate_limited"])


async def test_a_stale_freshness_source_sends_exactly_one_critical(
    api: Script, chat: Receiver, db_path: Path
) -> None:
    feed = (
        "  - {name: orders-sync, type: freshness, interval: 100ms, max_age: 1h, notify: [chat],"
        f" source: {{type: http, url: '{api.url}/feed', timestamp: '$.updated_at'}},"
        " alerts: {error_rate: {window: 1s, min_runs: 3}}}"
    )
    async with running(make_config(db_path, {"chat": chat}, [feed])) as rig:
        await eventually("the freshness page", lambda: bool(chat.posts), within=3)
        # Two full error_rate windows of failing runs: error_rate may not page as well.
        await asyncio.sleep(2.0)
        alerts = await rig.alerts()
    assert titles(chat) == ["FIRING: orders-sync freshness (critical)"]
    assert [(a["rule"], a["phase"]) for a in alerts] == [("freshness", "firing")]


async def test_5xx_alongside_429s_still_page_error_rate(
    api: Script, chat: Receiver, db_path: Path
) -> None:
    api.repeat["orders-api"] = [429, 503, 503, 200]
    config = make_config(db_path, {"chat": chat}, [http_check(api, "orders-api")])
    async with running(config):
        await eventually(
            "the error_rate page",
            lambda: any("error_rate (critical" in t for t in titles(chat)),
            within=5,
        )
    assert "FIRING: orders-api rate_limited (warning)" in titles(chat)


async def test_two_rules_firing_for_one_check_arrive_as_one_message_listing_both(
    api: Script, chat: Receiver, db_path: Path
) -> None:
    api.repeat["orders-api"] = [503]
    api.delay = 0.03
    alerts = f"{SHORT}, latency_p95: {{window: 1s, min_runs: 3, warning: 10ms, critical: null}}"
    checks = [http_check(api, "orders-api", alerts)]
    config = make_config(db_path, {"chat": chat}, checks, group_wait="500ms")
    async with running(config):
        await eventually("the page", lambda: bool(chat.posts), within=3)
        await asyncio.sleep(0.8)  # a second message would have been sent by now
    (post,) = chat.posts
    assert post["title"].startswith("FIRING: 2 alerts for orders-api: ")
    assert "error_rate (critical)" in post["title"]
    assert "latency_p95 (warning)" in post["title"]
    assert "error rate 100%" in post["message"] and "p95 latency" in post["message"]
