"""Keeps secrets out of everything intmon writes: logs, the database, metrics, API, messages.

A secret is masked in every spelling a server may echo it back in: as it is, percent-encoded
(by `quote`, `quote_plus`, yarl's query encoding, hex in either case, or any mix of these),
JSON- or HTML-escaped, and base64-encoded at any offset. The last catches it inside encodings
of longer text, such as `Authorization: Basic base64("user:password")`, without knowing the
user name.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import string
import urllib.parse
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Shorter values would mask innocent substrings everywhere (a port, "true").
MIN_SECRET_LENGTH = 4
# Credentials that may sit in a URL even when they were written literally in the config
# (an empty user name too: `postgresql://:password@host/db`).
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s:]*:[^/@\s]+@")
_ELLIPSIS = re.compile(r"\.\.\.|\u2026")
# Characters no encoding changes (RFC 3986 unreserved).
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_URLSAFE = str.maketrans("+/", "-_")  # base64's other alphabet
# How many sets of run secrets stay compiled; more than a config has auth configs.
_RUN_SECRET_SETS = 256


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every spelling of each secret, and any URL user:password, masked.

    Occurrences are masked as the union of their spans, so two secrets that overlap in the
    text (one ending where the other starts) leave no character of either visible.
    """
    return _Spellings(secrets).mask(text)


class _Spellings:
    """The compiled spellings of some secrets: one pattern each, to find every occurrence, and
    one for them all, which rules most texts out in a single scan."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = frozenset(secrets)
        ordered = sorted(s for s in self.secrets if len(s) >= MIN_SECRET_LENGTH)
        self.patterns = tuple(_pattern(secret) for secret in ordered)
        self.any = re.compile("|".join(p.pattern for p in self.patterns) or "(?!)")
        # Where each run of MIN_SECRET_LENGTH characters sits in the common spellings, to find
        # a secret's front part left where a text was cut short before it was redacted.
        self.grams: dict[str, list[tuple[str, int]]] = {}
        for secret in ordered:
            for spelling in _plain_spellings(secret):
                for end in range(MIN_SECRET_LENGTH, len(spelling)):
                    gram = spelling[end - MIN_SECRET_LENGTH : end]
                    self.grams.setdefault(gram, []).append((spelling, end))

    def mask(self, text: str) -> str:
        spans = self._cut_fronts(text)
        if self.any.search(text) is not None:
            for pattern in self.patterns:
                match = pattern.search(text)
                while match is not None:
                    spans.append(match.span())
                    # From the next character, not the match's end: occurrences may overlap.
                    match = pattern.search(text, match.start() + 1)
        if spans:
            text = _mask_spans(text, sorted(spans))
        return _URL_USERINFO.sub(f"{MASK}@", text) if "://" in text else text

    def _cut_fronts(self, text: str) -> list[tuple[int, int]]:
        """Spans of a secret's front part that runs into the end of `text` or into an
        ellipsis: checks cut long values (error texts at 200 characters, shown values at 80)
        before the result reaches redaction."""
        spans = []
        cuts = [len(text)]
        if "..." in text or "\u2026" in text:
            cuts += [match.start() for match in _ELLIPSIS.finditer(text)]
        for cut in cuts:
            for spelling, length in self.grams.get(text[cut - MIN_SECRET_LENGTH : cut], ()):
                if text.startswith(spelling[:length], cut - length):
                    spans.append((cut - length, cut))
        return spans


def _pattern(secret: str) -> re.Pattern[str]:
    """One regular expression for every spelling of `secret`."""
    forms = [_spelled(secret)]
    forms += [_spelled(core) for core in _base64_cores(secret.encode())]
    return re.compile("|".join(forms))


def _plain_spellings(secret: str) -> set[str]:
    """The spellings a cut is looked for in: as it is, percent-encoded, base64 cores."""
    plain = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    return plain | _base64_cores(secret.encode())


def _spelled(text: str) -> str:
    """A pattern for `text` in which each character may be escaped as URLs, JSON or HTML do."""
    return "".join(_char(char) for char in text)


def _char(char: str) -> str:
    if char in _UNRESERVED:
        return char
    options = {
        re.escape(char),
        "".join(f"%{_hex(byte, 2)}" for byte in char.encode()),
        re.escape(html.escape(char)),
        re.escape(json.dumps(char)[1:-1]),  # \" and \\
        # JSON may write any character as \uXXXX, in either case of hex.
        "".join(rf"\\u{_hex(ord(unit), 4)}" for unit in _utf16_units(char)),
    }
    if char == " ":
        options.add(r"\+")  # quote_plus and form encoding
    if char == "/":
        options.add(r"\\/")
    return "(?:" + "|".join(sorted(options)) + ")"


def _hex(value: int, width: int) -> str:
    """`value` in hex, matching either case of its letters."""
    return "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{value:0{width}X}")


def _utf16_units(char: str) -> list[str]:
    data = char.encode("utf-16-be")
    return [chr(int.from_bytes(data[i : i + 2], "big")) for i in range(0, len(data), 2)]


def _base64_cores(secret: bytes) -> set[str]:
    """The base64 characters that depend on `secret`'s bytes alone, at each of the three
    offsets it may start at in a longer encoded text, in both alphabets."""
    cores = set()
    for offset, lead in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(bytes(offset) + secret).decode("ascii").rstrip("=")
        # The last character mixes the secret's last bits with whatever follows it.
        tail = 1 if (offset + len(secret)) % 3 else 0
        core = encoded[lead : len(encoded) - tail]
        if len(core) >= MIN_SECRET_LENGTH:
            cores |= {core, core.translate(_URLSAFE)}
    return cores


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
    """`redact` with the config's secrets, shared by everything that writes text out.

    `extra` secrets are those of one run (the credentials it sent, the tokens it obtained):
    masked in that run's result only."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Take the secrets of a reloaded config; every holder of this redactor follows."""
        self._config = _Spellings(secrets)
        # Compiled with the config's, per set of run secrets: a token serves many runs.
        self._runs: dict[frozenset[str], _Spellings] = {}

    def __call__(self, text: str, extra: Iterable[str] = ()) -> str:
        return self._spellings(extra).mask(text)

    def value(self, value: Any, extra: Iterable[str] = ()) -> Any:
        """`value` with every string in it redacted, through dicts and lists."""
        spellings = self._spellings(extra)

        def walk(item: Any) -> Any:
            if isinstance(item, str):
                return spellings.mask(item)
            if isinstance(item, dict):
                return {key: walk(inner) for key, inner in item.items()}
            if isinstance(item, list | tuple):
                return [walk(inner) for inner in item]
            return item

        return walk(value)

    def _spellings(self, extra: Iterable[str]) -> _Spellings:
        config = self._config
        extra = frozenset(extra) - config.secrets
        if not extra:
            return config
        spellings = self._runs.get(extra)
        if spellings is None:
            if len(self._runs) >= _RUN_SECRET_SETS:
                self._runs.clear()  # rotated tokens: the old sets are not asked for again
            spellings = self._runs[extra] = _Spellings(config.secrets | extra)
        return spellings

    def formatter(self, fmt: str) -> logging.Formatter:
        """A log formatter whose whole output, tracebacks included, is redacted."""
        return _RedactingFormatter(fmt, self)


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, redact: Redactor) -> None:
        super().__init__(fmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))
