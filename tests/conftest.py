"""Shared fixtures: real servers on loopback, real SQLite files and a real Postgres server, a
clock tests control."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings

from checks.base import RunContext
from monitor.core.clock import FakeClock, SystemClock
from monitor.core.redact import Redactor
from monitor.engine.runner import make_session
from monitor.sandbox import build_sandbox
from monitor.storage.store import Store
from tests.postgres import PostgresServer
from tests.receiver import Receiver

# Property-based tests: a modest, repeatable run in the normal suite (derandomized, so a failure
# is the same failure on every machine), hundreds of fresh examples for `make chaos`.
_SLOW_INPUTS = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "default", max_examples=25, deadline=5000, derandomize=True, suppress_health_check=_SLOW_INPUTS
)
settings.register_profile(
    "chaos", max_examples=150, deadline=5000, suppress_health_check=_SLOW_INPUTS
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def network_address() -> str:
    """A non-loopback IPv4 address of this machine: a client connecting to a server bound there
    is not loopback to it. Skips the test on a machine without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect sends nothing
        except OSError:
            pytest.skip("this machine has no network address besides loopback")
        address = str(probe.getsockname()[0])
    if ipaddress.ip_address(address).is_loopback:
        pytest.skip("this machine has no network address besides loopback")
    return address


async def start_app(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """Serve `app` on a free port of `host` (loopback); return the runner and its base URL."""
    # Handlers that hang on purpose must not hold teardown for aiohttp's default 60 s.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    """The bundled sandbox API, as a real server. Yields its base URL."""
    runner, url = await start_app(build_sandbox())
    yield url
    await runner.cleanup()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], asyncio.Future[str]]]:
    """Start ad-hoc aiohttp apps for a test; all are stopped afterwards."""
    runners: list[web.AppRunner] = []

    async def _serve(app: web.Application) -> str:
        runner, url = await start_app(app)
        runners.append(runner)
        return url

    yield _serve  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[bytes], asyncio.Future[str]]]:
    """A TCP server that answers every connection with fixed bytes: for malformed HTTP."""
    servers: list[asyncio.Server] = []

    async def _start(payload: bytes) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)
            writer.write(payload)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield _start  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """An Apprise json:// endpoint that records what it is sent (see tests/receiver.py)."""
    server = await Receiver().start()
    yield server
    await server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(10) as s:
        yield s


@pytest.fixture
def ctx(session: aiohttp.ClientSession) -> RunContext:
    return RunContext(
        session=session, clock=SystemClock(), redactor=Redactor(), user_agent="intmon-test"
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "monitor.db"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway cluster for the whole session, started by the first test that needs it."""
    try:
        server = PostgresServer()
    except RuntimeError as exc:
        # Not a skip: CI installs Postgres, so a missing server is a broken setup.
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on: each test that uses one runs on both."""
    return str(request.param)


@pytest.fixture
def new_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], str]]:
    """Makes fresh, empty databases of the test's backend: `new_database(name)` is its URL,
    an SQLite file `name.db` in tmp_path or a database of its own on the session's Postgres
    (`postgresql://…`, as users write it), dropped after the test."""
    with contextlib.ExitStack() as stack:

        def new(name: str) -> str:
            if backend == "sqlite":
                return f"sqlite:///{tmp_path / name}.db"
            server: PostgresServer = request.getfixturevalue("postgres")
            return stack.enter_context(server.database())

        yield new


@pytest.fixture
def db_url(new_database: Callable[[str], str]) -> str:
    """A fresh database of each kind; on SQLite its file is `db_path`."""
    return new_database("monitor")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.open()
    yield s
    s.close()
