"""Runs one check: under the concurrency caps, inside its timeout, never raising."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import aiohttp

from checks.base import CheckConfig, Result, RunContext
from checks.timing import trace_config
from checks.transport import HttpTransport
from monitor.core.redact import Redactor
from monitor.core.units import format_duration
from monitor.signals.headers import (
    clean_request_id,
    request_id_from_headers,
    signals_from_headers,
)

log = logging.getLogger(__name__)


def make_session(concurrency: int, keep_alive: bool = False) -> aiohttp.ClientSession:
    """A session for every check. Without keep-alive each request makes its own connection
    (and closes it), so a run measures what a client's first request sees: DNS, connect, TLS.
    With it, connections are pooled and reused (`request.keep_alive: true`)."""
    connector = aiohttp.TCPConnector(
        limit=concurrency, ttl_dns_cache=300, force_close=not keep_alive
    )
    return aiohttp.ClientSession(
        connector=connector,
        # The runner owns each check's deadline; a session-wide default would fight it.
        timeout=aiohttp.ClientTimeout(total=None),
        # Checks must not leak cookies into one another.
        cookie_jar=aiohttp.DummyCookieJar(),
        # With trust_env, aiohttp reads the proxy environment and ~/.netrc in a worker thread
        # on every request: most of a check's cost. Only pay for it when a proxy is set.
        # (NO_PROXY alone, common on corporate machines, is not a proxy.)
        trust_env=any(scheme != "no" for scheme in urllib.request.getproxies()),
        # Each request's phases, timed where aiohttp does them (checks/timing.py).
        trace_configs=[trace_config()],
    )


class Runner:
    def __init__(self, ctx: RunContext, concurrency: int, per_host: int) -> None:
        self.ctx = ctx
        self._global = asyncio.Semaphore(concurrency)
        self._per_host = per_host
        self._hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self._per_host)
        )

    async def execute(
        self, check: CheckConfig, may_send: Callable[[], bool] = lambda: True
    ) -> Result | None:
        """Run `check` once. None if `may_send` refused once the slots were ours."""
        host = check.host_key()
        async with self._global:
            if host is None:
                return await self._timed(check, may_send)
            # Waiting for a slot on a busy host is not the provider's latency: the timeout
            # and the clock start once the slot is ours.
            async with self._hosts[host]:
                return await self._timed(check, may_send)

    async def _timed(self, check: CheckConfig, may_send: Callable[[], bool]) -> Result | None:
        # Asked again here, not only before queueing: while this run waited for a slot, another
        # run on the same provider may have been told to back off.
        if not may_send():
            return None
        started_at = self.ctx.clock.time()
        start = time.perf_counter()
        ctx = self.ctx.for_run()
        try:
            async with asyncio.timeout(check.timeout):
                result = await check.run(ctx)
        except TimeoutError:
            result = Result.failure(
                "timeout", f"no complete answer within {format_duration(check.timeout)}"
            )
        except Exception as exc:
            # A bug in a check type must not take the daemon or other checks down.
            trace = self.ctx.redactor(traceback.format_exc(), ctx.secrets)
            log.error("check %s raised; recorded as an internal error\n%s", check.name, trace)
            result = Result.failure("internal", f"intmon error: {type(exc).__name__}: {exc}")
        if result.latency is None:
            result.latency = time.perf_counter() - start
        if not result.started_at:
            result.started_at = started_at
        id_headers = check.request_id_headers if isinstance(check, HttpTransport) else None
        return seal(result, self.ctx.clock.time(), self.ctx.redactor, ctx.secrets, id_headers)


def seal(
    result: Result,
    now: float,
    redactor: Redactor,
    secrets: Iterable[str],
    request_id_headers: Sequence[str] | None = None,
) -> Result:
    """The one choke point between a check and everything that stores or shows its result.

    Signals and the request id are derived from the response headers first, so that what a
    provider reflected into a header (a key in a Warning, a Link, a request id) is redacted
    with the rest; the headers are then dropped. A header's request id wins over one an error
    envelope carried; a failure quotes it in its reason, so every message that quotes the
    reason carries it. `secrets` are the run's own (credentials sent, tokens obtained), masked
    with the config's in every spelling (see monitor.core.redact).
    """
    result.signals.update(signals_from_headers(result.headers, now))
    request_id = request_id_from_headers(result.headers, request_id_headers) or result.request_id
    result.headers = None
    if request_id is not None:  # a provider may echo a credential into its request id
        request_id = redactor(clean_request_id(request_id), secrets)
        if not result.ok:
            result.reason = f"{result.reason} (request id {request_id})"
    result.request_id = request_id
    result.reason = redactor(result.reason, secrets)
    result.signals = redactor.value(result.signals, secrets)
    if result.shape is not None:  # a key name may be a credential the provider echoed
        result.shape = result.shape.renamed(lambda paths: redactor(paths, secrets))
    return result
