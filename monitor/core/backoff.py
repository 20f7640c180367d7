"""How long to wait before trying again after failures in a row. Pure: randomness is injected."""

from __future__ import annotations

from collections.abc import Callable


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    factor: float = 2.0,
    jitter: Callable[[], float] | None = None,
) -> float:
    """The wait after the `attempt`-th failure in a row (1 for the first one).

    Exponential: `base * factor ** (attempt - 1)`, at most `cap`. With `jitter`, a source of
    floats in [0, 1), the wait is that fraction of it ("full jitter"): callers that failed
    together then spread out instead of retrying together.
    """
    try:
        delay = min(cap, base * factor ** max(attempt - 1, 0))
    except OverflowError:  # a float power past 1e308, long after reaching any cap
        delay = cap
    return delay * jitter() if jitter is not None else delay
