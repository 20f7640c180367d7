"""What keeps a flood of heartbeat pushes from growing memory, the logs or the database: bodies
read to a limit and no further, and a token bucket per check.

A sync job pushes once a run, minutes apart; ten in a burst and one a second after that is far
more than any job needs, and a flood beyond it costs a 429 and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import StreamReader

PUSH_RATE = 1.0  # tokens a second
PUSH_BURST = 10.0


async def read_limited(content: StreamReader, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than `limit` (the rest is never read).

    One `read(n)` returns what has arrived so far, which may be a fraction of a body sent in
    several TCP segments: hence the loop until the end of the body.
    """
    body = bytearray()
    while True:
        chunk = await content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            return None


@dataclass
class _Bucket:
    tokens: float
    at: float


class PushLimiter:
    """A token bucket per check name. The caller only asks for names of configured heartbeat
    checks, so the buckets are as many as those, whatever names a flood makes up."""

    def __init__(self, rate: float = PUSH_RATE, burst: float = PUSH_BURST) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, check: str, now: float) -> float | None:
        """None when a push may go ahead (a token is taken); else seconds until one may."""
        bucket = self._buckets.setdefault(check, _Bucket(self.burst, now))
        # max(): a clock stepped back must not drain the bucket below what it held.
        elapsed = max(now - bucket.at, 0.0)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
