"""What the status pages share: escaping, links, states, figures, and the document around them.

Reasons, messages and links come from third-party APIs, so every value goes through `e`
(html.escape), and only http(s) URLs ever become anchors. No page loads a script or anything
from elsewhere: one <style> block and inline SVG are all there is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from urllib.parse import quote, urlsplit

from pydantic import MISSING

from monitor.core.units import format_duration
from monitor.engine.status import CheckStatus, State
from monitor.signals.headers import Quota
from monitor.signals.status import DeprecationStatus
from monitor.web.pages.style import CSS

REFRESH_SECONDS = 10
STATE_LABELS: dict[State, tuple[str, str]] = {
    "down": ("✗", "Down"),
    "throttled": ("‖", "Throttled"),
    "degraded": ("◐", "Degraded"),
    "unknown": ("?", "Unknown"),
    "up": ("✓", "Up"),
}
# Problems first: what needs a person, then what waits or limps, then what is fine.
STATE_ORDER: tuple[State, ...] = tuple(STATE_LABELS)


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def link(url: object, label: str) -> str:
    """An anchor only for http(s): `javascript:` and friends from an API are shown as text."""
    text = str(url)
    if urlsplit(text).scheme.lower() in ("http", "https"):
        return f'<a href="{e(text)}" rel="noopener noreferrer">{e(label)}</a>'
    return f"<span class=muted>{e(text)}</span>"


def check_href(name: str) -> str:
    return "/checks/" + quote(name, safe="")


def state_badge(state: State) -> str:
    symbol, label = STATE_LABELS[state]
    return (
        f'<span class="state state-{state}"><span aria-hidden="true">{symbol}</span> {label}</span>'
    )


def state_detail(check: CheckStatus, now: float) -> str:
    """Why the check is in its state, as plain text: the daemon's reason, how long a pause
    lasts, the last error and the provider's request id."""
    parts: list[str] = []
    if check.state_reason:
        parts.append(check.state_reason)
    if check.until is not None:
        parts.append(f"until {clock_time(check.until)} (in {duration(check.until - now)})")
    last = check.last
    if last is not None and not last.ok and check.state in ("down", "throttled", "degraded"):
        error = ": ".join(x for x in (last.error_class, last.reason) if x)
        if error and error not in parts:
            parts.append(error)
    # The reason quotes the request id already when the run's own failure put it there.
    if last is not None and last.request_id and not last.ok and last.request_id not in last.reason:
        parts.append(f"request id {last.request_id}")
    return " · ".join(parts)


def clock_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def percent(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f}%"


def seconds(value: float | None) -> str:
    return "—" if value is None else format_duration(value)


def age(now: float, ts: float | None, suffix: str = "") -> str:
    return "never" if ts is None else duration(max(now - ts, 0.0)) + suffix


def duration(value: float | None) -> str:
    return "—" if value is None else format_duration(max(value, 0.0), coarse=True)


def quota(value: Quota | MISSING) -> str:
    if value is MISSING or value.remaining is None:
        return "—"
    limit = value.limit
    return f"{value.remaining:g} / {limit:g}" if limit is not None else f"{value.remaining:g}"


def sunset(deprecation: DeprecationStatus | MISSING) -> str:
    if deprecation is MISSING or not deprecation.active:
        return "—"
    days = deprecation.days_to_sunset
    if days is MISSING:
        text = "deprecated, no sunset date"
    else:
        text = f"in {days:g} days" if days > 0 else "sunset has passed"
    links = [*deprecation.links, *deprecation.sunset_links]
    return text + (f" · {link(links[0], 'migration guide')}" if links else "")


def document(
    title: str,
    now: float,
    body: str,
    refresh: str | None = None,
    heading: str = "intmon status",
    home: str = "/",
) -> str:
    """A whole page. `refresh`: the URL to reload every REFRESH_SECONDS (the page's own, query
    included, so a filtered view stays filtered); None for a page that does not reload.
    `heading` and `home`: the banner's text and link (the public page links to itself)."""
    meta = ""
    if refresh is not None:
        meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS};url={e(refresh)}">\n'
        note = f" · refreshes every {REFRESH_SECONDS} s"
    else:
        note = ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{meta}<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(title)}</title>
<style>{CSS}</style></head>
<body><header><h1><a href="{e(home)}">{e(heading)}</a></h1>
<p>as of {e(stamp(now))}{note}</p></header>
<main>{body}</main></body></html>
"""
