"""The table `make bench` prints, and the issue targets checked against it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from probe_common import MB, Side, cores, settings

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
    ("scrape_ms", "/metrics scrape ms (median)", lambda v: f"{v:.1f}"),
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
        f"\n{args.checks} checks every {args.interval:g} s ({rate:,.0f}/s) on {cores()} cores; "
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
    print("\ntargets (intmon):")
    cpu, pair_cpu = mine.get("cpu_ms_per_check"), pair.get("cpu_ms_per_check")
    if cpu:
        print(f"  <= 0.7 ms CPU per check: {cpu:.3f} ms  {verdict(cpu <= 0.7)}")
    if cpu and pair_cpu:
        met = verdict(pair_cpu >= 2.5 * cpu)
        print(f"  >= 2.5x less CPU per check than the pair: {pair_cpu / cpu:.2f}x  {met}")
    if mine.get("completed_share") is not None and mine.get("on_time_share") is not None:
        share = min(mine["completed_share"], mine["on_time_share"])
        print(f"  >= 99% of runs on time: {share * 100:.2f}%  {verdict(share >= 0.99)}")
    late = mine.get("lateness_p99_ms")
    if late is not None:
        print(f"  lateness p99 < 50 ms: {late:.1f} ms  {verdict(late < 50)}")
    error = mine.get("p95_error_ms")
    if error is not None:
        print(f"  p95 within 1 ms of the truth: {error:+.3f} ms  {verdict(abs(error) <= 1)}")


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"
