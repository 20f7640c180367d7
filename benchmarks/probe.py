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
import json
import math
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import yaml
from harness import (
    BenchError,
    Child,
    Nginx,
    Processes,
    Samples,
    descendants,
    fetch,
    free_port,
    rss_bytes,
    scrape,
    wait_http,
)
from pair import run_pair
from probe_common import BASELINE, MB, REPO, Reading, Side, quantile, settings, window
from profiling import finish_profiler, start_profiler
from report import report, verdict

# --- the truth -----------------------------------------------------------------------------


def measure_truth(port: int, count: int = 400) -> dict[str, float]:
    """Sequential GETs from an idle client: p50/p95 on one kept-alive connection and on a fresh
    connection per request (blackbox_exporter and intmon connect per probe; intmon's checks
    with `keep_alive: true` reuse pooled connections)."""
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


# --- intmon --------------------------------------------------------------------------------


def intmon_config(
    tmp: Path,
    nginx: Nginx,
    checks: int,
    interval: float,
    window: float,
    event_loop: str = "asyncio",
    keep_alive: bool = False,
) -> Path:
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
            "event_loop": event_loop,
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
                "request": {"url": nginx.url(i), "keep_alive": keep_alive},
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


def run_intmon(args: argparse.Namespace, tmp: Path, nginx: Nginx, processes: Processes) -> Side:
    config = intmon_config(
        tmp, nginx, args.checks, args.interval, args.period, args.event_loop, args.keep_alive
    )
    child, base, startup = start_intmon(processes, config)
    print(f"intmon: ready in {startup:.1f} s; warming up {args.warmup:g} s", flush=True)
    time.sleep(args.warmup)
    pids = descendants(child.pid)
    s0 = time.time()  # the run counters come first in the exposition: read as it starts
    before = scrape(f"{base}/metrics")
    start = Reading.take(pids, nginx)
    profiler = start_profiler(args.profile, args.py_spy, child.pid, args.period, processes)
    scrapes = scrape_during(f"{base}/metrics", args.period, args.scrape_every)
    end = Reading.take(pids, nginx)
    child.check_alive()
    rss = rss_bytes(pids)
    s1 = time.time()
    after = scrape(f"{base}/metrics")
    side = window("intmon", start, end, args)
    side.rss, side.rss_parts = rss, {"intmon": rss}
    side.scrape_ms = statistics.median(scrapes) * 1000 if scrapes else None
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


def scrape_during(url: str, period: float, every: float) -> list[float]:
    """Sleep through the measured period, scraping `url` every `every` seconds (the first half
    a period in) as Prometheus would: the pair's figure includes its scrapes, so intmon's
    includes serving them. Returns each scrape's wall time."""
    started = time.monotonic()
    took: list[float] = []
    at = every / 2
    while at < period:
        time.sleep(max(at - (time.monotonic() - started), 0.0))
        t0 = time.monotonic()
        fetch(url, timeout=30.0)
        took.append(time.monotonic() - t0)
        at += every
    time.sleep(max(period - (time.monotonic() - started), 0.0))
    return took


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


# --- the 10,000-check RSS mode -------------------------------------------------------------


def rss_only(args: argparse.Namespace, tmp: Path, nginx: Nginx, processes: Processes) -> None:
    config = intmon_config(
        tmp, nginx, args.checks, args.interval, 900.0, args.event_loop, args.keep_alive
    )
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
    met = verdict(final < 150 * MB and peak < 150 * MB)
    print(f"\nready in {startup:.1f} s   target < 3 s: {verdict(startup < 3)}")
    print(f"RSS after startup + {args.rss_wait:g} s: {final / MB:.1f} MB", end="")
    print(f" (peak {peak / MB:.1f} MB)   target < 150 MB: {met}")


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
    parser.add_argument(
        "--scrape-every", type=float, default=10.0, help="scrape intmon's /metrics (seconds)"
    )
    parser.add_argument(
        "--event-loop", default="asyncio", choices=("auto", "asyncio", "uvloop"),
        help="intmon's monitor.event_loop (for an A/B)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-alive", action="store_true", help="intmon's checks with request.keep_alive"
    )
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
            kept = name == "intmon" and args.keep_alive  # the pair connects per probe
            side.truth_p95 = truth["keepalive_p95" if kept else "fresh_p95"]
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
