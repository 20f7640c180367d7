"""Timestamps as APIs and databases really write them, to unix seconds. Pure: no I/O.

Accepted: datetime objects (naive means UTC), RFC 3339 / ISO 8601 strings with or without a
zone (none means UTC), HTTP dates (`Tue, 15 Nov 1994 08:12:31 GMT`), and epoch numbers or
numeric strings in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, date, datetime
from typing import Any

# Epoch values above these are in a finer unit: 1e11 s is the year 5138, 1e11 ms is 1973.
_MILLIS, _MICROS, _NANOS = 1e11, 1e14, 1e17


def parse_timestamp(value: Any) -> float:
    """Unix seconds. Raises ValueError with a message fit for a check's reason."""
    if isinstance(value, datetime):
        return _aware(value).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a timestamp")
    if isinstance(value, int | float):
        return _epoch(float(value))
    if isinstance(value, str):
        return _parse_text(value.strip())
    raise ValueError(f"{str(value)[:60]!r} is not a timestamp")


def _parse_text(text: str) -> float:
    try:
        return _epoch(float(text))
    except ValueError:
        pass  # not a number: try the date formats below
    try:
        # Python 3.11 reads RFC 3339 and most of ISO 8601 (Z, offsets, fractions, date only).
        return _aware(datetime.fromisoformat(text.replace("z", "Z"))).timestamp()
    except ValueError:
        pass  # not ISO 8601: maybe an HTTP date
    try:
        return _aware(email.utils.parsedate_to_datetime(text)).timestamp()
    except (TypeError, ValueError):
        raise ValueError(f"{text[:60]!r} is not a timestamp (RFC 3339 or epoch)") from None


def _epoch(number: float) -> float:
    if not math.isfinite(number) or number < 0:  # before 1970: a sentinel, not a time
        raise ValueError(f"{number!r} is not a timestamp")
    if number >= _NANOS:
        return number / 1e9
    if number >= _MICROS:
        return number / 1e6
    if number >= _MILLIS:
        return number / 1e3
    return number


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
