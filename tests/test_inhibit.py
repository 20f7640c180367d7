"""Inhibition and min_failures, pure: real window statistics and the real state machine on a
fake clock, fed the results a check would produce. What pages is read from the intents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from checks.base import Result
from monitor.alerting.machine import AlertBook, AlertState, Intent
from monitor.config.alerting import InhibitRule, builtin_inhibitions
from monitor.config.rules import RULES, RuleConfig, parse_alerts
from monitor.core.clock import FakeClock
from monitor.signals.per_check import CheckSignals

INTERVAL = 60.0
OK = Result(ok=True, status=200, latency=0.1)
LIMITED = Result.failure("rate_limited", "HTTP 429", status=429, latency=0.05)
BROKEN = Result.failure("http_5xx", "HTTP 503", status=503, latency=0.1)
TLS = Result.failure("tls", "certificate verify failed")


def stale(age: float) -> Result:
    return Result.failure("assertion", "data is old", signals={"freshness_age": age})


def fresh(age: float) -> Result:
    return Result(ok=True, signals={"freshness_age": age})


@dataclass
class Monitor:
    """One check's signals and alert book, committing every outcome as the daemon would."""

    rules: dict[str, RuleConfig]
    inhibit: list[InhibitRule] = field(default_factory=builtin_inhibitions)
    clock: FakeClock = field(default_factory=FakeClock)
    pages: list[Intent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.signals = CheckSignals("api", self.clock, longest_window=3600)
        self.book = AlertBook()

    def run(self, *results: Result) -> list[str]:
        """Each result one interval apart; returns `KIND rule severity` of what was sent."""
        sent = []
        for template in results:
            self.clock.advance(INTERVAL)
            result = Result(**{**template.__dict__, "started_at": self.clock.time()})
            self.signals.observe(result)
            outcome = self.book.evaluate(
                self.signals, self.rules, self.clock.time(), inhibit=self.inhibit
            )
            self.book.accept(outcome)
            self.pages.extend(outcome.intents)
            sent += [f"{i.kind} {i.rule} {i.severity}" for i in outcome.intents if not i.silenced]
        return sent

    def restart(self) -> None:
        """A new process: states from the database, windows replayed from stored runs."""
        states: list[AlertState] = [s for s in self.book._states.values()]
        runs = self.signals.runs(3600)
        self.signals = CheckSignals("api", self.clock, longest_window=3600)
        for r in runs:
            self.signals.seed(r.ts, r.ok, r.latency, r.rate_limited, r.error_class)
        self.book = AlertBook(states)


def http_rules(**alerts: Any) -> dict[str, RuleConfig]:
    return parse_alerts(alerts, {}, "http")


def test_one_429_among_healthy_runs_sends_one_warning_and_no_critical() -> None:
    monitor = Monitor(http_rules())
    assert monitor.run(OK, OK, OK) == []
    assert monitor.run(LIMITED) == ["FIRING rate_limited warning"]
    assert monitor.run(OK, OK) == []
    held = monitor.book.inhibited[("api", "error_rate")]
    assert (held.severity, held.by) == ("warning", ("rate_limited",))


def test_one_5xx_among_healthy_runs_warns_but_never_pages_critical() -> None:
    monitor = Monitor(http_rules())
    sent = monitor.run(OK, OK, OK, BROKEN, OK, OK, OK, OK, OK, OK)
    assert sent == ["FIRING error_rate warning", "RESOLVED error_rate warning"]


def test_three_failures_in_the_window_page_critical() -> None:
    monitor = Monitor(http_rules())
    sent = monitor.run(OK, OK, BROKEN, BROKEN, BROKEN)
    assert sent == ["FIRING error_rate warning", "ESCALATED error_rate critical"]


def test_429s_alongside_5xx_still_page_error_rate_for_the_5xx_alone() -> None:
    monitor = Monitor(http_rules(error_rate={"window": "10m"}))
    assert monitor.run(OK, LIMITED, LIMITED, LIMITED, OK) == ["FIRING rate_limited warning"]
    assert monitor.book.inhibited[("api", "error_rate")].severity == "critical"
    sent = monitor.run(BROKEN, BROKEN, BROKEN)
    assert sent == ["FIRING error_rate warning", "ESCALATED error_rate critical"]
    # Three 5xx out of the five runs that are not 429s: the 429s count neither way.
    evaluation = monitor.book.evaluations[("api", "error_rate")]
    assert evaluation.value == pytest.approx(3 / 5)
    assert "leaving out what rate_limited explains" in evaluation.summary


def test_a_stale_source_pages_freshness_once_and_recovering_pages_nothing_else() -> None:
    rules = parse_alerts({}, {}, "freshness", max_age=3600)
    monitor = Monitor(rules)
    assert monitor.run(fresh(60), fresh(120)) == []
    assert monitor.run(*[stale(4000 + i) for i in range(5)]) == ["FIRING freshness critical"]
    assert ("api", "error_rate") in monitor.book.inhibited
    # Recovered: the window still holds the stale runs, which stay explained.
    assert monitor.run(fresh(30), fresh(90), fresh(150)) == ["RESOLVED freshness critical"]
    assert monitor.run(fresh(30), fresh(90)) == []


def test_a_cause_that_resolves_while_its_failures_go_on_pages_the_generic_rule_once() -> None:
    monitor = Monitor(http_rules(error_rate={"window": "10m", "resolve_after": 1}))
    soon = monitor.clock.time() + 3 * 86400
    expiring = Result(ok=True, status=200, latency=0.1, tls_not_after=soon)
    assert monitor.run(expiring, OK) == ["FIRING certificate critical"]
    assert monitor.run(TLS, TLS, TLS) == []
    # Renewed (a year left), but the handshake still fails: now error_rate speaks, once.
    renewed = Result(ok=True, status=200, latency=0.1, tls_not_after=soon + 365 * 86400)
    assert monitor.run(renewed, renewed) == ["RESOLVED certificate critical"]
    sent = monitor.run(TLS, TLS, TLS, TLS)
    assert sent == ["FIRING error_rate warning", "ESCALATED error_rate critical"]


def test_a_restart_while_inhibited_pages_nothing() -> None:
    rules = parse_alerts({}, {}, "freshness", max_age=3600)
    monitor = Monitor(rules)
    assert monitor.run(*[stale(4000 + i) for i in range(4)]) == ["FIRING freshness critical"]
    monitor.run(fresh(30), fresh(90))
    monitor.restart()
    assert monitor.run(fresh(150), fresh(210)) == []


def test_consecutive_failures_skip_the_explained_ones() -> None:
    monitor = Monitor(http_rules(consecutive_failures={"critical": 3}))
    assert monitor.run(LIMITED, LIMITED, LIMITED, LIMITED) == ["FIRING rate_limited warning"]
    # Two 5xx with a 429 between: a streak of two, and too few runs left for error_rate.
    assert monitor.run(BROKEN, LIMITED, BROKEN) == []
    assert monitor.signals.consecutive_failures == 7
    assert sorted(monitor.run(BROKEN)) == [
        "FIRING consecutive_failures critical",
        "FIRING error_rate critical",
    ]


def test_inhibit_empty_list_turns_inhibition_off() -> None:
    monitor = Monitor(http_rules(), inhibit=[])
    sent = monitor.run(OK, OK, LIMITED)
    assert sorted(sent) == ["FIRING error_rate warning", "FIRING rate_limited warning"]
    assert monitor.book.inhibited == {}


def test_a_configured_inhibition_explains_the_classes_it_names() -> None:
    # A provider whose overload shows as 503s: rate_limited explains those too, for error_rate.
    inhibit = [InhibitRule(source="rate_limited", target=["error_rate"], classes=["http_5xx"])]
    monitor = Monitor(http_rules(), inhibit=inhibit)
    assert monitor.run(OK, OK, LIMITED, BROKEN, BROKEN, BROKEN) == [
        "FIRING rate_limited warning",
        "FIRING error_rate warning",  # the 429 itself is no longer explained
    ]
    assert monitor.book.inhibited[("api", "error_rate")].severity == "critical"


def test_every_cause_rule_is_a_built_in_source_for_every_generic_rule() -> None:
    sources = {i.source: (i.target, i.explained) for i in builtin_inhibitions()}
    assert sources == {
        name: (["error_rate", "latency_p95", "consecutive_failures", "burn_rate"], kind.explains)
        for name, kind in RULES.items()
        if kind.explains
    }
