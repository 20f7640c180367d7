"""The public status page at `/status`: what customers may see, and nothing more.

Pure: `render_public` takes the `PublicCheck`s of monitor/web/public.py, which carry a name, a
state and numbers; the operator's reasons and targets never reach this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from monitor.web.pages.common import STATE_ORDER, document, e, percent, state_badge
from monitor.web.pages.svg import history_bar, sparkline

if TYPE_CHECKING:
    from monitor.web.public import PublicCheck

HEADLINES = {
    "down": "Some services are down",
    "throttled": "Some services are slowed down",
    "degraded": "Some services are degraded",
    "unknown": "Waiting for the first results",
    "up": "All services are operating normally",
}


def render_public(title: str, checks: Sequence[PublicCheck], now: float) -> str:
    if not checks:
        body = "<p class=note>No services are listed on this page yet.</p>"
        return document(title, now, body, refresh="/status", heading=title, home="/status")
    worst = min((c.state for c in checks), key=STATE_ORDER.index)
    ordered = sorted(checks, key=lambda c: (STATE_ORDER.index(c.state), c.name))
    rows = "\n".join(_row(check, now) for check in ordered)
    body = f"""<h2>{e(HEADLINES[worst])}</h2>
<table class="checks"><thead><tr><th scope="col">Service</th><th scope="col">State</th>
<th scope="col">Uptime 24 h</th><th scope="col">7 d</th><th scope="col">30 d</th>
<th scope="col">Last 24 hours</th><th scope="col">Latency (p95)</th></tr></thead>
<tbody>
{rows}
</tbody></table>"""
    return document(title, now, body, refresh="/status", heading=title, home="/status")


def _row(check: PublicCheck, now: float) -> str:
    day, week, month = (percent(u) for u in check.uptime)
    return (
        f'<tr><th scope="row">{e(check.name)}</th>'
        f'<td data-label="State">{state_badge(check.state)}</td>'
        f'<td data-label="Uptime 24 h">{e(day)}</td><td data-label="7 d">{e(week)}</td>'
        f'<td data-label="30 d">{e(month)}</td>'
        f'<td data-label="Last 24 hours">{history_bar(check.day, now)}</td>'
        f'<td data-label="Latency (p95)">{sparkline(check.day, now)}</td></tr>'
    )
