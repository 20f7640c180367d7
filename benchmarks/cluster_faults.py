"""`benchmarks/cluster.py --faults`: Postgres restarted, then stopped for `--outage` seconds,
while the replicas run. The promises, checked from outside:

- no result lost: every (check, slot) due while the cluster was meant to run has a stored run,
  once the replicas have stopped gracefully (SIGTERM writes what waited in memory). A replica
  without the database runs its checks for `outage_hold` after its last renewal (README,
  Running several replicas); slots due after that, with the database still away, are the
  documented pause and are counted apart (none when the outage is shorter than the hold); a
  slot the target served still needs its stored run, pause or not;
- each (check, slot) requested from the target and stored at most once;
- no duplicate page: a json:// receiver counts each FIRING message (check, rule, severity;
  an escalation is a message of its own) by notification id, at most one each, for checks
  failing from the start and for checks that start failing while Postgres is down; the same
  id twice is the documented at-least-once send and shown apart;
- the cluster re-forms: every replica's /api/cluster (read with intmon's ClusterReport) lists
  every replica again, with one config digest, and their shares add up to every check.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_common import TimedReceiver, post_id
from cluster_common import (
    Target,
    config,
    fresh_postgres,
    per_slot,
    slot_figures,
    slots_within,
    start_replicas,
    stored_runs,
)
from harness import Processes, fetch

from monitor.cluster.status import ClusterReport
from monitor.engine.scheduler import phase_of

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


def paused(
    stopped_at: float, back_at: float, lease: float, hold: float, interval: float
) -> tuple[float, float]:
    """Slots due in [first, last) may go unrun by design (README, Running several replicas): a
    replica without the database stops running checks `max(lease, hold)` after its last
    renewal, which may have been up to a third of a lease before the database went; it runs
    them again after its next renewal, at most a second (its retry while the database is
    away) after the database is back, plus one interval for the slot's start. Empty when the
    database is back before anyone stops."""
    first = stopped_at + max(lease, hold) - lease / 3
    if first >= back_at:
        return back_at, back_at
    return first, back_at + min(lease / 3, 1.0) + interval


def lost_results(
    names: list[str],
    served: dict[str, list[float]],
    stored: dict[str, list[float]],
    window: tuple[float, float],
    pause: tuple[float, float],
    interval: float,
) -> dict[str, Any]:
    """Results that should exist and do not. Expected: every (check, slot) due in `window`
    outside the deliberate `pause`. Lost: an expected slot with no stored run, or any slot the
    target served with no stored run, pause or not (a result produced and then not stored is
    lost whenever it happened)."""
    stored_slots = per_slot(stored, interval)
    served_slots = per_slot(served, interval)
    due = {(n, k) for n in names for k in slots_within(n, *window, interval)}
    in_pause = {
        (n, k) for n, k in due if pause[0] <= phase_of(n, interval) + k * interval < pause[1]
    }
    expected = due - in_pause
    not_stored = {key for key in expected if key not in stored_slots}
    served_not_stored = {key for key in served_slots if key in due and key not in stored_slots}
    missed = sorted(phase_of(n, interval) + k * interval for n, k in not_stored)
    return {
        "missed_due": missed,
        "expected": len(expected),
        "not_run": sum(1 for key in expected if key not in served_slots),
        "lost": len(not_stored | served_not_stored),
        "served_not_stored": len(served_not_stored),
        "paused_slots": len(in_pause),
        "paused_run_anyway": sum(1 for key in in_pause if key in served_slots),
    }


def observed_pause(log: list[tuple[str, float, int]], after: float, before: float) -> float:
    """The longest time between two requests the target saw in [after, before): how long the
    cluster actually ran nothing."""
    moments = sorted(at for _, at, _ in log if after <= at < before)
    return max((b - a for a, b in itertools.pairwise(moments)), default=0.0)


def alert_of(post: dict[str, object]) -> str:
    """What one page announces: the whole title, e.g. `FIRING: c-00001 error_rate (warning)`.
    An escalation (`(critical, escalated)`) is a page of its own, not a repeat of the first."""
    return str(post.get("title", ""))


async def run_faults(args: argparse.Namespace, tmp: Path, processes: Processes) -> int:
    server, url = fresh_postgres()
    target, receiver = Target(), TimedReceiver()
    try:
        base = await target.start()
        await receiver.start()
        names = [f"c-{i:05d}" for i in range(args.checks)]
        broken, flipping = names[:3], names[3:6]
        target.failing |= set(broken)
        spec = config(url, base, names, args.interval, args.lease, receiver.url, args.outage_hold)
        replicas = start_replicas(processes, tmp, spec, args.replicas)
        target.pids = [child.pid for child, _ in replicas]
        await asyncio.sleep(4 * args.interval)  # the broken checks fire before any fault

        start = time.time()
        server.pg_ctl("restart")
        print(f"Postgres restarted at +{time.time() - start:.1f} s")
        await asyncio.sleep(2 * args.interval)
        stopped_at = time.time()
        server.pg_ctl("stop")
        target.failing |= set(flipping)  # these alerts are decided while the database is down
        print(f"Postgres stopped at +{stopped_at - start:.1f} s for {args.outage:g} s")
        await asyncio.sleep(args.outage)
        server.pg_ctl("start")
        back_at = time.time()
        print(f"Postgres back at +{back_at - start:.1f} s")
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
        pause = paused(stopped_at, back_at, args.lease, args.outage_hold, args.interval)
        lost = lost_results(names, served, stored, (start, end), pause, args.interval)
        gap = observed_pause(target.log, stopped_at, back_at + RECOVERY_S)
        stored_fig = slot_figures(names, stored, start, end, args.interval)
        sent_fig = slot_figures(names, served, start, end, args.interval)
        fired = [p for p in receiver.posts if str(p.get("title", "")).startswith("FIRING")]
        firing = Counter(alert_of(p) for p in fired)
        # The same notification id twice is the documented at-least-once send, not a new page.
        pages = Counter(alert_of(p) for p in {post_id(p): p for p in fired}.values())
        zero = time.monotonic() - (time.time() - start)
        posts = [
            (at - zero, f"{p.get('title', '')} [{post_id(p)}]")
            for at, p in zip(receiver.arrivals, receiver.posts, strict=False)
        ]
    finally:
        await receiver.stop()
        await target.stop()
        server.stop()

    return report(
        args,
        Outcome(
            start=start,
            pause=pause,
            gap=gap,
            lost=lost,
            posts=posts,
            stored_max=stored_fig["max"],
            sent_max=sent_fig["max"],
            firing=firing,
            pages=pages,
            flipping=flipping,
            views=views,
        ),
    )


@dataclass
class Outcome:
    start: float
    pause: tuple[float, float]
    gap: float
    lost: dict[str, Any]
    posts: list[tuple[float, str]]
    stored_max: float
    sent_max: float
    firing: Counter[str]
    pages: Counter[str]
    flipping: list[str]
    views: list[ClusterReport | None]


def report(args: argparse.Namespace, o: Outcome) -> int:
    print(
        f"\n{args.replicas} replicas x {args.checks} checks every {args.interval:g} s"
        f" (lease {args.lease:g} s, outage_hold {args.outage_hold:g} s); Postgres restarted,"
        f" then down {args.outage:g} s"
    )
    print(
        f"  paused by design (hold out, database away): slots due +{o.pause[0] - o.start:.1f} s"
        f" to +{o.pause[1] - o.start:.1f} s, {o.lost['paused_slots']:,} slots, of which"
        f" {o.lost['paused_run_anyway']:,} ran anyway; longest time without a request:"
        f" {o.gap:.1f} s"
    )
    print(
        f"  slots expected (the window outside the pause): {o.lost['expected']:,};"
        f" not run: {o.lost['not_run']:,}"
    )
    outcomes = [
        (
            f"results lost (expected or served, none stored): {o.lost['lost']:,}"
            f" (served, none stored: {o.lost['served_not_stored']:,})",
            o.lost["lost"] == 0,
        ),
        (f"runs stored per slot, max: {o.stored_max:.0f}", o.stored_max <= 1),
        (f"requests per slot at the target, max: {o.sent_max:.0f}", o.sent_max <= 1),
        (
            f"pages per FIRING message, max: {max(o.pages.values(), default=0)} over"
            f" {len(o.pages)} messages (deliveries, same id counted: "
            f"{max(o.firing.values(), default=0)})",
            bool(o.pages) and max(o.pages.values()) == 1,
        ),
        (
            "alerts decided during the outage paged: "
            f"{sum(1 for n in o.flipping if any(n in t for t in o.firing))} of {len(o.flipping)}",
            all(any(n in t for t in o.firing) for n in o.flipping),
        ),
    ]
    if o.lost["missed_due"]:
        offsets = Counter(round(due - o.start) for due in o.lost["missed_due"])
        print(
            "  expected slots with no stored run, due at (+s: count):",
            dict(sorted(offsets.items())),
        )
    for alert, count in o.pages.items():
        if count > 1:
            print(f"  {alert} paged {count} times; what the receiver got for its check:")
            check = alert.split()[1] if len(alert.split()) > 1 else alert
            for at, title in o.posts:
                if f" {check} " in title:
                    print(f"    +{at:.1f} s  {title}")
    met, detail = re_formed(o.views, args.replicas, args.checks)
    outcomes.append((f"cluster re-formed, {detail}", met))
    for label, ok in outcomes:
        print(f"  {label}  {'met' if ok else 'BROKEN'}")
    return 0 if all(ok for _, ok in outcomes) else 1
