"""Stored baselines of the figure benchmarks (benchmarks/baseline-<name>.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load(path: Path) -> dict[str, Any] | None:
    baseline: dict[str, Any] | None = json.loads(path.read_text()) if path.exists() else None
    return baseline


def write(
    path: Path, name: str, figures: dict[str, float], baseline: dict[str, Any] | None
) -> None:
    """The new baseline leads; the ones before it stay under `previous`, newest first."""
    previous = []
    if baseline is not None:
        previous = [{"name": baseline["name"], "figures": baseline["figures"]}]
        previous += baseline.get("previous", [])
    new = {"name": name, "figures": figures, "previous": previous}
    path.write_text(json.dumps(new, indent=2) + "\n")
    print(f"baseline {name!r} written to {path}")
