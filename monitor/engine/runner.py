"""Runs one check: under the concurrency caps, inside its timeout, never raising."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp

from checks.base import CheckConfig, Result, RunContext
from monitor.core.redact import Redactor
from monitor.core.units import format_duration

log = logging.getLogger(__name__)


def make_session(concurrency: int) -> aiohttp.ClientSession:
    """One pooled session for every check: keep-alive is cheaper for us and for providers."""
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300)
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
        try:
            async with asyncio.timeout(check.timeout):
                result = await check.run(self.ctx)
        except TimeoutError:
            result = Result.failure(
                "timeout", f"no complete answer within {format_duration(check.timeout)}"
            )
        except Exception as exc:
            # A bug in a check type must not take the daemon or other checks down.
            log.exception("check %s raised; recorded as an internal error", check.name)
            result = Result.failure("internal", f"intmon error: {type(exc).__name__}: {exc}")
        if result.latency is None:
            result.latency = time.perf_counter() - start
        if not result.started_at:
            result.started_at = started_at
        result.reason = self.ctx.redactor(result.reason)
        if result.signals:
            # Flow steps carry their own reasons; anything stored or shown goes through here.
            result.signals = _redact_strings(result.signals, self.ctx.redactor)
        return result


def _redact_strings(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_strings(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item, redact) for item in value]
    return value
