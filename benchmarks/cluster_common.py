"""What `make bench-cluster` measures a cluster with, from the outside: a target that logs who
asked for which check when, Postgres' own counters, and the slots of intmon's schedule.

Nothing here reads intmon's cluster tables: the replicas are judged by what the target saw and
what the `runs` table holds, so the figures mean the same before and after replicas divide work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from chaos_common import start_app
from harness import Child, Processes, free_port, wait_http

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for the tests' Postgres and intmon's own schedule math

from monitor.engine.scheduler import phase_of  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

INTMON = Path(sys.executable).with_name("intmon")


def slot(name: str, at: float, interval: float) -> int:
    """The index k of the grid slot phase + k*interval that a run started at `at` belongs to:
    the nearest one, so a run a little late (or a request a little after its start) still counts
    for its own slot."""
    return round((at - phase_of(name, interval)) / interval)


def slots_within(name: str, start: float, end: float, interval: float) -> range:
    """Slots of `name` due in [start, end - interval/2): their results have had time to land."""
    phase = phase_of(name, interval)
    first = int((start - phase) // interval) + 1
    last = int((end - interval / 2 - phase) // interval)
    return range(first, last + 1)


@dataclass
class Target:
    """An HTTP API for N checks (`/c/<name>`) that logs (name, arrival, replica) per request.
    The replica is found from the client's port: the socket's inode in /proc/net/tcp and which
    replica process holds that inode (intmon keeps connections alive, so few are new)."""

    failing: set[str] = field(default_factory=set)
    log: list[tuple[str, float, int]] = field(default_factory=list)  # name, time, client port
    pids: list[int] = field(default_factory=list)
    port: int = 0
    _owners: dict[int, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _resolver: asyncio.Task[None] | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/c/{name}", self._hit)
        self._runner, base = await start_app(app)
        self.port = int(base.rsplit(":", 1)[1])
        self._resolver = asyncio.create_task(self._resolve_forever())
        return base

    async def stop(self) -> None:
        if self._resolver is not None:
            self._resolver.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hit(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.log.append((name, time.time(), int(peer[1]) if peer else -1))
        if name in self.failing:
            return web.Response(status=500, text="failing on purpose")
        return web.json_response({"status": "ok"})

    def replica(self, client_port: int) -> int:
        """Which replica sent from `client_port` (-1: not known)."""
        return self._owners.get(client_port, -1)

    async def _resolve_forever(self) -> None:
        # Once a second, not per request: a scan of every replica's sockets costs milliseconds
        # per thousand connections, which per request would stall the target itself.
        while True:
            await asyncio.sleep(1.0)
            self.resolve()

    def resolve(self) -> None:
        inodes: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].split(":")[1], 16) == self.port:
                    inodes[f"socket:[{fields[9]}]"] = int(fields[1].split(":")[1], 16)
        for index, pid in enumerate(self.pids):
            fd_dir = Path(f"/proc/{pid}/fd")
            with contextlib.suppress(OSError):
                for fd in os.listdir(fd_dir):
                    with contextlib.suppress(OSError):
                        port = inodes.get(os.readlink(fd_dir / fd))
                        if port is not None:
                            self._owners[port] = index


@dataclass
class PgReading:
    """Cumulative Postgres counters of the benchmark's database (and the server's WAL)."""

    at: float
    commits: int
    inserted: int
    updated: int
    deleted: int
    blocks_written: int
    wal_bytes: float
    runs: int

    @classmethod
    def take(cls, url: str) -> PgReading:
        with psycopg.connect(url, autocommit=True) as conn:
            db = conn.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database"
                " WHERE datname = current_database()"
            ).fetchone()
            written = conn.execute(
                "SELECT buffers_checkpoint + buffers_clean + buffers_backend FROM pg_stat_bgwriter"
            ).fetchone()
            wal = conn.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()
            runs = conn.execute("SELECT count(*) FROM runs").fetchone()
        if not (db and written and wal and runs):
            raise RuntimeError("Postgres statistics views returned no row")
        return cls(time.time(), *db, written[0], float(wal[0]), runs[0])

    def rates(self, later: PgReading) -> dict[str, float]:
        span = later.at - self.at
        return {
            "pg_commits_per_s": (later.commits - self.commits) / span,
            "pg_rows_inserted_per_s": (later.inserted - self.inserted) / span,
            "pg_rows_updated_per_s": (later.updated - self.updated) / span,
            "pg_blocks_written_per_s": (later.blocks_written - self.blocks_written) / span,
            "pg_wal_kb_per_s": (later.wal_bytes - self.wal_bytes) / 1024 / span,
            "runs_rows_per_s": (later.runs - self.runs) / span,
        }


def stored_runs(url: str, start: float, end: float) -> dict[str, list[float]]:
    """Start times of the runs stored in [start, end], per check name."""
    out: dict[str, list[float]] = defaultdict(list)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.name, r.ts FROM runs r JOIN checks c ON c.id = r.check_id"
            " WHERE r.ts BETWEEN %s AND %s",
            (start, end),
        ).fetchall()
    for name, ts in rows:
        out[name].append(float(ts))
    return out


def per_slot(times: dict[str, list[float]], interval: float) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for name, moments in times.items():
        for at in moments:
            counts[(name, slot(name, at, interval))] += 1
    return counts


def slot_figures(
    names: list[str], times: dict[str, list[float]], start: float, end: float, interval: float
) -> dict[str, float]:
    """Over every (check, slot) due in the window: how many had 0, exactly 1, or more entries."""
    counts = per_slot(times, interval)
    due = [(n, k) for n in names for k in slots_within(n, start, end, interval)]
    seen = [counts.get(key, 0) for key in due]
    return {
        "slots": float(len(due)),
        "empty": float(sum(1 for c in seen if c == 0)),
        "repeated": float(sum(1 for c in seen if c > 1)),
        "max": float(max(seen, default=0)),
        "mean": sum(seen) / len(seen) if seen else 0.0,
    }


def config(
    url: str,
    target: str,
    names: list[str],
    interval: float,
    lease: float,
    receiver: str | None,
    outage_hold: float = 120.0,
) -> dict[str, Any]:
    """One replica's config: identical for all but the port, as a real deployment's would be."""
    monitor: dict[str, Any] = {
        "database": url,
        "listen": "127.0.0.1:0",  # set per replica
        "concurrency": 200,
        "per_host_concurrency": 200,  # every check hits the one target
        "log_level": "warning",
        "shutdown_grace": "3s",
    }
    monitor["replica"] = {"lease": f"{lease:g}s", "outage_hold": f"{outage_hold:g}s"}
    spec: dict[str, Any] = {
        "monitor": monitor,
        "defaults": {
            "interval": f"{interval:g}s",
            "timeout": "2s",
            "alerts": {"error_rate": {"window": f"{interval * 4:g}s", "min_runs": 2}},
        },
        # keep_alive: the target tells replicas apart by their pooled connections (a fresh
        # connection per run, the default, closes before the once-a-second scan sees it).
        "checks": [
            {"name": n, "request": {"url": f"{target}/c/{n}", "keep_alive": True}} for n in names
        ],
    }
    if receiver:
        spec["notifiers"] = [{"name": "hook", "urls": [receiver]}]
        spec["defaults"]["notify"] = ["hook"]
        spec["alerting"] = {"group_wait": "0s"}
    return spec


def start_replicas(
    processes: Processes, tmp: Path, spec: dict[str, Any], count: int
) -> list[tuple[Child, str]]:
    import yaml  # noqa: PLC0415 (only the replicas' files need it)

    started = []
    for index in range(count):
        port = free_port()
        spec["monitor"]["listen"] = f"127.0.0.1:{port}"
        path = tmp / f"replica-{index}.yaml"
        path.write_text(yaml.safe_dump(spec))
        child = processes.start(f"replica-{index}", [str(INTMON), "run", "--config", str(path)])
        started.append((child, f"http://127.0.0.1:{port}"))
    for child, base in started:
        wait_http(f"{base}/readyz", child, 60.0)
    return started


def fresh_postgres() -> tuple[PostgresServer, str]:
    """The tests' throwaway server, but durable as a production one (fsync and synchronous
    commit on): commit and WAL figures are then those of a real disk."""
    server = PostgresServer({"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"})
    server.start()
    admin = psycopg.connect(server.url("postgres"), autocommit=True)
    with admin:
        admin.execute("CREATE DATABASE intmon")
    return server, server.url("intmon")
