"""Storage benchmark: 30 days of 1,000 checks every 60 s, as retention leaves them on disk.

With `retention.raw: 7d` only the last week of raw runs exists (~10M rows at the defaults), plus
hourly rollups for all 30 days (720k rows). Both are bulk-loaded (executemany in big
transactions: inserting 43M runs one by one to delete most of them is not the point), then the
real code is timed against them:

- the queries behind a restart and `intmon status`: Store.latest_runs() + consecutive_failures();
- a 30-day p95 of one check from its rollups; the baseline seed read (a week of hourly p95s);
- one real rollup of the newest full hour, and pruning one hour of raw runs in 5,000-row batches.

Run: .venv/bin/python benchmarks/storage.py [--quick] [--checks N] [--days D]
     [--write-baseline NAME] (stores the figures in benchmarks/baseline-storage.json, the
     earlier baselines kept under "previous")
"""

from __future__ import annotations

import argparse
import math
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import baselines

from monitor.core.units import hour_of
from monitor.storage.schema import stored_reason
from monitor.storage.store import Store

HOUR = 3600
DAY = 86400
BASELINE = Path(__file__).with_name("baseline-storage.json")
TARGET_BYTES = 1_000_000_000
TARGET_MS = 50.0
QUOTA = '{"quota_dialect":"ratelimit","quota_remaining":%d,"quota_limit":5000,"quota_reset":%d}'


def names(checks: int) -> list[str]:
    return [f"check-{i:04d}-api" for i in range(checks)]


def raw_rows(names: list[str], start: int, end: int, interval: int) -> Iterator[tuple[Any, ...]]:
    """Runs in time order, as the writer inserts them: mostly healthy, some 5xx and 429s.

    Encoded as RunRecord.as_row stores them: check ids (1.. in `names` order), the usual
    "HTTP <status>" reason and empty signals as NULL.
    """
    rng = random.Random(1)
    offsets = [rng.uniform(0, interval) for _ in names]
    medians = [rng.uniform(0.03, 0.4) for _ in names]
    quota = [i % 5 == 0 for i in range(len(names))]  # a fifth of the APIs send quota headers
    for slot in range(start, end, interval):
        for i in range(len(names)):
            ts = slot + offsets[i]
            roll = rng.random()
            if roll < 0.985:
                ok, status, error, reason = 1, 200, None, "HTTP 200"
            elif roll < 0.995:
                ok, status, error, reason = 0, 503, "http_5xx", "HTTP 503 (expected 2xx)"
            else:
                ok, status, error, reason = 0, 429, "rate_limited", "HTTP 429 (expected 2xx)"
            latency = medians[i] * math.exp(rng.gauss(0, 0.4))
            signals = QUOTA % (rng.randrange(5000), int(ts) + 3600) if quota[i] else None
            yield i + 1, ts, ok, error, status, latency, stored_reason(reason, status), signals


def rollup_rows(names: list[str], start: int, end: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(2)
    for hour in range(start, end, HOUR):
        for i in range(len(names)):
            p50 = rng.uniform(0.03, 0.4)
            p95, p99 = p50 * 1.9, p50 * 2.6
            yield i + 1, hour, 60, rng.choice((0, 0, 0, 1, 2)), 0, 60, p50, p95, p99, p95 * 0.98


def bulk_load(path: Path, table: str, rows: Iterator[tuple[Any, ...]], columns: str) -> int:
    db = sqlite3.connect(path, isolation_level=None)
    # Load speed only (the timed code uses the Store's own settings): no fsync, and a page
    # cache big enough that the (check, ts) index, written in time order, is not thrashed.
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-4000000")
    marks = ", ".join("?" * len(columns.split(",")))
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
    total, chunk = 0, []
    for row in rows:
        chunk.append(row)
        if len(chunk) == 500_000:
            total += _insert(db, sql, chunk)
            chunk = []
    total += _insert(db, sql, chunk)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return total


def _insert(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    db.execute("BEGIN")
    db.executemany(sql, rows)
    db.execute("COMMIT")
    return len(rows)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in ms over `repeat` calls (the first one warms the page cache)."""
    result = fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def run(args: argparse.Namespace) -> dict[str, float]:
    started = time.perf_counter()
    checks = names(args.checks)
    now = hour_of(time.time())
    raw_days = min(args.raw_days, args.days)
    path = Path(args.db or tempfile.mkdtemp(prefix="intmon-bench-")) / "storage.db"
    path.unlink(missing_ok=True)
    store = Store(f"sqlite:///{path}")
    store.open()

    load = time.perf_counter()
    bulk_load(path, "checks", ((i + 1, name) for i, name in enumerate(checks)), "id, name")
    runs = bulk_load(
        path,
        "runs",
        raw_rows(checks, now - raw_days * DAY, now, args.interval),
        "check_id, ts, ok, error_class, status, latency, reason, signals",
    )
    # Rollups for the days before the raw window are synthetic; the raw window's are real.
    rollups = bulk_load(
        path,
        "rollups",
        rollup_rows(checks, now - args.days * DAY, now - raw_days * DAY),
        "check_id, hour, count, failures, rate_limited, timed, p50, p95, p99, p95_ok",
    )
    load_s = time.perf_counter() - load
    print(f"loaded {runs:,} raw runs and {rollups:,} rollups in {load_s:.1f} s")

    roll = time.perf_counter()
    for hour in range(now - raw_days * DAY, now, HOUR):
        store.rollups.rollup(hour)
    roll_s = time.perf_counter() - roll
    hours = raw_days * 24
    print(f"rolled up {hours} hours of real runs in {roll_s:.1f} s")

    status_ms, latest = timed(lambda: (store.latest_runs(), store.consecutive_failures()), 5)
    assert len(latest[0]) == len(checks), "latest_runs missed checks"
    one = checks[len(checks) // 2]
    p95_ms, p95 = timed(lambda: period_p95(store, one, now - args.days * DAY), 20)
    seed_ms, seeded = timed(lambda: sum(1 for _ in store.rollups.hourly_p95s(now - 7 * DAY)), 3)

    # Pruning one hour of raw runs, 5,000 rows per transaction: the longest the writer waits.
    batches = []
    cutoff = now - raw_days * DAY + HOUR
    names_now = store.rollups.checks_in("runs")
    while True:
        t = time.perf_counter()
        deleted = store.rollups.prune_runs(cutoff, 5000, names_now)
        batches.append((time.perf_counter() - t) * 1000)
        if deleted < 5000:
            break
    vacuum = time.perf_counter()
    store.database.incremental_vacuum(1_000_000)
    vacuum_ms = (time.perf_counter() - vacuum) * 1000

    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables = table_bytes(db)
    kept = store.count_runs()
    store.close()
    size = path.stat().st_size
    figures = {
        "checks": float(args.checks),
        "days": float(args.days),
        "raw_runs": float(runs),
        "rollups": float(rollups + hours * len(checks)),
        "db_bytes": float(size),
        "runs_bytes": float(tables.get("runs", 0)),
        "bytes_per_raw_run": tables.get("runs", 0) / max(kept, 1),
        "rollups_bytes": float(tables.get("rollups", 0)),
        "status_query_ms": status_ms,
        "p95_30d_query_ms": p95_ms,
        "baseline_seed_ms": seed_ms,
        "baseline_seed_rows": float(seeded),
        "rollup_hour_ms": roll_s * 1000 / hours,
        "prune_batch_max_ms": max(batches),
        "prune_batches": float(len(batches)),
        "vacuum_ms": vacuum_ms,
        "total_s": time.perf_counter() - started,
    }
    print(f"30-day p95 of {one}: {p95 * 1000:.1f} ms (median of hourly p95s)")
    if not args.db:
        path.unlink()
    return figures


def table_bytes(db: sqlite3.Connection) -> dict[str, int]:
    """Bytes in use per table, its indexes included (from SQLite's dbstat)."""
    owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_schema"))
    sizes: dict[str, int] = {}
    for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
        table = owner.get(name, name)
        sizes[table] = sizes.get(table, 0) + size
    return sizes


def period_p95(store: Store, check: str, since: float) -> float:
    """A 30-day p95 from hourly rollups: the median hourly p95, as the baseline is defined.

    An exact p95 over 30 days cannot be rebuilt from hourly quantiles; the median of hourly
    p95s is the robust figure the latency baseline already uses.
    """
    values = [row.p95 for row in store.rollups.hours(check, since) if row.p95 is not None]
    return statistics.median(values)


def report(figures: dict[str, float], baseline: dict[str, Any] | None) -> None:
    base = (baseline or {}).get("figures", {})
    name = (baseline or {}).get("name", "-")
    print(f"\n{'figure':<22}{'this run':>14}{'baseline ' + name:>30}")
    for key, value in figures.items():
        old = base.get(key)
        ratio = f"  ({value / old:.2f}x)" if old else ""
        print(f"{key:<22}{value:>14,.1f}{'' if old is None else f'{old:,.1f}':>30}{ratio}")
    print()
    size_ok = figures["db_bytes"] < TARGET_BYTES
    print(f"database size   {figures['db_bytes'] / 1e6:8.0f} MB   target < 1 GB: {_ok(size_ok)}")
    for key in ("status_query_ms", "p95_30d_query_ms"):
        print(f"{key:<16}{figures[key]:8.1f} ms   target < 50 ms: {_ok(figures[key] < TARGET_MS)}")


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval", type=int, default=60, help="seconds between runs")
    parser.add_argument("--raw-days", type=int, default=7, help="retention.raw, in days")
    parser.add_argument("--quick", action="store_true", help="100 checks, 3 days: a smoke run")
    parser.add_argument("--db", help="keep the database in this directory")
    parser.add_argument("--write-baseline", metavar="NAME", help="store figures as baseline")
    args = parser.parse_args()
    if args.quick:
        args.checks, args.days, args.raw_days = 100, 3, 1
    baseline = baselines.load(BASELINE)
    figures = run(args)
    report(figures, baseline)
    if args.write_baseline:
        baselines.write(BASELINE, args.write_baseline, figures, baseline)


if __name__ == "__main__":
    main()
