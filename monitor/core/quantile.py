"""Quantiles by linear interpolation: one definition for window statistics and rollups."""

from __future__ import annotations

import math


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile of `values` (sorted in place), by linear interpolation; None if empty."""
    values.sort()
    return interpolate(values, q)


def interpolate(values: list[float], q: float) -> float | None:
    """The q-quantile of already sorted `values`, as `quantile` computes it."""
    if not values:
        return None
    rank = q * (len(values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)
