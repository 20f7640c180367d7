"""Pages that cannot be turned against their readers, nor leak to the public.

A hostile target answers with `<script>` in its headers and error body and a `javascript:`
deprecation link; a real daemon watches it with users configured, and headless Chromium renders
the operator's pages (behind credentials) and the public page. No script of theirs may run, no
`javascript:` link may exist, the pages must keep their style under the Content-Security-Policy,
and the public page must show neither reasons, URLs, hosts nor request ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.store import Store
from monitor.web.server import build_app
from tests.conftest import start_app
from tests.test_pages_browser import chromium, run_chromium
from tests.test_web_access import OPS_HASH, PASSWORD
from tests.waiting import eventually

MARKER = "zq-marker-7731"
# Run, each would leave a trace in the DOM: a changed title and a new element.
PAYLOAD = (
    "<script>document.title='pwned';"
    "document.body.appendChild(document.createElement('hr')).id='pwned'</script>"
    "<img src=x onerror=\"document.title='pwned'\">"
)


async def hostile(request: web.Request) -> web.Response:
    body = {"error": {"message": f"{MARKER} {PAYLOAD}", "request_id": f"req-{MARKER}"}}
    return web.Response(
        status=503,
        text=json.dumps(body),
        content_type="application/json",
        headers={
            "X-Request-Id": f"req-{MARKER}<script>document.title='pwned'</script>",
            "Deprecation": "@1700000000",
            "Link": "<javascript:document.title='pwned'>; rel=\"deprecation\"",
            "X-Note": PAYLOAD,
        },
    )


@pytest.fixture
async def watched(db_path: Path, sandbox: str) -> AsyncIterator[tuple[Daemon, str]]:
    target, target_url = await start_app(_hostile_app())
    text = f"""
monitor:
  database: '{db_path}'
  web: {{basic_auth_users: {{ops: '{OPS_HASH}'}}}}
status_page: {{title: 'Acme status', public_checks: ['pay-*']}}
defaults: {{interval: 100ms, timeout: 2s}}
checks:
  - {{name: hostile-api, public: true, request: {{url: '{target_url}/secret-path-{MARKER}'}}}}
  - {{name: pay-gateway, request: {{url: '{sandbox}/healthy'}}}}
  - {{name: internal-billing, request: {{url: '{sandbox}/healthy'}}}}
"""
    config = parse_config(text, env={})
    daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
    runner, url = await start_app(build_app(daemon))
    await daemon.start()
    try:
        await eventually("runs of every check", lambda: all(
            daemon.states[n].runs >= 2 for n in daemon.checks), 10.0)  # fmt: skip
        yield daemon, url
    finally:
        await daemon.stop(grace=0.1)
        await runner.cleanup()
        await target.cleanup()


def _hostile_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/{tail:.*}", hostile)
    return app


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://ops:{PASSWORD}@")


async def render(url: str) -> tuple[str, str]:
    """Chromium's DOM after the page ran, and its console log."""
    log: list[str] = []
    dom = await run_chromium(chromium(), "--enable-logging=stderr", "--v=0", "--dump-dom", url,
                             log=log)  # fmt: skip
    return dom.decode(), "\n".join(log)


@pytest.mark.parametrize("path", ["/", "/checks/hostile-api"])
async def test_a_hostile_targets_script_and_javascript_link_never_run(
    watched: tuple[Daemon, str], path: str
) -> None:
    daemon, url = watched
    assert MARKER in (daemon.status().checks[0].state_reason or "") + str(daemon.status())
    dom, log = await render(with_credentials(url) + path)
    assert MARKER in dom  # the operator's page shows the reason, as text
    assert "pwned</title>" not in dom and 'id="pwned"' not in dom
    assert not re.search(r"<title>[^<]*pwned", dom)
    assert not re.search(r"""href\s*=\s*["']?\s*javascript:""", dom, re.IGNORECASE)
    assert not re.search(r"<(script|img)\b", dom, re.IGNORECASE)
    assert "Content Security Policy" not in log, log  # the pages keep their style


async def test_the_public_page_shows_public_checks_and_nothing_of_their_failures(
    watched: tuple[Daemon, str],
) -> None:
    _, url = watched
    dom, log = await render(url + "/status")  # no credentials: it is public
    rows = re.findall(r'<th scope="row">([^<]+)</th>', dom)
    assert sorted(rows) == ["hostile-api", "pay-gateway"]
    assert "internal-billing" not in dom
    for secret in (MARKER, "secret-path", "127.0.0.1", "req-", "pwned", "javascript"):
        assert secret not in dom, secret
    assert "Acme status" in dom and "Down" in dom
    assert "Content Security Policy" not in log, log
