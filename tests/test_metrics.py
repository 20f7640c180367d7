"""The metrics as Prometheus reads them: the text intmon writes itself, the same figures
through a registry, no `_created` series, and the process's own metrics."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from checks.base import Result
from monitor.metrics import CHECK_STATES, Metrics, SignalCollector
from monitor.metrics.exposition import Family, number, render
from monitor.metrics.families import DURATION_BUCKETS


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def busy_metrics() -> Metrics:
    metrics = Metrics()
    metrics.declare("quiet")
    metrics.observe("api", Result(ok=True, status=200, latency=0.1))
    metrics.observe("api", Result(ok=False, error_class="http", status=429, latency=3.0))
    metrics.count_skipped("api")
    metrics.count_throttled("api")
    metrics.declare_notifier("chat")
    metrics.notifications.labels("chat", "success").inc()
    metrics.lateness.observe(0.002)
    metrics.db_write_errors.inc()
    return metrics


def test_the_written_text_and_the_registry_hold_the_same_samples() -> None:
    metrics = busy_metrics()
    written = samples(metrics.registry.exposition().decode())
    through_registry = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.registry.collect()
        for s in family.samples
    }
    # Process figures move between the two reads; everything intmon counts must match.
    assert {k: v for k, v in written.items() if k[0].startswith("intmon_")} == {
        k: v for k, v in through_registry.items() if k[0].startswith("intmon_")
    }
    assert written[("intmon_check_runs_total", (("check", "api"), ("result", "failure")))] == 1
    assert written[("intmon_rate_limited_total", (("check", "api"),))] == 1
    assert written[("intmon_check_skipped_total", (("check", "quiet"),))] == 0


def test_no_created_series_and_counters_end_in_total() -> None:
    text = busy_metrics().registry.exposition().decode()
    assert "_created" not in text
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name


def test_a_latency_on_a_bucket_bound_counts_in_that_bucket() -> None:
    metrics = Metrics()
    bound = DURATION_BUCKETS[1]
    metrics.observe("api", Result(ok=True, latency=bound))
    metrics.observe("api", Result(ok=True, latency=DURATION_BUCKETS[-1] * 2))
    written = samples(metrics.registry.exposition().decode())

    def bucket(le: str) -> float:
        key = ("intmon_check_duration_seconds_bucket", (("check", "api"), ("le", le)))
        return written[key]

    assert bucket(repr(float(DURATION_BUCKETS[0]))) == 0
    assert bucket(repr(float(bound))) == 1
    assert bucket("+Inf") == 2
    count = written[("intmon_check_duration_seconds_count", (("check", "api"),))]
    total = written[("intmon_check_duration_seconds_sum", (("check", "api"),))]
    assert (count, total) == (2, bound + DURATION_BUCKETS[-1] * 2)


def test_a_removed_check_leaves_no_series() -> None:
    metrics = busy_metrics()
    metrics.forget("api")
    text = metrics.registry.exposition().decode()
    assert 'check="api"' not in text
    assert 'check="quiet"' in text


def test_the_process_metrics_are_exported() -> None:
    written = samples(Metrics().registry.exposition().decode())
    names = {name for name, _ in written}
    assert {
        "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
        "process_max_fds", "process_start_time_seconds", "python_gc_collections_total",
    } <= names  # fmt: skip
    assert written[("process_resident_memory_bytes", ())] > 0
    assert any(name == "python_info" for name in names)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (3.0, "3"), (-2.0, "-2"), (0.25, "0.25"), (1.5e-7, "1.5e-07"),
     (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (2.0**60, repr(2.0**60))],
    ids=["int", "whole", "negative", "fraction", "tiny", "inf", "-inf", "nan", "huge"],
)  # fmt: skip
def test_numbers_are_written_as_prometheus_parses_them(value: float, text: str) -> None:
    assert number(value) == text
    parsed = float(text.replace("Inf", "inf"))
    assert parsed == value or (math.isnan(parsed) and math.isnan(value))


def test_label_values_and_help_text_are_escaped() -> None:
    family = Family("x_info", "gauge", 'a "help"\nwith \\ in it', ("name",))
    family.add(('say "hi"\\\n',), 1)
    out: list[str] = []
    render([family], out)
    (parsed,) = text_string_to_metric_families("".join(out))
    assert parsed.documentation == 'a "help"\nwith \\ in it'
    assert parsed.samples[0].labels == {"name": 'say "hi"\\\n'}


def test_a_check_has_one_state_at_1_and_the_others_at_0() -> None:
    metrics = Metrics()
    metrics.registry.register(SignalCollector(lambda: (), states=lambda: [("api", "throttled")]))
    written = samples(metrics.registry.exposition().decode())
    states = {
        dict(labels)["state"]: value
        for (name, labels), value in written.items()
        if name == "intmon_check_state"
    }
    assert states == {state: int(state == "throttled") for state in CHECK_STATES}
