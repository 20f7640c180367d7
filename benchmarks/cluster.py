"""Cluster benchmark: N `intmon run` replicas on one Postgres database, measured from outside.

It starts a throwaway Postgres (the tests' server, durable: fsync on), a local target that logs
every request (check, arrival, which replica sent it) and N replicas with C http checks at
interval I (5 s by default, not 60 s: the same work per run, twelve times as many runs per
second, so a short run measures a lot). After a warm-up of two intervals it measures D seconds:

- per replica: CPU (user+sys from /proc/<pid>/stat), share of a core, runs it sent, ms per run;
- Postgres: commits, rows inserted, blocks written, WAL per second; rows added to `runs`;
- per (check, slot) due in the window: runs stored (most must be 1; slots with none) and
  requests the target saw (more than one per check per interval is a duplicate);

then kills one replica with SIGKILL and takes, for each check that replica had run last, the
gap between its last request before the kill and the first after, against 2 x max(I, lease),
and the time from the kill to that first request (README: one lease plus one interval).

`--profile FILE` records replica 0 with py-spy over the measured period (only the thread
holding the GIL: what costs CPU) and prints where its time went.
`--faults` instead restarts Postgres and stops it for `--outage` seconds (cluster_faults.py).
Figures are compared with benchmarks/baseline-cluster.json; exit 1 when a guarantee breaks.

Run: .venv/bin/python benchmarks/cluster.py [--checks 1000] [--interval 5] [--replicas 3]
     [--duration 30] [--lease 15] [--faults --outage 60 --outage-hold 120] [--write-baseline NAME]
     [--profile FILE [--py-spy PATH]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import baselines
from cluster_common import (
    PgReading,
    Target,
    config,
    fresh_postgres,
    slot_figures,
    start_replicas,
    stored_runs,
)
from harness import Processes, cpu_seconds, descendants
from profiling import finish_profiler, start_profiler

BASELINE = Path(__file__).with_name("baseline-cluster.json")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--lease", type=float, default=15.0, help="monitor.replica.lease, s")
    parser.add_argument("--faults", action="store_true", help="Postgres restart and outage")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds Postgres is down")
    parser.add_argument(
        "--outage-hold", type=float, default=120.0, help="monitor.replica.outage_hold, s"
    )
    parser.add_argument("--write-baseline", metavar="NAME")
    parser.add_argument("--profile", metavar="FILE", help="py-spy replica 0's period to FILE (raw)")
    parser.add_argument("--py-spy", help="py-spy binary (default: from PATH)")
    return parser.parse_args()


def cpu_of(pids: list[int]) -> list[float]:
    return [cpu_seconds(descendants(pid)) for pid in pids]


async def measure(args: argparse.Namespace, tmp: Path, processes: Processes) -> dict[str, float]:
    server, url = fresh_postgres()
    target = Target()
    try:
        base = await target.start()
        names = [f"c-{i:05d}" for i in range(args.checks)]
        spec = config(url, base, names, args.interval, args.lease, receiver=None)
        replicas = start_replicas(processes, tmp, spec, args.replicas)
        target.pids = [child.pid for child, _ in replicas]
        await asyncio.sleep(2 * args.interval)  # every check has run; pools are warm

        start, cpu0 = PgReading.take(url), cpu_of(target.pids)
        profiler = start_profiler(
            args.profile, args.py_spy, target.pids[0], args.duration, processes, gil=True
        )
        await asyncio.sleep(args.duration)
        end, cpu1 = PgReading.take(url), cpu_of(target.pids)
        await asyncio.to_thread(finish_profiler, profiler, processes)
        span = end.at - start.at
        await asyncio.sleep(1.0)  # the window's last results: one write batch is 0.2 s
        figures = start.rates(end)

        sent = [0] * args.replicas
        requests: dict[str, list[float]] = {}
        for name, at, port in target.log:
            replica = target.replica(port)
            if start.at <= at < end.at and replica >= 0:
                sent[replica] += 1
            requests.setdefault(name, []).append(at)
        for index in range(args.replicas):
            used = cpu1[index] - cpu0[index]
            figures[f"replica{index}_cpu_share"] = used / span
            figures[f"replica{index}_runs_per_s"] = sent[index] / span
            figures[f"replica{index}_cpu_ms_per_run"] = (
                used * 1000 / sent[index] if sent[index] else 0
            )
        total_runs = sum(sent)
        figures["cpu_ms_per_run"] = (
            sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) * 1000 / max(total_runs, 1)
        )
        figures["runs_per_s"] = total_runs / span

        stored = slot_figures(
            names, stored_runs(url, start.at - 1, end.at + 1), start.at, end.at, args.interval
        )
        seen = slot_figures(names, requests, start.at, end.at, args.interval)
        figures |= {f"stored_{k}": v for k, v in stored.items()}
        figures |= {f"requests_{k}": v for k, v in seen.items()}
        figures |= await takeover(args, target, replicas[0][0].pid, processes, replicas[0][0])
        for child, _ in replicas[1:]:
            processes.stop(child)
        return figures
    finally:
        await target.stop()
        server.stop()


async def takeover(
    args: argparse.Namespace, target: Target, pid: int, processes: Processes, child: Any
) -> dict[str, float]:
    """SIGKILL replica 0; for the checks it had run last, the gap until someone runs them."""
    bound = 2 * max(args.interval, args.lease)
    last: dict[str, tuple[float, int]] = {}
    target.resolve()  # connections opened in the last second too
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    for name, at, port in target.log:
        if at < killed_at:
            last[name] = (at, target.replica(port))
    await asyncio.sleep(bound + 2 * args.interval)
    processes.stop(child)
    first: dict[str, float] = {}
    for name, at, _ in target.log:
        if at >= killed_at and name not in first:
            first[name] = at
    owned = [name for name, (_, replica) in last.items() if replica == 0]
    gaps = [first.get(n, time.time()) - last[n][0] for n in owned]
    # From the kill itself: what README's "one lease plus one interval" is measured from.
    since_kill = [first.get(n, time.time()) - killed_at for n in owned]
    return {
        "takeover_checks": float(len(owned)),
        "takeover_p50_s": statistics.median(gaps) if gaps else 0.0,
        "takeover_max_s": max(gaps, default=0.0),
        "takeover_after_kill_p50_s": statistics.median(since_kill) if since_kill else 0.0,
        "takeover_after_kill_max_s": max(since_kill, default=0.0),
        "takeover_never": float(sum(1 for n in owned if n not in first)),
        "takeover_bound_s": bound,
    }


ROWS = [
    ("runs_per_s", "check runs/s (all replicas)", "{:,.1f}"),
    ("cpu_ms_per_run", "CPU ms per check run", "{:.3f}"),
    ("pg_commits_per_s", "PG commits/s", "{:,.1f}"),
    ("pg_rows_inserted_per_s", "PG rows inserted/s", "{:,.1f}"),
    ("pg_rows_updated_per_s", "PG rows updated/s", "{:,.1f}"),
    ("pg_blocks_written_per_s", "PG blocks written/s", "{:,.1f}"),
    ("pg_wal_kb_per_s", "PG WAL KiB/s", "{:,.1f}"),
    ("runs_rows_per_s", "rows added to runs/s", "{:,.1f}"),
    ("stored_max", "runs stored per slot, max", "{:.0f}"),
    ("stored_mean", "runs stored per slot, mean", "{:.2f}"),
    ("stored_empty", "slots with no stored run", "{:.0f}"),
    ("requests_mean", "target requests per slot", "{:.2f}"),
    ("requests_repeated", "slots requested > once", "{:,.0f}"),
    ("takeover_checks", "checks of the killed replica", "{:,.0f}"),
    ("takeover_p50_s", "takeover gap p50 s", "{:.1f}"),
    ("takeover_max_s", "takeover gap max s", "{:.1f}"),
    ("takeover_after_kill_p50_s", "kill to next run p50 s", "{:.1f}"),
    ("takeover_after_kill_max_s", "kill to next run max s", "{:.1f}"),
    ("takeover_never", "checks never taken over", "{:.0f}"),
]


def report(args: argparse.Namespace, figures: dict[str, float], base: dict[str, Any]) -> bool:
    cores = len(os.sched_getaffinity(0))
    print(
        f"\n{args.replicas} replicas x {args.checks} checks every {args.interval:g} s "
        f"(lease {args.lease:g} s) on one Postgres, {cores} cores, measured {args.duration:g} s"
    )
    old, name = base.get("figures", {}), base.get("name", "-")
    print(f"\n{'':<34}{'now':>12}  {'baseline ' + name:>24}")
    for index in range(args.replicas):
        share = figures[f"replica{index}_cpu_share"] * 100
        print(
            f"replica {index}: {share:.1f}% of a core, {figures[f'replica{index}_runs_per_s']:.1f}"
            f" runs/s, {figures[f'replica{index}_cpu_ms_per_run']:.3f} ms CPU per run"
        )
    for key, label, fmt in ROWS:
        prev = old.get(key)
        print(
            f"{label:<34}{fmt.format(figures[key]):>12}"
            f"  {'-' if prev is None else fmt.format(prev):>24}"
        )
    checks = [
        ("each (check, slot) stored at most once", figures["stored_max"] <= 1),
        ("no slot without a stored run", figures["stored_empty"] == 0),
        ("each check requested once per interval", figures["requests_repeated"] == 0),
        (
            f"takeover within {figures['takeover_bound_s']:g} s",
            figures["takeover_never"] == 0
            and figures["takeover_max_s"] <= figures["takeover_bound_s"],
        ),
        (
            f"next run within lease + interval ({args.lease + args.interval:g} s) of the kill",
            figures["takeover_after_kill_max_s"] <= args.lease + args.interval,
        ),
    ]
    print()
    for label, met in checks:
        print(f"  {label}: {'met' if met else 'MISSED'}")
    return all(met for _, met in checks)


def main() -> int:
    args = parse()
    with tempfile.TemporaryDirectory(prefix="intmon-cluster-") as tmp:
        processes = Processes(Path(tmp))
        try:
            if args.faults:
                from cluster_faults import run_faults  # noqa: PLC0415 (only with --faults)

                return asyncio.run(run_faults(args, Path(tmp), processes))
            figures = asyncio.run(measure(args, Path(tmp), processes))
        finally:
            processes.close()
    base = baselines.load(BASELINE) or {}
    ok = report(args, figures, base)
    if args.write_baseline:
        baselines.write(BASELINE, args.write_baseline, figures, baselines.load(BASELINE))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
