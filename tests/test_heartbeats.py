"""Signed heartbeats: the signature rules, persistence, and POST /heartbeat/{check} end to end."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from sqlmodel import Session, select

from checks.freshness import FreshnessCheck
from checks.heartbeats import HeartbeatBook
from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.heartbeats import HeartbeatRow, load_heartbeat, load_heartbeats, save_heartbeat
from monitor.storage.store import Store
from monitor.web import heartbeats
from monitor.web.flood import PUSH_BURST, PUSH_RATE
from monitor.web.heartbeats import signature, verify_signature
from monitor.web.server import build_app
from tests.conftest import start_app

SECRET = "hb-secret-0123456789abcdef"
NOW = 1_700_000_000.0
BODY = b'{"count": 120}'


def good(ts: float = NOW, body: bytes = BODY) -> tuple[str, str]:
    return str(int(ts)), signature(SECRET, str(int(ts)), body)


MISMATCH = "signature does not match"
STALE = "X-Timestamp is more than 300s away from now (stale or replayed)"
SIGNATURES = [
    ("valid", *good(), BODY, None),
    ("valid-uppercase-hex", good()[0], good()[1].upper().replace("SHA256=", "sha256="), BODY, None),
    ("missing-timestamp", None, good()[1], BODY, "missing X-Timestamp or X-Signature header"),
    ("missing-signature", good()[0], None, BODY, "missing X-Timestamp or X-Signature header"),
    ("timestamp-not-a-number", "yesterday", good()[1], BODY, "X-Timestamp is not unix seconds"),
    ("stale", *good(NOW - 301), BODY, STALE),
    ("from-the-future", *good(NOW + 301), BODY, STALE),
    ("forged", good()[0], "sha256=" + "0" * 64, BODY, "signature does not match"),
    ("body-tampered", *good(), b'{"count": 999}', "signature does not match"),
    ("other-secret", good()[0], signature("another-secret", good()[0], BODY), BODY, MISMATCH),
    ("no-prefix", good()[0], good()[1].removeprefix("sha256="), BODY, "signature does not match"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("timestamp", "sig", "body", "problem"),
    [s[1:] for s in SIGNATURES],
    ids=[s[0] for s in SIGNATURES],
)
def test_signatures_are_checked_as_the_interface_specifies(
    timestamp: str | None, sig: str | None, body: bytes, problem: str | None
) -> None:
    assert verify_signature(SECRET, timestamp, sig, body, NOW) == problem


def test_the_last_heartbeat_survives_a_restart(store: Store) -> None:
    book = HeartbeatBook()
    save_heartbeat(store.engine, "sync", book.record("sync", NOW, count=120))
    beat = book.record("sync", NOW + 60, failed=True, message="upstream 503")
    save_heartbeat(store.engine, "sync", beat, failed=True)
    restarted = HeartbeatBook()
    restarted.restore(load_heartbeats(store.engine))
    beat = restarted.last("sync")
    assert beat is not None
    assert (beat.last_success, beat.count) == (NOW, 120)
    assert (beat.last_failure, beat.message) == (NOW + 60, "upstream 503")
    assert beat.failing


def test_a_push_to_another_replica_keeps_the_half_of_the_heartbeat_it_did_not_change(
    store: Store,
) -> None:
    here, there = HeartbeatBook(), HeartbeatBook()
    save_heartbeat(store.engine, "sync", here.record("sync", NOW, count=7))
    # `there` never saw the success: its failure push must not write its stale success back.
    failed = there.record("sync", NOW + 5, failed=True, message="boom")
    save_heartbeat(store.engine, "sync", failed, failed=True)
    stored = load_heartbeat(store.engine, "sync")
    assert stored is not None and (stored.last_success, stored.count) == (NOW, 7)
    here.merge("sync", stored)
    beat = here.last("sync")
    assert beat is not None and beat.failing and beat.message == "boom"


@dataclass
class Running:
    daemon: Daemon
    url: str
    client: aiohttp.ClientSession

    async def push(
        self,
        check: str,
        body: bytes = BODY,
        headers: dict[str, str] | None = None,
        fail: bool = False,
    ) -> tuple[int, dict[str, object]]:
        path = f"{self.url}/heartbeat/{check}{'/fail' if fail else ''}"
        async with self.client.post(path, data=body, headers=headers or {}) as response:
            return response.status, await response.json()

    async def check(self, name: str) -> tuple[bool, str]:
        result = await self.daemon.runner.execute(self.daemon.checks[name])
        return result.ok, result.reason


def signed(body: bytes = BODY, ts: float | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time() if ts is None else ts))
    return {"X-Timestamp": stamp, "X-Signature": signature(secret, stamp, body)}


@pytest.fixture
async def running(db_url: str, sandbox: str) -> AsyncIterator[Running]:
    text = f"""
monitor: {{database: '{db_url}'}}
checks:
  - {{name: signed, type: freshness, interval: 1h, max_age: 1h, min_count: 1,
      source: {{type: heartbeat, secret: '{SECRET}'}}}}
  - {{name: open, type: freshness, interval: 1h, max_age: 1h, source: {{type: heartbeat}}}}
  - {{name: polled, type: freshness, interval: 1h, max_age: 1h,
      source: {{type: http, url: '{sandbox}/sync/orders', timestamp: $.updated_at}}}}
"""
    config = parse_config(text, env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    async with aiohttp.ClientSession() as client:
        yield Running(daemon, url, client)
    await daemon.stop()
    await runner.cleanup()


async def test_a_signed_heartbeat_makes_its_check_fresh_and_is_persisted(running: Running) -> None:
    status, answer = await running.push("signed", headers=signed())
    assert (status, answer["recorded"]) == (202, "success")
    ok, reason = await running.check("signed")
    assert ok, reason
    book = HeartbeatBook()
    book.restore(load_heartbeats(running.daemon.store.engine))
    beat = book.last("signed")
    assert beat is not None
    assert beat.count == 120


REFUSED = [
    ("unsigned", {}, "missing X-Timestamp or X-Signature header"),
    ("forged", {"X-Timestamp": "{now}", "X-Signature": "sha256=" + "ab" * 32}, MISMATCH),
    ("wrong-secret", "wrong-secret", "signature does not match"),
    ("stale", "stale", STALE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "error"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
async def test_unsigned_forged_or_stale_pushes_get_401_and_change_nothing(
    running: Running, headers: dict[str, str] | str, error: str
) -> None:
    if headers == "wrong-secret":
        headers = signed(secret="not-the-configured-secret")
    elif headers == "stale":
        headers = signed(ts=time.time() - 301)
    elif isinstance(headers, dict):
        headers = {k: v.format(now=int(time.time())) for k, v in headers.items()}
    status, answer = await running.push("signed", headers=headers)
    assert (status, answer["error"]) == (401, error)
    assert running.daemon.runner.ctx.heartbeats.last("signed") is None
    ok, reason = await running.check("signed")
    assert (ok, reason) == (True, "waiting for the first heartbeat (max_age 1h)")


@pytest.mark.parametrize("name", ["nope", "polled"], ids=["unknown-check", "not-a-heartbeat-check"])
async def test_pushes_for_checks_that_take_no_heartbeats_are_404(
    running: Running, name: str
) -> None:
    status, _ = await running.push(name, headers=signed())
    assert status == 404


async def test_a_reported_failure_fails_the_check(running: Running) -> None:
    body = json.dumps({"message": "export job crashed"}).encode()
    status, answer = await running.push("signed", body, headers=signed(body), fail=True)
    assert (status, answer["recorded"]) == (202, "failure")
    ok, reason = await running.check("signed")
    assert not ok
    assert re.fullmatch(r"the job reported a failed run \S+ ago: export job crashed", reason)


async def test_a_heartbeat_check_without_a_secret_takes_plain_pushes(running: Running) -> None:
    status, _ = await running.push("open", b"")
    assert status == 202
    assert (await running.check("open"))[0]


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b"{nope", b'{"count": -1}', b'{"count": "12"}'], ids=repr
)
async def test_a_malformed_body_is_400_and_changes_nothing(running: Running, body: bytes) -> None:
    status, _ = await running.push("open", body)
    assert status == 400
    assert running.daemon.runner.ctx.heartbeats.last("open") is None


def test_a_short_secret_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        FreshnessCheck.model_validate(
            {"name": "x", "max_age": "1h", "source": {"type": "heartbeat", "secret": "short"}}
        )


async def raw_post(url: str, path: str, head: dict[str, str], pieces: list[bytes]) -> int:
    """POST over a raw socket, the body written in `pieces` with a pause between them, as a
    slow network delivers it: separate TCP segments. Returns the status code."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in head.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_a_signed_body_arriving_in_several_segments_verifies(running: Running) -> None:
    body = json.dumps({"count": 7, "message": "x" * 3000}).encode()
    head = {**signed(body), "Content-Length": str(len(body)), "Content-Type": "application/json"}
    pieces = [body[:10], body[10:1500], body[1500:]]
    assert await raw_post(running.url, "/heartbeat/signed", head, pieces) == 202
    beat = running.daemon.runner.ctx.heartbeats.last("signed")
    assert beat is not None and beat.count == 7


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
async def test_a_body_past_64_kib_is_413_however_it_is_sent(
    running: Running, announced: bool
) -> None:
    body = b'{"count": 1, "pad": "' + b"x" * (heartbeats.MAX_BODY) + b'"}'
    if announced:
        head = {"Content-Length": str(len(body))}
        pieces = [body[: len(body) // 2], body[len(body) // 2 :]]
    else:
        head = {"Transfer-Encoding": "chunked"}
        half = len(body) // 2
        pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:])] + [
            b"0\r\n\r\n"
        ]
    assert await raw_post(running.url, "/heartbeat/open", head, pieces) == 413
    assert running.daemon.runner.ctx.heartbeats.last("open") is None


async def test_a_flood_of_pushes_is_rate_limited_and_stores_a_bounded_number(
    running: Running,
) -> None:
    started = time.monotonic()
    answers: dict[int, int] = {}
    retry_after = set()
    for _ in range(1000):
        async with running.client.post(f"{running.url}/heartbeat/open", data=b"") as response:
            answers[response.status] = answers.get(response.status, 0) + 1
            if response.status == 429:
                retry_after.add(response.headers["Retry-After"])
    elapsed = time.monotonic() - started
    assert answers[202] <= PUSH_BURST + elapsed * PUSH_RATE + 1
    assert answers[429] >= 1000 - answers[202]
    assert retry_after and all(int(value) >= 1 for value in retry_after)
    # One row per check, and only the accepted pushes ever reached the writer.
    with Session(running.daemon.store.engine) as session:
        assert len(session.exec(select(HeartbeatRow)).all()) == 1
