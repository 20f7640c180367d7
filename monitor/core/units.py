"""The human units of config files and messages: durations, ratios, byte sizes, http(s) URLs.

Parsers (and the pydantic types built on them) for the config, `format_duration` for messages,
and the spans of time (MINUTE .. WEEK, `hour_of`) the rest of the code counts in.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import yarl
from pydantic import AfterValidator, BeforeValidator

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Bounds that keep a value usable as a timestamp offset, a timeout and an integer everywhere:
# past them a value is a typo or an attack (`.inf`, `1e400`), never a setting.
MAX_DURATION = 100 * 365 * DAY
MAX_SIZE = 1024**4
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip


def brief(value: Any, limit: int = 40) -> str:
    """`repr(value)` for a message, cut short: a config value may be megabytes of digits."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_duration(value: Any) -> float:
    """`250ms`, `30s`, `5m`, `1h`, `7d`, `1h30m`, or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{brief(value)} is not a duration: it is negative")
        return _bounded_duration(value, value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos, total = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if text and pos == len(text):
            return _bounded_duration(total, value)
    raise ValueError(f"{brief(value)} is not a duration (use e.g. 250ms, 30s, 5m, 1h, 7d)")


def _bounded_duration(seconds: float, value: Any) -> float:
    # Compared before converting: an int too large for a float would raise OverflowError.
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"{brief(value)} is not a duration: not a finite number")
    if not seconds <= MAX_DURATION:
        raise ValueError(f"{brief(value)} is not a duration: longer than 100 years")
    return float(seconds)


def parse_ratio(value: Any) -> float:
    """`5%` or `0.05` -> 0.05."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a ratio")
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{brief(value)} is not a percentage") from None
    elif isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{brief(value)} is not a ratio (use e.g. 5% or 0.05)") from None
    # NaN fails both comparisons, so it is refused here too.
    if isinstance(value, int | float) and 0 <= value <= 1:
        return float(value)
    raise ValueError(f"{brief(value)} is not a ratio between 0 and 1 (write 5% for five percent)")


def parse_size(value: Any) -> int:
    """`1MiB`, `512kb`, or a number of bytes -> bytes."""
    size: float | None = None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        size = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            size = float(match.group(1)) * _SIZE_FACTOR[(match.group(2) or "b").lower()]
    if size is None:
        raise ValueError(
            f"{brief(value)} is not a size (use e.g. 1MiB, 512kB or a number of bytes)"
        )
    # Before int(): a string of 400 digits is an infinite float, which int() refuses.
    if not size <= MAX_SIZE:
        raise ValueError(f"{brief(value)} is not a size: larger than 1TiB")
    return int(size)


def format_duration(seconds: float, *, coarse: bool = False) -> str:
    """For messages, the inverse of parse_duration: 0.25 -> `250ms`, 1.5 -> `1.5s`, 5400 -> `1h30m`.

    Under a minute, three significant digits: a 1.5 s latency is not "2s". `coarse` is for ages
    and time left, where more precision is noise on a page: one unit once there are two of it or
    a whole number of it (`45d`, `5h`, `90m`), and whole seconds.
    """
    if seconds < 0:
        return "-" + format_duration(-seconds, coarse=coarse)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if coarse:
        for unit in ("d", "h", "m"):
            size = _UNIT_SECONDS[unit]
            if seconds >= 2 * size or (seconds >= size and seconds % size == 0):
                return f"{seconds / size:.0f}{unit}"
    if seconds < MINUTE:
        return f"{round(seconds)}s" if coarse else f"{seconds:.3g}s"
    parts = []
    remaining = round(seconds)
    for unit in ("d", "h", "m", "s"):
        count, remaining = divmod(remaining, int(_UNIT_SECONDS[unit]))
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def hour_of(ts: float) -> int:
    """The start of the hour `ts` falls in, in unix seconds: the key of hourly buckets."""
    return int(ts - ts % HOUR)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def require_http_url(value: str, *, secret: bool = False) -> str:
    """`value` if it is an absolute http(s) URL with a host, else ValueError.

    A `secret` URL (anyone holding it can act, as with a dead-man's switch) is not repeated in
    the error, nor is yarl's reason, which may quote it.
    """
    try:
        url = yarl.URL(value)
    except ValueError as exc:  # yarl refuses some junk outright: a bad port, a bracket
        problem = "" if secret else f" ({exc})"
    else:
        if url.scheme in ("http", "https") and url.host:
            return value
        problem = ""
    raise ValueError(
        "not an http(s) URL" if secret else f"{value!r} is not an http(s) URL{problem}"
    )


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
HttpUrlText = Annotated[str, AfterValidator(require_http_url)]
Ratio = Annotated[float, BeforeValidator(parse_ratio)]
Size = Annotated[int, BeforeValidator(parse_size)]
