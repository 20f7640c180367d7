"""The alert state machine, driven through scripted evaluation sequences on a fake clock."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from pydantic import ValidationError

from monitor.alerting.machine import AlertBook, AlertState, Details, Kind, Phase, step
from monitor.alerting.rules import Evaluation
from monitor.alerting.silences import Silences
from monitor.config.alerting import SilenceConfig
from monitor.config.rules import ErrorRateRule, RuleConfig, parse_alerts
from monitor.core.clock import FakeClock
from tests.fakes import View

W = Evaluation("warning", 0.02, 0.01, "error rate 2% >= warning 1%")
C = Evaluation("critical", 0.5, 0.05, "error rate 50% >= critical 5%")
OK = Evaluation(None, 0.0, 0.01, "error rate 0% < warning 1%")
UNKNOWN = Evaluation(None, None, None, "error rate n/a: fewer than min_runs 3", known=False)
S = "silenced"  # marks a step evaluated while a silence covers the check


def run(rule: RuleConfig, script: list[tuple[float, Evaluation] | tuple[float, Evaluation, str]]):
    """Each step: advance the clock, evaluate. Returns one list of intent labels per step."""
    clock = FakeClock()
    state = AlertState("orders-api", "error_rate")
    labels = []
    for entry in script:
        clock.advance(entry[0])
        silenced = len(entry) == 3
        state, intents = step(state, entry[1], rule, clock.time(), silenced=silenced)
        labels.append(
            [f"{i.kind}:{i.severity}" + (" (silenced)" if i.silenced else "") for i in intents]
        )
    return labels, state


def rule(**raw: object) -> RuleConfig:
    return ErrorRateRule.model_validate(raw)


SCENARIOS = [
    ("healthy-stays-quiet", {}, [(60, OK), (60, OK), (60, OK)], [[], [], []]),
    (
        "too-little-data-neither-resolves-nor-refires",
        {},
        [(60, C), (60, UNKNOWN), (60, UNKNOWN), (60, UNKNOWN), (60, C)],
        [["FIRING:critical"], [], [], [], []],
    ),
    ("too-little-data-never-fires", {}, [(60, UNKNOWN), (60, UNKNOWN)], [[], []]),
    (
        "too-little-data-keeps-pending-pending",
        {"for": "2m"},
        [(0, W), (60, UNKNOWN), (60, W), (1, W)],
        [[], [], ["FIRING:warning"], []],
    ),
    ("fires-once-without-for", {}, [(60, W), (60, W), (60, W)], [["FIRING:warning"], [], []]),
    (
        "pending-waits-for-for",
        {"for": "2m"},
        [(0, W), (60, W), (60, W), (60, W)],
        [[], [], ["FIRING:warning"], []],
    ),
    (
        "pending-resets-when-clear",
        {"for": "2m"},
        [(0, W), (60, OK), (60, W), (60, W)],
        [[], [], [], []],
    ),
    (
        "resolves-after-two-clear-evaluations",
        {},
        [(0, C), (60, OK), (60, OK), (60, OK)],
        [["FIRING:critical"], [], ["RESOLVED:critical"], []],
    ),
    (
        "a-flap-does-not-page-twice",
        {},
        [(0, W), (60, OK), (60, W), (60, OK), (60, W)],
        [["FIRING:warning"], [], [], [], []],
    ),
    (
        "resolve-after-is-configurable",
        {"resolve_after": 3},
        [(0, W), (60, OK), (60, OK), (60, OK)],
        [["FIRING:warning"], [], [], ["RESOLVED:warning"]],
    ),
    (
        "keep-firing-for-holds-the-alert",
        {"keep_firing_for": "5m"},
        [(0, W), (60, OK), (60, OK), (180, OK), (60, OK)],
        [["FIRING:warning"], [], [], [], ["RESOLVED:warning"]],
    ),
    (
        "reminds-every-repeat-not-before",
        {"repeat": "1h"},
        [(0, W), (3599, W), (1, W), (1800, W), (1800, W)],
        [["FIRING:warning"], [], ["REMINDER:warning"], [], ["REMINDER:warning"]],
    ),
    ("repeat-zero-never-reminds", {"repeat": 0}, [(0, W), (86400, W)], [["FIRING:warning"], []]),
    (
        "escalation-notifies-once",
        {},
        [(0, W), (60, C), (60, C)],
        [["FIRING:warning"], ["ESCALATED:critical"], []],
    ),
    (
        # The critical page still stands (nothing resolved it), so a return to critical is quiet.
        "de-escalation-and-back-is-silent",
        {},
        [(0, C), (60, W), (60, W), (60, C)],
        [["FIRING:critical"], [], [], []],
    ),
    (
        "hovering-at-the-critical-line-pages-once",
        {},
        [(0, C), (60, W), (60, C), (60, W), (60, C)],
        [["FIRING:critical"], [], [], [], []],
    ),
    (
        "pending-fires-at-its-worst-severity",
        {"for": "1m"},
        [(0, C), (60, W)],
        [[], ["FIRING:critical"]],
    ),
    (
        "silenced-firing-is-recorded-once",
        {},
        [(0, W, S), (60, W, S), (60, C, S), (60, C, S)],
        [["FIRING:warning (silenced)"], [], ["FIRING:critical (silenced)"], []],
    ),
    (
        "still-firing-after-the-silence-pages-then",
        {},
        [(0, W, S), (60, W, S), (60, W), (60, W)],
        [["FIRING:warning (silenced)"], [], ["FIRING:warning"], []],
    ),
    (
        "unheard-alert-resolves-quietly",
        {},
        [(0, W, S), (60, OK, S), (60, OK)],
        [["FIRING:warning (silenced)"], [], ["RESOLVED:warning (silenced)"]],
    ),
    (
        "heard-alert-resolves-aloud-even-in-a-silence",
        {},
        [(0, W), (60, OK, S), (60, OK, S)],
        [["FIRING:warning"], [], ["RESOLVED:warning"]],
    ),
    (
        "reminders-are-held-during-a-silence",
        {"repeat": "1h"},
        [(0, W), (3600, W, S), (60, W)],
        [["FIRING:warning"], ["REMINDER:warning (silenced)"], ["REMINDER:warning"]],
    ),
    (
        "escalation-in-a-silence-is-sent-after-it",
        {},
        [(0, W), (60, C, S), (60, C)],
        [["FIRING:warning"], ["ESCALATED:critical (silenced)"], ["ESCALATED:critical"]],
    ),
]


@pytest.mark.parametrize(
    ("raw", "script", "expected"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_the_state_machine_notifies_exactly_when_it_should(
    raw: dict, script: list, expected: list
) -> None:
    labels, _ = run(rule(**raw), script)
    assert labels == expected


@pytest.mark.parametrize(
    ("script", "severity"),
    [([(0, C), (60, W)], "critical"), ([(0, C), (60, W), (60, W)], "warning")],
    ids=["one-lower-evaluation-keeps-critical", "resolve-after-lower-evaluations-de-escalate"],
)
def test_de_escalation_waits_like_resolution(script: list, severity: str) -> None:
    _, state = run(rule(), script)
    assert (state.severity, state.notified_severity) == (severity, "critical")


def test_a_resolved_alert_is_ok_again_and_can_fire_anew() -> None:
    labels, state = run(rule(), [(0, W), (60, OK), (60, OK), (60, C)])
    assert labels[-1] == ["FIRING:critical"]
    assert (state.phase, state.severity, state.notified_severity) == (
        Phase.FIRING,
        "critical",
        "critical",
    )


def test_pending_remembers_when_the_condition_began() -> None:
    _, state = run(rule(**{"for": "5m"}), [(0, W), (60, W)])
    assert state.phase is Phase.PENDING
    assert state.since == FakeClock().time()


def test_an_intent_carries_what_the_message_needs() -> None:
    now = 1_700_000_000.0
    details = Details("http_5xx: HTTP 503", "https://example.com/v2", "stripe", "req-7f3a")
    _, intents = step(AlertState("pay", "error_rate"), C, rule(), now, details=details)
    (intent,) = intents
    assert (intent.kind, intent.check, intent.rule, intent.severity) == (
        Kind.FIRING,
        "pay",
        "error_rate",
        "critical",
    )
    assert (intent.value, intent.threshold, intent.since, intent.at) == (0.5, 0.05, now, now)
    assert (intent.last_error, intent.migration_link, intent.provider, intent.request_id) == (
        "http_5xx: HTTP 503",
        "https://example.com/v2",
        "stripe",
        "req-7f3a",
    )
    assert intent.dedup_key == f"pay/error_rate/FIRING/{now:.3f}/{now:.3f}"


def test_resolved_reports_since_when_it_was_firing() -> None:
    clock = FakeClock()
    start = clock.time()
    state, _ = step(AlertState("a", "r"), W, rule(), start)
    state, _ = step(state, OK, rule(), start + 60)
    state, (resolved,) = step(state, OK, rule(), start + 120)
    assert (resolved.kind, resolved.since, resolved.at) == (Kind.RESOLVED, start, start + 120)
    # Back to ok, remembering when it last was active: the failures it explains stay explained.
    assert state == AlertState("a", "r", clear_since=start + 120)


def test_the_book_reports_only_changed_states_with_their_next_version() -> None:
    rules = parse_alerts({}, {}, "http")
    book = AlertBook()
    now = 1_700_000_000.0
    quiet = book.evaluate(View(), rules, now)
    assert (quiet.changes, quiet.intents) == ([], [])
    broken = book.evaluate(View(failure_ratio=1.0, last_error="timeout: 10s"), rules, now + 60)
    assert [(old.version, new.version, new.phase) for old, new in broken.changes] == [
        (0, 1, Phase.FIRING)
    ]
    assert [(i.kind, i.rule, i.last_error) for i in broken.intents] == [
        (Kind.FIRING, "error_rate", "timeout: 10s")
    ]
    assert book.get("orders-api", "error_rate").phase is Phase.OK  # not accepted yet
    book.accept(broken)
    assert [(s.rule, s.severity) for s in book.active()] == [("error_rate", "critical")]
    again = book.evaluate(View(failure_ratio=1.0), rules, now + 120)
    assert (again.changes, again.intents) == ([], [])
    assert book.evaluations[("orders-api", "error_rate")].severity == "critical"


def test_taking_checks_over_replaces_their_states_and_keeps_the_others() -> None:
    mine = AlertState("mine", "error_rate", Phase.FIRING, "critical", version=4)
    theirs = AlertState("taken", "error_rate", Phase.FIRING, "warning", version=2)
    book = AlertBook([mine, theirs, AlertState("taken", "latency_p95", Phase.PENDING)])
    resolved = AlertState("taken", "error_rate", Phase.OK, version=3)  # as the last owner left it
    book.replace({"taken"}, [resolved])
    assert book.get("mine", "error_rate") == mine
    assert book.get("taken", "error_rate") == resolved
    assert book.get("taken", "latency_p95") == AlertState("taken", "latency_p95")  # none stored


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


WEEKEND_NIGHTS = {
    "checks": ["stripe-*", "github"],
    "weekly": {"days": ["sat", "sun"], "start": "22:00", "end": "02:00", "timezone": "UTC"},
}
ONE_OFF = {"checks": "orders-api", "start": "2024-03-01T10:00:00Z", "end": "2024-03-01T12:00"}


@pytest.mark.parametrize(
    ("raw", "check", "when", "silenced"),
    [
        (WEEKEND_NIGHTS, "stripe-charges", "2024-03-02T23:00:00+00:00", True),  # saturday
        (WEEKEND_NIGHTS, "stripe-charges", "2024-03-04T01:00:00+00:00", True),  # mon, from sun
        (WEEKEND_NIGHTS, "stripe-charges", "2024-03-03T01:00:00+00:00", True),  # sun, from sat
        (WEEKEND_NIGHTS, "stripe-charges", "2024-03-04T02:00:00+00:00", False),  # end excluded
        (WEEKEND_NIGHTS, "stripe-charges", "2024-03-01T23:00:00+00:00", False),  # friday
        (WEEKEND_NIGHTS, "orders-api", "2024-03-02T23:00:00+00:00", False),  # not matched
        (ONE_OFF, "orders-api", "2024-03-01T11:59:59+00:00", True),
        (ONE_OFF, "orders-api", "2024-03-01T09:59:59+00:00", False),
        (ONE_OFF, "orders-api", "2024-03-01T12:00:00+00:00", False),
    ],
    ids=[
        "weekly-inside",
        "weekly-past-midnight-into-monday",
        "weekly-past-midnight-into-sunday",
        "weekly-end",
        "weekly-other-day",
        "weekly-other-check",
        "one-off-inside",
        "one-off-before",
        "one-off-end",
    ],
)
def test_maintenance_windows_cover_the_checks_and_times_they_name(
    raw: dict, check: str, when: str, silenced: bool
) -> None:
    silences = Silences(config=(SilenceConfig.model_validate(raw),))
    assert silences.is_silenced(check, at(when)) is silenced


def test_a_weekly_window_follows_its_time_zone() -> None:
    raw = {"checks": "*", "weekly": {"days": ["mon"], "start": "09:00", "end": "10:00",
                                     "timezone": "Europe/Berlin"}}  # fmt: skip
    silences = Silences(config=(SilenceConfig.model_validate(raw),))
    assert silences.is_silenced("x", at("2024-03-04T08:30:00+00:00"))  # 09:30 in Berlin
    assert not silences.is_silenced("x", at("2024-03-04T09:30:00+00:00"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"checks": "a"}, "set end (with an optional start) or weekly"),
        ({"checks": "a", "start": "2024-03-02T00:00Z", "end": "2024-03-01T00:00Z"}, "end must be"),
        ({**WEEKEND_NIGHTS, "end": "2024-03-01T00:00Z"}, "either start/end or weekly, not both"),
        ({"checks": "a", "weekly": {**WEEKEND_NIGHTS["weekly"], "days": ["sa"]}}, "days.0"),
        ({"checks": "a", "weekly": {**WEEKEND_NIGHTS["weekly"], "timezone": "Mars/Base"}},
         "unknown time zone 'Mars/Base'"),
        ({"checks": [], "end": "2024-03-01T00:00Z"}, "at least 1 item"),
    ],
    ids=["no-time", "end-before-start", "both-kinds", "bad-day", "bad-zone", "no-checks"],
)  # fmt: skip
def test_bad_silences_are_rejected_with_a_clear_message(raw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        SilenceConfig.model_validate(raw)


def test_an_alert_keeps_the_cause_it_fired_with_until_it_resolves() -> None:
    """Notifiers filtered by error class hear all of an alert or none of it."""
    now = 1_700_000_000.0
    auth = Details("auth: token endpoint answered 401", error_class="auth")
    later = Details("http_5xx: HTTP 503", error_class="http_5xx")
    sharp = rule(repeat="1m", resolve_after=1)
    state, (firing,) = step(AlertState("pay", "error_rate"), W, sharp, now, details=auth)
    state, (escalated,) = step(state, C, sharp, now + 30, details=later)
    state, (reminder,) = step(state, C, sharp, now + 120, details=later)
    state, (resolved,) = step(state, OK, sharp, now + 180, details=later)
    kinds = [i.kind for i in (firing, escalated, reminder, resolved)]
    assert kinds == [Kind.FIRING, Kind.ESCALATED, Kind.REMINDER, Kind.RESOLVED]
    assert [i.cause for i in (firing, escalated, reminder, resolved)] == ["auth"] * 4
    assert state.cause is None  # back to ok: the next episode takes its own cause
    _, (again,) = step(state, C, sharp, now + 240, details=later)
    assert again.cause == "http_5xx"


@pytest.mark.parametrize(
    ("rule_name", "cause"),
    [("error_rate", "auth"), ("consecutive_failures", "auth"), ("sunset", None), ("certificate", None)],
    ids=["error-rate", "consecutive-failures", "sunset", "certificate"],
)  # fmt: skip
def test_only_rules_that_judge_failures_take_the_last_failures_class(
    rule_name: str, cause: str | None
) -> None:
    details = Details("auth: token endpoint answered 401", error_class="auth")
    _, (intent,) = step(AlertState("pay", rule_name), C, rule(), 1.0, details=details)
    assert intent.cause == cause


def test_the_book_passes_the_checks_last_error_class_to_its_alerts() -> None:
    rules = parse_alerts({}, {}, "http")
    view = View(failure_ratio=1.0, last_error="tls: certificate expired", last_error_class="tls")
    outcome = AlertBook().evaluate(view, rules, 1_700_000_000.0)
    assert [(i.rule, i.cause) for i in outcome.intents] == [("error_rate", "tls")]
