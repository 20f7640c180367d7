"""How one message reads in each medium: plain lines, Markdown for chat, HTML for email.

A message is written once, as plain text with one fact a line (`Since: …`), and stored that
way in the outbox, already redacted. Apprise converts between formats, but only from the format
it is told the body is in; told nothing, it hands the text on as it is. Email then sends it as
its HTML part, where the line breaks mean nothing, and makes the text part from that HTML,
which joins the lines too: one long sentence in every mail client. So each service gets the
body in the format it renders, and is told which one that is, so Apprise converts nothing:

- relays that pass the body on to a program (json://, form://, xml://, apprise://): plain text;
- services that render Markdown (Slack, Discord, Telegram, Matrix, Rocket.Chat, …), or any
  service whose URL asks for `format=markdown`: CommonMark, a hard line break a line, values
  escaped, labels in bold (Apprise turns CommonMark into each chat's own dialect);
- services that render HTML (email): a paragraph per block and a `<br>` per line, values
  HTML-escaped; email derives its text part from this HTML, one line a `<br>`;
- the rest (SMS, push): plain text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from apprise import NotifyFormat
from apprise.conversion import convert_between
from apprise.plugins import NotifyBase

# `Since: …`, `Last error: …`: a short capitalised label, then the value.
_LABELLED = re.compile(r"(?P<label>[A-Z][A-Za-z ]{0,23}):(?P<value> .*)?")
# Relays: they take whichever format they are handed and pass it on to a program.
RELAY_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls", "apprise", "apprises"})


def medium(service: NotifyBase, url: str) -> NotifyFormat:
    """The format to hand `service`, made from `url`: see the module docstring."""
    if url.split("://", 1)[0].lower() in RELAY_SCHEMES:
        return service.resolve_format(NotifyFormat.TEXT)  # unless its URL's `format=` says so
    # Markdown where the service declares it (or its URL's `format=` picks it); otherwise the
    # service's own default, HTML for email.
    return service.resolve_format(NotifyFormat.MARKDOWN)


def present(text: str, form: NotifyFormat) -> str:
    """`text` (lines, blank lines between blocks) as `form`."""
    if form is NotifyFormat.MARKDOWN:
        # Two spaces end a line with a hard break, in CommonMark and in every chat dialect.
        return "\n\n".join(_blocks(text, _markdown_line, "  \n"))
    if form is NotifyFormat.HTML:
        # No newline after <br>: HTML-to-text conversions would start each line with a space.
        return "".join(f"<p>{block}</p>" for block in _blocks(text, _html_line, "<br>"))
    return text


def _blocks(text: str, line: Callable[[str], str], within: str) -> list[str]:
    blocks = [b for b in re.split(r"\n\s*\n", text.strip("\n")) if b.strip()]
    return [within.join(line(row) for row in block.splitlines()) for block in blocks]


def _markdown_line(row: str) -> str:
    match = _LABELLED.fullmatch(row)
    if match is None:
        return _escape_markdown(row)
    return f"**{match['label']}:**{_escape_markdown(match['value'] or '')}"


def _html_line(row: str) -> str:
    match = _LABELLED.fullmatch(row)
    if match is None:
        return html.escape(row, quote=False)
    return f"<b>{match['label']}:</b>{html.escape(match['value'] or '', quote=False)}"


def _escape_markdown(value: str) -> str:
    # Apprise's own escaping: every plugin undoes exactly these escapes in its dialect. (Apprise
    # leaves the function unannotated.)
    escaped = convert_between(NotifyFormat.TEXT, NotifyFormat.MARKDOWN, value)  # type: ignore[no-untyped-call]
    return str(escaped)
