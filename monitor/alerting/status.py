"""The shape of `/api/alerts`: every pending or firing alert with its latest evaluation.

`Alerter.status()` builds an `AlertReport`; the API serialises it and the status page renders
from its attributes.
"""

from __future__ import annotations

from pydantic import MISSING

from monitor.alerting.inhibit import Inhibited
from monitor.alerting.machine import AlertState, Phase
from monitor.alerting.rules import Evaluation
from monitor.config.rules import Severity
from monitor.core.model import StatusModel


class AlertStatus(StatusModel):
    check: str
    rule: str
    phase: Phase
    severity: Severity | None
    since: float | None
    """When the condition became true (the start of pending)."""
    fired_at: float | None
    notified_severity: Severity | None
    """The highest severity actually sent; null when nobody has been told."""
    last_notified: float | None
    clear_count: int
    clear_since: float | None
    lower_count: int
    version: int
    # The evaluation's three keys are absent, not null, until this process has evaluated the
    # rule: after a restart the state comes from the database without one.
    summary: str | MISSING = MISSING
    value: float | MISSING | None = MISSING
    threshold: float | str | MISSING | None = MISSING
    silenced: bool

    @classmethod
    def of(cls, state: AlertState, evaluation: Evaluation | None, silenced: bool) -> AlertStatus:
        return cls(
            check=state.check,
            rule=state.rule,
            phase=state.phase,
            severity=state.severity,
            since=state.since,
            fired_at=state.fired_at,
            notified_severity=state.notified_severity,
            last_notified=state.last_notified,
            clear_count=state.clear_count,
            clear_since=state.clear_since,
            lower_count=state.lower_count,
            version=state.version,
            summary=MISSING if evaluation is None else evaluation.summary,
            value=MISSING if evaluation is None else evaluation.value,
            threshold=MISSING if evaluation is None else evaluation.threshold,
            silenced=silenced,
        )


class InhibitedStatus(StatusModel):
    """A generic rule (error_rate, latency_p95, consecutive_failures) whose own figures call
    for a page, held back because a cause rule of the same check explains the failures."""

    check: str
    rule: str
    severity: Severity
    """What the rule would say if it counted the explained failures."""
    summary: str
    """The rule's figures with the explained failures counted."""
    inhibited_by: tuple[str, ...]
    """The cause rules (rate_limited, freshness, ...) that explain them."""

    @classmethod
    def of(cls, held: Inhibited) -> InhibitedStatus:
        return cls(
            check=held.check,
            rule=held.rule,
            severity=held.severity,
            summary=held.summary,
            inhibited_by=held.by,
        )


class AlertReport(StatusModel):
    """The answer of `GET /api/alerts`."""

    generated_at: float
    alerts: tuple[AlertStatus, ...]
    inhibited: tuple[InhibitedStatus, ...] = ()
    """Alerts that would fire but are explained by a firing cause rule: they do not notify."""
