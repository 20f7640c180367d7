"""Alert rule config (defaults, merging, errors) and evaluation against a signal view."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from monitor.alerting.rules import EVALUATORS, evaluate
from monitor.config.rules import (
    RULES,
    AlertConfigError,
    Bound,
    parse_alerts,
    validate_defaults,
)
from monitor.signals.shapes import Drift
from monitor.signals.stats import Run

NOW = 1_700_000_000.0
DAY = 86400.0


@dataclass
class View:
    """A SignalView with fixed answers."""

    check: str = "orders-api"
    ratio: tuple[float | None, int] = (None, 0)
    p95: tuple[float | None, int] = (None, 0)
    baseline: float | None = None
    throttled: int = 0
    consecutive_failures: int = 0
    deprecated_since: float | None = None
    sunset_at: float | None = None
    certificate_not_after: float | None = None
    freshness_age: float | None = None
    schema_drift: Drift | None = None
    last_error: str | None = None
    migration_link: str | None = None
    last_request_id: str | None = None
    windows: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def error_rate(self, window: float) -> tuple[float | None, int]:
        self.windows.append(window)
        return self.ratio

    def latency_p95(self, window: float) -> tuple[float | None, int]:
        self.windows.append(window)
        return self.p95

    def baseline_p95(self) -> float | None:
        return self.baseline

    def runs(self, window: float) -> list[Run]:
        """The window's runs: `latencies` when set, else every timed run as slow as the p95."""
        latencies = self.latencies or [self.p95[0] or 0.0] * self.p95[1]
        return [Run(NOW - i, True, latency, False) for i, latency in enumerate(latencies)]

    def rate_limited(self, window: float) -> int:
        self.windows.append(window)
        return self.throttled


def test_an_http_check_gets_the_common_practice_defaults() -> None:
    rules = parse_alerts({}, {}, "http")
    assert set(rules) == {
        "error_rate", "latency_p95", "rate_limited", "deprecation", "sunset", "certificate",
        "schema_drift",
        "quota", "quota_exhaustion",
    }  # fmt: skip
    er = rules["error_rate"]
    assert (er.window, er.warning, er.critical, er.min_runs) == (300, 0.01, 0.05, 3)  # type: ignore[attr-defined]
    lat = rules["latency_p95"]
    assert (lat.warning, lat.critical) == (Bound(factor=2), Bound(factor=5))  # type: ignore[attr-defined]
    assert rules["sunset"].warning == 90 * DAY  # type: ignore[attr-defined]
    assert rules["certificate"].critical == 7 * DAY  # type: ignore[attr-defined]
    assert (er.for_, er.resolve_after, er.repeat) == (0, 2, 4 * 3600)


def test_a_freshness_check_is_critical_past_its_max_age_by_default() -> None:
    rules = parse_alerts({}, {}, "freshness", max_age=3600)
    assert set(rules) == {"error_rate", "freshness"}
    assert rules["freshness"].critical == 3600  # type: ignore[attr-defined]


def test_check_values_win_over_defaults_and_a_threshold_pair_is_replaced_whole() -> None:
    defaults = {"error_rate": {"for": "2m", "warning": "2%", "critical": "10%"}}
    rules = parse_alerts({"error_rate": {"critical": "50%"}}, defaults, "http")
    er = rules["error_rate"]
    assert (er.for_, er.warning, er.critical) == (120, None, 0.5)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "defaults", "present"),
    [
        ({"latency_p95": False}, {}, False),
        ({"latency_p95": {"enabled": False}}, {}, False),
        ({}, {"latency_p95": False}, False),
        ({"latency_p95": True}, {"latency_p95": False}, True),
        ({}, {"consecutive_failures": {"critical": 3}}, True),
    ],
    ids=["false", "enabled-false", "off-in-defaults", "back-on-per-check", "opt-in-default"],
)
def test_rules_can_be_switched_off_and_on(raw: dict, defaults: dict, present: bool) -> None:
    rules = parse_alerts(raw, defaults, "http")
    name = next(iter(raw or defaults))
    assert (name in rules) is present


@pytest.mark.parametrize(
    ("raw", "check_type", "message"),
    [
        ({"eror_rate": {}}, "http", "eror_rate: unknown alert rule (known: error_rate,"),
        (
            {"error_rate": {"warning": "10%", "critical": "5%"}},
            "http",
            "error_rate: critical (0.05) is less severe",
        ),
        (
            {"error_rate": {"warning": "often"}},
            "http",
            "error_rate.warning: 'often' is not a ratio",
        ),
        (
            {"latency_p95": {"warning": "fast"}},
            "http",
            "'fast' is neither a duration (800ms) nor a factor (2x)",
        ),
        ({"latency_p95": {"warning": "0.5x"}}, "http", "must exceed 1x"),
        (
            {"sunset": {"warning": "7d", "critical": "30d"}},
            "http",
            "critical (30d) is less severe than warning (7d)",
        ),
        (
            {"rate_limited": {"warning": None, "critical": None}},
            "http",
            "set warning, critical or both",
        ),
        (
            {"consecutive_failures": {}},
            "http",
            "consecutive_failures: set warning, critical or both",
        ),
        ({"freshness": {}}, "http", "freshness: does not apply to http checks"),
        (
            {"error_rate": {"windw": "5m"}},
            "http",
            "error_rate.windw: Extra inputs are not permitted",
        ),
        ({"error_rate": "5%"}, "http", "error_rate: must be a mapping of settings, true or false"),
        ({"error_rate": {"for": "soon"}}, "http", "error_rate.for: 'soon' is not a duration"),
        ({}, "freshness", "freshness: set warning or critical (the check has no max_age)"),
    ],
    ids=[
        "unknown-rule",
        "inverted",
        "bad-ratio",
        "bad-latency",
        "factor-too-small",
        "inverted-time-left",
        "no-threshold",
        "opt-in-without-threshold",
        "wrong-check-type",
        "unknown-key",
        "not-a-mapping",
        "bad-for",
        "freshness-without-max-age",
    ],
)
def test_bad_alert_config_is_rejected_with_a_clear_message(
    raw: dict, check_type: str, message: str
) -> None:
    with pytest.raises(AlertConfigError) as info:
        parse_alerts(raw, {}, check_type)
    assert message in str(info.value)


def test_every_problem_is_reported_in_one_pass_with_its_key_path() -> None:
    with pytest.raises(AlertConfigError) as info:
        parse_alerts({"bogus": {}, "error_rate": {"window": "x"}}, {}, "http")
    paths = [path for path, _ in info.value.issues]
    assert paths == [("bogus",), ("error_rate", "window")]


def test_defaults_are_validated_on_their_own() -> None:
    validate_defaults({"error_rate": {"window": "10m"}, "freshness": {"for": "1m"}})
    with pytest.raises(AlertConfigError, match=r"sunset\.warning: 'soon' is not a duration"):
        validate_defaults({"sunset": {"warning": "soon"}})


def rule(name: str, **raw: object) -> object:
    return parse_alerts(
        {name: raw} if raw else {}, {}, "freshness" if name == "freshness" else "http", 3600
    )[name]


@pytest.mark.parametrize(
    ("name", "raw", "view", "severity", "summary"),
    [
        (
            "error_rate",
            {},
            View(ratio=(0.0, 10)),
            None,
            "error rate 0% over 5m (0 of 10 runs failed) < warning 1%",
        ),
        (
            "error_rate",
            {},
            View(ratio=(0.02, 50)),
            "warning",
            "error rate 2% over 5m (1 of 50 runs failed) >= warning 1%",
        ),
        (
            "error_rate",
            {},
            View(ratio=(0.375, 8)),
            "critical",
            "error rate 37.5% over 5m (3 of 8 runs failed) >= critical 5%",
        ),
        (
            "error_rate",
            {},
            View(ratio=(0.125, 8)),
            "warning",
            "(1 of 8 runs failed) >= warning 1%; critical 5% needs 3 failures",
        ),
        (
            "error_rate",
            {"critical": "5%"},
            View(ratio=(0.25, 8)),
            None,
            "error rate 25% over 5m (2 of 8 runs failed) critical 5% needs 3 failures",
        ),
        (
            "error_rate",
            {},
            View(ratio=(1.0, 2)),
            None,
            "error rate 100% over 5m (2 runs): fewer than min_runs 3",
        ),
        (
            "error_rate",
            {"min_runs": 1, "min_failures": 1},
            View(ratio=(1.0, 1)),
            "critical",
            "(1 of 1 runs failed) >= critical 5%",
        ),
        ("latency_p95", {}, View(p95=(9.0, 10)), None, "no baseline yet for 2x baseline"),
        (
            "latency_p95",
            {},
            View(p95=(0.7, 10), baseline=0.3),
            "warning",
            ">= warning 2x baseline 300ms (600ms)",
        ),
        (
            "latency_p95",
            {},
            View(p95=(1.5, 10), baseline=0.3),
            "critical",
            "p95 latency 1.5s over 15m (10 runs) >= critical 5x",
        ),
        (
            "latency_p95",
            {"warning": "800ms", "critical": "2s"},
            View(p95=(0.5, 10)),
            None,
            "p95 latency 500ms over 15m (10 runs) < warning 800ms",
        ),
        (
            "latency_p95",
            {"warning": "800ms", "critical": "2s"},
            View(p95=(2.0, 10)),
            "critical",
            ">= critical 2s",
        ),
        (
            "latency_p95",
            {"warning": "800ms", "critical": "2s"},
            View(p95=(2.2, 4), latencies=[0.1, 0.1, 0.1, 3.0]),
            "warning",
            ">= warning 800ms; critical needs 3 runs that slow (1 were)",
        ),
        ("latency_p95", {"warning": "800ms"}, View(p95=(5.0, 2)), None, "fewer than min_runs 3"),
        ("rate_limited", {}, View(throttled=0), None, "0 HTTP 429 responses in 15m < warning 1"),
        (
            "rate_limited",
            {},
            View(throttled=1),
            "warning",
            "1 HTTP 429 responses in 15m >= warning 1",
        ),
        (
            "rate_limited",
            {"warning": 1, "critical": 10},
            View(throttled=12),
            "critical",
            ">= critical 10",
        ),
        (
            "consecutive_failures",
            {"critical": 3},
            View(consecutive_failures=3),
            "critical",
            "3 consecutive failures >= critical 3",
        ),
        (
            "consecutive_failures",
            {"critical": 3},
            View(consecutive_failures=2),
            None,
            "2 consecutive failures < critical 3",
        ),
        ("deprecation", {}, View(), None, "no Deprecation announced"),
        (
            "deprecation",
            {"severity": "critical"},
            View(deprecated_since=NOW - DAY),
            "critical",
            "deprecation (first seen 2023-11-13",
        ),
        ("sunset", {}, View(), None, "no Sunset known"),
        (
            "sunset",
            {},
            View(sunset_at=NOW + 200 * DAY),
            None,
            "Sunset in 200d (2024-06-01T22:13:20Z) > warning 90d left",
        ),
        ("sunset", {}, View(sunset_at=NOW + 30 * DAY), "warning", "Sunset in 30d"),
        (
            "sunset",
            {},
            View(sunset_at=NOW + 3 * DAY),
            "critical",
            "Sunset in 3d (2023-11-17T22:13:20Z) <= critical 14d left",
        ),
        ("sunset", {}, View(sunset_at=NOW - 3 * DAY), "critical", "Sunset 3d ago"),
        (
            "certificate",
            {},
            View(certificate_not_after=NOW + 10 * DAY),
            "warning",
            "certificate expiry in 10d",
        ),
        (
            "certificate",
            {},
            View(certificate_not_after=NOW + 5 * DAY),
            "critical",
            "<= critical 7d left",
        ),
        (
            "freshness",
            {},
            View(freshness_age=600),
            None,
            "newest data is 10m old, within critical 1h",
        ),
        (
            "freshness",
            {},
            View(freshness_age=7200),
            "critical",
            "newest data is 2h old, older than critical 1h",
        ),
        (
            "freshness",
            {"warning": "30m"},
            View(freshness_age=2400),
            "warning",
            "older than warning 30m",
        ),
        ("freshness", {}, View(), None, "no data timestamp yet"),
    ],
    ids=[
        "error-rate-healthy",
        "error-rate-warning",
        "error-rate-critical-from-three-failures",
        "error-rate-one-failure-warns-and-never-pages-critical",
        "error-rate-two-failures-without-warning-threshold-stay-quiet",
        "error-rate-too-few-runs",
        "error-rate-min-runs-and-min-failures-1",
        "p95-relative-no-baseline",
        "p95-relative-warning",
        "p95-relative-critical",
        "p95-absolute-ok",
        "p95-absolute-critical",
        "p95-one-slow-probe-warns-and-never-pages-critical",
        "p95-too-few-runs",
        "429-none",
        "429-one-warns",
        "429-critical",
        "consecutive-critical",
        "consecutive-below",
        "not-deprecated",
        "deprecated",
        "no-sunset",
        "sunset-far",
        "sunset-warning",
        "sunset-critical",
        "sunset-passed",
        "certificate-warning",
        "certificate-critical",
        "fresh",
        "stale-critical",
        "stale-warning",
        "freshness-unknown",
    ],
)
def test_each_rule_grades_its_signal(
    name: str, raw: dict, view: View, severity: str | None, summary: str
) -> None:
    result = evaluate(name, rule(name, **raw), view, NOW)  # type: ignore[arg-type]
    assert result.severity == severity
    assert summary in result.summary


def test_the_window_configured_is_the_window_asked_for() -> None:
    view = View(ratio=(0.0, 5))
    evaluate("error_rate", rule("error_rate", window="10m"), view, NOW)  # type: ignore[arg-type]
    assert view.windows == [600]


def test_a_critical_evaluation_reports_the_value_and_the_crossed_threshold() -> None:
    result = evaluate("error_rate", rule("error_rate"), View(ratio=(0.5, 10)), NOW)  # type: ignore[arg-type]
    assert (result.value, result.threshold) == (0.5, 0.05)


def test_every_configurable_rule_has_an_evaluation_and_no_other() -> None:
    assert set(EVALUATORS) == set(RULES)


DRIFTED = Drift(
    ("$.data.total: number → string", "$.data.currency: removed"), ("$.tax: new (number)",)
)


@pytest.mark.parametrize(
    ("raw", "drift", "severity", "known", "summary"),
    [
        ({}, None, None, False, "no response shape learned yet"),
        ({}, Drift(), None, True, "matches its learned shape"),
        ({}, Drift((), ("$.tax: new (number)",)), None, True, "(1 new fields)"),
        ({}, DRIFTED, "warning", True, "$.data.total: number → string; $.data.currency: removed"),
        ({"severity": "critical"}, DRIFTED, "critical", True, "$.tax: new (number)"),
    ],
    ids=["learning", "matching", "only-new-fields", "drifted", "configured-critical"],
)
def test_schema_drift_fires_on_removed_or_retyped_fields_only(
    raw: dict, drift: Drift | None, severity: str | None, known: bool, summary: str
) -> None:
    result = evaluate("schema_drift", rule("schema_drift", **raw), View(schema_drift=drift), NOW)  # type: ignore[arg-type]
    assert (result.severity, result.known) == (severity, known)
    assert summary in result.summary


def test_schema_drift_can_be_switched_off_and_never_applies_to_freshness_checks() -> None:
    assert "schema_drift" not in parse_alerts({"schema_drift": False}, {}, "http")
    assert "schema_drift" not in parse_alerts({}, {}, "freshness", max_age=3600)
    assert parse_alerts({}, {}, "graphql")["schema_drift"].severity == "warning"  # type: ignore[attr-defined]
