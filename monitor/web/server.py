"""The HTTP surface: the status page at / with a page per check at /checks/{name}, the public
status page at /status, /metrics, /healthz, /readyz, /api/status and its schema,
/api/checks/{name}, /api/alerts, /api/cluster, POST /-/reload and
POST /api/checks/{name}/schema/accept, and the heartbeat push, POST /heartbeat/{check}.
Who may use which: monitor/web/guard.py."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from checks.freshness import heartbeat_secret
from monitor.cluster.status import cluster_report
from monitor.config.reload import ReloadPlan
from monitor.core.errors import ConfigError
from monitor.core.model import StatusModel
from monitor.engine.status import schema_json
from monitor.web import heartbeats
from monitor.web.flood import PushLimiter, read_limited, retry_after
from monitor.web.guard import guard, security_headers
from monitor.web.public import public_page
from monitor.web.statuspage import check_api, check_page, status_page

if TYPE_CHECKING:
    from monitor.engine.daemon import Daemon

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")


Reload = Callable[[], Awaitable[ReloadPlan]]
RELOAD: web.AppKey[Reload] = web.AppKey("reload")
PUSHES: web.AppKey[PushLimiter] = web.AppKey("pushes")


def build_app(daemon: Daemon, reload: Reload | None = None) -> web.Application:
    """`reload` defaults to the daemon's own; the service passes one that also tells systemd."""
    app = web.Application(middlewares=[guard(lambda: daemon.config.monitor.web)])
    app.on_response_prepare.append(security_headers)
    app[DAEMON] = daemon
    app[RELOAD] = reload or daemon.reload
    app[PUSHES] = PushLimiter()
    app.router.add_get("/", status_page(daemon))
    app.router.add_get("/status", public_page(daemon))
    app.router.add_get("/checks/{name}", check_page(daemon))
    app.router.add_get("/api/checks/{name}", check_api(daemon))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/status/schema", api_status_schema)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/api/cluster", api_cluster)
    app.router.add_post("/-/reload", reload_config)
    app.router.add_post("/api/checks/{name}/schema/accept", accept_schema)
    app.router.add_post("/heartbeat/{check}", heartbeat)
    app.router.add_post("/heartbeat/{check}/fail", heartbeat)
    return app


async def metrics(request: web.Request) -> web.Response:
    body = request.app[DAEMON].metrics.registry.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    # A replica that cannot renew its lease (the database is out of reach) runs no checks.
    ready = daemon.ready and daemon.replica.ready
    return web.json_response({"ready": ready}, status=200 if ready else 503)


async def api_status(request: web.Request) -> web.Response:
    return _model_response(request.app[DAEMON].status())


async def api_status_schema(request: web.Request) -> web.Response:
    """The JSON Schema `/api/status` answers in; the same text as docs/status.schema.json."""
    return web.Response(text=schema_json(), content_type="application/schema+json")


async def api_alerts(request: web.Request) -> web.Response:
    return _model_response(request.app[DAEMON].alerter.status())


async def api_cluster(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return _model_response(cluster_report(daemon.replica, daemon.clock.time()))


def _model_response(model: StatusModel) -> web.Response:
    # No exclude_none: null keys stay, and only fields left MISSING are absent.
    return web.Response(text=model.model_dump_json(), content_type="application/json")


async def reload_config(request: web.Request) -> web.Response:
    """Prometheus-style reload: a write, so guarded (monitor/web/guard.py)."""
    try:
        change = await request.app[RELOAD]()
    except ConfigError as exc:
        return web.json_response({"reloaded": False, "error": str(exc)}, status=400)
    return web.json_response({"reloaded": True, **change.as_json()})


async def accept_schema(request: web.Request) -> web.Response:
    """The check's last observed response shape becomes its learned one (ends a drift).
    A write, guarded like reload: it silences what the schema_drift rule would page about."""
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    if name not in daemon.checks:
        return web.json_response({"error": f"no check named {name!r}"}, status=404)
    tracker = daemon.signals[name].shape
    if not await daemon.shapes.accept(name, tracker):
        return web.json_response({"error": f"{name} has answered no JSON body yet"}, status=409)
    return _model_response(tracker.status())


async def heartbeat(request: web.Request) -> web.Response:
    """A sync job reports in (`/fail`: reports a failed run). See monitor/web/heartbeats.py."""
    daemon = request.app[DAEMON]
    name = request.match_info["check"]
    known, secret = heartbeat_secret(daemon.checks.get(name))
    if not known:
        return web.json_response({"error": "no heartbeat freshness check by that name"}, status=404)
    wait = request.app[PUSHES].take(name, daemon.clock.time())
    if wait is not None:
        return web.json_response(
            {"error": "too many pushes for this check"},
            status=429,
            headers={"Retry-After": retry_after(wait)},
        )
    too_large = web.json_response({"error": "body too large"}, status=413)
    if (request.content_length or 0) > heartbeats.MAX_BODY:
        return too_large  # announced: not a byte of it is read
    raw = await read_limited(request.content, heartbeats.MAX_BODY)
    if raw is None:
        return too_large
    status, answer = await heartbeats.receive(
        daemon.heartbeats,
        daemon.writer,
        name,
        secret,
        request.headers,
        raw,
        failed=request.path.endswith("/fail"),
        now=daemon.clock.time(),
        redact=daemon.redactor,
    )
    return web.json_response(answer, status=status)


async def serve(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    return runner
