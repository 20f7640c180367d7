"""The status page: rendering from hand-built data, and the real page in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import re
import struct
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from pydantic import MISSING

from monitor.alerting.machine import Phase
from monitor.alerting.status import AlertReport, AlertStatus
from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.engine.status import CheckStatus, LastRun, State, StatusReport, ThrottleStatus
from monitor.metrics import Metrics
from monitor.signals.headers import Quota
from monitor.signals.status import DeprecationStatus, SignalsStatus
from monitor.storage.store import Store
from monitor.web.server import build_app
from monitor.web.statuspage import render_status
from tests.conftest import start_app
from tests.waiting import eventually

NOW = 1_750_000_000.0
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_TIMEOUT = 60.0  # a cold start on a slow CI box takes a few seconds, not a minute
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


class Page(HTMLParser):
    """Every start tag, all text, and per check row the text after the check's name."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""
        self.rows: dict[str, str] = {}
        self._row: list[str] | None = None
        self._name: str | None = None
        self._naming = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self._row, self._name = [], None
        self._naming = tag == "th" and ("scope", "row") in attrs
        if self._row is not None:
            self._row.append(" ")  # cells and badges read as separate words

    def handle_endtag(self, tag: str) -> None:
        if self._row is not None:
            self._row.append(" ")
        if tag == "tr" and self._row is not None and self._name is not None:
            self.rows[self._name] = " ".join("".join(self._row).split())
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._naming:
            self._name, self._naming = data.strip(), False
        elif self._row is not None:
            self._row.append(data)


# An idle check's figures: no runs in any window yet.
IDLE = SignalsStatus(
    error_rate=None,
    error_rate_window=300.0,
    error_rate_runs=0,
    latency_p95=None,
    latency_p95_window=900.0,
    latency_p95_runs=0,
    latency_p95_baseline=None,
    rate_limited_15m=0,
    consecutive_failures=0,
)
NOT_THROTTLED = ThrottleStatus(paused_until=None, reason=None, throttled_seconds=0.0)


def check(
    name: str, state: State, error_class: str | None = None, reason: str = "", **metrics: Any
) -> CheckStatus:
    """One check as `Daemon.status()` reports it; `metrics` replace the idle figures."""
    last = None
    if state != "unknown":
        ok = state == "up"
        last = LastRun(
            ts=NOW - 12, ok=ok, error_class=error_class, status=None, latency=None, reason=reason
        )
    return CheckStatus(
        name=name,
        type="http",
        target="GET https://api.example.com/",
        provider=None,
        interval=60.0,
        state=state,
        last=last,
        last_success=None,
        last_failure=None,
        signals={},
        metrics=SignalsStatus.model_validate(IDLE.model_dump() | metrics),
        throttle=NOT_THROTTLED,
    )


def deprecation(
    links: list[str], days_to_sunset: float | None = None, active: bool = True
) -> DeprecationStatus:
    """A deprecation first seen a day ago, with a sunset date when `days_to_sunset` is given."""
    dated = days_to_sunset is not None
    return DeprecationStatus(
        first_seen=NOW - 86400,
        last_seen=NOW - 12,
        deprecated_at=None,
        sunset_at=NOW + days_to_sunset * 86400 if dated else None,
        links=tuple(links),
        sunset_links=(),
        message=None,
        active=active,
        days_to_sunset=days_to_sunset if dated else MISSING,
    )


def alert(check: str, rule: str, phase: Phase = Phase.FIRING, **extra: Any) -> AlertStatus:
    """One alert as `Alerter.status()` reports it; `extra` replaces fields."""
    firing = AlertStatus(
        check=check,
        rule=rule,
        phase=phase,
        severity="critical",
        since=NOW - 120,
        fired_at=NOW - 90,
        notified_severity="critical",
        last_notified=NOW - 90,
        clear_count=0,
        clear_since=None,
        lower_count=0,
        version=2,
        summary=f"{rule} >= critical 5%",
        value=0.2,
        threshold=0.05,
        silenced=False,
    )
    return AlertStatus.model_validate(firing.model_dump() | extra)


def render(checks: list[CheckStatus], alerts: list[AlertStatus]) -> str:
    return render_status(
        StatusReport(generated_at=NOW, checks=tuple(checks)),
        AlertReport(generated_at=NOW, alerts=tuple(alerts)),
    )


def quota(remaining: float | None, limit: float | None) -> Quota:
    return Quota(remaining, limit, reset_at=None, policy=None, dialect="ietf", seen_at=NOW)


def sample() -> tuple[list[CheckStatus], list[AlertStatus]]:
    legacy = deprecation(["https://example.com/migrate"], days_to_sunset=30.0)
    checks = [
        check("orders-api", "up", error_rate=0.0, latency_p95=0.235, quota=quota(5, 100)),
        check("billing", "down", "http_5xx", "HTTP 503 from upstream", error_rate=0.125, latency_p95=1.5),
        check("legacy", "up", deprecation=legacy),
        check("orders-sync", "up", freshness_age=7200.0),
        check("new-one", "unknown"),
    ]  # fmt: skip
    pending = alert("orders-api", "latency_p95", Phase.PENDING)
    return checks, [alert("billing", "error_rate"), pending]


def test_every_check_appears_with_its_state_spelled_out() -> None:
    checks, alerts = sample()
    page = Page(render(checks, alerts))

    assert set(page.rows) == {c.name for c in checks}
    assert page.rows["orders-api"].startswith("✓ Up")
    assert "✗ Down 12s ago" in page.rows["billing"]  # after the reason, under the name
    assert page.rows["new-one"].startswith("? Unknown")
    assert ("span", {"class": "state state-down"}) in page.tags  # the colour, besides the text


def test_it_shows_the_figures_and_the_sunset_countdown_with_the_migration_link() -> None:
    checks, alerts = sample()
    page = Page(render(checks, alerts))

    assert "12s ago 0.0% 235ms 5 / 100" in page.rows["orders-api"]
    assert "12.5% 1.5s" in page.rows["billing"]
    assert "HTTP 503 from upstream" in page.rows["billing"]
    assert "in 30 days migration guide" in page.rows["legacy"]
    assert ("a", {"href": "https://example.com/migrate", "rel": "noopener noreferrer"}) in page.tags
    assert "2h" in page.rows["orders-sync"]
    assert "never" in page.rows["new-one"]


def test_it_summarises_checks_down_and_firing_alerts_at_the_top() -> None:
    checks, alerts = sample()
    page = Page(render(checks, alerts))

    assert "5checks1down1alertsfiring" in re.sub(r"\s", "", page.text)
    assert "error_rate critical" in page.rows["billing"]
    assert "pending: latency_p95" in page.rows["orders-api"]
    assert "error_rate critical" not in page.rows["orders-api"]
    assert "Firing alerts" in page.text and "for 1m30s" in page.text


def test_a_firing_alert_of_a_check_no_longer_configured_still_shows_in_the_summary() -> None:
    page = Page(render([], [alert("removed", "error_rate")]))

    assert "removed" in page.text and "error_rate critical" in page.text


def test_it_refreshes_itself_and_loads_nothing_from_elsewhere() -> None:
    html = render(*sample())
    page = Page(html)

    assert ("meta", {"http-equiv": "refresh", "content": "10"}) in page.tags
    assert {tag for tag, _ in page.tags}.isdisjoint({"script", "link", "img", "iframe"})
    assert "//" not in html.replace("https://example.com/migrate", "")


HOSTILE_LINKS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    '//evil.example/"><script>alert(1)</script>',
]


@pytest.mark.parametrize("link", HOSTILE_LINKS, ids=["javascript", "mixed-case", "data", "vbscript", "relative"])  # fmt: skip
def test_only_http_links_become_anchors_and_hostile_text_is_escaped(link: str) -> None:
    hostile = deprecation([link], days_to_sunset=3.0)
    reason = "<script>alert('reason')</script>"
    legacy = check("legacy", "down", "http_5xx", reason, deprecation=hostile)
    alerts = [alert("legacy", "sunset", summary='"><img src=x onerror=alert(1)>')]
    html = render([legacy], alerts)
    page = Page(html)

    assert not [attrs for tag, attrs in page.tags if tag == "a"]
    assert {tag for tag, _ in page.tags}.isdisjoint({"script", "img"})
    assert "&lt;script&gt;alert(&#x27;reason&#x27;)&lt;/script&gt;" in html
    assert link in page.text  # shown, as text, for the operator to judge
    assert "<script>alert('reason')</script>" in page.rows["legacy"]


def test_a_sunset_without_a_date_or_already_past_says_so() -> None:
    undated = check("a", "up", deprecation=deprecation([]))
    past = check("b", "up", deprecation=deprecation([], days_to_sunset=0.0))
    ended = check("c", "up", deprecation=deprecation([], days_to_sunset=9.0, active=False))
    page = Page(render([undated, past, ended], []))

    assert "deprecated, no sunset date" in page.rows["a"]
    assert "sunset has passed" in page.rows["b"]
    assert "days" not in page.rows["c"]


# -- end to end: the daemon watching the sandbox, the page in headless Chromium ----------------


def chromium() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {CHROMIUM} is missing: run scripts/system-deps.sh")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or scripts/system-deps.sh)")


async def run_chromium(binary: str, *args: str) -> bytes:
    """Headless Chromium as an asyncio subprocess, so the in-process servers keep answering."""
    with tempfile.TemporaryDirectory(prefix="intmon-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), CHROMIUM_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"chromium {' '.join(args)} did not finish within {CHROMIUM_TIMEOUT} s")
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout


def e2e_config(sandbox: str, db: Path) -> str:
    sunset = int(time.time()) + 30 * 86400
    return f"""
monitor: {{database: '{db}'}}
defaults: {{interval: 100ms, timeout: 2s}}
checks:
  - {{name: web-ok, request: {{url: '{sandbox}/healthy'}}}}
  - name: billing-down
    request: {{url: '{sandbox}/status/503'}}
    alerts: {{error_rate: {{window: 2s, min_runs: 3}}}}
  - {{name: quota-api, request: {{url: '{sandbox}/quota/ietf?remaining=5&limit=100'}}}}
  - name: legacy-api
    request: {{url: '{sandbox}/deprecated/epoch?sunset={sunset}&link=https://example.com/migrate'}}
  - name: orders-sync
    type: freshness
    max_age: 1h
    source: {{type: http, url: '{sandbox}/sync/orders', timestamp: '$.updated_at'}}
  - {{name: not-yet-run, interval: 1h, timeout: 30s, request: {{url: '{sandbox}/hang'}}}}
"""


async def test_chromium_shows_every_check_its_state_and_the_firing_alert(
    sandbox: str, db_path: Path
) -> None:
    binary = chromium()
    config = parse_config(e2e_config(sandbox, db_path), env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    try:
        await eventually("a firing alert", lambda: bool(daemon.alerter.firing()), 10.0)
        ran = [n for n in daemon.checks if n != "not-yet-run"]
        await eventually(
            "three runs each", lambda: all(daemon.states[n].runs >= 3 for n in ran), 10.0
        )
        dom = (await run_chromium(binary, "--dump-dom", url + "/")).decode()
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        await run_chromium(binary, f"--screenshot={shot}", "--window-size=1280,900", url + "/")
    finally:
        try:
            await daemon.stop(grace=0.1)
        finally:
            await runner.cleanup()

    page = Page(dom)
    assert set(page.rows) == set(daemon.checks)
    for name in ("web-ok", "quota-api", "legacy-api", "orders-sync"):
        assert page.rows[name].startswith("✓ Up"), page.rows[name]
    assert re.search(r"^http_5xx: .* ✗ Down ", page.rows["billing-down"])
    assert "error_rate critical" in page.rows["billing-down"]
    assert page.rows["not-yet-run"].startswith("? Unknown")
    assert "5 / 100" in page.rows["quota-api"]
    assert ("a", {"href": "https://example.com/migrate", "rel": "noopener noreferrer"}) in page.tags
    assert re.search(r"in (29\.9|30) days migration guide", page.rows["legacy-api"])
    assert re.search(r"^✓ Up \S+s ago .* [23]\ds ", page.rows["orders-sync"])  # ~30 s old
    assert "deprecation warning sunset warning" in page.rows["legacy-api"]  # default rules
    assert "6checks1down3alertsfiring" in re.sub(r"\s", "", page.text)

    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1280, 900)
    assert len(png) > 20_000, "a blank or near-empty screenshot"
