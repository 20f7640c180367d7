"""Each medium keeps a message's lines: email (a real SMTP server), Markdown chat, json://.

Every message goes the way intmon sends it: rendered and redacted by `Notify.messages`, then
handed to Apprise by `Notify.send`.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from monitor.alerting.machine import Intent, Kind
from monitor.alerting.notify import Message, Notify
from monitor.core.redact import Redactor
from tests.fakes import Notifier
from tests.mailbox import Mailbox
from tests.receiver import Receiver

NOW = 1_700_000_000.0
SECRET = "s3cr3t-Tok&n/42"
HOSTILE = "<script>alert(1)</script> & *bold* _x_"


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    server = await Mailbox().start()
    yield server
    await server.stop()


def firing() -> Intent:
    return Intent(
        kind=Kind.FIRING,
        check="orders-api",
        rule="error_rate",
        severity="critical",
        value=0.5,
        threshold=0.05,
        summary="error rate 50% over 5m (10 runs) >= critical 5%",
        since=NOW - 300,
        at=NOW,
        last_error=f"http_5xx: HTTP 503 {HOSTILE} token={SECRET}",
        request_id="req-7f3a",
        migration_link="https://example.com/migrate",
    )


async def send_one(urls: list[str]) -> tuple[Message, str]:
    """One FIRING message through intmon's own path; (the message, its notification id)."""
    notify = Notify(
        [Notifier("ops", urls)],
        Redactor([SECRET]),
        links=lambda check: f"https://intmon.example.com/checks/{check}",
    )
    try:
        [message] = notify.messages([firing()], {"orders-api": ["ops"]})
        await notify.send(
            "ops", message.title, message.body, message.notify_type, nid="intmon-abc123"
        )
    finally:
        notify.close()
    return message, "intmon-abc123"


def facts(message: Message, nid: str) -> list[str]:
    """The lines a reader should see, in order: the body's, then the notification id."""
    return [*message.body.splitlines(), f"Notification id: {nid}"]


def leaks(text: str) -> bool:
    return SECRET in text or html.escape(SECRET) in text or "Tok&amp;n" in text


async def test_an_email_keeps_one_line_per_fact_in_its_text_and_html_parts(
    mailbox: Mailbox,
) -> None:
    message, nid = await send_one([mailbox.url()])
    [mail] = mailbox.messages
    assert mail["Subject"] == message.title
    text_part = mail.get_body(preferencelist=("plain",))
    html_part = mail.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text, markup = text_part.get_content(), html_part.get_content()

    lines = [line for line in text.splitlines() if line.strip()]
    assert lines == facts(message, nid)
    assert any(line.startswith("Request id: req-7f3a") for line in lines)
    assert "Check page: https://intmon.example.com/checks/orders-api" in lines
    # Every fact is a line of its own in the HTML part too: a <br> or a new paragraph each.
    inner = re.sub(r"^<p>|</p>$", "", markup.strip())
    shown = [
        html.unescape(re.sub(r"<[^>]+>", "", part)) for part in re.split(r"<br>|</p><p>", inner)
    ]
    assert shown == facts(message, nid)
    assert "&lt;script&gt;" in markup and "<script>" not in markup
    assert not leaks(text) and not leaks(markup) and not leaks(str(mail))


async def test_a_markdown_chat_gets_bold_labels_hard_line_breaks_and_escaped_values(
    serve: Callable[[web.Application], Any],
) -> None:
    posts: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        posts.append(await request.json())
        return web.json_response({"success": True})

    app = web.Application()
    app.router.add_post("/hooks/{token:.*}", hook)
    base = await serve(app)
    host = base.split("://", 1)[1].rstrip("/")
    # Rocket.Chat renders Markdown and, unlike Slack or Discord, lets the host be ours.
    message, nid = await send_one([f"rocket://abc/def@{host}/#alerts"])
    [post] = posts
    # Rocket.Chat puts the title first, as a heading line of its own.
    heading, body = post["text"].split("\n", 1)
    assert heading == f"# {message.title}"
    rows = body.split("\n")
    assert len([r for r in rows if r.strip()]) == len(facts(message, nid))
    # Each line of a block ends in a hard break, so no renderer joins two facts.
    blocks = body.split("\n\n")
    assert all(row.endswith("  ") for block in blocks for row in block.split("\n")[:-1])
    assert "**Since:** " in post["text"]
    assert "**Request id:** req\\-7f3a" in post["text"]
    assert "\\*bold\\*" in post["text"]  # a value never turns into formatting
    assert not leaks(post["text"])


async def test_json_receivers_get_the_plain_text_with_its_newlines(receiver: Receiver) -> None:
    message, nid = await send_one([receiver.url])
    [post] = receiver.posts
    assert post["message"] == f"{message.body}\n\nNotification id: {nid}"
    assert post["message"].splitlines()[0] == message.body.splitlines()[0]
    assert HOSTILE in post["message"] and not leaks(post["message"])
