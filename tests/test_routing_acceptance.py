"""Routing by cause, end to end: a real daemon on a real SQLite file, a flow whose OAuth token
endpoint fails (`auth`) and an API answering 503 (`http_5xx`), and three `json://` receivers:
one that takes everything, one for credentials and one for the integration's owners."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from monitor.config.loader import parse_config
from monitor.config.settings import Config
from tests.receiver import Receiver
from tests.test_alerting_acceptance import running, titles
from tests.waiting import eventually

ServeFn = Callable[[web.Application], Awaitable[str]]


@dataclass
class Provider:
    """An API whose `payments` sit behind OAuth2 client credentials: the token endpoint answers
    401 while `credentials_broken`; every API answers 503 while `upstream_broken`."""

    credentials_broken: bool = False
    upstream_broken: bool = False
    url: str = ""
    issued: set[str] = field(default_factory=set)

    async def token(self, request: web.Request) -> web.Response:
        if self.credentials_broken:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"token-{len(self.issued)}"
        self.issued.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        )

    async def api(self, request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if request.match_info["name"] == "payments" and bearer not in self.issued:
            return web.json_response({"error": "invalid_token"}, status=401)
        if self.upstream_broken:
            return web.json_response({"error": {"message": "upstream unavailable"}}, status=503)
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth/token", self.token)
        app.router.add_get("/api/{name}", self.api)
        return app


@pytest.fixture
async def provider(serve: ServeFn) -> Provider:
    p = Provider()
    p.url = await serve(p.app())
    return p


@pytest.fixture
async def three() -> AsyncIterator[dict[str, Receiver]]:
    receivers = {name: await Receiver().start() for name in ("everyone", "credentials", "owners")}
    yield receivers
    for receiver in receivers.values():
        await receiver.stop()


def config(db: Path, provider: Provider, receivers: dict[str, Receiver]) -> Config:
    auth = (
        f"{{type: oauth2_client_credentials, token_url: '{provider.url}/oauth/token', "
        "client_id: intmon, client_secret: s3cret-client}"
    )
    common = (
        "interval: 100ms, alerts: {error_rate: {window: 1s, min_runs: 3, resolve_after: 2}}, "
        "notify: [everyone, credentials, owners]"
    )
    text = f"""
monitor: {{database: '{db}'}}
alerting: {{group_wait: 0s}}
notifiers:
  - {{name: everyone, urls: ['{receivers["everyone"].url}']}}
  - {{name: credentials, urls: ['{receivers["credentials"].url}'], error_classes: [auth, tls]}}
  - {{name: owners, urls: ['{receivers["owners"].url}'], error_classes: [http_5xx, timeout]}}
checks:
  - {{name: payments, type: flow, auth: {auth}, {common},
      steps: [{{name: list, request: {{url: '{provider.url}/api/payments'}}}}]}}
  - {{name: orders, request: {{url: '{provider.url}/api/orders'}}, {common}}}
"""
    return parse_config(text, env={})


async def test_each_cause_reaches_its_notifiers_and_the_unfiltered_one_across_a_restart(
    provider: Provider, three: dict[str, Receiver], db_path: Path
) -> None:
    everyone, credentials, owners = three.values()
    provider.credentials_broken = provider.upstream_broken = True
    async with running(config(db_path, provider, three)) as rig:
        await eventually("two pages to everyone", lambda: len(everyone.posts) == 2)
        await eventually("one page to credentials", lambda: len(credentials.posts) == 1)
        await eventually("one page to the owners", lambda: len(owners.posts) == 1)
        # The token endpoint is back and payments now fail with 503: the alert that fired as
        # `auth` stays with those who heard it, and its end goes to them alone.
        provider.credentials_broken = False
        failures = {"check": "payments", "result": "failure"}
        seen = rig.sample("intmon_check_runs_total", **failures)
        await eventually(
            "payments failing with 503",
            lambda: rig.sample("intmon_check_runs_total", **failures) >= seen + 3,
        )
    # A restart between FIRING and RESOLVED: who heard the page is read back from the database.
    provider.upstream_broken = False
    async with running(config(db_path, provider, three)):
        await eventually("two resolutions to everyone", lambda: len(everyone.posts) == 4)
        await eventually("the resolution to credentials", lambda: len(credentials.posts) == 2)
        await eventually("the resolution to the owners", lambda: len(owners.posts) == 2)
    firing = {"FIRING: payments error_rate (critical)", "FIRING: orders error_rate (critical)"}
    resolved = {"RESOLVED: payments error_rate", "RESOLVED: orders error_rate"}
    assert (set(titles(everyone)[:2]), set(titles(everyone)[2:])) == (firing, resolved)
    assert titles(credentials) == [
        "FIRING: payments error_rate (critical)",
        "RESOLVED: payments error_rate",
    ]
    assert credentials.posts[0]["message"].startswith("error rate")
    assert "Last error: auth: " in credentials.posts[0]["message"]
    assert titles(owners) == ["FIRING: orders error_rate (critical)", "RESOLVED: orders error_rate"]
    assert "Last error: http_5xx: " in owners.posts[0]["message"]
