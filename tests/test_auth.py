"""Auth for http checks: static credentials, OAuth2 tokens cached for their lifetime, 401 retry."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from checks.assertions import Expect
from checks.base import Result, RunContext
from checks.http import HttpCheck
from monitor.core.clock import FakeClock
from monitor.core.redact import Redactor
from monitor.engine.runner import Runner
from monitor.sandbox import SANDBOX_CLIENT_SECRET

CLIENT = {"client_id": "sandbox-client", "client_secret": SANDBOX_CLIENT_SECRET}


def check(url: str, auth: dict[str, Any] | None = None, **request: Any) -> HttpCheck:
    data: dict[str, Any] = {"name": "t", "request": {"url": url, **request}}
    if auth is not None:
        data["auth"] = auth
    return HttpCheck.model_validate(data)


async def run(ctx: RunContext, target: HttpCheck) -> Result:
    return await Runner(ctx, concurrency=50, per_host=50).execute(target)


@pytest.fixture
def fake_ctx(session: aiohttp.ClientSession, clock: FakeClock) -> RunContext:
    return RunContext(session=session, clock=clock, redactor=Redactor())


async def token_requests(client: aiohttp.ClientSession, sandbox: str) -> int:
    async with client.get(sandbox + "/stats") as response:
        return int((await response.json()).get("/oauth/token", 0))


def echo_app(seen: list[web.Request]) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    return app


STATIC = [
    ("bearer", {"type": "bearer", "token": "t0k3n-abc"}, "Authorization", "Bearer t0k3n-abc", None),
    (
        "basic",
        {"type": "basic", "username": "ann", "password": "pw-1234"},
        "Authorization",
        "Basic YW5uOnB3LTEyMzQ=",
        None,
    ),
    (
        "api-key-header",
        {"type": "api_key", "name": "X-Api-Key", "value": "k-123456"},
        "X-Api-Key",
        "k-123456",
        None,
    ),
    (
        "api-key-query",
        {"type": "api_key", "in": "query", "name": "key", "value": "k-123456"},
        None,
        None,
        ("key", "k-123456"),
    ),
]


@pytest.mark.parametrize(
    ("auth", "header", "value", "param"), [s[1:] for s in STATIC], ids=[s[0] for s in STATIC]
)
async def test_static_credentials_are_sent_where_the_provider_expects_them(
    ctx: RunContext,
    serve: Any,
    auth: dict[str, Any],
    header: str | None,
    value: str | None,
    param: Any,
) -> None:
    seen: list[web.Request] = []
    url = await serve(echo_app(seen))
    result = await run(ctx, check(url + "/echo", auth, params={"page": 1}))
    assert result.ok, result.reason
    if header is not None:
        assert seen[0].headers[header] == value
    if param is not None:
        assert seen[0].query[param[0]] == param[1]
    assert seen[0].query["page"] == "1"


async def test_a_client_credentials_token_is_reused_for_its_lifetime_and_refreshed_at_80_percent(
    fake_ctx: RunContext, clock: FakeClock, sandbox: str, session: aiohttp.ClientSession
) -> None:
    auth = {"type": "oauth2_client_credentials", "token_url": sandbox + "/oauth/token", **CLIENT}
    target = check(sandbox + "/api/items", auth)
    for _ in range(5):  # t = 0, 10, 20, 30, 40: inside 80% of the 60 s lifetime
        assert (await run(fake_ctx, target)).ok
        clock.advance(10)
    assert await token_requests(session, sandbox) == 1
    assert (await run(fake_ctx, target)).ok  # t = 50: past 48 s, refreshed once
    assert (await run(fake_ctx, target)).ok
    assert await token_requests(session, sandbox) == 2


async def test_concurrent_runs_share_one_token_request(
    fake_ctx: RunContext, sandbox: str, session: aiohttp.ClientSession
) -> None:
    auth = {"type": "oauth2_client_credentials", "token_url": sandbox + "/oauth/token", **CLIENT}
    targets = [
        check(sandbox + "/api/items", auth).model_copy(update={"name": f"c{i}"}) for i in range(20)
    ]
    results = await asyncio.gather(*(run(fake_ctx, t) for t in targets))
    assert all(r.ok for r in results), [r.reason for r in results]
    assert await token_requests(session, sandbox) == 1


async def test_a_refresh_token_grant_gets_an_access_token(
    fake_ctx: RunContext, sandbox: str
) -> None:
    auth = {
        "type": "oauth2_refresh_token",
        "token_url": sandbox + "/oauth/token",
        "refresh_token": "sandbox-refresh",
        "client_auth": "basic",
        **CLIENT,
    }
    result = await run(fake_ctx, check(sandbox + "/api/items", auth))
    assert result.ok, result.reason


async def test_after_a_401_the_token_is_refreshed_once_and_the_request_retried_with_the_same_key(
    fake_ctx: RunContext, sandbox: str, serve: Any, session: aiohttp.ClientSession
) -> None:
    seen: list[tuple[str, str]] = []

    async def picky(request: web.Request) -> web.Response:
        seen.append((request.headers["Authorization"], request.headers["Idempotency-Key"]))
        return web.json_response({}, status=401 if len(seen) == 1 else 201)

    app = web.Application()
    app.router.add_post("/orders", picky)
    url = await serve(app)
    auth = {"type": "oauth2_client_credentials", "token_url": sandbox + "/oauth/token", **CLIENT}
    result = await run(fake_ctx, check(url + "/orders", auth, method="POST", idempotency_key=True))
    assert result.ok, result.reason
    assert len(seen) == 2
    assert seen[0][0] != seen[1][0], "the retry must carry a fresh token"
    assert seen[0][1] == seen[1][1], "the retry must carry the same Idempotency-Key"
    assert await token_requests(session, sandbox) == 2


async def test_a_revoked_token_is_replaced_without_a_failed_run(
    fake_ctx: RunContext, sandbox: str, session: aiohttp.ClientSession
) -> None:
    auth = {"type": "oauth2_client_credentials", "token_url": sandbox + "/oauth/token", **CLIENT}
    # Reading needs a valid token; a missing item is the expected answer.
    target = check(sandbox + "/api/items/none", auth).model_copy(
        update={"expect": Expect(status=404)}
    )
    assert (await run(fake_ctx, target)).ok
    await session.post(sandbox + "/oauth/revoke")
    assert (await run(fake_ctx, target)).ok
    assert await token_requests(session, sandbox) == 2


async def test_a_persistent_401_is_retried_only_once(
    fake_ctx: RunContext, sandbox: str, serve: Any
) -> None:
    hits: list[str] = []

    async def never(request: web.Request) -> web.Response:
        hits.append(request.headers["Authorization"])
        return web.json_response({}, status=401)

    app = web.Application()
    app.router.add_get("/x", never)
    url = await serve(app)
    auth = {"type": "oauth2_client_credentials", "token_url": sandbox + "/oauth/token", **CLIENT}
    result = await run(fake_ctx, check(url + "/x", auth))
    assert (result.error_class, result.status, len(hits)) == ("http_4xx", 401, 2)


TOKEN_FAILURES = [
    (
        "wrong-secret",
        "/oauth/token",
        {"client_secret": "not-the-secret-42"},
        "token endpoint answered HTTP 401: invalid_client",
    ),
    (
        "bad-refresh",
        "/oauth/token",
        {"type": "oauth2_refresh_token", "refresh_token": "stale-refresh-77"},
        "HTTP 400: invalid_grant",
    ),
    ("not-a-token-endpoint", "/healthy", {}, "no access_token"),
    ("server-error", "/status/500", {}, "token endpoint answered HTTP 500"),
]


@pytest.mark.parametrize(
    ("path", "override", "reason"),
    [f[1:] for f in TOKEN_FAILURES],
    ids=[f[0] for f in TOKEN_FAILURES],
)
async def test_token_endpoint_failures_are_auth_results_without_secrets(
    fake_ctx: RunContext, sandbox: str, path: str, override: dict[str, str], reason: str
) -> None:
    auth = {"type": "oauth2_client_credentials", "token_url": sandbox + path, **CLIENT, **override}
    result = await run(fake_ctx, check(sandbox + "/api/items", auth))
    assert (result.ok, result.error_class) == (False, "auth")
    assert reason in result.reason
    for secret in (SANDBOX_CLIENT_SECRET, "not-the-secret-42", "stale-refresh-77"):
        assert secret not in result.reason


async def test_an_unreachable_token_endpoint_is_an_auth_failure(fake_ctx: RunContext) -> None:
    auth = {"type": "oauth2_client_credentials", "token_url": "http://127.0.0.1:9/token", **CLIENT}
    result = await run(fake_ctx, check("http://127.0.0.1:9/api", auth))
    assert result.error_class == "auth"
    assert result.reason.startswith("token endpoint unreachable")


async def test_a_provider_echoing_the_credential_does_not_leak_it_into_the_reason(
    ctx: RunContext, serve: Any
) -> None:
    async def echo_error(request: web.Request) -> web.Response:
        return web.json_response({"error": f"bad key {request.headers['X-Api-Key']}"})

    app = web.Application()
    app.router.add_get("/", echo_error)
    url = await serve(app)
    auth = {"type": "api_key", "name": "X-Api-Key", "value": "very-secret-key-1"}
    result = await run(ctx, check(url + "/", auth))
    assert result.error_class == "body_error"
    assert "very-secret-key-1" not in result.reason
    assert result.reason == "error: bad key ***"


def test_describe_target_never_shows_credentials() -> None:
    target = check(
        "https://api.example.com/v1?x=1",
        {"type": "api_key", "in": "query", "name": "key", "value": "k-123456"},
    )
    assert target.describe_target() == "GET https://api.example.com/v1"


async def test_the_runs_own_credentials_are_masked_without_any_config_secret(
    fake_ctx: RunContext, serve: Any
) -> None:
    """The redactor knows no config secret here: what the run sent (the password, and so the
    base64 Basic value) is masked because `send` told the runner, as are URL credentials."""

    async def echo_error(request: web.Request) -> web.Response:
        text = f"{request.headers['Authorization']} refused, see https://ops:hunter22@docs.test/"
        return web.json_response({"error": text})

    app = web.Application()
    app.router.add_get("/", echo_error)
    auth = {"type": "basic", "username": "u", "password": "pw-1234"}
    result = await run(fake_ctx, check(await serve(app) + "/", auth))
    assert result.reason == "error: Basic *** refused, see https://***@docs.test/"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://idp.test/token", "'ftp://idp.test/token' is not an http(s) URL"),
        ("https:///token", "'https:///token' is not an http(s) URL"),
        # yarl's own refusal is reported the same way, its reason kept.
        ("https://idp.test:99999/token", "is not an http(s) URL (Port out of range"),
    ],
    ids=["not-http", "no-host", "bad-port"],
)
def test_a_token_url_follows_the_same_rule_as_a_request_url(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        check(url)
    with pytest.raises(ValidationError, match=re.escape(message)):
        check(
            "https://api.test/", {"type": "oauth2_client_credentials", "token_url": url, **CLIENT}
        )


async def test_a_provider_reflecting_the_credential_into_headers_leaks_nothing_into_signals(
    ctx: RunContext, serve: Any
) -> None:
    """Signals derived from response headers (Warning text, Link URLs, quota policy) hold
    what the provider put there: they are redacted with the reason, in every spelling."""

    async def reflect(request: web.Request) -> web.Response:
        raw = request.raw_path.partition("?")[2]  # key=…, percent-encoded as it was sent
        headers = {
            "Deprecation": "true",
            "Warning": f'299 - "{request.query["key"]} is deprecated"',
            "Link": f'<https://docs.test/migrate?{raw}>; rel="deprecation"',
            "RateLimit": f'"{request.query["key"]}";r=5;t=60',
        }
        return web.json_response({"status": "ok"}, headers=headers)

    app = web.Application()
    app.router.add_get("/", reflect)
    key = "very-secret+key/3"
    auth = {"type": "api_key", "in": "query", "name": "key", "value": key}
    result = await run(ctx, check(await serve(app) + "/", auth))
    assert result.ok and result.headers is None
    assert result.signals["deprecation_message"] == "*** is deprecated"
    assert result.signals["deprecation_links"] == ["https://docs.test/migrate?key=***"]
    assert result.signals["quota_policy"] == "***"


async def test_a_credential_cut_short_in_a_quoted_value_leaves_no_part_visible(
    ctx: RunContext, serve: Any
) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"detail": "x" * 70 + request.headers["X-Api-Key"]})

    app = web.Application()
    app.router.add_get("/", echo)
    auth = {"type": "api_key", "name": "X-Api-Key", "value": "very-secret-key-4"}
    url = await serve(app) + "/"
    expect = {"json": {"$.detail": "ok"}}
    target = HttpCheck.model_validate(
        {"name": "t", "request": {"url": url}, "auth": auth, "expect": expect}
    )
    result = await run(ctx, target)
    # The value is shown cut at 80 characters, inside the key: its front is masked all the same.
    assert result.reason == f'$.detail is "{"x" * 70}***..., expected "ok"'
