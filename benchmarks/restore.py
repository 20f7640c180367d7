"""Takeover restore benchmark: what a replica reads before it runs the checks it takes over.

A database with 1,000 checks every 60 s and a week of history (raw runs for the whole week,
hourly rollups of every hour but the last; bulk-loaded with the storage benchmark's rows), on
SQLite and on the tests' throwaway Postgres. Then the daemon's real restore (`Daemon.restore`,
what a takeover or a reload runs in a thread) is timed for the third of the checks rendezvous
hashing gives one of three replicas, and, for comparison, for every check (a start-up).

A fifth of the checks have an SLO and all have the default rules, so every read on the path
(latest runs, failure streaks, recent windows, SLO hours, the day of history, deprecations,
shapes, the baseline's hourly p95s and raw latencies) has rows to read.

Run: .venv/bin/python benchmarks/restore.py [--backend sqlite|postgres|both] [--checks 1000]
     [--days 7] [--interval 60] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from storage import DAY, HOUR, bulk_load, names, raw_rows, rollup_rows

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for the tests' Postgres

from monitor.cluster.division import owned_by  # noqa: E402
from monitor.config.loader import parse_config  # noqa: E402
from monitor.core.clock import FakeClock  # noqa: E402
from monitor.core.units import hour_of  # noqa: E402
from monitor.engine.daemon import Daemon  # noqa: E402
from monitor.metrics import Metrics  # noqa: E402
from monitor.storage.store import Store  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

RUN_COLUMNS = "check_id, ts, ok, error_class, status, latency, reason, signals"
ROLLUP_COLUMNS = "check_id, hour, count, failures, rate_limited, timed, p50, p95, p99, p95_ok"


def config_text(url: str, checks: list[str], interval: int) -> str:
    lines = [f"monitor: {{database: '{url}'}}", "checks:"]
    for i, name in enumerate(checks):
        slo = ", slo: {objective: 99.9%, window: 30d}" if i % 5 == 0 else ""
        lines.append(
            f"  - {{name: {name}, interval: {interval}s, request: {{url: 'http://127.0.0.1:9/'}}"
            f"{slo}}}"
        )
    return "\n".join(lines)


def load_sqlite(path: Path, checks: list[str], now: int, args: argparse.Namespace) -> int:
    bulk_load(path, "checks", ((i + 1, name) for i, name in enumerate(checks)), "id, name")
    runs = bulk_load(
        path, "runs", raw_rows(checks, now - args.days * DAY, now, args.interval), RUN_COLUMNS
    )
    bulk_load(
        path, "rollups", rollup_rows(checks, now - args.days * DAY, now - HOUR), ROLLUP_COLUMNS
    )
    return runs


def load_postgres(url: str, checks: list[str], now: int, args: argparse.Namespace) -> int:
    runs = 0
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy("COPY checks (id, name) FROM STDIN") as copy:
            for i, name in enumerate(checks):
                copy.write_row((i + 1, name))
        cursor.execute("SELECT setval('checks_id_seq', %s)", (len(checks),))
        with cursor.copy(f"COPY runs ({RUN_COLUMNS}) FROM STDIN") as copy:
            for row in raw_rows(checks, now - args.days * DAY, now, args.interval):
                copy.write_row((row[0], row[1], bool(row[2]), *row[3:]))
                runs += 1
        with cursor.copy(f"COPY rollups ({ROLLUP_COLUMNS}) FROM STDIN") as copy:
            for row in rollup_rows(checks, now - args.days * DAY, now - HOUR):
                copy.write_row(row)
        cursor.execute("ANALYZE")
    return runs


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times in ms of `repeat` calls, after one that warms the caches."""
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure(backend: str, url: str, args: argparse.Namespace, load: Callable[..., int]) -> None:
    checks = names(args.checks)
    now = hour_of(time.time())
    store = Store(url)
    store.open()
    started = time.perf_counter()
    runs = load(checks, now)
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            f"INSERT INTO meta (key, value) VALUES ('rolled_up_until', '{now - HOUR}')"
        )
    print(f"{backend}: loaded {runs:,} runs in {time.perf_counter() - started:.0f} s")
    config = parse_config(config_text(url, checks, args.interval), env={})
    # Ten minutes into the hour after the last run: the rollups lag by the open hour.
    daemon = Daemon(config, store, Metrics(), FakeClock(start=now + 600))
    share = set(owned_by("r3", checks, ["r1", "r2", "r3"]))
    for label, only in ((f"{len(share)} of {len(checks)} checks", share), ("every check", None)):
        samples = timed(lambda only=only: daemon.restore(only), args.repeat)
        print(
            f"{backend}: restore of {label}: median {statistics.median(samples):.0f} ms, "
            f"min {min(samples):.0f}, max {max(samples):.0f} ({args.repeat} runs)"
        )
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--interval", type=int, default=60, help="seconds between runs")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        path = Path(tempfile.mkdtemp(prefix="intmon-bench-")) / "restore.db"
        try:
            measure(
                "sqlite",
                f"sqlite:///{path}",
                args,
                lambda checks, now: load_sqlite(path, checks, now, args),
            )
        finally:
            shutil.rmtree(path.parent)
    if args.backend in ("postgres", "both"):
        server = PostgresServer()
        server.start()
        try:
            with server.database() as url:
                measure(
                    "postgres", url, args, lambda checks, now: load_postgres(url, checks, now, args)
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
