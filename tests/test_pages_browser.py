"""The status pages of a real daemon watching the sandbox, with a day of stored history, over
HTTP and in headless Chromium at desktop and phone widths. The screenshots are kept in
test-artifacts/screenshots/ (or $INTMON_TEST_ARTIFACTS/screenshots/) for people to look at."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import struct
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.core.units import HOUR, hour_of
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.store import RunRecord, Store
from monitor.web.server import build_app
from tests.conftest import start_app
from tests.receiver import Receiver
from tests.test_statuspage import Page
from tests.waiting import eventually

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_TIMEOUT = 60.0  # a cold start on a slow CI box takes a few seconds, not a minute
ARTIFACTS = (
    Path(os.environ.get("INTMON_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
    / "screenshots"
)  # fmt: skip
DESKTOP, PHONE = (1280, 900), (390, 1600)


def chromium() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {CHROMIUM} is missing: run scripts/system-deps.sh")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or scripts/system-deps.sh)")


async def run_chromium(binary: str, *args: str, log: list[str] | None = None) -> bytes:
    """Headless Chromium as an asyncio subprocess, so the in-process servers keep answering.
    `log`: gets its stderr (with `--enable-logging=stderr`, the console and CSP reports)."""
    with tempfile.TemporaryDirectory(prefix="intmon-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--user-data-dir={profile}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), CHROMIUM_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"chromium {' '.join(args)} did not finish within {CHROMIUM_TIMEOUT} s")
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    if log is not None:
        log.append(stderr.decode(errors="replace"))
    return stdout


async def screenshot(binary: str, url: str, name: str, size: tuple[int, int]) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    await run_chromium(binary, f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", url)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == size
    assert len(png) > 20_000, f"{shot}: a blank or near-empty screenshot"
    return shot


def e2e_config(sandbox: str, db: Path, receiver: Receiver) -> str:
    sunset = int(time.time()) + 30 * 86400
    return f"""
monitor: {{database: '{db}'}}
alerting: {{group_wait: 0s}}
defaults: {{interval: 100ms, timeout: 2s}}
notifiers: [{{name: chat, urls: ['{receiver.url}']}}]
checks:
  - {{name: web-ok, request: {{url: '{sandbox}/healthy'}}}}
  - name: billing-down
    provider: billing-co
    request: {{url: '{sandbox}/status/503'}}
    alerts: {{error_rate: {{window: 2s, min_runs: 3}}}}
    notify: [chat]
  # 5% left would page `quota`; this page's test is about an Up row showing its quota.
  - {{name: quota-api, request: {{url: '{sandbox}/quota/ietf?remaining=5&limit=100'}}, alerts: {{quota: false}}}}
  - name: legacy-api
    request: {{url: '{sandbox}/deprecated/epoch?sunset={sunset}&link=https://example.com/migrate'}}
  - name: orders-sync
    type: freshness
    max_age: 1h
    source: {{type: http, url: '{sandbox}/sync/orders', timestamp: '$.updated_at'}}
  - {{name: not-yet-run, interval: 1h, timeout: 30s, request: {{url: '{sandbox}/hang'}}}}
"""


def seed_history(url: str, now: float) -> None:
    """A day of runs every 5 minutes before now, the closed hours rolled up, as the daemon
    would have left them: billing-down failing more and more, the others healthy."""
    rnd = random.Random(11)
    first = hour_of(now) - 23 * int(HOUR)
    runs = []
    for name in ("web-ok", "billing-down", "quota-api", "legacy-api"):
        for i in range(int((now - 60 - first) // 300)):
            ts = first + i * 300.0
            failing = name == "billing-down" and rnd.random() < (ts - first) / (24 * HOUR)
            latency = rnd.uniform(0.04, 0.12) * (1 + (i % 12) / 6)
            error = "http_5xx" if rnd.random() < 0.7 else "timeout"
            runs.append(
                RunRecord(name, ts, not failing, error if failing else None,
                          503 if failing else 200, latency, "HTTP 503" if failing else "HTTP 200",
                          {})
            )  # fmt: skip
    store = Store(url)
    store.open()
    try:
        store.write_runs(runs)
        for hour in range(first, hour_of(now), int(HOUR)):
            store.rollups.rollup(hour)
    finally:
        store.close()


@pytest.fixture
async def running(
    sandbox: str, db_path: Path, receiver: Receiver
) -> AsyncIterator[tuple[Daemon, str]]:
    config = parse_config(e2e_config(sandbox, db_path, receiver), env={})
    seed_history(config.monitor.database_url, time.time())
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    try:
        await eventually("a firing alert", lambda: bool(daemon.alerter.firing()), 10.0)
        ran = [n for n in daemon.checks if n != "not-yet-run"]
        await eventually(
            "three runs each", lambda: all(daemon.states[n].runs >= 3 for n in ran), 10.0
        )
        await eventually("the FIRING notification", lambda: bool(receiver.posts), 10.0)
        yield daemon, url
    finally:
        try:
            await daemon.stop(grace=0.1)
        finally:
            await runner.cleanup()


async def test_chromium_shows_the_overview_problems_first_with_a_day_of_history(
    running: tuple[Daemon, str],
) -> None:
    binary = chromium()
    daemon, url = running
    dom = (await run_chromium(binary, "--dump-dom", url + "/")).decode()
    await screenshot(binary, url + "/", "overview-desktop", DESKTOP)
    await screenshot(binary, url + "/", "overview-phone", PHONE)

    page = Page(dom)
    assert set(page.rows) == set(daemon.checks)
    assert page.order[0] == "billing-down"
    assert re.search(r"^billing-co http_5xx: .* ✗ Down ", page.rows["billing-down"])
    assert "error_rate critical" in page.rows["billing-down"]
    for name in ("web-ok", "quota-api", "orders-sync"):
        assert "✓ Up" in page.rows[name], page.rows[name]
    # Passing, but its provider announces the end of the API: a warning-level problem.
    assert "◐ Degraded" in page.rows["legacy-api"], page.rows["legacy-api"]
    assert "? Unknown" in page.rows["not-yet-run"]
    assert "quota 5 / 100" in page.rows["quota-api"]
    assert re.search(r"sunset in (29\.9|30) days · migration guide", page.rows["legacy-api"])
    # The stored day came back: 24 segments, most of them with runs, some red for billing.
    bars = re.findall(r'<svg class="bar".*?</svg>', dom)
    assert len(bars) == len(daemon.checks)
    assert all(bar.count("<rect") == 24 for bar in bars)
    billing = dom[dom.index('<th scope="row"><a href="/checks/billing-down"') :]
    assert billing[: billing.index("</tr>")].count('fill="#c8372d"') >= 6
    assert dom.count('<svg class="spark"') >= 4


async def test_chromium_shows_a_check_page_with_its_history_alerts_and_failures(
    running: tuple[Daemon, str],
) -> None:
    binary = chromium()
    _, url = running
    page_url = url + "/checks/billing-down"
    dom = (await run_chromium(binary, "--dump-dom", page_url)).decode()
    await screenshot(binary, page_url, "check-desktop", (1280, 1500))
    await screenshot(binary, page_url, "check-phone", (390, 2600))

    assert dom.count('<svg class="chart"') == 3
    text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
    # Sent; the commit that marks it so may still be on its way.
    assert re.search(r"FIRING error_rate chat (delivered|queued)", text)
    assert re.search(r"http_5xx 503 HTTP 503", text)
    assert "error_rate firing critical" in text


async def test_the_filter_the_check_api_and_an_unknown_check_over_http(
    running: tuple[Daemon, str],
) -> None:
    _, url = running
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/", params={"state": "down", "provider": "billing-co"}) as r:
            filtered = Page(await r.text())
        async with http.get(url + "/api/checks/billing-down") as r:
            assert r.status == 200
            detail = json.loads(await r.text())
        async with http.get(url + "/checks/<nope>") as r:
            missing = (r.status, await r.text())
        async with http.get(url + "/api/checks/nope") as r:
            assert r.status == 404

    assert list(filtered.rows) == ["billing-down"]
    assert detail["check"]["name"] == "billing-down"
    assert len(detail["day"]) == 24
    assert detail["last_failures"][0]["error_class"] == "http_5xx"
    assert detail["notifications"][0]["kind"] == "FIRING"
    assert missing[0] == 404 and "&lt;nope&gt;" in missing[1]
