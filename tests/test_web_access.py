"""Who may see and change what, tried as an attacker would: no credentials, a wrong password, an
unknown user, a hash whose cost was edited, writes from the network, and the headers that keep
the pages from being framed or sniffed. A real daemon behind a real aiohttp server."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from monitor.cli import main
from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.store import Store
from monitor.web.passwords import Verifier, hash_password
from monitor.web.server import build_app
from tests.conftest import network_address, start_app

PASSWORD = "s3cret-of-the-ops-team"
OPS_HASH = hash_password(PASSWORD, cost=4)  # the lowest cost: tests pay bcrypt on every miss
PRIVATE = ["/", "/api/status", "/metrics", "/api/alerts", "/checks/web", "/api/status/schema"]
PUBLIC = ["/healthz", "/readyz", "/status"]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


OPS = basic("ops", PASSWORD)


async def serve_daemon(text: str, host: str = "127.0.0.1") -> AsyncIterator[str]:
    config = parse_config(text, env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon), host)
    await daemon.start()
    try:
        yield url
    finally:
        await daemon.stop(grace=0.1)
        await runner.cleanup()


@pytest.fixture
async def guarded(db_path: Path, sandbox: str) -> AsyncIterator[str]:
    text = f"""
monitor:
  database: '{db_path}'
  web: {{basic_auth_users: {{ops: '{OPS_HASH}'}}}}
checks:
  - {{name: web, interval: 1h, request: {{url: '{sandbox}/healthy'}}}}
"""
    async for url in serve_daemon(text):
        yield url


async def status_of(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, url, headers=headers or {}) as response,
    ):
        await response.read()
        return response.status


@pytest.mark.parametrize("path", PRIVATE)
async def test_it_answers_401_without_credentials_and_200_with_them(
    guarded: str, path: str
) -> None:
    async with aiohttp.ClientSession() as client, client.get(guarded + path) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="intmon"')
        assert "ops" not in await response.text()
    assert await status_of(guarded + path, headers=OPS) == 200


@pytest.mark.parametrize("path", PUBLIC)
async def test_public_paths_need_no_credentials(guarded: str, path: str) -> None:
    assert await status_of(guarded + path) == 200


REFUSED = [
    ("wrong-password", basic("ops", PASSWORD + "!")),
    ("unknown-user", basic("root", PASSWORD)),
    ("empty-password", basic("ops", "")),
    ("longer-than-bcrypt-takes", basic("ops", PASSWORD + "x" * 80)),
    ("no-colon", {"Authorization": "Basic " + base64.b64encode(b"ops").decode()}),
    ("not-base64", {"Authorization": "Basic !!!"}),
    ("bearer", {"Authorization": f"Bearer {PASSWORD}"}),
]


@pytest.mark.parametrize("headers", [r[1] for r in REFUSED], ids=[r[0] for r in REFUSED])
async def test_wrong_credentials_are_401(guarded: str, headers: dict[str, str]) -> None:
    assert await status_of(guarded + "/api/status", headers=headers) == 401


async def test_a_hash_whose_cost_was_edited_refuses_the_right_password(
    db_path: Path, sandbox: str
) -> None:
    # Still a well-formed hash, so the config takes it; but it is no longer the password's.
    edited = OPS_HASH.replace("$04$", "$05$", 1)
    text = f"""
monitor: {{database: '{db_path}', web: {{basic_auth_users: {{ops: '{edited}'}}}}}}
checks: []
"""
    async for url in serve_daemon(text):
        assert await status_of(url + "/api/status", headers=OPS) == 401


async def test_writes_need_credentials_even_where_reads_are_public(guarded: str) -> None:
    assert await status_of(guarded + "/-/reload", "POST") == 401
    assert await status_of(guarded + "/status", "POST") == 401
    assert await status_of(guarded + "/api/checks/web/schema/accept", "POST") == 401
    async with (
        aiohttp.ClientSession() as client,
        client.post(guarded + "/-/reload", headers=OPS) as response,
    ):
        # Past the guard: the handler answers (this config was never a file to read again).
        assert "reloaded" in await response.json()


async def test_without_users_writes_from_the_network_are_refused(
    db_path: Path, sandbox: str
) -> None:
    text = f"""
monitor: {{database: '{db_path}'}}
checks:
  - {{name: web, interval: 1h, request: {{url: '{sandbox}/healthy'}}}}
"""
    async for url in serve_daemon(text, network_address()):
        assert await status_of(url + "/api/checks/web/schema/accept", "POST") == 403
        assert await status_of(url + "/-/reload", "POST") == 403
        assert await status_of(url + "/api/status") == 200  # reads stay open without users


@pytest.mark.parametrize("path", ["/", "/status", "/healthz", "/api/status", "/nope"])
async def test_every_answer_carries_the_security_headers(guarded: str, path: str) -> None:
    async with aiohttp.ClientSession() as client:
        for headers in ({}, OPS):
            async with client.get(guarded + path, headers=headers) as response:
                policy = response.headers["Content-Security-Policy"]
                assert "default-src 'none'" in policy
                assert "frame-ancestors 'none'" in policy
                assert "script-src" not in policy and "unsafe-inline" not in policy
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
                assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_a_verified_password_is_remembered_so_a_scrape_does_not_pay_bcrypt() -> None:
    users = {"ops": hash_password(PASSWORD, cost=12)}
    verifier = Verifier()
    started = time.perf_counter()
    assert await verifier.verify(users, "ops", PASSWORD)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(20):
        assert await verifier.verify(users, "ops", PASSWORD)
    assert time.perf_counter() - started < first
    # A wrong password is never remembered as right, nor is a user whose hash changed.
    assert not await verifier.verify(users, "ops", PASSWORD + "!")
    assert not await verifier.verify({"ops": hash_password("other", cost=4)}, "ops", PASSWORD)


def test_hash_password_prints_a_hash_that_verifies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["hash-password", "--cost", "4"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$2b$04$")
    assert bcrypt.checkpw(PASSWORD.encode(), printed.encode())


def test_validate_refuses_an_unsigned_heartbeat_on_a_network_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        "monitor: {listen: '0.0.0.0:9464'}\n"
        "checks:\n"
        "  - {name: export, type: freshness, max_age: 1d, source: {type: heartbeat}}\n"
    )
    assert main(["validate", "--config", str(path)]) == 2
    assert "checks[0].source.secret: required: monitor.listen 0.0.0.0" in capsys.readouterr().err
