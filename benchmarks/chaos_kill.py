"""Scenario 1: kill -9 at random points, then restart, over and over.

A real `intmon run` on a SQLite file watches steady checks and flapping ones (their target fails
half of every `period`, so alerts fire and resolve), and pages a local json:// receiver. The
daemon is SIGKILLed at random moments, in turn: at a uniform random time once it is up, a few
milliseconds after a page arrived (the window between Apprise's send and the `sent` mark), and
at a random moment while it is still starting. After the last kill every target heals and one
more daemon runs until nothing is left to deliver, then stops gracefully. The figures:

- the database's `PRAGMA integrity_check`;
- runs lost per kill: requests the target saw minus runs stored, per daemon lifetime, and how
  long before the kill the oldest lost run started (the write batch a kill may lose);
- pages lost (outbox rows, the daemon's own record of every transition, that never reached the
  receiver), pages repeated (one notification received twice), and pages out of order (FIRING
  after FIRING or RESOLVED after RESOLVED of one alert, which a lost or false page would cause,
  or an alert still FIRING at the receiver once every target has healed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from chaos_common import (
    ChaosError,
    Intmon,
    Outcome,
    TimedReceiver,
    has_stable_id,
    post_id,
    start_app,
    wait_until,
)

STEADY = 4
FLAPPING = 2
INTERVAL = 0.2  # seconds between runs of each check
FLUSH_INTERVAL = 0.2  # the writer's batch period (monitor.storage.writer.Writer)
# Where the kills land, in turn: anywhere once it is up, a few ms after a page arrived, and
# while it is still starting.
TRIGGERS = ("random", "after-page", "starting")


@dataclass
class FlakyTarget:
    """`/api/{name}` answers 200, or 503 for flapping names in the second half of each period."""

    period: float = 6.0
    healed: bool = False
    started: float = field(default_factory=time.time)
    seen: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def broken(self, name: str) -> bool:
        phase = ((time.time() - self.started) / self.period) % 1.0
        return not self.healed and name.startswith("flap") and phase >= 0.5

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.seen[name].append(time.time())
        if self.broken(name):
            return web.json_response({"error": {"message": "down on purpose"}}, status=503)
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/{name}", self.handle)
        return app


def config_body(target_url: str, receiver_url: str) -> str:
    lines = [
        "alerting: {group_wait: 0s}",
        f"notifiers: [{{name: chat, urls: ['{receiver_url}']}}]",
        # The relative latency rule could page on a loaded machine: only error_rate may page
        # here, so every page has a known cause.
        f"defaults: {{interval: {int(INTERVAL * 1000)}ms, timeout: 2s,"
        " alerts: {latency_p95: false}}",
        "checks:",
    ]
    names = [f"steady-{i}" for i in range(STEADY)] + [f"flap-{i}" for i in range(FLAPPING)]
    for name in names:
        lines.append(
            f"  - {{name: {name}, request: {{url: '{target_url}/api/{name}'}}, notify: [chat],"
            " alerts: {error_rate: {window: 1s, min_runs: 3, resolve_after: 2}}}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Life:
    """One daemon lifetime: from spawn to its SIGKILL (unix seconds)."""

    start: float
    end: float
    trigger: str  # one of TRIGGERS


def stored_runs(db: Path) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = defaultdict(list)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        query = "select c.name, r.ts from runs r join checks c on c.id = r.check_id order by r.ts"
        for name, ts in conn.execute(query):
            runs[name].append(ts)
    return runs


def runs_lost(
    lives: list[Life], seen: dict[str, list[float]], stored: dict[str, list[float]]
) -> tuple[list[int], float]:
    """Per life, runs the target saw but the database lacks; and the largest age at the kill
    of a lost run. A check's runs are sequential and written in order, so what is stored of a
    life is a prefix of what the target saw in it."""
    per_kill: list[int] = []
    oldest = 0.0
    for life in lives:
        lost = 0
        for name, times in seen.items():
            got = [t for t in times if life.start <= t <= life.end]
            kept = sum(1 for t in stored.get(name, ()) if life.start <= t <= life.end)
            missing = max(len(got) - kept, 0)
            lost += missing
            if missing:
                oldest = max(oldest, life.end - got[len(got) - missing])
        per_kill.append(lost)
    return per_kill, oldest


def page_figures(posts: list[dict[str, Any]], db: Path) -> dict[str, int]:
    """Pages lost, repeated and out of order, from what the receiver got and the outbox."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        outbox = conn.execute("select title, body, status from outbox").fetchall()
    received = Counter(post_id(p) for p in posts)
    repeated = sum(n - 1 for n in received.values())
    lost = 0
    for title, body, _status in outbox:
        if not any(title in str(p.get("title")) and body in str(p.get("message")) for p in posts):
            lost += 1
    out_of_order = 0
    last: dict[str, str] = {}
    unique: dict[str, dict[str, Any]] = {}
    sequences: dict[str, list[str]] = defaultdict(list)  # per alert, for the post-mortem
    bad: set[str] = set()
    for post in posts:
        unique.setdefault(post_id(post), post)
    for post in unique.values():
        title = str(post.get("title"))
        state, _, rest = title.partition(": ")
        alert = " ".join(rest.split(" ")[:2])  # "<check> <rule>"
        sequences[alert].append(f"{state} {post_id(post)[-8:]}")
        if state == "FIRING" and ", " in title:
            continue  # escalation or reminder: no change of firing/resolved
        if last.get(alert, "RESOLVED") == state:
            out_of_order += 1
            bad.add(alert)
        last[alert] = state
    # Every target healed before the end: an alert whose last page is FIRING lost its RESOLVED.
    for alert, state in last.items():
        if state != "RESOLVED":
            out_of_order += 1
            bad.add(alert)
    for alert in sorted(bad):
        print(f"    {alert} received: {' → '.join(sequences[alert])}")
    return {
        "outbox": len(outbox),
        "received": len(posts),
        "lost": lost,
        "repeated": repeated,
        "out_of_order": out_of_order,
        "unsent": sum(1 for *_, status in outbox if status != "sent"),
    }


def integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("pragma integrity_check").fetchall()
    return "; ".join(str(r[0]) for r in rows)


@dataclass
class Storm:
    """What the kills did: each daemon lifetime, and restarts that did not come up."""

    lives: list[Life] = field(default_factory=list)
    failed_starts: int = 0
    final_exit: int | None = None
    last: Life | None = None  # the daemon stopped with SIGTERM at the end
    settled: bool = False


async def storm(
    daemon: Intmon, target: FlakyTarget, receiver: TimedReceiver, kills: int, seed: int
) -> Storm:
    rng = random.Random(seed)
    done = Storm()
    for i in range(kills):
        spawned = time.time()
        trigger = TRIGGERS[i % len(TRIGGERS)]
        if trigger == "starting":
            # While it opens the database, checks its schema, reloads alert state.
            await daemon.spawn()
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            await daemon.kill()
            done.lives.append(Life(spawned, time.time(), trigger))
            continue
        try:
            await daemon.start()
        except ChaosError as exc:
            done.failed_starts += 1
            print(f"  restart {i} failed: {exc}")
            await daemon.kill()
            continue
        if trigger == "random":
            await asyncio.sleep(rng.uniform(0.2, 3.0))
        else:
            # Right after a page: the send is done, the `sent` mark may not be.
            posts = len(receiver.posts)
            if not await wait_until(lambda n=posts: len(receiver.posts) > n, within=8.0):
                trigger = "random"  # no page came: a plain random kill
            await asyncio.sleep(rng.uniform(0.0, 0.03))
        await daemon.kill()
        done.lives.append(Life(spawned, time.time(), trigger))
    # Everything heals; a last daemon delivers what is owed and stops gracefully.
    target.healed = True
    spawned = time.time()
    await daemon.start()
    done.settled = await settle(daemon, within=90.0)
    await asyncio.sleep(1.0)
    done.final_exit = await daemon.stop()
    done.last = Life(spawned, time.time(), "graceful")
    return done


async def run(workdir: Path, kills: int, seed: int) -> Outcome:
    target = FlakyTarget()
    receiver = await TimedReceiver().start()
    runner, target_url = await start_app(target.app())
    daemon = Intmon(workdir)
    daemon.write_config(config_body(target_url, receiver.url))
    try:
        done = await storm(daemon, target, receiver, kills, seed)
    finally:
        await daemon.kill()
        await runner.cleanup()
        await receiver.stop()
    return report(done, workdir / "monitor.db", target, receiver.posts)


def report(done: Storm, db: Path, target: FlakyTarget, posts: list[dict[str, Any]]) -> Outcome:
    outcome = Outcome("kill -9")
    lives = done.lives
    per_kill, oldest = runs_lost(lives, dict(target.seen), stored_runs(db))
    pages = page_figures(posts, db)
    kinds = Counter(life.trigger for life in lives)
    check = integrity(db)
    outcome.add(
        "kills (random / right after a page / starting)",
        " / ".join(str(kinds[t]) for t in TRIGGERS),
    )
    outcome.add("restarts that failed", done.failed_starts, done.failed_starts == 0)
    outcome.add("PRAGMA integrity_check", check, check == "ok")
    outcome.add("runs the targets saw", sum(len(t) for t in target.seen.values()))
    outcome.add(
        "runs lost per kill (mean / max)",
        f"{sum(per_kill) / max(len(per_kill), 1):.1f} / {max(per_kill, default=0)}",
    )
    # A kill may lose the batch being gathered (FLUSH_INTERVAL) and the runs still in flight
    # (one INTERVAL each); a lost run older than that would mean a written batch went missing.
    bound = FLUSH_INTERVAL + INTERVAL + 0.3
    outcome.add("oldest lost run, before its kill", f"{oldest * 1000:.0f} ms", oldest <= bound)
    if done.last is not None:
        # SIGTERM lets in-flight runs finish and writes every pending row: nothing is lost.
        graceful, _ = runs_lost([done.last], dict(target.seen), stored_runs(db))
        outcome.add("runs lost at the graceful stop", graceful[0], graceful[0] == 0)
    outcome.add("pages the daemon queued (outbox rows)", pages["outbox"])
    outcome.add("pages received", pages["received"])
    outcome.add("pages lost", pages["lost"], pages["lost"] == 0 and pages["unsent"] == 0)
    # At-least-once allows a repeat only when it carries the stable id a receiver drops it by.
    with_id = bool(posts) and all(has_stable_id(p) for p in posts)
    outcome.add(
        "pages repeated" + (" (same stable id)" if with_id else " (same title + body, no id)"),
        pages["repeated"],
        pages["repeated"] == 0 or with_id,
    )
    outcome.add(
        "pages out of order (false or missing)", pages["out_of_order"], not pages["out_of_order"]
    )
    outcome.add(
        "final graceful stop",
        f"exit {done.final_exit}, settled {done.settled}",
        done.final_exit == 0 and done.settled,
    )
    return outcome


async def settle(daemon: Intmon, within: float) -> bool:
    """Wait until nothing fires and nothing is left to deliver (the daemon's /metrics)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        try:
            text = await daemon.get("/metrics")
        except (aiohttp.ClientError, OSError) as exc:
            print(f"  /metrics did not answer ({exc}); asking again")
            continue
        # By value, not spelling: intmon writes whole numbers as `0`, not `0.0`.
        samples = [line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#")]
        firing = [n for n, v in samples if n.startswith("intmon_alert_firing") and float(v)]
        pending = [float(v) for n, v in samples if n == "intmon_outbox_pending"]
        if pending == [0.0] and not firing:
            return True
    return False
