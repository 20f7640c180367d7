"""The systemd unit and the container image definition, checked as far as this machine allows.

systemd-analyze verifies the unit for real. Docker cannot build here, so the Dockerfile is
checked piece by piece: its HEALTHCHECK command runs against a real daemon, its COPY sources
exist and are what `pip install .` needs, and the image runs as a non-root user.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config.loader import load_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "packaging" / "intmon.service"
DOCKERFILE = ROOT / "Dockerfile"
CONTAINER_CONFIG = ROOT / "packaging" / "container.yaml"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None and not os.environ.get("CI"),
    reason="systemd-analyze is not installed (CI must have it)",
)


# --- systemd --------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value, in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def venv_intmon() -> Path:
    path = Path(sys.executable).parent / "intmon"
    assert path.exists(), f"{path} is missing: install the package (make test does)"
    return path


def runnable_unit(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointing at this venv's intmon, which verify requires to exist."""
    text = UNIT.read_text().replace("ExecStart=/usr/local/bin/intmon", f"ExecStart={venv_intmon()}")
    assert str(venv_intmon()) in text
    path = tmp_path / "intmon.service"
    path.write_text(text.replace("[Service]\n", f"[Service]\n{extra}"))
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is required in CI"
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_systemd_analyze
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = analyze("verify", "--man=no", str(runnable_unit(tmp_path)))
    # verify exits 0 on unknown keys and bad values, only warning about them, so the output
    # has to be empty too.
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "intmon" in line]
    assert result.returncode == 0, result.stderr
    assert problems == []


@needs_systemd_analyze
def test_verify_as_run_here_does_catch_a_bad_setting(tmp_path: Path) -> None:
    """The check above would be worthless if verify stayed quiet about mistakes."""
    result = analyze("verify", "--man=no", str(runnable_unit(tmp_path, "WatchdogSecs=30s\n")))
    assert "Unknown key 'WatchdogSecs'" in result.stderr


@needs_systemd_analyze
def test_the_unit_is_well_hardened(tmp_path: Path) -> None:
    result = analyze("security", "--offline=yes", "--no-pager", str(runnable_unit(tmp_path)))
    match = re.search(r"Overall exposure level for intmon\.service: ([\d.]+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    # 0 is a fully locked-down unit, 10 an unprotected one; this unit scores 1.5.
    assert float(match.group(1)) <= 2.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "intmon"),
        ("ConfigurationDirectory", "intmon"),
        ("EnvironmentFile", "-/etc/intmon/intmon.env"),
        ("ExecStart", "/usr/local/bin/intmon run --config /etc/intmon/monitor.yaml"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
    ],
    ids=lambda v: v or "empty",
)
def test_the_unit_sets(key: str, value: str) -> None:
    assert value in unit_settings(UNIT.read_text())["Service"].get(key, [])


def test_the_example_database_lives_in_the_state_directory() -> None:
    """ProtectSystem=strict leaves only StateDirectory writable: the database must be there."""
    state = unit_settings(UNIT.read_text())["Service"]["StateDirectory"][0]
    env = {name: "x" * 32 for name in ("EXAMPLE_TOKEN", "HEARTBEAT_SECRET")}
    for config in (ROOT / "config" / "example.yaml", CONTAINER_CONFIG):
        settings = load_config(str(config), env=env).monitor
        assert Path(settings.database).parent == Path("/var/lib") / state, config


# --- container ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        pending += raw.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions


def instructions(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile() if kw == keyword]


def final_stage(keyword: str) -> list[str]:
    """`keyword`'s arguments in the stage that becomes the image (after the last FROM)."""
    steps = dockerfile()
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    return [args for kw, args in steps[last_from:] if kw == keyword]


def healthcheck_argv() -> list[str]:
    (args,) = instructions("HEALTHCHECK")
    _, _, command = args.partition("CMD ")
    argv = json.loads(command)
    assert isinstance(argv, list)
    return [str(a) for a in argv]


def run_healthcheck(url: str) -> int:
    """The HEALTHCHECK exactly as the image runs it, with this venv's python for `python`."""
    argv = healthcheck_argv()
    assert argv[0] == "python"
    env = {**os.environ, "INTMON_HEALTHCHECK_URL": url}
    return subprocess.run(
        [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False
    ).returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`intmon run` as a real process on the container config (on loopback); yields its URL."""
    tmp_path = tmp_path_factory.mktemp("daemon")
    port = free_port()
    config = CONTAINER_CONFIG.read_text()
    config = config.replace("0.0.0.0:9464", f"127.0.0.1:{port}")
    config = config.replace("/var/lib/intmon/monitor.db", str(tmp_path / "monitor.db"))
    path = tmp_path / "monitor.yaml"
    path.write_text(config)
    log = tmp_path / "intmon.log"
    with log.open("w") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(path)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # waiting for a process to come up, not for time to pass
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1):
                break
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "intmon did not become ready"
            time.sleep(0.05)
    yield url
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()


def test_the_healthcheck_passes_against_a_running_daemon(daemon: str) -> None:
    assert run_healthcheck(f"{daemon}/healthz") == 0


def test_the_healthcheck_fails_on_an_error_answer(daemon: str) -> None:
    assert run_healthcheck(f"{daemon}/no-such-page") == 1


def test_the_healthcheck_fails_when_nothing_listens() -> None:
    assert run_healthcheck(f"http://127.0.0.1:{free_port()}/healthz") == 1


def test_the_healthcheck_default_url_is_the_exposed_port() -> None:
    (code,) = [a for a in healthcheck_argv() if "urllib" in a]
    (env,) = final_stage("ENV")
    default = "http://127.0.0.1:9464/healthz"
    assert f"'{default}'" in code
    assert f"INTMON_HEALTHCHECK_URL={default}" in env
    assert final_stage("EXPOSE") == ["9464"]
    listen = load_config(str(CONTAINER_CONFIG), env={}).monitor.listen
    assert listen == "0.0.0.0:9464"


def test_the_image_runs_as_a_non_root_user() -> None:
    users = final_stage("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any(f"--uid {user}" in run for run in final_stage("RUN"))


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        ("VOLUME", "/var/lib/intmon"),
        ("STOPSIGNAL", "SIGTERM"),
        ("CMD", '["intmon", "run"]'),
    ],
    ids=["volume", "stopsignal", "cmd"],
)
def test_the_image_declares(keyword: str, expected: str) -> None:
    assert final_stage(keyword) == [expected]


def test_the_image_reads_its_config_from_the_mount_point() -> None:
    (env,) = final_stage("ENV")
    assert "INTMON_CONFIG=/etc/intmon/monitor.yaml" in env.split()


def test_the_images_are_slim_python() -> None:
    images = [args.split()[0] for args in instructions("FROM")]
    assert images
    assert all(re.fullmatch(r"python:3\.1[12]-slim", image) for image in images), images


def copy_sources() -> list[str]:
    sources = []
    for args in instructions("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        if "--from=" not in args:
            sources.extend(words[:-1])
    return sources


def dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
        for pattern in patterns
        if not pattern.startswith("!")
        for prefix in prefixes
    )


def test_every_copy_source_exists_and_is_not_dockerignored() -> None:
    sources = copy_sources()
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source), source


def test_the_copied_files_are_what_pip_install_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    needed |= {pkg.split(".")[0] for pkg in found}
    assert needed <= set(copy_sources())
    # With the postgres extra: the image must be able to run as one of several replicas.
    assert any('pip install ".[postgres]"' in run for run in instructions("RUN"))


@pytest.mark.parametrize(
    "path", [".venv", ".git", "monitor.db", ".demo", "intmon.env", "monitor/__pycache__"]
)
def test_dockerignore_keeps_local_state_and_secrets_out(path: str) -> None:
    assert dockerignored(path)
