"""The page of one check, from hand-built data: what it reads from storage, and what it shows."""

from __future__ import annotations

import re
from html import unescape

from checks.base import Result
from monitor.alerting.machine import Phase
from monitor.alerting.outbox import SENT, OutboxRow
from monitor.core.jsonshape import shape_of
from monitor.core.quantile import quantile
from monitor.core.units import HOUR, hour_of
from monitor.signals.headers import Quota
from monitor.signals.shapes import LEARNING_RUNS, ShapeTracker
from monitor.storage.schema import RollupRow
from monitor.storage.store import RunRecord
from monitor.web.pages.check import render_check, render_missing
from monitor.web.pages.detail import CheckDetail, Stored, build_detail
from tests.test_statuspage import NOW, Page, alert, check, deprecation, render

START = hour_of(NOW) - 2 * int(HOUR)


def run(ts: float, ok: bool, latency: float | None, error_class: str | None = None) -> RunRecord:
    return RunRecord("billing", ts, ok, error_class, 200 if ok else 503, latency, "HTTP 503", {})


def outbox(row_id: int, notifier: str, kind: str, at: float, status: str = SENT) -> OutboxRow:
    return OutboxRow(
        id=row_id, dedup_key=f"k{row_id}", notifier=notifier, check="billing", rule="error_rate",
        kind=kind, title=f"{kind}: billing error_rate", body="", notify_type="failure",
        created_at=at, next_attempt_at=at, expires_at=at + 3600, status=status,
    )  # fmt: skip


def stored() -> Stored:
    runs = [run(START + i * 60, ok=i % 5 != 0, latency=0.1 + i / 1000,
                error_class=None if i % 5 else ("timeout" if i % 2 else "http_5xx"))
            for i in range(126)]  # up to NOW  # fmt: skip
    week = [RollupRow("billing", START - h * int(HOUR), 60, 1, 0, 60, 0.1, 0.2, 0.3, 0.2)
            for h in range(48, 0, -1)]  # fmt: skip
    failures = [r for r in reversed(runs) if not r.ok][:3]
    rows = [
        outbox(4, "chat", "RESOLVED", NOW - 60, status="pending"),
        outbox(3, "mail", "FIRING", NOW - 600),
        outbox(2, "chat", "FIRING", NOW - 600),
    ]
    return Stored(runs=runs, rollups=week, failures=failures, outbox=rows)


def detail(**changes: object) -> CheckDetail:
    billing = check("billing", "down", "http_5xx", "HTTP 503", request_id="req-77",
                    quota=Quota(3, 100, reset_at=NOW + 1800, policy=None, dialect="ietf",
                                seen_at=NOW),
                    deprecation=deprecation(["https://example.com/v2", "javascript:alert(1)"],
                                            days_to_sunset=20.0))  # fmt: skip
    billing = billing.model_copy(update=changes)
    return build_detail(billing, (alert("billing", "error_rate"),), stored(), NOW)


def words(html: str) -> str:
    """The page's text with every tag a word break (cells, terms and badges apart)."""
    body = html[html.index("<body>") :]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_the_day_is_summarised_per_hour_with_quantiles_and_error_classes() -> None:
    data = stored()
    day = detail().day

    assert [p.hour for p in day] == [START, START + HOUR, START + 2 * HOUR]
    first = [r for r in data.runs if hour_of(r.ts) == START]
    assert day[0].runs == len(first) == 60
    assert day[0].failures == sum(1 for r in first if not r.ok)
    latencies = [r.latency for r in first if r.latency is not None]
    assert day[0].p95 == quantile(list(latencies), 0.95)
    assert day[0].max == max(latencies)
    assert day[0].error_classes == {
        "timeout": sum(1 for r in first if r.error_class == "timeout"),
        "http_5xx": sum(1 for r in first if r.error_class == "http_5xx"),
    }


def test_a_transition_sent_to_several_notifiers_is_one_entry_of_the_timeline() -> None:
    entries = detail().notifications

    assert [(n.kind, n.notifiers, n.delivered) for n in entries] == [
        ("RESOLVED", ("chat",), False),
        ("FIRING", ("chat", "mail"), True),
    ]


def test_the_page_shows_state_facts_charts_timeline_deprecation_and_failures() -> None:
    until = NOW + 300
    html = render_check(
        detail(state="throttled", state_reason="Retry-After from the provider", until=until)
    )
    page = Page(html)
    text = words(html)

    assert "‖ Throttled" in text
    assert "Retry-After from the provider · until 15:11 UTC (in 5m)" in text
    assert "GET https://api.example.com/" in text
    assert "3 / 100, resets 15:36:40 UTC (in 30m)" in text
    assert "Last request id req-77" in text
    assert html.count('<svg class="chart"') == 3  # day latency, week latency, error classes
    assert "p95 p50" in text.replace("max ", "")  # the legend
    assert "timeout" in text and "http_5xx" in text
    assert re.search(r"FIRING error_rate chat, mail delivered", text)
    assert "RESOLVED error_rate chat queued" in text
    assert ("a", {"href": "https://example.com/v2", "rel": "noopener noreferrer"}) in page.tags
    assert "javascript:alert(1)" in text  # as text, not as a link
    assert text.count("HTTP 503") >= 3  # the last failures
    assert "error_rate firing critical" in text


def test_without_the_database_the_page_says_so_and_shows_the_live_figures() -> None:
    billing = check("billing", "down", "timeout", "no answer within 10s")
    html = render_check(build_detail(billing, (), None, NOW))

    assert "History is unavailable" in html
    assert "no answer within 10s" in html


def test_an_unknown_check_gets_a_page_naming_it_escaped() -> None:
    html = render_missing("<script>x</script>", NOW)

    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "script" not in {tag for tag, _ in Page(html).tags}


def test_the_api_model_round_trips_through_json() -> None:
    data = detail()
    assert CheckDetail.model_validate_json(data.model_dump_json()) == data
    assert Phase.FIRING in {a.phase for a in data.alerts}


def drifted_tracker() -> ShapeTracker:
    tracker = ShapeTracker()
    before = shape_of({"data": {"total": 12.5, "currency": "EUR", "<script>": 1}})
    for i in range(LEARNING_RUNS):
        tracker.observe(Result(ok=True, status=200, shape=before), NOW - 60 + i)
    after = shape_of({"data": {"total": "12.50", "<script>": 1, "tax": 2.1}})
    tracker.observe(Result(ok=False, status=200, shape=after), NOW)
    return tracker


def test_a_drifted_check_shows_the_diff_new_fields_and_the_learned_shape_folded() -> None:
    tracker = drifted_tracker()
    billing = check("billing", "up", shape=tracker.status())
    html = render_check(build_detail(billing, (), stored(), NOW, tracker.learned_fields()))
    text = words(html)

    assert "Response shape The latest body drifts from the learned shape." in text
    assert "$.data.total: number → string $.data.currency: removed" in text
    assert "New fields, not paged: $.data.tax: new (number)" in text
    assert "Learned shape: 5 paths" in text
    assert "$.data['<script>'] number" in text  # a key is text, never markup
    assert "script" not in {tag for tag, _ in Page(html).tags}
    assert html.index("<details>") < html.index("<td><code>$.data.currency</code>")


def test_a_check_without_json_answers_has_no_shape_panel() -> None:
    assert "Response shape" not in render_check(detail())


def test_the_overview_names_a_drifted_check_in_its_signals() -> None:
    html = render([check("billing", "up", shape=drifted_tracker().status())], [])
    assert "shape drifted (2 changes)" in words(html)
