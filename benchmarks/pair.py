"""The other side of `make bench`: Prometheus scraping blackbox_exporter."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml
from harness import (
    BenchError,
    Nginx,
    Processes,
    descendants,
    free_port,
    prom_query,
    rss_bytes,
    scrape,
    wait_http,
)
from probe_common import Reading, Side, quantile, window

# --- Prometheus + blackbox_exporter --------------------------------------------------------


def pair_configs(tmp: Path, nginx: Nginx, args: argparse.Namespace) -> tuple[Path, Path, str]:
    blackbox_addr = f"127.0.0.1:{free_port()}"
    blackbox = tmp / "blackbox.yml"
    module = {"prober": "http", "timeout": "5s", "http": {"preferred_ip_protocol": "ip4"}}
    blackbox.write_text(yaml.safe_dump({"modules": {"http_2xx": module}}))
    interval = f"{round(args.interval * 1000)}ms"
    prometheus = tmp / "prometheus.yml"
    job = {
        "job_name": "blackbox",
        "metrics_path": "/probe",
        "params": {"module": ["http_2xx"]},
        "static_configs": [{"targets": [nginx.url(i) for i in range(args.checks)]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": blackbox_addr},
        ],
    }
    timeout = f"{round(min(args.interval, 5.0) * 1000)}ms"  # may not exceed the interval
    glob = {"scrape_interval": interval, "scrape_timeout": timeout}
    prometheus.write_text(yaml.safe_dump({"global": glob, "scrape_configs": [job]}))
    return blackbox, prometheus, blackbox_addr


def run_pair(args: argparse.Namespace, tmp: Path, nginx: Nginx, processes: Processes) -> Side:
    blackbox_cfg, prometheus_cfg, blackbox_addr = pair_configs(tmp, nginx, args)
    blackbox = processes.start(
        "blackbox_exporter",
        [
            args.blackbox,
            f"--config.file={blackbox_cfg}",
            f"--web.listen-address={blackbox_addr}",
            "--log.level=warn",
        ],
    )
    wait_http(f"http://{blackbox_addr}/-/healthy", blackbox, 30.0)
    prom_addr = f"127.0.0.1:{free_port()}"
    launched = time.monotonic()
    prometheus = processes.start(
        "prometheus",
        [
            args.prometheus,
            f"--config.file={prometheus_cfg}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address={prom_addr}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ],
    )
    base = f"http://{prom_addr}"
    wait_http(f"{base}/-/ready", prometheus, 60.0)
    # Prometheus hands discovered targets to its scrapers every 5 s: wait until all scrape.
    deadline = time.monotonic() + 60.0
    while not targets_up(base, args.checks):
        prometheus.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"Prometheus did not scrape all {args.checks} targets in 60 s")
        time.sleep(0.5)
    startup = time.monotonic() - launched
    print(
        f"pair: all targets scraping {startup:.1f} s after start; warming up {args.warmup:g} s",
        flush=True,
    )
    time.sleep(args.warmup)
    pids = descendants(blackbox.pid) + descendants(prometheus.pid)
    start = Reading.take(pids, nginx)
    time.sleep(args.period)
    end = Reading.take(pids, nginx)
    t1 = end.at
    blackbox.check_alive()
    prometheus.check_alive()
    side = window("pair", start, end, args)
    side.rss_parts = {
        "prometheus": rss_bytes(descendants(prometheus.pid)),
        "blackbox_exporter": rss_bytes(descendants(blackbox.pid)),
    }
    side.rss = sum(side.rss_parts.values())
    # Queries run after the CPU reading, evaluated at t1 over exactly the measured period.
    span = f"[{round(side.period * 1000)}ms]"
    samples = prom_query(base, f"probe_success{span}", t1)
    stamps = [[float(ts) for ts, _ in series["values"]] for series in samples]  # type: ignore[attr-defined]
    values = [float(v) for series in samples for _, v in series["values"]]  # type: ignore[attr-defined]
    # A scrape that timed out stored no probe result: that check was not completed.
    side.runs, side.failures = len(values), sum(1 for v in values if v != 1.0)
    side.completed = side.runs
    lateness = grid_lateness(stamps, args.interval)
    if lateness:
        side.lateness_p99 = quantile(lateness, 0.99)
        side.on_time = sum(1 for v in lateness if v <= 0.1) / len(lateness)
    p95s = [
        float(row["value"][1])  # type: ignore[index]
        for row in prom_query(base, f"quantile_over_time(0.95, probe_duration_seconds{span})", t1)
    ]
    if p95s:
        side.p95_median, side.p95_max = statistics.median(p95s), max(p95s)
    own = scrape(f"{base}/metrics")
    side.interval_p99 = next(
        (
            v
            for labels, v in own.get("prometheus_target_interval_length_seconds", [])
            if labels.get("quantile") == "0.99"
        ),
        None,
    )
    if side.interval_p99 is not None:
        side.interval_p99 -= args.interval  # as lateness: how much longer than the interval
    processes.stop(prometheus)
    processes.stop(blackbox)
    return side


def targets_up(base: str, checks: int) -> bool:
    rows = prom_query(base, 'count(up{job="blackbox"})', time.time())
    return bool(rows) and float(rows[0]["value"][1]) >= checks  # type: ignore[index]


def grid_lateness(stamps: list[list[float]], interval: float) -> list[float]:
    """Each scrape's start against its target's grid (start + k * interval), relative to the
    earliest scrape of that target in the period: Prometheus keeps a fixed phase per target."""
    out: list[float] = []
    for series in stamps:
        if not series:
            continue
        first = series[0]
        offsets = [(ts - first) - round((ts - first) / interval) * interval for ts in series]
        earliest = min(offsets)
        out += [offset - earliest for offset in offsets]
    return out
