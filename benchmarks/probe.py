"""Probe benchmark: intmon against Prometheus + blackbox_exporter on the same HTTP checks.

One run starts nginx on loopback as the target (it answers in well under 1 ms), measures that
truth with an idle client, then runs each side alone, one after the other so neither steals the
other's cores: the intmon daemon with N http checks at interval I, then blackbox_exporter with
Prometheus scraping it for the same N targets at the same interval. After a warm-up, over the
same measured period, it takes for each side:

- CPU ms per completed check: user+sys of the side's processes (/proc/<pid>/stat) over the
  requests nginx served in the period (stub_status: the same neutral count for both);
- the share of scheduled runs (N * period / I) the side itself recorded;
- lateness: intmon's own histogram; for the pair, each scrape's start against its target's grid
  (from the sample timestamps, relative to the earliest scrape of that target in the period)
  and Prometheus' `prometheus_target_interval_length_seconds` p99;
- the p95 latency each reports for the target, next to the idle-client truth;
- RSS of the side's processes at the end of the period.

`--rss-only` starts intmon alone with 10,000 checks at 60 s and reports its RSS after one full
interval of runs. Figures, not pass/fail; intmon's are compared with benchmarks/baseline-probe.json.

Run: .venv/bin/python benchmarks/probe.py [--checks N] [--interval S] [--warmup S] [--period S]
     [--sides intmon,pair] [--write-baseline NAME] [--profile FILE] [--rss-only]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from harness import (
    BenchError,
    Child,
    Nginx,
    Processes,
    Samples,
    cpu_seconds,
    descendants,
    free_port,
    machine_busy_seconds,
    prom_query,
    rss_bytes,
    scrape,
    wait_http,
)

REPO = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).with_name("baseline-probe.json")
MB = 1024 * 1024
PROFILE_SOURCES = ("monitor/", "checks/")


@dataclass
class Side:
    """What one side did during the measured period. Latencies and lateness in seconds."""

    name: str
    period: float = 0.0
    cpu_s: float = 0.0
    completed: float = 0.0  # runs recorded within the CPU window
    nginx_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # CPU of everything else on the machine during the period
    served: int = 0  # requests nginx served
    runs: int = 0  # runs the side itself recorded
    failures: int = 0
    scheduled: float = 0.0
    on_time: float | None = None  # share of recorded runs started <= 100 ms late
    lateness_p99: float | None = None
    interval_p99: float | None = None  # Prometheus' own scrape-interval p99 (pair only)
    p95_median: float | None = None  # median over checks of each check's p95
    p95_max: float | None = None
    truth_p95: float | None = None  # the idle client's p95, kept-alive or fresh as the side
    rss: int = 0
    rss_parts: dict[str, int] = field(default_factory=dict)

    def figures(self) -> dict[str, float | None]:
        ms = lambda v: None if v is None else v * 1000  # noqa: E731
        return {
            "cpu_ms_per_check": self.cpu_s * 1000 / self.completed if self.completed else None,
            "cpu_ms_per_request": self.cpu_s * 1000 / self.served if self.served else None,
            "cpu_s": self.cpu_s,
            "nginx_cpu_s": self.nginx_cpu_s,
            "other_cores": self.other_cpu_s / self.period if self.period else None,
            "served": float(self.served),
            "runs": float(self.runs),
            "failures": float(self.failures),
            "completed_share": self.runs / self.scheduled if self.scheduled else None,
            "on_time_share": self.on_time,
            "lateness_p99_ms": ms(self.lateness_p99),
            "interval_p99_ms": ms(self.interval_p99),
            "p95_ms": ms(self.p95_median),
            "p95_max_ms": ms(self.p95_max),
            "p95_error_ms": (
                None
                if self.p95_median is None or self.truth_p95 is None
                else (self.p95_median - self.truth_p95) * 1000
            ),
            "rss_mb": self.rss / MB,
        }


# --- the truth -----------------------------------------------------------------------------


def measure_truth(port: int, count: int = 400) -> dict[str, float]:
    """Sequential GETs from an idle client: p50/p95 on one kept-alive connection and on a fresh
    connection per request (intmon pools connections; blackbox_exporter connects per probe)."""
    request = f"GET /health?check=truth HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    def exchange(sock: socket.socket) -> None:
        sock.sendall(request)
        data = b""
        while not data.endswith(b'"ok"}'):
            chunk = sock.recv(4096)
            if not chunk:
                raise BenchError("nginx closed the connection during the truth measurement")
            data += chunk

    kept, fresh = [], []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(count):
            started = time.perf_counter()
            exchange(sock)
            kept.append(time.perf_counter() - started)
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            exchange(sock)
        fresh.append(time.perf_counter() - started)
    return {
        "keepalive_p50": quantile(kept, 0.5),
        "keepalive_p95": quantile(kept, 0.95),
        "fresh_p50": quantile(fresh, 0.5),
        "fresh_p95": quantile(fresh, 0.95),
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- intmon --------------------------------------------------------------------------------


def intmon_config(tmp: Path, nginx: Nginx, checks: int, interval: float, window: float) -> Path:
    port = free_port()
    concurrency = max(100, checks // 10)
    config = {
        "monitor": {
            "database": str(tmp / "intmon.db"),
            "listen": f"127.0.0.1:{port}",
            "concurrency": concurrency,
            "per_host_concurrency": concurrency,  # every target is the one nginx
            "log_level": "warning",
            "shutdown_grace": "2s",
        },
        "defaults": {
            "interval": f"{round(interval * 1000)}ms",
            "timeout": "5s",
            # The p95 gauge covers exactly the measured period, not the default 15 minutes.
            "alerts": {"latency_p95": {"window": f"{round(window * 1000)}ms"}},
        },
        "checks": [
            {
                "name": f"probe-{i:05d}",
                "type": "http",
                "request": {"url": nginx.url(i)},
                "expect": {"status": 200},
            }
            for i in range(checks)
        ],
    }
    path = tmp / "intmon.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_intmon(processes: Processes, config: Path) -> tuple[Child, str, float]:
    listen = yaml.safe_load(config.read_text())["monitor"]["listen"]
    child = processes.start(
        "intmon", [sys.executable, "-m", "monitor", "run", "--config", str(config)], cwd=REPO
    )
    base = f"http://{listen}"
    startup = wait_http(f"{base}/readyz", child, 120.0)
    return child, base, startup


@dataclass
class Reading:
    """CPU of the side, of nginx and of the whole machine, and nginx's request count."""

    at: float
    cpu: float
    nginx_cpu: float
    busy: float
    served: int

    @classmethod
    def take(cls, pids: list[int], nginx: Nginx) -> Reading:
        return cls(
            time.time(),
            cpu_seconds(pids),
            cpu_seconds(descendants(nginx.child.pid)),
            machine_busy_seconds(),
            nginx.requests(),
        )


def window(name: str, start: Reading, end: Reading, args: argparse.Namespace) -> Side:
    side = Side(name, period=end.at - start.at, cpu_s=end.cpu - start.cpu)
    side.served = end.served - start.served - 1  # the second status request counts itself
    side.nginx_cpu_s = end.nginx_cpu - start.nginx_cpu
    side.other_cpu_s = max(end.busy - start.busy - side.cpu_s - side.nginx_cpu_s, 0.0)
    side.scheduled = args.checks * side.period / args.interval
    return side


def run_intmon(args: argparse.Namespace, tmp: Path, nginx: Nginx, processes: Processes) -> Side:
    config = intmon_config(tmp, nginx, args.checks, args.interval, args.period)
    child, base, startup = start_intmon(processes, config)
    print(f"intmon: ready in {startup:.1f} s; warming up {args.warmup:g} s", flush=True)
    time.sleep(args.warmup)
    pids = descendants(child.pid)
    s0 = time.time()  # the run counters come first in the exposition: read as it starts
    before = scrape(f"{base}/metrics")
    start = Reading.take(pids, nginx)
    profiler = start_profiler(args, child.pid, processes)
    time.sleep(args.period)
    end = Reading.take(pids, nginx)
    child.check_alive()
    rss = rss_bytes(pids)
    s1 = time.time()
    after = scrape(f"{base}/metrics")
    side = window("intmon", start, end, args)
    side.rss, side.rss_parts = rss, {"intmon": rss}
    runs = {
        res: total(after, before, "intmon_check_runs_total", result=res)
        for res in ("success", "failure")
    }
    side.runs, side.failures = int(sum(runs.values())), int(runs["failure"])
    # The run counters span the scrapes, a little wider than the CPU readings: scale to those.
    side.completed = side.runs * side.period / (s1 - s0)
    side.scheduled = args.checks * (s1 - s0) / args.interval
    buckets = histogram_delta(after, before, "intmon_scheduler_lateness_seconds")
    side.lateness_p99 = histogram_quantile(buckets, 0.99)
    side.on_time = bucket_share(buckets, 0.1)
    p95s = [value for _, value in after.get("intmon_latency_p95_seconds", [])]
    if p95s:
        side.p95_median, side.p95_max = statistics.median(p95s), max(p95s)
    finish_profiler(profiler, processes)
    processes.stop(child)
    return side


def total(after: Samples, before: Samples, name: str, **match: str) -> float:
    def summed(samples: Samples) -> float:
        rows = samples.get(name, [])
        return sum(v for labels, v in rows if all(labels.get(k) == m for k, m in match.items()))

    return summed(after) - summed(before)


def histogram_delta(after: Samples, before: Samples, name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) of one unlabelled histogram over the period."""

    def buckets(samples: Samples) -> dict[float, float]:
        return {float(labels["le"]): v for labels, v in samples.get(f"{name}_bucket", [])}

    old = buckets(before)
    return sorted((le, count - old.get(le, 0.0)) for le, count in buckets(after).items())


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """As PromQL's histogram_quantile: linear within the bucket holding the rank."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower  # past the last finite bucket: its bound is all we know
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return None


def bucket_share(buckets: list[tuple[float, float]], bound: float) -> float | None:
    if not buckets or buckets[-1][1] <= 0:
        return None
    return next((count for le, count in buckets if le >= bound), 0.0) / buckets[-1][1]


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


# --- profiling -----------------------------------------------------------------------------


def start_profiler(
    args: argparse.Namespace, pid: int, processes: Processes
) -> tuple[Child, Path] | None:
    if not args.profile:
        return None
    spy = args.py_spy or shutil.which("py-spy")
    if spy is None:
        raise BenchError("--profile needs py-spy (pip install py-spy) or --py-spy PATH")
    raw = Path(args.profile)
    argv = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(round(args.period)),
        "--rate",
        "100",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(raw),
    ]
    return processes.start("py-spy", argv), raw


def finish_profiler(profiler: tuple[Child, Path] | None, processes: Processes) -> None:
    if profiler is None:
        return
    child, raw = profiler
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.proc.wait(30)  # it ends with the period, or when intmon does
    processes.stop(child)
    if raw.exists():
        summarize_profile(raw)
    else:
        print(f"py-spy wrote no profile:\n{child.tail()}")


def summarize_profile(raw: Path, top: int = 15) -> None:
    """Self time by function (leaf frames), and inclusive time of intmon's own functions."""
    leaf: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame(f) for f in stack.split(";")]
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + count
        for frame in set(frames):
            if any(src in frame for src in PROFILE_SOURCES):
                inclusive[frame] = inclusive.get(frame, 0) + count
    if not samples:
        print("profile: no samples")
        return
    print(f"\nprofile ({samples} samples of busy threads, {raw}):")
    for title, table in (("self time", leaf), ("inclusive, intmon code", inclusive)):
        print(f"  top {top} by {title}:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {count * 100 / samples:5.1f}%  {frame}")


def _frame(frame: str) -> str:
    """'func (path/to/file.py:12)' -> 'func (file.py)': lines split one function apart."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if where else name


# --- report --------------------------------------------------------------------------------

ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("cpu_ms_per_check", "CPU ms per completed check", lambda v: f"{v:.3f}"),
    ("cpu_ms_per_request", "CPU ms per request served", lambda v: f"{v:.3f}"),
    ("cpu_s", "CPU s in the period", lambda v: f"{v:.2f}"),
    ("nginx_cpu_s", "nginx CPU s (not counted)", lambda v: f"{v:.2f}"),
    ("other_cores", "other load on the machine", lambda v: f"{v:.2f} cores"),
    ("served", "requests nginx served", lambda v: f"{v:,.0f}"),
    ("runs", "runs the side recorded", lambda v: f"{v:,.0f}"),
    ("failures", "failed runs", lambda v: f"{v:,.0f}"),
    ("completed_share", "scheduled runs completed", lambda v: f"{v * 100:.2f}%"),
    ("on_time_share", "started <= 100 ms late", lambda v: f"{v * 100:.2f}%"),
    ("lateness_p99_ms", "lateness p99 ms", lambda v: f"{v:.1f}"),
    ("interval_p99_ms", "scrape interval p99 - I, ms", lambda v: f"{v:.1f}"),
    ("p95_ms", "reported p95 ms (median chk)", lambda v: f"{v:.3f}"),
    ("p95_max_ms", "reported p95 ms (worst chk)", lambda v: f"{v:.3f}"),
    ("p95_error_ms", "p95 (median chk) - truth ms", lambda v: f"{v:+.3f}"),
    ("rss_mb", "RSS MB", lambda v: f"{v:.1f}"),
]


def show(value: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if value is None else fmt(value)


def report(
    sides: dict[str, Side], truth: dict[str, float], args: argparse.Namespace, base: dict[str, Any]
) -> dict[str, dict[str, float | None]]:
    figures = {name: side.figures() for name, side in sides.items()}
    mine, pair = figures.get("intmon", {}), figures.get("pair", {})
    old = base.get("intmon", {})
    base_name = base.get("name", "-")
    rate = args.checks / args.interval
    print(
        f"\n{args.checks} checks every {args.interval:g} s ({rate:,.0f}/s) on {_cores()} cores; "
        f"warm-up {args.warmup:g} s, measured {args.period:g} s each, one side at a time"
    )
    print(
        f"target truth (idle client): p50 {truth['keepalive_p50'] * 1000:.3f} ms / "
        f"p95 {truth['keepalive_p95'] * 1000:.3f} ms kept-alive; p50 "
        f"{truth['fresh_p50'] * 1000:.3f} ms / p95 {truth['fresh_p95'] * 1000:.3f} ms "
        f"on a fresh connection"
    )
    head = f"{'':<30}{'intmon':>12}{'prom+blackbox':>15}{'pair/intmon':>13}"
    print(f"\n{head}  {'baseline ' + base_name:>24}{'change':>10}")
    for key, label, fmt in ROWS:
        a, b = mine.get(key), pair.get(key)
        ratio = f"{b / a:.2f}x" if a and b is not None and key != "failures" else ""
        prev = old.get(key)
        change = f"{(a - prev) / prev * 100:+.0f}%" if a is not None and prev else ""
        print(
            f"{label:<30}{show(a, fmt):>12}{show(b, fmt):>15}{ratio:>13}"
            f"  {show(prev, fmt):>24}{change:>10}"
        )
    for side in sides.values():
        if side.other_cpu_s / side.period > 0.2:
            print(
                f"WARNING: other processes used {side.other_cpu_s / side.period:.2f} cores "
                f"while {side.name} was measured: its figures are not from a quiet machine"
            )
        parts = ", ".join(f"{name} {rss / MB:.1f} MB" for name, rss in side.rss_parts.items())
        print(f"RSS of {side.name}: {parts}")
    if base and base.get("settings") != settings(args):
        print(f"note: baseline {base_name!r} was taken with {base.get('settings')}")
    targets(mine, pair)
    return figures


def targets(mine: dict[str, Any], pair: dict[str, Any]) -> None:
    print("\nissue 7 targets (intmon):")
    cpu, pair_cpu = mine.get("cpu_ms_per_check"), pair.get("cpu_ms_per_check")
    if cpu and pair_cpu:
        met = _ok(pair_cpu >= 2 * cpu)
        print(f"  >= 2x less CPU per check than the pair: {pair_cpu / cpu:.2f}x  {met}")
    if mine.get("completed_share") is not None and mine.get("on_time_share") is not None:
        share = min(mine["completed_share"], mine["on_time_share"])
        print(f"  >= 99% of runs on time: {share * 100:.2f}%  {_ok(share >= 0.99)}")
    late = mine.get("lateness_p99_ms")
    if late is not None:
        print(f"  lateness p99 < 100 ms: {late:.1f} ms  {_ok(late < 100)}")
    error = mine.get("p95_error_ms")
    if error is not None:
        print(f"  p95 within 2 ms of the truth: {error:+.3f} ms  {_ok(abs(error) <= 2)}")


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def _cores() -> int:
    import os  # noqa: PLC0415 (only here)

    return len(os.sched_getaffinity(0))


def settings(args: argparse.Namespace) -> dict[str, float]:
    return {"checks": args.checks, "interval": args.interval, "period": args.period}


# --- the 10,000-check RSS mode -------------------------------------------------------------


def rss_only(args: argparse.Namespace, tmp: Path, nginx: Nginx, processes: Processes) -> None:
    config = intmon_config(tmp, nginx, args.checks, args.interval, 900.0)
    child, _, startup = start_intmon(processes, config)
    pids = descendants(child.pid)
    print(
        f"intmon: {args.checks:,} checks at {args.interval:g} s, ready in {startup:.1f} s, "
        f"RSS {rss_bytes(pids) / MB:.1f} MB"
    )
    served0, started = nginx.requests(), time.monotonic()
    peak = 0
    while (elapsed := time.monotonic() - started) < args.rss_wait:
        time.sleep(min(10.0, args.rss_wait - elapsed))
        child.check_alive()
        rss = rss_bytes(pids)
        peak = max(peak, rss)
        served = nginx.requests() - served0
        print(
            f"  +{time.monotonic() - started:4.0f} s: RSS {rss / MB:7.1f} MB, "
            f"{served:,} checks run",
            flush=True,
        )
    final = rss_bytes(pids)
    met = _ok(final < 200 * MB and peak < 200 * MB)
    print(f"\nRSS after startup + {args.rss_wait:g} s: {final / MB:.1f} MB", end="")
    print(f" (peak {peak / MB:.1f} MB)   target < 200 MB: {met}")


# --- main ----------------------------------------------------------------------------------


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so the finally below kills every child


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, help="N checks (500; 10,000 with --rss-only)")
    parser.add_argument("--interval", type=float, help="I seconds (1; 60 with --rss-only)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--period", type=float, default=30.0, help="measured seconds per side")
    parser.add_argument("--sides", default="intmon,pair", help="intmon, pair or both (default)")
    parser.add_argument("--write-baseline", metavar="NAME", help="store this run as the baseline")
    parser.add_argument("--baseline", type=Path, default=BASELINE, help="baseline JSON to compare")
    parser.add_argument("--profile", metavar="FILE", help="py-spy intmon's period to FILE (raw)")
    parser.add_argument("--py-spy", help="py-spy binary (default: from PATH)")
    parser.add_argument("--rss-only", action="store_true", help="intmon's RSS with many checks")
    parser.add_argument("--rss-wait", type=float, help="seconds after startup (one interval)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    parser.add_argument("--nginx", default="/usr/sbin/nginx")
    parser.add_argument("--prometheus", default="/usr/bin/prometheus")
    parser.add_argument("--blackbox", default="/usr/bin/prometheus-blackbox-exporter")
    args = parser.parse_args()
    args.checks = args.checks or (10_000 if args.rss_only else 500)
    args.interval = args.interval or (60.0 if args.rss_only else 1.0)
    args.rss_wait = args.rss_wait or args.interval
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not sides or set(sides) - {"intmon", "pair"}:
        parser.error("--sides takes intmon, pair or intmon,pair")
    missing = [b for b in (args.nginx, args.prometheus, args.blackbox) if not Path(b).exists()]
    if missing:
        parser.error(f"not installed: {', '.join(missing)} (scripts/system-deps.sh installs them)")
    args.sides = sides
    return args


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    tmp = Path(tempfile.mkdtemp(prefix="intmon-probe-"))
    processes = Processes(tmp)
    started = time.monotonic()
    try:
        nginx = Nginx(processes, tmp / "nginx", args.nginx)
        if args.rss_only:
            rss_only(args, tmp, nginx, processes)
            return
        truth = measure_truth(nginx.port)
        runners = {"intmon": run_intmon, "pair": run_pair}
        results = {name: runners[name](args, tmp, nginx, processes) for name in args.sides}
        for name, side in results.items():
            side.truth_p95 = truth["keepalive_p95" if name == "intmon" else "fresh_p95"]
        base = json.loads(args.baseline.read_text()) if args.baseline.exists() else {}
        figures = report(results, truth, args, base)
        print(
            f"\ntotal {time.monotonic() - started:.0f} s; logs and configs in {tmp}"
            if args.keep
            else f"\ntotal {time.monotonic() - started:.0f} s"
        )
        if args.write_baseline:
            record = {"name": args.write_baseline, "settings": settings(args), "truth": truth}
            args.baseline.write_text(json.dumps({**record, **figures}, indent=2) + "\n")
            print(f"baseline {args.write_baseline!r} written to {args.baseline}")
    except BenchError as exc:
        sys.exit(f"probe benchmark failed: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted; stopping everything")
    finally:
        processes.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
