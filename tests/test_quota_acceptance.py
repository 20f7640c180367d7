"""Quota as a budget, end to end: a real Daemon on a real SQLite file watches the sandbox's
draining quota, and Apprise delivers `json://` to an in-process receiver.

The truth a forecast is judged against is what the target did: the moment its own log shows
it served a quota with nothing left. No figure is assumed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from monitor.sandbox import build_sandbox
from monitor.sandbox.signals import HITS, Hit
from tests.conftest import start_app
from tests.receiver import Receiver
from tests.test_alerting_acceptance import make_config, running, series, titles
from tests.waiting import eventually

DRAIN = "limit=1000&cost=40&reset=3600"  # 25 requests from full to empty, the reset an hour off


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, web.Application]]:
    app = build_sandbox()
    runner, url = await start_app(app)
    yield url, app
    await runner.cleanup()


@pytest.fixture
def chat(receiver: Receiver) -> Receiver:
    return receiver


def quota_check(url: str, name: str, query: str, extra: str = "") -> str:
    return (
        f"  - {{name: {name}, interval: 100ms, request: {{url: '{url}/quota/drain?{query}'}},"
        f" notify: [chat]{extra}}}"
    )


def hits(app: web.Application, key: str) -> list[Hit]:
    return [hit for hit in app[HITS] if f"key={key}" in hit.path]


def forecast(status: dict[str, Any], name: str) -> dict[str, Any]:
    (check,) = [c for c in status["checks"] if c["name"] == name]
    found: dict[str, Any] = check["metrics"]["quota_forecast"]
    return found


async def test_a_draining_quota_is_forecast_and_pages_while_a_healthy_one_stays_silent(
    api: tuple[str, web.Application], chat: Receiver, db_path: Path
) -> None:
    url, app = api
    checks = [
        quota_check(url, "draining", f"{DRAIN}&key=draining"),
        quota_check(url, "healthy", "limit=1000&cost=0&reset=3600&key=healthy"),
        # Spends slowly and resets every few seconds: the reset always comes first.
        quota_check(url, "rescued", "limit=1000&cost=1&reset=3&key=rescued"),
    ]
    async with running(make_config(db_path, {"chat": chat}, checks)) as rig:
        signals = rig.daemon.signals
        await eventually(
            "a forecast from a few readings",
            lambda: (
                (f := signals["draining"].quota_forecast(900.0)) is not None and f.readings >= 4
            ),
        )
        asked = time.time()
        predicted = forecast(await rig.get("/api/status"), "draining")["exhaustion_at"]
        metrics = await rig.get("/metrics")
        await eventually(
            "the target served an empty quota",
            lambda: any(h.served["remaining"] == 0 for h in hits(app, "draining")),
        )
        emptied = next(h.at for h in hits(app, "draining") if h.served["remaining"] == 0)
        await eventually(
            "quota_exhaustion paged", lambda: any("quota_exhaustion" in t for t in titles(chat))
        )
        status = await rig.get("/api/status")

    truth = emptied - asked
    assert abs(predicted - emptied) <= 0.5 * truth, (predicted - asked, truth)
    assert "FIRING: draining quota_exhaustion (critical)" in titles(chat)
    assert not [t for t in titles(chat) if "healthy" in t or "rescued" in t]
    exhaustion = series(metrics, "intmon_ratelimit_exhaustion_seconds")
    assert set(exhaustion) == {'check="draining"'}  # rescued resets first, healthy never runs out
    assert exhaustion['check="draining"'] == pytest.approx(predicted - asked, abs=0.5)
    resets = series(metrics, "intmon_ratelimit_reset_timestamp_seconds")
    served_reset = hits(app, "healthy")[0].served["reset_at"]
    assert resets['check="healthy"'] == pytest.approx(served_reset, abs=1.0)  # t= is whole s
    assert forecast(status, "healthy")["exhaustion_at"] is None
    assert forecast(status, "rescued")["before_reset"] is False


async def test_a_providers_checks_that_see_one_quota_share_its_forecast(
    api: tuple[str, web.Application], chat: Receiver, db_path: Path
) -> None:
    url, app = api
    shared = f"{DRAIN}&key=acme"
    checks = [
        quota_check(url, "orders", shared, ", provider: acme"),
        quota_check(url, "refunds", shared, ", provider: acme"),
        # Same provider, another quota (another limit): forecast on its own.
        quota_check(url, "search", "limit=50&cost=0&reset=3600&key=search", ", provider: acme"),
    ]
    async with running(make_config(db_path, {"chat": chat}, checks)) as rig:
        signals = rig.daemon.signals
        await eventually(
            "both siblings forecast",
            lambda: all(
                (f := signals[name].quota_forecast(900.0)) is not None and f.readings >= 4
                for name in ("orders", "refunds")
            ),
        )
        status = await rig.get("/api/status")
    orders, refunds = forecast(status, "orders"), forecast(status, "refunds")
    assert orders["shared_with"] == ["refunds"] and refunds["shared_with"] == ["orders"]
    assert forecast(status, "search")["shared_with"] == []
    # Each check alone sees the counter fall by both checks' spend: the rate is the account's.
    served = hits(app, "acme")
    truth = (served[0].served["remaining"] - served[-1].served["remaining"]) / (
        served[-1].at - served[0].at
    )
    assert orders["rate"] == pytest.approx(truth, rel=0.5)
    assert orders["exhaustion_at"] == pytest.approx(refunds["exhaustion_at"], abs=1.0)
