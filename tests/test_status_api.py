"""/api/status and /api/alerts: typed models, the JSON keys clients rely on, the JSON Schema."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.alerting.machine import AlertState, Phase
from monitor.alerting.rules import Evaluation
from monitor.alerting.status import AlertReport, AlertStatus
from monitor.cli.status import status_row
from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.engine.status import StatusReport, schema_json
from monitor.metrics import Metrics
from monitor.sandbox import build_sandbox
from monitor.storage.store import Store
from monitor.web.server import build_app
from tests.conftest import start_app
from tests.test_signals_acceptance import until
from tests.test_statuspage import NOW, check, deprecation, quota
from tests.tls import make_pki

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "status.schema.json"
# The keys every check and its `metrics` always have, null or not: what clients may rely on.
CHECK_KEYS = {
    "name", "type", "target", "provider", "interval", "state", "state_reason", "until", "last",
    "last_success",
    "last_failure", "signals", "metrics", "throttle",
}  # fmt: skip
METRICS_KEYS = {
    "error_rate", "error_rate_window", "error_rate_runs", "latency_p95", "latency_p95_window",
    "latency_p95_runs", "latency_p95_baseline", "rate_limited_15m", "consecutive_failures",
}  # fmt: skip


def test_the_committed_schema_file_is_the_schema_of_the_model() -> None:
    assert SCHEMA_FILE.read_text() == schema_json(), (
        f"{SCHEMA_FILE} is out of date: run `make status-schema` and commit it"
    )


@pytest.fixture
async def tls_sandbox(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """The sandbox over HTTPS, so a check has a certificate to report. Yields (url, CA file)."""
    pki = make_pki(tmp_path)
    runner = web.AppRunner(build_sandbox(), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}", pki.ca_file
    await runner.cleanup()


def every_kind_of_check(tls: str, ca_file: Path, plain: str, db: Path) -> str:
    """One check per optional part of the status: quota, deprecation, certificate, freshness,
    a failure with an alert, and one that has not run yet."""
    sunset = int(time.time()) + 30 * 86400
    legacy = f"{tls}/deprecated/epoch?sunset={sunset}&link=https://example.com/migrate"
    return f"""
monitor: {{database: '{db}'}}
defaults: {{interval: 50ms, timeout: 2s}}
checks:
  - {{name: up, tls_ca_file: '{ca_file}', request: {{url: '{tls}/healthy'}}}}
  - name: down
    tls_ca_file: '{ca_file}'
    request: {{url: '{tls}/status/503'}}
    alerts: {{error_rate: {{window: 2s, min_runs: 2}}}}
  - {{name: quota, tls_ca_file: '{ca_file}', request: {{url: '{tls}/quota/ietf?remaining=5'}}}}
  - {{name: legacy, tls_ca_file: '{ca_file}', request: {{url: '{legacy}'}}}}
  - name: sync
    type: freshness
    max_age: 1h
    source: {{type: http, url: '{plain}/sync/orders', timestamp: '$.updated_at'}}
  - {{name: idle, interval: 1h, timeout: 30s, request: {{url: '{plain}/hang'}}}}
"""


async def get(url: str) -> tuple[str, str]:
    """The content type and the body of a GET."""
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        assert response.status == 200
        return response.content_type, await response.text()


async def test_a_running_daemon_answers_in_the_published_schema(
    tls_sandbox: tuple[str, Path], sandbox: str, db_path: Path
) -> None:
    tls, ca_file = tls_sandbox
    config = parse_config(every_kind_of_check(tls, ca_file, sandbox, db_path), env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    try:
        ran = [name for name in daemon.checks if name != "idle"]
        await until(lambda: all(daemon.states[name].runs >= 2 for name in ran), "two runs each")
        page = ("down", "error_rate")
        await until(lambda: page in [(f.check, f.rule) for f in daemon.alerter.firing()], "a page")
        _, status_text = await get(url + "/api/status")
        _, alerts_text = await get(url + "/api/alerts")
        schema_type, schema_text = await get(url + "/api/status/schema")
    finally:
        await daemon.stop(grace=0.1)
        await runner.cleanup()

    assert (schema_type, schema_text) == ("application/schema+json", SCHEMA_FILE.read_text())
    # The schema is the models' own and every model forbids unknown keys, so a strict parse
    # proves each key the API sent is in the schema with its type; dumping it back proves
    # nothing was dropped or turned into null.
    status, alerts = json.loads(status_text), json.loads(alerts_text)
    report = StatusReport.model_validate_json(status_text, strict=True)
    assert report.model_dump(mode="json") == status
    alert_report = AlertReport.model_validate_json(alerts_text, strict=True)
    assert alert_report.model_dump(mode="json") == alerts

    checks = {entry["name"]: entry for entry in status["checks"]}
    for name, entry in checks.items():
        assert set(entry) == CHECK_KEYS, name
    optional = {"quota", "quota_forecast", "deprecation", "certificate", "freshness_age", "shape"}
    extras = {name: set(entry["metrics"]) - METRICS_KEYS for name, entry in checks.items()}
    assert extras == {
        "up": {"certificate", "shape"},
        "down": {"certificate"},
        "quota": {"quota", "quota_forecast", "certificate", "shape"},
        "legacy": {"deprecation", "certificate", "shape"},
        "sync": {"freshness_age"},
        "idle": set(),
    }
    assert set().union(*extras.values()) == optional  # every optional key was exercised
    assert checks["idle"]["last"] is None and checks["idle"]["state"] == "unknown"
    assert checks["down"]["last"]["error_class"] == "http_5xx"
    assert "days_to_sunset" in checks["legacy"]["metrics"]["deprecation"]
    (firing,) = [a for a in alerts["alerts"] if (a["check"], a["rule"]) == ("down", "error_rate")]
    assert firing["phase"] == "firing" and firing["value"] == 1.0


def test_an_alert_has_evaluation_keys_only_once_evaluated_and_keeps_a_null_threshold() -> None:
    state = AlertState("api", "deprecation", Phase.FIRING, "warning", since=10.0, fired_at=10.0)
    restored = AlertStatus.of(state, None, silenced=False).model_dump(mode="json")
    evaluation = Evaluation("warning", 10.0, None, "the API announces deprecation")
    evaluated = AlertStatus.of(state, evaluation, silenced=True).model_dump(mode="json")

    assert {"summary", "value", "threshold"}.isdisjoint(restored)
    assert evaluated["threshold"] is None and evaluated["silenced"] is True
    assert set(evaluated) - set(restored) == {"summary", "value", "threshold"}
    assert (restored["phase"], restored["severity"]) == ("firing", "warning")


SUNSET_AND_QUOTA = [
    ({}, "-", "-"),
    ({"quota": quota(5, 100)}, "5/100", "-"),
    ({"quota": quota(None, 100)}, "-", "-"),
    ({"deprecation": deprecation([], days_to_sunset=30.0)}, "-", "30d"),
    ({"deprecation": deprecation([])}, "-", "deprecated"),
    ({"deprecation": deprecation([], days_to_sunset=30.0, active=False)}, "-", "-"),
]


@pytest.mark.parametrize(
    ("metrics", "quota_cell", "sunset_cell"),
    SUNSET_AND_QUOTA,
    ids=["neither", "quota", "limit-only", "sunset", "undated", "withdrawn"],
)
def test_intmon_status_shows_quota_and_sunset_from_the_model(
    metrics: dict[str, Any], quota_cell: str, sunset_cell: str
) -> None:
    row = status_row(check("api", "down", "http_5xx", "HTTP 503", **metrics), NOW)

    assert row[:3] == ["api", "DOWN", "12s ago"]
    assert row[6:8] == [quota_cell, sunset_cell]


def test_intmon_status_shows_until_freshness_firing_alerts_request_id_and_the_reason() -> None:
    throttled = check("api", "down", "rate_limited", "HTTP 429", freshness_age=7200.0)
    assert throttled.last is not None
    last = throttled.last.model_copy(update={"request_id": "req-9"})
    reason = "held back with api-2 (provider acme): the provider's Retry-After"
    throttled = throttled.model_copy(
        update={"state": "throttled", "until": NOW + 300, "state_reason": reason, "last": last}
    )
    row = status_row(throttled, NOW, ["error_rate critical", "rate_limited warning"])

    assert row[:2] == ["api", "THROTTLED (5m left)"]
    assert row[8:] == ["2h", "error_rate critical, rate_limited warning", "req-9", reason]
    idle = status_row(check("new", "unknown"), NOW)
    assert idle[2] == "never" and idle[8:11] == ["-", "-", "-"]
