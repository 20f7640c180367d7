"""The integration signals, one endpoint per case: quota headers in every dialect,
Deprecation/Sunset announcements, and 429s with and without Retry-After.

Everything is parameterised by the query string, so the demo config and the tests use the same
endpoints, and every answer is logged (`GET /served`) with what it announced, so a test can
compare what intmon exports with what was actually served rather than with a figure it assumed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

from monitor.sandbox.common import count

MIGRATION_URL = "https://developer.example.com/migrate/v2"
# 2025-01-01T00:00:00Z: when the sandbox's deprecated endpoints say they were deprecated.
DEPRECATED_AT = 1_735_689_600


@dataclass
class Hit:
    """One request as the sandbox answered it."""

    at: float  # unix seconds the request arrived
    path: str  # path and query string
    status: int
    answered: float = 0.0  # unix seconds the answer left; a Retry-After window starts here
    retry_until: float | None = None  # end of the Retry-After window announced, if any
    served: dict[str, Any] = field(default_factory=dict)  # the figures the headers carried


HITS = web.AppKey("signal_hits", list[Hit])
MAX_HITS = 10_000  # a demo left running for days must not grow without bound


def add_routes(app: web.Application) -> None:
    app[HITS] = []
    app[DRAINS] = {}
    r = app.router
    r.add_get("/quota/drain", quota_drain)  # before /quota/{dialect}, which would take it
    r.add_get("/quota/{dialect}", quota)
    r.add_get("/deprecated/{kind}", deprecated)
    r.add_get("/retry-after", retry_after)
    r.add_get("/served", served)


def _log(request: web.Request, status: int, at: float | None = None, **kwargs: Any) -> Hit:
    now = time.time()
    hit = Hit(now if at is None else at, request.path_qs, status, now, **kwargs)
    hits = request.app[HITS]
    hits.append(hit)
    if len(hits) > MAX_HITS:
        del hits[: len(hits) - MAX_HITS]
    return hit


async def served(request: web.Request) -> web.Response:
    """Every request the endpoints of this module answered, oldest first."""
    return web.json_response([asdict(hit) for hit in request.app[HITS]])


# -- quota -----------------------------------------------------------------------------------

QuotaHeaders = Callable[[int, int, float, float], dict[str, str]]


def _triplet(prefix: str, reset: Callable[[float, float], str]) -> QuotaHeaders:
    def headers(remaining: int, limit: int, now: float, delta: float) -> dict[str, str]:
        return {
            f"{prefix}-Limit": str(limit),
            f"{prefix}-Remaining": str(remaining),
            f"{prefix}-Reset": reset(now, delta),
        }

    return headers


def _ietf(remaining: int, limit: int, now: float, delta: float) -> dict[str, str]:
    # Structured-field integers only: a fractional reset is rounded up, never down.
    return {
        "RateLimit": f'"default";r={remaining};t={math.ceil(delta)}',
        "RateLimit-Policy": f'"default";q={limit};w=60',
    }


def _shopify(remaining: int, limit: int, now: float, delta: float) -> dict[str, str]:
    return {"X-Shopify-Shop-Api-Call-Limit": f"{limit - remaining}/{limit}"}


def _github(remaining: int, limit: int, now: float, delta: float) -> dict[str, str]:
    headers = _triplet("X-RateLimit", lambda now, delta: str(math.ceil(now + delta)))
    return {**headers(remaining, limit, now, delta), "X-RateLimit-Used": str(limit - remaining)}


QUOTA_DIALECTS: dict[str, QuotaHeaders] = {
    "x-ratelimit": _github,  # GitHub: reset in epoch seconds, plus -Used
    "x-rate-limit": _triplet("X-Rate-Limit", lambda now, delta: str(math.ceil(now + delta))),
    "x-ratelimit-ms": _triplet("X-RateLimit", lambda now, delta: str(round((now + delta) * 1000))),
    "x-ratelimit-delta": _triplet("X-RateLimit", lambda now, delta: f"{delta:g}"),
    "ietf": _ietf,  # draft-10 RateLimit / RateLimit-Policy
    "ietf-legacy": _triplet("RateLimit", lambda now, delta: f"{delta:g}"),
    "shopify": _shopify,
}


async def quota(request: web.Request) -> web.Response:
    """`?remaining=50&limit=100&reset=60` in the dialect named by the path; `&decrement=1`
    spends one unit per request (never below zero), like a real quota."""
    dialect = request.match_info["dialect"]
    if dialect not in QUOTA_DIALECTS:
        raise web.HTTPNotFound(text=f"dialects: {', '.join(QUOTA_DIALECTS)}")
    n = count(request, f"quota:{request.path_qs}")
    limit = int(request.query.get("limit", "100"))
    remaining = int(request.query.get("remaining", str(limit)))
    if request.query.get("decrement"):
        remaining = max(remaining - (n - 1), 0)
    delta = float(request.query.get("reset", "60"))
    headers = QUOTA_DIALECTS[dialect](remaining, limit, time.time(), delta)
    figures = {"remaining": remaining, "limit": limit, "reset_in": delta}
    _log(request, 200, served=figures)
    return web.json_response({"status": "ok", "dialect": dialect, **figures}, headers=headers)


@dataclass
class Drain:
    """One draining quota: when its first period began, which period it is in, spent so far."""

    started: float
    period: int = 0
    spent: float = 0.0


DRAINS = web.AppKey("quota_drains", dict[str, Drain])


async def quota_drain(request: web.Request) -> web.Response:
    """`?limit=1000&cost=40&reset=3600`: every request spends `cost` of a quota that refills
    every `reset` seconds from the first request, so the reset draws nearer in real time, as a
    provider's does. Checks naming the same `&key=` spend one quota (a provider's account);
    `&dialect=` picks the headers (default `ietf`)."""
    dialect = request.query.get("dialect", "ietf")
    if dialect not in QUOTA_DIALECTS:
        raise web.HTTPNotFound(text=f"dialects: {', '.join(QUOTA_DIALECTS)}")
    limit = int(request.query.get("limit", "1000"))
    cost = float(request.query.get("cost", "40"))
    every = float(request.query.get("reset", "3600"))
    now = time.time()
    drain = request.app[DRAINS].setdefault(request.query.get("key", request.path_qs), Drain(now))
    period = int((now - drain.started) // every)
    if period != drain.period:
        drain.period, drain.spent = period, 0.0
    drain.spent += cost
    remaining = max(limit - math.ceil(drain.spent), 0)
    reset_at = drain.started + (period + 1) * every
    headers = QUOTA_DIALECTS[dialect](remaining, limit, now, reset_at - now)
    figures = {"remaining": remaining, "limit": limit, "reset_at": reset_at}
    _log(request, 200, at=now, served=figures)
    return web.json_response({"status": "ok", **figures}, headers=headers)


# -- deprecation -----------------------------------------------------------------------------

DEPRECATION_FORMS: dict[str, Callable[[int], str | None]] = {
    "epoch": lambda at: f"@{at}",  # RFC 9745
    "true": lambda at: "true",  # the drafts before it
    "date": lambda at: formatdate(at, usegmt=True),  # older drafts: an HTTP-date
    "none": lambda at: None,  # a resource nobody deprecated
}


async def deprecated(request: web.Request) -> web.Response:
    """`Deprecation` in the form the path names (`?at=<epoch>`), with `Sunset` when
    `?sunset=<epoch>` and a rel="deprecation" Link when `?link=` (a URL, or any value for
    the default migration guide)."""
    kind = request.match_info["kind"]
    if kind not in DEPRECATION_FORMS:
        raise web.HTTPNotFound(text=f"kinds: {', '.join(DEPRECATION_FORMS)}")
    count(request)
    headers: dict[str, str] = {}
    figures: dict[str, Any] = {}
    value = DEPRECATION_FORMS[kind](int(request.query.get("at", DEPRECATED_AT)))
    if value is not None:
        headers["Deprecation"] = figures["deprecation"] = value
    if "sunset" in request.query:
        figures["sunset"] = int(request.query["sunset"])
        headers["Sunset"] = formatdate(figures["sunset"], usegmt=True)
    if "link" in request.query:
        link = request.query["link"]
        figures["link"] = link if link.startswith(("http://", "https://")) else MIGRATION_URL
        headers["Link"] = f'<{figures["link"]}>; rel="deprecation"'
    _log(request, 200, served=figures)
    return web.json_response({"status": "ok"}, headers=headers)


# -- 429s ------------------------------------------------------------------------------------


async def retry_after(request: web.Request) -> web.Response:
    """The first `?times=1` requests (per query string; -1: all) get a 429, with
    `Retry-After: <after>` when `?after=` is given (an HTTP-date, rounded up to the second,
    with `&date=1`), else none, which leaves the client to back off on its own. Later ones
    get a 200. Fractional seconds are served as given: intmon reads them, and they keep tests
    short; real providers send whole seconds. `?delay=` seconds before answering: a slow 429."""
    arrived = time.time()
    n = count(request, f"retry-after:{request.query_string}")
    await asyncio.sleep(float(request.query.get("delay", "0")))
    times = int(request.query.get("times", "1"))
    if 0 <= times < n:
        _log(request, 200, arrived)
        return web.json_response({"status": "ok"})
    headers: dict[str, str] = {}
    until = None
    after = request.query.get("after")
    if after is not None:
        now = time.time()  # the window starts when the answer leaves
        if request.query.get("date"):
            until = float(math.ceil(now + float(after)))
            headers["Retry-After"] = formatdate(until, usegmt=True)
        else:
            until = now + float(after)
            headers["Retry-After"] = after
    _log(request, 429, arrived, retry_until=until)
    return web.json_response({"message": "slow down"}, status=429, headers=headers)
