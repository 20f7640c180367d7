"""State shared by the sandbox's endpoint modules."""

from __future__ import annotations

from aiohttp import web

COUNTERS = web.AppKey("counters", dict[str, int])


def count(request: web.Request, key: str | None = None) -> int:
    counters = request.app[COUNTERS]
    key = key or request.path
    counters[key] = counters.get(key, 0) + 1
    return counters[key]
