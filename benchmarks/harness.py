"""Plumbing for benchmarks/probe.py: child processes, /proc accounting, loopback HTTP, nginx.

Every child runs in its own process group and dies with the benchmark (PR_SET_PDEATHSIG), and
`Processes.close()` kills each group, so Ctrl-C, an error or a killed benchmark leave nothing
behind. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
# No proxy may see benchmark traffic: intmon (trust_env) and the Go binaries honour these.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(RuntimeError):
    """A process would not start or answer; the message says which and shows its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the benchmark is SIGKILLed, so is the child.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} exited with {self.proc.returncode}; last log lines:\n{self.tail()}"
            )


class Processes:
    """Starts children in their own process groups; `close()` kills every group."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], cwd: Path | None = None) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=child_env(),
                start_new_session=True,
                # prctl only: nothing that could deadlock on a lock held by another thread.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL whatever is left after `grace`."""
        if child not in self.children:
            return
        self.children.remove(child)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(grace)
        # The leader may be gone while a worker of its group is not (nginx).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(5)

    def close(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child, grace=3.0)


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """user + sys CPU of the processes (and of their reaped children), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            # After the command: state is field 3, utime..cstime are fields 14-17.
            total += sum(int(fields[i]) for i in range(11, 15))
    return total / CLOCK_TICK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat), to spot foreign load."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICK


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def fetch(url: str, timeout: float = 10.0) -> str:
    with _OPENER.open(url, timeout=timeout) as response:
        return str(response.read().decode())


def wait_http(url: str, child: Child, deadline_s: float) -> float:
    """Poll `url` until it answers 2xx; seconds it took. Fails fast if the child died."""
    started = time.monotonic()
    while True:
        child.check_alive()
        with contextlib.suppress(OSError):
            fetch(url, timeout=2.0)
            return time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            raise BenchError(f"{child.name} did not answer {url} in {deadline_s:.0f} s")
        time.sleep(0.1)


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str, timeout: float = 30.0) -> Samples:
    """Prometheus text exposition -> sample name -> [(labels, value)]."""
    out: Samples = {}
    for family in text_string_to_metric_families(fetch(url, timeout)):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def prom_query(base: str, query: str, at: float) -> list[dict[str, object]]:
    """An instant query against Prometheus' HTTP API, evaluated at unix time `at`."""
    params = urllib.parse.urlencode({"query": query, "time": f"{at:.3f}"})
    body = json.loads(fetch(f"{base}/api/v1/query?{params}", timeout=60.0))
    if body.get("status") != "success":
        raise BenchError(f"Prometheus query {query!r} failed: {body}")
    result: list[dict[str, object]] = body["data"]["result"]
    return result


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /health {{
            default_type application/json;
            return 200 '{{"status":"ok"}}';
        }}
        # Requests served by this nginx, whoever sent them: the neutral count of checks done.
        location = /nginx_status {{ stub_status; }}
    }}
}}
"""


class Nginx:
    def __init__(self, processes: Processes, prefix: Path, binary: str) -> None:
        prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=self.port))
        argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        self.child = processes.start("nginx", argv)
        wait_http(f"{self.base}/health", self.child, 10.0)

    def url(self, i: int) -> str:
        # Distinct query strings: N distinct targets for both sides, one cheap location.
        return f"{self.base}/health?check={i}"

    def requests(self) -> int:
        """stub_status' request counter. It counts the status request itself too."""
        lines = fetch(f"{self.base}/nginx_status").splitlines()
        return int(lines[2].split()[2])  # " accepts handled requests" values
