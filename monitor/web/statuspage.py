"""The handlers of the status pages: the overview at `/` and `/checks/{name}`, plus the check's
data as JSON at `/api/checks/{name}`. Rendering lives in monitor/web/pages/."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from monitor.storage.writer import DatabaseUnavailable
from monitor.web.pages.check import render_check, render_missing
from monitor.web.pages.detail import CheckDetail, Stored, build_detail, read_stored
from monitor.web.pages.overview import PageFilter, render_status

if TYPE_CHECKING:
    from monitor.engine.daemon import Daemon

__all__ = ["check_api", "check_page", "render_status", "status_page"]
log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.Response]]
HTML_HEADERS = {"Cache-Control": "no-store"}


def status_page(daemon: Daemon) -> Handler:
    """The handler for `GET /`. Takes the daemon directly: importing the app key from
    monitor.web.server would make the two modules import each other."""

    async def handler(request: web.Request) -> web.Response:
        now = daemon.clock.time()
        body = render_status(
            daemon.status(),
            daemon.alerter.status(),
            lambda name: daemon.history.snapshot(name, now),
            PageFilter.from_query(request.query),
        )
        return web.Response(text=body, content_type="text/html", headers=HTML_HEADERS)

    return handler


def check_page(daemon: Daemon) -> Handler:
    """`GET /checks/{name}`: the check's page, or a 404 page naming what was asked for."""

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        detail = await _detail(daemon, name)
        if detail is None:
            body = render_missing(name, daemon.clock.time())
            return web.Response(
                text=body, status=404, content_type="text/html", headers=HTML_HEADERS
            )
        return web.Response(
            text=render_check(detail), content_type="text/html", headers=HTML_HEADERS
        )

    return handler


def check_api(daemon: Daemon) -> Handler:
    """`GET /api/checks/{name}`: what the check's page shows, as JSON."""

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        detail = await _detail(daemon, name)
        if detail is None:
            return web.json_response({"error": f"no check named {name!r}"}, status=404)
        return web.Response(text=detail.model_dump_json(), content_type="application/json")

    return handler


async def _detail(daemon: Daemon, name: str) -> CheckDetail | None:
    if name not in daemon.checks:
        return None
    now = daemon.clock.time()
    status = next(c for c in daemon.status().checks if c.name == name)
    alerts = tuple(a for a in daemon.alerter.status().alerts if a.check == name)
    stored: Stored | None
    try:
        # A worker thread: the event loop never waits on the disk.
        stored = await daemon.writer.read(read_stored, daemon.store, name, now)
    except DatabaseUnavailable:
        stored = None  # the writer has logged the outage once; the page says so
    learned = daemon.signals[name].shape.learned_fields()
    return build_detail(status, alerts, stored, now, learned)
