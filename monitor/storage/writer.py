"""The one writer: batches results into the store from a single worker thread.

A failed write is logged, counted and retried with backoff; the rows stay queued, so a database
outage delays history but never loses it and never fails a health check.

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

from monitor.core.backoff import backoff
from monitor.storage.store import DeprecationRow, RunRecord, Store

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class Writer:
    def __init__(
        self,
        store: Store,
        on_error: Callable[[], None] = lambda: None,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_backoff: float = 30.0,
        max_pending: int = 1_000_000,
    ) -> None:
        self.store = store
        self.on_error = on_error
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.max_pending = max_pending
        self.pending: deque[RunRecord] = deque()
        # Latest state per check; only the newest version of a row needs writing.
        self.deprecations: dict[str, DeprecationRow] = {}
        self.dropped = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intmon-writer")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def record(self, record: RunRecord) -> None:
        if len(self.pending) >= self.max_pending:
            # Only after a very long outage: keep the newest history rather than grow forever.
            self.pending.popleft()
            self.dropped += 1
        self.pending.append(record)
        if len(self.pending) >= self.batch_size:
            self._wake.set()

    def record_deprecation(self, row: DeprecationRow) -> None:
        self.deprecations[row.check] = row

    async def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the writer's thread, between batches: the one way others write.

        SQLite takes one writer at a time; sharing the thread keeps maintenance from fighting
        the writer for the lock. The executor is first in, first out, so a short `fn` delays
        queued batches by its own duration and no more.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

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
                log.warning("database write of deprecations failed, kept for retry: %s", exc)
                for row in rows:
                    self.deprecations.setdefault(row.check, row)
                self.on_error()
                return False
        while self.pending:
            batch = [self.pending[i] for i in range(min(self.batch_size, len(self.pending)))]
            try:
                await loop.run_in_executor(self._executor, self.store.write_runs, batch)
            except Exception as exc:
                log.warning(
                    "database write failed, %d results kept for retry: %s", len(self.pending), exc
                )
                self.on_error()
                return False
            for _ in batch:
                self.pending.popleft()
        return True

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
