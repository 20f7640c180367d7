"""Inline SVG for the status pages: the history bar, the p95 sparkline and the check's charts.

Drawn on the server from numbers, with no script and no build chain; every mark carries a
<title>, which browsers show as a tooltip and screen readers read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.core.units import HOUR, format_duration, hour_of
from monitor.signals.history import HourSummary
from monitor.web.pages.common import e, percent, seconds

HOURS = 24
SEGMENT_WIDTH, SEGMENT_GAP, BAR_HEIGHT = 5, 1, 18
SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 96, 20, 2
# A segment is red once more than this share of its runs failed, amber below, green at none.
BAD_RATIO = 0.1
COLOURS = {"ok": "#2e9d5b", "some": "#e0a526", "bad": "#c8372d", "none": "#d5d9e0"}
LINE = "#1d2330"


def level(summary: HourSummary | None) -> str:
    """The colour class of an hour: none (no runs), ok, some failures, or bad."""
    ratio = None if summary is None else summary.failure_ratio
    if ratio is None:
        return "none"
    if ratio == 0:
        return "ok"
    return "bad" if ratio > BAD_RATIO else "some"


def day_hours(now: float, hours: int = HOURS) -> list[int]:
    """The starts of the last `hours` clock hours up to `now`'s, oldest first."""
    current = hour_of(now)
    return [current - int(HOUR) * (hours - 1 - i) for i in range(hours)]


def history_bar(history: Sequence[HourSummary], now: float) -> str:
    """One segment per hour of the last day, coloured by the share of failed runs."""
    by_hour = {h.hour: h for h in history}
    rects = []
    for i, hour in enumerate(day_hours(now)):
        summary = by_hour.get(hour)
        colour = COLOURS[level(summary)]
        rects.append(
            f'<rect x="{i * (SEGMENT_WIDTH + SEGMENT_GAP)}" width="{SEGMENT_WIDTH}" '
            f'height="{BAR_HEIGHT}" rx="1" fill="{colour}"><title>{_hour_tip(hour, summary)}'
            "</title></rect>"
        )
    width = HOURS * (SEGMENT_WIDTH + SEGMENT_GAP) - SEGMENT_GAP
    return (
        f'<svg class="bar" width="{width}" height="{BAR_HEIGHT}" viewBox="0 0 {width} '
        f'{BAR_HEIGHT}" role="img" aria-label="failures per hour, last 24 hours">'
        f"{''.join(rects)}</svg>"
    )


def _hour_tip(hour: int, summary: HourSummary | None) -> str:
    when = f"{_hhmm(hour)} to {_hhmm(hour + HOUR)} UTC"
    if summary is None:
        return f"{when}: no runs"
    failed = f"{summary.failures} of {summary.runs} runs failed ({percent(summary.failure_ratio)})"
    return f"{when}: {failed}, p95 {seconds(summary.p95)}"


def sparkline(history: Sequence[HourSummary], now: float) -> str:
    """The hourly p95 of the last day as a line scaled to its own maximum; empty without one."""
    slots = {hour: i for i, hour in enumerate(day_hours(now))}
    points = [(slots[h.hour], h.p95) for h in history if h.hour in slots and h.p95 is not None]
    if not points:
        return ""
    top = max(p95 for _, p95 in points) or 1.0
    step = (SPARK_WIDTH - 2 * SPARK_PAD) / (HOURS - 1)
    inner = SPARK_HEIGHT - 2 * SPARK_PAD
    xy = [(SPARK_PAD + i * step, SPARK_PAD + inner * (1 - p95 / top)) for i, p95 in points]
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    mark = f'<circle cx="{xy[-1][0]:.1f}" cy="{xy[-1][1]:.1f}" r="1.8" fill="{LINE}"/>'
    return (
        f'<svg class="spark" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" viewBox="0 0 '
        f'{SPARK_WIDTH} {SPARK_HEIGHT}" role="img" aria-label="p95 latency per hour">'
        f"<title>p95 per hour, last 24 hours: up to {e(format_duration(top))}</title>"
        f'<polyline points="{coords}" fill="none" stroke="{LINE}" stroke-width="1.4" '
        f'stroke-linejoin="round"/>{mark}</svg>'
    )


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


# -- charts of one check ------------------------------------------------------------------------

W, H = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 10, 26


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    points: Sequence[tuple[float, float | None]]  # (unix seconds, value); None is a gap
    dashed: bool = False


def _frame(
    start: float, end: float, top: float, unit: Callable[[float], str], ticks: Sequence[float]
) -> tuple[Callable[[float], float], Callable[[float], float], str]:
    """The scales and the axes (value gridlines at 0, half and top; time labels at `ticks`)."""

    def x(ts: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * (ts - start) / max(end - start, 1.0)

    def y(value: float) -> float:
        return TOP + (H - TOP - BOTTOM) * (1 - value / top)

    parts = []
    for value in (0.0, top / 2, top):
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="#e3e6ec"/><text x="{LEFT - 6}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end">{e(unit(value))}</text>'
        )
    for tick in ticks:
        label = datetime.fromtimestamp(tick, UTC).strftime(
            "%a %H:%M" if end - start > 2 * 86400 else "%H:%M"
        )
        parts.append(f'<text x="{x(tick):.1f}" y="{H - 8}" text-anchor="middle">{label}</text>')
    return x, y, "".join(parts)


def line_chart(series: Sequence[Series], start: float, end: float, label: str) -> str:
    """Lines over time with labelled axes; the value axis in durations."""
    values = [v for s in series for _, v in s.points if v is not None]
    if not values:
        return '<p class="muted">No timed runs in this period.</p>'
    top = max(values) * 1.1 or 1.0
    x, y, frame = _frame(start, end, top, _axis_duration, _ticks(start, end))
    lines = []
    for s in series:
        for run in _runs_without_gaps(s.points):
            coords = " ".join(f"{x(ts):.1f},{y(v):.1f}" for ts, v in run)
            dash = ' stroke-dasharray="4 3"' if s.dashed else ""
            lines.append(
                f'<polyline points="{coords}" fill="none" stroke="{s.colour}" stroke-width="1.8"'
                f"{dash}><title>{e(s.label)}</title></polyline>"
            )
            if len(run) == 1:
                (ts, value), fill = run[0], s.colour
                lines.append(
                    f'<circle cx="{x(ts):.1f}" cy="{y(value):.1f}" r="2.5" fill="{fill}"/>'
                )
    return _chart(label, frame + "".join(lines), [(s.label, s.colour) for s in series])


def stacked_bars(
    bars: Sequence[tuple[float, dict[str, int]]],
    colours: dict[str, str],
    start: float,
    end: float,
    label: str,
) -> str:
    """One bar per (hour, counts by class), stacked in `colours`' order."""
    top = max((sum(counts.values()) for _, counts in bars), default=0)
    if not top:
        return '<p class="muted">No failures in this period.</p>'
    x, y, frame = _frame(start, end, float(top), lambda v: f"{v:g}", _ticks(start, end))
    width = (x(start + HOUR) - x(start)) * 0.8
    rects = []
    for hour, counts in bars:
        base = 0
        for name, colour in colours.items():
            count = counts.get(name, 0)
            if count:
                rects.append(
                    f'<rect x="{x(hour) + width * 0.1:.1f}" y="{y(base + count):.1f}" '
                    f'width="{width:.1f}" height="{y(base) - y(base + count):.1f}" '
                    f'fill="{colour}"><title>{_hhmm(hour)} UTC: {count} {e(name)}</title></rect>'
                )
                base += count
    return _chart(label, frame + "".join(rects), list(colours.items()))


def _chart(label: str, inner: str, legend: Sequence[tuple[str, str]]) -> str:
    keys = "".join(
        # A swatch in SVG rather than a style attribute: the pages keep to a strict CSP.
        f'<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
        f'rx="2" fill="{colour}"/></svg> {e(name)}</li>'
        for name, colour in legend
    )
    return (
        f'<ul class="legend">{keys}</ul><svg class="chart" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{e(label)}">{inner}</svg>'
    )


def _axis_duration(value: float) -> str:
    return "0" if value == 0 else format_duration(value)


def _ticks(start: float, end: float) -> list[float]:
    step = 6 * HOUR if end - start <= 2 * 86400 else 86400.0
    first = start - start % step + step
    return [
        first + i * step for i in range(int((end - first) // step) + 1) if first + i * step < end
    ]


def _runs_without_gaps(
    points: Sequence[tuple[float, float | None]],
) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for ts, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((ts, value))
    return [run for run in runs if run]
