"""One check in depth, for `/checks/{name}` and `GET /api/checks/{name}`: typed models, the
database reads behind them, and the pure step from those reads to the models."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from sqlmodel import Session, col, select

from monitor.alerting.outbox import SENT, OutboxRow
from monitor.alerting.status import AlertStatus
from monitor.core.model import StatusModel
from monitor.core.quantile import quantile
from monitor.core.units import HOUR, WEEK, hour_of
from monitor.engine.status import CheckStatus, LastRun
from monitor.signals.status import ShapeField
from monitor.storage.schema import RollupRow
from monitor.storage.store import RunRecord, Store

DAY_HOURS = 24
LAST_FAILURES = 10
LAST_NOTIFICATIONS = 20


class HourPoint(StatusModel):
    """One clock hour of the last day, from the check's raw runs."""

    hour: int
    """Unix seconds at the start of the hour."""
    runs: int
    failures: int
    p50: float | None
    p95: float | None
    max: float | None
    """Latency quantiles and maximum over the runs that were timed; null when none was."""
    error_classes: dict[str, int]
    """Failed runs by error class."""


class WeekPoint(StatusModel):
    """One rolled-up hour of the last week."""

    hour: int
    runs: int
    failures: int
    p95: float | None


class NotificationEntry(StatusModel):
    """One notification of an alert transition, however many notifiers it went to."""

    created_at: float
    rule: str
    kind: str
    """FIRING, RESOLVED, REMINDER or ESCALATED."""
    title: str
    notifiers: tuple[str, ...]
    delivered: bool
    """True once every notifier has taken it."""


class CheckDetail(StatusModel):
    """The answer of `GET /api/checks/{name}`; what the check's page shows."""

    generated_at: float
    check: CheckStatus
    alerts: tuple[AlertStatus, ...]
    """Its pending and firing alerts."""
    history_available: bool
    """False when the database could not be read: the lists below are then empty."""
    day: tuple[HourPoint, ...]
    week: tuple[WeekPoint, ...]
    last_failures: tuple[LastRun, ...]
    """Newest first."""
    notifications: tuple[NotificationEntry, ...]
    """Newest first."""
    learned_shape: tuple[ShapeField, ...] = ()
    """The response shape the check learned, path by path (its drift is in
    `check.metrics.shape`); empty until it learned one."""


@dataclass(frozen=True)
class Stored:
    """What the database holds of one check: read in one go on a worker thread."""

    runs: list[RunRecord]
    rollups: list[RollupRow]
    failures: list[RunRecord]
    outbox: list[OutboxRow]


def read_stored(store: Store, name: str, now: float) -> Stored:
    """Blocking: each read is one key range of this check (the outbox is small and indexed by
    nothing the page needs, so it is read newest first and stops at a limit)."""
    day_start = hour_of(now) - (DAY_HOURS - 1) * HOUR
    with Session(store.engine) as session:
        query = (
            select(OutboxRow)
            .where(col(OutboxRow.check) == name)
            .order_by(col(OutboxRow.id).desc())
            .limit(LAST_NOTIFICATIONS * 8)  # one row per notifier
        )
        outbox = list(session.exec(query).all())
    return Stored(
        runs=store.runs_since(name, day_start),
        rollups=store.rollups.hours(name, now - WEEK),
        failures=store.last_failures(name, LAST_FAILURES),
        outbox=outbox,
    )


def build_detail(
    check: CheckStatus,
    alerts: tuple[AlertStatus, ...],
    stored: Stored | None,
    now: float,
    learned_shape: tuple[ShapeField, ...] = (),
) -> CheckDetail:
    """Pure: the models from the live status and what was read (None: the database is down)."""
    available = stored is not None
    stored = stored or Stored([], [], [], [])
    return CheckDetail(
        generated_at=now,
        check=check,
        alerts=alerts,
        history_available=available,
        day=tuple(_hours(stored.runs)),
        week=tuple(
            WeekPoint(hour=r.hour, runs=r.count, failures=r.failures, p95=r.p95)
            for r in stored.rollups
        ),
        last_failures=tuple(LastRun.of(r) for r in stored.failures),
        notifications=tuple(_notifications(stored.outbox))[:LAST_NOTIFICATIONS],
        learned_shape=learned_shape,
    )


def _hours(runs: list[RunRecord]) -> list[HourPoint]:
    points = []
    for hour, group in groupby(runs, key=lambda r: hour_of(r.ts)):
        records = list(group)
        timed = [r.latency for r in records if r.latency is not None]
        classes: dict[str, int] = {}
        for r in records:
            if not r.ok:
                name = r.error_class or "unknown"
                classes[name] = classes.get(name, 0) + 1
        points.append(
            HourPoint(
                hour=hour,
                runs=len(records),
                failures=sum(1 for r in records if not r.ok),
                p50=quantile(timed, 0.5),
                p95=quantile(timed, 0.95),
                max=max(timed, default=None),
                error_classes=classes,
            )
        )
    return points


def _notifications(rows: list[OutboxRow]) -> list[NotificationEntry]:
    """One entry per transition: its rows (one per notifier) share rule, kind and time."""
    entries = []
    for (created, rule, kind), group in groupby(rows, key=lambda r: (r.created_at, r.rule, r.kind)):
        same = list(group)
        entries.append(
            NotificationEntry(
                created_at=created,
                rule=rule,
                kind=kind,
                title=same[0].title,
                notifiers=tuple(sorted({r.notifier for r in same})),
                delivered=all(r.status == SENT for r in same),
            )
        )
    return entries
