"""Bounded storage: hourly rollups, pruning past `retention`, incremental vacuum.

Everything runs on the writer's thread through `Writer.submit`, one short transaction at a time
(one hour rolled up, or one batch of deletes), so queued result batches wait for at most one
step and never for a whole pass. Order matters: an hour is rolled up before its raw runs can be
pruned, and raw runs are never pruned past the last hour rolled up, so a failing rollup keeps
history instead of losing it.

With several replicas on one database the maintenance is the cluster's, not each replica's:
`leads` says whether this process does it now (monitor.cluster.replica), and is asked before
every step, so a replica that stops leading stops after the step under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field

from monitor.core.clock import Clock
from monitor.core.model import Model
from monitor.core.units import DAY, Duration
from monitor.storage.store import Store
from monitor.storage.writer import DatabaseUnavailable, Writer

log = logging.getLogger(__name__)


class Retention(Model):
    """`monitor.retention`: how long history is kept, raw runs then their hourly rollups."""

    raw: Duration = Field(default=7 * DAY, gt=0)
    rollups: Duration = Field(default=400 * DAY, gt=0)


@dataclass
class MaintenanceReport:
    """What one pass did: for metrics and logs."""

    hours_rolled_up: int = 0
    rollup_rows: int = 0  # one per check and hour
    runs_pruned: int = 0
    rollups_pruned: int = 0
    free_pages: int = 0  # left after the incremental vacuum (0 unless auto_vacuum is off)
    size_bytes: int = 0  # the database file, WAL excluded
    seconds: float = 0.0


class Maintenance:
    def __init__(
        self,
        store: Store,
        writer: Writer,
        retention: Retention,
        clock: Clock,
        on_error: Callable[[], None] = lambda: None,
        on_report: Callable[[MaintenanceReport], None] = lambda _: None,
        interval: float = 300.0,
        batch: int = 5000,
        grace: float = 120.0,
        vacuum_pages: int = 1024,
        rollup_checks: int = 100,
        leads: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.writer = writer
        # Replaceable on config reload; read afresh by every pass.
        self.retention = retention
        self.clock = clock
        self.on_error = on_error
        self.on_report = on_report
        self.interval = interval
        self.batch = batch
        # Runs still in flight when an hour ends are written after it: wait for them.
        self.grace = grace
        self.vacuum_pages = vacuum_pages
        self.rollup_checks = rollup_checks
        self.leads = leads
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """A pass now, then every `interval` (drift-free) until `stop()`."""
        next_at = self.clock.monotonic()
        while not self._stop.is_set():
            try:
                await self.run_once()
            except DatabaseUnavailable:
                # The writer logged the outage once; the next pass retries (steps are idempotent).
                self.on_error()
            except Exception:
                # The next pass retries: every step is idempotent.
                log.exception("storage maintenance failed")
                self.on_error()
            next_at += self.interval
            now = self.clock.monotonic()
            # After a pass longer than the interval: no burst of catch-up passes.
            next_at = max(next_at, now)
            await self._sleep(next_at - now)

    def stop(self) -> None:
        """End `run()` after the step in progress (a pass mid-way resumes next start)."""
        self._stop.set()

    def _halted(self) -> bool:
        """Stopping, or another replica does the maintenance now: no further step."""
        return self._stop.is_set() or not self.leads()

    async def _sleep(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> MaintenanceReport | None:
        """One pass; None when another replica does the maintenance."""
        if not self.leads():
            return None
        started = self.clock.monotonic()
        now = self.clock.time()
        report = MaintenanceReport()
        report.hours_rolled_up, report.rollup_rows = await self.roll_up(now)
        # Never prune raw runs of an hour not rolled up yet (e.g. the rollup keeps failing).
        rolled = await self.writer.submit(self.store.rollups.rolled_up_until) or 0
        report.runs_pruned = await self._prune(
            self.store.rollups.prune_runs, "runs", min(now - self.retention.raw, rolled)
        )
        report.rollups_pruned = await self._prune(
            self.store.rollups.prune_rollups, "rollups", now - self.retention.rollups
        )
        report.free_pages = await self.vacuum()
        report.size_bytes = await self.writer.submit(self.store.database.size_bytes)
        report.seconds = self.clock.monotonic() - started
        log.debug("storage maintenance: %s", report)
        self.on_report(report)
        return report

    async def roll_up(self, now: float) -> tuple[int, int]:
        """(hours rolled up, rollup rows written)."""
        hours = await self.writer.submit(self.store.rollups.hours_to_roll_up, now - self.grace)
        if not hours:
            return 0, 0
        checks = await self.writer.submit(self.store.rollups.checks_in, "runs")
        # An hour of 1,000 checks is 60k runs, ~0.5 s of work: in chunks of checks, so the
        # writer's batches get in between.
        chunks = [
            checks[i : i + self.rollup_checks] for i in range(0, len(checks), self.rollup_checks)
        ]
        rows = 0
        for done, hour in enumerate(hours):
            for index, chunk in enumerate(chunks):
                if self._halted():
                    return done, rows
                first, last = index == 0, index == len(chunks) - 1
                rows += await self.writer.submit(
                    self.store.rollups.rollup, hour, chunk, first=first, last=last
                )
        return len(hours), rows

    async def _prune(
        self, prune: Callable[[float, int, list[str]], int], table: str, before: float
    ) -> int:
        checks = await self.writer.submit(self.store.rollups.checks_in, table)
        total = 0
        while not self._halted():
            deleted = await self.writer.submit(prune, before, self.batch, checks)
            total += deleted
            if deleted < self.batch:
                break
            # Let the event loop queue the writer's next batch ahead of our next delete.
            await asyncio.sleep(0)
        return total

    async def vacuum(self) -> int:
        """Return freed pages to the OS, a few MB per step, until none are left."""
        left = await self.writer.submit(self.store.database.incremental_vacuum, self.vacuum_pages)
        while left and not self._halted():
            before, left = (
                left,
                await self.writer.submit(self.store.database.incremental_vacuum, self.vacuum_pages),
            )
            if left >= before:
                break  # auto_vacuum is off (an old database): pages are reused, not returned
        return left
