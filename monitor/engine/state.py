"""What the daemon currently knows about each check, for the status API and later signals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.storage.store import RunRecord


@dataclass
class CheckState:
    name: str
    last: RunRecord | None = None
    last_success: float | None = None
    last_failure: float | None = None
    runs: int = 0  # since this process started

    def update(self, record: RunRecord) -> None:
        """Take the result of a run of this process."""
        self.seed(record)
        self.runs += 1

    def seed(self, record: RunRecord) -> None:
        """Take a result without counting it: the last one stored, after a restart."""
        self.last = record
        if record.ok:
            self.last_success = record.ts
        else:
            self.last_failure = record.ts

    @property
    def health(self) -> str:
        if self.last is None:
            return "unknown"
        return "up" if self.last.ok else "down"

    def as_json(self) -> dict[str, Any]:
        last = None
        if self.last is not None:
            last = {
                "ts": self.last.ts,
                "ok": self.last.ok,
                "error_class": self.last.error_class,
                "status": self.last.status,
                "latency": self.last.latency,
                "reason": self.last.reason,
            }
        return {
            "state": self.health,
            "last": last,
            "last_success": self.last_success,
            "last_failure": self.last_failure,
            "signals": self.last.signals if self.last else {},
        }
