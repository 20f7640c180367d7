"""The demo's notification inbox: JSON for programs, a readable page for people."""

from __future__ import annotations

import aiohttp


async def test_the_inbox_page_shows_each_notification_with_its_lines_and_escapes_them(
    sandbox: str,
) -> None:
    sent = {
        "title": "FIRING: slow latency_p95 (warning)",
        "type": "warning",
        "message": "p95 latency 412ms <b>slow</b>\nSince: 2023-11-14 22:13:20 UTC (just now)",
    }
    async with aiohttp.ClientSession() as client:
        async with client.post(f"{sandbox}/notifications", json=sent) as answer:
            assert answer.status == 200
        async with client.get(f"{sandbox}/notifications") as answer:
            assert (await answer.json())["notifications"] == [sent]
        headers = {"Accept": "text/html,application/xhtml+xml"}
        async with client.get(f"{sandbox}/notifications", headers=headers) as answer:
            assert answer.content_type == "text/html"
            page = await answer.text()
    assert "<h2>FIRING: slow latency_p95 (warning)</h2>" in page
    assert "&lt;b&gt;slow&lt;/b&gt;\nSince: 2023-11-14" in page and "<b>slow" not in page
    assert 'class="warning"' in page
