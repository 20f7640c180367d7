"""The SLO parts of the pages: a budget bar per check, and the panel of `/checks/{name}`."""

from __future__ import annotations

from pydantic import MISSING

from monitor.signals.status import SloStatus
from monitor.web.pages.common import duration, e, percent
from monitor.web.pages.svg import COLOURS

BAR_WIDTH, BAR_HEIGHT = 60, 8
# Past half the budget left the bar is green; amber while some is left; red once spent.
HEALTHY_BUDGET = 0.5


def budget_level(remaining: float | None) -> str:
    """The colour class of a budget: none (no runs yet), ok, some spent past half, or bad."""
    if remaining is None:
        return "none"
    if remaining >= HEALTHY_BUDGET:
        return "ok"
    return "some" if remaining > 0 else "bad"


def budget_bar(slo: SloStatus) -> str:
    """A small bar filled with the share of error budget left, and that share in words."""
    left = slo.budget_remaining
    filled = round(BAR_WIDTH * min(max(left or 0.0, 0.0), 1.0))
    tip = (
        f"objective {percent(slo.objective)} over {duration(slo.window)}: "
        f"{slo.failures} of {slo.runs} runs failed, {_left(left)}"
    )
    return (
        f'<span class="budget" title="{e(tip)}"><svg class="bar" width="{BAR_WIDTH}" '
        f'height="{BAR_HEIGHT}" viewBox="0 0 {BAR_WIDTH} {BAR_HEIGHT}" role="img" '
        f'aria-label="{e(_left(left))}"><rect width="{BAR_WIDTH}" height="{BAR_HEIGHT}" rx="2" '
        f'fill="{COLOURS["none"]}"/><rect width="{filled}" height="{BAR_HEIGHT}" rx="2" '
        f'fill="{COLOURS[budget_level(left)]}"/><title>{e(tip)}</title></svg> '
        f"{e(_left(left))}</span>"
    )


def slo_panel(slo: SloStatus | MISSING) -> str:
    """Objective, window, budget left, the five burn rates and the alert nearest to firing."""
    if slo is MISSING:
        return ""
    rates = "".join(
        f"<tr><td>{e(rate.window)}</td><td>{'—' if rate.rate is None else f'{rate.rate:.3g}x'}"
        "</td></tr>"
        for rate in slo.burn_rates
    )
    nearest = "—" if slo.closest_share is None else f"{slo.closest_share * 100:.0f}% of the way"
    rows = [
        ("Objective", f"{percent(slo.objective)} of runs pass over {duration(slo.window)}"),
        ("Error budget", budget_bar(slo)),
        ("Runs", f"{slo.failures} of {slo.runs} failed"),
        ("Nearest alert", f"{e(slo.closest)} ({nearest})"),
    ]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<section class="panel"><h2>Service level objective</h2><dl class="facts">{items}</dl>'
        '<table class="burn"><thead><tr><th>Window</th><th>Burn rate</th></tr></thead>'
        f"<tbody>{rates}</tbody></table></section>"
    )


def _left(remaining: float | None) -> str:
    if remaining is None:
        return "no runs yet"
    if remaining < 0:
        return f"budget overspent {-remaining * 100:.0f}%"
    return f"budget {remaining * 100:.0f}% left"
