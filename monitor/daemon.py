"""The daemon: wires config, scheduler, runner, store and metrics together."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from checks.base import CheckConfig, Result, RunContext
from monitor import __version__
from monitor.clock import Clock
from monitor.config import Config
from monitor.metrics import Metrics
from monitor.redact import Redactor
from monitor.runner import Runner, make_session
from monitor.scheduler import Dispatch, Schedule, Scheduler
from monitor.state import CheckState
from monitor.store import RunRecord, Store
from monitor.writer import Writer

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config: Config, store: Store, metrics: Metrics, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.redactor = Redactor(config.secrets)
        self.checks: dict[str, CheckConfig] = {c.name: c for c in config.checks}
        self.states: dict[str, CheckState] = {name: CheckState(name) for name in self.checks}
        self.writer = Writer(store, on_error=metrics.db_write_errors.inc)
        self.ready = False
        self._session: aiohttp.ClientSession | None = None
        self._scheduler: Scheduler | None = None
        self._scheduler_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open storage, restore the last known state, and start scheduling."""
        await asyncio.to_thread(self.store.open)
        latest = await asyncio.to_thread(self.store.latest_runs)
        for name, row in latest.items():
            if name in self.states:
                self.states[name].seed(row)
        for name in self.checks:
            self.metrics.declare(name)
        self._session = make_session(self.config.monitor.concurrency)
        ctx = RunContext(
            session=self._session,
            clock=self.clock,
            redactor=self.redactor,
            user_agent=f"intmon/{__version__}",
        )
        self.runner = Runner(
            ctx, self.config.monitor.concurrency, self.config.monitor.per_host_concurrency
        )
        self.writer.start()
        schedule = Schedule({n: c.interval for n, c in self.checks.items()}, self.clock.time())
        self._scheduler = Scheduler(schedule, self.clock, self._dispatch, on_skip=self._skipped)
        self._scheduler_task = asyncio.create_task(self._scheduler.run(), name="intmon-scheduler")
        self.ready = True
        log.info("watching %d checks", len(self.checks))

    async def _dispatch(self, dispatch: Dispatch) -> None:
        self.metrics.lateness.observe(dispatch.lateness)
        check = self.checks.get(dispatch.name)
        if check is None:
            return  # removed while it waited
        result = await self.runner.execute(check)
        self.record(check, result)

    def _skipped(self, name: str) -> None:
        self.metrics.skipped.labels(name).inc()
        log.warning("check %s is still running at its next slot; that slot is skipped", name)

    def record(self, check: CheckConfig, result: Result) -> None:
        """Fan a result out to state, metrics and storage. Never raises into the scheduler."""
        record = RunRecord(
            check=check.name,
            ts=result.started_at,
            ok=result.ok,
            error_class=result.error_class,
            status=result.status,
            latency=result.latency,
            reason=result.reason,
            signals=result.signals,
        )
        self.states[check.name].update(record)
        self.metrics.observe(check.name, result)
        self.writer.record(record)
        if not result.ok:
            log.info("%s failed: %s: %s", check.name, result.error_class, result.reason)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: in-flight checks finish (or hit their timeout), pending rows are flushed."""
        self.ready = False
        if self._scheduler is not None and self._scheduler_task is not None:
            self._scheduler.stop()
            await self._scheduler_task
            await self._scheduler.drain(
                self.config.monitor.shutdown_grace if grace is None else grace
            )
        await self.writer.close()
        if self._session is not None:
            await self._session.close()
        await asyncio.to_thread(self.store.close)

    def status(self) -> list[dict[str, object]]:
        out = []
        for name, check in self.checks.items():
            entry: dict[str, object] = {
                "name": name,
                "type": check.type,
                "target": self.redactor(check.describe_target()),
                "provider": check.provider,
                "interval": check.interval,
            }
            entry.update(self.states[name].as_json())
            out.append(entry)
        return out
