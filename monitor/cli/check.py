"""`intmon check` and `intmon schema`: checks seen directly, run once or by the response shape
they learned."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from checks.base import CheckConfig, Result, RunContext
from monitor import __version__
from monitor.cli.common import (
    EXIT_CONFIG,
    EXIT_FAIL,
    EXIT_OK,
    opened_store,
    quota_cell,
    sunset_cell,
    table,
)
from monitor.config.settings import Config
from monitor.core.clock import SystemClock
from monitor.core.redact import Redactor
from monitor.core.units import format_duration
from monitor.engine.runner import Runner, make_session
from monitor.engine.shapes import accept_now, restore_tracker
from monitor.signals.shapes import ShapeTracker
from monitor.storage.shapes import load_shape, save_accepted


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    if _unknown_checks(config, args.names):
        return EXIT_CONFIG
    selected = [c for c in config.checks if not args.names or c.name in args.names]
    results = asyncio.run(_check_once(config, selected))
    now = SystemClock().time()
    rows = [_check_row(c.name, r, now) for c, r in zip(selected, results, strict=True)]
    header = ["CHECK", "RESULT", "STATUS", "LATENCY", "QUOTA", "SUNSET", "REQUEST ID", "ERROR"]
    print(table([*header, "REASON"], rows))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAIL


def _unknown_checks(config: Config, names: Sequence[str]) -> bool:
    """Says on stderr which of `names` the config does not hold; True if any."""
    known = {c.name for c in config.checks}
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"no check named {', '.join(unknown)} in {config.source}", file=sys.stderr)
    return bool(unknown)


def _check_row(name: str, result: Result, now: float) -> list[object]:
    signals = result.signals
    sunset = signals.get("sunset")
    left = max(0.0, sunset - now) if isinstance(sunset, int | float) else None
    return [
        name,
        "PASS" if result.ok else "FAIL",
        result.status or "-",
        format_duration(result.latency or 0),
        quota_cell(signals.get("quota_remaining"), signals.get("quota_limit")),
        sunset_cell(bool(signals.get("deprecated")), left),
        result.request_id or "-",
        result.error_class or "",
        result.reason,
    ]


async def _check_once(config: Config, checks: list[CheckConfig]) -> list[Result]:
    concurrency = config.monitor.concurrency
    async with make_session(concurrency) as session, make_session(concurrency, True) as kept:
        ctx = RunContext(
            session, SystemClock(), Redactor(config.secrets), f"intmon/{__version__}",
            kept_alive=kept,
        )  # fmt: skip
        runner = Runner(ctx, config.monitor.concurrency, config.monitor.per_host_concurrency)
        results = await asyncio.gather(*(runner.execute(c) for c in checks))
        return [r for r in results if r is not None]  # nothing refuses a one-shot run


def cmd_schema(config: Config, args: argparse.Namespace) -> int:
    if _unknown_checks(config, [args.name]):
        return EXIT_CONFIG
    # Printing only reads; accepting writes from this process, as `intmon silence` does, and
    # the daemon takes it up at the check's next run.
    tracker = ShapeTracker()
    with opened_store(config, writing=args.accept) as store:
        row = load_shape(store.engine, args.name)
        if row is not None:
            restore_tracker(tracker, row)
        if args.accept:
            accepted = accept_now(tracker, SystemClock().time())
            if accepted is None:
                print(f"{args.name} has answered no JSON body yet: nothing to accept")
                return EXIT_FAIL
            save_accepted(store.engine, args.name, *accepted)
            print(f"{args.name}: the last response's shape is the learned one now")
    if tracker.learned is None:
        print(f"{args.name}: no response shape learned yet (no JSON body seen)")
        return EXIT_FAIL
    print(_shape_text(args.name, tracker))
    return EXIT_FAIL if tracker.drift is not None and tracker.drift.drifted else EXIT_OK


def _shape_text(name: str, tracker: ShapeTracker) -> str:
    status = tracker.status()
    learned = tracker.learned
    assert learned is not None
    head = f"{name}: {status.state} (learned from {status.learned_from} bodies, "
    head += f"{status.fields} paths{', truncated' if status.truncated else ''})"
    diff = [f"  {line}" for line in (*status.changes, *status.new_fields)]
    rows = [[p, f.shown(), "optional" if f.optional else ""] for p, f in learned.fields.items()]
    return "\n".join([head, *diff, "", table(["PATH", "TYPES", "PRESENCE"], rows)])
