"""The status page at `/`: one server-rendered HTML document, no scripts, no external assets.

Reasons, messages and links come from third-party APIs, so every value goes through
`html.escape`, and only http(s) URLs ever become anchors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import MISSING

from monitor.alerting.machine import Phase
from monitor.alerting.status import AlertReport, AlertStatus
from monitor.core.units import format_duration
from monitor.engine.status import CheckStatus, StatusReport
from monitor.signals.headers import Quota
from monitor.signals.status import DeprecationStatus

if TYPE_CHECKING:
    from monitor.engine.daemon import Daemon

REFRESH_SECONDS = 10
STATES = {"up": ("✓", "Up"), "down": ("✗", "Down"), "unknown": ("?", "Unknown")}
# Colours meet WCAG AA contrast against their backgrounds; the state is also spelled out.
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px;display:flex;align-items:baseline;gap:24px}
header h1{font-size:20px;margin:0}
header p{margin:0;color:#c9cfdb}
main{padding:16px 24px}
.summary{display:flex;gap:12px;margin:0 0 16px;padding:0;list-style:none}
.summary li{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:8px 16px}
.summary b{font-size:22px;margin-right:6px}
.summary .bad b{color:#b3261e}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{text-align:left;padding:8px 10px;border-bottom:1px solid #eceef2;vertical-align:top}
thead th{background:#eef0f4;font-size:13px;text-transform:uppercase;letter-spacing:.03em;
 white-space:nowrap}
caption{caption-side:bottom;text-align:left;padding:6px 2px;color:#5b6373;font-size:13px}
td{font-variant-numeric:tabular-nums;white-space:nowrap}
td:last-child{white-space:normal}
.state{display:inline-block;border-radius:10px;padding:1px 10px;font-weight:600;white-space:nowrap}
.state-up{background:#dcf3e3;color:#12602e}
.state-down{background:#fbe0de;color:#8c1d18}
.state-unknown{background:#e8eaee;color:#3d4452}
.reason{color:#5b6373;font-size:13px;font-weight:400;margin-top:2px;max-width:28em;
 word-break:break-word}
.alert{display:inline-block;background:#b3261e;color:#fff;border-radius:4px;padding:0 6px;
 margin:0 4px 2px 0;font-size:13px}
.alert.warning{background:#8a5300}
.muted{color:#5b6373}
section.alerts{background:#fff4f3;border:1px solid #f0c4c0;border-radius:6px;padding:8px 16px;
 margin-bottom:16px}
section.alerts h2{font-size:16px;margin:4px 0}
section.alerts ul{margin:4px 0;padding-left:20px}
"""


def render_status(status: StatusReport, alert_report: AlertReport) -> str:
    """The whole page, from `Daemon.status()` and `Alerter.status()`, as of the status's time."""
    checks, alerts, now = status.checks, alert_report.alerts, status.generated_at
    firing = [a for a in alerts if a.phase is Phase.FIRING]
    down = sum(1 for c in checks if c.state == "down")
    figures = [
        (len(checks), "checks", False),
        (down, "down", down > 0),
        (len(firing), "alerts firing", bool(firing)),
    ]
    summary = "".join(
        f"<li{' class=bad' if bad else ''}><b>{n}</b>{label}</li>" for n, label, bad in figures
    )
    rows = "".join(_row(check, alerts, now) for check in checks)
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>intmon: {len(checks)} checks, {down} down, {len(firing)} alerts firing</title>
<style>{CSS}</style></head>
<body><header><h1>intmon status</h1>
<p>as of {_e(stamp)} · refreshes every {REFRESH_SECONDS} s</p></header>
<main><ul class="summary" aria-label="summary">{summary}</ul>
{_firing_section(firing, now)}
<table><caption>Error rate and p95 over each check's alert window; quota as remaining / limit;
freshness: age of the newest synced data.</caption>
<thead><tr><th scope="col">Check</th><th scope="col">State</th><th scope="col">Last run</th>
<th scope="col">Error rate</th><th scope="col">p95</th><th scope="col">Quota</th>
<th scope="col">Sunset</th><th scope="col">Freshness</th><th scope="col">Alerts</th></tr></thead>
<tbody>{rows}</tbody></table></main></body></html>
"""


def _firing_section(firing: list[AlertStatus], now: float) -> str:
    if not firing:
        return ""
    items = "".join(
        f"<li>{_alert_badge(a)} <b>{_e(a.check)}</b> "
        f"{_e(_summary(a))} <span class=muted>for {_age(now, a.fired_at)}"
        "</span></li>"
        for a in firing
    )
    return f'<section class="alerts" role="alert"><h2>Firing alerts</h2><ul>{items}</ul></section>'


def _row(check: CheckStatus, alerts: Sequence[AlertStatus], now: float) -> str:
    metrics, last = check.metrics, check.last
    state = check.state if check.state in STATES else "unknown"
    symbol, label = STATES[state]
    reason = ""
    if state == "down" and last is not None and (last.reason or last.error_class):
        text = ": ".join(x for x in (last.error_class, last.reason) if x)
        reason = f'<div class="reason">{_e(text)}</div>'
    mine = [a for a in alerts if a.check == check.name]
    badges = "".join(_alert_badge(a) for a in mine if a.phase is Phase.FIRING)
    pending = [_e(a.rule) for a in mine if a.phase is Phase.PENDING]
    if pending:
        badges += f'<span class="muted">pending: {", ".join(pending)}</span>'
    cells = [
        f'<span class="state state-{state}"><span aria-hidden="true">{symbol}</span> '
        f"{label}</span>",
        _age(now, None if last is None else last.ts, suffix=" ago"),
        _percent(metrics.error_rate),
        _seconds(metrics.latency_p95),
        _quota(metrics.quota),
        _sunset(metrics.deprecation),
        _duration(None if metrics.freshness_age is MISSING else metrics.freshness_age),
        badges or '<span class="muted">none</span>',
    ]
    tds = "".join(f"<td>{cell}</td>" for cell in cells)
    return f'<tr><th scope="row">{_e(check.name)}{reason}</th>{tds}</tr>'


def _alert_badge(alert: AlertStatus) -> str:
    severity = alert.severity or "warning"
    silenced = " (silenced)" if alert.silenced else ""
    return (
        f'<span class="alert {_e(severity)}" title="{_e(_summary(alert))}">'
        f"{_e(alert.rule)} {_e(severity)}{silenced}</span>"
    )


def _summary(alert: AlertStatus) -> str:
    return "" if alert.summary is MISSING else alert.summary


def _sunset(deprecation: DeprecationStatus | MISSING) -> str:
    if deprecation is MISSING or not deprecation.active:
        return "—"
    days = deprecation.days_to_sunset
    if days is MISSING:
        text = "deprecated, no sunset date"
    else:
        text = f"in {days:g} days" if days > 0 else "sunset has passed"
    links = [*deprecation.links, *deprecation.sunset_links]
    return text + (f"<br>{_link(links[0], 'migration guide')}" if links else "")


def _link(url: object, label: str) -> str:
    """An anchor only for http(s): `javascript:` and friends from an API are shown as text."""
    text = str(url)
    if urlsplit(text).scheme.lower() in ("http", "https"):
        return f'<a href="{_e(text)}" rel="noopener noreferrer">{_e(label)}</a>'
    return f"<span class=muted>{_e(text)}</span>"


def _quota(quota: Quota | MISSING) -> str:
    if quota is MISSING or quota.remaining is None:
        return "—"
    limit = quota.limit
    return f"{quota.remaining:g} / {limit:g}" if limit is not None else f"{quota.remaining:g}"


def _percent(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f}%"


def _seconds(value: float | None) -> str:
    return "—" if value is None else format_duration(value)


def _age(now: float, ts: float | None, suffix: str = "") -> str:
    return "never" if ts is None else _duration(max(now - ts, 0.0)) + suffix


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(seconds, coarse=True)


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def status_page(daemon: Daemon) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler for `GET /`. Takes the daemon directly: importing the app key from
    monitor.web.server would make the two modules import each other."""

    async def handler(request: web.Request) -> web.Response:
        body = render_status(daemon.status(), daemon.alerter.status())
        return web.Response(
            text=body, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    return handler
