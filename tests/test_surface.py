"""The public surface stays what users, dashboards and scripts rely on, whatever moves inside.

`testdata/surface/` holds every `--help` text and the metric families a daemon exports, recorded
before the code was reorganised into packages. A change there is a change of the public contract:
update the files on purpose (see CONTRIBUTING.md), never to make this test pass.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from monitor.cli import main
from tests.test_cli import free_port

ROOT = Path(__file__).resolve().parent.parent
SURFACE = Path(__file__).parent / "testdata" / "surface"
COMMANDS = [
    "", "run", "check", "validate", "status", "notify-test", "silence", "schema", "hash-password",
    "db", "db copy", "sandbox",
]  # fmt: skip
PACKAGES = ("monitor", "checks")


@pytest.mark.parametrize("command", COMMANDS, ids=[c or "intmon" for c in COMMANDS])
def test_every_help_text_is_unchanged(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
    with pytest.raises(SystemExit) as exited:
        main([*command.split(), "--help"])
    assert exited.value.code == 0
    assert (
        capsys.readouterr().out
        == (SURFACE / f"help{'-' + command.replace(' ', '-') if command else ''}.txt").read_text()
    )


def families(exposition: str) -> set[str]:
    # No `_created` family may come back: it would show here as one added.
    return {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}


@pytest.fixture
async def demo_daemon(tmp_path: Path, sandbox: str) -> AsyncIterator[str]:
    """The demo config, every check type in it, run against the sandbox; yields its URL."""
    port = free_port()
    config = (ROOT / "config" / "demo.yaml").read_text()
    config = config.replace("http://127.0.0.1:8765", sandbox).replace("127.0.0.1:8765", sandbox[7:])
    config = config.replace(".demo/demo.db", str(tmp_path / "demo.db"))
    config = config.replace("127.0.0.1:9464", f"127.0.0.1:{port}")
    config = re.sub(r"interval: \d+s", "interval: 1s", config)
    path = tmp_path / "demo.yaml"
    path.write_text(config)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "--config", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        _, err = await process.communicate()
        assert process.returncode == 0, err.decode()


async def test_the_metric_families_are_unchanged(demo_daemon: str) -> None:
    expected = set((SURFACE / "metric-families.txt").read_text().split()[::2])
    seen: set[str] = set()
    async with aiohttp.ClientSession() as session:
        # Waiting for the daemon to run every check once, not for time to pass: some families
        # appear with their first sample. The deadline only bounds a daemon that never does.
        deadline = asyncio.get_running_loop().time() + 30
        while seen != expected and asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(f"{demo_daemon}/metrics") as response:
                    seen = families(await response.text())
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(0.1)
    assert sorted(seen - expected) == [], "families added"
    assert sorted(expected - seen) == [], "families gone"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("integration_monitor-*.whl")
    return built


def test_the_wheel_holds_every_package_of_the_tree(wheel: Path) -> None:
    in_tree = {
        str(init.parent.relative_to(ROOT))
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
    }
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {str(Path(name).parent) for name in archive.namelist() if name.endswith(".py")}
    assert len(in_tree) > 2
    assert in_tree <= in_wheel


def test_a_plain_install_runs_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    """Not editable: the installed copy alone, imported from outside the source tree."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    # The dependencies come from this environment's site-packages, as a plain path: its .pth
    # files (among them the editable install of this tree) are not processed from there.
    deps = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    (site / "dependencies.pth").write_text(f"{deps}\n")
    script = (
        "import importlib, pkgutil, monitor, checks\n"
        "for package in (monitor, checks):\n"
        "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        if not module.name.endswith('__main__'):\n"
        "            importlib.import_module(module.name)\n"
        "print(monitor.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    python = str(venv / "bin" / "python")
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 120}
    imported = subprocess.run([python, "-c", script], check=False, **run)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith(str(site)), imported.stdout
    config = tmp_path / "monitor.yaml"
    config.write_text("checks:\n  - {name: a, request: {url: 'http://127.0.0.1:9/'}}\n")
    validated = subprocess.run(
        [python, "-m", "monitor", "validate", "--config", str(config)], check=False, **run
    )
    assert validated.returncode == 0, validated.stderr
