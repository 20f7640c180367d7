"""An endpoint whose JSON shape drifts: the silent data change schema_drift is for."""

from __future__ import annotations

from aiohttp import web

from monitor.sandbox.common import count


def add_routes(app: web.Application) -> None:
    app.router.add_get("/drift/orders", orders)


async def orders(request: web.Request) -> web.Response:
    """The first `after` answers (default 5) have a numeric `total` and a `currency`; later
    ones send `total` as a string, drop `currency` and add `tax`. Counted per query, so each
    caller's `?after=` keeps its own count."""
    n = count(request, f"drift:{request.query_string}")
    after = int(request.query.get("after", "5"))
    items = [{"sku": "mug-1", "qty": 2}, {"sku": "tee-3", "qty": 1, "note": "gift"}]
    if n <= after:
        return web.json_response({"data": {"total": 12.5, "currency": "EUR", "items": items}})
    return web.json_response({"data": {"total": "12.50", "items": items, "tax": 2.1}})
