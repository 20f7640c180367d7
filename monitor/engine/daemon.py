"""The daemon: wires config, scheduler, runner, store, signals, alerting and metrics together."""

from __future__ import annotations

import asyncio
import itertools
import logging

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from checks.base import CheckConfig, Result, RunContext
from checks.freshness import heartbeat_secret
from checks.heartbeats import HeartbeatBook
from monitor import __version__
from monitor.alerting.runtime import Alerter
from monitor.cluster.division import config_digest
from monitor.cluster.replica import Replica
from monitor.config.loader import load_config
from monitor.config.reload import ReloadPlan, plan
from monitor.config.settings import Config
from monitor.core.clock import Clock
from monitor.core.logs import fields
from monitor.core.redact import Redactor
from monitor.engine.runner import Runner, make_session
from monitor.engine.scheduler import Dispatch, Schedule, Scheduler
from monitor.engine.shapes import ShapeKeeper
from monitor.engine.state import CheckState, StateView, current_states
from monitor.engine.status import CheckStatus, State, StatusReport
from monitor.engine.throttle import KeyState, Throttle, throttle_key
from monitor.metrics import Metrics, SignalCollector
from monitor.signals import slo
from monitor.signals.history import HistoryBook
from monitor.signals.per_check import (
    DEFAULT_ERROR_WINDOW,
    DEFAULT_LATENCY_WINDOW,
    DEFAULT_QUOTA_WINDOW,
    CheckSignals,
    DeprecationRecord,
)
from monitor.signals.quota import QuotaBook
from monitor.storage.heartbeats import load_heartbeat, load_heartbeats
from monitor.storage.pauses import PauseRow, load_pauses, save_pause
from monitor.storage.store import RunRecord, Store
from monitor.storage.upkeep import Maintenance
from monitor.storage.writer import DatabaseUnavailable, Writer

log = logging.getLogger(__name__)
BASELINE_HISTORY = 7 * 86400.0  # the baseline p95 is the median hourly p95 of a week


class Daemon:
    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        redactor: Redactor | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        # Shared with the log formatter when given, so a reload updates both.
        self.redactor = redactor or Redactor(config.secrets)
        self.checks: dict[str, CheckConfig] = {c.name: c for c in config.checks}
        self.states: dict[str, CheckState] = {name: CheckState(name) for name in self.checks}
        self.quotas = QuotaBook()  # a provider's checks share one, see monitor.signals.quota
        self.signals: dict[str, CheckSignals] = {
            c.name: self._signals_for(c) for c in config.checks
        }
        self.throttle = Throttle()
        self.history = HistoryBook()  # the status page's day of history, per check
        self.heartbeats = HeartbeatBook()
        self.writer = Writer(
            store,
            on_error=metrics.db_write_errors.inc,
            clock=clock,
            on_drop=self._dropped,
            on_change=lambda up: metrics.db_up.set(int(up)),
        )
        self.alerter = Alerter(config, self.writer, metrics, clock, self.redactor)
        self.shapes = ShapeKeeper(self.writer, store, clock, on_error=metrics.db_write_errors.inc)
        self.replica = Replica(
            config.monitor.replica,
            self.writer,
            clock,
            metrics,
            clustered=not store.database.sqlite,
            digest=config_digest(config),
            checks=self.checks,
            on_gain=self._adopt,
            on_share=self._run_only,
        )
        self.maintenance = Maintenance(
            store,
            self.writer,
            config.monitor.retention,
            clock,
            on_error=metrics.maintenance_errors.inc,
            on_report=metrics.maintained,
            leads=self.replica.leads,  # of several replicas, one maintains the database
        )
        owns = metrics.owns = self.replica.owns
        metrics.registry.register(
            SignalCollector(
                lambda: [s for name, s in self.signals.items() if owns(name)],
                firing=lambda: [f for f in self.alerter.firing() if owns(f.check)],
                outbox_depth=lambda: self.alerter.outbox_depth,
                states=lambda: [pair for pair in self.state_pairs() if owns(pair[0])],
            )
        )
        self.ready = False
        self._reloading = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._kept_alive: aiohttp.ClientSession | None = None  # for `keep_alive: true`
        self._scheduler: Scheduler | None = None
        self._scheduler_task: asyncio.Task[None] | None = None
        self._maintenance_task: asyncio.Task[None] | None = None
        self._replica_task: asyncio.Task[None] | None = None
        self._announcements: set[asyncio.Task[None]] = set()

    def _signals_for(self, check: CheckConfig) -> CheckSignals:
        """Window lengths follow the check's alert rules, so the gauge is what the rule sees."""
        rules = self.config.rules.get(check.name, {})
        windows = [getattr(rule, "window", 0.0) for rule in rules.values()]
        quota_window = getattr(rules.get("quota_exhaustion"), "window", DEFAULT_QUOTA_WINDOW)
        return CheckSignals(
            check.name,
            self.clock,
            error_window=getattr(rules.get("error_rate"), "window", DEFAULT_ERROR_WINDOW),
            latency_window=getattr(rules.get("latency_p95"), "window", DEFAULT_LATENCY_WINDOW),
            longest_window=max([*windows, DEFAULT_LATENCY_WINDOW]),
            slo=check.slo,
            quota_window=quota_window,
            quota_ledger=self.quotas.ledger(throttle_key(check.name, check.provider), quota_window),
        )

    async def start(self) -> None:
        """Open storage, restore what the last run of the daemon knew, and start scheduling."""
        await self.writer.submit(self.store.open)
        await asyncio.to_thread(self.restore)
        for name in self.checks:
            self.metrics.declare(name)
        for notifier in self.config.notifiers:
            self.metrics.declare_notifier(notifier.name)
        self._session = make_session(self.config.monitor.concurrency)
        self._kept_alive = make_session(self.config.monitor.concurrency, keep_alive=True)
        ctx = RunContext(
            session=self._session,
            kept_alive=self._kept_alive,
            clock=self.clock,
            redactor=self.redactor,
            user_agent=f"intmon/{__version__}",
            heartbeats=self.heartbeats,
        )
        self.runner = Runner(
            ctx, self.config.monitor.concurrency, self.config.monitor.per_host_concurrency
        )
        self.writer.start()
        self._maintenance_task = asyncio.create_task(self.maintenance.run(), name="intmon-db")
        await self.alerter.start()
        await self.replica.join()
        self._replica_task = asyncio.create_task(self.replica.run(), name="intmon-replica")
        schedule = Schedule({n: c.interval for n, c in self.checks.items()}, self.clock.time())
        self._scheduler = Scheduler(schedule, self.clock, self._dispatch, on_skip=self._skipped)
        if self.replica.clustered:
            schedule.only(self.replica.owned, self.clock.time())
        self._scheduler_task = asyncio.create_task(self._scheduler.run(), name="intmon-scheduler")
        self.ready = True
        log.info("watching %d checks", len(self.checks))

    def restore(self, only: set[str] | None = None) -> None:
        """Blocking reads at start-up (or for checks a reload adds or a takeover gains): last
        results, failure streaks, recent windows, deprecations, baselines, heartbeats and
        throttle pauses. Every read is narrowed to the checks restored, in SQL."""
        names = set(self.checks) if only is None else only
        now = self.clock.time()
        for name, row in self.store.latest_runs(names).items():
            self.states[name].seed(row)
            self.signals[name].seed_last(self.states[name].last)
            self._resume_heartbeat_wait(self.checks[name], row)
        for name, count in self.store.consecutive_failures(names).items():
            self.signals[name].consecutive_failures = count
        self._replay_windows(names)
        self._restore_slis(names)
        self.history.restore(self.store, now, names)
        for name, saved in self.store.deprecations(names).items():
            self.signals[name].deprecation = DeprecationRecord.from_row(saved)
        self.shapes.restore({name: self.signals[name].shape for name in names})
        # Finished hours come from the hourly rollups, the rest of the week from raw runs.
        week_ago = now - BASELINE_HISTORY
        for check, hours in itertools.groupby(
            self.store.rollups.hourly_p95s(week_ago, names), key=lambda row: row[0]
        ):
            for _, hour, p95 in hours:
                self.signals[check].baseline.seed_hour(hour, p95)
        raw_since = max(week_ago, self.store.rollups.rolled_up_until() or week_ago)
        for check, samples in itertools.groupby(
            self.store.healthy_latencies(raw_since, names), key=lambda row: row[0]
        ):
            self.signals[check].seed_baseline((ts, latency) for _, ts, latency in samples)
        if only is None:
            self.heartbeats.restore(load_heartbeats(self.store.engine))
            for p in load_pauses(self.store.engine):
                self.throttle.restore(p.key, p.paused_until, p.reason, p.streak, now)

    def _replay_windows(self, names: set[str]) -> None:
        """Fill windows from stored runs, so error rate and p95 survive restarts and reloads."""
        if not names:
            return
        longest = max(self.signals[name].windows.max_window for name in names)
        since = self.clock.time() - longest
        for check, ts, ok, latency, status, error_class in self.store.recent_runs(since, names):
            self.signals[check].seed(ts, ok, latency, status == 429, error_class)

    def _restore_slis(self, names: set[str]) -> None:
        """Error budgets from the rollups and recent runs, so a restart keeps them."""
        slis = {n: s.sli for n in names if (s := self.signals[n]).sli is not None}
        slo.restore(self.store, self.clock.time(), slis)

    def _resume_heartbeat_wait(self, check: CheckConfig, last: RunRecord) -> None:
        """A heartbeat check still waiting for its first push keeps waiting from when the last
        process began: its runs carry the wait as `freshness_age`. Without this, a restart
        would resolve a job that never reported and fire again only `max_age` later."""
        age = last.signals.get("freshness_age")
        if heartbeat_secret(check)[0] and isinstance(age, int | float):
            self.heartbeats.watched_since(check.name, last.ts - age)

    async def _adopt(self, names: set[str]) -> None:
        """Checks taken over from another replica: windows, streaks and alert states as the
        database has them, so the first run here goes on from the last owner's instead of
        paging (or resolving) afresh."""
        names &= set(self.checks)
        for name in names:
            self.signals[name].quota_ledger.forget(name)
            self.signals[name] = self._signals_for(self.checks[name])
            self.states[name] = CheckState(name)
            self.history.forget(name)
        await asyncio.to_thread(self.restore, names)
        await self.alerter.reload_states(names)

    def _run_only(self, share: frozenset[str]) -> None:
        """Schedule this replica's share alone. The other replicas' checks would each wake the
        scheduler and start a task only to be refused at the claim: with three replicas, two
        slots in three, which cost as much CPU as the claim of a run."""
        if self._scheduler is not None and self._scheduler.schedule.only(share, self.clock.time()):
            self._scheduler.poke()

    async def _dispatch(self, dispatch: Dispatch) -> None:
        # Of several replicas, the one the slot is claimed by runs it; the others skip it.
        run, slot = await self.replica.claim(dispatch.name, dispatch.due)
        if not run:
            return
        self.metrics.lateness.observe(dispatch.lateness)
        check = self.checks.get(dispatch.name)
        if check is None:
            return  # removed while it waited
        if self.replica.clustered and heartbeat_secret(check)[0]:
            await self._fresh_heartbeat(check.name)
        key = throttle_key(check.name, check.provider)
        # The provider asked us to wait (Retry-After, backoff, exhausted quota): sending
        # anyway is how a monitor becomes the cause of the 429s it reports.
        result = await self.runner.execute(
            check, may_send=lambda: self.throttle.may_run(key, self.clock.time())
        )
        if result is None:
            self.metrics.count_throttled(check.name)
            return
        await self.record(check, result, slot)

    async def _fresh_heartbeat(self, name: str) -> None:
        """A job may have pushed to another replica: take the newest the database has."""
        try:
            beat = await self.writer.read(load_heartbeat, self.store.engine, name)
        except DatabaseUnavailable:
            return  # logged once by the writer; the pushes this replica took still count
        if beat is not None:
            self.heartbeats.merge(name, beat)

    def _dropped(self, in_outage: int) -> None:
        """The writer dropped a result it could not write: count it, and at the first of an
        outage tell the notifiers (the writer logs it)."""
        self.metrics.db_dropped_rows.inc()
        if in_outage != 1:
            return
        title = "intmon: results are being dropped"
        body = (
            f"The database has not taken writes for a while and {self.writer.max_pending:,} "
            "results wait in memory; intmon now drops the oldest (intmon_db_dropped_rows_total). "
            "Alerts and their notifications wait for the database too."
        )
        key = f"dropped/{self.clock.time():.0f}"
        task = asyncio.create_task(self.alerter.announce(key, title, body), name="intmon-announce")
        self._announcements.add(task)
        task.add_done_callback(self._announcements.discard)

    def _skipped(self, name: str) -> None:
        self.metrics.count_skipped(name)
        log.warning("check %s is still running at its next slot; that slot is skipped", name)

    async def record(self, check: CheckConfig, result: Result, slot: int | None = None) -> None:
        """Fan a result out to signals, throttle, state, metrics, storage and alerting.
        `slot`: the claimed slot, with several replicas (stored once per check)."""
        signals = self.signals[check.name]
        if signals.observe(result):
            assert signals.deprecation is not None  # a change is reported once there is one
            self.writer.record_deprecation(signals.deprecation.to_row(check.name))
        await self.shapes.observe(check.name, signals.shape, result)
        key = throttle_key(check.name, check.provider)
        before = self.throttle.state(key) or KeyState()
        self.throttle.on_response(
            key,
            result.status,
            result.signals.get("retry_after"),
            self.clock.time(),
            quota=signals.quota,
            base=check.interval,
        )
        record = RunRecord(
            check=check.name,
            ts=result.started_at,
            ok=result.ok,
            error_class=result.error_class,
            status=result.status,
            latency=result.latency,
            reason=result.reason,
            signals=result.signals,
            request_id=result.request_id,
            slot=slot,
        )
        self.states[check.name].update(record, result.phases)
        self.history.add(check.name, record.ts, record.ok, record.latency)
        self.metrics.observe(check.name, result)
        self.writer.record(record)
        if not result.ok:
            # The runner's seal() has redacted the result, run secrets included.
            facts = fields(
                "run_failed",
                check=check.name,
                error_class=result.error_class,
                status=result.status,
                latency=result.latency,
                request_id=result.request_id,
                reason=result.reason,
            )
            log.info(
                "%s failed: %s: %s", check.name, result.error_class, result.reason, extra=facts
            )
        await self.alerter.evaluate(check, signals)
        after = self.throttle.state(key)
        if after is not None and after != before:
            await self._save_pause(key, after)

    async def _save_pause(self, key: str, state: KeyState) -> None:
        """Only on a change (a 429, an exhausted quota, the end of a streak): rare writes."""
        row = PauseRow(
            key=key, paused_until=state.paused_until, reason=state.reason, streak=state.streak
        )
        try:
            await self.writer.submit(save_pause, self.store.engine, row)
        except DatabaseUnavailable:
            # The writer logged the outage once; the pause holds in memory, as below.
            self.metrics.db_write_errors.inc()
        except SQLAlchemyError as exc:
            # The pause holds in memory; only a restart before the next change would lose it.
            log.warning("could not persist the throttle state of %s: %s", key, exc)
            self.metrics.db_write_errors.inc()

    async def reload(self) -> ReloadPlan:
        """Re-read the config file and apply it. An invalid file raises ConfigError and
        changes nothing: the daemon goes on with the config it has."""
        async with self._reloading:
            new = await asyncio.to_thread(load_config, self.config.source)
            return await self.apply(new)

    async def apply(self, new: Config) -> ReloadPlan:
        """Take a validated config while running. History, windows and alert states of checks
        that stay are kept; removed checks stop, added ones start on their own grid slot."""
        change = plan(self.config, new)
        self.redactor.update(new.secrets)
        self.config = new
        for name in change.removed:
            self._scheduler_schedule().remove(name)
            self.signals[name].quota_ledger.forget(name)
            del self.checks[name], self.states[name], self.signals[name]
            self.history.forget(name)
            self.metrics.forget(name)
        grown: set[str] = set()
        new_slos: set[str] = set()
        for check in new.checks:
            name = check.name
            self.checks[name] = check
            if name in change.added:
                self.states[name] = CheckState(name)
                self.signals[name] = self._signals_for(check)
                self.metrics.declare(name)
                self._scheduler_schedule().add(name, check.interval, self.clock.time())
                continue
            fresh = self._signals_for(check)
            windows = (fresh.error_window, fresh.latency_window, fresh.windows.max_window)
            if self.signals[name].resize(*windows):
                grown.add(name)
            if self.signals[name].set_slo(check.slo):
                new_slos.add(name)
            # A check that changed provider joins that provider's ledger.
            self.signals[name].quota_window = fresh.quota_window
            self.signals[name].quota_ledger = fresh.quota_ledger
            if name in change.rescheduled:
                self._scheduler_schedule().remove(name)
                self._scheduler_schedule().add(name, check.interval, self.clock.time())
        # A check added back after a removal picks up its history where it left it.
        await asyncio.to_thread(self.restore, set(change.added))
        await asyncio.to_thread(self._replay_windows, grown)
        await asyncio.to_thread(self._restore_slis, new_slos)
        self.alerter.reload(new)
        await self.replica.reconfigure(self.checks, config_digest(new))
        for notifier in new.notifiers:
            self.metrics.declare_notifier(notifier.name)
        self.maintenance.retention = new.monitor.retention
        if self._scheduler is not None:
            self._scheduler.poke()
        for setting in change.needs_restart:
            log.warning("monitor.%s changed: it takes effect at the next restart", setting)
        log.info("config reloaded: %s", change.summary())
        return change

    def _scheduler_schedule(self) -> Schedule:
        assert self._scheduler is not None, "reload before start"
        return self._scheduler.schedule

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: in-flight checks finish (or hit their timeout), pending rows are flushed."""
        self.ready = False
        # First: the others take this replica's checks over while its last runs finish.
        await self.replica.leave()
        if self._replica_task is not None:
            await self._replica_task
        if self._scheduler is not None and self._scheduler_task is not None:
            self._scheduler.stop()
            await self._scheduler_task
            grace = self.config.monitor.shutdown_grace if grace is None else grace
            await self._scheduler.drain(grace)
        await self.alerter.stop()
        if self._maintenance_task is not None:
            # Before the writer closes: maintenance runs its steps on the writer's thread.
            self.maintenance.stop()
            await self._maintenance_task
        await self.writer.close()
        for session in (self._session, self._kept_alive):
            if session is not None:
                await session.close()
        await asyncio.to_thread(self.store.close)

    def check_states(self) -> dict[str, StateView]:
        """Every check's state as of now: cheap enough for each scrape of /metrics."""
        schedule = self._scheduler.schedule if self._scheduler is not None else None
        return current_states(
            self.checks,
            self.states,
            self.signals,
            self.throttle,
            self.alerter.firing(),
            self.clock.time(),
            due_at=None if schedule is None else schedule.due_at,
        )

    def state_pairs(self) -> list[tuple[str, State]]:
        """(check, state) for the `intmon_check_state` metric."""
        return [(name, view.state) for name, view in self.check_states().items()]

    def status(self) -> StatusReport:
        """What `/api/status`, the status page and `intmon status` show, as of now."""
        now = self.clock.time()
        views = self.check_states()
        checks = []
        for name, check in self.checks.items():
            state = self.states[name]
            view = views[name]
            checks.append(
                CheckStatus(
                    name=name,
                    type=check.type,
                    target=self.redactor(check.describe_target()),
                    provider=check.provider,
                    interval=check.interval,
                    state=view.state,
                    state_reason=view.reason,
                    until=view.until,
                    last=state.last_run,
                    last_success=state.last_success,
                    last_failure=state.last_failure,
                    signals=state.last.signals if state.last else {},
                    metrics=self.signals[name].status(),
                    throttle=self.throttle.status(throttle_key(name, check.provider), now),
                )
            )
        return StatusReport(generated_at=now, checks=tuple(checks))
