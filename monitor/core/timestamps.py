"""Timestamps as APIs, headers and databases really write them, to unix seconds. Pure: no I/O.

Accepted: datetime objects (naive means UTC), RFC 3339 / ISO 8601 strings with or without a
zone (none means UTC), HTTP dates (`Tue, 15 Nov 1994 08:12:31 GMT`), and epoch numbers or
numeric strings in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, date, datetime
from typing import Any

# Epoch values from these on are in a finer unit. 1e11 s would be the year 5138, which no API
# means, while 1e11 ms is 1973-03-03: so milliseconds start at 1e11, and a millisecond epoch
# from 1973 on is never read as seconds in the far future. The same reasoning, a factor 1000
# apart, places microseconds and nanoseconds.
EPOCH_MILLIS, EPOCH_MICROS, EPOCH_NANOS = 1e11, 1e14, 1e17


def epoch_seconds(number: float) -> float:
    """An epoch number in s, ms, us or ns (told apart by magnitude) -> unix seconds."""
    if not math.isfinite(number) or number < 0:  # before 1970: a sentinel, not a time
        raise ValueError(f"{number!r} is not a timestamp")
    if number >= EPOCH_NANOS:
        return number / 1e9
    if number >= EPOCH_MICROS:
        return number / 1e6
    if number >= EPOCH_MILLIS:
        return number / 1e3
    return number


def utc_text(ts: float) -> str:
    """Unix seconds as people read them in a message: `2023-11-14 22:08:20 UTC`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def utc_iso(ts: float) -> str:
    """Unix seconds as RFC 3339 with milliseconds, for machines: `2023-11-14T22:08:20.125Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_http_date(text: str) -> float | None:
    """IMF-fixdate, RFC 850 and asctime forms (RFC 9110 §5.6.7), leniently; zone-less is UTC."""
    try:
        parsed = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):  # the stdlib raises all three on junk
        return None
    return _aware(parsed).timestamp()


def parse_iso_date(text: str) -> float | None:
    """RFC 3339 and most of ISO 8601 (Z, offsets, fractions, date only); zone-less is UTC."""
    try:
        return _aware(datetime.fromisoformat(text.strip().replace("z", "Z"))).timestamp()
    except ValueError:
        return None


def parse_timestamp(value: Any) -> float:
    """Unix seconds. Raises ValueError with a message fit for a check's reason."""
    if isinstance(value, datetime):
        return _aware(value).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a timestamp")
    if isinstance(value, int | float):
        return epoch_seconds(float(value))
    if isinstance(value, str):
        return _parse_text(value.strip())
    raise ValueError(f"{str(value)[:60]!r} is not a timestamp")


def _parse_text(text: str) -> float:
    try:
        return epoch_seconds(float(text))
    except ValueError:
        pass  # not an epoch number: the date formats below may still read it
    at = parse_iso_date(text)
    at = parse_http_date(text) if at is None else at
    if at is None:
        raise ValueError(f"{text[:60]!r} is not a timestamp (RFC 3339 or epoch)")
    return at


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
