"""Keeps secrets out of everything intmon writes: logs, the database, metrics, API, messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
# Shorter values would mask innocent substrings everywhere (a port, "true").
MIN_SECRET_LENGTH = 4
# Credentials that may sit in a URL even when they were written literally in the config.
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret, and any URL user:password, masked.

    Occurrences are masked as the union of their spans, so two secrets that overlap in the
    text (one ending where the other starts) leave no character of either visible.
    """
    spans = []
    for secret in {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}:
        start = text.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    if spans:
        text = _mask_spans(text, sorted(spans))
    return _URL_USERINFO.sub(f"{MASK}@", text)


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace each run of sorted, possibly overlapping spans with one MASK."""
    pieces = []
    kept_from = 0  # the end of the last masked run
    run_start, run_end = spans[0]
    for start, end in spans[1:]:
        if start > run_end:
            pieces += [text[kept_from:run_start], MASK]
            kept_from, run_start = run_end, start
        run_end = max(run_end, end)
    pieces += [text[kept_from:run_start], MASK, text[run_end:]]
    return "".join(pieces)


class Redactor:
    """`redact` with the config's secrets, shared by everything that writes text out."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: frozenset[str] = frozenset()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Take the secrets of a reloaded config; every holder of this redactor follows."""
        self._secrets = frozenset(secrets)

    def __call__(self, text: str) -> str:
        return redact(text, self._secrets)

    def formatter(self, fmt: str) -> logging.Formatter:
        """A log formatter whose whole output, tracebacks included, is redacted."""
        return _RedactingFormatter(fmt, self)


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, redact: Redactor) -> None:
        super().__init__(fmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))
