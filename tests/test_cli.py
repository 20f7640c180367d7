"""The real `intmon` command as a user runs it: exit codes, messages, signals, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from monitor.storage.store import SCHEMA_VERSION
from tests.old_schemas import VERSION_2

INTMON = [sys.executable, "-m", "monitor"]


async def intmon(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    # A subprocess run through asyncio, so the in-process sandbox keeps answering meanwhile.
    process = await asyncio.create_subprocess_exec(
        *INTMON,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, sandbox: str, *paths: str, interval: str = "1h") -> Path:
    lines = [
        f"monitor: {{database: '{tmp_path / 'm.db'}', listen: '127.0.0.1:{free_port()}'}}",
        "checks:",
    ]
    for i, path in enumerate(paths):
        lines.append(
            f"  - {{name: c{i}, interval: {interval}, request: {{url: '{sandbox}{path}'}}}}"
        )
    config = tmp_path / "monitor.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


async def test_validate_exits_0_for_a_good_config(tmp_path: Path, sandbox: str) -> None:
    config = write_config(tmp_path, sandbox, "/healthy")
    code, out, _ = await intmon("validate", "--config", str(config))
    assert (code, out.strip()) == (0, f"{config}: ok (1 checks, 0 notifiers)")


async def test_validate_names_the_bad_key_and_the_unset_variable_without_a_traceback(
    tmp_path: Path,
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "checks:\n"
        "  - name: a\n"
        "    intervall: 5s\n"
        "    request: {url: 'http://x/', headers: {Authorization: 'Bearer ${NOPE_TOKEN}'}}\n"
    )
    code, _, err = await intmon("validate", "--config", str(config))
    assert code == 2
    assert f"{config}:3: checks[0].intervall: unknown key" in err
    assert (
        f"{config}:4: checks[0].request.headers.Authorization: environment variable NOPE_TOKEN is not set"
        in err
    )
    assert "Traceback" not in err


async def test_the_config_path_defaults_to_the_environment_variable(
    tmp_path: Path, sandbox: str
) -> None:
    config = write_config(tmp_path, sandbox, "/healthy")
    code, out, _ = await intmon("validate", env={"INTMON_CONFIG": str(config)})
    assert code == 0 and str(config) in out


async def test_check_exits_0_when_all_pass_and_1_when_one_fails(
    tmp_path: Path, sandbox: str
) -> None:
    config = write_config(tmp_path, sandbox, "/healthy", "/status/500")
    code, out, _ = await intmon("check", "--config", str(config), "c0")
    assert code == 0
    assert "c0" in out and "PASS" in out
    code, out, _ = await intmon("check", "--config", str(config))
    assert code == 1
    assert "FAIL" in out and "http_5xx" in out


async def test_check_with_an_unknown_name_is_a_usage_error(tmp_path: Path, sandbox: str) -> None:
    config = write_config(tmp_path, sandbox, "/healthy")
    code, _, err = await intmon("check", "--config", str(config), "nope")
    assert code == 2 and "no check named nope" in err


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as client:
        for _ in range(200):
            try:
                if (await client.get(url + "/readyz")).status == 200:
                    return
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(0.05)
    raise AssertionError("daemon never became ready")


@dataclass
class Exited:
    """How an `intmon run` process ended: known once its `async with` block is left."""

    stderr: str = ""
    code: int | None = None


@contextlib.asynccontextmanager
async def intmon_run(config: Path, listen: str, env: dict[str, str]) -> AsyncIterator[Exited]:
    """`intmon run` as a process, ready on `listen`; stopped with SIGTERM on leaving."""
    process = await asyncio.create_subprocess_exec(
        *INTMON,
        *("run", "--config", str(config)),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    exited = Exited()
    try:
        await wait_ready(f"http://{listen}")
        yield exited
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=15)
        exited.stderr, exited.code = err.decode(), process.returncode


async def test_run_stops_cleanly_on_sigterm_and_history_survives_a_restart(
    tmp_path: Path, sandbox: str
) -> None:
    config = write_config(tmp_path, sandbox, "/healthy", "/status/503", interval="100ms")
    listen = config.read_text().split("listen: '")[1].split("'")[0]
    process = await asyncio.create_subprocess_exec(
        *INTMON, "run", "--config", str(config), stderr=asyncio.subprocess.PIPE
    )
    await wait_ready(f"http://{listen}")
    await asyncio.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 0, err.decode()
    assert "stopped" in err.decode()

    code, out, _ = await intmon("status", "--config", str(config))
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "UP" in lines["c0"] and "DOWN" in lines["c1"] and "http_5xx" in lines["c1"]

    code, out, _ = await intmon("status", "--config", str(config), "--json")
    assert code == 0 and '"state": "up"' in out


async def test_run_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("checks: [{name: a, interval: often, request: {url: 'http://x/'}}]\n")
    code, _, err = await intmon("run", "--config", str(config))
    assert code == 2 and "'often' is not a duration" in err


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in `directory` with its bytes and mtime: what a read must leave as it was."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


async def test_status_without_a_database_exits_1_and_creates_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", "/healthy")
    before = snapshot(tmp_path)
    code, out, err = await intmon("status", "--config", str(config))
    assert (code, out) == (1, "")
    assert f"cannot read the database {tmp_path / 'm.db'}: no such file" in err
    assert "intmon run" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            VERSION_2,
            f"version 2 is older than this intmon's ({SCHEMA_VERSION}); run `intmon run` once",
        ),
        (VERSION_2.replace("'2');", "'99');"), "schema version 99 is newer than this intmon"),
    ],
    ids=["older", "newer"],
)
async def test_status_on_a_database_of_another_schema_exits_1_and_changes_nothing(
    tmp_path: Path, script: str, message: str
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", "/healthy")
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.executescript(script)
    before = snapshot(tmp_path)
    code, _, err = await intmon("status", "--config", str(config))
    assert code == 1
    assert message in err and "Traceback" not in err
    assert snapshot(tmp_path) == before
