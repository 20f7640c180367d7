"""What the daemon currently knows about each check, for the status API and later signals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from monitor.storage.store import RunRecord, RunRow


@dataclass
class CheckState:
    name: str
    last: RunRecord | None = None
    last_success: float | None = None
    last_failure: float | None = None
    runs: int = 0  # since this process started

    def update(self, record: RunRecord) -> None:
        self.last = record
        self.runs += 1
        if record.ok:
            self.last_success = record.ts
        else:
            self.last_failure = record.ts

    def seed(self, row: RunRow) -> None:
        """Restore the last known result from the database after a restart."""
        self.last = RunRecord(
            check=row.check,
            ts=row.ts,
            ok=row.ok,
            error_class=row.error_class,
            status=row.status,
            latency=row.latency,
            reason=row.reason,
            signals=json.loads(row.signals or "{}"),
        )
        if row.ok:
            self.last_success = row.ts
        else:
            self.last_failure = row.ts

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
