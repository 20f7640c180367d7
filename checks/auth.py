"""`auth:` for http, flow and graphql checks and freshness http sources: static credentials
and OAuth2 tokens.

Credentials become headers or query parameters at send time, never part of the request config,
so `describe_target`, results and stored rows never see them. Every secret value an auth config
holds (and every token it obtains) is a secret of the run that sent it: `checks.http.send` adds
them to `RunContext.secrets`, and the runner masks them in everything the result holds.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from checks.tokens import AuthError, Grant, request_token
from monitor.core.model import Model
from monitor.core.units import HttpUrlText

if TYPE_CHECKING:
    from checks.base import RunContext


class BearerAuth(Model):
    type: Literal["bearer"]
    token: str = Field(min_length=1)


class BasicAuth(Model):
    type: Literal["basic"]
    username: str
    password: str


class ApiKeyAuth(Model):
    type: Literal["api_key"]
    in_: Literal["header", "query"] = Field(default="header", alias="in")
    name: str = Field(min_length=1)
    value: str = Field(min_length=1)


class ClientCredentialsAuth(Model):
    type: Literal["oauth2_client_credentials"]
    token_url: HttpUrlText
    client_id: str
    client_secret: str
    scope: str | None = None
    audience: str | None = None  # Auth0 and others want the API identifier here
    # RFC 6749 lets providers take the client credentials in the form or as HTTP Basic.
    client_auth: Literal["body", "basic"] = "body"


class RefreshTokenAuth(Model):
    type: Literal["oauth2_refresh_token"]
    token_url: HttpUrlText
    client_id: str
    client_secret: str | None = None  # public clients have none
    refresh_token: str = Field(min_length=1)
    scope: str | None = None
    client_auth: Literal["body", "basic"] = "body"


OAuth2 = ClientCredentialsAuth | RefreshTokenAuth
AuthConfig = Annotated[
    BearerAuth | BasicAuth | ApiKeyAuth | ClientCredentialsAuth | RefreshTokenAuth,
    Field(discriminator="type"),
]


@dataclass(frozen=True)
class Credentials:
    """What one request carries: headers, query parameters, and the secrets to redact."""

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    token: str | None = None  # an OAuth2 access token, which a 401 may invalidate
    secrets: tuple[str, ...] = ()


NO_CREDENTIALS = Credentials()


async def authorize(
    ctx: RunContext,
    auth: BearerAuth | BasicAuth | ApiKeyAuth | OAuth2 | None,
    rejected: str | None = None,
) -> Credentials:
    """Credentials for one request. Raises AuthError when no token can be had."""
    if auth is None:
        return NO_CREDENTIALS
    secrets = secrets_of(auth)
    if isinstance(auth, BearerAuth):
        return Credentials({"Authorization": f"Bearer {auth.token}"}, secrets=secrets)
    if isinstance(auth, BasicAuth):
        value = basic_authorization(auth.username, auth.password)
        return Credentials({"Authorization": value}, secrets=(*secrets, value.split()[-1]))
    if isinstance(auth, ApiKeyAuth):
        if auth.in_ == "query":
            return Credentials(params={auth.name: auth.value}, secrets=secrets)
        return Credentials({auth.name: auth.value}, secrets=secrets)

    async def fetch(rotated: str | None) -> Grant:
        if rotated is not None:
            ctx.secrets.add(rotated)  # a token endpoint's error may repeat what it was sent
        form, headers = token_form(auth, rotated)
        return await request_token(ctx.session, auth.token_url, form, headers, ctx.user_agent)

    token = await ctx.tokens.token(cache_key(auth), ctx.clock.monotonic, fetch, rejected)
    return Credentials({"Authorization": f"Bearer {token}"}, token=token, secrets=(*secrets, token))


def token_form(auth: OAuth2, rotated: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """The token request's form and headers (client credentials go in one or the other)."""
    if isinstance(auth, ClientCredentialsAuth):
        form = {"grant_type": "client_credentials"}
        form |= {k: v for k, v in (("scope", auth.scope), ("audience", auth.audience)) if v}
    else:
        form = {"grant_type": "refresh_token", "refresh_token": rotated or auth.refresh_token}
        form |= {"scope": auth.scope} if auth.scope else {}
    if auth.client_auth == "basic":
        return form, {
            "Authorization": basic_authorization(auth.client_id, auth.client_secret or "")
        }
    form["client_id"] = auth.client_id
    if auth.client_secret:
        form["client_secret"] = auth.client_secret
    return form, {}


def basic_authorization(username: str, password: str) -> str:
    # Built by hand: aiohttp.BasicAuth is deprecated, its replacement is only in aiohttp >= 3.14.
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


# Asked on every run of an OAuth2 check: serialising and hashing the config each time would
# cost more than the token lookup. Configs are frozen (hashable); a reload makes new ones.
@functools.lru_cache(maxsize=1024)
def cache_key(auth: OAuth2) -> str:
    """Identical auth configs share one token, whichever checks use them."""
    return hashlib.sha256(auth.model_dump_json().encode()).hexdigest()


def secrets_of(auth: BearerAuth | BasicAuth | ApiKeyAuth | OAuth2) -> tuple[str, ...]:
    if isinstance(auth, BearerAuth):
        return (auth.token,)
    if isinstance(auth, BasicAuth):
        return (auth.password,)
    if isinstance(auth, ApiKeyAuth):
        return (auth.value,)
    if isinstance(auth, RefreshTokenAuth):
        return tuple(s for s in (auth.client_secret, auth.refresh_token) if s)
    return (auth.client_secret,)


__all__ = ["AuthConfig", "AuthError", "Credentials", "authorize"]
