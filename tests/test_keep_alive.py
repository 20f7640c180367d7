"""`request.keep_alive`: a fresh connection per run unless the check asks to reuse one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from checks.base import RunContext
from checks.http import HttpCheck
from monitor.core.clock import SystemClock
from monitor.core.redact import Redactor
from monitor.engine.runner import make_session
from tests.conftest import start_app

RUNS = 4


class Target:
    """A loopback target that counts the connections its requests came on."""

    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        return web.json_response({"status": "ok"})


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    counting = Target()
    app = web.Application()
    app.router.add_get("/", counting.handle)
    runner, counting.url = await start_app(app)
    yield counting
    await runner.cleanup()


@pytest.mark.parametrize(
    ("keep_alive", "connections"),
    [(None, RUNS), (False, RUNS), (True, 1)],
    ids=["default-fresh", "false-fresh", "true-reuses-one"],
)
async def test_runs_connect_afresh_unless_keep_alive_is_set(
    target: Target, keep_alive: bool | None, connections: int
) -> None:
    request: dict[str, object] = {"url": target.url + "/"}
    if keep_alive is not None:
        request["keep_alive"] = keep_alive
    check = HttpCheck.model_validate({"name": "a", "request": request})
    async with make_session(4) as fresh, make_session(4, keep_alive=True) as kept:
        ctx = RunContext(fresh, SystemClock(), Redactor([]), kept_alive=kept)
        for run in range(RUNS):
            result = await check.run(ctx.for_run())
            assert result.ok, result.reason
            assert result.phases is not None
            # A fresh connection is timed; a reused one has no connect phase after the first.
            assert ("connect" in result.phases) == (not keep_alive or run == 0)
    assert len(target.peers) == connections
