"""Each check's last result, and the one place its state (up, degraded, down, throttled,
unknown) is derived: `derive_state`, pure, with `now` passed in. The daemon calls it for the
status API, the page and the `intmon_check_state` metric; `intmon status` calls it through the
same daemon, restored from the database."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from checks.base import CheckConfig
from monitor.core.units import format_duration
from monitor.engine.status import LastRun, State
from monitor.engine.throttle import Throttle, throttle_key
from monitor.metrics import Firing
from monitor.signals.per_check import CheckSignals
from monitor.storage.store import RunRecord

# What each throttle reason (monitor.engine.throttle) means, said for people.
PAUSE_REASONS = {
    "retry_after": "the provider's Retry-After",
    "backoff": "backing off after HTTP 429",
    "quota": "the rate-limit quota is exhausted until it resets",
}


@dataclass
class CheckState:
    name: str
    last: RunRecord | None = None
    last_success: float | None = None
    last_failure: float | None = None
    runs: int = 0  # since this process started
    phases: dict[str, float] | None = None  # of the last run of this process (not stored)

    def update(self, record: RunRecord, phases: dict[str, float] | None = None) -> None:
        """Take the result of a run of this process."""
        self.seed(record)
        self.phases = phases
        self.runs += 1

    def seed(self, record: RunRecord) -> None:
        """Take a result without counting it: the last one stored, after a restart."""
        self.last = record
        if record.ok:
            self.last_success = record.ts
        else:
            self.last_failure = record.ts

    @property
    def last_run(self) -> LastRun | None:
        return None if self.last is None else LastRun.of(self.last, self.phases)


@dataclass(frozen=True, slots=True)
class Pause:
    """A throttle pause holding a check back (see monitor.engine.throttle)."""

    until: float
    reason: str | None  # retry_after | backoff | quota
    provider: str | None = None
    # The check of the same provider whose answer asked for the pause, when it is another.
    sibling: str | None = None


@dataclass(frozen=True, slots=True)
class StateView:
    state: State
    reason: str | None = None
    until: float | None = None


def derive_state(
    last: RunRecord | None,
    now: float,
    *,
    pause: Pause | None = None,
    degraded_after: float | None = None,
    warnings: Sequence[str] = (),
    first_due: float | None = None,
) -> StateView:
    """The state of one check; the first that holds wins:

    1. `throttled` while a pause holds it back (its own 429, or a sibling's of the same
       `provider`), whatever the last run said: nothing is sent until `until`, so nothing newer
       can be known. After the pause, the next run decides again.
    2. `unknown` until the check has run once.
    3. `down` when the last run failed.
    4. `degraded` when it passed, but slower than `degraded_after`, or with `warnings` (an
       announced deprecation, an alert firing).
    5. `up`.
    """
    if pause is not None and pause.until > now:
        return StateView("throttled", _pause_reason(pause), pause.until)
    if last is None:
        due = "" if first_due is None else f"; the first is due {_wait(first_due - now)}"
        return StateView("unknown", f"no run yet{due}")
    if not last.ok:
        return StateView("down", f"{last.error_class}: {last.reason}")
    problems = list(warnings)
    if degraded_after is not None and last.latency is not None and last.latency > degraded_after:
        slow = f"{format_duration(last.latency)} over degraded_latency"
        problems.insert(0, f"latency {slow} {format_duration(degraded_after)}")
    if problems:
        return StateView("degraded", "; ".join(problems))
    return StateView("up")


def _pause_reason(pause: Pause) -> str:
    why = PAUSE_REASONS.get(pause.reason or "", "the provider asked to wait")
    if pause.sibling is not None:
        return f"held back with {pause.sibling} (provider {pause.provider}): {why}"
    return why


def _wait(seconds: float) -> str:
    return "now" if seconds < 1 else f"in {format_duration(seconds, coarse=True)}"


def asked_to_wait(record: RunRecord) -> bool:
    """Whether this run's answer is one that pauses its throttle key: a 429, or a quota with
    nothing remaining."""
    return record.status == 429 or record.signals.get("quota_remaining") == 0


def pause_holder(runs: Iterable[RunRecord]) -> str | None:
    """Of the last runs of one provider's checks, the check whose answer most recently asked
    to wait: the one that holds its siblings back."""
    newest: RunRecord | None = None
    for record in runs:
        if asked_to_wait(record) and (newest is None or record.ts > newest.ts):
            newest = record
    return None if newest is None else newest.check


def current_states(
    checks: Mapping[str, CheckConfig],
    states: Mapping[str, CheckState],
    signals: Mapping[str, CheckSignals],
    throttle: Throttle,
    firing: Iterable[Firing],
    now: float,
    due_at: Callable[[str, float], float | None] | None = None,
) -> dict[str, StateView]:
    """`derive_state` of every check, from what the daemon (or `intmon status`) knows: last
    runs, throttle pauses, deprecations, firing alerts and, for checks that never ran, the
    schedule."""
    alerts: dict[str, list[Firing]] = {}
    for f in firing:
        alerts.setdefault(f.check, []).append(f)
    holders: dict[str, str | None] = {}  # provider -> the check holding it back, once each
    views = {}
    for name, check in checks.items():
        last = states[name].last
        key = throttle_key(name, check.provider)
        pause = None
        until = throttle.paused_until(key, now)
        if until is not None:
            provider = check.provider
            if provider is not None and provider not in holders:
                holders[provider] = pause_holder(
                    s.last
                    for n, s in states.items()
                    if s.last is not None and checks[n].provider == provider
                )
            holder = holders.get(provider) if provider is not None else None
            sibling = holder if holder != name else None
            pause = Pause(until, throttle.reason(key, now), provider, sibling)
        views[name] = derive_state(
            last,
            now,
            pause=pause,
            degraded_after=check.degraded_after(),
            warnings=_warnings(signals[name], alerts.get(name, ()), now),
            first_due=due_at(name, now) if last is None and due_at is not None else None,
        )
    return views


# Alert rules that only repeat what the deprecation warning already says.
_DEPRECATION_RULES = frozenset({"deprecation", "sunset"})


def _warnings(signals: CheckSignals, firing: Iterable[Firing], now: float) -> list[str]:
    said = deprecation_warning(signals, now)
    return said + [
        f"{f.rule} {f.severity} firing"
        for f in firing
        if not (said and f.rule in _DEPRECATION_RULES)
    ]


def deprecation_warning(signals: CheckSignals, now: float) -> list[str]:
    """An announced deprecation, with the time left to its sunset: a warning-level problem."""
    if signals.deprecated_since is None:
        return []
    sunset = signals.sunset_at
    if sunset is None:
        return ["the API announces its deprecation"]
    if sunset <= now:
        return ["the API announces its deprecation; its sunset date has passed"]
    left = format_duration(sunset - now, coarse=True)
    return [f"the API announces its deprecation; sunset in {left}"]
