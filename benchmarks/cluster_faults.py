"""`benchmarks/cluster.py --faults`: Postgres restarted, then stopped for `--outage` seconds,
while the replicas run. The promises, checked from outside:

- no result lost: every (check, slot) the target served in the window has a stored run, once
  the replicas have stopped gracefully (SIGTERM writes what waited in memory);
- no duplicate page: a json:// receiver counts FIRING per (check, rule), at most one each, for
  checks failing from the start and for checks that start failing while Postgres is down;
- the cluster re-forms: /api/cluster lists every replica again (skipped where it does not exist).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.error
from collections import Counter
from pathlib import Path

from chaos_common import TimedReceiver
from cluster_common import (
    HAS_REPLICAS,
    Target,
    config,
    fresh_postgres,
    per_slot,
    slot_figures,
    start_replicas,
    stored_runs,
)
from harness import Processes, fetch

# Writes retry with backoff up to 30 s after the database answers again (README, Storage).
RECOVERY_S = 40.0


def cluster_size(base: str) -> int | None:
    """How many replicas /api/cluster lists; None when this intmon has no such endpoint."""
    try:
        body = json.loads(fetch(f"{base}/api/cluster"))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    listed = body.get("replicas", body) if isinstance(body, dict) else body
    return len(listed)


async def run_faults(args: argparse.Namespace, tmp: Path, processes: Processes) -> int:
    server, url = fresh_postgres()
    target, receiver = Target(), TimedReceiver()
    try:
        base = await target.start()
        await receiver.start()
        names = [f"c-{i:05d}" for i in range(args.checks)]
        broken, flipping = names[:3], names[3:6]
        target.failing |= set(broken)
        spec = config(url, base, names, args.interval, args.lease, receiver.url)
        replicas = start_replicas(processes, tmp, spec, args.replicas)
        target.pids = [child.pid for child, _ in replicas]
        await asyncio.sleep(4 * args.interval)  # the broken checks fire before any fault

        start = time.time()
        server.pg_ctl("restart")
        print(f"Postgres restarted at +{time.time() - start:.1f} s")
        await asyncio.sleep(2 * args.interval)
        server.pg_ctl("stop")
        target.failing |= set(flipping)  # these alerts are decided while the database is down
        print(f"Postgres stopped for {args.outage:g} s")
        await asyncio.sleep(args.outage)
        server.pg_ctl("start")
        await asyncio.sleep(RECOVERY_S)
        sizes = [cluster_size(b) for _, b in replicas]
        end = time.time()
        for child, _ in replicas:
            processes.stop(child)

        served: dict[str, list[float]] = {}
        for name, at, _ in target.log:
            if start <= at < end:
                served.setdefault(name, []).append(at)
        stored = stored_runs(url, start - 1, end + 5)
        stored_slots = per_slot(stored, args.interval)
        lost = [key for key in per_slot(served, args.interval) if key not in stored_slots]
        stored_fig = slot_figures(names, stored, start, end, args.interval)
        firing = Counter(
            str(p.get("title", "")).split(" (")[0]
            for p in receiver.posts
            if str(p.get("title", "")).startswith("FIRING")
        )
    finally:
        await receiver.stop()
        await target.stop()
        server.stop()

    outcomes = [
        (f"results lost (slots served, none stored): {len(lost)}", not lost),
        (f"runs stored per slot, max: {stored_fig['max']:.0f}", stored_fig["max"] <= 1),
        (
            f"FIRING per alert, max: {max(firing.values(), default=0)} over {len(firing)} alerts",
            bool(firing) and max(firing.values()) == 1,
        ),
        (
            "alerts decided during the outage paged: "
            f"{sum(1 for n in flipping if any(n in t for t in firing))} of {len(flipping)}",
            all(any(n in t for t in firing) for n in flipping),
        ),
    ]
    print(
        f"\n{args.replicas} replicas x {args.checks} checks every {args.interval:g} s; "
        f"Postgres restarted, then down {args.outage:g} s"
    )
    if not HAS_REPLICAS:
        print("this intmon has no replicas: every replica runs every check (duplicates expected)")
    for label, met in outcomes:
        print(f"  {label}  {'met' if met else 'BROKEN'}")
    if any(size is None for size in sizes):
        print("  cluster re-formed: skipped, this intmon has no /api/cluster")
    else:
        met = all(size == args.replicas for size in sizes)
        outcomes.append(("cluster", met))
        print(f"  cluster re-formed, replicas listed: {sizes}  {'met' if met else 'BROKEN'}")
    return 0 if all(met for _, met in outcomes) else 1
