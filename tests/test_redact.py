"""One redaction rule for config secrets, per-request credentials and URL userinfo."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import urllib.parse

import pytest
import yarl

from monitor.core.redact import MASK, Redactor, redact


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("token abcd1234 rejected", ["abcd1234"], f"token {MASK} rejected"),
        ("twice: abcd abcd", ["abcd"], f"twice: {MASK} {MASK}"),
        ("port 443 is fine", ["443"], "port 443 is fine"),  # too short to be worth masking
        ("x long-secret-value", ["long-secret", "long-secret-value"], f"x {MASK}"),
        # Overlapping secrets: masking one first, or matching left to right, left a tail of
        # the other visible ("xa***" and "x***efg"); the union of the spans leaves nothing.
        ("xabcdefg", ["abcd", "bcdefg"], f"x{MASK}"),
        ("aaaaaa!", ["aaaa"], f"{MASK}!"),
        ("see https://ops:hunter22@api.example.com/x", [], f"see https://{MASK}@api.example.com/x"),
        ("ab abcd cd", ["abcd", "zzzz"], f"ab {MASK} cd"),
    ],
    ids=["one", "repeated", "short", "nested", "overlapping", "self-overlap", "userinfo", "other"],
)
def test_redact_masks_every_character_of_every_secret(
    text: str, secrets: list[str], expected: str
) -> None:
    assert redact(text, secrets) == expected


def test_the_redactor_follows_reloaded_secrets() -> None:
    redactor = Redactor(["old-secret"])
    redactor.update(["new-secret"])
    assert redactor("old-secret new-secret") == f"old-secret {MASK}"


def test_log_lines_are_redacted_tracebacks_included() -> None:
    formatter = Redactor(["s3cr3t-value"]).formatter("%(message)s")
    error = RuntimeError("boom s3cr3t-value")
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "with s3cr3t-value", (), (RuntimeError, error, None)
    )
    assert formatter.format(record) == f"with {MASK}\nRuntimeError: boom {MASK}"


SECRET = "s3cr3t+k3y!Zq9*x/é&"


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


@pytest.mark.parametrize(
    "spelling",
    [
        SECRET,
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote(SECRET),  # "/" left alone
        urllib.parse.quote_plus(SECRET),
        re.sub("%..", lambda m: m[0].lower(), urllib.parse.quote(SECRET, safe="")),
        yarl.URL("http://h/").with_query(k=SECRET).raw_query_string.removeprefix("k="),
        json.dumps(SECRET)[1:-1],  # \u00e9
        json.dumps(SECRET, ensure_ascii=False).replace("/", "\\/")[1:-1],
        html.escape(SECRET),
        b64(SECRET),
        b64("u:" + SECRET),  # Authorization: Basic, the secret at each offset mod 3
        b64("us:" + SECRET),
        b64("user:" + SECRET),
        base64.urlsafe_b64encode(("u:" + SECRET).encode()).decode(),
        urllib.parse.quote(b64("user:" + SECRET), safe=""),  # a Basic value in a query string
    ],
    ids=[
        "literal",
        "quote",
        "quote-path",
        "quote_plus",
        "lowercase-hex",
        "yarl-query",
        "json-ascii",
        "json-slash",
        "html",
        "base64",
        "basic-offset-2",
        "basic-offset-0",
        "basic-offset-1",
        "base64-urlsafe",
        "basic-in-query",
    ],
)
def test_every_spelling_a_server_may_echo_is_masked(spelling: str) -> None:
    masked = Redactor([SECRET])(f"echo [{spelling}] end")
    assert masked.startswith("echo [") and masked.endswith("] end") and MASK in masked
    # What is left beside the mask is base64 padding, the encoded "user:" and one character
    # mixing its last bits with the secret's first: never the secret's bulk.
    left = masked.removeprefix("echo [").removesuffix("] end").replace(MASK, "")
    assert len(left.replace("%3D", "").replace("=", "")) <= len(b64("user:")) + 1, masked


def test_innocent_text_is_left_alone() -> None:
    text = "GET /v1/orders?page=2 answered HTTP 503 after 1.2s; Basic dXNlcjpwYXNz"
    assert Redactor([SECRET, "hunter22"])(text) == text


def test_a_runs_own_secrets_are_masked_with_the_configs() -> None:
    redactor = Redactor(["config-secret"])
    value = {"a": ["config-secret", {"b": "run-token-1"}], "n": 3, "t": ("run-token-1",)}
    assert redactor.value(value, ["run-token-1"]) == {"a": [MASK, {"b": MASK}], "n": 3, "t": [MASK]}
    assert redactor("run-token-1") == "run-token-1"  # another run's result does not know it


def test_database_urls_lose_their_password_even_without_a_user() -> None:
    text = "cannot connect to postgresql://:hunter22@db/x or postgresql+psycopg://u:p%40ss@db/x"
    assert redact(text, []) == (
        f"cannot connect to postgresql://{MASK}@db/x or postgresql+psycopg://{MASK}@db/x"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"error: {SECRET[:9]}", f"error: {MASK}"),  # cut at 200 characters, at the end
        (f'$.key is "x {SECRET[:9]}...", expected "ok"', f'$.key is "x {MASK}...", expected "ok"'),
        (f"q={urllib.parse.quote(SECRET, safe='')[:10]}…", f"q={MASK}…"),
        (f"Basic {b64('user:' + SECRET)[:20]}", f"Basic {b64('user:' + SECRET)[:7]}{MASK}"),
        (f"{SECRET[:9]} and more", f"{SECRET[:9]} and more"),  # not cut: the same letters
        (f"ends {SECRET[:3]}", f"ends {SECRET[:3]}"),  # too little to tell
    ],
    ids=["end", "ellipsis", "quoted", "base64", "not-cut", "short"],
)
def test_the_front_of_a_secret_cut_short_before_redaction_is_masked(
    text: str, expected: str
) -> None:
    assert Redactor([SECRET])(text) == expected
