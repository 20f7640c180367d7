"""A request's phases are timed where aiohttp does them, and shown with the last run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from checks.base import RunContext
from checks.http import HttpCheck
from monitor.core.clock import SystemClock
from monitor.core.redact import Redactor
from monitor.engine.runner import make_session
from tests.conftest import start_app

FIRST_BYTE_DELAY = 0.2


Handler = Callable[[web.Request], Awaitable[web.Response]]


async def run_at(routes: dict[str, Handler], path: str) -> dict[str, float]:
    """Serve `routes` on loopback and run an http check of `path` once: its phases."""
    app = web.Application()
    for route, handler in routes.items():
        app.router.add_get(route, handler)
    runner, base = await start_app(app)
    try:
        return await run_once(base + path)
    finally:
        await runner.cleanup()


async def run_once(url: str) -> dict[str, float]:
    session = make_session(4)
    try:
        ctx = RunContext(session=session, clock=SystemClock(), redactor=Redactor([]))
        check = HttpCheck.model_validate({"name": "slow", "request": {"url": url}})
        result = await check.run(ctx)
    finally:
        await session.close()
    assert result.ok, result.reason
    assert result.phases is not None
    assert result.latency == result.phases["total"]
    return result.phases


async def test_a_target_that_delays_its_first_byte_shows_it_in_the_first_byte_phase() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(FIRST_BYTE_DELAY)
        return web.json_response({"status": "ok"})

    phases = await run_at({"/slow": slow}, "/slow")
    assert phases["first_byte"] >= FIRST_BYTE_DELAY
    assert phases["connect"] < FIRST_BYTE_DELAY  # a fresh connection, made at once
    assert phases["first_byte"] <= phases["total"]


async def test_phases_are_left_out_of_a_redirected_request_but_the_total() -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    phases = await run_at({"/moved": moved, "/ok": ok}, "/moved")
    assert set(phases) == {"total"}


def test_the_last_run_of_this_process_carries_its_phases() -> None:
    from monitor.engine.state import CheckState  # noqa: PLC0415 (engine, only this test)
    from monitor.storage.store import RunRecord  # noqa: PLC0415

    state = CheckState("a")
    record = RunRecord(
        check="a", ts=1.0, ok=True, error_class=None, status=200, latency=0.01,
        reason="HTTP 200", signals={},
    )  # fmt: skip
    state.update(record, {"connect": 0.002, "first_byte": 0.007, "total": 0.01})
    assert state.last_run is not None
    assert state.last_run.model_dump()["phases"]["first_byte"] == 0.007
    state.seed(record)  # restored from the database: no phases were stored
    state.phases = None
    assert "phases" not in state.last_run.model_dump()
