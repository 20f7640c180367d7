"""py-spy during the measured period, summarised by self and inclusive time."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from harness import (
    BenchError,
    Child,
    Processes,
)
from probe_common import PROFILE_SOURCES

# --- profiling -----------------------------------------------------------------------------


def start_profiler(
    raw_path: str | None,
    py_spy: str | None,
    pid: int,
    seconds: float,
    processes: Processes,
    gil: bool = False,
) -> tuple[Child, Path] | None:
    """py-spy on `pid` for `seconds`, into `raw_path` (None: no profile). `gil`: sample only
    the thread holding the GIL, so threads waiting on the database count for nothing."""
    if not raw_path:
        return None
    spy = py_spy or shutil.which("py-spy")
    if spy is None:
        raise BenchError("--profile needs py-spy (pip install py-spy) or --py-spy PATH")
    raw = Path(raw_path)
    argv = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(round(seconds)),
        "--rate",
        "100",
        "--nonblocking",
        *(["--gil"] if gil else []),
        "--format",
        "raw",
        "--output",
        str(raw),
    ]
    return processes.start("py-spy", argv), raw


def finish_profiler(profiler: tuple[Child, Path] | None, processes: Processes) -> None:
    if profiler is None:
        return
    child, raw = profiler
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.proc.wait(30)  # it ends with the period, or when intmon does
    processes.stop(child)
    if raw.exists():
        summarize_profile(raw)
    else:
        print(f"py-spy wrote no profile:\n{child.tail()}")


def summarize_profile(raw: Path, top: int = 15) -> None:
    """Self time by function (leaf frames), and inclusive time of intmon's own functions."""
    leaf: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        raw_frames = stack.split(";")
        frames = [_frame(f) for f in raw_frames]
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + count
        # Matched on the full path: the short names drop the package's top directory.
        own = {_frame(f) for f in raw_frames if any(src in f for src in PROFILE_SOURCES)}
        for frame in own:
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not samples:
        print("profile: no samples")
        return
    print(f"\nprofile ({samples} samples of busy threads, {raw}):")
    for title, table in (("self time", leaf), ("inclusive, intmon code", inclusive)):
        print(f"  top {top} by {title}:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {count * 100 / samples:5.1f}%  {frame}")


def _frame(frame: str) -> str:
    """'func (path/to/file.py:12)' -> 'func (file.py)': lines split one function apart."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if where else name
