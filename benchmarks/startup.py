"""Start-up benchmark: how `intmon validate` grows with the number of checks configured.

For each size it writes the http checks of `make bench` (nginx need not run: validating
connects to nothing) and runs `intmon validate --config FILE` in a child process: its wall
time and peak RSS. The slope between sizes is the cost of one more check; a straight line
(the same slope from each size to the next) is linear growth. Figures, not pass/fail: they
are printed against the target (100,000 checks validated in < 30 s).

Run: .venv/bin/python benchmarks/startup.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from probe_common import MB, REPO

TARGET_CHECKS, TARGET_SECONDS = 100_000, 30.0


def write_config(path: Path, checks: int) -> None:
    config = {
        "monitor": {"database": str(path.with_suffix(".db")), "log_level": "warning"},
        "defaults": {"interval": "60s", "timeout": "5s"},
        "checks": [
            {
                "name": f"probe-{i:06d}",
                "type": "http",
                "request": {"url": f"http://127.0.0.1:8080/health?check={i}"},
                "expect": {"status": 200},
            }
            for i in range(checks)
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def validate(path: Path) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of `intmon validate` on the file."""
    started = time.monotonic()
    argv = [sys.executable, "-m", "monitor", "validate", "--config", str(path)]
    child = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, _, usage = os.wait4(child.pid, 0)
    took = time.monotonic() - started
    child.returncode = 0  # reaped by wait4 above
    if child.stderr is not None and (err := child.stderr.read()):
        raise SystemExit(f"intmon validate failed on {path}:\n{err.decode()[-2000:]}")
    return took, usage.ru_maxrss * 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="check counts")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.sizes.split(","))
    rows: list[tuple[int, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="intmon-startup-") as tmp:
        for checks in sizes:
            path = Path(tmp) / f"checks-{checks}.yaml"
            write_config(path, checks)
            took, peak = validate(path)
            rows.append((checks, took, peak))
    print(f"\n{'checks':>8}{'validate s':>12}{'peak RSS MB':>13}{'per check (slope)':>20}")
    previous: tuple[int, float, int] | None = None
    for checks, took, peak in rows:
        slope = ""
        if previous is not None:
            more = checks - previous[0]
            slope = (
                f"{(peak - previous[2]) / more:,.0f} B, {(took - previous[1]) / more * 1e6:.0f} us"
            )
        print(f"{checks:>8,}{took:>12.2f}{peak / MB:>13.1f}{slope:>20}")
        previous = (checks, took, peak)
    big = next((took for checks, took, _ in rows if checks >= TARGET_CHECKS), None)
    if big is not None:
        met = "met" if big < TARGET_SECONDS else "MISSED"
        print(f"\n{TARGET_CHECKS:,} checks validated in < {TARGET_SECONDS:g} s: {big:.1f} s  {met}")


if __name__ == "__main__":
    main()
