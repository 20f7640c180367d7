"""Scenario 2: the notifier is down (the receiver answers 503) for `outage` seconds while a check
goes failing and then healthy again.

The promise: FIRING and RESOLVED each arrive once, in that order, after the outage ends; the
outage itself is quiet in the log: a warning when it starts and one when it ends (at most two
warnings), never a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from chaos_common import Intmon, Outcome, TimedReceiver, post_id, start_app, wait_until


@dataclass
class Switch:
    """`/api/x` answers 503 while `broken`, else 200."""

    broken: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        if self.broken:
            return web.json_response({"error": {"message": "down on purpose"}}, status=503)
        return web.json_response({"status": "ok"})


def config_body(target_url: str, receiver_url: str) -> str:
    return (
        "alerting: {group_wait: 0s}\n"
        f"notifiers: [{{name: chat, urls: ['{receiver_url}']}}]\n"
        "checks:\n"
        "  - {name: payments, interval: 200ms, timeout: 2s,"
        f" request: {{url: '{target_url}/api/x'}},"
        " notify: [chat], alerts: {latency_p95: false,"
        " error_rate: {window: 1s, min_runs: 3, resolve_after: 2}}}\n"
    )


async def run(workdir: Path, outage: float) -> Outcome:
    outcome = Outcome("outage")
    switch = Switch()
    app = web.Application()
    app.router.add_get("/api/x", switch.handle)
    runner, target_url = await start_app(app)
    receiver = await TimedReceiver().start()
    daemon = Intmon(workdir)
    daemon.write_config(config_body(target_url, receiver.url))
    try:
        await daemon.start()
        receiver.failing = True
        down_at = time.monotonic()
        switch.broken = True  # fires within ~1 s: the window is 1 s
        await asyncio.sleep(min(10.0, outage / 3))
        switch.broken = False  # resolves after two clear evaluations
        await asyncio.sleep(max(outage - (time.monotonic() - down_at), 0.0))
        receiver.failing = False
        up_at = time.monotonic()
        # Delivery retries back off up to 30 s: allow that and a little more.
        await wait_until(lambda: len(receiver.posts) >= 2, within=45.0, step=0.2)
        await asyncio.sleep(3.0)  # anything more that would arrive (a repeat) arrives now
        code = await daemon.stop()
    finally:
        await daemon.kill()
        await receiver.stop()
        await runner.cleanup()
    titles = [str(p.get("title", "")).split(" (")[0] for p in receiver.posts]
    expected = ["FIRING: payments error_rate", "RESOLVED: payments error_rate"]
    outcome.add("outage", f"{outage:.0f} s, {receiver.refused} attempts answered 503")
    outcome.add("received after the outage", " → ".join(titles) or "nothing", titles == expected)
    if receiver.arrivals:
        delays = ", ".join(f"{t - up_at:.1f} s" for t in receiver.arrivals)
        outcome.add("delivered after the notifier came back", delays)
    ids = {post_id(p) for p in receiver.posts}
    outcome.add("distinct notifications", len(ids), len(ids) == len(receiver.posts))
    log = daemon.log_text()
    tracebacks = log.count("Traceback")
    # The outage is the only fault here: every warning in the log is about it.
    warnings = [line for line in log.splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    outcome.add("warnings logged for the outage", len(warnings), len(warnings) <= 2)
    outcome.add("tracebacks in the log", tracebacks, tracebacks == 0)
    outcome.add("graceful stop", f"exit {code}", code == 0)
    return outcome
