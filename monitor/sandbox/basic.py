"""The misbehaving basics: healthy, slow, flaky, rate-limited, broken and hostile answers."""

from __future__ import annotations

import asyncio

from aiohttp import web

from monitor.sandbox.common import count


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_route("*", "/healthy", healthy)
    r.add_get("/slow", slow)
    r.add_get("/flaky", flaky)
    r.add_get("/ratelimited", ratelimited)
    r.add_route("*", "/status/{code:\\d+}", status)
    r.add_get("/json", json_document)
    r.add_get("/envelope/{kind}", envelope)
    r.add_get("/request-id/{code:\\d+}", request_id)
    r.add_get("/big", big)
    r.add_get("/drip", drip)
    r.add_get("/redirect/{n:\\d+}", redirect)
    r.add_get("/redirect-loop", redirect_loop)
    r.add_get("/not-json", not_json)
    r.add_get("/hang", hang)


async def healthy(request: web.Request) -> web.Response:
    count(request)
    return web.json_response({"status": "ok", "items": [{"id": 1}, {"id": 2}]})


async def slow(request: web.Request) -> web.Response:
    """`?delay=0.5` seconds before answering."""
    count(request)
    await asyncio.sleep(float(request.query.get("delay", "1")))
    return web.json_response({"status": "ok"})


async def flaky(request: web.Request) -> web.Response:
    """Fails `fail` of every `every` requests (default 1 in 4) with a 503."""
    n = count(request, f"flaky:{request.query_string}")
    every = int(request.query.get("every", "4"))
    fail = int(request.query.get("fail", "1"))
    if (n - 1) % every < fail:
        return web.json_response({"error": {"message": "upstream unavailable"}}, status=503)
    return web.json_response({"status": "ok"})


async def ratelimited(request: web.Request) -> web.Response:
    """Allows `limit` requests (default 3), then answers 429 with Retry-After `retry` seconds."""
    n = count(request, f"ratelimited:{request.query_string}")
    limit = int(request.query.get("limit", "3"))
    remaining = max(limit - n, 0)
    headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}
    if n > limit:
        headers["Retry-After"] = request.query.get("retry", "30")
        return web.json_response({"message": "slow down"}, status=429, headers=headers)
    return web.json_response({"status": "ok"}, headers=headers)


async def status(request: web.Request) -> web.Response:
    count(request)
    code = int(request.match_info["code"])
    return web.json_response({"status": code}, status=code)


async def json_document(request: web.Request) -> web.Response:
    count(request)
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
    count(request)
    kind = request.match_info["kind"]
    if kind not in ENVELOPES:
        raise web.HTTPNotFound()
    return web.json_response(ENVELOPES[kind])


async def request_id(request: web.Request) -> web.Response:
    """Answers the status in the path with the request id a provider's support asks for: in
    `X-Request-Id`, or with `?via=envelope` only in the error body's `request_id`."""
    n = count(request)
    rid = f"req-{n:06d}-{request.match_info['code']}"
    body = {"error": {"message": "upstream unavailable", "request_id": rid}}
    headers = {} if request.query.get("via") == "envelope" else {"X-Request-Id": rid}
    return web.json_response(body, status=int(request.match_info["code"]), headers=headers)


async def big(request: web.Request) -> web.StreamResponse:
    """Streams `?mb=100` megabytes without holding them in memory."""
    count(request)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    chunk = b"x" * 65536
    for _ in range(int(float(request.query.get("mb", "100")) * 16)):
        await response.write(chunk)
    await response.write_eof()
    return response


async def drip(request: web.Request) -> web.StreamResponse:
    """Sends headers at once, then one byte every `?every=1` seconds, forever-ish."""
    count(request)
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(int(request.query.get("count", "600"))):
        await response.write(b".")
        await asyncio.sleep(float(request.query.get("every", "1")))
    return response


async def redirect(request: web.Request) -> web.Response:
    count(request)
    n = int(request.match_info["n"])
    raise web.HTTPFound("/healthy" if n <= 1 else f"/redirect/{n - 1}")


async def redirect_loop(request: web.Request) -> web.Response:
    count(request)
    raise web.HTTPFound("/redirect-loop")


async def not_json(request: web.Request) -> web.Response:
    count(request)
    return web.Response(
        text="<html>Service Temporarily Unavailable</html>", content_type="text/html"
    )


async def hang(request: web.Request) -> web.Response:
    count(request)
    await asyncio.sleep(3600)
    return web.Response(text="late")
