"""OAuth2 access tokens: fetched from a token endpoint, cached per auth config, shared by runs.

A provider's token endpoint is an API too, often with a tighter rate limit than the API itself:
every run asking for a fresh token is how monitors get their client locked out. So tokens are
reused for their lifetime, refreshed at 80% of `expires_in`, and one lock per cache key makes
concurrent runs wait for the single request in flight instead of stampeding the endpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

# Refresh before the provider's expiry so a run never sends a token that dies in flight.
REFRESH_AT = 0.8
# When the endpoint omits `expires_in`, assume an hour (the common default) rather than forever.
DEFAULT_LIFETIME = 3600.0
_MAX_TOKEN_RESPONSE = 64 * 1024


class AuthError(Exception):
    """The token endpoint failed. `reason` may repeat what the endpoint said (and so what it was
    sent): it goes into a result, which the runner redacts.

    A failing target, not a fault of intmon: `checks.http.send` turns it into an `auth`
    Result, so it is deliberately outside `monitor.core.errors.IntmonError`. One that escaped
    a check would be a bug, and the runner records it as `internal` with its traceback logged.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """What a token endpoint answered."""

    access_token: str
    expires_in: float
    refresh_token: str | None = None  # a rotated refresh token, when the provider sends one


@dataclass
class _Entry:
    token: str
    refresh_at: float  # monotonic seconds
    refresh_token: str | None


# Given the refresh token to use (a rotated one, or None for the configured one): a new grant.
Fetch = Callable[[str | None], Awaitable[Grant]]


class TokenCache:
    """Access tokens by cache key. Lives on RunContext for the daemon's lifetime."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.requests = 0  # token endpoint calls made, for tests and the curious

    async def token(
        self, key: str, now: Callable[[], float], fetch: Fetch, rejected: str | None = None
    ) -> str:
        """A valid token for `key`. `rejected` is a token the API just refused with a 401."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is not None:
                # After a 401, another run may already have replaced the refused token.
                usable = entry.token != rejected if rejected else now() < entry.refresh_at
                if usable:
                    return entry.token
            self.requests += 1
            grant = await fetch(entry.refresh_token if entry else None)
            rotated = grant.refresh_token or (entry.refresh_token if entry else None)
            self._entries[key] = _Entry(
                grant.access_token, now() + REFRESH_AT * grant.expires_in, rotated
            )
            return grant.access_token

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


async def request_token(
    session: aiohttp.ClientSession,
    url: str,
    form: dict[str, str],
    headers: dict[str, str],
    user_agent: str,
) -> Grant:
    """POST a token request (RFC 6749 section 4.4 / 6). Raises AuthError with a safe reason."""
    headers = {"User-Agent": user_agent, "Accept": "application/json", **headers}
    try:
        async with session.post(url, data=form, headers=headers) as response:
            raw = await response.content.read(_MAX_TOKEN_RESPONSE)
            status = response.status
    except aiohttp.ClientError as exc:
        raise AuthError(f"token endpoint unreachable: {type(exc).__name__}") from None
    document = _json(raw)
    if not 200 <= status < 300:
        raise AuthError(f"token endpoint answered HTTP {status}{_oauth_error(document)}")
    if not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
        raise AuthError("token endpoint answer has no access_token")
    refresh = document.get("refresh_token")
    return Grant(
        access_token=document["access_token"],
        expires_in=_lifetime(document.get("expires_in")),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
    )


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _oauth_error(document: Any) -> str:
    """RFC 6749 5.2 `error` codes are fixed vocabulary, safe to show; descriptions are cut short."""
    if not isinstance(document, dict) or not isinstance(document.get("error"), str):
        return ""
    text = f": {document['error'][:60]}"
    description = document.get("error_description")
    if isinstance(description, str) and description:
        text += f" ({description[:120]})"
    return text


def _lifetime(value: Any) -> float:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return DEFAULT_LIFETIME
