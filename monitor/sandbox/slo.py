"""An endpoint that breaks a service level objective: it fails a steady share of requests."""

from __future__ import annotations

import math

from aiohttp import web

from monitor.sandbox.common import count


def add_routes(app: web.Application) -> None:
    app.router.add_get("/slo/flaky", flaky_share)


async def flaky_share(request: web.Request) -> web.Response:
    """Fails `fail` (a ratio, default 0.3) of requests with a 503, spread evenly: request n
    fails when floor(n * fail) steps up, so any run of 1/fail requests holds one failure. At
    0.3 against `objective: 99%` that is a burn rate of 30x: every burn-rate alert fires."""
    n = count(request, f"slo:{request.query_string}")
    try:
        share = float(request.query.get("fail", "0.3"))
    except ValueError:
        return web.json_response({"error": "fail must be a ratio, e.g. 0.3"}, status=400)
    share = min(max(share, 0.0), 1.0) if math.isfinite(share) else 0.0
    if math.floor(n * share) > math.floor((n - 1) * share):
        return web.json_response({"error": {"message": "upstream unavailable"}}, status=503)
    return web.json_response({"status": "ok"})
