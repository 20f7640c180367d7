"""Every user error the `intmon` command can hit: one message, the documented exit code, and
never a traceback. A bug, by contrast, must keep its traceback.

The real `main()` with real argv, real files and real sockets, in-process: each case would
spend ~2 s importing as a subprocess, and test_cli.py already covers what only a process shows.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.cli import main
from monitor.storage.store import SCHEMA_VERSION, Store


@dataclass
class Case:
    argv: Callable[[Path], list[str]]  # given a directory with the files below
    code: int
    message: Callable[[Path], str]  # expected in stderr
    config: str = ""  # written to monitor.yaml, with {dir} and a free {port} filled in
    newer_database: bool = False  # m.db carries a schema version from a future intmon
    env: dict[str, str] = field(default_factory=dict)


GOOD = (
    "monitor: {database: '{dir}/m.db', listen: '127.0.0.1:{port}'}\n"
    "notifiers: [{name: chat, urls: ['json://127.0.0.1:9/hook']}]\n"
    "checks: [{name: orders-api, request: {url: 'http://127.0.0.1:9/'}}]\n"
)
NO_NOTIFIERS = "checks: [{name: orders-api, request: {url: 'http://127.0.0.1:9/'}}]\n"


def config(d: Path) -> str:
    return str(d / "monitor.yaml")


def newer_schema(doing: str) -> Callable[[Path], str]:
    return lambda d: (
        f"cannot {doing} the database {d}/m.db: database schema version {SCHEMA_VERSION + 1} is "
        f"newer than this intmon understands ({SCHEMA_VERSION}); upgrade intmon\n"
    )


CASES = {
    "bad-duration": Case(
        lambda d: ["validate", "--config", config(d)],
        2,
        lambda d: (
            f"invalid config:\n{config(d)}:1: checks[0].interval: 'often' is not a duration"
            " (use e.g. 250ms, 30s, 5m, 1h, 7d)\n"
        ),
        config="checks: [{name: a, interval: often, request: {url: 'http://x/'}}]\n",
    ),
    "unset-env-variable": Case(
        lambda d: ["check", "--config", config(d)],
        2,
        lambda d: (
            f"invalid config:\n{config(d)}:1: checks[0].request.headers.Authorization: "
            "environment variable INTMON_TEST_NEVER_SET is not set\n"
        ),
        config="checks: [{name: a, request: {url: 'http://x/', "
        "headers: {Authorization: 'Bearer ${INTMON_TEST_NEVER_SET}'}}}]\n",
    ),
    "invalid-value-from-a-secret": Case(
        lambda d: ["validate", "--config", config(d)],
        2,
        # ${ENV} values are secrets: an issue quoting one masks it (validate runs in the journal).
        lambda d: (
            f"invalid config:\n{config(d)}:1: checks[0].request.url: "
            "'ftp://x/?key=***' is not an http(s) URL\n"
        ),
        config="checks: [{name: a, request: {url: 'ftp://x/?key=${INTMON_TEST_KEY}'}}]\n",
        env={"INTMON_TEST_KEY": "hunter2-key"},
    ),
    "missing-config-file": Case(
        lambda d: ["status", "--config", str(d / "nope.yaml")],
        2,
        lambda d: (
            f"invalid config:\n{d}/nope.yaml: cannot read config: No such file or directory\n"
        ),
    ),
    "malformed-yaml": Case(
        lambda d: ["run", "--config", config(d)],
        2,
        lambda d: (
            f"invalid config:\n{config(d)}:3: invalid YAML: expected ',' or '}}', "
            "but got '<stream end>'\n"
        ),
        config="checks:\n  - {name: a\n",
    ),
    "database-driver-not-installed": Case(
        lambda d: ["status", "--config", config(d)],
        2,
        # The URL's password must not be repeated: asserted for every case below.
        lambda d: (
            f"invalid config:\n{config(d)}:1: monitor.database: its database driver is "
            "not installed (No module named 'pysqlcipher3')\n"
        ),
        config="monitor: {database: 'sqlite+pysqlcipher://:hunter2@/{dir}/m.db'}\n",
    ),
    "check-unknown-name": Case(
        lambda d: ["check", "--config", config(d), "nope"],
        2,
        lambda d: f"no check named nope in {config(d)}\n",
        config=GOOD,
    ),
    "schema-unknown-name": Case(
        lambda d: ["schema", "nope", "--config", config(d)],
        2,
        lambda d: f"no check named nope in {config(d)}\n",
        config=GOOD,
    ),
    "schema-newer-schema": Case(
        lambda d: ["schema", "orders-api", "--config", config(d)],
        1,
        newer_schema("read"),
        config=GOOD,
        newer_database=True,
    ),
    "schema-accept-newer-schema": Case(
        lambda d: ["schema", "orders-api", "--accept", "--config", config(d)],
        1,
        newer_schema("use"),
        config=GOOD,
        newer_database=True,
    ),
    "status-newer-schema": Case(
        lambda d: ["status", "--config", config(d)],
        1,
        newer_schema("read"),
        config=GOOD,
        newer_database=True,
    ),
    "silence-newer-schema": Case(
        lambda d: ["silence", "--list", "--config", config(d)],
        1,
        newer_schema("use"),
        config=GOOD,
        newer_database=True,
    ),
    "run-newer-schema": Case(
        lambda d: ["run", "--config", config(d)],
        1,
        lambda d: f"cannot open the database {d}/m.db: database schema version",
        config=GOOD,
        newer_database=True,
    ),
    "status-database-in-missing-directory": Case(
        lambda d: ["status", "--config", config(d)],
        1,
        lambda d: (
            f"cannot read the database {d}/gone/m.db: no such file (`intmon run` creates it)\n"
        ),
        config="monitor: {database: '{dir}/gone/m.db'}\n",
    ),
    "silence-database-in-missing-directory": Case(
        lambda d: ["silence", "--list", "--config", config(d)],
        1,
        lambda d: (
            f"cannot use the database {d}/gone/m.db: (sqlite3.OperationalError) "
            "unable to open database file"
        ),
        config="monitor: {database: '{dir}/gone/m.db'}\n",
    ),
    "database-url-sqlite-cannot-use": Case(
        lambda d: ["status", "--config", config(d)],
        2,
        lambda d: (
            f"invalid config:\n{config(d)}:1: monitor.database: not a usable SQLAlchemy URL: "
            f"Invalid SQLite URL: sqlite://***@/{d}/m.db\n"
        ),
        config="monitor: {database: 'sqlite://intmon:hunter2@/{dir}/m.db'}\n",
    ),
    "silence-database-named-by-a-secret": Case(
        lambda d: ["silence", "--list", "--config", config(d)],
        1,
        # ${ENV} values are secrets: masked here as in logs.
        lambda d: f"cannot use the database {d}/gone/***: (sqlite3.OperationalError) unable",
        config="monitor: {database: '{dir}/gone/${INTMON_TEST_DB_FILE}'}\n",
        env={"INTMON_TEST_DB_FILE": "hunter2.db"},
    ),
    "notify-test-unknown-notifier": Case(
        lambda d: ["notify-test", "--config", config(d), "pager"],
        2,
        lambda d: f"no notifier named pager in {config(d)}\n",
        config=GOOD,
    ),
    "notify-test-without-notifiers": Case(
        lambda d: ["notify-test", "--config", config(d)],
        1,
        lambda d: f"{config(d)} has no notifiers\n",
        config=NO_NOTIFIERS,
    ),
    "silence-bad-duration": Case(
        lambda d: ["silence", "orders-*", "--for", "soon", "--config", config(d)],
        2,
        lambda d: "--for: 'soon' is not a duration (use e.g. 250ms, 30s, 5m, 1h, 7d)\n",
        config=GOOD,
    ),
    "silence-for-zero": Case(
        lambda d: ["silence", "orders-*", "--for", "0s", "--config", config(d)],
        2,
        lambda d: "--for: '0s' is not longer than zero\n",
        config=GOOD,
    ),
    "silence-expire-beyond-any-id": Case(
        lambda d: ["silence", "--expire", str(2**64), "--config", config(d)],
        2,
        lambda d: f"argument --expire: '{2**64}' is not a silence id (see --list)\n",
        config=GOOD,
    ),
    "silence-expire-unknown-id": Case(
        lambda d: ["silence", "--expire", "42", "--config", config(d)],
        1,
        lambda d: "no active silence 42\n",
        config=GOOD,
    ),
    "sandbox-listen-not-host-port": Case(
        lambda d: ["sandbox", "--listen", "nowhere"],
        2,
        lambda d: (
            "intmon sandbox: error: argument --listen: 'nowhere' is not host:port "
            "(e.g. 127.0.0.1:8765)\n"
        ),
    ),
}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else is already listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.fixture
def run_main(
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[[list[str]], tuple[int, str]]]:
    """Run `intmon ARGV`; returns (exit code, stderr). Argparse's own exit counts as a code."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def run(argv: list[str]) -> tuple[int, str]:
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse rejecting the command line
            code = int(exc.code or 0)
        return code, capsys.readouterr().err

    yield run
    # main() installs its own log handler, as a process would; this is not a process.
    root.handlers[:], root.level = saved


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_user_error_prints_one_message_and_its_exit_code_without_a_traceback(
    case: Case,
    tmp_path: Path,
    run_main: Callable[[list[str]], tuple[int, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INTMON_TEST_NEVER_SET", raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    if case.config:
        # `run` must get as far as the database: it listens on a port nobody else holds.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        filled = case.config.replace("{dir}", str(tmp_path)).replace("{port}", str(free))
        (tmp_path / "monitor.yaml").write_text(filled)
    if case.newer_database:
        store = Store(f"sqlite:///{tmp_path / 'm.db'}")
        store.open()
        with store.engine.begin() as connection:
            connection.execute(
                text("UPDATE meta SET value=:v WHERE key='schema_version'"),
                {"v": str(SCHEMA_VERSION + 1)},
            )
        store.close()

    code, err = run_main(case.argv(tmp_path))

    assert code == case.code, err
    assert case.message(tmp_path) in err
    assert "hunter2" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "sandbox"])
def test_a_port_already_taken_is_named_and_exits_1(
    command: str,
    taken_port: int,
    tmp_path: Path,
    run_main: Callable[[list[str]], tuple[int, str]],
) -> None:
    listen = f"127.0.0.1:{taken_port}"
    if command == "run":
        (tmp_path / "monitor.yaml").write_text(
            f"monitor: {{database: '{tmp_path}/m.db', listen: '{listen}'}}\n"
        )
        argv = ["run", "--config", config(tmp_path)]
    else:
        argv = ["sandbox", "--listen", listen]
    code, err = run_main(argv)
    assert code == 1
    assert f"cannot listen on {listen}: " in err and "address already in use" in err
    assert "Traceback" not in err


def test_a_bug_is_not_mistaken_for_a_user_error_and_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: str, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in intmon")

    monkeypatch.setattr("monitor.cli.load_config", broken)
    # main() lets it through, so the interpreter prints the traceback and exits 1.
    with pytest.raises(RuntimeError, match="a bug in intmon"):
        main(["validate", "--config", str(tmp_path / "monitor.yaml")])
