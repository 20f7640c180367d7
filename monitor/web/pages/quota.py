"""A check's rate-limit quota as a budget: what is left, how fast it goes, when it runs out.

The overview gets one line (`quota 50 / 1000 (5%) · runs out in 12m, before reset in 48m`), the
check's page a panel with a bar. Both read the status models only, like the rest of the pages.
"""

from __future__ import annotations

from pydantic import MISSING

from monitor.signals.status import QuotaForecastStatus, SignalsStatus
from monitor.web.pages.common import duration, e, quota, stamp


def _share(metrics: SignalsStatus) -> float | None:
    q = metrics.quota
    if q is MISSING or q.remaining is None or not q.limit:
        return None
    return q.remaining / q.limit


def _outlook(forecast: QuotaForecastStatus | MISSING, reset_at: float | None, now: float) -> str:
    """`runs out in 12m, before reset in 48m`, or why it does not run out."""
    if forecast is MISSING or forecast.seconds_to_exhaustion is None:
        return ""
    runs_out = f"runs out in {duration(forecast.seconds_to_exhaustion)}"
    if reset_at is None:
        return f"{runs_out}, {'a leaky bucket' if forecast.leaky else 'no reset announced'}"
    if forecast.before_reset:
        return f"{runs_out}, before reset in {duration(reset_at - now)}"
    return f"resets in {duration(reset_at - now)}, before it runs out"


def quota_fact(metrics: SignalsStatus, now: float) -> str:
    """The overview's line: remaining / limit, the share left and the outlook."""
    share = _share(metrics)
    text = f"quota {quota(metrics.quota)}" + ("" if share is None else f" ({share:.0%})")
    q = metrics.quota
    outlook = _outlook(metrics.quota_forecast, None if q is MISSING else q.reset_at, now)
    return e(text + (f" · {outlook}" if outlook else ""))


def quota_panel(metrics: SignalsStatus, now: float) -> str:
    """The check page's panel; empty for a check whose answers carry no quota."""
    q, forecast = metrics.quota, metrics.quota_forecast
    if q is MISSING or q.remaining is None:
        return ""
    share = _share(metrics)
    bar = ""
    if share is not None and q.limit:
        bar = (
            f'<meter min="0" max="{q.limit:g}" low="{q.limit * 0.2:g}" high="{q.limit * 0.5:g}"'
            f' optimum="{q.limit:g}" value="{q.remaining:g}"></meter> {share:.0%} left'
        )
    if q.reset_at is not None:
        reset = f"{stamp(q.reset_at)} (in {duration(q.reset_at - now)})"
    else:
        leaky = forecast is not MISSING and forecast.leaky
        reset = "none: a leaky bucket refills continuously" if leaky else "not announced"
    rows = [("Remaining", f"{e(quota(q))} {bar}"), ("Resets", e(reset))]
    if forecast is not MISSING:
        shared = f", pooled with {', '.join(forecast.shared_with)}" if forecast.shared_with else ""
        rows.append(
            (
                "Spend rate",
                e(
                    f"{forecast.rate * 60:.3g} per minute over {duration(forecast.window)}"
                    f" ({forecast.readings} readings{shared})"
                ),
            )
        )
        outlook = _outlook(forecast, q.reset_at, now) or "not falling: it does not run out"
        rows.append(("Exhaustion", e(outlook)))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section class="panel"><h2>Quota</h2><dl class="facts">{items}</dl></section>'
