"""Issue 3 acceptance: the daemon against a local API serving each case, judged by what intmon
exports (/metrics, /api/status, the database) against what the API actually served.

Every expected figure comes from the sandbox's log of what it answered (`Hit`), from the
query string the test sent it, or from the certificate it presented; none is assumed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.engine.scheduler import phase_of
from monitor.metrics import Metrics
from monitor.sandbox import build_sandbox
from monitor.sandbox.basic import ENVELOPES
from monitor.sandbox.common import COUNTERS
from monitor.sandbox.signals import HITS, MIGRATION_URL, Hit
from monitor.storage.store import DeprecationRow, RunRecord, Store
from monitor.web.server import build_app
from tests.conftest import start_app
from tests.tls import make_pki

DAY = 86400.0
FAST = "50ms"  # check interval: short, so each test sees many runs in well under a second
WINDOWS = {"error_rate": {"window": "5s"}, "latency_p95": {"window": "5s"}}


# -- harness ---------------------------------------------------------------------------------


@dataclass
class Api:
    """The sandbox API, served for real, with its log of what it answered."""

    url: str
    app: web.Application

    def hits(self, path: str) -> list[Hit]:
        return [hit for hit in self.app[HITS] if hit.path == path]

    def count(self, key: str) -> int:
        return self.app[COUNTERS].get(key, 0)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    app = build_sandbox()
    runner, url = await start_app(app)
    yield Api(url, app)
    await runner.cleanup()


class Scrape:
    """One /metrics scrape, parsed by the Prometheus client's own text parser."""

    def __init__(self, text: str) -> None:
        self.samples = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float | None:
        for sample in self.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
        return None


class Intmon:
    """A daemon in-process with its HTTP surface, on a real SQLite file."""

    def __init__(self, db_path: Path, checks: list[dict[str, Any]], **settings: Any) -> None:
        # JSON is YAML: the config goes through the same loader a config file does.
        monitor = {"database": str(db_path), **settings}
        text = json.dumps({"monitor": monitor, "checks": checks})
        self.config = parse_config(text, env={})
        self.daemon = Daemon(
            self.config, Store(self.config.monitor.database_url), Metrics(), SystemClock()
        )
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._running = False

    async def start(self) -> None:
        self._runner, self.url = await start_app(build_app(self.daemon))
        await self.daemon.start()
        self._running = True

    async def stop(self) -> None:
        """Stop scheduling and let in-flight runs finish: after this, every request the API
        answered has been recorded, so served and exported figures can be compared exactly.
        The HTTP surface stays up until `close`."""
        if self._running:
            self._running = False
            await self.daemon.stop(grace=2.0)

    async def close(self) -> None:
        await self.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def metrics(self) -> Scrape:
        async with aiohttp.ClientSession() as client, client.get(self.url + "/metrics") as r:
            return Scrape(await r.text())

    async def status(self) -> dict[str, dict[str, Any]]:
        async with aiohttp.ClientSession() as client, client.get(self.url + "/api/status") as r:
            return {check["name"]: check for check in (await r.json())["checks"]}

    def runs(self) -> dict[str, list[RunRecord]]:
        """Every stored run per check, from a fresh connection to the database file."""
        store = Store(self.config.monitor.database_url)
        store.open()
        try:
            return {name: store.runs_since(name, 0.0) for name in self.daemon.checks}
        finally:
            store.close()


@pytest.fixture
async def intmon(db_path: Path) -> AsyncIterator[Callable[..., Intmon]]:
    """Build daemons over the test's database; all are stopped and closed afterwards."""
    made: list[Intmon] = []

    def _make(checks: list[dict[str, Any]], **settings: Any) -> Intmon:
        made.append(Intmon(db_path, checks, **settings))
        return made[-1]

    yield _make
    for daemon in made:
        await daemon.close()


def http_check(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "interval": FAST, "alerts": WINDOWS, "request": {"url": url}, **fields}


async def until(condition: Callable[[], bool], what: str, within: float = 3.0) -> None:
    """Poll until `condition` holds: waits exactly as long as the daemon needs, no longer."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


# -- 1. error rate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "fail"),
    [pytest.param(4, 1, id="1-in-4"), pytest.param(5, 2, id="2-in-5")],
)
async def test_the_exported_error_rate_is_the_served_failure_ratio(
    api: Api, intmon: Callable[..., Intmon], every: int, fail: int
) -> None:
    query = f"every={every}&fail={fail}"
    daemon = intmon([http_check("flaky", f"{api.url}/flaky?{query}")])
    await daemon.start()
    await until(lambda: api.count(f"flaky:{query}") >= 2 * every, f"{2 * every} requests")
    await daemon.stop()

    served = api.count(f"flaky:{query}")
    # /flaky fails the first `fail` of every `every` requests it serves.
    served_failures = sum((k - 1) % every < fail for k in range(1, served + 1))
    served_ratio = served_failures / served
    assert abs(served_ratio - fail / every) <= 0.05  # enough runs for the ratio to show
    exported = (await daemon.metrics()).value("intmon_error_rate", check="flaky")
    assert exported is not None
    assert abs(exported - served_ratio) <= 0.03, (exported, served_ratio)
    status = (await daemon.status())["flaky"]["metrics"]
    assert status["error_rate"] == exported
    assert status["error_rate_runs"] == served
    stored = daemon.runs()["flaky"]
    assert sum(not row.ok for row in stored) == served_failures


# -- 2. p95 latency --------------------------------------------------------------------------


# Loopback adds 2-8 ms per request here, so delays much shorter than these would measure the
# test machine rather than intmon.
@pytest.mark.parametrize("delay", [0.2, 0.3], ids=["200ms", "300ms"])
async def test_the_exported_p95_is_within_ten_percent_of_the_served_delay(
    api: Api, intmon: Callable[..., Intmon], delay: float
) -> None:
    daemon = intmon([http_check("slow", f"{api.url}/slow?delay={delay}")])
    await daemon.start()
    await until(lambda: daemon.daemon.states["slow"].runs >= 4, "4 runs")
    await daemon.stop()

    p95 = (await daemon.metrics()).value("intmon_latency_p95_seconds", check="slow")
    assert p95 is not None
    assert delay <= p95 <= delay * 1.1, (p95, delay)
    assert (await daemon.status())["slow"]["metrics"]["latency_p95"] == p95


# -- 3. 429s ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("after=0.1&times=3", id="with-retry-after"),
        pytest.param("times=3", id="without-retry-after-backoff"),
    ],
)
async def test_every_429_served_is_counted_exactly_once(
    api: Api, intmon: Callable[..., Intmon], query: str
) -> None:
    path = f"/retry-after?{query}"
    daemon = intmon([http_check("limited", api.url + path)])
    await daemon.start()
    # Until the API served all its 429s and then a 200: the check got through its pauses.
    await until(lambda: [h.status for h in api.hits(path)][-1:] == [200], "a 200 after the 429s")
    await daemon.stop()

    served_429s = sum(hit.status == 429 for hit in api.hits(path))
    assert served_429s == 3  # the sandbox was asked for three
    async with aiohttp.ClientSession() as client, client.get(api.url + "/served") as r:
        log = await r.json()
    assert sum(h["status"] == 429 for h in log if h["path"] == path) == served_429s
    scrape = await daemon.metrics()
    assert scrape.value("intmon_rate_limited_total", check="limited") == served_429s
    assert scrape.value("intmon_http_responses_total", check="limited", code="429") == served_429s
    stored = daemon.runs()["limited"]
    assert [row.error_class for row in stored if row.status == 429] == ["rate_limited"] * 3
    assert (await daemon.status())["limited"]["metrics"]["rate_limited_15m"] == served_429s


# -- 4. Retry-After and the shared pause -----------------------------------------------------


def windows(hits: list[Hit]) -> list[tuple[float, float]]:
    return [(hit.answered, hit.retry_until) for hit in hits if hit.retry_until is not None]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("after=0.3&times=2", id="delay-seconds"),
        pytest.param("after=0.2&date=1&times=1", id="http-date"),
    ],
)
async def test_no_request_reaches_a_provider_inside_its_retry_after_window(
    api: Api, intmon: Callable[..., Intmon], query: str
) -> None:
    # `payments` shares the provider of `orders`, whose endpoint answers 429s; `elsewhere` is
    # a control on another provider. A request already in flight when a 429 lands cannot be
    # recalled, so the shared check's slots must sit well apart from the limited one's: the
    # scheduler phases are stable per name, and these two are most of an interval apart.
    interval = 0.05
    offset = (phase_of("payments", interval) - phase_of("orders", interval)) % interval
    assert 0.2 * interval < offset < 0.8 * interval
    limited, shared, control = (
        f"/retry-after?{query}&who=orders",
        "/retry-after?times=0&who=payments",
        "/retry-after?times=0&who=elsewhere",
    )
    daemon = intmon(
        [
            http_check("orders", api.url + limited, provider="shop"),
            http_check("payments", api.url + shared, provider="shop"),
            http_check("elsewhere", api.url + control, provider="other"),
        ]
    )
    await daemon.start()

    await until(lambda: windows(api.hits(limited)) != [], "the first 429")
    first_until = windows(api.hits(limited))[0][1]
    await until(
        lambda: daemon.daemon.throttle.reason("provider:shop", time.time()) is not None, "pause"
    )
    paused = await daemon.status()
    for name in ("orders", "payments"):
        throttle = paused[name]["throttle"]
        assert throttle["reason"] == "retry_after"
        # The pause ends no earlier than the window served, and only a moment later.
        assert first_until <= throttle["paused_until"] <= first_until + 0.1
    assert paused["elsewhere"]["throttle"]["reason"] is None

    # Until both shop checks were let through again after the last window.
    await until(lambda: [h.status for h in api.hits(limited)][-1:] == [200], "orders resumed")
    last_until = windows(api.hits(limited))[-1][1]
    await until(lambda: any(h.at > last_until for h in api.hits(shared)), "payments resumed")
    await daemon.stop()

    served_windows = windows(api.hits(limited))
    for start, end in served_windows:
        inside = [
            (hit.path, round(hit.at - start, 3))
            for hit in api.hits(limited) + api.hits(shared)
            if start < hit.at < end
        ]
        assert inside == [], f"requests inside the window [{start}, {end}): {inside}"
    # The control check kept its rhythm through the window: the pause is per provider.
    start, end = served_windows[0]
    assert any(start < hit.at < end for hit in api.hits(control))

    scrape = await daemon.metrics()
    for name in ("orders", "payments"):
        assert (scrape.value("intmon_check_throttled_total", check=name) or 0) >= 1
    assert scrape.value("intmon_check_throttled_total", check="elsewhere") == 0
    after = await daemon.status()
    served_pause = sum(end - start for start, end in served_windows)
    for name in ("orders", "payments"):
        throttled = after[name]["throttle"]["throttled_seconds"]
        # Paused from when the 429 was read, not when it was sent: a few ms less at most.
        assert served_pause - 0.05 <= throttled <= served_pause + 0.01, (throttled, served_pause)


async def test_a_check_queued_for_a_connection_slot_sends_nothing_into_a_pause_announced_meanwhile(
    api: Api, intmon: Callable[..., Intmon]
) -> None:
    # One connection per host: `payments` queues behind the slow 429 of `orders`, then gets
    # the slot the moment that 429 is read, i.e. the moment the pause begins.
    limited = "/retry-after?after=1&times=1&delay=0.1&who=orders"
    shared = "/retry-after?times=0&who=payments"
    daemon = intmon(
        [
            http_check("orders", api.url + limited, provider="shop"),
            http_check("payments", api.url + shared, provider="shop"),
        ],
        per_host_concurrency=1,
    )
    await daemon.start()
    await until(lambda: windows(api.hits(limited)) != [], "the 429")
    start, end = windows(api.hits(limited))[0]
    await until(lambda: time.time() > start + 0.2, "a few of payments' slots")
    await daemon.stop()

    inside = [round(hit.at - start, 3) for hit in api.hits(shared) if start < hit.at < end]
    assert inside == [], f"payments reached the provider {inside} s into its pause"


async def test_a_retry_after_still_running_at_a_restart_is_honoured_by_the_next_daemon(
    api: Api, intmon: Callable[..., Intmon]
) -> None:
    limited = "/retry-after?after=1.5&times=1&who=restart"
    first = intmon([http_check("orders", api.url + limited)])
    await first.start()
    await until(lambda: windows(api.hits(limited)) != [], "the 429")
    await first.stop()
    start, end = windows(api.hits(limited))[0]

    second = intmon([http_check("orders", api.url + limited)])
    await second.start()
    await until(lambda: time.time() > end + 0.2, "the end of the window")
    await second.stop()
    inside = [round(hit.at - start, 3) for hit in api.hits(limited) if start < hit.at < end]
    assert inside == [], f"the restarted daemon sent {inside} s into the pause"
    assert any(hit.at >= end for hit in api.hits(limited)), "it resumes after the window"


async def test_an_exhausted_quota_pauses_the_check_until_the_announced_reset(
    api: Api, intmon: Callable[..., Intmon]
) -> None:
    path = "/quota/x-ratelimit-delta?remaining=0&limit=5&reset=0.25"
    daemon = intmon([http_check("spent", api.url + path)])
    await daemon.start()
    await until(lambda: len(api.hits(path)) >= 3, "3 requests")
    await daemon.stop()

    arrivals = [hit.at for hit in api.hits(path)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    reset = api.hits(path)[0].served["reset_in"]
    assert min(gaps) >= reset, gaps
    scrape = await daemon.metrics()
    assert (scrape.value("intmon_check_throttled_total", check="spent") or 0) >= 1
    assert scrape.value("intmon_rate_limited_total", check="spent") == 0  # no 429 spent on it


# -- 5. quota headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "parsed_as", "has_reset"),
    [
        ("x-ratelimit", "x-ratelimit", True),
        ("x-rate-limit", "x-rate-limit", True),
        ("x-ratelimit-ms", "x-ratelimit", True),
        ("x-ratelimit-delta", "x-ratelimit", True),
        ("ietf", "ietf", True),
        ("ietf-legacy", "ietf-legacy", True),
        ("shopify", "shopify", False),
    ],
)
async def test_the_exported_quota_is_the_last_one_served_in_every_dialect(
    api: Api, intmon: Callable[..., Intmon], dialect: str, parsed_as: str, has_reset: bool
) -> None:
    path = f"/quota/{dialect}?remaining=50&limit=120&reset=60&decrement=1"
    daemon = intmon([http_check("quota", api.url + path)])
    await daemon.start()
    await until(lambda: len(api.hits(path)) >= 4, "4 requests")
    await daemon.stop()

    last = api.hits(path)[-1]
    assert last.served["remaining"] < api.hits(path)[0].served["remaining"]  # it moved
    scrape = await daemon.metrics()
    remaining = scrape.value("intmon_ratelimit_remaining", check="quota")
    assert remaining is not None
    assert abs(remaining - last.served["remaining"]) <= 2, (remaining, last.served)
    assert scrape.value("intmon_ratelimit_limit", check="quota") == last.served["limit"]
    quota = (await daemon.status())["quota"]["metrics"]["quota"]
    assert quota["dialect"] == parsed_as
    if has_reset:
        # Epoch seconds, epoch milliseconds and deltas all land on the same instant (the
        # epoch forms are rounded up to the whole second when served).
        assert abs(quota["reset_at"] - (last.at + last.served["reset_in"])) <= 1.0
    else:
        assert quota["reset_at"] is None


# -- 6. Deprecation and Sunset ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "dated"),
    [
        pytest.param("epoch", True, id="rfc9745-at-epoch"),
        pytest.param("true", False, id="legacy-true"),
        pytest.param("date", True, id="legacy-http-date"),
        pytest.param("none", False, id="absent"),
    ],
)
async def test_deprecation_is_flagged_in_every_form_and_only_when_announced(
    api: Api, intmon: Callable[..., Intmon], kind: str, dated: bool
) -> None:
    # No Sunset here: a Sunset alone flags deprecation, which would hide the form under test.
    deprecated_at = int(time.time()) - 30 * 86400
    path = f"/deprecated/{kind}?at={deprecated_at}"
    daemon = intmon([http_check("api", api.url + path)])
    await daemon.start()
    await until(lambda: len(api.hits(path)) >= 1, "a run")
    await daemon.stop()

    announced = "deprecation" in api.hits(path)[-1].served
    scrape = await daemon.metrics()
    assert scrape.value("intmon_deprecated", check="api") == (1.0 if announced else 0.0)
    assert scrape.value("intmon_sunset_timestamp_seconds", check="api") is None
    record = (await daemon.status())["api"]["metrics"].get("deprecation")
    if announced:
        assert record["deprecated_at"] == (deprecated_at if dated else None)
    else:
        assert record is None
    assert kind == "none" or announced  # the sandbox served what this test asked for


async def test_the_sunset_is_exported_exactly_with_days_left_and_the_migration_link(
    api: Api, intmon: Callable[..., Intmon]
) -> None:
    sunset = int(time.time()) + 45 * 86400
    path = f"/deprecated/epoch?sunset={sunset}&link=1"
    daemon = intmon([http_check("api", api.url + path)])
    await daemon.start()
    await until(lambda: len(api.hits(path)) >= 1, "a run")
    await daemon.stop()

    served = api.hits(path)[-1].served
    scrape = await daemon.metrics()
    assert scrape.value("intmon_sunset_timestamp_seconds", check="api") == served["sunset"]
    assert scrape.value("intmon_deprecated", check="api") == 1.0
    record = (await daemon.status())["api"]["metrics"]["deprecation"]
    assert record["sunset_at"] == served["sunset"]
    assert record["links"] == [served["link"]] == [MIGRATION_URL]
    days = (served["sunset"] - time.time()) / DAY
    assert abs(record["days_to_sunset"] - days) <= 0.1


async def test_the_first_sighting_of_a_deprecation_survives_a_restart(
    api: Api, intmon: Callable[..., Intmon]
) -> None:
    sunset = int(time.time()) + 20 * 86400
    path = f"/deprecated/epoch?sunset={sunset}&link=1"
    checks = [http_check("legacy", api.url + path)]
    first = intmon(checks)
    await first.start()
    await until(lambda: len(api.hits(path)) >= 1, "a run")
    await first.stop()
    first_seen = (await first.status())["legacy"]["metrics"]["deprecation"]["first_seen"]
    await first.close()

    second = intmon(checks)
    await second.start()
    restored = (await second.metrics()).value("intmon_sunset_timestamp_seconds", check="legacy")
    seen_before = len(api.hits(path))
    await until(lambda: len(api.hits(path)) > seen_before, "a run after the restart")
    await second.stop()

    record = (await second.status())["legacy"]["metrics"]["deprecation"]
    assert restored == sunset  # known before the restarted daemon asked again
    assert record["first_seen"] == first_seen
    assert record["last_seen"] >= api.hits(path)[seen_before].at > first_seen
    store = Store(second.config.monitor.database_url)
    store.open()
    row: DeprecationRow = store.deprecations()["legacy"]
    store.close()
    assert row.first_seen == first_seen
    assert row.last_seen > first_seen
    assert (row.sunset_at, json.loads(row.links)) == (sunset, [MIGRATION_URL])


# -- 7. errors inside 200s -------------------------------------------------------------------


# Where each envelope the sandbox serves keeps its human-readable part; None: a clean body.
MESSAGES: dict[str, Callable[[Any], str | None]] = {
    "graphql": lambda body: body["errors"][0]["message"],
    "ok-false": lambda body: body["error"],
    "status-0": lambda body: body["message"],
    "error-object": lambda body: body["error"]["message"],
    "clean": lambda body: None,
}


@pytest.mark.parametrize("kind", list(ENVELOPES))
async def test_an_error_envelope_in_a_200_fails_the_check_and_a_clean_body_passes(
    api: Api, intmon: Callable[..., Intmon], kind: str
) -> None:
    daemon = intmon([http_check("envelope", f"{api.url}/envelope/{kind}")])
    await daemon.start()
    await until(lambda: daemon.daemon.states["envelope"].runs >= 2, "2 runs")
    await daemon.stop()

    message = MESSAGES[kind](ENVELOPES[kind])
    last = (await daemon.status())["envelope"]["last"]
    up = (await daemon.metrics()).value("intmon_check_up", check="envelope")
    stored = daemon.runs()["envelope"]
    assert last["status"] == 200
    assert {row.status for row in stored} == {200}
    if message is None:
        assert (last["ok"], last["error_class"], up) == (True, None, 1.0)
        assert all(row.ok for row in stored)
    else:
        assert (last["ok"], last["error_class"], up) == (False, "body_error", 0.0)
        assert message in last["reason"]
        assert {row.error_class for row in stored} == {"body_error"}


# -- 8. TLS ----------------------------------------------------------------------------------


def not_after(certificate: Path) -> float:
    out = subprocess.run(
        ["openssl", "x509", "-enddate", "-noout", "-in", str(certificate)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(ssl.cert_time_to_seconds(out.strip().removeprefix("notAfter=")))


async def test_the_certificate_expiry_of_an_https_target_is_exported(
    tmp_path: Path, intmon: Callable[..., Intmon]
) -> None:
    pki = make_pki(tmp_path)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        check = http_check("secure", f"https://127.0.0.1:{port}/", tls_ca_file=str(pki.ca_file))
        daemon = intmon([check])
        await daemon.start()
        await until(lambda: daemon.daemon.states["secure"].runs >= 1, "a run")
        await daemon.stop()
    finally:
        await runner.cleanup()

    expiry = (await daemon.metrics()).value(
        "intmon_certificate_expiry_timestamp_seconds", check="secure"
    )
    assert expiry == not_after(pki.cert_file)
    status = (await daemon.status())["secure"]
    # It passed, and its certificate is within the certificate rule's warning: degraded.
    assert (status["state"], status["last"]["ok"]) == ("degraded", True)
    assert "certificate warning firing" in status["state_reason"]
    assert abs(status["metrics"]["certificate"]["days_left"] - pki.days) <= 0.1
