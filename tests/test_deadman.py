"""The dead-man's switch against a real in-process receiver, on a clock the test controls."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from monitor.config.loader import parse_config
from monitor.core.clock import FakeClock
from monitor.core.errors import ConfigError
from monitor.metrics import Metrics
from monitor.ops.deadman import DeadMansSwitch
from tests.waiting import eventually

TOKEN = "5f3c1e0e-secret-ping-token"
Serve = Callable[[web.Application], Awaitable[str]]


@dataclass
class Receiver:
    """A healthchecks.io stand-in: records when each ping arrived, answers `status`."""

    clock: FakeClock
    status: int = 200
    hang: bool = False
    hits: list[float] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"/ping/{TOKEN}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(self.clock.monotonic())
        if self.hang:
            await asyncio.Event().wait()
        return web.Response(status=self.status, text="OK")


@pytest.fixture
async def receiver(serve: Serve, clock: FakeClock) -> tuple[Receiver, str]:
    rec = Receiver(clock)
    base = await serve(rec.app())
    return rec, f"{base}/ping/{TOKEN}"


async def test_it_pings_at_once_and_then_every_interval(
    receiver: tuple[Receiver, str], session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    rec, url = receiver
    results: list[str] = []
    switch = DeadMansSwitch(url, 60.0, session, clock, on_attempt=results.append)
    start = clock.monotonic()
    task = asyncio.create_task(switch.run())
    await eventually("three results", lambda: len(results) >= 3, poll=0)
    task.cancel()
    assert rec.hits[:3] == [start, start + 60.0, start + 120.0]
    assert results[:3] == ["success"] * 3


async def test_a_failing_receiver_is_counted_and_logged_without_the_url(
    receiver: tuple[Receiver, str],
    session: aiohttp.ClientSession,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec, url = receiver
    metrics = Metrics()
    switch = DeadMansSwitch(
        url, 60.0, session, clock, on_attempt=lambda r: metrics.heartbeat_pings.labels(r).inc()
    )
    rec.status = 503
    with caplog.at_level(logging.INFO, logger="monitor.ops.deadman"):
        assert not await switch.ping()
        rec.status = 200
        assert await switch.ping()
    assert [r.getMessage() for r in caplog.records] == [
        "dead-man's switch ping failed: HTTP 503",
        "dead-man's switch ping works again",
    ]
    exposition = metrics.registry.exposition().decode()
    assert 'intmon_heartbeat_pings_total{result="failure"} 1\n' in exposition
    assert 'intmon_heartbeat_pings_total{result="success"} 1\n' in exposition


async def test_an_unreachable_receiver_never_raises_and_never_logs_the_url(
    session: aiohttp.ClientSession, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ping/{TOKEN}"
    results: list[str] = []
    switch = DeadMansSwitch(url, 60.0, session, clock, on_attempt=results.append)
    with caplog.at_level(logging.DEBUG):
        assert not await switch.ping()
    assert results == ["failure"]
    assert "dead-man's switch ping failed: ClientConnectorError" in caplog.text
    assert TOKEN not in caplog.text
    assert str(port) not in caplog.text
    assert TOKEN not in repr(switch)


async def test_a_receiver_that_does_not_answer_times_out(
    receiver: tuple[Receiver, str],
    session: aiohttp.ClientSession,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec, url = receiver
    rec.hang = True
    results: list[str] = []
    switch = DeadMansSwitch(url, 60.0, session, clock, on_attempt=results.append, timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="monitor.ops.deadman"):
        assert not await switch.ping()
    assert results == ["failure"]
    assert caplog.messages == ["dead-man's switch ping failed: no answer within 0.05s"]


async def test_an_unhealthy_daemon_lets_the_switch_trip(
    receiver: tuple[Receiver, str], session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    rec, url = receiver
    results: list[str] = []
    switch = DeadMansSwitch(url, 60.0, session, clock, results.append, healthy=lambda: False)
    start = clock.monotonic()
    task = asyncio.create_task(switch.run())
    await eventually(
        "five intervals", lambda: clock.monotonic() >= start + 300, poll=0
    )  # five intervals went by ...
    task.cancel()
    assert rec.hits == []  # ... without a ping
    assert results == []


def test_the_heartbeat_settings_default_to_off_and_a_minute() -> None:
    settings = parse_config("").monitor
    assert settings.heartbeat_url is None
    assert settings.heartbeat_interval == 60.0
    settings = parse_config(
        f"monitor: {{heartbeat_url: 'https://hc-ping.com/{TOKEN}', heartbeat_interval: 30s}}"
    ).monitor
    assert settings.heartbeat_url == f"https://hc-ping.com/{TOKEN}"
    assert settings.heartbeat_interval == 30.0
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("monitor", "message"),
    [
        (f"heartbeat_url: 'hc-ping.com/{TOKEN}'", "monitor.heartbeat_url: not an http(s) URL"),
        (f"heartbeat_url: 'ftp://x/{TOKEN}'", "monitor.heartbeat_url: not an http(s) URL"),
        (f"heartbeat_url: 'https:///{TOKEN}'", "monitor.heartbeat_url: not an http(s) URL"),
        # Passed the old scheme-and-slash test; the one URL rule wants a host.
        (f"heartbeat_url: 'https://:443/{TOKEN}'", "monitor.heartbeat_url: not an http(s) URL"),
        (f"heartbeat_url: 'https://h:99999/{TOKEN}'", "monitor.heartbeat_url: not an http(s) URL"),
        (
            "heartbeat_interval: 0s",
            "monitor.heartbeat_interval: 0.0: input should be greater than 0",
        ),
        ("heartbeat_interval: often", "monitor.heartbeat_interval: 'often' is not a duration"),
    ],
    ids=[
        "no-scheme",
        "not-http",
        "no-host",
        "port-no-host",
        "bad-port",
        "zero-interval",
        "not-a-duration",
    ],
)
def test_a_bad_heartbeat_setting_is_a_config_error_that_keeps_the_url_secret(
    monitor: str, message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(f"monitor:\n  {monitor}\n")
    assert message in str(exc.value)
    assert TOKEN not in str(exc.value)
