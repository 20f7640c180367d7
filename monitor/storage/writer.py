"""The one writer: batches results into the store from a single worker thread.

A failed write is counted and retried with backoff; the rows stay queued, so a database outage
delays history but never fails a health check. The outage is logged twice (when it starts and
when it ends), never once per attempt. Only past `max_pending` queued results are the oldest
dropped: counted, logged once, and reported through `on_drop` so the operator hears of it.

Every other write of the daemon (schema upgrades, alert state and the outbox, heartbeats,
throttle pauses, maintenance) runs on the same thread through `submit`, so SQLite only ever
sees one writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from monitor.core.backoff import backoff
from monitor.core.clock import Clock, SystemClock
from monitor.core.errors import StorageError
from monitor.core.outage import Outage
from monitor.storage.store import DeprecationRow, RunRecord, Store

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class DatabaseUnavailable(StorageError):
    """The database refused a write for a reason outside intmon (locked, gone, disk full).
    The writer has logged the outage; callers keep their state and try again later."""


def unavailable(exc: BaseException) -> bool:
    """An error of the database's availability, not of what was asked of it."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Writer:
    def __init__(
        self,
        store: Store,
        on_error: Callable[[], None] = lambda: None,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_backoff: float = 30.0,
        max_pending: int = 1_000_000,
        *,
        clock: Clock | None = None,
        on_drop: Callable[[int], None] = lambda rows: None,
        on_change: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self.store = store
        self.on_error = on_error
        # Per result dropped past max_pending, with how many this outage has dropped (1 first).
        self.on_drop = on_drop
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.max_pending = max_pending
        self.pending: deque[RunRecord] = deque()
        # Latest state per check; only the newest version of a row needs writing.
        self.deprecations: dict[str, DeprecationRow] = {}
        self.dropped = 0  # since start
        self._dropped_in_outage = 0
        self.outage = Outage(
            "database",
            log,
            clock or SystemClock(),
            meanwhile=f"results wait in memory (up to {max_pending:,}) and are written when it "
            "is back",
            on_change=on_change,
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intmon-writer")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def available(self) -> bool:
        """False from a failed write until one succeeds again."""
        return self.outage.up

    def record(self, record: RunRecord) -> None:
        self._trim(self.max_pending - 1)
        self.pending.append(record)
        if len(self.pending) >= self.batch_size:
            self._wake.set()

    def _trim(self, keep: int) -> None:
        while self.pending and len(self.pending) > keep:
            # Only after a long outage: keep the newest history rather than grow forever.
            self.pending.popleft()
            self._drop()

    def _drop(self) -> None:
        if not self._dropped_in_outage:
            log.error(
                "%d results wait for the database: dropping the oldest from now on, until it "
                "takes writes again (counted in intmon_db_dropped_rows_total)",
                self.max_pending,
            )
        self.dropped += 1
        self._dropped_in_outage += 1
        self.on_drop(self._dropped_in_outage)

    def record_deprecation(self, row: DeprecationRow) -> None:
        self.deprecations[row.check] = row

    async def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the writer's thread, between batches: the one way others write.

        SQLite takes one writer at a time; sharing the thread keeps maintenance from fighting
        the writer for the lock. The executor is first in, first out, so a short `fn` delays
        queued batches by its own duration and no more. Raises DatabaseUnavailable (after
        noting the outage) when the database is down.
        """
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except Exception as exc:
            if not unavailable(exc):
                raise
            self.outage.failed(exc)
            raise DatabaseUnavailable(str(exc)) from exc
        # Not proof the database is back: a submitted read (or a write with nothing to do)
        # passes a write lock. Only the writer's own batches end an outage (_recovered).
        return result

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a read in a worker thread (reads need not wait for the writer's queue). A read
        that meets a database outage notes it in the writer's one outage log and raises
        DatabaseUnavailable, like `submit`; any other error is the caller's."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self.outage.failed(exc)
            raise DatabaseUnavailable(str(exc)) from exc

    def _recovered(self, written: int = 0) -> None:
        if self.outage.up:
            return
        detail = f"{written + len(self.pending)} results waited and are written now"
        if self._dropped_in_outage:
            detail += f", {self._dropped_in_outage} older ones were dropped"
        self._dropped_in_outage = 0
        self.outage.recovered(detail)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="intmon-writer")

    async def _loop(self) -> None:
        failures = 0  # in a row: 0.5 s, 1 s, 2 s, ... between retries
        while not self._closing:
            delay = backoff(failures, base=0.5, cap=self.max_backoff) if failures else 0.0
            # Woken early by a full batch, or by the flush interval: write whatever is queued.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay or self.flush_interval)
            self._wake.clear()
            failures = 0 if await self.flush_once() else failures + 1

    async def flush_once(self) -> bool:
        """Write everything queued, batch by batch. False if the database refused."""
        loop = asyncio.get_running_loop()
        if self.deprecations:
            rows, self.deprecations = list(self.deprecations.values()), {}
            try:
                await loop.run_in_executor(self._executor, self.store.write_deprecations, rows)
            except Exception as exc:
                for row in rows:
                    self.deprecations.setdefault(row.check, row)
                return self._failed(exc)
            self._recovered()
        while self.pending:
            # Out of the queue while it is written: results recorded meanwhile (and dropped
            # past the cap) touch only the queue, never the batch in flight.
            size = min(self.batch_size, len(self.pending))
            batch = [self.pending.popleft() for _ in range(size)]
            try:
                await loop.run_in_executor(self._executor, self.store.write_runs, batch)
            except Exception as exc:
                self.pending.extendleft(reversed(batch))
                self._trim(self.max_pending)
                return self._failed(exc)
            self._recovered(len(batch))
        return True

    def _failed(self, exc: Exception) -> bool:
        # Whatever the cause, the rows stay queued and are retried; the outage logs it once.
        self.outage.failed(exc)
        self.on_error()
        return False

    async def close(self, attempts: int = 3) -> None:
        """Stop the loop and flush what is left, retrying a few times before giving up loudly."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for attempt in range(attempts):
            if await self.flush_once():
                break
            await asyncio.sleep(0.2 * (attempt + 1))
        if self.pending:
            log.error(
                "shutting down with %d results not written to the database", len(self.pending)
            )
        self._executor.shutdown(wait=True)
