"""Waiting for something other tasks or processes do, never for time to pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(
    what: str, predicate: Callable[[], bool], within: float = 5.0, poll: float = 0.01
) -> float:
    """Wait until `predicate()` holds; return how long that took, in real seconds.

    Bounded, so a bug fails with `what` instead of hanging. `poll=0` only yields to the other
    tasks, for tests whose time is a fake clock that those tasks move.
    """
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(poll)
    return time.monotonic() - start
