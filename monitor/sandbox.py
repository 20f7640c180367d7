"""A local imitation of a third-party API, for the demo, for trying configs, and for tests.

Each endpoint misbehaves the way real providers do: slow, flaky, rate-limited, broken bodies.
Behaviour is deterministic (counters, not randomness) so tests can assert exact figures.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

COUNTERS = web.AppKey("counters", dict[str, int])


def build_sandbox() -> web.Application:
    app = web.Application()
    app[COUNTERS] = {}
    r = app.router
    r.add_get("/", index)
    r.add_route("*", "/healthy", healthy)
    r.add_get("/slow", slow)
    r.add_get("/flaky", flaky)
    r.add_get("/ratelimited", ratelimited)
    r.add_route("*", "/status/{code:\\d+}", status)
    r.add_get("/json", json_document)
    r.add_get("/envelope/{kind}", envelope)
    r.add_get("/big", big)
    r.add_get("/drip", drip)
    r.add_get("/redirect/{n:\\d+}", redirect)
    r.add_get("/redirect-loop", redirect_loop)
    r.add_get("/not-json", not_json)
    r.add_get("/hang", hang)
    r.add_get("/stats", stats)
    _add_sync_and_flow_routes(app)
    return app


def _count(request: web.Request, key: str | None = None) -> int:
    counters = request.app[COUNTERS]
    key = key or request.path
    counters[key] = counters.get(key, 0) + 1
    return counters[key]


async def index(request: web.Request) -> web.Response:
    routes = sorted(
        {str(route.resource.canonical) for route in request.app.router.routes() if route.resource}
    )
    return web.json_response({"endpoints": routes})


async def healthy(request: web.Request) -> web.Response:
    _count(request)
    return web.json_response({"status": "ok", "items": [{"id": 1}, {"id": 2}]})


async def slow(request: web.Request) -> web.Response:
    """`?delay=0.5` seconds before answering."""
    _count(request)
    await asyncio.sleep(float(request.query.get("delay", "1")))
    return web.json_response({"status": "ok"})


async def flaky(request: web.Request) -> web.Response:
    """Fails `fail` of every `every` requests (default 1 in 4) with a 503."""
    n = _count(request, f"flaky:{request.query_string}")
    every = int(request.query.get("every", "4"))
    fail = int(request.query.get("fail", "1"))
    if (n - 1) % every < fail:
        return web.json_response({"error": {"message": "upstream unavailable"}}, status=503)
    return web.json_response({"status": "ok"})


async def ratelimited(request: web.Request) -> web.Response:
    """Allows `limit` requests (default 3), then answers 429 with Retry-After `retry` seconds."""
    n = _count(request, f"ratelimited:{request.query_string}")
    limit = int(request.query.get("limit", "3"))
    remaining = max(limit - n, 0)
    headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}
    if n > limit:
        headers["Retry-After"] = request.query.get("retry", "30")
        return web.json_response({"message": "slow down"}, status=429, headers=headers)
    return web.json_response({"status": "ok"}, headers=headers)


async def status(request: web.Request) -> web.Response:
    _count(request)
    code = int(request.match_info["code"])
    return web.json_response({"status": code}, status=code)


async def json_document(request: web.Request) -> web.Response:
    _count(request)
    return web.json_response(
        {
            "status": "ok",
            "version": "2.1.0",
            "count": 42,
            "data": {"ready": True, "tags": ["a", "b"]},
        }
    )


ENVELOPES = {
    "graphql": {"data": None, "errors": [{"message": "Cannot query field 'foo'"}]},
    "ok-false": {"ok": False, "error": "invalid_auth"},
    "status-0": {"status": "0", "message": "NOTOK", "result": "Max rate limit reached"},
    "error-object": {"error": {"code": 1001, "message": "account suspended"}},
    "clean": {"ok": True, "status": "1", "data": {"errors": []}},
}


async def envelope(request: web.Request) -> web.Response:
    """An HTTP 200 whose body says it failed, the way many APIs report errors."""
    _count(request)
    kind = request.match_info["kind"]
    if kind not in ENVELOPES:
        raise web.HTTPNotFound()
    return web.json_response(ENVELOPES[kind])


async def big(request: web.Request) -> web.StreamResponse:
    """Streams `?mb=100` megabytes without holding them in memory."""
    _count(request)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    chunk = b"x" * 65536
    for _ in range(int(float(request.query.get("mb", "100")) * 16)):
        await response.write(chunk)
    await response.write_eof()
    return response


async def drip(request: web.Request) -> web.StreamResponse:
    """Sends headers at once, then one byte every `?every=1` seconds, forever-ish."""
    _count(request)
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(int(request.query.get("count", "600"))):
        await response.write(b".")
        await asyncio.sleep(float(request.query.get("every", "1")))
    return response


async def redirect(request: web.Request) -> web.Response:
    _count(request)
    n = int(request.match_info["n"])
    raise web.HTTPFound("/healthy" if n <= 1 else f"/redirect/{n - 1}")


async def redirect_loop(request: web.Request) -> web.Response:
    _count(request)
    raise web.HTTPFound("/redirect-loop")


async def not_json(request: web.Request) -> web.Response:
    _count(request)
    return web.Response(
        text="<html>Service Temporarily Unavailable</html>", content_type="text/html"
    )


async def hang(request: web.Request) -> web.Response:
    _count(request)
    await asyncio.sleep(3600)
    return web.Response(text="late")


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


# --- Sync freshness, OAuth2, a CRUD resource and GraphQL: what flows and freshness checks need.

SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # a demo credential, documented in the README
SANDBOX_REFRESH_TOKEN = "sandbox-refresh"
SANDBOX_TOKEN_LIFETIME = 60  # seconds: short, so the demo shows tokens being refreshed


@dataclass
class SyncedData:
    """What `GET /sync/orders` reports; `PUT /sync/orders` sets it."""

    updated_at: Any = None  # None: "30 seconds ago", computed at request time
    count: int = 42


@dataclass
class Provider:
    """Server-side state of the OAuth2 + CRUD imitation."""

    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (unix s)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency_keys: list[str | None] = field(default_factory=list)  # one per create
    replays: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> item id
    issued: int = 0


SYNCED = web.AppKey("synced", SyncedData)
PROVIDER = web.AppKey("provider", Provider)


def _add_sync_and_flow_routes(app: web.Application) -> None:
    app[SYNCED] = SyncedData()
    app[PROVIDER] = Provider()
    r = app.router
    r.add_get("/sync/orders", sync_status)
    r.add_put("/sync/orders", set_sync_status)
    r.add_post("/oauth/token", oauth_token)
    r.add_post("/oauth/revoke", oauth_revoke)
    r.add_get("/api/items", list_items)
    r.add_post("/api/items", create_item)
    r.add_get("/api/items/{id}", read_item)
    r.add_delete("/api/items/{id}", delete_item)
    r.add_get("/api/idempotency-keys", idempotency_keys)
    r.add_post("/graphql", graphql)


async def sync_status(request: web.Request) -> web.Response:
    """The last sync, as a sync API reports it. `?age=7200` pretends it was that long ago."""
    _count(request)
    synced = request.app[SYNCED]
    updated_at = synced.updated_at
    if "age" in request.query or updated_at is None:
        moment = time.time() - float(request.query.get("age", "30"))
        updated_at = datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
    return web.json_response({"updated_at": updated_at, "count": synced.count})


async def set_sync_status(request: web.Request) -> web.Response:
    """`{"updated_at": <RFC 3339 or epoch>, "count": 0}`: what the next GET reports."""
    body = await request.json()
    synced = request.app[SYNCED]
    synced.updated_at = body.get("updated_at")
    synced.count = int(body.get("count", synced.count))
    return web.json_response({"updated_at": synced.updated_at, "count": synced.count})


async def oauth_token(request: web.Request) -> web.Response:
    """RFC 6749 token endpoint: client_credentials and refresh_token grants.

    Client credentials in the form or as HTTP Basic. `?expires_in=` sets the token lifetime.
    Every request is counted under /oauth/token in /stats.
    """
    _count(request)
    form = await request.post()
    client_id, client_secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    if request.headers.get("Authorization", "").startswith("Basic "):
        encoded = request.headers["Authorization"].removeprefix("Basic ")
        decoded = base64.b64decode(encoded).decode(errors="replace")
        client_id, _, client_secret = decoded.partition(":")
    if (client_id, client_secret) != (SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET):
        return web.json_response({"error": "invalid_client"}, status=401)
    grant = form.get("grant_type")
    if grant == "refresh_token" and form.get("refresh_token") != SANDBOX_REFRESH_TOKEN:
        return web.json_response({"error": "invalid_grant"}, status=400)
    if grant not in ("client_credentials", "refresh_token"):
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    provider = request.app[PROVIDER]
    provider.issued += 1
    lifetime = int(request.query.get("expires_in", str(SANDBOX_TOKEN_LIFETIME)))
    token = f"sandbox-token-{provider.issued}-{uuid.uuid4().hex[:8]}"
    provider.tokens[token] = time.time() + lifetime
    answer = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
    return web.json_response(answer, headers={"Cache-Control": "no-store"})


async def oauth_revoke(request: web.Request) -> web.Response:
    """Invalidates every token: the next API call gets a 401 (to show refresh-and-retry)."""
    request.app[PROVIDER].tokens.clear()
    return web.Response(status=204)


def _authorized(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expiry = request.app[PROVIDER].tokens.get(token)
    return scheme.lower() == "bearer" and expiry is not None and expiry > time.time()


def _unauthorized() -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return web.json_response({"error": "invalid_token"}, status=401, headers=headers)


async def list_items(request: web.Request) -> web.Response:
    """Every item that exists, including test data a flow forgot to delete."""
    return web.json_response({"items": list(request.app[PROVIDER].items.values())})


async def create_item(request: web.Request) -> web.Response:
    """Creates an item; a repeated Idempotency-Key returns the first item instead of a twin."""
    _count(request)
    if not _authorized(request):
        return _unauthorized()
    provider = request.app[PROVIDER]
    key = request.headers.get("Idempotency-Key")
    provider.idempotency_keys.append(key)
    if key is not None and key in provider.replays:
        existing = provider.items.get(provider.replays[key])
        if existing is not None:
            return web.json_response(existing, status=200)
    body = await request.json() if request.can_read_body else {}
    item = {"id": f"item-{uuid.uuid4().hex[:12]}", **(body if isinstance(body, dict) else {})}
    provider.items[item["id"]] = item
    if key is not None:
        provider.replays[key] = item["id"]
    return web.json_response(item, status=201)


async def read_item(request: web.Request) -> web.Response:
    """`?fail=500` answers that status instead, to show cleanup after a failed step."""
    _count(request, "/api/items/{id}")
    if not _authorized(request):
        return _unauthorized()
    if "fail" in request.query:
        code = int(request.query["fail"])
        return web.json_response({"error": {"message": "read failed"}}, status=code)
    item = request.app[PROVIDER].items.get(request.match_info["id"])
    if item is None:
        return web.json_response({"error": {"message": "no such item"}}, status=404)
    return web.json_response(item)


async def delete_item(request: web.Request) -> web.Response:
    _count(request, "DELETE /api/items/{id}")
    if not _authorized(request):
        return _unauthorized()
    if request.app[PROVIDER].items.pop(request.match_info["id"], None) is None:
        return web.json_response({"error": {"message": "no such item"}}, status=404)
    return web.Response(status=204)


async def idempotency_keys(request: web.Request) -> web.Response:
    """The Idempotency-Key of every create, in order (null for a create without one)."""
    return web.json_response({"keys": request.app[PROVIDER].idempotency_keys})


_GRAPHQL_FIELDS: dict[str, Any] = {
    "status": {"ok": True, "version": "2.1.0"},
    "orders": {"count": 42, "lastSyncedAt": "2024-01-01T00:00:00Z"},
}


async def graphql(request: web.Request) -> web.Response:
    """A GraphQL endpoint with a fixed schema: `status`, `orders`, and `echo(value:)`.

    Not a real executor: top-level fields are found by name and answered whole. An unknown
    field gets the `errors` answer real servers give (with HTTP 200, as most do).
    """
    _count(request)
    try:
        payload = await request.json()
        query = payload["query"]
    except (ValueError, KeyError, TypeError):
        message = "body must be JSON with a query"
        return web.json_response({"errors": [{"message": message}]}, status=400)
    variables = payload.get("variables") or {}
    data: dict[str, Any] = {}
    for name in _top_level_fields(str(query)):
        if name == "echo":
            data["echo"] = variables.get("value")
        elif name in _GRAPHQL_FIELDS:
            data[name] = _GRAPHQL_FIELDS[name]
        else:
            error = {"message": f"Cannot query field '{name}' on type 'Query'."}
            return web.json_response({"data": None, "errors": [error]})
    return web.json_response({"data": data})


def _top_level_fields(query: str) -> list[str]:
    """Names selected directly inside the operation's braces (arguments skipped)."""
    depth, parens, names = 0, 0, []
    for token in re.findall(r"[{}()]|[A-Za-z_]\w*", query):
        if token in "{}":
            depth += 1 if token == "{" else -1
        elif token in "()":
            parens += 1 if token == "(" else -1
        elif depth == 1 and parens == 0:
            names.append(token)
    return names
