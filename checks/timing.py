"""A request's phases, timed from aiohttp's tracing hooks, as blackbox_exporter reports them.

Timing `session.request()` from the outside counts the client's own work too: building the
request, waiting for the event loop to come back to this run among hundreds of others. The
hooks fire where aiohttp does each step, so the phases are what the target and the network
took: `dns`, `connect` (TCP connect and, for https, the TLS handshake: aiohttp makes both in
one step), `first_byte` (request sent to response headers parsed) and `total` (dns + connect
+ request sent to body read). A reused keep-alive connection has no dns or connect phase.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import aiohttp


class Timing:
    """One request's timestamps (perf_counter seconds), filled in by the hooks."""

    __slots__ = ("connect", "dns", "headers", "sends", "sent", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.dns = 0.0
        self.connect = 0.0
        self.sent: float | None = None
        self.headers: float | None = None
        self.sends = 0  # one per request on the wire: more than one after a redirect

    def phases(self, end: float) -> dict[str, float]:
        """The phases of a request whose body was read by `end`. After a redirect, only the
        total (from the first request's start) means anything."""
        if self.sends != 1 or self.sent is None:
            return {"total": end - self.started}
        out: dict[str, float] = {}
        if self.dns:
            out["dns"] = self.dns
        if self.connect:
            out["connect"] = self.connect
        if self.headers is not None:
            out["first_byte"] = self.headers - self.sent
        out["total"] = self.dns + self.connect + (end - self.sent)
        return out


def _timing(ctx: SimpleNamespace) -> Timing | None:
    timing = ctx.trace_request_ctx
    return timing if isinstance(timing, Timing) else None  # other requests of the session


def _span(phase: str, edge: float) -> Any:
    """A hook adding `edge` (-1 at the start, +1 at the end) times now to a phase: the two
    hooks of a phase leave its duration, and several connections add up."""

    async def hook(session: Any, ctx: SimpleNamespace, params: Any) -> None:
        if (timing := _timing(ctx)) is not None:
            setattr(timing, phase, getattr(timing, phase) + edge * time.perf_counter())

    return hook


async def _sent(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if (timing := _timing(ctx)) is not None:
        timing.sent = time.perf_counter()
        timing.sends += 1


async def _headers(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if (timing := _timing(ctx)) is not None:
        timing.headers = time.perf_counter()


def trace_config() -> aiohttp.TraceConfig:
    """The hooks, for the session every check shares (`trace_request_ctx=Timing()`)."""
    config: aiohttp.TraceConfig = aiohttp.TraceConfig()
    config.on_dns_resolvehost_start.append(_span("dns", -1.0))
    config.on_dns_resolvehost_end.append(_span("dns", +1.0))
    config.on_connection_create_start.append(_span("connect", -1.0))
    config.on_connection_create_end.append(_span("connect", +1.0))
    config.on_request_headers_sent.append(_sent)
    config.on_request_end.append(_headers)
    config.freeze()
    return config
