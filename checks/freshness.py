"""`type: freshness`: did the data actually arrive? Fails when the newest timestamp is too old.

Sources: `http` (JSONPath on an API answer), `sql` (a query on the destination side of a sync),
`heartbeat` (jobs push `POST /heartbeat/{check}`). Every run reports `freshness_age` (seconds)
and `freshness_count` in its signals. A heartbeat never received counts from when intmon first
evaluated the check: the check fails once `max_age` has passed since then without a push. A
restart resumes that wait rather than starting it again (see HeartbeatBook.watched_since).
"""

from __future__ import annotations

from typing import Annotated, Literal

import yarl
from pydantic import Field

from checks.base import CheckConfig, Result, RunContext
from checks.freshness_sources import HttpSource, SqlSource, read_http, read_sql
from monitor.core.model import Model
from monitor.core.units import PositiveDuration, format_duration


class HeartbeatSource(Model):
    type: Literal["heartbeat"]
    # With a secret, pushes must be signed (X-Timestamp, X-Signature); without, anyone who can
    # reach the listener may push, so keep the listener on loopback or set a secret.
    secret: str | None = Field(default=None, min_length=16)


Source = Annotated[HttpSource | SqlSource | HeartbeatSource, Field(discriminator="type")]


class FreshnessCheck(CheckConfig):
    type: Literal["freshness"] = "freshness"
    max_age: PositiveDuration
    min_count: int | None = Field(default=None, ge=0)
    source: Source

    def host_key(self) -> str | None:
        if isinstance(self.source, HttpSource):
            return self.source.spec.host
        return None

    def describe_target(self) -> str:
        source = self.source
        if isinstance(source, HttpSource):
            url = yarl.URL(source.spec.url).with_query(None).with_user(None)
            return f"freshness of {url} {source.timestamp}"
        if isinstance(source, SqlSource):
            return f"freshness of {source.describe()}"
        return f"freshness: heartbeats to /heartbeat/{self.name}"

    async def run(self, ctx: RunContext) -> Result:
        source = self.source
        if isinstance(source, HeartbeatSource):
            return self._heartbeat(ctx)
        if isinstance(source, HttpSource):
            reading = await read_http(ctx, source)
        else:
            reading = await read_sql(ctx, source)
        if isinstance(reading, Result):
            return reading  # the source could not be read: that is the failure
        return self.judge(reading.ts, reading.count, ctx.clock.time(), reading.result)

    def judge(self, ts: float, count: int | None, now: float, base: Result | None = None) -> Result:
        """Compare the newest timestamp with max_age and the count with min_count. Pure."""
        result = base or Result(ok=True)
        age = max(0.0, now - ts)  # a source clock ahead of ours is fresh, not negative-old
        result.signals |= {"freshness_age": round(age, 3), "freshness_count": count}
        limit = f"(max_age {format_duration(self.max_age)})"
        if age > self.max_age:
            return _fail(result, f"data is {format_duration(age)} old {limit}")
        if self.min_count is not None and (count is None or count < self.min_count):
            shown = "no count was reported" if count is None else f"count is {count}"
            return _fail(result, f"{shown} (min_count {self.min_count})")
        result.ok, result.error_class = True, None
        result.reason = f"data is {format_duration(age)} old {limit}"
        return result

    def _heartbeat(self, ctx: RunContext) -> Result:
        now = ctx.clock.time()
        since = ctx.heartbeats.watching_since(self.name, now)
        beat = ctx.heartbeats.last(self.name)
        if beat is not None and beat.failing and beat.last_failure is not None:
            result = Result(ok=False)
            if beat.last_success is not None:
                result = self.judge(beat.last_success, beat.count, now)
            ago = format_duration(max(0.0, now - beat.last_failure))
            detail = f": {beat.message}" if beat.message else ""
            return _fail(result, f"the job reported a failed run {ago} ago{detail}")
        if beat is None or beat.last_success is None:
            waited = max(0.0, now - since)
            result = Result(ok=True, signals={"freshness_age": round(waited, 3)})
            result.signals["freshness_count"] = None
            limit = f"(max_age {format_duration(self.max_age)})"
            if waited > self.max_age:
                reason = f"no heartbeat since intmon started watching {format_duration(waited)} ago"
                return _fail(result, f"{reason} {limit}")
            result.reason = f"waiting for the first heartbeat {limit}"
            return result
        return self.judge(beat.last_success, beat.count, now)


def heartbeat_secret(check: CheckConfig | None) -> tuple[bool, str | None]:
    """(is this a heartbeat freshness check, its secret): what POST /heartbeat/{check} needs."""
    if isinstance(check, FreshnessCheck) and isinstance(check.source, HeartbeatSource):
        return True, check.source.secret
    return False, None


def _fail(result: Result, reason: str) -> Result:
    result.ok, result.error_class, result.reason = False, "assertion", reason
    return result


__all__ = ["FreshnessCheck", "HeartbeatSource", "heartbeat_secret"]
