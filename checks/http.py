"""`type: http`: one request, judged by `expect`."""

from __future__ import annotations

import ssl
import time
from typing import Any, Literal

import aiohttp
import yarl
from pydantic import Field, field_validator, model_validator

from checks.assertions import Expect, check_response
from checks.base import CheckConfig, Model, Result, RunContext
from monitor.units import Size

METHODS = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_READ_CHUNK = 64 * 1024


class RequestSpec(Model):
    method: METHODS = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    body: str | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        url = yarl.URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> RequestSpec:
        if self.json_ is not None and self.body is not None:
            raise ValueError("give either json or body, not both")
        return self

    @property
    def host(self) -> str:
        return yarl.URL(self.url).host or ""


class HttpCheck(CheckConfig):
    type: Literal["http"] = "http"
    request: RequestSpec
    expect: Expect = Field(default_factory=Expect)
    max_redirects: int = Field(default=5, ge=0, le=30)
    max_body: Size = 1024 * 1024
    tls_verify: bool = True

    def host_key(self) -> str | None:
        return self.request.host

    def describe_target(self) -> str:
        url = yarl.URL(self.request.url)
        return f"{self.request.method} {url.with_query(None).with_user(None)}"

    async def run(self, ctx: RunContext) -> Result:
        return await perform(ctx, self.request, self.expect, self)


async def perform(
    ctx: RunContext,
    request: RequestSpec,
    expect: Expect,
    check: HttpCheck,
    extra_headers: dict[str, str] | None = None,
) -> Result:
    """Send one request and judge it. Timeouts propagate: the runner owns the deadline."""
    headers = {"User-Agent": ctx.user_agent, **request.headers, **(extra_headers or {})}
    started_at = ctx.clock.time()
    start = time.perf_counter()
    try:
        async with ctx.session.request(
            request.method,
            request.url,
            headers=headers,
            params=request.params or None,
            json=request.json_,
            data=request.body,
            allow_redirects=check.max_redirects > 0,
            max_redirects=max(check.max_redirects, 1),
            ssl=check.tls_verify,
        ) as response:
            not_after = peer_certificate_expiry(response)
            body, truncated = await read_capped(response, check.max_body)
            latency = time.perf_counter() - start
    except TimeoutError:
        raise
    except aiohttp.ClientError as exc:
        error_class, reason = classify_client_error(exc, check.max_redirects)
        return Result.failure(
            error_class, reason, latency=time.perf_counter() - start, started_at=started_at
        )
    failure = check_response(
        expect,
        status=response.status,
        headers=response.headers,
        body=body,
        truncated=truncated,
        latency=latency,
        cap=check.max_body,
    )
    return Result(
        ok=failure is None,
        error_class=failure.error_class if failure else None,
        reason=failure.reason if failure else f"HTTP {response.status}",
        status=response.status,
        latency=latency,
        started_at=started_at,
        headers=response.headers,
        tls_not_after=not_after,
    )


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


def peer_certificate_expiry(response: aiohttp.ClientResponse) -> float | None:
    connection = response.connection
    transport = connection.transport if connection is not None else None
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    certificate = ssl_object.getpeercert()
    not_after = certificate.get("notAfter") if certificate else None
    return float(ssl.cert_time_to_seconds(not_after)) if isinstance(not_after, str) else None


def classify_client_error(exc: aiohttp.ClientError, max_redirects: int) -> tuple[str, str]:
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "invalid_response", f"redirect loop: more than {max_redirects} redirects"
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
