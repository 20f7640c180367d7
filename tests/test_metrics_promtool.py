"""A real daemon's /metrics passes `promtool check metrics`, with every family present.

The daemon watches the dashboards' stack of checks (tests/test_dashboards.py): passing,
failing, slow, rate-limited, quota and deprecation headers, freshness, a certificate, alerts
firing, a notifier and the dead-man's switch. promtool's lint is the judge of names, units,
types and help; it must print nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_dashboards import (
    PROMTOOL,
    free_port,
    get,
    https_target,
    need,
    stack_config,
    started,
    wait_for,
)

SURFACE = Path(__file__).parent / "testdata" / "surface" / "metric-families.txt"
INTMON = [sys.executable, "-m", "monitor"]


def promtool_lint(promtool: str, exposition: str) -> str:
    run = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return f"{run.stdout}{run.stderr}".strip() or ("" if run.returncode == 0 else "failed")


def test_promtool_fails_a_name_with_a_non_base_unit() -> None:
    """The judge itself: the name this release renamed is still one promtool rejects."""
    bad = "# HELP x_rollup_hours_total h\n# TYPE x_rollup_hours_total counter\nx_rollup_hours_total 1\n"
    assert 'base unit "seconds"' in promtool_lint(need(PROMTOOL), bad)


@pytest.fixture(scope="module")
def daemon_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a real `intmon run` once every family has samples."""
    tmp = tmp_path_factory.mktemp("promtool")
    sandbox = f"127.0.0.1:{free_port()}"
    listen = f"127.0.0.1:{free_port()}"
    expected = set(SURFACE.read_text().split()[::2])
    with (
        https_target(tmp) as (secure, ca_file),
        started([*INTMON, "sandbox", "--listen", sandbox], tmp / "sandbox.log") as box,
    ):
        config = tmp / "monitor.yaml"
        config.write_text(stack_config(tmp, f"http://{sandbox}", secure, ca_file, listen))
        wait_for(f"http://{sandbox}/healthy", box, tmp / "sandbox.log")
        with started([*INTMON, "run", "--config", str(config)], tmp / "intmon.log") as daemon:
            wait_for(f"http://{listen}/readyz", daemon, tmp / "intmon.log")
            # Waiting for runs, alerts and deliveries to happen; the deadline only bounds a
            # daemon that never gets there.
            deadline = time.monotonic() + 30
            while True:
                exposition = get(f"http://{listen}/metrics").decode()
                missing = expected - with_samples(exposition)
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert not missing, f"families without samples: {sorted(missing)}"
            yield exposition


def with_samples(exposition: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(exposition):
        if family.samples:
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def test_a_real_daemons_metrics_pass_promtool(daemon_metrics: str) -> None:
    assert promtool_lint(need(PROMTOOL), daemon_metrics) == ""


def test_a_real_daemon_exports_no_created_series(daemon_metrics: str) -> None:
    names = {
        sample.name
        for family in text_string_to_metric_families(daemon_metrics)
        for sample in family.samples
    }
    assert "intmon_check_runs_total" in names
    assert [name for name in names if name.endswith("_created")] == []
    assert "_created" not in daemon_metrics


def test_a_real_daemon_exports_its_process_metrics(daemon_metrics: str) -> None:
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(daemon_metrics)
        for sample in family.samples
    }
    assert values["process_resident_memory_bytes"] > 0
    assert values["process_cpu_seconds_total"] > 0
    assert values["process_open_fds"] > 0
    assert "python_info" in values
