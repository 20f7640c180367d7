"""Replicas of one monitor on one Postgres database, for the cluster tests: in-process daemons,
`intmon run` processes, the target they watch, and which process sent a request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import create_engine, text

from monitor.cluster.division import owned_by
from monitor.config.loader import parse_config
from monitor.core.clock import SystemClock
from monitor.engine.daemon import Daemon
from monitor.metrics import Metrics
from monitor.storage.backend import engine_url
from monitor.storage.store import Store
from monitor.web.server import build_app
from tests.conftest import start_app


@dataclass
class Target:
    """Every request, by path, with when it arrived; paths in `broken` answer 503."""

    hits: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    broken: set[str] = field(default_factory=set)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path].append(time.monotonic())
        return web.Response(status=503 if request.path in self.broken else 200)

    @classmethod
    @contextlib.asynccontextmanager
    async def serving(cls) -> AsyncIterator[Target]:
        """A target on a free loopback port, for as long as the block runs."""
        target = cls()
        app = web.Application()
        app.router.add_get("/{name}", target.handle)
        runner, target.url = await start_app(app)
        try:
            yield target
        finally:
            await runner.cleanup()


class Replicas:
    """In-process replicas, each a Daemon with its web app; `config(id)` is a replica's
    config text and `checks` are the names it has, for working out who runs what."""

    def __init__(self, config: Callable[[str], str], checks: Iterable[str]) -> None:
        self.config = config
        self.checks = list(checks)
        self.daemons: dict[str, Daemon] = {}
        self.urls: dict[str, str] = {}
        self._runners: dict[str, web.AppRunner] = {}

    async def start(self, replica: str, maintenance: float = 300.0) -> Daemon:
        """`maintenance`: seconds between the storage maintenance loop's passes."""
        config = parse_config(self.config(replica), env={})
        daemon = Daemon(config, Store(config.monitor.database_url), Metrics(), SystemClock())
        daemon.maintenance.interval = maintenance
        self._runners[replica], self.urls[replica] = await start_app(build_app(daemon))
        await daemon.start()
        self.daemons[replica] = daemon
        return daemon

    async def stop(self, replica: str) -> None:
        """A graceful stop, as SIGTERM makes one: the replica leaves, the others take over."""
        await self.daemons.pop(replica).stop(grace=1.0)
        await self._runners.pop(replica).cleanup()

    async def metric(self, replica: str, name: str) -> float:
        """One unlabelled series, as `/metrics` of `replica` shows it."""
        url = f"{self.urls[replica]}/metrics"
        async with aiohttp.ClientSession() as client, client.get(url) as response:
            page = await response.text()
        [value] = [line.split()[1] for line in page.splitlines() if line.startswith(name + " ")]
        return float(value)

    async def cluster(self, replica: str) -> dict[str, object]:
        url = f"{self.urls[replica]}/api/cluster"
        async with aiohttp.ClientSession() as client, client.get(url) as response:
            return dict(await response.json())

    def settled(self, *live: str) -> bool:
        """Every replica here sees the replicas `live` and runs its share of them."""
        return all(
            [r.id for r in d.replica.replicas] == list(live)
            and d.replica.owned == owned_by(name, self.checks, live)
            for name, d in self.daemons.items()
        )

    def owner(self, check: str) -> str:
        return next(name for name, d in self.daemons.items() if check in d.replica.owned)

    async def close(self) -> None:
        for replica in list(self.daemons):
            await self.stop(replica)


def shares(prefix: str, replicas: Sequence[str], each: int) -> dict[str, list[str]]:
    """Check names `{prefix}{n}` such that, with all of `replicas` live, each of them runs
    `each`: the division is a hash, so which names land where is found, not chosen."""
    found: dict[str, list[str]] = {r: [] for r in replicas}
    n = 0
    while any(len(names) < each for names in found.values()):
        name = f"{prefix}{n}"
        (owner,) = (r for r in replicas if name in owned_by(r, [name], replicas))
        if len(found[owner]) < each:
            found[owner].append(name)
        n += 1
    return found


async def intmon_run(config: Path, log: Path) -> asyncio.subprocess.Process:
    """`intmon run --config config` as a process of its own, its output in `log`."""
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--config", str(config),
            stdout=output, stderr=output,
        )  # fmt: skip


def sender(port: int, pids: Iterable[int]) -> int | None:
    """Which of `pids` holds the IPv4 TCP socket with local port `port`: the process that
    made a request a server sees coming from that port. Linux only (/proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        columns = line.split()
        if int(columns[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{columns[9]}]")
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir() if fds.exists() else ():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except FileNotFoundError:
                continue  # closed while we looked
    return None


def stored_slots(db_url: str, prefix: str) -> tuple[list[tuple[int, int]], int]:
    """What the replicas stored: the (check id, slot) pairs stored more than once, and how many
    runs with a slot the checks named `prefix`… have."""
    engine = create_engine(engine_url(db_url))
    try:
        with engine.connect() as connection:
            twice = connection.execute(
                text("SELECT check_id, slot FROM runs GROUP BY 1, 2 HAVING count(*) > 1")
            ).all()
            stored = connection.execute(
                text(
                    "SELECT count(*) FROM runs r JOIN checks c ON c.id = r.check_id "
                    "WHERE c.name LIKE :prefix AND r.slot IS NOT NULL"
                ),
                {"prefix": f"{prefix}%"},
            ).scalar_one()
    finally:
        engine.dispose()
    return [(int(a), int(b)) for a, b in twice], int(stored)
