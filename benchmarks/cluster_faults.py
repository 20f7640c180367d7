"""`benchmarks/cluster.py --faults`: Postgres restarted, then stopped for `--outage` seconds,
while the replicas run. The promises, checked from outside:

- no result lost: every (check, slot) the target served in the window has a stored run, once
  the replicas have stopped gracefully (SIGTERM writes what waited in memory);
- no duplicate page: a json:// receiver counts FIRING per (check, rule), at most one each, for
  checks failing from the start and for checks that start failing while Postgres is down;
- the cluster re-forms: every replica's /api/cluster (read with intmon's ClusterReport) lists
  every replica again, with one config digest, and their shares add up to every check.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path

from chaos_common import TimedReceiver
from cluster_common import (
    Target,
    config,
    fresh_postgres,
    per_slot,
    slot_figures,
    start_replicas,
    stored_runs,
)
from harness import Processes, fetch

from monitor.cluster.status import ClusterReport

# Writes retry with backoff up to 30 s after the database answers again (README, Storage).
RECOVERY_S = 40.0


def cluster_view(base: str) -> ClusterReport | None:
    """What one replica's `GET /api/cluster` answers, read with intmon's own model (unknown or
    missing keys fail loudly); None when the replica does not answer."""
    try:
        return ClusterReport.model_validate_json(fetch(f"{base}/api/cluster"))
    except OSError:
        return None


def re_formed(views: list[ClusterReport | None], replicas: int, checks: int) -> tuple[bool, str]:
    """Every replica answers, is clustered, lists the same `replicas` live replicas with one
    config, and their shares add up to every check."""
    answered = [v for v in views if v is not None]
    ids = {tuple(r.id for r in v.replicas) for v in answered}
    owned = [sum(r.checks_owned for r in v.replicas) for v in answered]
    met = (
        len(answered) == len(views)
        and all(v.clustered and v.digests_agree for v in answered)
        and len(ids) == 1
        and all(len(v.replicas) == replicas for v in answered)
        and all(total == checks for total in owned)
    )
    listed = [len(v.replicas) if v else None for v in views]
    return met, f"replicas listed per answer: {listed}, checks owned in all: {owned}"


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
        views = [cluster_view(b) for _, b in replicas]
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
    for label, met in outcomes:
        print(f"  {label}  {'met' if met else 'BROKEN'}")
    met, detail = re_formed(views, args.replicas, args.checks)
    outcomes.append(("cluster", met))
    print(f"  cluster re-formed, {detail}  {'met' if met else 'BROKEN'}")
    return 0 if all(met for _, met in outcomes) else 1
