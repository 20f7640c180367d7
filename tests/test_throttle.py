"""The politeness core: Retry-After windows, shared provider pauses, backoff, quota exhaustion."""

from __future__ import annotations

import pytest

from monitor.core.clock import FakeClock
from monitor.engine.throttle import Throttle, throttle_key
from monitor.signals.headers import Quota

KEY = "check:orders-api"


class Dice:
    """A random source that returns the values it was given, in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


def test_it_sends_nothing_inside_a_retry_after_window(clock: FakeClock) -> None:
    throttle = Throttle()
    assert throttle.on_response(KEY, 429, 30.0, clock.time()) == clock.time() + 30
    for _ in range(29):
        clock.advance(1)
        assert not throttle.may_run(KEY, clock.time())
    clock.advance(0.999)
    assert not throttle.may_run(KEY, clock.time())
    clock.advance(0.001)
    assert throttle.may_run(KEY, clock.time())
    assert throttle.paused_until(KEY, clock.time()) is None


def test_it_shares_a_pause_between_checks_of_one_provider(clock: FakeClock) -> None:
    throttle = Throttle()
    stripe_charges = throttle_key("charges", "stripe")
    stripe_refunds = throttle_key("refunds", "stripe")
    github = throttle_key("repos", "github")
    lone = throttle_key("stripe", None)  # a check named like a provider is still its own key
    throttle.on_response(stripe_charges, 429, 60.0, clock.time())
    assert stripe_charges == stripe_refunds
    assert not throttle.may_run(stripe_refunds, clock.time())
    assert throttle.may_run(github, clock.time())
    assert throttle.may_run(lone, clock.time())


def test_it_doubles_the_backoff_ceiling_per_consecutive_429(clock: FakeClock) -> None:
    # The dice always roll the top of the range, so each pause is exactly the ceiling.
    throttle = Throttle(base_backoff=10, max_backoff=3600, random_source=lambda: 1.0)
    pauses = []
    for _ in range(10):
        until = throttle.on_response(KEY, 429, None, clock.time())
        assert until is not None
        pauses.append(until - clock.time())
        clock.advance(until - clock.time())
    assert pauses == [20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    assert throttle.streak(KEY) == 10


@pytest.mark.parametrize(
    ("roll", "streak", "expected"),
    [(0.0, 1, 0.0), (0.5, 1, 5.0), (0.25, 3, 10.0), (0.999, 2, 19.98)],
    ids=["bottom-of-range", "mid-first", "quarter-third", "near-top-second"],
)
def test_it_jitters_the_backoff_within_zero_and_the_ceiling(
    clock: FakeClock, roll: float, streak: int, expected: float
) -> None:
    throttle = Throttle(base_backoff=5, random_source=Dice(*([1.0] * (streak - 1)), roll))
    for _ in range(streak - 1):
        until = throttle.on_response(KEY, 429, None, clock.time())
        assert until is not None
        clock.now = until
    start = clock.time()
    until = throttle.on_response(KEY, 429, None, start)
    assert (until or start) - start == pytest.approx(expected)


def test_it_takes_the_backoff_base_from_the_check_when_given(clock: FakeClock) -> None:
    throttle = Throttle(base_backoff=1, random_source=lambda: 0.5)
    assert throttle.on_response(KEY, 429, None, clock.time(), base=60) == clock.time() + 60


def test_it_resets_the_streak_on_any_other_response(clock: FakeClock) -> None:
    throttle = Throttle(base_backoff=10, random_source=lambda: 1.0)
    throttle.on_response(KEY, 429, None, clock.time())
    throttle.on_response(KEY, 429, None, clock.time())
    assert throttle.streak(KEY) == 2
    throttle.on_response(KEY, None, None, clock.time())  # a timeout says nothing either way
    assert throttle.streak(KEY) == 2
    clock.advance(100)
    throttle.on_response(KEY, 503, None, clock.time())
    assert throttle.streak(KEY) == 0
    assert throttle.on_response(KEY, 429, None, clock.time()) == clock.time() + 20


def test_it_keeps_an_announced_pause_when_an_in_flight_success_lands(clock: FakeClock) -> None:
    throttle = Throttle()
    throttle.on_response(KEY, 429, 60.0, clock.time())
    clock.advance(1)
    throttle.on_response(KEY, 200, None, clock.time())
    assert throttle.paused_until(KEY, clock.time()) == clock.time() + 59
    assert throttle.reason(KEY, clock.time()) == "retry_after"


def test_it_pauses_until_an_exhausted_quota_resets(clock: FakeClock) -> None:
    throttle = Throttle()
    reset = clock.time() + 120
    exhausted = Quota(0, 5000, reset, None, "x-ratelimit")
    assert throttle.on_response(KEY, 200, None, clock.time(), quota=exhausted) == reset
    assert throttle.reason(KEY, clock.time()) == "quota"
    clock.advance(119)
    assert not throttle.may_run(KEY, clock.time())
    clock.advance(1)
    assert throttle.may_run(KEY, clock.time())


@pytest.mark.parametrize(
    "quota",
    [
        Quota(1, 5000, 1_700_000_120, None, "x-ratelimit"),
        Quota(0, 5000, 1_699_999_999, None, "x-ratelimit"),
        Quota(0, 5000, None, None, "shopify"),
        Quota(None, 5000, 1_700_000_120, None, "x-ratelimit"),
    ],
    ids=["some-left", "reset-already-passed", "no-reset-known", "remaining-unknown"],
)
def test_it_does_not_pause_for_a_quota_that_is_not_exhausted_ahead(
    clock: FakeClock, quota: Quota
) -> None:
    throttle = Throttle()
    assert throttle.on_response(KEY, 200, None, clock.time(), quota=quota) is None
    assert throttle.may_run(KEY, clock.time())


def test_it_caps_absurd_pauses(clock: FakeClock) -> None:
    throttle = Throttle(max_pause=3600)
    assert throttle.on_response(KEY, 429, 99_999_999.0, clock.time()) == clock.time() + 3600


def test_it_accounts_throttled_time_once_for_overlapping_pauses(clock: FakeClock) -> None:
    throttle = Throttle()
    assert throttle.throttled_seconds(KEY, clock.time()) == 0
    throttle.on_response(KEY, 429, 60.0, clock.time())
    clock.advance(20)
    assert throttle.throttled_seconds(KEY, clock.time()) == 20
    throttle.on_response(KEY, 429, 60.0, clock.time())  # extends the pause to t=80
    throttle.on_response(KEY, 429, 10.0, clock.time())  # inside the pause: adds nothing
    clock.advance(100)
    assert throttle.throttled_seconds(KEY, clock.time()) == 80
    throttle.on_response(KEY, 429, 5.0, clock.time())
    clock.advance(5)
    assert throttle.throttled_seconds(KEY, clock.time()) == 85


def test_it_rejects_a_nonsensical_configuration() -> None:
    with pytest.raises(ValueError, match="base_backoff"):
        Throttle(base_backoff=10, max_backoff=1)
