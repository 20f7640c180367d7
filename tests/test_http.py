"""The http check against real servers: every expectation type, every error class."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from checks.assertions import Expect
from checks.base import RunContext
from checks.http import HttpCheck, RequestSpec, send
from checks.transport import HttpTransport
from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.core.redact import Redactor
from monitor.engine.runner import Runner
from tests.tls import make_pki


def http_check(url: str, **fields: Any) -> HttpCheck:
    request = fields.pop("request", {})
    return HttpCheck.model_validate({"name": "t", "request": {"url": url, **request}, **fields})


async def run(ctx: RunContext, check: HttpCheck) -> Any:
    return await Runner(ctx, concurrency=10, per_host=4).execute(check)


PASSING = [
    ("status-int", "/healthy", {"status": 200}),
    ("status-list", "/status/404", {"status": [200, 404]}),
    ("status-class", "/status/204", {"status": "2xx"}),
    ("status-class-4xx", "/status/410", {"status": "4xx"}),
    ("json-equal", "/json", {"json": {"$.status": "ok", "$.count": 42, "$.data.ready": True}}),
    ("json-exists", "/json", {"json": {"$.version": {"exists": True}, "$.nope": {"exists": False}}}),
    ("json-operators", "/json", {"json": {"$.count": {"gt": 40, "lte": 42}, "$.version": {"regex": "^2\\."}}}),
    ("json-every-match", "/healthy", {"json": {"$.items[*].id": {"in": [1, 2]}}}),
    ("json-contains", "/json", {"json": {"$.data.tags": {"contains": "b"}}}),
    ("body-contains", "/json", {"body_contains": "version"}),
    ("body-not-contains", "/json", {"body_not_contains": ["error", "fail"]}),
    ("body-regex", "/json", {"body_regex": '"count":\\s*\\d+'}),
    ("header-regex", "/json", {"headers": {"Content-Type": "^application/json"}}),
    ("max-latency", "/healthy", {"max_latency": "2s"}),
    ("clean-envelope", "/envelope/clean", {}),
    ("envelope-check-off", "/envelope/graphql", {"body_errors": False}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "expect"), [p[1:] for p in PASSING], ids=[p[0] for p in PASSING])
async def test_each_expectation_passes_on_a_matching_response(
    ctx: RunContext, sandbox: str, path: str, expect: dict[str, Any]
) -> None:
    result = await run(ctx, http_check(sandbox + path, expect=expect))
    assert result.ok, result.reason
    assert result.error_class is None
    assert result.latency is not None and result.latency > 0


FAILING = [
    ("status-404", "/status/404", {}, "http_4xx", "HTTP 404 (expected 2xx)"),
    ("status-503", "/status/503", {}, "http_5xx", "HTTP 503 (expected 2xx)"),
    ("status-429", "/status/429", {}, "rate_limited", "HTTP 429"),
    ("status-unexpected-2xx", "/status/201", {"status": 200}, "assertion", "HTTP 201 (expected 200)"),
    ("json-mismatch", "/json", {"json": {"$.status": "degraded"}}, "assertion", '$.status is "ok", expected "degraded"'),
    ("json-missing", "/json", {"json": {"$.missing": 1}}, "assertion", "$.missing not found"),
    ("json-should-not-exist", "/json", {"json": {"$.count": {"exists": False}}}, "assertion", "$.count exists"),
    ("json-operator", "/json", {"json": {"$.count": {"lt": 10}}}, "assertion", "$.count is 42, expected lt 10"),
    ("json-type-mismatch", "/json", {"json": {"$.version": {"gt": 1}}}, "assertion", '$.version is "2.1.0", expected gt 1'),
    ("body-contains", "/json", {"body_contains": "nope"}, "assertion", "body does not contain 'nope'"),
    ("body-not-contains", "/json", {"body_not_contains": "version"}, "assertion", "body contains 'version'"),
    ("body-regex", "/json", {"body_regex": "^xyz"}, "assertion", "body does not match /^xyz/"),
    ("header-missing", "/json", {"headers": {"X-Nope": "."}}, "assertion", "header X-Nope is missing"),
    ("max-latency", "/slow?delay=0.15", {"max_latency": "50ms"}, "assertion", "over max_latency 50ms"),
    ("not-json", "/not-json", {"json": {"$.a": 1}}, "invalid_response", "body is not JSON"),
    ("graphql-errors", "/envelope/graphql", {}, "body_error", "errors: Cannot query field 'foo'"),
    ("ok-false", "/envelope/ok-false", {}, "body_error", "ok: false: invalid_auth"),
    ("status-0", "/envelope/status-0", {}, "body_error", 'status "0": NOTOK: Max rate limit reached'),
    ("error-object", "/envelope/error-object", {}, "body_error", "error: account suspended"),
    ("extra-error-path", "/json", {"error_paths": ["$.data.ready"]}, "body_error", "$.data.ready"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "expect", "error_class", "reason"),
    [f[1:] for f in FAILING],
    ids=[f[0] for f in FAILING],
)
async def test_each_failure_is_a_result_with_its_error_class_and_reason(
    ctx: RunContext, sandbox: str, path: str, expect: dict[str, Any], error_class: str, reason: str
) -> None:
    result = await run(ctx, http_check(sandbox + path, expect=expect))
    assert not result.ok
    assert result.error_class == error_class
    assert reason in result.reason


async def test_a_hanging_target_times_out(ctx: RunContext, sandbox: str) -> None:
    result = await run(ctx, http_check(sandbox + "/hang", timeout="200ms"))
    assert (result.error_class, result.reason) == ("timeout", "no complete answer within 200ms")
    assert 0.2 <= result.latency < 1


async def test_a_body_that_drips_forever_times_out(ctx: RunContext, sandbox: str) -> None:
    result = await run(ctx, http_check(sandbox + "/drip?every=0.05", timeout="300ms"))
    assert result.error_class == "timeout"


async def test_a_refused_connection_is_a_connect_error(ctx: RunContext) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await run(ctx, http_check(f"http://127.0.0.1:{port}/"))
    assert result.error_class == "connect"
    assert f"127.0.0.1:{port}" in result.reason


async def test_an_unresolvable_host_is_a_connect_error(ctx: RunContext) -> None:
    result = await run(ctx, http_check("http://no-such-host.invalid/", timeout="5s"))
    assert result.error_class == "connect"


async def test_a_redirect_loop_is_an_invalid_response(ctx: RunContext, sandbox: str) -> None:
    result = await run(ctx, http_check(sandbox + "/redirect-loop", max_redirects=3))
    assert (result.error_class, result.reason) == (
        "invalid_response",
        "redirect loop: more than 3 redirects",
    )


async def test_a_long_chain_of_redirects_is_not_called_a_loop(
    ctx: RunContext, sandbox: str
) -> None:
    result = await run(ctx, http_check(sandbox + "/redirect/10", max_redirects=3))
    assert (result.error_class, result.reason) == ("invalid_response", "more than 3 redirects")


async def test_redirects_within_the_limit_are_followed(ctx: RunContext, sandbox: str) -> None:
    result = await run(ctx, http_check(sandbox + "/redirect/3"))
    assert result.ok and result.status == 200


async def test_with_redirects_off_the_redirect_itself_is_judged(
    ctx: RunContext, sandbox: str
) -> None:
    result = await run(
        ctx, http_check(sandbox + "/redirect/1", max_redirects=0, expect={"status": 302})
    )
    assert result.ok, result.reason


async def test_a_huge_body_is_not_buffered_and_fails_cleanly(ctx: RunContext, sandbox: str) -> None:
    start = time.perf_counter()
    result = await run(
        ctx, http_check(sandbox + "/big?mb=100", max_body="64KiB", expect={"json": {"$.a": 1}})
    )
    assert (result.error_class, result.reason) == (
        "invalid_response",
        "body larger than the 65536 byte cap",
    )
    # Reading 100 MB over loopback would take far longer than stopping at the cap.
    assert time.perf_counter() - start < 2


async def test_a_huge_body_passes_when_no_rule_needs_the_body(
    ctx: RunContext, sandbox: str
) -> None:
    result = await run(
        ctx, http_check(sandbox + "/big?mb=5", max_body="64KiB", expect={"body_errors": False})
    )
    assert result.ok, result.reason


@pytest.mark.parametrize(
    "payload",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",
    ],
    ids=["not-http", "bad-status-line", "short-body"],
)
async def test_malformed_http_is_an_invalid_response(
    ctx: RunContext, raw_server: Callable[[bytes], Awaitable[str]], payload: bytes
) -> None:
    url = await raw_server(payload)
    result = await run(ctx, http_check(url + "/", expect={"body_errors": False}))
    assert result.error_class in ("invalid_response", "connect")
    assert result.error_class == "invalid_response", result.reason


async def test_a_server_that_closes_without_answering_is_a_connect_error(
    ctx: RunContext, raw_server: Callable[[bytes], Awaitable[str]]
) -> None:
    url = await raw_server(b"")
    result = await run(ctx, http_check(url + "/"))
    assert result.error_class == "connect"


async def test_method_headers_params_and_json_are_sent(
    ctx: RunContext, serve: Callable[[web.Application], Awaitable[str]]
) -> None:
    seen: dict[str, Any] = {}

    async def echo(request: web.Request) -> web.Response:
        seen.update(
            method=request.method,
            auth=request.headers.get("Authorization"),
            ua=request.headers.get("User-Agent"),
            query=dict(request.query),
            body=await request.json(),
        )
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    url = await serve(app)
    check = http_check(
        url + "/echo",
        request={
            "method": "post",
            "headers": {"Authorization": "Bearer abc"},
            "params": {"limit": 5, "q": "x"},
            "json": {"name": "probe"},
        },
    )
    result = await run(ctx, check)
    assert result.ok, result.reason
    assert seen == {
        "method": "POST",
        "auth": "Bearer abc",
        "ua": "intmon-test",
        "query": {"limit": "5", "q": "x"},
        "body": {"name": "probe"},
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pki(tmp_path_factory.mktemp("pki"), days=10)


async def https_server(pki: Any) -> tuple[web.AppRunner, str]:
    async def root(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/", root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context())
    await site.start()
    return runner, f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]


async def test_an_untrusted_certificate_is_a_tls_error(ctx: RunContext, pki: Any) -> None:
    runner, url = await https_server(pki)
    try:
        result = await run(ctx, http_check(url))
    finally:
        await runner.cleanup()
    assert result.error_class == "tls"
    assert "certificate" in result.reason.lower()


async def test_a_private_ca_bundle_is_trusted_and_the_expiry_is_read(
    ctx: RunContext, pki: Any
) -> None:
    runner, url = await https_server(pki)
    try:
        result = await run(ctx, http_check(url, tls_ca_file=str(pki.ca_file)))
    finally:
        await runner.cleanup()
    assert result.ok, result.reason
    expected = time.time() + pki.days * 86400
    assert abs(result.tls_not_after - expected) < 2 * 86400


async def test_tls_verification_can_be_turned_off(ctx: RunContext, pki: Any) -> None:
    runner, url = await https_server(pki)
    try:
        result = await run(ctx, http_check(url, tls_verify=False))
    finally:
        await runner.cleanup()
    assert result.ok, result.reason


def test_a_bad_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="cannot load CA bundle"):
        http_check("https://x/", tls_ca_file=str(tmp_path / "ca.pem"))


async def test_a_crashing_check_type_is_an_internal_error_not_a_crash(ctx: RunContext) -> None:
    class Broken(HttpCheck):
        async def run(self, ctx: RunContext) -> Any:
            raise ZeroDivisionError("boom")

    check = Broken.model_validate({"name": "b", "request": {"url": "http://x/"}})
    result = await run(ctx, check)
    assert (result.error_class, result.reason) == (
        "internal",
        "intmon error: ZeroDivisionError: boom",
    )


async def test_secrets_from_the_environment_never_reach_the_result(
    session: Any, serve: Callable[[web.Application], Awaitable[str]]
) -> None:
    async def reject(request: web.Request) -> web.Response:
        # A provider that echoes the credential back in its error, as some do.
        return web.json_response(
            {"error": {"message": f"bad key {request.query['key']}"}}, status=200
        )

    app = web.Application()
    app.router.add_get("/", reject)
    url = await serve(app)
    text = f"checks: [{{name: a, request: {{url: '{url}/?key=${{API_KEY}}'}}}}]"
    config = parse_config(text, env={"API_KEY": "sk_live_123456"})
    ctx = RunContext(session, SystemClock(), Redactor(config.secrets), "intmon-test")
    result = await Runner(ctx, 1, 1).execute(config.checks[0])
    assert result.error_class == "body_error"
    assert result.reason == "error: bad key ***"


@pytest.mark.parametrize(
    ("transport", "error_class"),
    [(HttpTransport(), "tls"), (HttpTransport(tls_verify=False), None)],
    ids=["verifies-by-default", "verify-off"],
)
async def test_send_takes_the_connection_settings_alone_without_a_check(
    ctx: RunContext, pki: Any, transport: HttpTransport, error_class: str | None
) -> None:
    """What flow, graphql and freshness sources pass: their own transport fields."""
    runner, url = await https_server(pki)
    try:
        result, body = await send(ctx, RequestSpec(url=url), Expect(), transport)
    finally:
        await runner.cleanup()
    assert result.error_class == error_class, result.reason
    assert body == (b"" if error_class else b'{"status": "ok"}')


async def test_send_caps_the_body_at_the_transport_max_body(ctx: RunContext, sandbox: str) -> None:
    spec = RequestSpec(url=sandbox + "/big?mb=1")
    result, body = await send(ctx, spec, Expect(body_errors=False), HttpTransport(max_body=1000))
    assert result.ok, result.reason
    assert len(body) == 1000
