"""Who may see and change what, in one place: the middleware every request passes.

- With `monitor.web.basic_auth_users`, every path not listed in `monitor.web.public` needs a
  user's password (401 and `WWW-Authenticate: Basic` otherwise). Writes always do, listed or not.
- Without users, reads are open (the server binds loopback unless told otherwise) and writes
  are taken from loopback only: whoever can reload or accept a schema changes what is watched.
- Heartbeat pushes are neither: a sync job signs each push with its check's secret instead
  (monitor/web/heartbeats.py), and the config refuses an unsigned one on a network address.

The settings are read per request, so users and public paths change with a reload.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from monitor.config.web import WebSettings
from monitor.web.passwords import Verifier
from monitor.web.security import HEADERS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REALM = 'Basic realm="intmon", charset="UTF-8"'
READS = frozenset({"GET", "HEAD", "OPTIONS"})
HEARTBEAT_ROUTES = frozenset({"/heartbeat/{check}", "/heartbeat/{check}/fail"})


def guard(settings: Callable[[], WebSettings]) -> Middleware:
    verifier = Verifier()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # By the route matched, not the path as written: the handler is what is protected.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else None
        if request.method == "POST" and route in HEARTBEAT_ROUTES:
            return await handler(request)  # signed instead; see the module's docstring
        web_settings = settings()
        users = web_settings.basic_auth_users
        write = request.method not in READS
        if not users:
            if write and not from_loopback(request):
                return web.json_response(
                    {"error": "changes are taken from loopback only (no users are configured)"},
                    status=403,
                )
            return await handler(request)
        if not write and route in web_settings.public:
            return await handler(request)
        credentials = _basic_credentials(request.headers.get("Authorization"))
        if credentials is None or not await verifier.verify(users, *credentials):
            raise web.HTTPUnauthorized(
                text="401: credentials required\n", headers={"WWW-Authenticate": REALM}
            )
        return await handler(request)

    return middleware


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header; None for anything else."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def from_loopback(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False  # a Unix socket or a name: not known to be this machine


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer carries them, errors and 404s included."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)


__all__ = ["from_loopback", "guard", "security_headers"]
