"""Heartbeats pushed by sync jobs (`POST /heartbeat/{check}`): verified, remembered, persisted.

The book is in memory for the checks to read and mirrored to the database (one row per check)
so a restart keeps the last heartbeat: otherwise every restart would either forget a job that
stopped reporting or, worse, report it stale until it next runs.

This module imports nothing from `checks`: `checks.base.RunContext` holds a book.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel, select

log = logging.getLogger(__name__)

# A signed push older (or further in the future) than this is refused: it may be a replay.
MAX_SKEW = 300.0
MAX_BODY = 64 * 1024
_MESSAGE_CHARS = 200


class HeartbeatRow(SQLModel, table=True):
    __tablename__ = "heartbeats"

    check: str = Field(primary_key=True)
    last_success: float | None = None  # unix seconds
    count: int | None = None  # what the last successful run reported moving
    last_failure: float | None = None
    message: str | None = None  # what the last failed run said about itself


@dataclass
class Heartbeat:
    """The last word from one job: its last success and its last reported failure."""

    last_success: float | None = None
    count: int | None = None
    last_failure: float | None = None
    message: str | None = None

    @property
    def failing(self) -> bool:
        """True when the newest report is a failure."""
        if self.last_failure is None:
            return False
        return self.last_success is None or self.last_failure >= self.last_success


class HeartbeatBook:
    """Last heartbeat per check, plus when intmon started waiting for each one."""

    def __init__(self) -> None:
        self._beats: dict[str, Heartbeat] = {}
        self._watching: dict[str, float] = {}

    def record(
        self,
        check: str,
        ts: float,
        count: int | None = None,
        failed: bool = False,
        message: str | None = None,
    ) -> Heartbeat:
        beat = self._beats.setdefault(check, Heartbeat())
        if failed:
            beat.last_failure, beat.message = ts, message
        else:
            beat.last_success, beat.count = ts, count
        return beat

    def last(self, check: str) -> Heartbeat | None:
        return self._beats.get(check)

    def watching_since(self, check: str, now: float) -> float:
        """When intmon began waiting for this check's heartbeat: the first time it asked."""
        return self._watching.setdefault(check, now)

    def load(self, engine: Engine) -> None:
        """Restore persisted heartbeats (blocking: call from a thread, after Store.open)."""
        with Session(engine) as session:
            for row in session.exec(select(HeartbeatRow)):
                self._beats[row.check] = Heartbeat(
                    row.last_success, row.count, row.last_failure, row.message
                )

    def save(self, engine: Engine, check: str) -> None:
        """Persist one check's heartbeat (blocking: call from a thread)."""
        beat = self._beats.get(check)
        if beat is None:
            return
        with Session(engine) as session:
            session.merge(HeartbeatRow(check=check, **beat.__dict__))
            session.commit()


def signature(secret: str, timestamp: str, raw_body: bytes) -> str:
    """The `X-Signature` value a job sends: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    raw_body: bytes,
    now: float,
) -> str | None:
    """None when the push is authentic and recent; otherwise why it is refused."""
    if not timestamp_header or not signature_header:
        return "missing X-Timestamp or X-Signature header"
    if not timestamp_header.strip().isdigit():
        return "X-Timestamp is not unix seconds"
    if abs(now - int(timestamp_header)) > MAX_SKEW:
        return f"X-Timestamp is more than {MAX_SKEW:.0f}s away from now (stale or replayed)"
    expected = signature(secret, timestamp_header.strip(), raw_body)
    # Constant time: a byte-by-byte compare would let a caller guess the MAC by timing.
    if not hmac.compare_digest(expected.encode(), signature_header.strip().lower().encode()):
        return "signature does not match"
    return None


@dataclass(frozen=True)
class Push:
    ts: float
    count: int | None
    message: str | None


def parse_push(
    secret: str | None, headers: Mapping[str, str], raw_body: bytes, now: float
) -> Push | tuple[int, str]:
    """A verified push, or (HTTP status, reason) to refuse it with. Pure: nothing is recorded."""
    ts = now
    if secret is not None:
        problem = verify_signature(
            secret, headers.get("X-Timestamp"), headers.get("X-Signature"), raw_body, now
        )
        if problem:
            return 401, problem
        # The signed time, not arrival: a replay inside the window cannot make data look newer.
        ts = min(now, float(headers["X-Timestamp"]))
    if not raw_body.strip():
        return Push(ts, None, None)
    try:
        document: Any = json.loads(raw_body)
    except ValueError:
        return 400, "body must be empty or a JSON object"
    if not isinstance(document, dict):
        return 400, "body must be empty or a JSON object"
    count = document.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        return 400, "count must be a non-negative integer"
    message = document.get("message")
    message = message[:_MESSAGE_CHARS] if isinstance(message, str) else None
    return Push(ts, count, message)


async def receive(
    book: HeartbeatBook,
    engine: Engine | None,
    check: str,
    secret: str | None,
    headers: Mapping[str, str],
    raw_body: bytes,
    failed: bool,
    now: float,
) -> tuple[int, dict[str, Any]]:
    """Handle one push for a heartbeat check: (HTTP status, JSON answer)."""
    push = parse_push(secret, headers, raw_body, now)
    if isinstance(push, tuple):
        status, reason = push
        log.warning("heartbeat for %s refused (%d): %s", check, status, reason)
        return status, {"error": reason}
    book.record(check, push.ts, push.count, failed, push.message)
    if engine is not None:
        try:
            await asyncio.to_thread(book.save, engine, check)
        except Exception:
            # The push is kept in memory and counts now; only a restart before the next push
            # would forget it. Refusing the job's report would be worse.
            log.exception("could not persist the heartbeat of %s", check)
    return 202, {"check": check, "recorded": "failure" if failed else "success", "ts": push.ts}
