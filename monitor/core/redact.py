"""Keeps secrets out of everything intmon writes: logs, the database, metrics, API, messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
# Shorter values would mask innocent substrings everywhere (a port, "true").
_MIN_SECRET_LENGTH = 4
# Credentials that may sit in a URL even when they were written literally in the config.
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._pattern: re.Pattern[str] | None = None
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Take the secrets of a reloaded config; every holder of this redactor follows."""
        values = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _URL_USERINFO.sub(f"{MASK}@", text)

    def formatter(self, fmt: str) -> logging.Formatter:
        """A log formatter whose whole output, tracebacks included, is redacted."""
        return _RedactingFormatter(fmt, self)


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, redact: Redactor) -> None:
        super().__init__(fmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))
