"""Heartbeats pushed by sync jobs (`POST /heartbeat/{check}`): verified, then recorded.

The book they are recorded in is `checks.heartbeats.HeartbeatBook`, which freshness checks read;
each push is also persisted (monitor.storage.heartbeats, on the writer's thread) so a restart
keeps it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from checks.heartbeats import HeartbeatBook
from monitor.storage.heartbeats import save_heartbeat
from monitor.storage.writer import DatabaseUnavailable, Writer

log = logging.getLogger(__name__)

# A signed push older (or further in the future) than this is refused: it may be a replay.
MAX_SKEW = 300.0
MAX_BODY = 64 * 1024
_MESSAGE_CHARS = 200


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
    writer: Writer | None,
    check: str,
    secret: str | None,
    headers: Mapping[str, str],
    raw_body: bytes,
    failed: bool,
    now: float,
    redact: Callable[[str], str],
) -> tuple[int, dict[str, Any]]:
    """Handle one push for a heartbeat check: (HTTP status, JSON answer)."""
    push = parse_push(secret, headers, raw_body, now)
    if isinstance(push, tuple):
        status, reason = push
        log.warning("heartbeat for %s refused (%d): %s", check, status, reason)
        return status, {"error": reason}
    # A job's failure message may quote the credential it failed with (often one this config
    # holds too); it is stored and shown, so it is masked like a check's own reason.
    message = redact(push.message) if push.message is not None else None
    beat = book.record(check, push.ts, push.count, failed, message)
    if writer is not None:
        try:
            await writer.submit(save_heartbeat, writer.store.engine, check, beat, failed)
        except DatabaseUnavailable:
            # The writer logged the outage once; the push counts in memory (see below).
            log.debug("heartbeat of %s kept in memory: the database is unavailable", check)
        except Exception:
            # The push is kept in memory and counts now; only a restart before the next push
            # would forget it. Refusing the job's report would be worse.
            log.exception("could not persist the heartbeat of %s", check)
    return 202, {"check": check, "recorded": "failure" if failed else "success", "ts": push.ts}
