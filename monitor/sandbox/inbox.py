"""A notification inbox: point an Apprise `json://` notifier here to watch alerts arrive."""

from __future__ import annotations

from typing import Any

from aiohttp import web

INBOX = web.AppKey("inbox", list[dict[str, Any]])
KEEP = 200  # the demo runs for hours; keep the newest messages only


def add_routes(app: web.Application) -> None:
    app[INBOX] = []
    app.router.add_post("/notifications", receive)
    app.router.add_get("/notifications", show)


async def receive(request: web.Request) -> web.Response:
    try:
        message = await request.json()
    except ValueError:
        return web.json_response({"error": "expected Apprise's JSON body"}, status=400)
    inbox = request.app[INBOX]
    inbox.append(message)
    del inbox[:-KEEP]
    return web.json_response({"received": len(inbox)})


async def show(request: web.Request) -> web.Response:
    """Newest first: title, type and body of what intmon sent."""
    return web.json_response({"notifications": request.app[INBOX][::-1]})
