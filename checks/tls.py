"""TLS certificate expiry of https targets, read with a separate handshake and cached.

aiohttp hands a small response back after its connection has returned to the pool, so the
certificate is not reachable from the response. One extra handshake per host every few hours
costs the provider nothing and works the same for pooled and fresh connections.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field

import yarl

from monitor.core.clock import Clock

log = logging.getLogger(__name__)
REFRESH = 6 * 3600.0


@dataclass
class CertificateCache:
    refresh: float = REFRESH
    _entries: dict[tuple[str, int], tuple[float, float | None]] = field(default_factory=dict)
    _default: ssl.SSLContext | None = None

    async def not_after(
        self, url: str, context: ssl.SSLContext | bool, clock: Clock
    ) -> float | None:
        """notAfter of the certificate `url` presents, in unix seconds; None if not https or
        verification is off (an unverified peer certificate is not decoded by Python)."""
        # Asked after every http run: plain http must cost nothing, not a URL parse.
        if context is False or url[:8].lower() != "https://":
            return None
        parsed = yarl.URL(url)
        if not parsed.host:
            return None
        key = (parsed.host, parsed.port or 443)
        cached = self._entries.get(key)
        if cached is not None and cached[0] > clock.monotonic():
            return cached[1]
        if not isinstance(context, ssl.SSLContext):
            self._default = self._default or ssl.create_default_context()
            context = self._default
        value = await _handshake(key[0], key[1], context)
        # Cache failures too, so an unreachable host is not probed on every run.
        self._entries[key] = (clock.monotonic() + self.refresh, value)
        return value


async def _handshake(host: str, port: int, context: ssl.SSLContext) -> float | None:
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except (OSError, ssl.SSLError) as exc:
        log.debug("certificate probe of %s:%d failed: %s", host, port, exc)
        return None
    try:
        certificate = writer.get_extra_info("peercert")
    finally:
        writer.close()
    not_after = certificate.get("notAfter") if certificate else None
    return float(ssl.cert_time_to_seconds(not_after)) if isinstance(not_after, str) else None
