"""`intmon run` as systemd runs it: READY, watchdog pings and STOPPING on a real notify socket,
and the dead-man's switch pinging a real receiver."""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def heartbeat_receiver() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ping/token", hits
    server.shutdown()
    server.server_close()
    thread.join()


def test_intmon_run_speaks_sd_notify_and_pings_the_dead_mans_switch(
    tmp_path: Path, heartbeat_receiver: tuple[str, list[str]]
) -> None:
    url, hits = heartbeat_receiver
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"monitor:\n  listen: 127.0.0.1:{port}\n  database: {tmp_path / 'monitor.db'}\n"
        f"  heartbeat_url: ${{HEARTBEAT_URL}}\n  heartbeat_interval: 60s\nchecks: []\n"
    )
    env = {
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "200000",
        "HEARTBEAT_URL": url,
        "PATH": "/usr/bin:/bin",
    }
    log = tmp_path / "intmon.log"
    with log.open("w") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        messages = []
        while not any(m.startswith("READY=1") for m in messages):
            messages.append(notify.recv(4096).decode())
        assert f"READY=1\nSTATUS=watching 0 checks on 127.0.0.1:{port}" in messages
        while notify.recv(4096).decode() != "WATCHDOG=1":
            pass  # pings every 100 ms once the loop runs
        deadline = time.monotonic() + 30
        while not hits:  # the switch pings at once on start-up, then every 60 s
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        while not notify.recv(4096).decode().startswith("STOPPING=1"):
            pass
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        proc.kill()
        proc.wait()
        notify.close()
    assert hits == ["/ping/token"]
    assert url not in log.read_text()
