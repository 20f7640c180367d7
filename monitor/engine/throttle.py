"""Politeness: whether a check may be sent now, given what the provider told us.

Pure, with time passed in: the daemon asks `may_run(key, now)` before every run and reports every
response with `on_response`. The key is the check's `provider:` when it declares one, so checks
against the same API share a pause, else the check's name (see `throttle_key`).

- 429 with Retry-After: nothing is sent for that key until it elapses.
- 429 without: exponential backoff with full jitter, `uniform(0, min(cap, base * 2**streak))`
  where `streak` counts consecutive 429s (1 on the first), so the first pause averages `base`.
  Full jitter spreads checks that were rate-limited together, so they do not retry together.
- Any other response ends the streak, but never lifts a pause already announced: a response
  that was in flight when the 429 arrived says nothing about the provider's window.
- A quota with nothing remaining and a reset ahead pauses until the reset, so the monitor
  waits out an exhausted quota instead of spending a 429 to learn about it.

Every pause is capped at `max_pause`: a buggy `Retry-After: 99999999` must not silence a check
for years. The default, one day, still honours daily quotas.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from monitor.core.backoff import backoff
from monitor.core.units import DAY
from monitor.engine.status import ThrottleStatus
from monitor.signals.headers import Quota


def throttle_key(name: str, provider: str | None) -> str:
    """Checks that name the same provider share pauses; others are paused alone."""
    return f"provider:{provider}" if provider else f"check:{name}"


@dataclass(slots=True)
class KeyState:
    paused_until: float = 0.0
    reason: str | None = None  # retry_after | backoff | quota
    streak: int = 0  # consecutive 429s
    throttled: float = 0.0  # seconds of pause committed, including the part still ahead


class Throttle:
    def __init__(
        self,
        base_backoff: float = 1.0,
        max_backoff: float = 3600.0,
        max_pause: float = DAY,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        if base_backoff <= 0 or max_backoff < base_backoff or max_pause <= 0:
            raise ValueError("need 0 < base_backoff <= max_backoff and max_pause > 0")
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.max_pause = max_pause
        self._random = random_source  # returns a float in [0, 1); injected so tests are exact
        self._keys: dict[str, KeyState] = {}

    def on_response(
        self,
        key: str,
        status: int | None,
        retry_after: float | None,
        now: float,
        *,
        quota: Quota | None = None,
        base: float | None = None,
    ) -> float | None:
        """Record one response; return the time until which `key` is now paused, if any.

        `status` is None when no response arrived (timeout, connect error): that neither
        extends nor ends a streak. `base` overrides the backoff base, e.g. the check interval.
        """
        state = self._keys.setdefault(key, KeyState())
        if status == 429:
            state.streak += 1
            if retry_after is not None:
                self._pause(state, now, now + retry_after, "retry_after")
            else:
                # One more than the streak: the first 429 draws below 2 * base, averaging base.
                wait = backoff(
                    state.streak + 1,
                    base=base or self.base_backoff,
                    cap=self.max_backoff,
                    jitter=self._random,
                )
                self._pause(state, now, now + wait, "backoff")
        elif status is not None:
            state.streak = 0
        if (
            quota is not None
            and quota.remaining is not None
            and quota.remaining <= 0
            and quota.reset_at is not None
        ):
            self._pause(state, now, quota.reset_at, "quota")
        return self.paused_until(key, now)

    def state(self, key: str) -> KeyState | None:
        """A copy of what `key` is owed, to persist (monitor.storage.pauses)."""
        state = self._keys.get(key)
        return None if state is None else replace(state)

    def restore(
        self, key: str, paused_until: float, reason: str | None, streak: int, now: float
    ) -> None:
        """Take `key`'s pause and streak as the last process left them, so a restart keeps
        them. Only the part of the pause still ahead counts as throttled: that figure is
        since this daemon started."""
        self._keys[key] = KeyState(paused_until, reason, streak, max(0.0, paused_until - now))

    def paused_until(self, key: str, now: float) -> float | None:
        state = self._keys.get(key)
        if state is None or state.paused_until <= now:
            return None
        return state.paused_until

    def may_run(self, key: str, now: float) -> bool:
        return self.paused_until(key, now) is None

    def reason(self, key: str, now: float) -> str | None:
        """Why `key` is paused right now: retry_after, backoff or quota; None if it is not."""
        return self._keys[key].reason if self.paused_until(key, now) is not None else None

    def streak(self, key: str) -> int:
        state = self._keys.get(key)
        return 0 if state is None else state.streak

    def throttled_seconds(self, key: str, now: float) -> float:
        """Total seconds `key` has spent paused up to `now`; overlapping pauses count once."""
        state = self._keys.get(key)
        if state is None:
            return 0.0
        return state.throttled - max(0.0, state.paused_until - now)

    def status(self, key: str, now: float) -> ThrottleStatus:
        return ThrottleStatus(
            paused_until=self.paused_until(key, now),
            reason=self.reason(key, now),
            throttled_seconds=round(self.throttled_seconds(key, now), 3),
        )

    def _pause(self, state: KeyState, now: float, until: float, reason: str) -> None:
        until = min(until, now + self.max_pause)
        # Pauses only ever extend: the longest announced wait is the one to honour.
        start = max(state.paused_until, now)
        if until > start:
            state.throttled += until - start
            state.paused_until = until
            state.reason = reason
