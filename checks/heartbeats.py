"""The last heartbeat pushed by each sync job, as `type: freshness` checks read it.

The push endpoint (monitor.web.heartbeats) records into the book, the storage mirrors it to the
database so a restart keeps it (monitor.storage.heartbeats), and heartbeat-source freshness
checks read it through their run context.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Heartbeat:
    """The last word from one job: its last success and its last reported failure."""

    last_success: float | None = None
    count: int | None = None
    last_failure: float | None = None
    message: str | None = None

    @property
    def failing(self) -> bool:
        """True when the newest report is a failure."""
        if self.last_failure is None:
            return False
        return self.last_success is None or self.last_failure >= self.last_success


class HeartbeatBook:
    """Last heartbeat per check, plus when intmon started waiting for each one."""

    def __init__(self) -> None:
        self._beats: dict[str, Heartbeat] = {}
        self._watching: dict[str, float] = {}

    def record(
        self,
        check: str,
        ts: float,
        count: int | None = None,
        failed: bool = False,
        message: str | None = None,
    ) -> Heartbeat:
        beat = self._beats.setdefault(check, Heartbeat())
        if failed:
            beat.last_failure, beat.message = ts, message
        else:
            beat.last_success, beat.count = ts, count
        return beat

    def last(self, check: str) -> Heartbeat | None:
        return self._beats.get(check)

    def watching_since(self, check: str, now: float) -> float:
        """When intmon began waiting for this check's heartbeat: the first time it asked."""
        return self._watching.setdefault(check, now)

    def watched_since(self, check: str, since: float) -> None:
        """Resume waiting from `since`, as the last process did (rebuilt from its runs): else
        a restart would restart the wait, so a job that never pushed would look fresh again."""
        self._watching[check] = min(since, self._watching.get(check, since))

    def merge(self, check: str, stored: Heartbeat) -> None:
        """Take a stored heartbeat where it is newer: a push another replica took."""
        beat = self._beats.setdefault(check, Heartbeat())
        if (stored.last_success or 0.0) > (beat.last_success or 0.0):
            beat.last_success, beat.count = stored.last_success, stored.count
        if (stored.last_failure or 0.0) > (beat.last_failure or 0.0):
            beat.last_failure, beat.message = stored.last_failure, stored.message

    def restore(self, beats: dict[str, Heartbeat]) -> None:
        """Take the heartbeats persisted before a restart (see monitor.storage.heartbeats)."""
        self._beats.update(beats)
