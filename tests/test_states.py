"""derive_state: which of up, degraded, down, throttled and unknown a check is in, and why.

Pure, with the time taken from a clock the test moves."""

from __future__ import annotations

from typing import Any

import pytest

from checks.http import HttpCheck
from monitor.core.clock import FakeClock
from monitor.core.units import DAY
from monitor.engine.state import (
    CheckState,
    Pause,
    StateView,
    current_states,
    derive_state,
    pause_holder,
)
from monitor.engine.status import STATES
from monitor.engine.throttle import Throttle
from monitor.metrics import CHECK_STATES, Firing
from monitor.signals.per_check import CheckSignals, DeprecationRecord
from monitor.storage.store import RunRecord


def run(clock: FakeClock, check: str = "a", status: int = 200, **kw: Any) -> RunRecord:
    ok = kw.pop("ok", 200 <= status < 300)
    fields: dict[str, Any] = {
        "error_class": None if ok else ("rate_limited" if status == 429 else "http_5xx"),
        "latency": 0.1,
        "reason": f"HTTP {status}",
        "signals": {},
    }
    return RunRecord(check=check, ts=clock.time(), ok=ok, status=status, **(fields | kw))


def test_a_check_paused_after_a_429_is_throttled_until_the_pause_ends_then_down(
    clock: FakeClock,
) -> None:
    throttle = Throttle()
    last = run(clock, status=429)
    throttle.on_response("check:a", 429, 120.0, clock.time())
    until = throttle.paused_until("check:a", clock.time())
    assert until is not None
    pause = Pause(until, throttle.reason("check:a", clock.time()))

    view = derive_state(last, clock.time(), pause=pause)
    assert (view.state, view.until) == ("throttled", clock.time() + 120)
    assert view.reason == "the provider's Retry-After"

    clock.advance(121)
    failed = run(clock, status=503)
    view = derive_state(failed, clock.time(), pause=pause)  # the pause is over
    assert (view.state, view.reason, view.until) == ("down", "http_5xx: HTTP 503", None)


def test_a_check_that_never_ran_because_its_provider_is_paused_is_throttled_not_unknown(
    clock: FakeClock,
) -> None:
    until = clock.time() + 60
    pause = Pause(until, "backoff", provider="acme", sibling="acme-orders")
    view = derive_state(None, clock.time(), pause=pause, first_due=clock.time() + 5)
    assert (view.state, view.until) == ("throttled", until)
    assert view.reason == "held back with acme-orders (provider acme): backing off after HTTP 429"


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("retry_after", "the provider's Retry-After"),
        ("backoff", "backing off after HTTP 429"),
        ("quota", "the rate-limit quota is exhausted until it resets"),
        (None, "the provider asked to wait"),
    ],
    ids=["retry-after", "backoff", "quota", "restored-without-reason"],
)
def test_each_throttle_reason_is_said_in_words(
    clock: FakeClock, reason: str | None, said: str
) -> None:
    view = derive_state(run(clock), clock.time(), pause=Pause(clock.time() + 1, reason))
    assert (view.state, view.reason) == ("throttled", said)


def test_a_check_that_never_ran_is_unknown_and_says_when_it_first_runs(clock: FakeClock) -> None:
    assert derive_state(None, clock.time()).reason == "no run yet"
    soon = derive_state(None, clock.time(), first_due=clock.time() + 300)
    assert (soon.state, soon.reason) == ("unknown", "no run yet; the first is due in 5m")
    now = derive_state(None, clock.time(), first_due=clock.time() + 0.2)
    assert now.reason == "no run yet; the first is due now"


@pytest.mark.parametrize(
    ("latency", "threshold", "state"),
    [(0.9, 0.5, "degraded"), (0.5, 0.5, "up"), (0.1, 0.5, "up"), (0.9, None, "up")],
    ids=["slower", "exactly-at", "faster", "no-threshold"],
)
def test_a_passing_run_slower_than_degraded_latency_is_degraded(
    clock: FakeClock, latency: float, threshold: float | None, state: str
) -> None:
    view = derive_state(run(clock, latency=latency), clock.time(), degraded_after=threshold)
    assert view.state == state
    if state == "degraded":
        assert view.reason == "latency 900ms over degraded_latency 500ms"


def test_warnings_make_a_passing_check_degraded_and_are_all_listed(clock: FakeClock) -> None:
    warnings = ["the API announces its deprecation; sunset in 30d", "latency_p95 warning firing"]
    view = derive_state(
        run(clock, latency=2.0), clock.time(), degraded_after=1.0, warnings=warnings
    )
    assert view.state == "degraded"
    assert view.reason == (
        "latency 2s over degraded_latency 1s; the API announces its deprecation; sunset in 30d; "
        "latency_p95 warning firing"
    )


def test_a_failed_run_is_down_however_slow_and_whatever_the_warnings(clock: FakeClock) -> None:
    last = run(clock, status=502, latency=9.0, reason="HTTP 502 (request id r-1)")
    view = derive_state(last, clock.time(), degraded_after=1.0, warnings=["deprecated"])
    assert (view.state, view.reason) == ("down", "http_5xx: HTTP 502 (request id r-1)")


def test_a_passing_check_without_problems_is_up_with_no_reason(clock: FakeClock) -> None:
    view = derive_state(run(clock), clock.time())
    assert (view.state, view.reason, view.until) == ("up", None, None)


def test_the_sibling_holding_a_provider_back_is_the_newest_that_was_told_to_wait(
    clock: FakeClock,
) -> None:
    old_429 = run(clock, "orders", status=429)
    clock.advance(10)
    exhausted = run(clock, "invoices", signals={"quota_remaining": 0})
    clock.advance(10)
    healthy = run(clock, "customers")
    assert pause_holder([old_429, exhausted, healthy]) == "invoices"
    assert pause_holder([old_429, healthy]) == "orders"
    assert pause_holder([healthy]) is None


def test_the_metric_knows_every_state_of_the_status_model() -> None:
    assert CHECK_STATES == STATES


def test_current_states_gather_pauses_siblings_deprecations_and_alerts(clock: FakeClock) -> None:
    def http(name: str, provider: str | None = None) -> HttpCheck:
        url = "https://api.example.com/"
        return HttpCheck.model_validate(
            {"name": name, "provider": provider, "request": {"url": url}}
        )

    checks = {c.name: c for c in (http("orders", "acme"), http("refunds", "acme"), http("legacy"))}
    states = {name: CheckState(name) for name in checks}
    states["orders"].update(run(clock, "orders", status=429))
    states["legacy"].update(run(clock, "legacy"))
    signals = {name: CheckSignals(name, clock) for name in checks}
    sunset = clock.time() + 30 * DAY
    signals["legacy"].deprecation = DeprecationRecord(clock.time(), clock.time(), None, sunset)
    throttle = Throttle()
    throttle.on_response("provider:acme", 429, 60.0, clock.time())
    firing = [Firing("legacy", "sunset", "warning"), Firing("legacy", "latency_p95", "warning")]

    views = current_states(checks, states, signals, throttle, firing, clock.time())

    assert views["orders"] == StateView(
        "throttled", "the provider's Retry-After", clock.time() + 60
    )
    assert views["refunds"] == StateView(
        "throttled",
        "held back with orders (provider acme): the provider's Retry-After",
        clock.time() + 60,
    )
    # The sunset alert says nothing the deprecation does not: it is not repeated.
    assert views["legacy"] == StateView(
        "degraded",
        "the API announces its deprecation; sunset in 30d; latency_p95 warning firing",
    )
