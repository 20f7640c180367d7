"""The quota forecaster: the spend rate is the fall of the provider's counter, per quota period.

Time is a FakeClock moved by the test; every expected figure is computed from the drain the
test itself feeds in (its cost per reading, its spacing, its limit).
"""

from __future__ import annotations

import pytest

from monitor.alerting.rules import evaluate
from monitor.config.rules import RULES, parse_alerts
from monitor.core.clock import FakeClock
from monitor.signals.headers import Quota
from monitor.signals.per_check import CheckSignals
from monitor.signals.quota import MAX_READINGS, REFILL_SHARE, QuotaBook, QuotaLedger

WINDOW = 900.0
LIMIT = 1000.0


class Feed:
    """Readings of one quota announced to a ledger as a check's runs would see them."""

    def __init__(self, clock: FakeClock, ledger: QuotaLedger, reset_in: float | None = 3600.0):
        self.clock, self.ledger = clock, ledger
        self.reset_at = None if reset_in is None else clock.time() + reset_in

    def read(
        self, remaining: float, check: str = "orders", limit: float = LIMIT, dialect: str = "ietf"
    ) -> None:
        quota = Quota(remaining, limit, self.reset_at, None, dialect)
        self.ledger.observe(check, quota, self.clock.time())

    def drain(self, start: float, cost: float, every: float, count: int, check: str = "orders"):
        for i in range(count):
            if i:
                self.clock.advance(every)
            self.read(max(start - cost * i, 0.0), check)
        return max(start - cost * (count - 1), 0.0)


@pytest.fixture
def ledger() -> QuotaLedger:
    return QuotaLedger(WINDOW)


def test_a_steady_drain_runs_out_at_the_counters_pace(clock: FakeClock, ledger: QuotaLedger):
    cost, every = 40.0, 30.0
    left = Feed(clock, ledger).drain(LIMIT, cost, every, count=6)
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.rate == pytest.approx(cost / every)
    assert forecast.seconds_left(clock.time()) == pytest.approx(left / (cost / every))
    assert forecast.before_reset and forecast.readings == 6


def test_traffic_that_is_not_intmons_counts(clock: FakeClock, ledger: QuotaLedger) -> None:
    # intmon asks once a minute; other clients of the account spend 300 between two asks.
    foreign, every = 300.0, 60.0
    Feed(clock, ledger).drain(LIMIT, foreign, every, count=3)
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.rate == pytest.approx(foreign / every)  # not intmon's 1 request a minute
    assert forecast.exhaustion_at == pytest.approx(clock.time() + 400.0 / (foreign / every))


def test_a_refill_mid_window_starts_a_new_period(clock: FakeClock, ledger: QuotaLedger) -> None:
    feed = Feed(clock, ledger, reset_in=100.0)
    feed.drain(LIMIT, 200.0, 30.0, count=4)  # a fast drain, then the quota resets
    clock.advance(30.0)
    feed.reset_at = clock.time() + 3600.0
    left = feed.drain(LIMIT, 10.0, 30.0, count=3)
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.readings == 3  # the readings before the reset are another period
    assert forecast.rate == pytest.approx(10.0 / 30.0)
    assert forecast.seconds_left(clock.time()) == pytest.approx(left * 3.0)


def test_a_reset_time_that_passed_starts_a_new_period(clock: FakeClock, ledger: QuotaLedger):
    # A counter that happens to read lower after its reset is still a new period.
    feed = Feed(clock, ledger, reset_in=45.0)
    feed.drain(LIMIT, 100.0, 30.0, count=2)  # the second reading comes before the reset
    clock.advance(30.0)  # past the reset
    feed.reset_at = clock.time() + 60.0
    feed.read(800.0)
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.readings == 1 and forecast.exhaustion_at is None


def test_a_quota_without_reset_is_forecast_and_says_so(clock: FakeClock, ledger: QuotaLedger):
    feed = Feed(clock, ledger, reset_in=None)
    for i in range(3):
        clock.advance(10.0 if i else 0.0)
        feed.read(40.0 - 4.0 * i, dialect="shopify")  # the net fall, leak included
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.leaky and forecast.reset_at is None
    assert forecast.before_reset  # no reset will come first
    assert forecast.seconds_left(clock.time()) == pytest.approx(32.0 / 0.4)


def test_noise_neither_splits_the_period_nor_swings_the_rate(clock: FakeClock, ledger: QuotaLedger):
    cost, every = 20.0, 30.0
    jitter = REFILL_SHARE * LIMIT * 0.9  # replicas disagreeing, below a refill
    feed = Feed(clock, ledger)
    for i in range(12):
        clock.advance(every if i else 0.0)
        feed.read(LIMIT - cost * i + (jitter if i % 2 else -jitter))
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.readings == 12
    assert forecast.rate == pytest.approx(cost / every, rel=0.1)


def test_a_quota_that_does_not_fall_has_no_exhaustion(clock: FakeClock, ledger: QuotaLedger):
    Feed(clock, ledger).drain(LIMIT, 0.0, 30.0, count=5)
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.rate == 0 and forecast.exhaustion_at is None and not forecast.before_reset


def test_a_quota_that_resets_before_it_runs_out_is_not_before_reset(
    clock: FakeClock, ledger: QuotaLedger
) -> None:
    Feed(clock, ledger, reset_in=120.0).drain(LIMIT, 10.0, 10.0, count=4)  # 970 s to go
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None and forecast.exhaustion_at is not None
    assert forecast.reset_at is not None and forecast.exhaustion_at > forecast.reset_at
    assert not forecast.before_reset


def test_readings_older_than_the_window_do_not_count(clock: FakeClock, ledger: QuotaLedger):
    feed = Feed(clock, ledger)
    feed.drain(LIMIT, 5.0, 100.0, count=5)  # slow at first
    clock.advance(100.0)
    left = feed.drain(800.0, 50.0, 100.0, count=4)  # then fast
    forecast = ledger.forecast("orders", 300.0)
    assert forecast is not None
    assert forecast.readings == 4
    assert forecast.rate == pytest.approx(50.0 / 100.0)
    assert forecast.seconds_left(clock.time()) == pytest.approx(left / 0.5)


def test_readings_are_bounded_however_short_the_interval(clock: FakeClock, ledger: QuotaLedger):
    feed = Feed(clock, ledger, reset_in=10 * WINDOW)
    feed.drain(LIMIT * 10, 1.0, 0.1, count=MAX_READINGS * 20)
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.readings <= MAX_READINGS
    assert forecast.rate == pytest.approx(1.0 / 0.1)


def test_a_providers_checks_pool_readings_of_one_quota(clock: FakeClock) -> None:
    ledger = QuotaBook().ledger("acme", WINDOW)
    feed = Feed(clock, ledger)
    for i, check in enumerate(["orders", "refunds", "orders", "refunds"]):
        clock.advance(15.0 if i else 0.0)
        feed.read(LIMIT - 25.0 * i, check)
    for check, sibling in (("orders", "refunds"), ("refunds", "orders")):
        forecast = ledger.forecast(check, WINDOW)
        assert forecast is not None
        assert forecast.shared_with == (sibling,) and forecast.readings == 4
        assert forecast.rate == pytest.approx(25.0 / 15.0)
        # Both see the same exhaustion: the freshest reading of the shared counter counts.
        assert forecast.exhaustion_at == pytest.approx(clock.time() + 925.0 / (25.0 / 15.0))


def test_siblings_with_another_limit_keep_their_own_forecast(clock: FakeClock) -> None:
    ledger = QuotaBook().ledger("acme", WINDOW)
    feed = Feed(clock, ledger)
    for i in range(3):
        clock.advance(15.0 if i else 0.0)
        feed.read(LIMIT - 25.0 * i, "orders")
        feed.read(50.0 - i, "search", limit=50.0)
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.shared_with == () and forecast.readings == 3


def test_lookalike_quotas_that_climb_between_siblings_are_not_pooled(clock: FakeClock) -> None:
    # Same limit and reset, but two counters: one far lower than the other.
    ledger = QuotaBook().ledger("acme", WINDOW)
    feed = Feed(clock, ledger)
    for i in range(4):
        clock.advance(15.0 if i else 0.0)
        feed.read(900.0 - 10.0 * i, "orders")
        feed.read(300.0 - 10.0 * i, "search")
    forecast = ledger.forecast("orders", WINDOW)
    assert forecast is not None
    assert forecast.shared_with == ()
    assert forecast.rate == pytest.approx(10.0 / 15.0)


def test_the_book_gives_a_provider_one_ledger_with_its_longest_window() -> None:
    book = QuotaBook()
    ledger = book.ledger("acme", 60.0)
    assert book.ledger("acme", 600.0) is ledger and ledger.window == 600.0
    assert book.ledger("orders", 60.0) is not ledger


# -- the rules, over a real CheckSignals fed through a FakeClock -----------------------------


def signals_after(
    clock: FakeClock, readings: list[float], every: float, reset_in: float | None
) -> CheckSignals:
    signals = CheckSignals("orders", clock)
    reset_at = None if reset_in is None else clock.time() + reset_in
    for i, remaining in enumerate(readings):
        clock.advance(every if i else 0.0)
        signals.quota = Quota(remaining, LIMIT, reset_at, None, "ietf")
        signals.quota_ledger.observe("orders", signals.quota, clock.time())
    return signals


@pytest.mark.parametrize(
    ("remaining", "severity"),
    [(LIMIT * 0.5, None), (LIMIT * 0.2, "warning"), (LIMIT * 0.05, "critical"), (0.0, "critical")],
    ids=["half-left", "at-warning", "at-critical", "exhausted"],
)
def test_the_quota_rule_grades_the_share_left(
    clock: FakeClock, remaining: float, severity: str | None
) -> None:
    signals = signals_after(clock, [remaining], 60.0, 3600.0)
    result = evaluate("quota", parse_alerts({}, {}, "http")["quota"], signals, clock.time())
    assert result.severity == severity and result.value == remaining / LIMIT


def test_the_quota_rule_is_silent_without_quota_headers(clock: FakeClock) -> None:
    rule = parse_alerts({}, {}, "http")["quota"]
    result = evaluate("quota", rule, CheckSignals("orders", clock), clock.time())
    assert result.severity is None and result.known


# (readings every 60 s, reset in, expected severity): 40 a minute from the last reading.
EXHAUSTION = [
    ([1000.0, 960.0, 920.0], 3600.0, "critical"),  # 920 left at 40/min: 23 min
    ([1000.0, 990.0, 980.0], 3 * 3600.0, "warning"),  # 98 min at 10/min: under warning 2h
    ([1000.0, 999.0, 998.0], 3 * 3600.0, None),  # 998 min: far off
    ([1000.0, 960.0, 920.0], 600.0, None),  # the reset in 10 min comes first
    ([1000.0, 1000.0, 1000.0], 3600.0, None),  # not spending
]


@pytest.mark.parametrize(
    ("readings", "reset_in", "severity"),
    EXHAUSTION,
    ids=["runs-out-soon", "runs-out-later", "far-off", "reset-first", "flat"],
)
def test_quota_exhaustion_grades_the_time_left_before_the_reset(
    clock: FakeClock, readings: list[float], reset_in: float, severity: str | None
) -> None:
    rule = parse_alerts({"quota_exhaustion": {"warning": "2h", "critical": "30m"}}, {}, "http")
    signals = signals_after(clock, readings, 60.0, reset_in)
    result = evaluate("quota_exhaustion", rule["quota_exhaustion"], signals, clock.time())
    assert result.severity == severity, result.summary
    if severity is not None:
        rate = (readings[0] - readings[-1]) / (60.0 * (len(readings) - 1))
        assert result.value == pytest.approx(readings[-1] / rate)
        assert "before its reset in" in result.summary


def test_quota_exhaustion_waits_for_min_readings(clock: FakeClock) -> None:
    rule = parse_alerts({}, {}, "http")["quota_exhaustion"]
    signals = signals_after(clock, [1000.0, 500.0], 60.0, 3600.0)
    result = evaluate("quota_exhaustion", rule, signals, clock.time())
    assert not result.known and result.severity is None


def test_both_quota_rules_are_causes_of_rate_limited_failures() -> None:
    assert RULES["quota"].explains == ("rate_limited",)
    assert RULES["quota_exhaustion"].explains == ("rate_limited",)
