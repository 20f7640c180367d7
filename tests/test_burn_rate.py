"""The burn_rate rule, pure: real per-check signals on a fake clock, the rule's evaluation and
the real alert state machine with the built-in inhibitions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from checks.base import Result
from checks.slo import SloConfig
from monitor.alerting.machine import AlertBook
from monitor.alerting.rules import evaluate
from monitor.config.alerting import builtin_inhibitions
from monitor.config.rules import RULES, BurnRateRule, parse_alerts
from monitor.core.clock import FakeClock
from monitor.core.units import DAY, HOUR
from monitor.signals.per_check import CheckSignals

OK = Result(ok=True, status=200, latency=0.1)
BROKEN = Result.failure("http_5xx", "HTTP 503", status=503, latency=0.1)
LIMITED = Result.failure("rate_limited", "HTTP 429", status=429, latency=0.05)
RULE = BurnRateRule()


def monitor(objective: str) -> tuple[CheckSignals, FakeClock]:
    clock = FakeClock()
    return CheckSignals("api", clock, slo=SloConfig(objective=objective)), clock


def run(
    signals: CheckSignals,
    clock: FakeClock,
    span: float,
    outcome: Callable[[int], Result],
    every: float = 60.0,
) -> None:
    for i in range(int(span / every)):
        clock.advance(every)
        signals.observe(
            Result(**{**outcome(i).__dict__, "started_at": clock.time()})  # type: ignore[arg-type]
        )


def burn(objective: str, failing: float) -> str:
    return f"{failing / (1 - float(objective.rstrip('%')) / 100):.3g}x"


def test_a_check_failing_every_run_pages_critical_over_1h_and_5m() -> None:
    signals, clock = monitor("99%")
    run(signals, clock, 10 * 60, lambda i: BROKEN)
    verdict = evaluate("burn_rate", RULE, signals, clock.time())
    assert verdict.severity == "critical"
    assert verdict.summary == f"burning {burn('99%', 1.0)} the budget over 1h and 5m; 14.4x pages"


def test_a_slow_burn_pages_critical_over_6h_and_30m() -> None:
    signals, clock = monitor("99%")
    run(signals, clock, 6 * HOUR, lambda i: BROKEN if i % 10 == 0 else OK)  # 10x the budget
    verdict = evaluate("burn_rate", RULE, signals, clock.time())
    assert verdict.severity == "critical"
    # Over 30m the window's 31 minute buckets hold 3 failures: a little under 10x.
    assert verdict.summary.startswith(f"burning {burn('99%', 0.1)} the budget over 6h and ")
    assert verdict.summary.endswith(" over 30m; 6x pages")
    assert verdict.threshold == 6.0


def test_a_budget_spent_steadily_over_three_days_warns() -> None:
    signals, clock = monitor("99%")
    run(signals, clock, 3 * DAY, lambda i: BROKEN if i % 50 == 0 else OK)  # 2x the budget
    verdict = evaluate("burn_rate", RULE, signals, clock.time())
    assert verdict.severity == "warning"
    # The value is the lower of the pair: 6h's 361 minute buckets hold 7 or 8 of the failures.
    assert verdict.value == pytest.approx(0.02 / (1 - 0.99), rel=1 / 7)
    assert verdict.summary.startswith("burning ")
    assert verdict.summary.endswith(" the budget over 3d and 6h; 1x warns") or (
        verdict.summary.endswith(" over 6h; 1x warns") and "over 3d and " in verdict.summary
    )


def test_one_failed_probe_does_not_page() -> None:
    signals, clock = monitor("99.9%")
    run(signals, clock, HOUR, lambda i: OK)
    run(signals, clock, 60, lambda i: BROKEN)
    verdict = evaluate("burn_rate", RULE, signals, clock.time())
    # 1 in 6 runs over 5m is far above 14.4x a 0.1% budget, but one failure is no outage.
    assert verdict.severity is None
    assert verdict.summary.endswith("5m needs 3 failures (1 failed)")
    run(signals, clock, 120, lambda i: BROKEN)
    assert evaluate("burn_rate", RULE, signals, clock.time()).severity == "critical"


def test_a_healthy_check_stays_silent() -> None:
    signals, clock = monitor("99.9%")
    run(signals, clock, 2 * HOUR, lambda i: OK)
    verdict = evaluate("burn_rate", RULE, signals, clock.time())
    assert (verdict.severity, verdict.known, verdict.value) == (None, True, 0.0)
    assert "below critical at 14.4x over 1h and 5m" in verdict.summary


def test_too_few_runs_in_every_short_window_is_unknown() -> None:
    signals, clock = monitor("99%")
    run(signals, clock, 2 * HOUR, lambda i: BROKEN, every=HOUR)
    verdict = evaluate("burn_rate", RULE, signals, clock.time())
    assert (verdict.severity, verdict.known) == (None, False)


@pytest.mark.parametrize(
    ("slo", "expected"), [(True, True), (False, False)], ids=["with-slo", "without-slo"]
)
def test_burn_rate_is_on_exactly_for_checks_with_an_slo(slo: bool, expected: bool) -> None:
    assert ("burn_rate" in parse_alerts({}, {}, "http", slo=slo)) is expected
    assert ("burn_rate" in parse_alerts({}, {"burn_rate": {}}, "http", slo=slo)) is expected


def test_429s_that_rate_limited_explains_page_rate_limited_not_burn_rate() -> None:
    assert RULES["burn_rate"].generic
    signals, clock = monitor("99%")
    rules = parse_alerts({}, {}, "http", slo=True)
    book, sent = AlertBook(), []
    for i in range(30):
        clock.advance(60)
        result = LIMITED if i >= 20 else OK
        signals.observe(Result(**{**result.__dict__, "started_at": clock.time()}))  # type: ignore[arg-type]
        outcome = book.evaluate(signals, rules, clock.time(), inhibit=builtin_inhibitions())
        book.accept(outcome)
        sent += [f"{i.kind} {i.rule} {i.severity}" for i in outcome.intents]
    assert [s for s in sent if "burn_rate" in s] == []
    assert any(s.endswith("rate_limited warning") for s in sent)
    assert book.inhibited[("api", "burn_rate")].by == ("rate_limited",)
    # The budget counts every failure: the 429s spent it all the same.
    assert signals.slo_counts(HOUR).failed == 10
