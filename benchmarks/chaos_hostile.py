"""Scenario 3: hostile targets (chaos_targets.py) beside healthy checks.

The healthy checks poll a well-behaved server on ::1 while the hostile ones hit 127.0.0.1, so
the per-host cap (`per_host_concurrency`, by design shared by one host's checks) does not couple
the two groups. Over `period` seconds, after a warm-up, the figures are:

- the healthy checks' on-time share (`intmon_scheduler_lateness_seconds`: runs started within
  100 ms of their slot) and their runs completed against the runs their interval asks for;
- each hostile check's error classes (README, "Results and error classes", says which);
- the longest run of any check (timeouts hold: none over 5 s) and the daemon's peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter, defaultdict
from pathlib import Path

from chaos_common import Intmon, Outcome
from chaos_targets import Hostile, healthy_server
from harness import Samples, scrape

MB = 1024 * 1024
HEALTHY_INTERVAL = 1.0
HOSTILE_INTERVAL = 2.0
HOSTILE_TIMEOUT = 3.0
LONGEST_ALLOWED = 5.0
WARMUP = 5.0
# What each hostile target must be recorded as (README, "Results and error classes").
EXPECTED = {
    "huge": {"invalid_response"},
    "hang": {"timeout"},
    "drip": {"timeout"},
    "redirect-loop": {"invalid_response"},
    "gzip-bomb": {"invalid_response"},
    "bad-utf8": {"invalid_response"},
    "header-flood": {"invalid_response"},
    "reset": {"connect", "invalid_response"},
}


def config_body(healthy_url: str, healthy: int, hostile: dict[str, str]) -> str:
    lines = ["defaults: {alerts: {latency_p95: false}}", "checks:"]
    for i in range(healthy):
        lines.append(
            f"  - {{name: healthy-{i}, interval: {HEALTHY_INTERVAL:g}s, timeout: 2s,"
            f" request: {{url: '{healthy_url}/ok/healthy-{i}'}}}}"
        )
    for name, url in hostile.items():
        # A text assertion makes the check decode the body, as most real checks do.
        lines.append(
            f"  - {{name: {name}, interval: {HOSTILE_INTERVAL:g}s, timeout: {HOSTILE_TIMEOUT:g}s,"
            f" request: {{url: '{url}'}}, expect: {{body_contains: ok}}}}"
        )
    return "\n".join(lines) + "\n"


def lateness(samples: Samples) -> tuple[float, float]:
    """(observations, of them within 100 ms) of the lateness histogram."""
    count = within = 0.0
    for labels, value in samples.get("intmon_scheduler_lateness_seconds_bucket", []):
        if labels.get("le") == "0.1":
            within = value
        if labels.get("le") == "+Inf":
            count = value
    return count, within


def hostile_runs(db: Path) -> tuple[dict[str, Counter[str]], dict[str, float]]:
    """Per check: error classes ("ok" for a pass) and the longest run, in seconds."""
    classes: dict[str, Counter[str]] = defaultdict(Counter)
    longest: dict[str, float] = defaultdict(float)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        query = (
            "select c.name, r.ok, r.error_class, r.latency"
            " from runs r join checks c on c.id = r.check_id"
        )
        for name, ok, error_class, latency in conn.execute(query):
            classes[name]["ok" if ok else str(error_class)] += 1
            longest[name] = max(longest[name], latency or 0.0)
    return classes, longest


async def run(workdir: Path, healthy: int, period: float) -> Outcome:
    outcome = Outcome("hostile")
    hostile = await Hostile().start()
    runner, healthy_url, served = await healthy_server()
    daemon = Intmon(workdir)
    daemon.write_config(config_body(healthy_url, healthy, hostile.urls))
    try:
        await daemon.start()
        await asyncio.sleep(WARMUP)
        before, served_before = scrape(daemon.url + "/metrics"), sum(served.values())
        started = time.monotonic()
        while time.monotonic() - started < period:
            daemon.sample_rss()
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
        after, served_after = scrape(daemon.url + "/metrics"), sum(served.values())
        peak = max(daemon.peak_rss_kernel(), daemon.sample_rss())
        code = await daemon.stop()
    finally:
        await daemon.kill()
        await runner.cleanup()
        await hostile.stop()
    (count0, within0), (count1, within1) = lateness(before), lateness(after)
    on_time = (within1 - within0) / max(count1 - count0, 1.0)
    expected_runs = healthy * elapsed / HEALTHY_INTERVAL
    completed = (served_after - served_before) / expected_runs
    outcome.add("healthy checks / hostile checks", f"{healthy} / {len(hostile.urls)}")
    outcome.add("runs started <= 100 ms late (all checks)", f"{on_time:.1%}", on_time >= 0.95)
    outcome.add("healthy runs completed / scheduled", f"{completed:.1%}", completed >= 0.95)
    classes, longest = hostile_runs(workdir / "monitor.db")
    for name, allowed in EXPECTED.items():
        seen = classes.get(name, Counter())
        text = ", ".join(f"{cls} x{n}" for cls, n in seen.most_common()) or "no runs"
        outcome.add(f"{name}: error_class", text, bool(seen) and set(seen) <= allowed)
    worst = max(longest.items(), key=lambda item: item[1], default=("-", 0.0))
    outcome.add(
        "longest run (check)", f"{worst[1]:.2f} s ({worst[0]})", worst[1] <= LONGEST_ALLOWED
    )
    outcome.add("daemon peak RSS", f"{peak / MB:.0f} MB")
    tracebacks = daemon.log_text().count("Traceback")
    outcome.add("tracebacks in the log", tracebacks, tracebacks == 0)
    outcome.add("graceful stop", f"exit {code}", code == 0)
    return outcome
