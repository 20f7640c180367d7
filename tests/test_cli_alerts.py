"""`intmon notify-test`, `intmon silence` and `intmon validate` on alerting configs.

The real `main()` with real argv, a real SQLite file and Apprise delivering `json://` to a real
receiver. It runs in-process (in a worker thread, as `asyncio.run` needs its own loop) rather
than as a subprocess: each `intmon` process spends ~2 s importing, and test_cli.py already
covers what only a process shows (signals, exit on a bad config, the console script).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from monitor.alerting.silences import list_silences
from monitor.cli import main
from monitor.storage.store import Store
from tests.receiver import Receiver

Intmon = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def intmon(capsys: pytest.CaptureFixture[str]) -> Intmon:
    """Run `intmon ARGS...`; returns (exit code, stdout, stderr)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, list(args))
        finally:
            # main() installs its own log handler, as a process would; this is not a process.
            root.handlers[:], root.level = saved[0][:], saved[1]
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
async def chat() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def pager() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


def write_config(tmp_path: Path, notifiers: str) -> Path:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"monitor: {{database: '{tmp_path / 'm.db'}'}}\n"
        f"notifiers:\n{notifiers}"
        "checks:\n"
        "  - {name: orders-api, request: {url: 'http://127.0.0.1:9/'}}\n"
        "  - {name: orders-eu, request: {url: 'http://127.0.0.1:9/'}}\n"
        "  - {name: billing, request: {url: 'http://127.0.0.1:9/'}}\n"
    )
    return config


async def test_notify_test_exits_0_when_delivered_and_1_when_any_notifier_is_not(
    intmon: Intmon, tmp_path: Path, chat: Receiver, pager: Receiver
) -> None:
    pager.failing = True  # answers 503
    config = write_config(
        tmp_path,
        f"  - {{name: chat, urls: ['{chat.url}']}}\n  - {{name: pager, urls: ['{pager.url}']}}\n",
    )
    code, out, _ = await intmon("notify-test", "--config", str(config), "chat")
    assert (code, out) == (0, "chat: delivered\n")
    assert [(p["title"], p["type"]) for p in chat.posts] == [("intmon test notification", "info")]

    code, out, _ = await intmon("notify-test", "--config", str(config))
    assert (code, out) == (1, "chat: delivered\npager: NOT delivered\n")
    assert (len(chat.posts), pager.posts, pager.refused) == (2, [], 1)


async def test_notify_test_exits_1_when_nothing_listens(intmon: Intmon, tmp_path: Path) -> None:
    config = write_config(tmp_path, "  - {name: chat, urls: ['json://127.0.0.1:9/hook']}\n")
    code, out, _ = await intmon("notify-test", "--config", str(config), "chat")
    assert (code, out) == (1, "chat: NOT delivered\n")


async def test_silence_adds_lists_and_expires_a_silence_in_the_database(
    intmon: Intmon, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "  []\n")
    code, out, _ = await intmon(
        "silence", "orders-*", "--for", "2h", "--comment", "deploy", "--config", str(config)
    )
    assert (code, out) == (0, "silence 1: orders-* for 2h (2 checks match)\n")

    code, out, _ = await intmon("silence", "--list", "--config", str(config))
    header, row = out.splitlines()
    assert header.split() == ["ID", "PATTERN", "ENDS", "COMMENT"]
    assert re.fullmatch(r"1\s+orders-\*\s+(1h59m\d+s|2h) left\s+deploy", row), row

    code, out, _ = await intmon("silence", "--expire", "1", "--config", str(config))
    assert (code, out) == (0, "silence 1 ended\n")
    code, _, err = await intmon("silence", "--expire", "1", "--config", str(config))
    assert (code, err) == (1, "no active silence 1\n")

    code, out, _ = await intmon("silence", "--list", "--config", str(config))
    assert (code, out.splitlines()[1:]) == (0, [])
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.open()
    (silence,) = list_silences(store.engine, 0, include_ended=True)
    store.close()
    assert (silence.pattern, silence.comment, silence.expired_at is not None) == (
        "orders-*",
        "deploy",
        True,
    )


async def test_silence_with_a_bad_duration_is_a_usage_error(intmon: Intmon, tmp_path: Path) -> None:
    config = write_config(tmp_path, "  []\n")
    code, _, err = await intmon("silence", "orders-*", "--for", "soon", "--config", str(config))
    assert code == 2 and err.startswith("--for: ")


async def test_validate_rejects_a_url_apprise_cannot_use_naming_the_key_not_the_secret(
    intmon: Intmon, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        "  - name: chat\n"
        "    urls:\n"
        "      - json://127.0.0.1:9/hook\n"
        "      - nosuchservice://hunter22@example.com\n",
    )
    # The check routes to `chat`: that is right, and must not be reported as well.
    config.write_text(config.read_text().replace("orders-api,", "orders-api, notify: [chat],"))
    code, out, err = await intmon("validate", "--config", str(config))
    assert (code, out) == (2, "")
    assert err == (
        "invalid config:\n"
        f"{config}:6: notifiers[0].urls[1]: not a URL Apprise can use"
        " (unknown service or missing parts)\n"
    )
    assert "hunter22" not in err
