"""The quota on the status pages: the overview's one line and the check page's panel."""

from __future__ import annotations

from pydantic import MISSING

from monitor.signals.headers import Quota
from monitor.signals.status import QuotaForecastStatus
from monitor.web.pages.check import render_check
from tests.test_checkpage import detail, words
from tests.test_statuspage import NOW, Page, check, render

LIMIT, REMAINING, RATE = 1000.0, 50.0, 50.0 / 720  # 50 left, spent at 50 per 12 minutes
RESET_IN = 48 * 60.0


def budget(rate: float = RATE, leaky: bool = False) -> dict[str, object]:
    left = None if rate == 0 else REMAINING / rate
    forecast = QuotaForecastStatus(
        window=900.0,
        readings=12,
        rate=rate,
        exhaustion_at=None if left is None else NOW + left,
        seconds_to_exhaustion=left,
        before_reset=left is not None and (leaky or left < RESET_IN),
        leaky=leaky,
        shared_with=("refunds",),
    )
    reset_at = None if leaky else NOW + RESET_IN
    quota = Quota(REMAINING, LIMIT, reset_at, None, "shopify" if leaky else "ietf", seen_at=NOW)
    return {"quota": quota, "quota_forecast": forecast}


def test_the_overview_says_what_is_left_and_when_it_runs_out_before_the_reset() -> None:
    page = Page(render([check("orders", "up", **budget())], []))
    assert "quota 50 / 1000 (5%) · runs out in 12m, before reset in 48m" in page.rows["orders"]


def test_the_overview_says_when_the_reset_comes_first_or_there_is_none() -> None:
    slow = check("slow", "up", **budget(rate=REMAINING / (2 * RESET_IN)))
    leaky = check("leaky", "up", **budget(leaky=True))
    flat = check("flat", "up", **budget(rate=0.0))
    page = Page(render([slow, leaky, flat], []))
    assert "quota 50 / 1000 (5%) · resets in 48m, before it runs out" in page.rows["slow"]
    assert "runs out in 12m, a leaky bucket" in page.rows["leaky"]
    assert "quota 50 / 1000 (5%)" in page.rows["flat"] and "runs out" not in page.rows["flat"]


def test_the_check_page_has_a_quota_panel_with_a_bar_the_rate_and_the_exhaustion() -> None:
    html = render_check(detail(**{"metrics": detail().check.metrics.model_copy(update=budget())}))
    text = words(html)
    assert f'<meter min="0" max="{LIMIT:g}"' in html and f'value="{REMAINING:g}"' in html
    assert "Remaining 50 / 1000 5% left" in text
    assert "Resets" in text and "(in 48m)" in text
    assert (
        f"Spend rate {RATE * 60:.3g} per minute over 15m (12 readings, pooled with refunds)" in text
    )
    assert "Exhaustion runs out in 12m, before reset in 48m" in text


def test_a_check_without_quota_has_no_quota_panel() -> None:
    metrics = detail().check.metrics.model_copy(update={"quota": MISSING})
    assert "<h2>Quota</h2>" not in render_check(detail(metrics=metrics))
    assert "<h2>Quota</h2>" in render_check(detail())
