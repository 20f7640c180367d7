"""Scenario 4: hostile configs through `intmon validate`.

`count` files from chaos_corpus.py (seeded) go through `monitor.cli.main(["validate", ...])`,
the function behind the `intmon` command, each in a fresh process: a driver (this file run as
`chaos_fuzz.py drive DIR`) imports intmon once and forks one child per file, so 300 files take
seconds, not minutes of interpreter start-up. A child gets a 1.5 GiB address-space limit (an
alias bomb must not take the machine down with it) and 10 s; what it printed is kept.

Figures: exit codes (0 or 2 only), tracebacks (must be 0), the slowest file (must be < 5 s),
and, when the hostile-config work's hypothesis tests are present, their run under
HYPOTHESIS_PROFILE=chaos.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import chaos_corpus
import chaos_pytest
from chaos_common import Outcome

PER_FILE_TIMEOUT = 10.0
SLOWEST_ALLOWED = 5.0
ADDRESS_SPACE = 1536 * 1024 * 1024


def _child(path: Path, out: Path) -> None:
    """In the forked child: validate `path` as `intmon validate` would, then exit."""
    from monitor.cli import main  # noqa: PLC0415 - imported (and forked from) in the driver

    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    try:
        code = main(["validate", "--config", str(path)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        # What the `intmon` console script would do with an escaped exception: print it, exit 1.
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def drive(directory: Path) -> None:
    """Validate every `*.yaml` of `directory`, one forked child each; one JSON line per file."""
    import monitor.cli  # noqa: F401, PLC0415 - loaded once, before forking

    for path in sorted(directory.glob("*.yaml")):
        out = path.with_suffix(".out")
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(path, out)
        status, killed = 0, False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() - started > PER_FILE_TIMEOUT:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                killed = True
                break
            time.sleep(0.005)
        seconds = time.monotonic() - started
        code = os.waitstatus_to_exitcode(status) if not killed else None
        text = out.read_text(errors="replace")
        row = {
            "file": path.name,
            "code": code,
            "seconds": seconds,
            "traceback": "Traceback (most recent call last)" in text,
            "first_line": text.strip().splitlines()[-1][:160] if text.strip() else "",
        }
        print(json.dumps(row), flush=True)


async def run(workdir: Path, count: int, seed: int) -> Outcome:
    outcome = Outcome("fuzz")
    corpus = workdir / "corpus"
    corpus.mkdir()
    families: dict[str, str] = {}
    for i, (family, data) in enumerate(chaos_corpus.corpus(count, seed)):
        name = f"{i:04d}-{family}.yaml"
        (corpus / name).write_bytes(data)
        families[name] = family
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "drive", str(corpus), stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=count * PER_FILE_TIMEOUT)
    rows = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    codes = Counter("killed" if r["code"] is None else r["code"] for r in rows)
    crashed = [r for r in rows if r["traceback"]]
    slowest = max(rows, key=lambda r: r["seconds"], default=None)
    outcome.add("hostile configs validated", f"{len(rows)} of {count}", len(rows) == count)
    outcome.add(
        "exit codes", ", ".join(f"{c}: {n}" for c, n in sorted(codes.items(), key=str)),
        set(codes) <= {0, 2},
    )  # fmt: skip
    outcome.add("tracebacks", len(crashed), not crashed)
    by_family = Counter(families[r["file"]] for r in crashed)
    if by_family:
        outcome.add("tracebacks by family", dict(by_family.most_common()))
        for row in crashed[:5]:
            print(f"    {row['file']}: {row['first_line']}")
    if slowest is not None:
        outcome.add(
            "slowest file (family)",
            f"{slowest['seconds']:.2f} s ({families[slowest['file']]})",
            slowest["seconds"] < SLOWEST_ALLOWED,
        )
    property_tests = chaos_pytest.hypothesis_tests()
    if property_tests:
        result = await chaos_pytest.pytest(
            property_tests, workdir, {"HYPOTHESIS_PROFILE": "chaos"}, limit=900
        )
        # The property tests print their own figure: how many files, and the slowest.
        ran = re.search(r"config fuzz: (\d+) files validated, slowest ([\d.]+) ?s", result.output)
        if ran:
            outcome.add("hypothesis files validated (slowest)", f"{ran[1]} ({ran[2]} s)")
        outcome.add("hypothesis tests (profile chaos)", result.summary, result.passed)
    else:
        outcome.add("hypothesis tests (profile chaos)", "none in tests/ yet")
    return outcome


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "drive":
        drive(Path(sys.argv[2]))
    else:
        sys.exit("usage: chaos_fuzz.py drive DIR (make chaos runs it)")
