"""Durable alert state and the notification outbox, in the daemon's database.

Alert state changes and the notifications they cause are committed in one transaction, with
compare-and-set on the state row: a restart neither re-pages a firing alert nor forgets one, and
a notification exists exactly when its transition does.

Delivery is at-least-once. The loop claims a due row by compare-and-set (status `sending`,
`attempts` bumped: the attempt's id), sends it, and right after Apprise answers commits `sent`
(or back to `pending`) only if the row still carries that attempt. A crash between Apprise's
send and that commit leaves the row `sending`; once the attempt's lease has run out (its
backoff plus `send_timeout`, so a live sender elsewhere is never doubled) it is sent again,
with the same notification id, so a receiver can drop the repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Engine, Index, Select, and_, func, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from monitor.alerting.machine import AlertState, Phase
from monitor.alerting.notify import (
    Message,
    Notify,
    Queued,
    group,
    notification_id,
    render_group,
)
from monitor.alerting.silences import SilenceRow
from monitor.core.backoff import backoff
from monitor.core.clock import Clock
from monitor.core.errors import DeliveryError, StorageError
from monitor.core.logs import fields
from monitor.core.outage import Outage
from monitor.storage.checkids import batches
from monitor.storage.writer import DatabaseUnavailable, Writer

log = logging.getLogger(__name__)
PENDING, SENDING, SENT = "pending", "sending", "sent"
EXPIRED, FAILED = "expired", "failed"
UNSENT = (PENDING, SENDING)
Q = TypeVar("Q", bound=Select[Any])


class AlertStateRow(SQLModel, table=True):
    __tablename__ = "alert_states"

    check: str = Field(primary_key=True)
    rule: str = Field(primary_key=True)
    phase: str
    severity: str | None = None
    since: float | None = None
    fired_at: float | None = None
    notified_severity: str | None = None
    last_notified: float | None = None
    clear_count: int = 0
    clear_since: float | None = None
    lower_count: int = 0
    cause: str | None = None
    version: int = 0


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(unique=True)
    notifier: str
    check: str
    rule: str
    kind: str
    group_key: str | None = None
    title: str
    body: str
    notify_type: str
    created_at: float
    next_attempt_at: float
    expires_at: float
    attempts: int = 0
    status: str = PENDING  # pending | sending | sent | expired | failed (permanent error)
    sent_at: float | None = None
    last_error: str | None = None


class StaleStateError(StorageError):
    """Another writer changed an alert state since it was loaded; reload and re-evaluate."""


def create_tables(engine: Engine) -> None:
    """The alert tables alone, for an engine without a Store (whose `open` creates them)."""
    names = (AlertStateRow.__tablename__, OutboxRow.__tablename__, SilenceRow.__tablename__)
    tables = [SQLModel.metadata.tables[str(name)] for name in names]
    # Direct: only callers without a Store, and so without its writer, need this.
    SQLModel.metadata.create_all(engine, tables=tables)


def load_states(engine: Engine, only: Collection[str] | None = None) -> list[AlertState]:
    """Every alert's state (or those of the checks named in `only`), by check then rule
    (Postgres returns rows in no order of its own)."""
    query = select(AlertStateRow).order_by(col(AlertStateRow.check), col(AlertStateRow.rule))
    states: list[AlertState] = []
    with Session(engine) as session:
        for batch in batches(only):
            narrowed = query if batch is None else query.where(col(AlertStateRow.check).in_(batch))
            states.extend(_to_state(row) for row in session.exec(narrowed))
    return states


def _to_state(row: AlertStateRow) -> AlertState:
    data = row.model_dump()
    data["phase"] = Phase(row.phase)
    return AlertState(**data)


def commit(
    engine: Engine, changes: Iterable[tuple[AlertState, AlertState]], messages: Iterable[Message]
) -> None:
    """State changes (old, new) and their messages, all or nothing. Raises StaleStateError when
    a state row is no longer what `old` says."""
    try:
        with engine.begin() as connection:
            for old, new in changes:
                values = {**asdict(new), "phase": str(new.phase)}
                if old.version == 0:
                    connection.execute(insert(AlertStateRow).values(**values))
                    continue
                result = connection.execute(
                    update(AlertStateRow)
                    .where(col(AlertStateRow.check) == old.check)
                    .where(col(AlertStateRow.rule) == old.rule)
                    .where(col(AlertStateRow.phase) == str(old.phase))
                    .where(col(AlertStateRow.version) == old.version)
                    .values(**values)
                )
                if result.rowcount != 1:
                    raise StaleStateError(f"alert {old.check}/{old.rule} changed underneath us")
            rows = [_outbox_values(m) for m in messages]
            if rows:
                connection.execute(insert(OutboxRow), rows)
    except IntegrityError as exc:
        # A state row that appeared since we loaded, or a message already queued: both mean
        # another writer got here first.
        raise StaleStateError(str(exc.orig)) from None


def _outbox_values(m: Message) -> dict[str, object]:
    return {
        "dedup_key": m.dedup_key,
        "notifier": m.notifier,
        "check": m.check,
        "rule": m.rule,
        "kind": m.kind,
        "group_key": m.group_key,
        "title": m.title,
        "body": m.body,
        "notify_type": m.notify_type,
        "created_at": m.created_at,
        "next_attempt_at": m.not_before,
        "expires_at": m.expires_at,
    }


def _idle(now: float, lease: float) -> ColumnElement[bool]:
    """Rows no attempt is under way for: pending, or sending by an attempt whose lease ran out
    (its process died between send and commit)."""
    stale = and_(col(OutboxRow.status) == SENDING, col(OutboxRow.next_attempt_at) + lease <= now)
    return or_(col(OutboxRow.status) == PENDING, stale)


def expire(engine: Engine, now: float, lease: float = 0.0) -> list[OutboxRow]:
    """Give up on idle rows past their expiry; returns them for logging and metrics."""
    gone = []
    with engine.begin() as connection:
        query = select(OutboxRow).where(_idle(now, lease), col(OutboxRow.expires_at) <= now)
        found = connection.execute(_unclaimed(query))
        rows = [OutboxRow.model_validate(dict(row._mapping)) for row in found]
        for row in rows:
            result = connection.execute(
                update(OutboxRow)
                .where(col(OutboxRow.id) == row.id, col(OutboxRow.status) == row.status)
                .where(col(OutboxRow.attempts) == row.attempts)
                .values(status=EXPIRED)
            )
            if result.rowcount == 1:
                gone.append(row)
    return gone


def pending(engine: Engine, now: float = float("inf"), lease: float = 0.0) -> list[OutboxRow]:
    """Idle rows (see _idle) that may go now, in the order they were queued; by default every
    alert's oldest unsent row.

    Only the oldest unsent row of each alert (notifier, check, rule) may go: an alert's messages
    are sent in the order they were queued. Were each row left to its own backoff, a RESOLVED
    queued during an outage could overtake its FIRING (fewer failed attempts, a shorter wait),
    or a row re-sent after a crash could arrive after the alert's later ones; a receiver
    showing the last message as the state would then be wrong.
    """
    heads = (
        select(func.min(OutboxRow.id))
        .where(col(OutboxRow.status).in_(UNSENT))
        .group_by(col(OutboxRow.notifier), col(OutboxRow.check), col(OutboxRow.rule))
    )
    query = (
        select(OutboxRow)
        .where(_idle(now, lease), col(OutboxRow.id).in_(heads.scalar_subquery()))
        .order_by(col(OutboxRow.id))
    )
    with Session(engine) as session:
        return list(session.exec(query).all())


def _unclaimed(query: Q) -> Q:
    """`query`'s rows locked for this transaction, leaving out those another process has
    locked: on Postgres, where several processes may claim at once, a row being claimed
    elsewhere is skipped rather than waited for (its compare-and-set would fail anyway).
    SQLite has one writer at a time and no such clause: there it changes nothing."""
    return query.with_for_update(skip_locked=True)


def claim(engine: Engine, rows: list[OutboxRow], now: float, cap: float) -> bool:
    """Take a batch for one attempt: mark it sending, bump attempts (the attempt's id) and push
    next_attempt_at out by the backoff, all rows or none, each only if still as read."""
    ids = {row.id for row in rows}
    with engine.connect() as connection:
        transaction = connection.begin()
        locked = connection.execute(
            _unclaimed(select(col(OutboxRow.id)).where(col(OutboxRow.id).in_(ids)))
        ).all()
        if len(locked) != len(ids):
            transaction.rollback()
            return False  # another worker is claiming some of them right now
        for row in rows:
            retry_at = now + backoff(row.attempts + 1, base=1.0, cap=cap)  # 1, 2, 4, ...
            result = connection.execute(
                update(OutboxRow)
                .where(col(OutboxRow.id) == row.id)
                .where(col(OutboxRow.status) == row.status)
                .where(col(OutboxRow.attempts) == row.attempts)
                .values(status=SENDING, attempts=row.attempts + 1, next_attempt_at=retry_at)
            )
            if result.rowcount != 1:
                transaction.rollback()
                return False
        transaction.commit()
    return True


def due_now(engine: Engine, ids: set[int], now: float) -> None:
    """Make pending rows due at once (their notifier answered again)."""
    with engine.begin() as connection:
        connection.execute(
            update(OutboxRow)
            .where(col(OutboxRow.id).in_(ids), col(OutboxRow.status) == PENDING)
            .values(next_attempt_at=now)
        )


def finish(
    engine: Engine, attempt: dict[int, int], status: str, now: float, error: str | None
) -> None:
    """End the attempt `attempt` (row id -> attempts when claimed) with `status`. A row whose
    attempt is no longer ours (its lease ran out and another worker took it) is left alone."""
    values: dict[str, object] = {"status": status, "last_error": error}
    if status == SENT:
        values["sent_at"] = now
    with engine.begin() as connection:
        for row_id, attempts in attempt.items():
            connection.execute(
                update(OutboxRow)
                .where(col(OutboxRow.id) == row_id, col(OutboxRow.status) == SENDING)
                .where(col(OutboxRow.attempts) == attempts)
                .values(**values)
            )


class Delivery:
    """The async loop that drains the outbox. Writes run on the writer's thread, where their
    compare-and-set result is awaited; reads in worker threads. A notifier that fails is an
    outage, logged when it starts and when it ends, not at every retry."""

    def __init__(
        self,
        writer: Writer,
        notify: Notify,
        clock: Clock,
        *,
        poll: float = 1.0,
        max_backoff: float = 30.0,
        on_expired: Callable[[str], None] = lambda notifier: None,
        on_notifier: Callable[[str, bool], None] = lambda notifier, up: None,
    ) -> None:
        self.writer = writer
        self.engine = writer.store.engine
        self.notify = notify
        self.clock = clock
        self.poll = poll
        self.max_backoff = max_backoff
        self.on_expired = on_expired
        self.on_notifier = on_notifier  # (notifier, up) when an outage starts or ends
        self._outages: dict[str, Outage] = {}
        self._waiting: dict[str, set[int]] = {}  # rows that failed during a notifier's outage
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Call after committing messages: deliver now rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """One pass: expire, group what is due, send each batch. Returns rows delivered."""
        if not self.writer.available:
            return 0  # nothing can be claimed or marked; the writer watches for the database
        now = self.clock.time()
        lease = self.notify.settings.send_timeout
        for row in await self.writer.submit(expire, self.engine, now, lease):
            log.warning("gave up on notification %s to %s: expired", row.title, row.notifier)
            self.on_expired(row.notifier)
        idle = await self.writer.read(pending, self.engine, now, lease)
        rows = {r.id: r for r in idle if r.id is not None}
        queued = [
            Queued(i, r.notifier, r.group_key, r.created_at, r.next_attempt_at <= now)
            for i, r in rows.items()
        ]
        batches = group(queued, self.notify.settings.group_wait)
        results = await asyncio.gather(
            *(self._deliver([rows[q.id] for q in b], now) for b in batches)
        )
        return sum(results)

    async def _deliver(self, rows: list[OutboxRow], now: float) -> int:
        if not await self.writer.submit(claim, self.engine, rows, now, self.max_backoff):
            return 0  # another worker has it
        attempt = {r.id: r.attempts + 1 for r in rows if r.id is not None}
        notifier = rows[0].notifier
        for row in rows:
            if row.status == SENDING:
                log.info("sending %s to %s again: an attempt stopped before it was marked sent "
                         "and may have arrived", row.title, notifier)  # fmt: skip
        if len(rows) == 1:
            title, body, kind = rows[0].title, rows[0].body, rows[0].notify_type
        else:
            parts = [(r.title, r.body, r.notify_type) for r in rows]
            title, body, kind = render_group(rows[0].group_key or "", parts)
        nid = notification_id(r.dedup_key for r in rows)
        try:
            await self.notify.send(notifier, title, body, kind, nid=nid)
        except DeliveryError as exc:
            status = FAILED if exc.permanent else PENDING
            await self.writer.submit(finish, self.engine, attempt, status, now, str(exc))
            if exc.permanent:
                log.warning("notification %s to %s failed for good: %s", nid, notifier, exc)
            else:
                self._waiting.setdefault(notifier, set()).update(attempt)
                self._outage(notifier).failed(exc)
            return 0
        # The commit follows Apprise's answer with nothing in between: this await is the whole
        # window in which a crash makes the row go out again.
        await self.writer.submit(finish, self.engine, attempt, SENT, self.clock.time(), None)
        alerts = [f"{r.check}/{r.rule}" for r in rows]
        sent = fields("notification_sent", notification_id=nid, notifier=notifier, alerts=alerts)
        log.info("sent %s to %s: %s", nid, notifier, title, extra=sent)
        self._wake.set()  # the alert's next message, held back behind this one, may go now
        waited = self._waiting.pop(notifier, set())
        if waited - set(attempt):
            # The notifier is back: what failed meanwhile goes now, not after its backoff.
            await self.writer.submit(due_now, self.engine, waited - set(attempt), self.clock.time())
            self._wake.set()
        self._outage(notifier).recovered(
            f"{len(waited)} notification{'s' if len(waited) != 1 else ''} waited and go out now"
        )
        return len(rows)

    def up(self, notifier: str) -> bool:
        """False while the notifier's deliveries fail (from the first failure to a success)."""
        outage = self._outages.get(notifier)
        return outage is None or outage.up

    def _outage(self, notifier: str) -> Outage:
        if notifier not in self._outages:
            self._outages[notifier] = Outage(
                f"notifier {notifier!r}",
                log,
                self.clock,
                meanwhile="notifications stay in the outbox and are retried "
                f"(at most {self.max_backoff:g} s apart) until they expire",
                on_change=lambda up: self.on_notifier(notifier, up),
            )
        return self._outages[notifier]

    async def run(self) -> None:
        """Until `stop`: a pass, then wait for `wake` or the poll interval."""
        while not self._stopping:
            try:
                await self.run_once()
            except DatabaseUnavailable:
                # The writer logged the outage once; the rows wait in the database.
                log.debug("outbox pass skipped: the database is unavailable")
            except Exception:
                # A bug, or a database error that is not an outage: keep the traceback.
                log.exception("outbox delivery pass failed")
            sleeper = asyncio.ensure_future(self.clock.sleep(self.poll))
            waker = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sleeper, waker):
                task.cancel()
            self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
