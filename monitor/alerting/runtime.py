"""Alerting at run time: evaluates rules after each run, commits transitions and their
notifications in one transaction, and keeps the outbox draining.

The order matters: state and outbox rows are committed *before* memory moves on, so a crash
or a database outage can only make an evaluation happen again, never lose or repeat a page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from checks.base import CheckConfig
from monitor.alerting.machine import AlertBook, Intent, Kind, Outcome, Phase
from monitor.alerting.notify import Notify, notification_id
from monitor.alerting.outbox import (
    UNSENT,
    Delivery,
    OutboxRow,
    StaleStateError,
    commit,
    load_states,
)
from monitor.alerting.silences import Silences, load_active
from monitor.alerting.status import AlertReport, AlertStatus, InhibitedStatus
from monitor.config.settings import Config
from monitor.core.clock import Clock
from monitor.core.errors import DeliveryError
from monitor.core.logs import fields
from monitor.core.redact import Redactor
from monitor.core.timestamps import utc_iso
from monitor.metrics import Firing, Metrics
from monitor.signals.per_check import CheckSignals
from monitor.storage.writer import DatabaseUnavailable, Writer

log = logging.getLogger(__name__)
# `intmon silence` writes from another process: its silences are read this often (for the
# status and an early end), and before any page (Alerter.evaluate).
SILENCE_RELOAD = 15.0


class Alerter:
    def __init__(
        self, config: Config, writer: Writer, metrics: Metrics, clock: Clock, redactor: Redactor
    ) -> None:
        self.config = config
        self.writer = writer
        self.engine = writer.store.engine  # for reads; writes go through the writer
        self.metrics = metrics
        self.clock = clock
        self.book = AlertBook()
        self.redactor = redactor
        self.notify = self._make_notify(config)
        self.delivery = Delivery(
            writer,
            self.notify,
            clock,
            on_expired=lambda notifier: metrics.notifications.labels(notifier, "expired").inc(),
            on_notifier=lambda notifier, up: metrics.notifier_up.labels(notifier).set(int(up)),
        )
        self.silences = Silences(config=tuple(config.silences))
        self.outbox_depth = 0
        self._routes = {c.name: c.notify for c in config.checks}
        self._inhibit = config.alerting.inhibitions
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def _make_notify(self, config: Config) -> Notify:
        def count(notifier: str, result: str) -> None:
            self.metrics.notifications.labels(notifier, result).inc()

        return Notify(
            config.notifiers,
            self.redactor,
            config.alerting,
            on_result=count,
            links=config.monitor.check_url,
        )

    def reload(self, config: Config) -> None:
        """Take a reloaded config. Alert states stay: they are keyed by check and rule names."""
        rebuild = (config.notifiers, config.alerting, config.monitor.external_url) != (
            self.config.notifiers,
            self.config.alerting,
            self.config.monitor.external_url,
        )
        self.config = config
        self._routes = {c.name: c.notify for c in config.checks}
        self._inhibit = config.alerting.inhibitions
        self.silences = Silences(config=tuple(config.silences), runtime=self.silences.runtime)
        if rebuild:
            previous, self.notify = self.notify, self._make_notify(config)
            self.delivery.notify = self.notify
            previous.close(cancel_pending=False)  # a send under way may finish
        self._show_notifiers()

    def _show_notifiers(self) -> None:
        for notifier in self.config.notifiers:
            up = self.delivery.up(notifier.name)
            self.metrics.notifier_up.labels(notifier.name).set(int(up))

    def _configured(self, check: str, rule: str) -> bool:
        """Alerts of checks or rules removed by a reload are kept on disk but not shown."""
        return rule in self.config.rules.get(check, {})

    async def start(self) -> None:
        self.book = AlertBook(await asyncio.to_thread(load_states, self.engine))
        await self._reload_silences()
        await self._count_outbox()  # a backlog from the last run shows now, not in 15 s
        self._show_notifiers()
        self._tasks = [
            asyncio.create_task(self.delivery.run(), name="intmon-delivery"),
            asyncio.create_task(self._housekeeping(), name="intmon-alert-housekeeping"),
        ]

    async def reload_states(self, checks: Collection[str]) -> None:
        """The database's alert states of `checks` (another replica moved them last): before
        this replica judges checks it takes over. Raises DatabaseUnavailable like a read."""
        self.book.replace(checks, await self.writer.read(load_states, self.engine, checks))

    async def stop(self) -> None:
        self.delivery.stop()
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        self.notify.close()

    async def evaluate(self, check: CheckConfig, signals: CheckSignals) -> None:
        """After a run: move the state machine, commit, then let delivery know."""
        rules = self.config.rules.get(check.name, {})
        if not rules:
            return
        now = self.clock.time()

        def judge(silenced: bool) -> Outcome:
            return self.book.evaluate(
                signals, rules, now, silenced=silenced, provider=check.provider,
                inhibit=self._inhibit,
            )  # fmt: skip

        outcome = judge(self.silences.is_silenced(check.name, now))
        if self.writer.available and any(self._pages(i) for i in outcome.intents):
            # About to page: `intmon silence` writes from its own process, and the periodic
            # reload may not have seen a silence set since. Read them again, so a silence
            # holds from the moment the command returns, on every replica. (With the database
            # away nothing is committed, see _commit, so there is nothing to read for.)
            await self._reload_silences()
            if self.silences.is_silenced(check.name, now):
                outcome = judge(True)
        if not outcome.changes and not outcome.intents:
            return
        await self._commit(outcome)

    def _pages(self, intent: Intent) -> bool:
        """Whether `intent` goes to some notifier, and a silence would hold it back (not a
        RESOLVED, which goes to whoever heard the FIRING)."""
        if intent.silenced or intent.kind is Kind.RESOLVED:
            return False
        return bool(self.notify.route(intent, self._routes.get(intent.check, ())))

    async def _commit(self, outcome: Outcome) -> None:
        if not self.writer.available:
            # Memory stays where the database is, so the next run evaluates this again; trying
            # now would only queue behind the writer's own retries.
            return
        messages = self.notify.messages(outcome.intents, self._routes)
        try:
            await self.writer.submit(commit, self.engine, outcome.changes, messages)
        except DatabaseUnavailable:
            self.metrics.db_write_errors.inc()  # logged once by the writer; evaluated again
            return
        except StaleStateError as exc:
            log.warning("alert state changed underneath us, reloading: %s", exc)
            self.book.replace_all(await asyncio.to_thread(load_states, self.engine))
            return
        except SQLAlchemyError as exc:
            # Memory stays where the database is, so the next run evaluates this again.
            log.warning("could not commit alert state, retrying at the next run: %s", exc)
            self.metrics.db_write_errors.inc()
            return
        self.book.accept(outcome)
        for intent in outcome.intents:
            note = " (silenced)" if intent.silenced else ""
            # The id a message goes out with alone. Every FIRING may yet be grouped (that is
            # decided at delivery); a grouped one goes out under the group's id, and the
            # `notification_sent` line lists the alerts in it.
            ids = {
                m.notifier: notification_id([m.dedup_key])
                for m in messages
                if m.dedup_key.startswith(f"{intent.dedup_key}/")
            }
            facts = fields(
                "alert",
                check=intent.check,
                rule=intent.rule,
                severity=intent.severity,
                kind=intent.kind.lower(),
                since=utc_iso(intent.since),
                silenced=intent.silenced,
                notification_ids=ids,
            )
            log.info(
                "alert %s %s/%s %s%s",
                *(intent.kind, intent.check, intent.rule, intent.severity, note),
                extra=facts,
            )
        if messages:
            self.delivery.wake()

    async def _housekeeping(self) -> None:
        # Waits on the injected clock like the scheduler and the delivery loop, so all three
        # agree on how long 15 s is.
        while not self._stopping.is_set():
            sleeper = asyncio.ensure_future(self.clock.sleep(SILENCE_RELOAD))
            stopper = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sleeper, stopper):
                task.cancel()
            # Reads of a database known to be down would only fail again; keep what we have.
            if not self._stopping.is_set() and self.writer.available:
                await self._reload_silences()
                await self._count_outbox()

    async def _reload_silences(self) -> None:
        try:
            runtime = await self.writer.read(load_active, self.engine, self.clock.time())
        except DatabaseUnavailable:
            return  # the writer logs the outage once; the previous silences hold meanwhile
        except SQLAlchemyError as exc:
            log.warning("could not reload silences, keeping the previous ones: %s", exc)
            return
        self.silences = Silences(config=tuple(self.config.silences), runtime=runtime)

    async def _count_outbox(self) -> None:
        def count() -> int:
            with self.engine.connect() as connection:
                query = select(func.count()).where(col(OutboxRow.status).in_(UNSENT))
                return int(connection.execute(query).scalar_one())

        try:
            self.outbox_depth = await self.writer.read(count)
        except DatabaseUnavailable:
            # The writer logs the outage once; the last count stands meanwhile.
            log.debug("outbox not counted: the database is unavailable")
        except SQLAlchemyError as exc:
            log.warning("could not count the outbox: %s", exc)

    async def announce(self, key: str, title: str, body: str) -> None:
        """intmon's own trouble (results being dropped), sent to every notifier directly: the
        outbox lives in the database that is refusing writes. One attempt per notifier,
        at-most-once; a notifier that is down too misses it (the log and metrics keep it)."""
        nid = notification_id([f"intmon/{key}"])
        for name in self.notify.notifiers:
            try:
                await self.notify.send(name, title, body, "failure", nid=nid)
            except DeliveryError as exc:
                log.warning("could not tell notifier %s that %s: %s", name, title, exc)

    def firing(self) -> list[Firing]:
        return [
            Firing(s.check, s.rule, s.severity or "warning")
            for s in self.book.active()
            if s.phase is Phase.FIRING and self._configured(s.check, s.rule)
        ]

    def status(self) -> AlertReport:
        """Every pending or firing alert with its latest evaluation, and the alerts inhibition
        holds back, for /api/alerts."""
        now = self.clock.time()
        alerts = [
            AlertStatus.of(
                state,
                self.book.evaluations.get((state.check, state.rule)),
                silenced=self.silences.is_silenced(state.check, now),
            )
            for state in self.book.active()
            if self._configured(state.check, state.rule)
        ]
        inhibited = [
            InhibitedStatus.of(held)
            for held in self.book.inhibited.values()
            if self._configured(held.check, held.rule)
        ]
        return AlertReport(generated_at=now, alerts=tuple(alerts), inhibited=tuple(inhibited))
