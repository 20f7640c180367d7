"""Scale benchmark: what the HTTP surface of a daemon watching 2,000 checks costs.

A real `intmon run` watches N checks of the bundled sandbox API (the local target): most pass,
a tenth fail with HTTP 500 (their error-rate alerts fire), a tenth send quota headers, some
announce a deprecation and some are freshness checks. Once every check has run `--runs` times,
each endpoint is fetched `--scrapes` times, one request at a time, while the checks go on
running: `/metrics` (bytes, median and max seconds, and its biggest families), `/api/status`
and the status page `/`. Then the daemon's RSS, per check.

Figures, not pass/fail: they are printed against the targets (/metrics under 3 MB and 0.3 s,
the page under 0.5 s) and against benchmarks/baseline-scale.json. Scrape times are wall
clock on a shared machine: take the median of a few runs.

Run: .venv/bin/python benchmarks/scale.py [--checks N] [--interval S] [--runs K] [--scrapes K]
     [--save-metrics FILE] [--write-baseline NAME]   (or `make bench-scale`)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import baselines
import yaml
from harness import BenchError, Child, Processes, fetch, free_port, rss_bytes, scrape, wait_http
from storage import names

BASELINE = Path(__file__).with_name("baseline-scale.json")
METRICS_BYTES = 3_000_000
METRICS_SECONDS = 0.3
PAGE_SECONDS = 0.5
SUNSET = 1_798_761_600  # 2027-01-01: far enough for a warning, not a critical


def target(i: int, sandbox: str) -> dict[str, object]:
    """Check i of the mix: 70% healthy, 10% failing, 10% quota, 5% deprecated, 5% freshness."""
    slot = i % 20
    if slot < 14:
        return {"request": {"url": f"{sandbox}/healthy?i={i}"}}
    if slot < 16:
        return {"request": {"url": f"{sandbox}/status/500?i={i}"}}
    if slot < 18:
        url = f"{sandbox}/quota/ietf?remaining={1000 + i}&limit=5000&i={i}"
        return {"request": {"url": url}}
    if slot == 18:
        url = f"{sandbox}/deprecated/epoch?sunset={SUNSET}&link=https://example.com/v2&i={i}"
        return {"request": {"url": url}}
    source = {"type": "http", "url": f"{sandbox}/sync/orders?i={i}", "timestamp": "$.updated_at"}
    return {"type": "freshness", "max_age": "1h", "source": source}


def config(tmp: Path, sandbox: str, listen: str, args: argparse.Namespace) -> Path:
    checks = [{"name": name, **target(i, sandbox)} for i, name in enumerate(names(args.checks))]
    document = {
        "monitor": {"database": str(tmp / "monitor.db"), "listen": listen},
        "defaults": {
            "interval": f"{args.interval:g}s",
            "timeout": "5s",
            "alerts": {"error_rate": {"window": "10m", "min_runs": args.runs}},
        },
        "checks": checks,
    }
    path = tmp / "monitor.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def timed(url: str, times: int) -> tuple[int, list[float]]:
    """Bytes of the last answer and the seconds each of `times` sequential GETs took."""
    seconds, size = [], 0
    for _ in range(times):
        started = time.perf_counter()
        size = len(fetch(url, timeout=60.0).encode())
        seconds.append(time.perf_counter() - started)
    return size, seconds


def family_bytes(exposition: str) -> dict[str, int]:
    """Bytes per family, `# HELP`/`# TYPE` lines and every suffix of its samples included."""
    sizes: dict[str, int] = {}
    family = ""
    for line in exposition.splitlines(keepends=True):
        if line.startswith("# "):
            family = line.split()[2]
        elif not line.startswith(family):
            family = line.split("{")[0].split()[0]
        sizes[family] = sizes.get(family, 0) + len(line.encode())
    return sizes


def wait_for_runs(base: str, args: argparse.Namespace, daemon: Child) -> float:
    """Seconds until every check has run `args.runs` times (by the daemon's own counters)."""
    started = time.monotonic()
    deadline = started + args.interval * (args.runs + 2) + 60
    while True:
        daemon.check_alive()
        runs: dict[str, float] = {}
        for labels, value in scrape(f"{base}/metrics").get("intmon_check_runs_total", []):
            runs[labels["check"]] = runs.get(labels["check"], 0.0) + value
        done = sum(1 for count in runs.values() if count >= args.runs)
        if done >= args.checks:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {args.checks} checks ran {args.runs} times")
        time.sleep(1.0)


def run(args: argparse.Namespace, tmp: Path, processes: Processes) -> dict[str, float]:
    intmon = [sys.executable, "-m", "monitor"]
    sandbox = f"127.0.0.1:{free_port()}"
    box = processes.start("sandbox", [*intmon, "sandbox", "--listen", sandbox])
    wait_http(f"http://{sandbox}/healthy", box, 30.0)
    listen = f"127.0.0.1:{free_port()}"
    path = config(tmp, f"http://{sandbox}", listen, args)
    daemon = processes.start("intmon", [*intmon, "run", "--config", str(path)])
    base = f"http://{listen}"
    ready = wait_http(f"{base}/readyz", daemon, 120.0)
    print(f"intmon: {args.checks:,} checks every {args.interval:g} s, ready in {ready:.1f} s")
    waited = wait_for_runs(base, args, daemon)
    print(f"every check ran {args.runs} times after {waited:.0f} s more; measuring")

    figures: dict[str, float] = {"checks": float(args.checks)}
    for key, path_ in (("metrics", "/metrics"), ("status", "/api/status"), ("page", "/")):
        size, seconds = timed(base + path_, args.scrapes)
        figures[f"{key}_bytes"] = float(size)
        figures[f"{key}_s_median"] = statistics.median(seconds)
        figures[f"{key}_s_max"] = max(seconds)
    exposition = fetch(f"{base}/metrics", timeout=60.0)
    if args.save_metrics:
        Path(args.save_metrics).write_text(exposition)
    figures["metrics_lines"] = float(exposition.count("\n"))
    figures["created_lines"] = float(
        sum(1 for line in exposition.splitlines() if "_created" in line.split(" ")[0])
    )
    daemon.check_alive()
    figures["rss_bytes"] = float(rss_bytes([daemon.pid]))
    biggest = sorted(family_bytes(exposition).items(), key=lambda kv: -kv[1])[:6]
    print("biggest /metrics families: " + ", ".join(f"{n} {b / 1e3:,.0f} kB" for n, b in biggest))
    return figures


FORMATS = {"bytes": lambda v: f"{v / 1e6:.2f} MB", "s": lambda v: f"{v * 1000:.0f} ms"}


def show(key: str, value: float) -> str:
    for marker, fmt in FORMATS.items():
        if f"_{marker}" in key:
            return fmt(value)
    return f"{value:,.0f}"


def report(figures: dict[str, float], baseline: dict[str, object] | None) -> None:
    base = baseline.get("figures", {}) if baseline else {}
    assert isinstance(base, dict)
    name = baseline.get("name", "-") if baseline else "-"
    print(f"\n{'figure':<20}{'this run':>14}{'baseline ' + str(name):>30}")
    for key, value in figures.items():
        old = base.get(key)
        ratio = f"  ({value / old:.2f}x)" if old else ""
        print(f"{key:<20}{show(key, value):>14}{'' if old is None else show(key, old):>30}{ratio}")
    per_check = figures["rss_bytes"] / figures["checks"]
    print(f"\nRSS per check: {per_check / 1e3:.1f} kB (the whole daemon over the checks)")
    targets = [
        ("/metrics size < 3 MB", figures["metrics_bytes"] < METRICS_BYTES),
        ("/metrics median < 0.3 s", figures["metrics_s_median"] < METRICS_SECONDS),
        ("/metrics max < 0.3 s", figures["metrics_s_max"] < METRICS_SECONDS),
        ("no _created series", figures["created_lines"] == 0),
        ("status page median < 0.5 s", figures["page_s_median"] < PAGE_SECONDS),
    ]
    for label, met in targets:
        print(f"{label:<30}{'met' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=20.0, help="seconds between runs")
    parser.add_argument("--runs", type=int, default=2, help="runs per check before measuring")
    parser.add_argument("--scrapes", type=int, default=7, help="GETs of each endpoint")
    parser.add_argument("--save-metrics", metavar="FILE", help="keep one /metrics answer")
    parser.add_argument("--write-baseline", metavar="NAME", help="store figures as baseline")
    args = parser.parse_args()
    baseline = baselines.load(BASELINE)
    with tempfile.TemporaryDirectory(prefix="intmon-scale-") as tmp:
        processes = Processes(Path(tmp))
        try:
            figures = run(args, Path(tmp), processes)
        except BenchError as exc:
            sys.exit(f"scale benchmark: {exc}")
        finally:
            processes.close()
    report(figures, baseline)
    if args.write_baseline:
        baselines.write(BASELINE, args.write_baseline, figures, baseline)


if __name__ == "__main__":
    main()
