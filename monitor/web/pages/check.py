"""The page of one check at `/checks/{name}`, rendered from a `CheckDetail` (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import MISSING

from monitor.alerting.status import AlertStatus
from monitor.core.jsonshape import MAX_PATHS
from monitor.core.units import DAY, HOUR, WEEK, hour_of
from monitor.signals.shapes import LEARNING_RUNS
from monitor.signals.status import DeprecationStatus
from monitor.web.pages.common import (
    age,
    document,
    duration,
    e,
    link,
    percent,
    quota,
    seconds,
    stamp,
    state_badge,
    state_detail,
)
from monitor.web.pages.detail import DAY_HOURS, CheckDetail
from monitor.web.pages.quota import quota_panel
from monitor.web.pages.slo import slo_panel
from monitor.web.pages.svg import Series, line_chart, stacked_bars

# Error classes in a fixed order of colours, by how often they occur on the page.
PALETTE = ("#c8372d", "#e0a526", "#6d4fc2", "#1f7fa8", "#d2648e", "#5b8a2d", "#8a5a2b", "#5b6373")


def render_check(detail: CheckDetail) -> str:
    check, now = detail.check, detail.generated_at
    reason = state_detail(check, now)
    head = (
        f'<p><a href="/">← all checks</a></p><h2>{e(check.name)} {state_badge(check.state)}</h2>'
        + (f'<p class="reason">{e(reason)}</p>' if reason else "")
    )
    sections = [
        _facts(detail),
        slo_panel(check.metrics.slo),
        quota_panel(check.metrics, now),
        _latency(detail),
        _errors(detail),
        _alerts(detail.alerts, now),
        _notifications(detail),
        _deprecation(check.metrics.deprecation),
        _shape(detail),
        _failures(detail),
    ]
    if not detail.history_available:
        sections.insert(0, '<p class="panel">History is unavailable: the database cannot be '
                        "read right now. Live figures are shown.</p>")  # fmt: skip
    body = head + '<div class="grid">' + "".join(s for s in sections if s) + "</div>"
    return document(f"intmon: {check.name} {check.state}", now, body, refresh=None)


def render_missing(name: str, now: float) -> str:
    body = (
        f'<p class="panel">No check is named <b>{e(name)}</b>. '
        '<a href="/">All checks</a> lists every check this monitor runs.</p>'
    )
    return document("intmon: no such check", now, body)


def _facts(detail: CheckDetail) -> str:
    check, now = detail.check, detail.generated_at
    m, last = check.metrics, check.last
    q = m.quota
    reset = "" if q is MISSING or q.reset_at is None else f", resets {_when(q.reset_at, now)}"
    rows = [
        ("Target", e(check.target)),
        ("Type", e(check.type) + (f" · provider {e(check.provider)}" if check.provider else "")),
        ("Every", duration(check.interval)),
        ("Last run", age(now, None if last is None else last.ts, " ago")),
        ("Last success", age(now, check.last_success, " ago")),
        ("Last failure", age(now, check.last_failure, " ago")),
        ("Error rate", f"{percent(m.error_rate)} over {duration(m.error_rate_window)}"),
        ("p95", f"{seconds(m.latency_p95)} over {duration(m.latency_p95_window)} "
                f"(week's baseline {seconds(m.latency_p95_baseline)})"),
        ("Failures in a row", str(m.consecutive_failures)),
        ("Quota", quota(q) + reset),
    ]  # fmt: skip
    if m.certificate is not MISSING:
        rows.append(("Certificate", f"expires in {m.certificate.days_left:g} days"))
    if m.freshness_age is not MISSING:
        rows.append(("Data age", duration(m.freshness_age)))
    if last is not None and last.request_id:
        rows.append(("Last request id", f"<code>{e(last.request_id)}</code>"))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section class="panel"><h2>Now</h2><dl class="facts">{items}</dl></section>'


def _latency(detail: CheckDetail) -> str:
    now = detail.generated_at
    start = hour_of(now) - (DAY_HOURS - 1) * HOUR
    mid = HOUR / 2  # a point per hour, drawn at its middle
    day = [
        Series("max", "#b9c0cc", [(p.hour + mid, p.max) for p in detail.day], dashed=True),
        Series("p95", "#1d2330", [(p.hour + mid, p.p95) for p in detail.day]),
        Series("p50", "#1f7fa8", [(p.hour + mid, p.p50) for p in detail.day]),
    ]
    week = [Series("p95 per hour", "#1d2330", [(p.hour + mid, p.p95) for p in detail.week])]
    chart = line_chart(day, start, start + DAY_HOURS * HOUR, "latency per hour, last 24 hours")
    weekly = ""
    if detail.week:
        weekly = "<h2>Latency, last 7 days</h2>" + line_chart(
            week, now - WEEK, now, "p95 latency per hour, last 7 days"
        )
    return f'<section class="panel"><h2>Latency, last 24 hours</h2>{chart}{weekly}</section>'


def _errors(detail: CheckDetail) -> str:
    now = detail.generated_at
    totals: dict[str, int] = {}
    for point in detail.day:
        for name, count in point.error_classes.items():
            totals[name] = totals.get(name, 0) + count
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    colours = {name: PALETTE[min(i, len(PALETTE) - 1)] for i, name in enumerate(ranked)}
    start = hour_of(now) - (DAY_HOURS - 1) * HOUR
    bars = [(float(p.hour), p.error_classes) for p in detail.day]
    chart = stacked_bars(bars, colours, start, start + DAY_HOURS * HOUR, "failures per hour")
    runs = sum(p.runs for p in detail.day)
    failures = sum(totals.values())
    note = f'<p class="small muted">{failures} of {runs} runs failed in the last 24 hours.</p>'
    return f'<section class="panel"><h2>Failures by error class</h2>{chart}{note}</section>'


def _alerts(alerts: Sequence[AlertStatus], now: float) -> str:
    if not alerts:
        return _panel("Alerts", '<p class="muted">None pending or firing.</p>')
    rows = "".join(
        f"<tr><td>{e(a.rule)}</td><td>{e(a.phase)}</td><td>{e(a.severity or '—')}"
        f"{' (silenced)' if a.silenced else ''}</td>"
        f"<td>{_when(a.fired_at or a.since, now)}</td>"
        f'<td class="wrap">{e("" if a.summary is MISSING else a.summary)}</td></tr>'
        for a in alerts
    )
    return (
        '<section class="panel"><h2>Alerts</h2><table><thead><tr><th>Rule</th><th>Phase</th>'
        f"<th>Severity</th><th>Since</th><th>Now</th></tr></thead><tbody>{rows}</tbody>"
        "</table></section>"
    )


def _notifications(detail: CheckDetail) -> str:
    now = detail.generated_at
    if not detail.notifications:
        body = '<p class="muted">No notification sent about this check.</p>'
    else:
        rows = "".join(
            f"<tr><td>{_when(n.created_at, now)}</td><td>{e(n.kind)}</td><td>{e(n.rule)}</td>"
            f"<td>{e(', '.join(n.notifiers))}</td>"
            f"<td>{'delivered' if n.delivered else 'queued'}</td></tr>"
            for n in detail.notifications
        )
        body = (
            "<table><thead><tr><th>When</th><th>Transition</th><th>Rule</th><th>To</th>"
            f"<th>Delivery</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return f'<section class="panel"><h2>Alert timeline</h2>{body}</section>'


def _deprecation(deprecation: DeprecationStatus | MISSING) -> str:
    if deprecation is MISSING:
        return ""
    rows = [("Announced", "yes" if deprecation.active else "no longer")]
    if deprecation.deprecated_at is not None:
        rows.append(("Deprecated since", e(_date(deprecation.deprecated_at))))
    if deprecation.sunset_at is not None:
        rows.append(("Sunset", e(_date(deprecation.sunset_at))))
    if deprecation.message:
        rows.append(("Message", e(deprecation.message)))
    for url in (*deprecation.links, *deprecation.sunset_links):
        rows.append(("Migration", link(url, url)))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section class="panel"><h2>Deprecation</h2><dl class="facts">{items}</dl></section>'


def _shape(detail: CheckDetail) -> str:
    """What drifted first; the learned shape folded away (<details>: no script needed)."""
    shape = detail.check.metrics.shape
    if shape is MISSING:
        return ""
    state = {
        "learning": f"Learning ({shape.learned_from} of {LEARNING_RUNS} bodies seen).",
        "matching": "The latest body matches the learned shape.",
        "drifted": "The latest body drifts from the learned shape.",
    }[shape.state]
    if shape.accepted_at is not None:
        state += f" Last accepted {_when(shape.accepted_at, detail.generated_at)}."
    lines = "".join(f"<li><code>{e(line)}</code></li>" for line in shape.changes)
    new = "".join(f"<li><code>{e(line)}</code></li>" for line in shape.new_fields)
    body = f"<p>{state}</p>"
    if lines:
        body += f'<ul class="drift">{lines}</ul>'
    if new:
        body += f'<p class="small muted">New fields, not paged:</p><ul class="drift">{new}</ul>'
    if detail.learned_shape:
        rows = "".join(
            f"<tr><td><code>{e(f.path)}</code></td><td>{e(f.types)}</td>"
            f"<td>{'optional' if f.optional else ''}</td></tr>"
            for f in detail.learned_shape
        )
        cut = f" (truncated at {MAX_PATHS} paths)" if shape.truncated else ""
        body += (
            f"<details><summary>Learned shape: {len(detail.learned_shape)} paths{cut}</summary>"
            "<table><thead><tr><th>Path</th><th>Types</th><th>Presence</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></details>"
        )
    return _panel("Response shape", body)


def _failures(detail: CheckDetail) -> str:
    now = detail.generated_at
    if not detail.last_failures:
        return _panel("Last failures", '<p class="muted">None stored.</p>')
    rows = "".join(
        f"<tr><td>{_when(f.ts, now)}</td><td>{e(f.error_class or '—')}</td>"
        f"<td>{e(f.status if f.status is not None else '—')}</td>"
        f'<td class="wrap">{e(f.reason)}</td><td><code>{e(f.request_id or "—")}</code></td></tr>'
        for f in detail.last_failures
    )
    return (
        '<section class="panel"><h2>Last failures</h2><table><thead><tr><th>When</th>'
        "<th>Error</th><th>Status</th><th>Reason</th><th>Request id</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _panel(title: str, body: str) -> str:
    return f'<section class="panel"><h2>{title}</h2>{body}</section>'


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "—"
    relative = f"in {duration(ts - now)}" if ts > now else f"{age(now, ts)} ago"
    # Within a day the time says it all; the full date is in the tooltip.
    shown = (
        _date(ts)
        if abs(now - ts) > DAY
        else datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")
    )
    return f'<span title="{e(stamp(ts))}">{e(shown)} ({relative})</span>'


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
