"""A notification inbox: point an Apprise `json://` notifier here to watch alerts arrive.

`GET /notifications` answers JSON, or a page people can read when a browser asks for HTML:
newest first, each body with its lines as intmon wrote them.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

INBOX = web.AppKey("inbox", list[dict[str, Any]])
KEEP = 200  # the demo runs for hours; keep the newest messages only
REFRESH = 10  # seconds between reloads of the page


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
    newest = request.app[INBOX][::-1]
    if "text/html" not in request.headers.get("Accept", ""):
        return web.json_response({"notifications": newest})
    return web.Response(text=_page(newest), content_type="text/html")


def _page(messages: list[dict[str, Any]]) -> str:
    cards = "".join(
        f'<article class="{html.escape(str(m.get("type", "")))}">'
        f"<h2>{html.escape(str(m.get('title', '')))}</h2>"
        f"<pre>{html.escape(str(m.get('message', '')))}</pre></article>"
        for m in messages
    )
    empty = "<p>No notifications yet: they arrive here when an alert fires.</p>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH}"><title>intmon demo inbox</title>'
        "<style>body{font:15px system-ui,sans-serif;margin:1rem auto;max-width:60rem;"
        "padding:0 1rem}article{border-left:4px solid #888;margin:1rem 0;padding:.2rem 1rem}"
        ".failure{border-color:#c62828}.warning{border-color:#ef8f00}"
        ".success{border-color:#2e7d32}h2{font-size:1rem;margin:.5rem 0}"
        "pre{white-space:pre-wrap;font:13px ui-monospace,monospace;margin:0 0 .5rem}</style>"
        f"</head><body><h1>Notifications ({len(messages)})</h1>{cards or empty}</body></html>"
    )
