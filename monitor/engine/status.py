"""The shape of `/api/status`: every check with its state, last result, signals and throttle.

`Daemon.status()` builds a `StatusReport`; the API serialises it, the status page and
`intmon status` render from its attributes, and `docs/status.schema.json` publishes its JSON
Schema (`make status-schema` rewrites the file after a change here).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import MISSING, JsonValue

from monitor.core.model import StatusModel
from monitor.signals.status import SignalsStatus
from monitor.storage.store import RunRecord

State = Literal["up", "degraded", "down", "throttled", "unknown"]
STATES: tuple[State, ...] = ("up", "degraded", "down", "throttled", "unknown")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class LastRun(StatusModel):
    """The newest run, from this process or, after a restart, from the database."""

    ts: float
    ok: bool
    error_class: str | None
    """Why it failed (timeout, tls, http_5xx, ...); null when it passed."""
    status: int | None
    """HTTP status code; null when no answer came."""
    latency: float | None
    reason: str
    request_id: str | None = None
    """The provider's id for the request (X-Request-Id, CF-Ray, an error envelope's
    `request_id`, ...), which its support asks for; null when it sent none. The history keeps
    it for failed runs only, so after a restart a passing run shows null."""
    phases: dict[str, float] | MISSING = MISSING
    """Seconds per phase of the request, as the run timed them: `dns` and `connect` (TCP
    connect and TLS handshake; absent on a reused connection), `first_byte` (request sent to
    response headers) and `total`. Left out for runs of other check types and after a restart
    (phases are not stored)."""

    @classmethod
    def of(cls, record: RunRecord, phases: dict[str, float] | None = None) -> LastRun:
        # By attribute name: the record's other fields (check, signals) are not part of it.
        last = cls.model_validate(record, from_attributes=True)
        return last if phases is None else last.model_copy(update={"phases": phases})


class ThrottleStatus(StatusModel):
    paused_until: float | None
    """Unix seconds until which runs are held back; null when not paused."""
    reason: str | None
    """retry_after, backoff or quota; null when not paused."""
    throttled_seconds: float
    """Total seconds spent paused since the daemon started."""


class CheckStatus(StatusModel):
    name: str
    type: str
    target: str
    """What is checked, with secrets masked."""
    provider: str | None
    interval: float
    state: State
    """up, degraded (passed, but slow or with a warning-level problem), down, throttled (the
    provider asked us to wait; see `until`) or unknown (see `state_reason`)."""
    state_reason: str | None = None
    """Why the check is in its state; null when it is `up`: the last error behind `down`,
    the warnings behind `degraded`, what holds a `throttled` check back (the provider's
    Retry-After, a backoff, an exhausted quota, or a sibling of the same `provider`), why a
    check is `unknown`."""
    until: float | None = None
    """Unix seconds until which a `throttled` check is held back; null otherwise."""
    last: LastRun | None
    """Null until the check has run once."""
    last_success: float | None
    last_failure: float | None
    signals: dict[str, JsonValue]
    """What the last run's answer carried (quota, deprecation, freshness headers, flow steps),
    as stored with the run."""
    metrics: SignalsStatus
    throttle: ThrottleStatus


class StatusReport(StatusModel):
    """The answer of `GET /api/status`."""

    generated_at: float
    checks: tuple[CheckStatus, ...]


def schema_json() -> str:
    """The JSON Schema of `/api/status`, as served and as committed: stable key order."""
    schema = {
        "$schema": JSON_SCHEMA_DIALECT,
        **StatusReport.model_json_schema(mode="serialization"),
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
