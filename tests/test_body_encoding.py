"""A body that claims to be text but does not decode is `invalid_response` when the check reads
it; a body that claims nothing (an image) passes a check that asks nothing of its text."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from checks.base import RunContext
from tests.test_http import http_check, run

BAD_UTF8 = b'{"status": "ok", "name": "caf\xe9"}'  # Latin-1 bytes where UTF-8 was promised
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"


def app() -> web.Application:
    def reply(body: bytes, content_type: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": content_type})

        return handler

    application = web.Application()
    routes = {
        "/json": (BAD_UTF8, "application/json"),
        "/problem": (BAD_UTF8, "application/problem+json"),
        "/text": (b"caf\xe9 ok", "text/plain; charset=utf-8"),
        "/latin1": (b"caf\xe9 ok", "text/plain; charset=ISO-8859-1"),
        "/unlabelled": (BAD_UTF8, "application/octet-stream"),
        "/png": (PNG, "image/png"),
        "/unknown-charset": (b"caf\xe9 ok", "text/plain; charset=x-no-such"),
    }
    for path, (body, content_type) in routes.items():
        application.router.add_get(path, reply(body, content_type))
    return application


FAILING = [
    ("json-label-body-errors", "/json", {}, "body is not valid utf-8: byte 0xe9 at offset 29"),
    ("json-label-json-rule", "/json", {"json": {"$.status": "ok"}}, "body is not valid utf-8: byte 0xe9"),
    ("problem-json", "/problem", {}, "body is not valid utf-8: byte 0xe9"),
    ("charset-regex", "/text", {"body_regex": "ok"}, "body is not valid utf-8: byte 0xe9 at offset 3"),
    ("charset-contains", "/text", {"body_contains": "ok"}, "body is not valid utf-8"),
    ("unlabelled-json-rule", "/unlabelled", {"json": {"$.status": "ok"}}, "body is not valid utf-8"),
    ("unknown-charset-read-as-utf8", "/unknown-charset", {"body_contains": "ok"}, "body is not valid utf-8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "expect", "reason"), [c[1:] for c in FAILING], ids=[c[0] for c in FAILING]
)
async def test_a_body_that_claims_text_but_does_not_decode_is_an_invalid_response(
    ctx: RunContext, serve: Any, path: str, expect: dict[str, Any], reason: str
) -> None:
    url = await serve(app())
    result = await run(ctx, http_check(url + path, expect=expect))
    assert not result.ok
    assert result.error_class == "invalid_response"
    assert result.reason.startswith(reason)


PASSING = [
    ("png-default-expect", "/png", {}),
    ("png-status-only", "/png", {"status": 200, "body_errors": False}),
    ("unlabelled-default-expect", "/unlabelled", {}),
    ("declared-latin1", "/latin1", {"body_contains": "café"}),
    ("no-body-rules", "/json", {"body_errors": False}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "expect"), [c[1:] for c in PASSING], ids=[c[0] for c in PASSING])
async def test_a_body_that_is_not_read_or_decodes_as_declared_passes(
    ctx: RunContext, serve: Any, path: str, expect: dict[str, Any]
) -> None:
    url = await serve(app())
    result = await run(ctx, http_check(url + path, expect=expect))
    assert result.ok, result.reason
