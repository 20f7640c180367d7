"""SLOs end to end: a real Daemon on a real SQLite file runs checks with an `slo:` against an
in-process target, Apprise delivers `json://` to an in-process receiver, and a restart finds
the error budget where it left it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.signals.slo import BURN_WINDOWS
from tests.receiver import Receiver
from tests.test_alerting_acceptance import make_config, running, series, titles
from tests.waiting import eventually


@pytest.fixture
async def api(serve: Any) -> str:
    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error": "upstream unavailable"}, status=503)

    async def healthy(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/broken", broken)
    app.router.add_get("/healthy", healthy)
    url: str = await serve(app)
    return url


def slo_check(api: str, name: str, path: str) -> str:
    return (
        f"  - {{name: {name}, interval: 100ms, request: {{url: '{api}/{path}'}},"
        " slo: {objective: 99%}, notify: [chat]}"
    )


async def page(url: str) -> str:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        assert response.status == 200
        return await response.text()


def slo_of(status: dict[str, Any], name: str) -> dict[str, Any]:
    (check,) = [c for c in status["checks"] if c["name"] == name]
    found: dict[str, Any] = check["metrics"]["slo"]
    return found


async def test_a_check_failing_every_run_pages_burn_rate_critical_and_a_healthy_one_stays_silent(
    api: str, receiver: Receiver, db_path: Path
) -> None:
    checks = [slo_check(api, "payments", "broken"), slo_check(api, "orders", "healthy")]
    async with running(make_config(db_path, {"chat": receiver}, checks)) as rig:
        took = await eventually(
            "the burn_rate page",
            lambda: any("payments burn_rate (critical)" in t for t in titles(receiver)),
            within=5,
        )
        status = await rig.get("/api/status")
        metrics = await rig.get("/metrics")
        overview = await page(rig.url + "/")
        detail = await page(rig.url + "/checks/payments")
    assert took < 5
    assert not [t for t in titles(receiver) if "orders" in t]
    (sent,) = [p for p in receiver.posts if "burn_rate" in p["title"]]
    assert (
        f"burning {1 / (1 - 0.99):.3g}x the budget over 1h and 5m; 14.4x pages" in sent["message"]
    )
    burning, healthy = slo_of(status, "payments"), slo_of(status, "orders")
    assert burning["budget_remaining"] == pytest.approx(1 - 1 / (1 - 0.99))
    assert healthy["budget_remaining"] == 1.0
    assert healthy["closest"] == "critical at 14.4x over 1h and 5m"
    rates = series(metrics, "intmon_slo_burn_rate")
    assert {key for key in rates if 'check="orders"' in key} == {
        f'check="orders",window="{label}"' for label in BURN_WINDOWS
    }
    for key, rate in rates.items():
        expected = 1 / (1 - 0.99) if 'check="payments"' in key else 0.0
        assert rate == pytest.approx(expected), key
    budgets = series(metrics, "intmon_slo_error_budget_remaining_ratio")
    assert budgets['check="orders"'] == 1.0
    overspent = f"budget overspent {(1 / (1 - 0.99) - 1) * 100:.0f}%"
    assert overspent in overview and "budget 100% left" in overview
    assert "Service level objective" in detail and overspent in detail
    assert "critical at 14.4x over 1h and 5m" in detail
    assert all(f"<td>{label}</td>" in detail for label in BURN_WINDOWS)


async def test_a_restart_restores_the_error_budget_from_the_database(
    api: str, receiver: Receiver, db_path: Path
) -> None:
    checks = [slo_check(api, "payments", "broken")]
    config = make_config(db_path, {"chat": receiver}, checks)
    async with running(config) as rig:
        await eventually(
            "ten failed runs",
            lambda: rig.daemon.signals["payments"].slo_counts(BURN_WINDOWS["5m"]).failed >= 10,
        )
    before = rig.daemon.signals["payments"].slo_counts(BURN_WINDOWS["3d"])
    await asyncio.sleep(0)
    async with running(config) as again:
        restored = again.daemon.signals["payments"].slo_counts(BURN_WINDOWS["3d"])
        status = slo_of(await again.get("/api/status"), "payments")
    # The new process may have run the check again since; it can only add runs.
    assert restored.total >= before.total and restored.failed >= before.failed
    assert status["failures"] >= before.failed
    assert status["budget_remaining"] == pytest.approx(1 - 1 / (1 - 0.99))


async def test_the_sandbox_endpoint_fails_its_share_and_breaks_the_demo_slo(
    sandbox: str, receiver: Receiver, db_path: Path
) -> None:
    share = 0.3
    checks = [slo_check(sandbox, "checkout", f"slo/flaky?fail={share}")]
    async with running(make_config(db_path, {"chat": receiver}, checks)) as rig:
        await eventually(
            "the burn_rate page",
            lambda: any("checkout burn_rate (critical)" in t for t in titles(receiver)),
        )
        counts = rig.daemon.signals["checkout"].slo_counts(BURN_WINDOWS["1h"])
    # Evenly spread: any run of requests holds its share of failures, give or take one.
    assert abs(counts.failed - share * counts.total) < 1
