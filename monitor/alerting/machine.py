"""The alert state machine per (check, rule): ok -> pending -> firing -> resolved (-> ok).

Pure: `step` takes the previous state, a rule evaluation and the time, and returns the next
state plus the notifications it calls for. Persistence (monitor/alerting/outbox.py) and
delivery (monitor/alerting/notify.py) sit outside. Decisions worth knowing:

- Pending resets when the condition clears, like Prometheus' `for:`.
- Firing -> resolved needs `resolve_after` consecutive false evaluations and, when set,
  `keep_firing_for` since the first of them, so a flapping target does not page twice.
- Warning -> critical notifies (ESCALATED). Critical -> warning is silent: it is good news
  that needs no action, and the RESOLVED message follows. It waits `resolve_after` evaluations
  like a resolution does. The critical page still stands until RESOLVED, so going back to
  critical does not page again: a value hovering at the critical line pages once.
- Back in ok, `clear_since` says when the alert last left pending or firing: until then,
  the failures its rule explains stay explained (monitor/alerting/inhibit.py), across restarts.
- A silenced alert still advances; its intents are marked silenced and not sent. When the
  silence ends, an alert still firing that nobody heard of pages FIRING then. RESOLVED is sent
  exactly when a FIRING was: whoever heard the page hears that it is over, nobody else.
- An alert takes the error class of the check's last failure when it fires (`cause`), and
  keeps it until it resolves, across restarts: notifiers filtered by class
  (`notifiers[].error_classes`) hear all of an alert or none of it, RESOLVED included. Only
  the rules that judge failures whatever their cause (RuleType.generic) take one.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from monitor.alerting.inhibit import ExplainedView, Inhibited, explained
from monitor.alerting.rules import Evaluation, SignalView, evaluate
from monitor.config.alerting import InhibitRule
from monitor.config.rules import RULES, RuleConfig, Severity

RANK: dict[Severity | None, int] = {None: 0, "warning": 1, "critical": 2}


class Phase(enum.StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


class Kind(enum.StrEnum):
    FIRING = "FIRING"
    RESOLVED = "RESOLVED"
    REMINDER = "REMINDER"
    ESCALATED = "ESCALATED"


@dataclass(frozen=True)
class AlertState:
    """What survives a restart. `version` increases on every committed change (CAS key)."""

    check: str
    rule: str
    phase: Phase = Phase.OK
    severity: Severity | None = None
    since: float | None = None  # when the condition became true (start of pending)
    fired_at: float | None = None
    notified_severity: Severity | None = None  # highest severity actually sent; None: unheard
    last_notified: float | None = None  # last FIRING / ESCALATED / REMINDER sent
    clear_count: int = 0  # consecutive evaluations with the condition false
    clear_since: float | None = None  # firing: first of them; ok: when it last was active
    lower_count: int = 0  # consecutive evaluations below the current severity
    cause: str | None = None  # error class it fired with; notifiers are chosen by it
    version: int = 0


@dataclass(frozen=True)
class Details:
    """Context for the message, taken from the check's signals at evaluation time."""

    last_error: str | None = None
    migration_link: str | None = None
    provider: str | None = None
    request_id: str | None = None  # of the last failed run, which the provider's support asks for
    error_class: str | None = None  # of the last failed run


@dataclass(frozen=True)
class Intent:
    """A notification the state machine asks for. Silenced intents are recorded, not sent."""

    kind: Kind
    check: str
    rule: str
    severity: Severity
    value: float | None
    threshold: float | str | None
    summary: str
    since: float
    at: float
    last_error: str | None = None
    migration_link: str | None = None
    provider: str | None = None
    silenced: bool = False
    request_id: str | None = None
    cause: str | None = None  # the error class notifiers filter on (AlertState.cause)

    @property
    def dedup_key(self) -> str:
        """The same intent computed twice (a retried commit) is one notification."""
        return f"{self.check}/{self.rule}/{self.kind}/{self.since:.3f}/{self.at:.3f}"


def step(
    state: AlertState,
    evaluation: Evaluation,
    rule: RuleConfig,
    now: float,
    *,
    silenced: bool = False,
    details: Details = Details(),  # frozen, so one shared default is safe
) -> tuple[AlertState, list[Intent]]:
    if not evaluation.known:
        return state, []  # not enough data to judge: neither fire, nor count towards resolving
    severity = evaluation.severity
    if state.phase is Phase.OK:
        if severity is None:
            return state, []
        state = replace(state, phase=Phase.PENDING, severity=severity, since=now, clear_since=None)
    if state.phase is Phase.PENDING:
        if severity is None:
            return _ok(state, now), []
        state = replace(state, severity=_max(state.severity, severity))
        if now - (state.since or now) < rule.for_:
            return state, []
        state = replace(state, phase=Phase.FIRING, fired_at=now)
        return _announce(state, evaluation, now, silenced, details)
    if severity is None:
        return _clearing(state, evaluation, rule, now, silenced, details)
    return _still_firing(state, evaluation, rule, now, silenced, details)


def _clearing(
    state: AlertState,
    evaluation: Evaluation,
    rule: RuleConfig,
    now: float,
    silenced: bool,
    details: Details,
) -> tuple[AlertState, list[Intent]]:
    clear_since = state.clear_since if state.clear_since is not None else now
    state = replace(
        state, clear_count=state.clear_count + 1, clear_since=clear_since, lower_count=0
    )
    held = rule.keep_firing_for is not None and now - clear_since < rule.keep_firing_for
    if state.clear_count < rule.resolve_after or held:
        return _remind(state, evaluation, rule, now, silenced, details)
    heard = state.notified_severity is not None
    intent = _intent(
        Kind.RESOLVED,
        state,
        evaluation,
        now,
        details,
        severity=state.notified_severity or state.severity or "warning",
        silenced=not heard,
    )
    return _ok(state, now), [intent]


def _ok(state: AlertState, now: float) -> AlertState:
    """Back to ok, remembering when the condition was last active (see `clear_since`)."""
    return AlertState(state.check, state.rule, clear_since=now, version=state.version)


def _still_firing(
    state: AlertState,
    evaluation: Evaluation,
    rule: RuleConfig,
    now: float,
    silenced: bool,
    details: Details,
) -> tuple[AlertState, list[Intent]]:
    severity = evaluation.severity
    before = state.severity
    state = replace(state, clear_count=0, clear_since=None)
    if RANK[severity] < RANK[state.severity]:
        state = replace(state, lower_count=state.lower_count + 1)
        if state.lower_count >= rule.resolve_after:
            state = replace(state, severity=severity, lower_count=0)
    else:
        state = replace(state, severity=_max(state.severity, severity), lower_count=0)
    heard = state.notified_severity
    unheard = heard is None or RANK[state.severity] > RANK[heard]
    # While silenced, a change is recorded once (as a silenced intent), not on every evaluation.
    if unheard and (not silenced or RANK[state.severity] > RANK[before]):
        return _announce(state, evaluation, now, silenced, details)
    return _remind(state, evaluation, rule, now, silenced, details)


def _announce(
    state: AlertState, evaluation: Evaluation, now: float, silenced: bool, details: Details
) -> tuple[AlertState, list[Intent]]:
    """FIRING the first time anyone hears of it, ESCALATED when it got worse since."""
    kind = Kind.FIRING if state.notified_severity is None else Kind.ESCALATED
    if kind is Kind.FIRING:
        state = replace(state, cause=_cause(state.rule, details))
    intent = _intent(kind, state, evaluation, now, details, silenced=silenced)
    if not silenced:
        state = replace(state, notified_severity=state.severity, last_notified=now)
    return state, [intent]


def _remind(
    state: AlertState,
    evaluation: Evaluation,
    rule: RuleConfig,
    now: float,
    silenced: bool,
    details: Details,
) -> tuple[AlertState, list[Intent]]:
    if state.notified_severity is None:
        return state, []  # fired during a silence: nobody to remind
    last = state.last_notified if state.last_notified is not None else now
    if rule.repeat <= 0 or now - last < rule.repeat:
        return state, []
    intent = _intent(Kind.REMINDER, state, evaluation, now, details, silenced=silenced)
    if not silenced:
        state = replace(state, last_notified=now)
    return state, [intent]


def _intent(
    kind: Kind,
    state: AlertState,
    evaluation: Evaluation,
    now: float,
    details: Details,
    *,
    silenced: bool,
    severity: Severity | None = None,
) -> Intent:
    return Intent(
        kind=kind,
        check=state.check,
        rule=state.rule,
        severity=severity or state.severity or "warning",
        value=evaluation.value,
        threshold=evaluation.threshold,
        summary=evaluation.summary,
        since=state.since if state.since is not None else now,
        at=now,
        last_error=details.last_error,
        migration_link=details.migration_link,
        provider=details.provider,
        silenced=silenced,
        request_id=details.request_id,
        cause=state.cause,
    )


def _cause(rule: str, details: Details) -> str | None:
    """What an alert of a rule judging failures whatever their cause (error_rate, latency_p95,
    consecutive_failures) is about: the check's last failure. A cause rule's alert (sunset,
    certificate, rate_limited, ...) names its own subject, and has no class to route by."""
    kind = RULES.get(rule)
    return details.error_class if kind is not None and kind.generic else None


def _last_active(state: AlertState, now: float) -> float | None:
    return now if state.phase is not Phase.OK else state.clear_since


def _max(a: Severity | None, b: Severity | None) -> Severity | None:
    return a if RANK[a] >= RANK[b] else b


@dataclass(frozen=True)
class Outcome:
    """One evaluation round of one check: state changes to commit and what to notify."""

    changes: list[tuple[AlertState, AlertState]]  # (as loaded, new with version + 1)
    intents: list[Intent]


class AlertBook:
    """The current state of every (check, rule), in memory. Still pure: the daemon commits
    `Outcome.changes` (outbox.commit) and only then calls `accept`, so memory never runs
    ahead of the database."""

    def __init__(self, states: Iterable[AlertState] = ()) -> None:
        self._states: dict[tuple[str, str], AlertState] = {(s.check, s.rule): s for s in states}
        self.evaluations: dict[tuple[str, str], Evaluation] = {}
        self.inhibited: dict[tuple[str, str], Inhibited] = {}

    def get(self, check: str, rule: str) -> AlertState:
        return self._states.get((check, rule)) or AlertState(check, rule)

    def evaluate(
        self,
        view: SignalView,
        rules: dict[str, RuleConfig],
        now: float,
        *,
        silenced: bool = False,
        provider: str | None = None,
        inhibit: Sequence[InhibitRule] = (),
    ) -> Outcome:
        details = Details(
            view.last_error,
            view.migration_link,
            provider,
            view.last_request_id,
            view.last_error_class,
        )
        changes, intents = [], []
        judged: dict[str, AlertState] = {}  # this round's states, for the rules judged after
        # Cause rules first: whether they fire now decides what the generic rules count.
        for name, rule in sorted(rules.items(), key=lambda item: RULES[item[0]].generic):
            evaluation = self._judge(view, name, rule, now, inhibit, judged)
            self.evaluations[(view.check, name)] = evaluation
            old = self.get(view.check, name)
            new, wanted = step(old, evaluation, rule, now, silenced=silenced, details=details)
            if new != old:
                changes.append((old, replace(new, version=old.version + 1)))
            judged[name] = new
            intents.extend(wanted)
        return Outcome(changes, intents)

    def _judge(
        self,
        view: SignalView,
        name: str,
        rule: RuleConfig,
        now: float,
        inhibit: Sequence[InhibitRule],
        judged: Mapping[str, AlertState],
    ) -> Evaluation:
        """The rule's evaluation, without the failures that active cause rules explain."""
        evaluation = evaluate(name, rule, view, now)
        self.inhibited.pop((view.check, name), None)
        active = {rule: _last_active(state, now) for rule, state in judged.items()}
        until, by = explained(name, inhibit, active)
        if not until:
            return evaluation
        net = evaluate(name, rule, ExplainedView(view, until), now)
        if evaluation.severity is not None and RANK[evaluation.severity] > RANK[net.severity]:
            self.inhibited[(view.check, name)] = Inhibited(
                view.check, name, evaluation.severity, evaluation.summary, by
            )
        if net.value != evaluation.value:
            return replace(net, summary=f"{net.summary}, leaving out what {', '.join(by)} explains")
        return net

    def accept(self, outcome: Outcome) -> None:
        for _, new in outcome.changes:
            self._states[(new.check, new.rule)] = new

    def replace_all(self, states: Iterable[AlertState]) -> None:
        """After a lost compare-and-set: the database is the truth."""
        self._states = {(s.check, s.rule): s for s in states}

    def replace(self, checks: Collection[str], states: Iterable[AlertState]) -> None:
        """The states of `checks` as the database has them (`states`, of those checks only):
        checks taken over from another replica, which moved them last."""
        kept = {key: state for key, state in self._states.items() if key[0] not in checks}
        self._states = kept | {(s.check, s.rule): s for s in states}

    def active(self) -> list[AlertState]:
        """Pending and firing alerts, for `/api/alerts` and the `intmon_alert_firing` gauge."""
        return [s for s in self._states.values() if s.phase is not Phase.OK]
