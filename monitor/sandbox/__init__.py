"""A local imitation of a third-party API, for the demo, for trying configs, and for tests.

Each endpoint misbehaves the way real providers do: slow, flaky, rate-limited, broken bodies,
deprecated, stale, drifting in shape. Behaviour is deterministic (counters, not randomness) so
tests can assert exact figures. One module per group of endpoints; each adds its routes to the app.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from monitor.sandbox import basic, drift, flows, inbox, signals, slo
from monitor.sandbox.common import COUNTERS
from monitor.sandbox.flows import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_REFRESH_TOKEN

__all__ = [
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_REFRESH_TOKEN",
    "build_sandbox",
    "run_sandbox",
]


def build_sandbox() -> web.Application:
    app = web.Application()
    app[COUNTERS] = {}
    app.router.add_get("/", index)
    app.router.add_get("/stats", stats)
    basic.add_routes(app)
    flows.add_routes(app)
    signals.add_routes(app)
    inbox.add_routes(app)
    slo.add_routes(app)
    drift.add_routes(app)
    return app


async def index(request: web.Request) -> web.Response:
    routes = sorted(
        {str(route.resource.canonical) for route in request.app.router.routes() if route.resource}
    )
    return web.json_response({"endpoints": routes})


async def stats(request: web.Request) -> web.Response:
    """How many times each endpoint was hit, for tests and the curious."""
    return web.Response(text=json.dumps(request.app[COUNTERS]), content_type="application/json")


async def run_sandbox(host: str, port: int) -> None:
    # /hang and /drip never finish on their own: do not wait a minute for them on Ctrl-C.
    runner = web.AppRunner(build_sandbox(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"sandbox API listening on http://{host}:{port}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
