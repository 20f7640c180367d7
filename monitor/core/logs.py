"""Where intmon's log lines go and how they look: text for people, JSON for log shippers.

Either way a whole line is redacted after it is formatted, tracebacks and structured fields
included, with the redactor the daemon updates on reload. Records that matter to automation
(a failed run, an alert transition, a sent notification) carry structured fields (`fields()`):
the JSON format puts them beside `ts`, `level`, `logger` and `message`; the text format shows
the message alone, which says the same in words.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from monitor.core.redact import Redactor
from monitor.core.timestamps import utc_iso

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELDS = "intmon_fields"  # the LogRecord attribute `fields()` sets


def fields(event: str, **values: Any) -> dict[str, Any]:
    """`extra=` for a log call: the event's name and its fields, for the JSON format."""
    return {_FIELDS: {"event": event, **values}}


def setup_logging(level: str, form: LogFormat, redactor: Redactor) -> None:
    """Send every record to stderr in `form`; called again on reload, so both can change."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter(redactor) if form == "json" else redactor.formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp logs each failed request at ERROR with a traceback; our results already say it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, then the record's fields."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # Redacted as text: a secret is masked in its JSON-escaped spelling too, and the mask
        # has no character JSON would escape, so the line stays valid JSON. `default=str` for
        # the odd value json cannot encode: a log line must never raise.
        return self._redact(json.dumps(entry, ensure_ascii=False, default=str))
