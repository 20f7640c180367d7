"""The overview at `/`, rendered from hand-built data: states, order, filter, history, escaping.

The check pages are in tests/test_checkpage.py, the real daemon in Chromium in
tests/test_pages_browser.py; both build their data with the helpers here."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from pydantic import MISSING

from monitor.alerting.machine import Phase
from monitor.alerting.status import AlertReport, AlertStatus
from monitor.core.units import HOUR, hour_of
from monitor.engine.status import (
    STATES,
    CheckStatus,
    LastRun,
    State,
    StatusReport,
    ThrottleStatus,
)
from monitor.signals.headers import Quota
from monitor.signals.history import HourSummary
from monitor.signals.status import DeprecationStatus, SignalsStatus
from monitor.web.pages.common import REFRESH_SECONDS, STATE_ORDER
from monitor.web.pages.overview import PAGE_SIZE, PageFilter
from monitor.web.pages.svg import BAD_RATIO, COLOURS, HOURS, SPARK_HEIGHT, SPARK_PAD, SPARK_WIDTH
from monitor.web.statuspage import render_status

NOW = 1_750_000_000.0  # 15:06:40 UTC


class Page(HTMLParser):
    """Every start tag, all text outside SVG, and per check row the text after its name."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""
        self.rows: dict[str, str] = {}
        self.order: list[str] = []  # check names, in the order of their rows
        self._row: list[str] | None = None
        self._name: str | None = None
        self._naming = False
        self._svg = 0  # tooltips inside the charts are not the row's words
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._svg += tag == "svg"
        if tag == "tr":
            self._row, self._name = [], None
        if tag == "th":
            self._naming = ("scope", "row") in attrs
        if self._row is not None:
            self._row.append(" ")  # cells and badges read as separate words

    def handle_endtag(self, tag: str) -> None:
        self._svg -= tag == "svg"
        if self._row is not None:
            self._row.append(" ")
        if tag == "tr" and self._row is not None and self._name is not None:
            self.rows[self._name] = " ".join("".join(self._row).split())
            self.order.append(self._name)
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._svg:
            return
        self.text += data
        if self._naming and data.strip():
            self._name, self._naming = data.strip(), False
        elif self._row is not None:
            self._row.append(data)


# An idle check's figures: no runs in any window yet.
IDLE = SignalsStatus(
    error_rate=None,
    error_rate_window=300.0,
    error_rate_runs=0,
    latency_p95=None,
    latency_p95_window=900.0,
    latency_p95_runs=0,
    latency_p95_baseline=None,
    rate_limited_15m=0,
    consecutive_failures=0,
)
NOT_THROTTLED = ThrottleStatus(paused_until=None, reason=None, throttled_seconds=0.0)


def check(
    name: str,
    state: State,
    error_class: str | None = None,
    reason: str = "",
    *,
    provider: str | None = None,
    request_id: str | None = None,
    **metrics: Any,
) -> CheckStatus:
    """One check as `Daemon.status()` reports it; `metrics` replace the idle figures."""
    last = None
    if state != "unknown":
        ok = state in ("up", "degraded")
        last = LastRun(
            ts=NOW - 12,
            ok=ok,
            error_class=error_class,
            status=None,
            latency=None,
            reason=reason,
            request_id=request_id,
        )
    return CheckStatus(
        name=name,
        type="http",
        target="GET https://api.example.com/",
        provider=provider,
        interval=60.0,
        state=state,
        last=last,
        last_success=None,
        last_failure=None,
        signals={},
        metrics=SignalsStatus.model_validate(IDLE.model_dump() | metrics),
        throttle=NOT_THROTTLED,
    )


def deprecation(
    links: list[str], days_to_sunset: float | None = None, active: bool = True
) -> DeprecationStatus:
    """A deprecation first seen a day ago, with a sunset date when `days_to_sunset` is given."""
    dated = days_to_sunset is not None
    return DeprecationStatus(
        first_seen=NOW - 86400,
        last_seen=NOW - 12,
        deprecated_at=None,
        sunset_at=NOW + days_to_sunset * 86400 if dated else None,
        links=tuple(links),
        sunset_links=(),
        message=None,
        active=active,
        days_to_sunset=days_to_sunset if dated else MISSING,
    )


def alert(check: str, rule: str, phase: Phase = Phase.FIRING, **extra: Any) -> AlertStatus:
    """One alert as `Alerter.status()` reports it; `extra` replaces fields."""
    firing = AlertStatus(
        check=check,
        rule=rule,
        phase=phase,
        severity="critical",
        since=NOW - 120,
        fired_at=NOW - 90,
        notified_severity="critical",
        last_notified=NOW - 90,
        clear_count=0,
        clear_since=None,
        lower_count=0,
        version=2,
        summary=f"{rule} >= critical 5%",
        value=0.2,
        threshold=0.05,
        silenced=False,
    )
    return AlertStatus.model_validate(firing.model_dump() | extra)


def render(
    checks: list[CheckStatus],
    alerts: list[AlertStatus],
    history: dict[str, list[HourSummary]] | None = None,
    **query: str,
) -> str:
    return render_status(
        StatusReport(generated_at=NOW, checks=tuple(checks)),
        AlertReport(generated_at=NOW, alerts=tuple(alerts)),
        lambda name: (history or {}).get(name, []),
        PageFilter.from_query(query),
    )


def hour(ago: int, runs: int, failures: int, p95: float | None) -> HourSummary:
    """The hour `ago` hours before NOW's."""
    return HourSummary(hour_of(NOW) - ago * int(HOUR), runs, failures, p95)


def quota(remaining: float | None, limit: float | None) -> Quota:
    return Quota(remaining, limit, reset_at=None, policy=None, dialect="ietf", seen_at=NOW)


def sample() -> tuple[list[CheckStatus], list[AlertStatus]]:
    legacy = deprecation(["https://example.com/migrate"], days_to_sunset=30.0)
    checks = [
        check("orders-api", "up", error_rate=0.0, latency_p95=0.235, quota=quota(5, 100)),
        check("billing", "down", "http_5xx", "HTTP 503 from upstream", request_id="req-8f2a",
              error_rate=0.125, latency_p95=1.5),
        check("legacy", "up", deprecation=legacy),
        check("orders-sync", "up", freshness_age=7200.0),
        check("new-one", "unknown"),
        check("stripe-charges", "throttled", "rate_limited", "HTTP 429", provider="stripe"),
        check("search", "degraded", provider="algolia"),
    ]  # fmt: skip
    checks[5] = checks[5].model_copy(update={"state_reason": "Retry-After", "until": NOW + 240})
    checks[6] = checks[6].model_copy(update={"state_reason": "p95 2.4s over degraded_latency"})
    pending = alert("orders-api", "latency_p95", Phase.PENDING)
    return checks, [alert("billing", "error_rate"), pending]


def test_every_check_appears_with_its_state_spelled_out_and_coloured() -> None:
    checks, alerts = sample()
    page = Page(render(checks, alerts))

    assert set(page.rows) == {c.name for c in checks}
    assert page.rows["orders-api"].startswith("✓ Up 12s ago")
    assert "✗ Down 12s ago" in page.rows["billing"]
    assert page.rows["new-one"].startswith("? Unknown never")
    assert "‖ Throttled" in page.rows["stripe-charges"]
    assert "◐ Degraded" in page.rows["search"]
    for state in STATES:
        assert ("span", {"class": f"state state-{state}"}) in page.tags


def test_problems_come_first_then_waiting_limping_unknown_and_up_by_name() -> None:
    checks, alerts = sample()
    page = Page(render(checks, alerts))

    states = {c.name: c.state for c in checks}
    ranks = [STATE_ORDER.index(states[name]) for name in page.order]
    assert ranks == sorted(ranks)
    assert page.order[0] == "billing"
    ups = [name for name in page.order if states[name] == "up"]
    assert ups == sorted(ups)


def test_a_throttled_check_says_why_and_until_when_and_a_failure_quotes_the_request_id() -> None:
    checks, alerts = sample()
    page = Page(render(checks, alerts))

    assert "Retry-After · until 15:10 UTC (in 4m)" in page.rows["stripe-charges"]
    assert "http_5xx: HTTP 503 from upstream · request id req-8f2a" in page.rows["billing"]
    assert "p95 2.4s over degraded_latency" in page.rows["search"]


def test_it_shows_the_figures_and_the_sunset_countdown_with_the_migration_link() -> None:
    checks, alerts = sample()
    page = Page(render(checks, alerts))

    assert "235ms 0.0% quota 5 / 100" in page.rows["orders-api"]
    assert "1.5s 12.5%" in page.rows["billing"]
    assert "sunset in 30 days · migration guide" in page.rows["legacy"]
    assert ("a", {"href": "https://example.com/migrate", "rel": "noopener noreferrer"}) in page.tags
    assert "data 2h old" in page.rows["orders-sync"]


def test_it_counts_checks_per_state_and_each_count_links_to_its_filter() -> None:
    checks, alerts = sample()
    page = Page(render(checks, alerts))

    text = re.sub(r"\s", "", page.text)
    assert "7checks1down1throttled1degraded1unknown3up1alertsfiring" in text
    for state in STATES:
        assert any(a.get("href") == f"/?state={state}" for tag, a in page.tags if tag == "a")
    assert "error_rate critical" in page.rows["billing"]
    assert "pending: latency_p95" in page.rows["orders-api"]
    assert "error_rate critical" not in page.rows["orders-api"]


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ({"q": "ORDERS"}, {"orders-api", "orders-sync"}),
        ({"state": "up"}, {"orders-api", "legacy", "orders-sync"}),
        ({"provider": "stripe"}, {"stripe-charges"}),
        ({"q": "orders", "state": "up", "provider": "stripe"}, set()),
        ({"state": "bogus"}, {"orders-api", "billing", "legacy", "orders-sync", "new-one",
                              "stripe-charges", "search"}),
    ],
    ids=["name-substring", "state", "provider", "all-three", "unknown-state-ignored"],
)  # fmt: skip
def test_the_filter_narrows_the_rows_and_keeps_its_values_in_the_form_and_the_refresh(
    query: dict[str, str], shown: set[str]
) -> None:
    checks, alerts = sample()
    html = render(checks, alerts, **query)
    page = Page(html)

    assert set(page.rows) == shown
    view = PageFilter.from_query(query)
    assert PageFilter.from_query(dict(parse_qsl(urlsplit(view.href()).query))) == view
    refresh = next(a for tag, a in page.tags if tag == "meta" and a.get("http-equiv") == "refresh")
    assert refresh["content"] == f"{REFRESH_SECONDS};url={view.href()}"
    form = [a for tag, a in page.tags if tag in ("form", "input", "option")]
    assert {"class": "filter", "method": "get", "action": "/", "role": "search"} in form
    if "q" in query:
        assert ("input", {"type": "search", "name": "q", "value": query["q"], "placeholder": "e.g. orders"}) in page.tags  # fmt: skip
    if view.state is not None:
        assert {"value": view.state, "selected": None} in form
    if not shown:
        assert "No check matches this filter (7 checks in all)." in page.text


def test_healthy_rows_are_paged_while_every_problem_shows_on_every_page() -> None:
    healthy = [check(f"ok-{i:04d}", "up") for i in range(PAGE_SIZE + 7)]
    checks = [*healthy, check("broken", "down", "timeout")]

    first, second = Page(render(checks, [])), Page(render(checks, [], page="2"))

    assert first.order == ["broken", *[c.name for c in healthy[:PAGE_SIZE]]]
    assert second.order == ["broken", *[c.name for c in healthy[PAGE_SIZE:]]]
    assert ("a", {"href": "/?page=2"}) in first.tags
    assert ("a", {"href": "/"}) in second.tags  # previous: page 1 needs no parameter
    assert f"Healthy checks 1 to {PAGE_SIZE} of {len(healthy)}" in first.text
    # Past the cap a check is one filter away.
    assert set(Page(render(checks, [], q=healthy[-1].name)).rows) == {healthy[-1].name}


def test_firing_alerts_are_grouped_per_check_worst_severity_first() -> None:
    alerts = [
        alert("slow", "latency_p95", severity="warning", fired_at=NOW - 3600),
        alert("billing", "consecutive_failures", severity="warning"),
        alert("billing", "error_rate"),
        alert("billing", "rate_limited", Phase.PENDING),
    ]
    html = render([check("billing", "down"), check("slow", "degraded")], alerts)
    section = html[html.index('<section class="alerts"') : html.index("</section>")]
    lines = [" ".join(Page(li).text.split()) for li in section.split("<li>")[1:]]

    assert "Firing alerts: 3 on 2 checks" in Page(section).text
    assert lines == [
        "billing error_rate critical consecutive_failures warning for 1m30s",
        "slow latency_p95 warning for 1h",
    ]


def test_a_firing_alert_of_a_check_no_longer_configured_still_shows_in_the_summary() -> None:
    page = Page(render([], [alert("removed", "error_rate")]))

    assert "removed" in page.text and "error_rate critical" in page.text


def bar_of(html: str, name: str) -> list[tuple[str, str]]:
    """(fill, tooltip) of each history segment in the row of `name`."""
    row = html[html.index(f'<th scope="row"><a href="/checks/{name}"') :]
    bar = row[row.index('<svg class="bar"') : row.index("</svg>")]
    return re.findall(r'<rect [^>]*fill="([^"]+)"><title>([^<]*)</title>', bar)


def test_the_history_bar_has_an_hour_per_segment_coloured_by_its_share_of_failures() -> None:
    history = {
        "billing": [
            hour(23, runs=60, failures=0, p95=0.2),
            hour(5, runs=60, failures=1, p95=0.3),
            hour(1, runs=60, failures=int(60 * BAD_RATIO) + 1, p95=0.4),
            hour(0, runs=10, failures=10, p95=None),
        ]
    }
    segments = bar_of(render([check("billing", "down")], [], history), "billing")

    assert len(segments) == HOURS
    fills = [fill for fill, _ in segments]
    assert fills[0] == COLOURS["ok"]
    assert fills[HOURS - 1 - 5] == COLOURS["some"]
    assert fills[-2:] == [COLOURS["bad"], COLOURS["bad"]]
    assert fills.count(COLOURS["none"]) == HOURS - 4
    assert segments[HOURS - 1 - 5][1] == "10:00 to 11:00 UTC: 1 of 60 runs failed (1.7%), p95 300ms"
    assert segments[1][1].endswith(": no runs")


def spark_points(html: str, name: str) -> list[tuple[float, float]]:
    row = html[html.index(f'<th scope="row"><a href="/checks/{name}"') :]
    points = re.search(r'<svg class="spark".*?<polyline points="([^"]+)"', row)
    assert points is not None
    return [(float(x), float(y)) for x, y in (p.split(",") for p in points.group(1).split())]


def test_the_sparkline_puts_each_hours_p95_at_its_hour_scaled_to_the_days_maximum() -> None:
    history = {"api": [hour(23, 60, 0, 0.5), hour(12, 60, 0, 2.0), hour(0, 60, 0, 1.0)]}
    points = spark_points(render([check("api", "up")], [], history), "api")

    step = (SPARK_WIDTH - 2 * SPARK_PAD) / (HOURS - 1)
    inner = SPARK_HEIGHT - 2 * SPARK_PAD
    expected = [(0, 0.5 / 2.0), (HOURS - 1 - 12, 1.0), (HOURS - 1, 1.0 / 2.0)]
    assert points == [
        (pytest.approx(SPARK_PAD + i * step, abs=0.05), pytest.approx(SPARK_PAD + inner * (1 - share), abs=0.05))
        for i, share in expected
    ]  # fmt: skip


def test_a_check_without_timed_runs_has_no_sparkline() -> None:
    html = render([check("api", "down")], [], {"api": [hour(0, 5, 5, None)]})
    assert 'class="spark"' not in html


def test_it_refreshes_itself_and_loads_nothing_from_elsewhere() -> None:
    html = render(*sample())
    page = Page(html)

    assert ("meta", {"http-equiv": "refresh", "content": f"{REFRESH_SECONDS};url=/"}) in page.tags
    assert (
        "meta",
        {"name": "viewport", "content": "width=device-width,initial-scale=1"},
    ) in page.tags
    assert {tag for tag, _ in page.tags}.isdisjoint({"script", "link", "img", "iframe"})
    assert not [a for _, a in page.tags if "style" in a or any(k.startswith("on") for k in a)]
    assert "//" not in html.replace("https://example.com/migrate", "")


HOSTILE_LINKS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    '//evil.example/"><script>alert(1)</script>',
]


@pytest.mark.parametrize("link", HOSTILE_LINKS, ids=["javascript", "mixed-case", "data", "vbscript", "relative"])  # fmt: skip
def test_only_http_links_become_anchors_and_hostile_text_is_escaped(link: str) -> None:
    hostile = deprecation([link], days_to_sunset=3.0)
    reason = "<script>alert('reason')</script>"
    legacy = check("legacy", "down", "http_5xx", reason, deprecation=hostile,
                   provider='"><i>p</i>', request_id="<i>id</i>")  # fmt: skip
    alerts = [alert("legacy", "sunset", summary='"><img src=x onerror=alert(1)>')]
    filtered = render([legacy], alerts, q='"><script>x</script>')
    html = render([legacy], alerts)
    page = Page(html)

    anchors = [a["href"] for tag, a in page.tags if tag == "a"]
    assert not [href for href in anchors if not (href or "").startswith("/")]
    for text in (html, filtered):
        assert {tag for tag, _ in Page(text).tags}.isdisjoint({"script", "img", "i"})
    assert "&lt;script&gt;alert(&#x27;reason&#x27;)&lt;/script&gt;" in html
    assert link in page.text  # shown, as text, for the operator to judge
    assert "<script>alert('reason')</script>" in page.rows["legacy"]
    assert "request id <i>id</i>" in page.rows["legacy"]


def test_a_sunset_without_a_date_or_already_past_says_so() -> None:
    undated = check("a", "up", deprecation=deprecation([]))
    past = check("b", "up", deprecation=deprecation([], days_to_sunset=0.0))
    ended = check("c", "up", deprecation=deprecation([], days_to_sunset=9.0, active=False))
    page = Page(render([undated, past, ended], []))

    assert "deprecated, no sunset date" in page.rows["a"]
    assert "sunset has passed" in page.rows["b"]
    assert "days" not in page.rows["c"]


def test_a_reason_that_quotes_its_request_id_shows_it_once() -> None:
    quoted = check(
        "billing", "down", "http_5xx", "HTTP 503 (expected 2xx) (request id req-8f2a)",
        request_id="req-8f2a",
    )  # fmt: skip
    page = Page(render([quoted], []))

    assert page.rows["billing"].count("req-8f2a") == 1
