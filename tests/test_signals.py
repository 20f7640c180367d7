"""CheckSignals: what a check's results add up to, with a clock the test controls."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from checks.base import Result
from monitor.core.clock import FakeClock
from monitor.core.redact import Redactor
from monitor.engine.runner import seal
from monitor.signals.headers import Quota
from monitor.signals.per_check import LAST_SEEN_WRITE_INTERVAL, CheckSignals
from monitor.storage.store import RunRecord, Store

HOUR = 3600.0


def result(clock: FakeClock, ok: bool = True, latency: float = 0.1, **headers: str) -> Result:
    """A result as the runner hands it on: its headers read into signals (and redacted)."""
    proxy = CIMultiDictProxy(CIMultiDict(headers)) if headers else None
    unsealed = Result(
        ok=ok,
        error_class=None if ok else "http_5xx",
        reason="HTTP 200" if ok else "HTTP 503",
        status=200 if ok else 503,
        latency=latency,
        started_at=clock.time(),
        headers=proxy,
    )
    return seal(unsealed, clock.time(), Redactor(), ())


def test_a_deprecation_is_recorded_once_and_its_first_sighting_kept(clock: FakeClock) -> None:
    signals = CheckSignals("a", clock)
    deprecated = {"Deprecation": "@1700000000", "Link": '<https://x/migrate>; rel="deprecation"'}
    assert signals.observe(result(clock, **deprecated)) is True
    first_seen = clock.time()
    clock.advance(60)
    # The same announcement again is not news, until last-seen is due to be written back.
    assert signals.observe(result(clock, **deprecated)) is False
    clock.advance(LAST_SEEN_WRITE_INTERVAL)
    assert signals.observe(result(clock, **deprecated)) is True
    assert signals.deprecated_since == first_seen
    assert signals.migration_link == "https://x/migrate"


def test_an_error_page_without_headers_does_not_clear_a_deprecation(clock: FakeClock) -> None:
    signals = CheckSignals("a", clock)
    signals.observe(result(clock, Deprecation="true"))
    assert signals.observe(result(clock, ok=False)) is False
    assert signals.deprecated_since is not None
    # A healthy answer without the header: the provider withdrew the announcement.
    assert signals.observe(result(clock)) is True
    assert signals.deprecated_since is None


def test_the_last_quota_seen_is_kept_until_a_new_one_arrives(clock: FakeClock) -> None:
    signals = CheckSignals("a", clock)
    signals.observe(result(clock, **{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "7"}))
    signals.observe(result(clock))
    assert signals.quota is not None
    assert (signals.quota.remaining, signals.quota.limit) == (7, 100)


def test_the_quota_kept_is_the_parsed_one_with_its_policy_and_when_it_was_seen(
    clock: FakeClock,
) -> None:
    """One Quota type from header to throttle and status: the policy name is no longer lost."""
    signals = CheckSignals("a", clock)
    headers = {"RateLimit": '"daily";r=2;t=60', "RateLimit-Policy": '"daily";q=1000;w=86400'}
    signals.observe(result(clock, **headers))
    now = clock.time()
    assert signals.quota == Quota(2, 1000, now + 60, "daily", "ietf", seen_at=now)
    assert signals.status().model_dump(mode="json")["quota"] == {
        "remaining": 2, "limit": 1000, "reset_at": now + 60, "policy": "daily", "dialect": "ietf",
        "seen_at": now,
    }  # fmt: skip


def test_failures_in_a_row_and_the_last_error_are_tracked(clock: FakeClock) -> None:
    signals = CheckSignals("a", clock)
    for ok in (False, False, True, False):
        signals.observe(result(clock, ok=ok))
    assert signals.consecutive_failures == 1
    assert signals.last_error == "http_5xx: HTTP 503"


def test_the_request_id_of_the_last_failure_is_kept_sealed_with_the_runs_secrets(
    clock: FakeClock,
) -> None:
    signals = CheckSignals("a", clock)
    failed = Result(ok=False, error_class="http_5xx", reason="HTTP 503", status=503)
    failed.request_id = "req-7f3a for token tok-4242"
    signals.observe(seal(failed, clock.time(), Redactor(), ["tok-4242"]))
    signals.observe(result(clock))  # a success keeps the failure's id
    assert signals.last_request_id == "req-7f3a for token ***"


def test_the_baseline_is_rebuilt_from_stored_history_after_a_restart(
    clock: FakeClock, store: Store
) -> None:
    start = clock.time() - clock.time() % HOUR - 5 * HOUR
    records = [
        RunRecord("a", start + hour * HOUR + i * 60, True, None, 200, (hour + 1) / 10, "", {})
        for hour in range(5)
        for i in range(30)
    ]
    store.write_runs(records)
    signals = CheckSignals("a", clock)
    signals.seed_baseline((ts, latency) for _, ts, latency in store.healthy_latencies(0))
    # Five full hours with p95s 0.1 .. 0.5: the baseline is their median.
    assert signals.baseline_p95() == 0.3


def test_seed_last_restores_the_quota_and_last_error_of_the_newest_run(clock: FakeClock) -> None:
    signals = CheckSignals("a", clock)
    record = RunRecord(
        "a", clock.time(), False, "rate_limited", 429, 0.1, "HTTP 429",
        {"quota_remaining": 0, "quota_limit": 50, "quota_dialect": "ietf"},
    )  # fmt: skip
    signals.seed_last(record)
    assert signals.last_error == "rate_limited: HTTP 429"
    assert signals.quota is not None and signals.quota.limit == 50
