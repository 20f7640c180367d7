"""Waiting for something other tasks or processes do, never for time to pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from ssl import SSLContext

import aiohttp


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


async def until_ready(url: str, ssl: SSLContext | None = None, within: float = 10.0) -> None:
    """Wait until a daemon started as a process answers 200 on `{url}/readyz`."""
    start = time.monotonic()
    async with aiohttp.ClientSession() as client:
        while time.monotonic() - start < within:
            try:
                async with client.get(url + "/readyz", ssl=ssl or True) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s: {url} ready")
