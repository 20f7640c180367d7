"""The overview at `/`: problems first, a shareable filter, and a day of history per check.

Pure: `render_status` turns the daemon's status, the alerts and the in-memory history into
HTML. Only the rows shown ask for their history, so thousands of checks cost a page of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import groupby
from typing import get_args
from urllib.parse import urlencode

from pydantic import MISSING

from monitor.alerting.machine import Phase
from monitor.alerting.status import AlertReport, AlertStatus
from monitor.engine.status import CheckStatus, State, StatusReport
from monitor.signals.history import HourSummary
from monitor.web.pages.common import (
    STATE_LABELS,
    STATE_ORDER,
    age,
    check_href,
    document,
    duration,
    e,
    percent,
    seconds,
    state_badge,
    state_detail,
    sunset,
)
from monitor.web.pages.quota import quota_fact
from monitor.web.pages.slo import budget_bar
from monitor.web.pages.svg import history_bar, sparkline

# Healthy rows per page; checks with a problem are always all shown, above them.
PAGE_SIZE = 100
FIRING_SHOWN = 25  # checks listed under "Firing alerts"; the rest are one filter away
SEVERITY_RANK = {"critical": 2, "warning": 1}
History = Callable[[str], Sequence[HourSummary]]


def no_history(name: str) -> Sequence[HourSummary]:
    return ()


@dataclass(frozen=True)
class PageFilter:
    """What the overview shows, from its query string: `?q=orders&state=down&provider=x`."""

    q: str = ""
    state: State | None = None
    provider: str | None = None
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PageFilter:
        state = query.get("state", "")
        page = query.get("page", "1")
        return cls(
            q=query.get("q", "").strip(),
            state=state if state in get_args(State) else None,  # type: ignore[arg-type]
            provider=query.get("provider") or None,
            page=max(int(page), 1) if page.isdigit() else 1,
        )

    def matches(self, check: CheckStatus) -> bool:
        return (
            (not self.q or self.q.lower() in check.name.lower())
            and (self.state is None or check.state == self.state)
            and (self.provider is None or check.provider == self.provider)
        )

    def href(self, **changes: object) -> str:
        """The overview's URL with this filter, changed by `changes`; page 1 unless given."""
        view = replace(self, **{"page": 1, **changes})  # type: ignore[arg-type]
        params = {"q": view.q, "state": view.state, "provider": view.provider}
        if view.page > 1:
            params["page"] = str(view.page)
        query = urlencode({k: v for k, v in params.items() if v})
        return "/?" + query if query else "/"


def render_status(
    status: StatusReport,
    alert_report: AlertReport,
    history: History = no_history,
    view: PageFilter | None = None,
) -> str:
    """The overview, from `Daemon.status()`, `Alerter.status()` and the daemon's history book,
    as of the status's time."""
    view = view or PageFilter()
    now, checks = status.generated_at, status.checks
    firing = [a for a in alert_report.alerts if a.phase is Phase.FIRING]
    by_check: dict[str, list[AlertStatus]] = {}
    for a in alert_report.alerts:
        by_check.setdefault(a.check, []).append(a)
    chosen = sorted(
        (c for c in checks if view.matches(c)),
        key=lambda c: (STATE_ORDER.index(c.state), c.name),
    )
    problems = [c for c in chosen if c.state != "up"]
    healthy = [c for c in chosen if c.state == "up"]
    first = (view.page - 1) * PAGE_SIZE
    shown = problems + healthy[first : first + PAGE_SIZE]
    rows = "".join(_row(c, by_check.get(c.name, ()), history(c.name), now) for c in shown)
    counts = {state: 0 for state in STATE_ORDER}
    for c in checks:
        counts[c.state] += 1
    title = f"intmon: {len(checks)} checks, {counts['down']} down, {len(firing)} alerts firing"
    body = (
        _summary(counts, len(firing), view)
        + _filter_form(view, sorted({c.provider for c in checks if c.provider}))
        + _firing_section(firing, now)
        + _table(rows, len(chosen), len(checks))
        + _pager(view, len(healthy), first)
    )
    return document(title, now, body, refresh=view.href(page=view.page))


def _summary(counts: dict[State, int], firing: int, view: PageFilter) -> str:
    tone = {"down": "bad", "throttled": "warn", "degraded": "warn", "unknown": "", "up": ""}
    items = [
        f'<li><a href="/"{_on(view.state is None)}><b>{sum(counts.values())}</b>checks</a></li>'
    ]
    for state in STATE_ORDER:
        bad = tone[state] if counts[state] else ""
        classes = " ".join(x for x in (bad, "on" if view.state == state else "") if x)
        attribute = f' class="{classes}"' if classes else ""
        label = STATE_LABELS[state][1].lower()
        items.append(
            f'<li><a href="{e(view.href(state=state))}"{attribute}>'
            f"<b>{counts[state]}</b>{label}</a></li>"
        )
    items.append(
        f"<li><span{' class=bad' if firing else ''}><b>{firing}</b>alerts firing</span></li>"
    )
    return f'<ul class="summary" aria-label="summary">{"".join(items)}</ul>'


def _on(selected: bool) -> str:
    return ' class="on"' if selected else ""


def _filter_form(view: PageFilter, providers: list[str]) -> str:
    def options(values: Sequence[str], chosen: str | None, everything: str) -> str:
        items = [f'<option value="">{everything}</option>']
        for value in values:
            selected = " selected" if value == chosen else ""
            items.append(f'<option value="{e(value)}"{selected}>{e(value)}</option>')
        return "".join(items)

    return (
        '<form class="filter" method="get" action="/" role="search">'
        f'<label>Name contains<input type="search" name="q" value="{e(view.q)}" '
        'placeholder="e.g. orders"></label>'
        f'<label>State<select name="state">{options(STATE_ORDER, view.state, "any state")}'
        "</select></label>"
        f'<label>Provider<select name="provider">'
        f"{options(providers, view.provider, 'any provider')}</select></label>"
        '<button type="submit">Filter</button> <a href="/">clear</a></form>'
    )


def _firing_section(firing: list[AlertStatus], now: float) -> str:
    """One line per check, worst severity first, its rules side by side: not a wall."""
    if not firing:
        return ""
    firing = sorted(firing, key=lambda a: a.check)
    groups = [list(alerts) for _, alerts in groupby(firing, key=lambda a: a.check)]
    groups.sort(key=lambda g: (-max(_rank(a) for a in g), min(a.fired_at or now for a in g)))
    items = []
    for alerts in groups[:FIRING_SHOWN]:
        alerts.sort(key=lambda a: (-_rank(a), a.rule))
        since = min(a.fired_at or now for a in alerts)
        items.append(
            f'<li><a href="{e(check_href(alerts[0].check))}"><b>{e(alerts[0].check)}</b></a> '
            f"{' '.join(_alert_badge(a) for a in alerts)} "
            f'<span class="muted">for {age(now, since)}</span></li>'
        )
    more = len(groups) - FIRING_SHOWN
    if more > 0:
        items.append(f'<li class="muted">and {more} more checks (filter by state above)</li>')
    return (
        f'<section class="alerts" role="alert"><h2>Firing alerts: {len(firing)} on '
        f"{len(groups)} checks</h2><ul>{''.join(items)}</ul></section>"
    )


def _rank(alert: AlertStatus) -> int:
    return SEVERITY_RANK.get(alert.severity or "", 0)


def _table(rows: str, matched: int, total: int) -> str:
    if not rows:
        return f'<p class="panel">No check matches this filter ({total} checks in all).</p>'
    caption = (
        f"{matched} of {total} checks. Last 24 h: one segment per hour, green without "
        "failures, amber with some, red past 10%, grey without runs. Error rate and p95 over "
        "each check's alert window; quota as remaining / limit and when it runs out; data age "
        "of freshness checks."
    )
    heads = ("Check", "State", "Last 24 h", "p95", "Error rate", "Signals", "Alerts")
    head = "".join(f'<th scope="col">{h}</th>' for h in heads)
    return (
        f'<table class="checks"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        f'<p class="note">{e(caption)}</p>'
    )


def _pager(view: PageFilter, healthy: int, first: int) -> str:
    if healthy <= PAGE_SIZE:
        return ""
    last = min(first + PAGE_SIZE, healthy)
    links = []
    if view.page > 1:
        links.append(f'<a href="{e(view.href(page=view.page - 1))}">previous</a>')
    if last < healthy:
        links.append(f'<a href="{e(view.href(page=view.page + 1))}">next</a>')
    return (
        f'<p class="pager">Healthy checks {first + 1} to {last} of {healthy} '
        f"(narrow them with the filter) {' · '.join(links)}</p>"
    )


def _row(
    check: CheckStatus, alerts: Sequence[AlertStatus], history: Sequence[HourSummary], now: float
) -> str:
    metrics, last = check.metrics, check.last
    detail = state_detail(check, now)
    reason = f'<div class="reason">{e(detail)}</div>' if detail else ""
    provider = f'<span class="provider">{e(check.provider)}</span>' if check.provider else ""
    badges = " ".join(_alert_badge(a) for a in alerts if a.phase is Phase.FIRING)
    pending = [e(a.rule) for a in alerts if a.phase is Phase.PENDING]
    if pending:
        badges += f'<span class="muted">pending: {", ".join(pending)}</span>'
    p95 = seconds(metrics.latency_p95)
    cells = [
        ("State", f"{state_badge(check.state)} "
         f'<span class="small muted">{age(now, None if last is None else last.ts, " ago")}</span>'),
        ("Last 24 h", history_bar(history, now)),
        ("p95", f"{sparkline(history, now)} {p95}"),
        ("Error rate", percent(metrics.error_rate)),
        ("Signals", _signals(check, now)),
        ("Alerts", badges or '<span class="muted">none</span>'),
    ]  # fmt: skip
    tds = "".join(f'<td data-label="{label}">{cell}</td>' for label, cell in cells)
    name = f'<a href="{e(check_href(check.name))}">{e(check.name)}</a>'
    return f'<tr><th scope="row">{name}{provider}{reason}</th>{tds}</tr>'


def _signals(check: CheckStatus, now: float) -> str:
    """Only the facts a check has, in one cell: most checks have none of them."""
    metrics, facts = check.metrics, []
    if metrics.quota is not MISSING and metrics.quota.remaining is not None:
        facts.append(quota_fact(metrics, now))
    if metrics.deprecation is not MISSING and metrics.deprecation.active:
        facts.append(f"sunset {sunset(metrics.deprecation)}")
    if metrics.freshness_age is not MISSING:
        facts.append(f"data {duration(metrics.freshness_age)} old")
    if metrics.slo is not MISSING:
        facts.append(budget_bar(metrics.slo))
    if metrics.shape is not MISSING and metrics.shape.state == "drifted":
        facts.append(f"shape drifted ({len(metrics.shape.changes)} changes)")
    return "<br>".join(facts) or '<span class="muted">—</span>'


def _alert_badge(alert: AlertStatus) -> str:
    severity = alert.severity or "warning"
    silenced = " (silenced)" if alert.silenced else ""
    summary = "" if alert.summary is MISSING else alert.summary
    return (
        f'<span class="alert {e(severity)}" title="{e(summary)}">'
        f"{e(alert.rule)} {e(severity)}{silenced}</span>"
    )
