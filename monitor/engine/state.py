"""Each check's last result and when it last passed and failed, kept by the daemon (restored
from the database on start) for the status API, the status page and `intmon status`."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.engine.status import LastRun, State
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
    def last_run(self) -> LastRun | None:
        return None if self.last is None else LastRun.of(self.last)

    @property
    def health(self) -> State:
        if self.last is None:
            return "unknown"
        return "up" if self.last.ok else "down"
