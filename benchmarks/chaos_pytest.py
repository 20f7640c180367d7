"""The parts of `make chaos` that are tests of the suite itself, run by pytest: the secret canary
(scenario 5) and the property-based config tests under HYPOTHESIS_PROFILE=chaos (scenario 4)."""

from __future__ import annotations

import ast
import asyncio
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chaos_common import REPO, Outcome
from harness import child_env

CANARY = REPO / "tests" / "test_canary.py"


@dataclass
class PytestRun:
    passed: bool
    summary: str  # pytest's last line, e.g. "3 passed in 41.2s"
    output: str


def hypothesis_tests() -> list[Path]:
    """The test files that use hypothesis (the hostile-config property tests)."""
    found = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        text = path.read_text(errors="replace")
        if re.search(r"^\s*(from|import) hypothesis", text, re.MULTILINE):
            found.append(path)
    return found


async def pytest(paths: list[Path], workdir: Path, env: dict[str, str], limit: float) -> PytestRun:
    log = workdir / "pytest.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rfE",
            *map(str, paths),
            cwd=REPO,
            stdout=out,
            stderr=out,
            env={**child_env(), **env},
        )
        try:
            code = await asyncio.wait_for(proc.wait(), limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            code = None
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1].strip("= ") if lines else "no output"
    if code is None:
        last = f"killed after {limit:.0f} s"
    print(
        f"    pytest {' '.join(p.name for p in paths)}: {last} ({time.monotonic() - started:.0f} s)"
    )
    if code != 0:
        for line in lines[-25:]:
            print(f"    | {line}")
    return PytestRun(code == 0, last, text)


async def canary(workdir: Path) -> Outcome:
    outcome = Outcome("canary")
    if not CANARY.exists():
        outcome.add("tests/test_canary.py", "absent: nothing proves the secret guarantee", False)
        return outcome
    result = await pytest([CANARY], workdir, {}, limit=900)
    # The test greps every surface for the secret in every spelling; a hit fails it with a
    # {place: [spellings]} map, whose entries are the hits.
    found = re.search(r"canary leaked \(place: spellings\): (\{.*\})", result.output)
    if found:
        try:
            leaks = ast.literal_eval(found.group(1))
            shown = f"{sum(len(v) for v in leaks.values())} in {', '.join(leaks)}"
        except (ValueError, SyntaxError):
            shown = found.group(1)  # quoted as the test printed it
    else:
        shown = "0" if result.passed else "unknown: the test failed before its search"
    outcome.add("canary hits", shown, result.passed)
    outcome.add("tests/test_canary.py", result.summary, result.passed)
    return outcome
