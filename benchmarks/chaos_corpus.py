"""Hostile config files for `make chaos`'s fuzz scenario: what an unlucky operator or an attacker
could hand `intmon validate`. Seeded, so a seed names one corpus.

Families: truncations and byte mutations of the shipped configs, other encodings and binary,
deep nesting, alias bombs and recursive aliases, huge and non-finite numbers, complex keys,
YAML tags, type confusion, `${ENV}` oddities and multi-document files.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEEDS = [REPO / "config" / "example.yaml", REPO / "config" / "demo.yaml"]
SMALL = (
    "monitor: {database: ':memory:'}\n"
    "checks:\n"
    "  - name: api\n"
    "    interval: 30s\n"
    "    request: {url: 'http://127.0.0.1:1/x'}\n"
)


def truncated(rng: random.Random, base: bytes) -> bytes:
    return base[: rng.randrange(len(base))]


def mutated(rng: random.Random, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(rng.randint(1, 20)):
        if not data:
            break  # deleted down to nothing: an empty file is a case of its own
        at = rng.randrange(len(data))
        action = rng.choice(("flip", "insert", "delete", "dup"))
        if action == "flip":
            data[at] = rng.randrange(256)
        elif action == "insert":
            data[at:at] = rng.choice(
                [b":", b"-", b"[", b"{", b"&a", b"*a", b"\t", b"'", b'"', b"\x00"]
            )
        elif action == "delete":
            del data[at : at + rng.randint(1, 40)]
        else:
            end = min(len(data), at + rng.randint(1, 200))
            data[at:at] = data[at:end]
    return bytes(data)


def shuffled_lines(rng: random.Random, base: bytes) -> bytes:
    lines = base.split(b"\n")
    for _ in range(rng.randint(1, 10)):
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def encoded(rng: random.Random, base: bytes) -> bytes:
    text = base.decode(errors="replace") + "\n# café ☃ 𝄞\n"  # a base may not be UTF-8
    codec = rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252"])
    return text.encode(codec, errors="replace")


def binary(rng: random.Random, base: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return rng.randbytes(rng.randint(1, 65536))
    if choice == 1:
        return base[:200] + b"\x00" * rng.randint(1, 100) + base[200:]
    if choice == 2:
        return base.replace(b"a", b"\xff\xfe", rng.randint(1, 50))
    return b"\xef\xbb\xbf" + base  # a UTF-8 BOM before a valid file


def deep(rng: random.Random, base: bytes) -> bytes:
    depth = rng.choice([50, 500, 5_000, 50_000, 200_000])
    form = rng.randrange(4)
    if form == 0:
        return b"checks: " + b"[" * depth + b"]" * depth + b"\n"
    if form == 1:
        return b"checks: " + b"{a: " * depth + b"1" + b"}" * depth + b"\n"
    if form == 2:
        depth = min(depth, 5_000)  # block nesting costs 2 bytes of indent per level
        return b"".join(b"  " * i + b"k:\n" for i in range(depth)) + b"  " * depth + b"v\n"
    return SMALL.encode() + b"    headers: " + b"[" * depth + b"\n"


def aliases(rng: random.Random, base: bytes) -> bytes:
    form = rng.randrange(5)
    if form == 0:  # billion laughs: 10 levels of 10 -> 10^10 nodes if expanded
        levels = [b'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i in range(1, rng.randint(4, 12)):
            refs = b",".join(b"*a%d" % (i - 1) for _ in range(10))
            levels.append(b"a%d: &a%d [%s]" % (i, i, refs))
        return (
            b"defaults:\n  x: &x 1\n" + b"\n".join(levels) + b"\nchecks: *a%d\n" % (len(levels) - 1)
        )
    if form == 1:
        return b"checks: &a [*a]\n"
    if form == 2:
        return b"defaults: &d {request: {headers: *d}}\nchecks: []\n"
    if form == 3:
        return b"base: &b {interval: 1s}\nchecks:\n  - <<: [*b, *b, *b]\n    <<: *b\n    name: x\n"
    return SMALL.encode() + b"extra: *undefined\n"


def numbers(rng: random.Random, base: bytes) -> bytes:
    value = rng.choice(
        [".inf", "-.inf", ".nan", "1e309", "-1e309", "9" * rng.choice([20, 400, 5000]),
         "0x" + "f" * 300, "0o777777777777777777777", "1_000_000_000_000_000s",
         "99999999999999999999d", "1e-400s", "-0", "0.0000000000000000000001ms"]
    )  # fmt: skip
    key = rng.choice(["interval", "timeout", "max_body", "max_redirects"])
    top = rng.choice(["concurrency", "per_host_concurrency", "shutdown_grace"])
    return (
        f"monitor: {{database: ':memory:', {top}: {value}}}\n"
        f"checks:\n  - {{name: n, {key}: {value}, request: {{url: 'http://127.0.0.1:1/'}},"
        f" expect: {{status: {value}}}}}\n"
    ).encode()


def complex_keys(rng: random.Random, base: bytes) -> bytes:
    return rng.choice(
        [
            b"? [a, b]\n: c\n",
            b"checks:\n  - {[1, 2]: 3, name: x}\n",
            b"monitor:\n  ? {a: 1}\n  : 2\n",
            b"{? [checks]: []}\n",
            b"checks:\n  - name: x\n    request: {url: 'http://127.0.0.1:1/', headers: {[a]: b}}\n",
            b"checks:\n  - name: x\n    1: 2\n    null: 3\n    true: 4\n",
        ]
    )


def tags(rng: random.Random, base: bytes) -> bytes:
    return rng.choice(
        [
            b"checks: !!python/object/apply:os.system ['true']\n",
            b"monitor: !!binary aGVsbG8=\n",
            b"checks: !!set {a, b}\n",
            b"checks: !custom [1]\n",
            b"monitor: {database: !!timestamp 2001-12-14t21:59:43.10-05:00}\n",
            b"%YAML 9.9\n---\nchecks: []\n",
            b"%TAG ! tag:evil:\n---\nchecks: !x []\n",
        ]
    )


def confusion(rng: random.Random, base: bytes) -> bytes:
    return rng.choice(
        [
            b"",
            b"# only a comment\n",
            b"---\n---\n---\n",
            b"checks: []\n---\nchecks: []\n",
            b"- a\n- b\n",
            b"just a string",
            b"checks: null\nmonitor: []\n",
            b"checks: {name: x}\n",
            b"checks:\n  - name: " + b"x" * 1_000_000 + b"\n",
            SMALL.encode() + b"  - name: api\n    request: {url: 'http://127.0.0.1:1/x'}\n",
            SMALL.replace("api", "\u202e\u0000api").encode("utf-8", "surrogatepass"),
            b"\tchecks: []\n",
            b"checks: [" + b"{name: c%d, request: {url: 'http://127.0.0.1:1/'}}, " * 1 + b"]\n",
        ]
    )


def env_refs(rng: random.Random, base: bytes) -> bytes:
    ref = rng.choice(
        ["${UNSET_INTMON_CHAOS}", "${A:-${B:-${C}}}", "${", "${}", "$${X}", "${" * 2000,
         "${X:-" * 500 + "}" * 500, "${PATH}" * 1000, "${\u0000}", "${1BAD}"]
    )  # fmt: skip
    return SMALL.replace("'http://127.0.0.1:1/x'", f"'http://127.0.0.1:1/{ref}'").encode()


Mutator = Callable[[random.Random, bytes], bytes]
FAMILIES: dict[str, Mutator] = {
    "truncated": truncated,
    "mutated": mutated,
    "shuffled": shuffled_lines,
    "encoding": encoded,
    "binary": binary,
    "nesting": deep,
    "aliases": aliases,
    "numbers": numbers,
    "complex-keys": complex_keys,
    "tags": tags,
    "confusion": confusion,
    "env": env_refs,
}


def corpus(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """`count` (family, file content) pairs, round robin over the families."""
    rng = random.Random(seed)
    # The shipped configs, and every invalid config the tests pin: mutating a file that is
    # already wrong in one known way reaches the validator's corners quickest.
    paths = SEEDS + sorted((REPO / "tests" / "testdata").glob("invalid-*"))
    bases = [path.read_bytes() for path in paths if path.is_file()] + [SMALL.encode()]
    bases = [base for base in bases if base]
    names = list(FAMILIES)
    for i in range(count):
        family = names[i % len(names)]
        yield family, FAMILIES[family](rng, rng.choice(bases))
