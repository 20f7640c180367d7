"""Schema drift end to end: a real Daemon on a real SQLite file learns the shape of a real
aiohttp target's JSON, the target drifts, Apprise delivers `json://` to a local receiver, and
`intmon schema --accept` (its own process's write) or the API ends it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.cli import main
from monitor.config.loader import load_config
from monitor.core.jsonshape import shape_of
from monitor.signals.shapes import compare, learn
from tests.receiver import Receiver
from tests.test_alerting_acceptance import Running, running, series, titles
from tests.waiting import eventually

BEFORE = {"data": {"total": 12.5, "currency": "EUR", "items": [{"sku": "a-1", "qty": 2}]}}
AFTER = {"data": {"total": "12.50", "items": [{"sku": "a-1", "qty": 2}], "tax": 2.1}}


@dataclass
class Orders:
    """The monitored API: answers BEFORE until told to drift, then AFTER."""

    drifted: bool = False
    url: str = ""

    async def orders(self, request: web.Request) -> web.Response:
        return web.json_response(AFTER if self.drifted else BEFORE)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>not JSON</html>", content_type="text/html")


@pytest.fixture
async def orders(serve: Any) -> Orders:
    api = Orders()
    app = web.Application()
    app.router.add_get("/orders", api.orders)
    app.router.add_get("/page", api.page)
    api.url = await serve(app)
    return api


def write_config(
    tmp_path: Path, db: Path | str, chat: Receiver, orders: Orders, expect: str = ""
) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f"monitor: {{database: '{db}'}}\n"
        "alerting: {group_wait: 0s}\n"
        f"notifiers:\n  - {{name: chat, urls: ['{chat.url}'], min_severity: warning}}\n"
        "checks:\n"
        f"  - {{name: orders-api, interval: 100ms, request: {{url: '{orders.url}/orders'}},"
        f" notify: [chat]{expect},"
        " alerts: {error_rate: {window: 1s, min_runs: 3}}}\n"
        f"  - {{name: web-page, interval: 100ms, request: {{url: '{orders.url}/page'}}}}\n"
    )
    return path


@contextlib.asynccontextmanager
async def daemon(path: Path) -> AsyncIterator[Running]:
    async with running(load_config(str(path), env={})) as rig:
        yield rig


async def shape(rig: Running, check: str = "orders-api") -> dict[str, Any] | None:
    status = await rig.get("/api/status")
    found = next(c for c in status["checks"] if c["name"] == check)
    shape: dict[str, Any] | None = found["metrics"].get("shape")
    return shape


async def state_is(rig: Running, wanted: str) -> None:
    tracker = rig.daemon.signals["orders-api"].shape
    await eventually(f"the shape to be {wanted}", lambda: tracker.status().state == wanted)
    current = await shape(rig)  # and the API says so
    assert current is not None
    assert current["state"] == wanted


async def drift_until_paged(rig: Running, orders: Orders, receiver: Receiver) -> None:
    """Learn the shape, then make the API drift and wait for the page."""
    await state_is(rig, "matching")
    orders.drifted = True
    await eventually("the drift page", lambda: bool(receiver.posts), within=5)


def schema_cli(path: Path, *extra: str) -> int:
    return main(["schema", "orders-api", "--config", str(path), *extra])


async def test_a_drift_pages_once_naming_both_fields_and_an_accept_from_the_cli_resolves_it(
    tmp_path: Path, db_url: str, receiver: Receiver, orders: Orders
) -> None:
    path = write_config(tmp_path, db_url, receiver, orders)
    async with daemon(path) as rig:
        await drift_until_paged(rig, orders, receiver)
        await asyncio.sleep(0.5)  # several more drifted runs: still one page
        assert titles(receiver) == ["FIRING: orders-api schema_drift (warning)"]
        body = receiver.posts[0]["message"]
        assert "$.data.total: number → string" in body
        assert "$.data.currency: removed" in body
        assert "$.data.tax: new (number)" in body
        assert rig.sample("intmon_schema_drift", check="orders-api") == 1
        assert await shape(rig, "web-page") is None  # HTML learns no shape and never drifts
        assert await asyncio.to_thread(schema_cli, path, "--accept") == 0
        await eventually("the resolution", lambda: len(receiver.posts) == 2, within=5)
        gauge = series(await rig.get("/metrics"), "intmon_schema_drift")
        assert gauge == {'check="orders-api"': 0.0}  # and none for the HTML page
    assert titles(receiver)[1] == "RESOLVED: orders-api schema_drift"


async def test_a_restart_keeps_the_learned_shape_and_the_drift_without_paging_again(
    tmp_path: Path, db_url: str, receiver: Receiver, orders: Orders
) -> None:
    path = write_config(tmp_path, db_url, receiver, orders)
    async with daemon(path) as rig:
        await drift_until_paged(rig, orders, receiver)
    async with daemon(path) as rig:
        restored = await shape(rig)  # before any run of the new process
        await asyncio.sleep(0.6)
        again = await shape(rig)
    assert restored is not None and restored["state"] == "drifted"
    assert restored["learned_from"] == 3
    assert again is not None and again["changes"] == restored["changes"]
    assert titles(receiver) == ["FIRING: orders-api schema_drift (warning)"]


async def test_the_api_accepts_the_current_shape_from_loopback(
    tmp_path: Path, db_path: Path, receiver: Receiver, orders: Orders
) -> None:
    path = write_config(tmp_path, db_path, receiver, orders)
    async with daemon(path) as rig, aiohttp.ClientSession() as client:
        missing = await client.post(f"{rig.url}/api/checks/nope/schema/accept")
        assert missing.status == 404
        # The page first: an accept that lands while the drifted run is still being recorded
        # (its shape written, the rules not yet evaluated) leaves nothing to page or resolve.
        await drift_until_paged(rig, orders, receiver)
        await state_is(rig, "drifted")
        answer = await client.post(f"{rig.url}/api/checks/orders-api/schema/accept")
        assert answer.status == 200
        accepted = await answer.json()
        assert (accepted["state"], accepted["changes"]) == ("matching", [])
        await eventually("the resolution", lambda: len(receiver.posts) == 2, within=5)
    # The accept was stored: the CLI (another process's view) sees the new shape.
    assert schema_cli(path) == 0


async def test_the_drift_explains_the_assertion_failures_it_causes(
    tmp_path: Path, db_path: Path, receiver: Receiver, orders: Orders
) -> None:
    expect = ", expect: {json: {'$.data.currency': {exists: true}}}"
    path = write_config(tmp_path, db_path, receiver, orders, expect)
    async with daemon(path) as rig:
        await drift_until_paged(rig, orders, receiver)
        await asyncio.sleep(1.5)  # a full error_rate window of failed runs
        report = await rig.get("/api/alerts")
    assert titles(receiver) == ["FIRING: orders-api schema_drift (warning)"]
    assert [(a["rule"], a["inhibited_by"]) for a in report["inhibited"]] == [
        ("error_rate", ["schema_drift"])
    ]


async def test_the_cli_prints_the_learned_shape_and_the_drift(
    tmp_path: Path,
    db_path: Path,
    receiver: Receiver,
    orders: Orders,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(tmp_path, db_path, receiver, orders)
    async with daemon(path) as rig:
        await state_is(rig, "matching")
        capsys.readouterr()
        assert await asyncio.to_thread(schema_cli, path) == 0
        learned = capsys.readouterr().out
        orders.drifted = True
        await state_is(rig, "drifted")
    assert schema_cli(path) == 1
    drifted = capsys.readouterr().out
    assert learned.startswith("orders-api: matching (learned from 3 bodies, 8 paths)")
    table = [line.split() for line in learned.splitlines()[2:]]
    assert ["PATH", "TYPES", "PRESENCE"] in table
    assert ["$.data.total", "number"] in table
    assert ["$.data.items[*].sku", "string"] in table
    assert drifted.splitlines()[:4] == [
        "orders-api: drifted (learned from 3 bodies, 8 paths)",
        "  $.data.total: number → string",
        "  $.data.currency: removed",
        "  $.data.tax: new (number)",
    ]


async def test_the_sandbox_orders_drift_after_the_answers_it_is_told(sandbox: str) -> None:
    async with aiohttp.ClientSession() as client:
        bodies = []
        for _ in range(3):
            async with client.get(f"{sandbox}/drift/orders?after=2") as response:
                bodies.append(await response.json())
    learned = learn(learn(None, shape_of(bodies[0])), shape_of(bodies[1]))
    assert compare(learned, shape_of(bodies[2])).changes == (
        "$.data.total: number → string",
        "$.data.currency: removed",
    )
