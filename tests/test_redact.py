"""One redaction rule for config secrets, per-request credentials and URL userinfo."""

from __future__ import annotations

import logging

import pytest

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
