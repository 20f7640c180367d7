"""The one retry schedule: exponential, capped, optionally with full jitter."""

from __future__ import annotations

import pytest

from monitor.core.backoff import backoff


@pytest.mark.parametrize(
    ("attempt", "wait"),
    [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (10_000, 30.0)],
    ids=["none-yet", "first", "second", "third", "capped", "overflow-is-capped"],
)
def test_it_doubles_from_the_base_up_to_the_cap(attempt: int, wait: float) -> None:
    assert backoff(attempt, base=0.5, cap=30.0) == wait


def test_the_factor_sets_the_growth() -> None:
    assert [backoff(n, base=1.0, cap=100.0, factor=3.0) for n in (1, 2, 3, 4, 5)] == [
        1.0, 3.0, 9.0, 27.0, 81.0,
    ]  # fmt: skip


@pytest.mark.parametrize(("roll", "wait"), [(0.0, 0.0), (0.25, 2.0), (0.999, 7.992)])
def test_full_jitter_draws_below_the_exponential_wait(roll: float, wait: float) -> None:
    assert backoff(4, base=1.0, cap=30.0, jitter=lambda: roll) == pytest.approx(wait)


def test_jitter_applies_to_the_capped_wait() -> None:
    assert backoff(20, base=1.0, cap=60.0, jitter=lambda: 0.5) == 30.0
