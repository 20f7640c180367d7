"""`type: http`: one request, judged by `expect`.

Also `send`, the one request path (auth, idempotency keys, one retry with a fresh token) of
every check type that speaks HTTP: flow steps, graphql queries and freshness http sources.
"""

from __future__ import annotations

import functools
import json
import ssl
import time
import uuid
from typing import Any, Literal

import aiohttp
import yarl
from pydantic import Field, field_validator, model_validator

from checks.assertions import Expect, check_response, envelope_request_id, is_json_type
from checks.auth import AuthConfig, AuthError, Credentials, authorize, secrets_of
from checks.base import CheckConfig, Result, RunContext
from checks.timing import Timing
from checks.transport import HttpTransport
from monitor.core.jsonshape import Shape, shape_of
from monitor.core.model import Model
from monitor.core.units import HttpUrlText

METHODS = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_READ_CHUNK = 64 * 1024


class RequestSpec(Model):
    method: METHODS = "GET"
    url: HttpUrlText
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    # A fresh UUID Idempotency-Key per run, reused across that run's retries, so a retried
    # create cannot create twice.
    idempotency_key: bool = False
    # Reuse a pooled connection: cheaper for intmon and the provider, but the run then no
    # longer measures DNS, connect and TLS, which a client's first request pays.
    keep_alive: bool = False

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_body(self) -> RequestSpec:
        if self.json_ is not None and self.body is not None:
            raise ValueError("give either json or body, not both")
        return self

    @functools.cached_property  # asked on every run (per-host cap); the URL never changes
    def host(self) -> str:
        return yarl.URL(self.url).host or ""


class HttpCheck(HttpTransport, CheckConfig):
    type: Literal["http"] = "http"
    request: RequestSpec
    expect: Expect = Field(default_factory=Expect)
    # A CA bundle for providers behind a private CA (verification stays on).
    tls_ca_file: str | None = None
    auth: AuthConfig | None = None

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=value)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load CA bundle {value!r}: {exc}") from None
        return value

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.tls_verify and self.tls_ca_file:
            return ssl.create_default_context(cafile=self.tls_ca_file)
        return self.tls_verify

    def host_key(self) -> str | None:
        return self.request.host

    def describe_target(self) -> str:
        url = yarl.URL(self.request.url)
        return f"{self.request.method} {url.with_query(None).with_user(None)}"

    def degraded_after(self) -> float | None:
        return self.expect.degraded_latency

    async def run(self, ctx: RunContext) -> Result:
        result, _ = await send(ctx, self.request, self.expect, self, self.auth)
        return result


async def send(
    ctx: RunContext,
    request: RequestSpec,
    expect: Expect,
    transport: HttpTransport,
    auth: AuthConfig | None = None,
) -> tuple[Result, bytes]:
    """`exchange` with auth and idempotency: one run of one request, as a client would send it.

    A 401 with an OAuth2 token gets a fresh token and exactly one retry, carrying the same
    Idempotency-Key. Token endpoint failures are `auth` results. Every credential sent goes
    into `ctx.secrets`, so the runner masks it wherever the result repeats it.
    """
    extra: dict[str, str] = {}
    if request.idempotency_key:
        extra["Idempotency-Key"] = str(uuid.uuid4())
    if auth is not None:
        ctx.secrets.update(secrets_of(auth))
    try:
        credentials = await authorize(ctx, auth)
        ctx.secrets.update(credentials.secrets)
        result, body = await _authorized(ctx, request, expect, transport, extra, credentials)
        if result.status == 401 and credentials.token is not None:
            credentials = await authorize(ctx, auth, rejected=credentials.token)
            ctx.secrets.update(credentials.secrets)
            result, body = await _authorized(ctx, request, expect, transport, extra, credentials)
    except AuthError as exc:
        return Result.failure("auth", exc.reason, started_at=ctx.clock.time()), b""
    if "Idempotency-Key" in extra:
        result.signals["idempotency_key"] = extra["Idempotency-Key"]
    return result, body


async def _authorized(
    ctx: RunContext,
    request: RequestSpec,
    expect: Expect,
    transport: HttpTransport,
    extra: dict[str, str],
    credentials: Credentials,
) -> tuple[Result, bytes]:
    if credentials.params:
        request = request.model_copy(update={"params": {**request.params, **credentials.params}})
    return await exchange(ctx, request, expect, transport, {**extra, **credentials.headers})


async def exchange(
    ctx: RunContext,
    request: RequestSpec,
    expect: Expect,
    transport: HttpTransport,
    extra_headers: dict[str, str] | None = None,
) -> tuple[Result, bytes]:
    """Send one request and judge it; also the (capped) body, for callers that extract from it.

    Timeouts propagate: the runner owns the deadline."""
    headers = {"User-Agent": ctx.user_agent, **request.headers, **(extra_headers or {})}
    started_at = ctx.clock.time()
    timing = Timing()
    session = ctx.kept_alive if request.keep_alive and ctx.kept_alive else ctx.session
    try:
        async with session.request(
            request.method,
            request.url,
            headers=headers,
            params=request.params or None,
            json=request.json_,
            data=request.body,
            allow_redirects=transport.max_redirects > 0,
            max_redirects=max(transport.max_redirects, 1),
            ssl=transport.ssl_context,
            trace_request_ctx=timing,
        ) as response:
            body, truncated = await read_capped(response, transport.max_body)
            phases = timing.phases(time.perf_counter())
            latency = phases["total"]
    except TimeoutError:
        raise
    except aiohttp.ClientError as exc:
        error_class, reason = classify_client_error(exc, transport.max_redirects)
        latency = time.perf_counter() - timing.started
        return Result.failure(error_class, reason, latency=latency, started_at=started_at), b""
    not_after = await ctx.certificates.not_after(request.url, transport.ssl_context, ctx.clock)
    documents: list[Any] = []
    failure = check_response(
        expect,
        status=response.status,
        headers=response.headers,
        body=body,
        truncated=truncated,
        latency=latency,
        cap=transport.max_body,
        parsed=documents.append,
    )
    # A header id, if any, wins in the runner (seal), which reads the headers.
    envelope_id = None
    if failure is not None and body:
        envelope_id = envelope_request_id(body, response.headers.get("Content-Type", ""))
    return Result(
        ok=failure is None,
        error_class=failure.error_class if failure else None,
        reason=failure.reason if failure else f"HTTP {response.status}",
        status=response.status,
        latency=latency,
        started_at=started_at,
        headers=response.headers,
        tls_not_after=not_after,
        request_id=envelope_id,
        phases=phases,
        shape=_body_shape(response.status, response.headers, body, truncated, documents),
    ), body


def _body_shape(
    status: int, headers: Any, body: bytes, truncated: bool, documents: list[Any]
) -> Shape | None:
    """The shape of a complete 2xx JSON body (by Content-Type), for schema drift. The body was
    parsed for the assertions unless no rule read it (or one failed before)."""
    if not 200 <= status < 300 or truncated or not is_json_type(headers.get("Content-Type", "")):
        return None
    if not documents:
        try:
            documents.append(json.loads(body))
        except ValueError:
            return None  # the assertions (if any) say what is wrong with it
    return shape_of(documents[0])


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """Read at most `cap` bytes; a 100 MB body is never buffered. Returns (body, truncated)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(_READ_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            # Unread bytes would poison a pooled connection: drop it.
            response.close()
            return b"".join(chunks)[:cap], True
    return b"".join(chunks), False


def classify_client_error(exc: aiohttp.ClientError, max_redirects: int) -> tuple[str, str]:
    if isinstance(exc, aiohttp.TooManyRedirects):
        if _loops(exc.history):
            return "invalid_response", f"redirect loop: more than {max_redirects} redirects"
        return "invalid_response", f"more than {max_redirects} redirects"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "tls", f"certificate: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "tls", f"TLS: {_first_line(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect", f"cannot connect to {exc.host}:{exc.port}: {exc.strerror or exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connect", "server disconnected before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "invalid_response", f"broken body: {_first_line(exc)}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "invalid_response", f"malformed HTTP response: {exc.message[:160]}"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid_response", f"invalid URL: {exc}"
    return "connect", f"{type(exc).__name__}: {_first_line(exc)}"


def _loops(history: tuple[aiohttp.ClientResponse, ...]) -> bool:
    """Whether the redirects came back to a URL already visited: only that is a loop; a chain
    that is merely longer than `max_redirects` is not."""
    seen = [response.url for response in history]
    if history:
        location = history[-1].headers.get("Location")
        if location is not None:
            seen.append(history[-1].url.join(yarl.URL(location)))
    return len(set(seen)) < len(seen)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
