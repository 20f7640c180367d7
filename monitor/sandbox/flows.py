"""Sync freshness, OAuth2, a CRUD resource and GraphQL: what flows and freshness checks need."""

from __future__ import annotations

import base64
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from monitor.sandbox.common import count

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


def add_routes(app: web.Application) -> None:
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
    count(request)
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
    count(request)
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
    count(request)
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
    count(request, "/api/items/{id}")
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
    count(request, "DELETE /api/items/{id}")
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
    count(request)
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
