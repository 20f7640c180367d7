"""Hostile config files: whatever the bytes, `intmon validate` exits 0 or 2, with no traceback,
within a time bound.

Generated and mutated documents go through the real `main()` in-process (a subprocess would
spend ~2 s importing per example). The normal suite runs a few dozen examples per property;
`HYPOTHESIS_PROFILE=chaos` (tests/conftest.py) runs hundreds and prints how many ran and the
slowest.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import given, target
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from monitor.cli import main

CONFIGS = Path(__file__).parent.parent / "config"
EXAMPLES = [(CONFIGS / name).read_bytes() for name in ("example.yaml", "demo.yaml")]
ENV = {"EXAMPLE_TOKEN": "t-123456", "HEARTBEAT_SECRET": "h-0123456789abcdef"}
# The acceptance bound for one file; a healthy run takes a fraction of it even under load.
BOUND = 5.0
TIMINGS: list[float] = []


@contextlib.contextmanager
def _written(data: bytes) -> Iterator[str]:
    # Not tmp_path: a function-scoped fixture would be shared by every example.
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "monitor.yaml")
        Path(path).write_bytes(data)
        yield path


def validate(data: bytes) -> tuple[int, str]:
    """`intmon validate` on these bytes: its exit code and everything it printed."""
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level  # main() points the root logger at this `out`
    with (
        _written(data) as path,
        mock.patch.dict(os.environ, ENV),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
    ):
        start = time.perf_counter()
        code = main(["validate", "--config", path])
        elapsed = time.perf_counter() - start
    root.handlers[:], root.level = saved
    TIMINGS.append(elapsed)
    if currently_in_test_context():
        target(elapsed, label="seconds to validate")  # steer towards slow files
    assert elapsed < BOUND, f"validate took {elapsed:.2f}s"
    return code, out.getvalue()


def assert_handled(data: bytes) -> None:
    code, printed = validate(data)
    assert code in (0, 2), printed
    assert "Traceback" not in printed
    if code == 2:
        assert printed.startswith("invalid config:\n"), printed


def test_the_examples_are_valid() -> None:
    # The mutations below start from valid files: otherwise they would test nothing new.
    for data in EXAMPLES:
        assert validate(data)[0] == 0


# Values that broke loaders before: non-finite and huge numbers, odd types, YAML 1.1 traps.
HOSTILE_SCALARS = [
    ".inf", "-.inf", ".nan", "1.0e+400", "9" * 400, "1" * 5000, "-1", "0", "~", "null",
    "yes", "on", "2026-13-45", "!!float abc", "!!binary ====", "!!python/object:os.system x",
    "'\\x00'", '"\\ud800"', "[]", "{}", "''", "*undefined", "&a [*a]", "1e400s", "99999999999w",
    "9" * 400 + "GiB", "9" * 400 + "x", "'127.0.0.1:99999999999999999999'", "'²'",
]  # fmt: skip
HOSTILE_BLOCKS = [
    "[" * 200 + "]" * 200,
    "{a: " * 100 + "1" + "}" * 100,
    "? [a, b]\n: 1",
    "<<: {x: 1}",
    "{1: a, null: b, true: c}",
    "&x [a, b]\ny: [*x, *x, *x]",
]


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """An example config with bytes flipped, cut, repeated or replaced by hostile text."""
    data = bytearray(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "delete"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            snippet = draw(
                st.sampled_from(HOSTILE_SCALARS + HOSTILE_BLOCKS) | st.binary(max_size=8)
            )
            data[at:at] = snippet if isinstance(snippet, bytes) else snippet.encode()
        elif kind == "duplicate":
            end = draw(st.integers(at, min(len(data), at + 200)))
            data[at:at] = data[at:end] * draw(st.integers(2, 5))
        else:
            del data[at : at + draw(st.integers(1, 20))]
    return bytes(data)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))


SWAPS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63),
    st.sampled_from([10**400, float("inf"), float("nan"), "9" * 400 + "s"]),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["30s", "5%", "2x", "1MiB", "2xx", "${UNSET_VARIABLE}", "http://[::1"]),
)


@st.composite
def type_swaps(draw: st.DrawFn) -> bytes:
    """An example config with some values replaced by values of another type."""
    document = yaml.safe_load(draw(st.sampled_from(EXAMPLES)))
    paths = [p for p in _leaves(document) if p]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        value = draw(SWAPS)
        with contextlib.suppress(LookupError, TypeError):  # an earlier swap moved it away
            parent = document
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = value
    return yaml.safe_dump(document, allow_unicode=True).encode()


def _documents() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4),
        ),
        max_leaves=30,
    )


@st.composite
def generated(draw: st.DrawFn) -> bytes:
    """A document in the config's shape, sharing subtrees (which YAML writes as aliases)."""
    shared = draw(_documents())
    check = draw(
        st.fixed_dictionaries(
            {"name": st.text(max_size=10), "request": st.just({"url": "http://127.0.0.1:9/"})},
            optional={
                "interval": SWAPS,
                "timeout": SWAPS,
                "type": st.sampled_from(["http", "flow", "freshness", "graphql", "x"]),
                "expect": st.just(shared),
                "alerts": st.just({"error_rate": shared}),
                "max_body": SWAPS,
            },
        )
    )
    document = {
        "monitor": draw(st.just({"listen": "127.0.0.1:0"}) | _documents()),
        "defaults": draw(st.just({"request": shared}) | st.just({})),
        "checks": [check] * draw(st.integers(0, 3)),
        draw(st.sampled_from(["notifiers", "alerting", "silences"])): draw(_documents()),
    }
    return yaml.safe_dump(document, allow_unicode=True).encode()


@given(byte_mutations())
def test_mutated_example_bytes_end_in_exit_0_or_2(data: bytes) -> None:
    assert_handled(data)


@given(type_swaps())
def test_values_of_the_wrong_type_end_in_exit_0_or_2(data: bytes) -> None:
    assert_handled(data)


@given(generated())
def test_generated_documents_end_in_exit_0_or_2(data: bytes) -> None:
    assert_handled(data)


@pytest.mark.parametrize(
    "block",
    HOSTILE_BLOCKS + HOSTILE_SCALARS,
    ids=[repr(b)[:24] for b in HOSTILE_BLOCKS + HOSTILE_SCALARS],
)
def test_each_hostile_value_in_a_check_ends_in_exit_0_or_2(block: str) -> None:
    value = block.replace("\n", "\n      ")  # nested under `interval:` at any indent
    config = (
        f"checks:\n  - name: a\n    request: {{url: 'http://x/'}}\n    interval:\n      {value}\n"
    )
    assert_handled(config.encode())


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if TIMINGS and capture is not None:
        with capture.global_and_fixture_disabled():  # the figure for `make chaos`, not a log
            print(f"\nconfig fuzz: {len(TIMINGS)} files validated, slowest {max(TIMINGS):.3f}s")
