"""The shape of a JSON value: its paths and their types, never its values. Pure.

`$.data.total` → number; arrays fold into one element path (`$.items[*].id`), so the length
of a list and the values in it never change a shape. A field that some elements of an array
have and others lack is `optional`, and so is one missing from some of the bodies a shape was
learned from (see `fold`).

A field counts as absent only where it could have been present: under an object. A child of
a value that is null, or of an empty array, says nothing either way, so it neither turns a
field optional nor, when comparing, reads as removed.

Bounded: at most MAX_PATHS paths and MAX_DEPTH levels per shape; beyond them the shape is
`truncated` and keeps the paths met first. Check types compute it where they parse the body
(checks.http); the runner masks secrets in the paths (a key name can be a credential).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_PATHS = 500
MAX_DEPTH = 32
ROOT = "$"
ELEMENT = "[*]"
# JSON types as JSON Schema names them; integers are numbers (12 and 12.5 are one type to a
# client in most languages, and a price that is sometimes whole is not drift).
KINDS = ("object", "array", "string", "number", "boolean", "null")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# The last segment of a path: `.key`, `['odd key']` or `[*]`.
_LAST = re.compile(r"(\.[^.\[\]']+|\['(?:[^'\\]|\\.)*'\]|\[\*\])$")


@dataclass(frozen=True)
class Field:
    types: frozenset[str]
    optional: bool = False

    def shown(self) -> str:
        return "|".join(kind for kind in KINDS if kind in self.types)


@dataclass(frozen=True)
class Shape:
    """Paths (in the order first met) to their field; `truncated` past the bounds."""

    fields: dict[str, Field] = field(default_factory=dict)
    truncated: bool = False

    def prefixed(self, prefix: str) -> Shape:
        """The shape under a name: a flow step's paths read `login: $.token`."""
        return Shape({f"{prefix}: {p}": f for p, f in self.fields.items()}, self.truncated)

    def under(self, path: str) -> Shape:
        """Only `path` and what is below it (a GraphQL answer's `data`, not its `errors`)."""
        kept = {
            p: f
            for p, f in self.fields.items()
            if p == path or (p.startswith(path) and p[len(path)] in ".[")
        }
        return Shape(kept, self.truncated)

    def renamed(self, rename: Callable[[str], str]) -> Shape:
        """Every path passed through `rename` in one call (the redactor: one scan, not 500)."""
        paths = list(self.fields)
        renamed = rename("\n".join(paths)).split("\n")
        if len(renamed) != len(paths):  # a mask swallowed a line break: mask path by path
            renamed = [rename(p) for p in paths]
        return Shape(dict(zip(renamed, self.fields.values(), strict=True)), self.truncated)

    def to_json(self) -> str:
        return json.dumps(
            {
                "truncated": self.truncated,
                "fields": [[p, f.shown(), f.optional] for p, f in self.fields.items()],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Shape:
        data = json.loads(text)
        fields = {p: Field(frozenset(t.split("|")), bool(o)) for p, t, o in data["fields"]}
        return cls(fields, bool(data["truncated"]))


def combine(shapes: Iterable[Shape], max_paths: int = MAX_PATHS) -> Shape:
    """Several shapes with distinct paths (a flow's steps) as one, within the bound."""
    fields: dict[str, Field] = {}
    truncated = False
    for shape in shapes:
        truncated |= shape.truncated
        for path, f in shape.fields.items():
            if len(fields) >= max_paths:
                return Shape(fields, True)
            fields[path] = f
    return Shape(fields, truncated)


def kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):  # before numbers: True is an int in Python
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null"


def key_path(key: str) -> str:
    """The segment of an object key: `.total`, or `['odd key']` when it is not a name."""
    if _IDENT.match(key):
        return f".{key}"
    return "['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"


def parent_of(path: str) -> str | None:
    match = _LAST.search(path)
    return None if match is None else path[: match.start()]


def judged_absent(fields: dict[str, Field], path: str) -> bool:
    """Whether `path` missing from `fields` means the field is absent: its parent is there
    and an object. Array elements (`[*]`) are never absent: a list may be empty."""
    if path in fields or path.endswith(ELEMENT):
        return False
    parent = parent_of(path)
    holder = None if parent is None else fields.get(parent)
    return holder is not None and "object" in holder.types


def fold(a: dict[str, Field], b: dict[str, Field], max_paths: int = MAX_PATHS) -> dict[str, Field]:
    """What two samples of one place have in common: types united, and a field that one of
    them lacks (where it could have had it) optional. Array elements and learned bodies alike."""
    out: dict[str, Field] = {}
    for path, f in a.items():
        other = b.get(path)
        if other is not None:
            out[path] = Field(f.types | other.types, f.optional or other.optional)
        else:
            out[path] = Field(f.types, f.optional or judged_absent(b, path))
    for path, f in b.items():
        if path not in a and len(out) < max_paths:
            out[path] = Field(f.types, f.optional or judged_absent(a, path))
    return out


def shape_of(document: Any, max_paths: int = MAX_PATHS, max_depth: int = MAX_DEPTH) -> Shape:
    walk = _Walk(max_paths, max_depth)
    fields = walk.relative(document, 0)
    return Shape({ROOT + p: f for p, f in fields.items()}, walk.truncated)


class _Walk:
    """Builds paths relative to the value walked, each level kept within `max_paths`."""

    def __init__(self, max_paths: int, max_depth: int) -> None:
        self.max_paths = max_paths
        self.max_depth = max_depth
        self.truncated = False

    def relative(self, value: Any, depth: int) -> dict[str, Field]:
        fields = {"": Field(frozenset({kind_of(value)}))}
        if not isinstance(value, dict | list) or not value:
            return fields
        if depth >= self.max_depth:
            self.truncated = True
            return fields
        if isinstance(value, dict):
            for key, child in value.items():
                segment = key_path(str(key))
                if not self._add(fields, segment, self.relative(child, depth + 1)):
                    break
            return fields
        element: dict[str, Field] | None = None
        for item in value:
            sample = self.relative(item, depth + 1)
            element = sample if element is None else fold(element, sample, self.max_paths)
        assert element is not None  # a non-empty list
        self._add(fields, ELEMENT, element)
        return fields

    def _add(self, fields: dict[str, Field], segment: str, child: dict[str, Field]) -> bool:
        for path, f in child.items():
            if len(fields) >= self.max_paths:
                self.truncated = True
                return False
            fields[segment + path] = f
        return True
