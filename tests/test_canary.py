"""The canary: one secret, used every way a config can use one, against an API that reflects
each request into its bodies and its response headers, and quoted by a sync job reporting a
failure. A real `intmon run` watches it until
alerts fire; then the secret must appear, in none of its spellings, anywhere intmon wrote or
shows: the log, every column of every table, /metrics, /api/*, the status page,
`intmon status` (table and JSON) and the notifications sent.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
import urllib.parse
from email.utils import formatdate
from pathlib import Path

import aiohttp
import pytest
import yarl
from aiohttp import web

from monitor.cli import main
from tests.conftest import start_app
from tests.receiver import Receiver
from tests.test_cli import free_port, intmon_run
from tests.waiting import eventually

# "+", "!" and "*" make each percent-encoding (quote, quote_plus, yarl's) a different string.
CANARY = "CANARY-s3cr3t+k3y!Zq9*x"
ENV = {"INTMON_CANARY": CANARY}
CHECKS = ("bearer", "query-key", "basic", "url-token", "flow", "sync")


def spellings(secret: str) -> dict[str, str]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "literal": secret,
        "quote": urllib.parse.quote(secret, safe=""),
        "quote_plus": urllib.parse.quote_plus(secret),
        "yarl": yarl.URL("http://h/").with_query(k=secret).raw_query_string.removeprefix("k="),
        "json": json.dumps(secret)[1:-1],
        "base64": b64(secret),
        "base64-unpadded": b64(secret).rstrip("="),
        "basic": b64(f"user:{secret}"),
        "basic-urlsafe": base64.urlsafe_b64encode(f"user:{secret}".encode()).decode(),
    }


def find(text: str) -> list[str]:
    return [name for name, spelling in spellings(CANARY).items() if spelling in text]


def reflecting_api() -> web.Application:
    """Answers 200 with an error envelope repeating the request, and headers repeating it."""

    async def reflect(request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        query = request.raw_path.partition("?")[2]  # as sent: percent-encoded by yarl
        echoed = f"{authorization} {query}".strip()
        headers = {
            "Deprecation": "true",
            "Sunset": formatdate(time.time() + 3 * 86400, usegmt=True),
            "Warning": f'299 - "deprecated for {echoed}"',
            "Link": f"<https://docs.test/migrate?{query}&a={urllib.parse.quote(authorization)}>; "
            'rel="deprecation"',
            "X-Request-Id": echoed,
            "RateLimit": f'"{echoed}";r=50;t=60',
        }
        envelope = {"message": f"rejected {echoed}", "request_id": echoed}
        return web.json_response({"ok": False, "error": envelope}, headers=headers)

    app = web.Application()
    app.router.add_get("/reflect", reflect)
    return app


def write_config(tmp_path: Path, api: str, receiver: Receiver, listen: str) -> Path:
    url = f"{api}/reflect"
    notifier = f"json://user:${{INTMON_CANARY}}@127.0.0.1:{receiver.port}/hook"
    bearer = "{type: bearer, token: '${INTMON_CANARY}'}"
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"monitor: {{database: '{tmp_path / 'm.db'}', listen: '{listen}', log_level: debug}}\n"
        "alerting: {group_wait: 0s}\n"
        f"notifiers: [{{name: chat, urls: ['{notifier}']}}]\n"
        "defaults:\n"
        "  interval: 100ms\n"
        "  notify: [chat]\n"
        "  alerts: {error_rate: {window: 5s, min_runs: 2}, consecutive_failures: {critical: 2}}\n"
        "checks:\n"
        f"  - {{name: bearer, request: {{url: '{url}'}}, auth: {bearer}}}\n"
        f"  - {{name: query-key, request: {{url: '{url}'}}, auth: {{type: api_key, in: query,"
        " name: key, value: '${INTMON_CANARY}'}}\n"
        f"  - {{name: basic, request: {{url: '{url}'}}, expect: {{json: {{$.ok: true}}}},"
        " auth: {type: basic, username: user, password: '${INTMON_CANARY}'}}\n"
        f"  - {{name: url-token, request: {{url: '{url}?token=${{INTMON_CANARY}}'}}}}\n"
        f"  - {{name: flow, type: flow, auth: {bearer},"
        f" steps: [{{name: login, request: {{url: '{url}'}}}}]}}\n"
        "  - {name: sync, type: freshness, max_age: 1h, source: {type: heartbeat}}\n"
    )
    return config


def database_text(path: Path) -> str:
    """Every value of every column of every table, as text."""
    values: list[str] = []
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                values += [
                    v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in row
                ]
    assert len(tables) > 5 and values, "the database holds nothing to look at"
    return "\n".join(values)


def status_output(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    capsys.readouterr()
    try:
        assert main(argv) == 0
    finally:
        # main() installs its own log handler, as a process would; this is not a process.
        root.handlers[:], root.level = saved
    captured = capsys.readouterr()
    return captured.out + captured.err


async def test_the_canary_appears_nowhere(
    tmp_path: Path,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, api = await start_app(reflecting_api())
    listen = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path, api, receiver, listen)
    shown: dict[str, str] = {}
    try:
        async with intmon_run(config, listen, ENV) as exited:
            async with aiohttp.ClientSession() as client:
                # A sync job that failed with the same key, and says so.
                report = {"message": f"upstream answered 401 for key {CANARY}"}
                heartbeat = f"http://{listen}/heartbeat/sync/fail"
                async with client.post(heartbeat, json=report) as answer:
                    assert answer.status == 202
            # Every check fails; its alerts fire and are delivered with what the API reflected.
            firing = {f"{name}: FIRING" for name in CHECKS}
            await eventually(
                "every check's alerts firing", lambda: firing <= notified(receiver), 10
            )
            async with aiohttp.ClientSession() as client:
                for path in ("/metrics", "/api/status", "/api/alerts", "/"):
                    async with client.get(f"http://{listen}{path}") as response:
                        assert response.status == 200
                        shown[path] = await response.text()
    finally:
        await runner.cleanup()
    shown["log"] = exited.stderr
    assert exited.code == 0, shown["log"][-2000:]
    shown["notifications"] = json.dumps(receiver.posts)
    shown["database"] = database_text(tmp_path / "m.db")
    monkeypatch.setenv("INTMON_CANARY", CANARY)
    shown["intmon status"] = status_output(["status", "--config", str(config)], capsys)
    shown["intmon status --json"] = status_output(
        ["status", "--json", "--config", str(config)], capsys
    )

    # The places looked at hold what a leak would be in: reasons, links, alerts, messages.
    assert "***" in shown["/api/status"] and "docs.test/migrate" in shown["database"]
    assert "Migration: https://docs.test/migrate" in shown["notifications"]
    assert all(name in shown["intmon status"] for name in CHECKS)
    leaks = {place: find(text) for place, text in shown.items() if find(text)}
    assert not leaks, f"the canary leaked (place: spellings): {leaks}"


def notified(receiver: Receiver) -> set[str]:
    return {
        f"{name}: FIRING"
        for post in receiver.posts
        for name in CHECKS
        if name in post.get("title", "") and "FIRING" in post.get("title", "")
    }
