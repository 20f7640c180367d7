"""`--env-file`: systemd's EnvironmentFile syntax, and the README's systemd steps as written,
with the secrets only in the env file."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config.envfile import parse_env_file
from monitor.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent

# (file text, variables systemd would set), per systemd.exec(5) EnvironmentFile=.
CASES = [
    ("A=1\nB=2", {"A": "1", "B": "2"}),
    ("# comment\n; comment\n\nA=1\n", {"A": "1"}),
    ("  A = spaced value  \n", {"A": "spaced value"}),
    ("A=x # not a comment", {"A": "x # not a comment"}),
    ("A='single $quoted \\n'", {"A": "single $quoted \\n"}),
    ('A="double \\"q\\" \\$HOME \\\\ \\n"', {"A": 'double "q" $HOME \\ \\n'}),
    ("A='two\nlines'", {"A": "two\nlines"}),
    ("A=con\\\ntinued", {"A": "continued"}),
    ("A=back\\slash", {"A": "backslash"}),
    ("A='a'b", {"A": "ab"}),
    ("A=", {"A": ""}),
    ("NOEQUALS\nA=1", {"A": "1"}),
    ("export A=1\nB=2", {"B": "2"}),  # `export` is shell, not systemd: the line is skipped
    ("1A=x\nA-B=y\nA_B=z", {"A_B": "z"}),
    ("# a comment \\\nA=continued comment\nB=1", {"B": "1"}),
    ("A=1\nA=2", {"A": "2"}),
    ("A=no newline at the end", {"A": "no newline at the end"}),
    ("A='unclosed", {"A": "unclosed"}),
    ("A=crlf\r\nB=2\r\n", {"A": "crlf", "B": "2"}),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(t)[:30] for t, _ in CASES])
def test_it_reads_what_systemd_reads(text: str, expected: dict[str, str]) -> None:
    assert parse_env_file(text).values == expected


def test_it_names_the_lines_systemd_would_skip() -> None:
    assert parse_env_file("A=1\nexport TOKEN=x\n").ignored == [(2, "export TOKEN")]


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    # main() points the root logger at the stderr of its moment, which capsys closes after.
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved


SECRETS = {"EXAMPLE_TOKEN": "tok-0123456789", "HEARTBEAT_SECRET": "hb-0123456789abcdef"}


@pytest.fixture
def systemd_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The files the README's systemd steps install, under tmp_path; no secret in the shell."""
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("INTMON_CONFIG", raising=False)
    etc, state = tmp_path / "etc" / "intmon", tmp_path / "var" / "lib" / "intmon"
    etc.mkdir(parents=True)
    state.mkdir(parents=True)
    config = (ROOT / "config" / "example.yaml").read_text()
    (etc / "monitor.yaml").write_text(config.replace("/var/lib/intmon/", f"{state}/"))
    (etc / "intmon.env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    (etc / "intmon.env").chmod(0o600)
    return {"/etc/intmon": etc, "/var/lib/intmon": state}


def readme_systemd_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### systemd", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines()]


def test_the_readme_systemd_steps_validate_with_secrets_only_in_the_env_file(
    systemd_layout: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    validate = [c for c in readme_systemd_commands() if c.startswith("intmon validate")]
    assert validate, "the README's systemd steps validate the config before starting"
    command = validate[0].replace("/etc/intmon", str(systemd_layout["/etc/intmon"]))
    assert main(shlex.split(command)[1:]) == 0, capsys.readouterr().err
    assert "ok (" in capsys.readouterr().out


def test_without_the_env_file_validate_names_the_missing_secret(
    systemd_layout: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = systemd_layout["/etc/intmon"] / "monitor.yaml"
    assert main(["validate", "--config", str(config)]) == 2
    assert "environment variable EXAMPLE_TOKEN is not set" in capsys.readouterr().err


def test_status_and_silence_need_no_check_secrets(
    systemd_layout: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(f"sqlite:///{systemd_layout['/var/lib/intmon'] / 'monitor.db'}")
    store.open()  # what the daemon leaves behind
    store.close()
    config = str(systemd_layout["/etc/intmon"] / "monitor.yaml")
    assert main(["status", "--config", config]) == 0, capsys.readouterr().err
    assert "stripe-balance" in capsys.readouterr().out
    assert main(["silence", "--list", "--config", config]) == 0, capsys.readouterr().err


def test_a_secret_status_cannot_stand_in_for_is_still_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("INTMON_TEST_DB", raising=False)
    monkeypatch.delenv("INTMON_TEST_HOOK", raising=False)
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"monitor: {{database: '{tmp_path}/m.db'}}\n"
        "notifiers: [{name: chat, urls: ['${INTMON_TEST_HOOK}']}]\n"  # status never notifies
        "checks:\n"
        "  - {name: a, request: {url: '${INTMON_TEST_API_URL}'}, notify: [chat]}\n"
        "  - name: b\n"
        "    type: freshness\n"
        "    max_age: 1h\n"
        "    source: {type: sql, url: '${INTMON_TEST_DB}', query: 'select 1'}\n"
    )
    assert main(["status", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        f"{config}:8: checks[1].source.url: environment variable INTMON_TEST_DB is not set, "
        "and needed here"
    ]


def test_the_database_url_is_needed_by_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("INTMON_TEST_DB", raising=False)
    config = tmp_path / "monitor.yaml"
    config.write_text("monitor: {database: '${INTMON_TEST_DB}'}\n")
    assert main(["status", "--config", str(config)]) == 2
    assert "monitor.database: environment variable INTMON_TEST_DB is not set" in (
        capsys.readouterr().err
    )


def test_an_env_file_that_cannot_be_read_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("checks: []\n")
    missing = tmp_path / "nope.env"
    assert main(["validate", "--config", str(config), "--env-file", str(missing)]) == 2
    assert f"{missing}: cannot read env file" in capsys.readouterr().err


def test_the_env_file_wins_over_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("checks:\n  - {name: a, request: {url: '${INTMON_TEST_URL}'}}\n")
    env = tmp_path / "intmon.env"
    env.write_text("INTMON_TEST_URL=http://127.0.0.1:9/from-file\n")
    monkeypatch.setenv("INTMON_TEST_URL", "not a url")
    assert main(["validate", "--config", str(config), "--env-file", str(env)]) == 0
    assert main(["validate", "--config", str(config)]) == 2  # the shell's value alone
    assert "checks[0].request.url" in capsys.readouterr().err
