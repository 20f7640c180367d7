"""`make chaos`: intmon's own fault-injection suite. It prints figures and exits 1 when one of
the guarantees in README's Guarantees section does not hold.

Scenarios (each prints its figures, then a summary table closes the run):

1. kill     kill -9 at random points of a real `intmon run`, restart, repeat (chaos_kill.py)
2. outage   a 40 s notifier outage while an alert fires and resolves (chaos_outage.py)
3. hostile  hostile targets beside healthy checks (chaos_hostile.py)
4. fuzz     hostile configs through `intmon validate` (chaos_fuzz.py)
5. canary   the secret canary test, tests/test_canary.py

Everything runs on loopback, on ports the kernel picks, in a temporary directory, and stops by
itself; `--keep` keeps the directory (databases, logs, configs) for a post-mortem.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import chaos_fuzz
import chaos_hostile
import chaos_kill
import chaos_outage
import chaos_pytest
from chaos_common import Outcome

SCENARIOS = ("kill", "outage", "hostile", "fuzz", "canary")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--kills", type=int, default=24, help="kill -9s (>= 20 for the claim)")
    parser.add_argument("--outage", type=float, default=40.0, help="notifier outage, seconds")
    parser.add_argument("--healthy", type=int, default=40, help="healthy checks beside hostile")
    parser.add_argument("--hostile-period", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--configs", type=int, default=320, help="hostile configs (>= 300)")
    parser.add_argument("--seed", type=int, default=None, help="for a reproducible run")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace, root: Path) -> list[Outcome]:
    jobs: dict[str, Callable[[Path], Awaitable[Outcome]]] = {
        "kill": lambda d: chaos_kill.run(d, args.kills, args.seed),
        "outage": lambda d: chaos_outage.run(d, args.outage),
        "hostile": lambda d: chaos_hostile.run(d, args.healthy, args.hostile_period),
        "fuzz": lambda d: chaos_fuzz.run(d, args.configs, args.seed),
        "canary": chaos_pytest.canary,
    }
    outcomes = []
    for name in SCENARIOS:
        if name not in args.only:
            continue
        workdir = root / name
        workdir.mkdir()
        print(f"\n== {name} ==", flush=True)
        started = time.monotonic()
        try:
            outcome = await jobs[name](workdir)
        except Exception as exc:
            # The harness failed, not (necessarily) intmon: report it as a scenario that could
            # not prove its guarantee, keep going with the others.
            outcome = Outcome(name, error=f"{type(exc).__name__}: {exc}")
            print(f"  could not finish: {outcome.error}")
        print(f"  ({time.monotonic() - started:.0f} s)")
        outcomes.append(outcome)
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    """One row per figure a guarantee rests on, then one verdict per scenario."""
    rows = [("scenario", "figure", "value", "")]
    for outcome in outcomes:
        if outcome.error:
            rows.append((outcome.scenario, "could not finish", outcome.error, "BROKEN"))
        for figure in outcome.figures:
            if figure.ok is not None:
                # The scenario's own output above has the value in full.
                value = figure.value if len(figure.value) <= 64 else figure.value[:61] + "..."
                rows.append((outcome.scenario, figure.name, value, _verdict(figure.ok)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["", "== summary =="]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
    lines.append("")
    for outcome in outcomes:
        lines.append(f"{outcome.scenario:<10} {_verdict(outcome.ok)}")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "held" if ok else "BROKEN"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed is None:
        args.seed = int(time.time())
    print(f"make chaos: seed {args.seed} (--seed {args.seed} repeats the random choices)")
    root = Path(tempfile.mkdtemp(prefix="intmon-chaos-"))
    try:
        outcomes = asyncio.run(run_all(args, root))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(summary(outcomes))
    broken = [o.scenario for o in outcomes if not o.ok]
    print(f"\n{'BROKEN: ' + ', '.join(broken) if broken else 'every guarantee held'}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
