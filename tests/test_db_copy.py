"""`intmon db copy`: an SQLite file's history moved into a real Postgres database, which a daemon
then runs on as if it had always been there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from checks.heartbeats import Heartbeat
from monitor.alerting.machine import AlertState, Phase
from monitor.alerting.notify import Message
from monitor.alerting.outbox import commit, create_tables, pending
from monitor.alerting.silences import add_silence, list_silences
from monitor.cli import main
from monitor.storage.heartbeats import save_heartbeat
from monitor.storage.pauses import PauseRow, save_pause
from monitor.storage.shapes import ShapeRow, save_learning
from monitor.storage.store import DeprecationRow, RunRecord, Store
from tests.postgres import PostgresServer
from tests.test_cli import free_port, intmon, intmon_run

NOW = 1_700_002_800.0
HOUR = 3600.0
PASSWORD = "copy-pass-7f3e"  # trust auth takes any: it must only never be shown


def run(check: str, ts: float, ok: bool = True) -> RunRecord:
    return RunRecord(
        check, ts, ok, None if ok else "http_5xx", 200 if ok else 503, 0.05, "HTTP 200", {}
    )


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """An SQLite file with something in every table a daemon writes."""
    path = tmp_path / "old.db"
    store = Store(f"sqlite:///{path}")
    store.open()
    create_tables(store.engine)
    store.write_runs([run(c, NOW - 2 * HOUR + i * 60) for i in range(90) for c in ("a", "b")])
    store.write_runs([run("b", NOW, ok=False)])
    store.rollups.rollup(int(NOW - 2 * HOUR))
    store.write_deprecations([DeprecationRow(check="a", first_seen=NOW, last_seen=NOW)])
    save_heartbeat(store.engine, "a", Heartbeat(NOW, 12, None, None))
    save_pause(store.engine, PauseRow(key="check:b", paused_until=NOW + 60, reason="backoff"))
    save_learning(store.engine, ShapeRow(check="a", learned='{"truncated":false,"fields":[]}'))
    add_silence(store.engine, "a*", NOW + 10 * 365 * 86400, NOW, "copied")
    firing = AlertState("b", "error_rate", Phase.FIRING, "critical", NOW, NOW, version=1)
    message = Message(
        "chat", "b", "error_rate", "FIRING", "title", "body", "failure", "k1", NOW, NOW, NOW + 1
    )
    commit(store.engine, [(AlertState("b", "error_rate"), firing)], [message])
    store.close()
    return path


@pytest.fixture
def target(postgres: PostgresServer) -> Iterator[str]:
    with postgres.database() as url:
        yield url


def config(tmp_path: Path, name: str, database: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    checks = "".join(
        f"  - {{name: {c}, interval: 30d, request: {{url: 'http://127.0.0.1:9/'}}}}\n"
        for c in ("a", "b")
    )
    path.write_text(
        f"monitor: {{database: '{database}', listen: '127.0.0.1:{free_port()}'}}\nchecks:\n{checks}"
    )
    return path


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@")


def test_every_table_is_copied_with_its_ids_and_counts_checked(
    history: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "copy", "--from", str(history), "--to", with_password(target)]) == 0
    out = capsys.readouterr().out
    rows = dict(
        line.split() for line in out.splitlines()[1:] if line.count(" ") and "copied" not in line
    )
    assert rows["runs"] == "181" and rows["rollups"] == "2" and rows["checks"] == "2"
    one = ("alert_states", "outbox", "silences", "heartbeats", "pauses", "deprecations", "shapes")
    for table in one:
        assert rows[table] == "1", table
    assert "every table's row count matches" in out
    assert PASSWORD not in out and "postgres:***@" in out

    copied = Store(target)
    copied.open()
    try:
        assert copied.count_runs() == 181
        assert [r.hour for r in copied.rollups.hours("a", 0)] == [NOW - 2 * HOUR]
        assert [row.dedup_key for row in pending(copied.engine)] == ["k1"]
        # Ids were kept and the sequences moved past them: new rows take the next ones.
        copied.write_runs([run("c", NOW)])
        with copied.engine.connect() as connection:
            ids = connection.execute(text("SELECT name, id FROM checks ORDER BY id")).all()
        assert [tuple(row) for row in ids] == [("a", 1), ("b", 2), ("c", 3)]
        new = add_silence(copied.engine, "b", NOW + 10 * 365 * 86400, NOW)
        assert new.id == 2 and [s.id for s in list_silences(copied.engine, NOW)] == [1, 2]
    finally:
        copied.close()


async def test_a_daemon_on_the_copy_shows_the_same_last_runs_and_never_the_password(
    history: Path, target: str, tmp_path: Path
) -> None:
    code, _, err = await intmon("db", "copy", "--from", str(history), "--to", target)
    assert code == 0, err
    before = config(tmp_path, "sqlite", str(history))
    # The password comes from the environment, as the config reference says to write it.
    after = config(tmp_path, "postgres", target.replace("postgres@", "postgres:${PG_PASSWORD}@"))
    env = {"PG_PASSWORD": PASSWORD}
    statuses = []
    for path in (before, after):
        code, out, err = await intmon("status", "--config", str(path), "--json", env=env)
        assert code == 0, err
        statuses.append({c["name"]: c["last"] for c in json.loads(out)["checks"]})
    assert statuses[0] == statuses[1]
    assert statuses[1]["b"]["ok"] is False and statuses[1]["b"]["ts"] == NOW

    listen = after.read_text().split("listen: '")[1].split("'")[0]
    async with intmon_run(after, listen, env) as exited, aiohttp.ClientSession() as client:
        async with client.get(f"http://{listen}/api/status") as response:
            body = await response.text()
        last = {c["name"]: c["last"] for c in json.loads(body)["checks"]}
        assert last == statuses[0]
    assert exited.code == 0
    assert PASSWORD not in body + exited.stderr


def test_a_target_with_history_is_refused_unless_forced(
    history: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "copy", "--from", str(history), "--to", target]) == 0
    capsys.readouterr()
    assert main(["db", "copy", "--from", str(history), "--to", target]) == 1
    assert "already has rows in" in capsys.readouterr().err
    assert main(["db", "copy", "--from", str(history), "--to", target, "--force"]) == 0
    store = Store(target)
    store.open()
    assert store.count_runs() == 181  # replaced, not added to
    store.close()


def test_a_server_that_is_down_is_one_line_without_the_password(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    down = f"postgresql://intmon:{PASSWORD}@127.0.0.1:{free_port()}/intmon"
    assert main(["db", "copy", "--from", str(history), "--to", down]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cannot copy ") and "Connection refused" in err
    assert PASSWORD not in err and "postgresql+psycopg://***@127.0.0.1" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "x.db", "--to", "nosuchdb://h/d"], "--to: not a usable SQLAlchemy URL"),
        (["--to", "postgresql://h/d"], "the following arguments are required: --from"),
    ],
    ids=["unknown-database", "no-source"],
)
def test_a_command_line_it_cannot_use_exits_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["db", "copy", *args])
    except SystemExit as exited:  # argparse's own usage errors
        code = int(str(exited.code))
    assert code == 2
    assert message in capsys.readouterr().err


async def test_status_and_run_on_a_server_that_is_down_never_show_the_password(
    tmp_path: Path,
) -> None:
    down = config(
        tmp_path, "down", f"postgresql://intmon:${{PG_PASSWORD}}@127.0.0.1:{free_port()}/x"
    )
    for command in ("status", "run"):
        code, out, err = await intmon(command, "--config", str(down), env={"PG_PASSWORD": PASSWORD})
        assert code == 1, err
        assert "cannot " in err and "Connection refused" in err and "://***@127.0.0.1" in err
        assert PASSWORD not in out + err
