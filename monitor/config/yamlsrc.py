"""YAML loading that remembers where every key came from, so errors can name the line.

The file may be hostile (a typo, a binary, an alias bomb): loading it never raises anything but
`yaml.YAMLError` (malformed YAML) or `SourceError` (YAML intmon will not read), and its cost is
bounded by the file's length, whatever its aliases would expand to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.resolver import Resolver

from monitor.core.units import brief

Path = tuple[str | int, ...]

# A config is a handful of levels deep (checks[0].expect.json...); 64 leaves room for inline
# JSON bodies and schemas while keeping every recursive walk far from Python's stack limit.
MAX_DEPTH = 64
# Nodes that aliases may add to the document, counting every expansion. An alias bomb
# ("billion laughs") grows exponentially; a config reusing a few anchors adds a few thousand.
MAX_ALIASED_NODES = 100_000
_STR_TAG = "tag:yaml.org,2002:str"
# What a YAML 1.1 plain scalar turned into, in words: `on:` and `yes:` are booleans.
_KINDS = {"int": "a number", "float": "a number", "bool": "a boolean", "null": "null"}
_MERGE_TAG = "tag:yaml.org,2002:merge"


class SourceError(Exception):
    """YAML that parsed but that intmon refuses to read: where, and why."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.message = message


class SourceMap:
    """Maps a key path (("checks", 2, "interval")) to its 1-based line in the file."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def line(self, path: Path) -> int | None:
        # Fall back to the nearest ancestor: a missing key is reported where its parent starts.
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def load_yaml(text: str) -> tuple[Any, SourceMap]:
    """Parse YAML text; raises yaml.YAMLError (with a mark) on malformed input and SourceError
    on YAML that is too deep, expands too far, or has keys that are not text."""
    try:
        return _load(text, _Loader)
    except yaml.YAMLError:
        if _Loader is _PyLoader:
            raise
    # PyYAML's own parser says what it found where libyaml's says only what it expected:
    # read the broken file again with it, for its message (this raises).
    return _load(text, _PyLoader)


def _load(text: str, kind: type[_Bounds]) -> tuple[Any, SourceMap]:
    loader = kind(text)
    try:
        node = loader.get_single_node()
        source = SourceMap()
        if node is None:
            return None, source
        _index(node, (), source, loader.paths)
        return loader.construct_document(node), source
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: Path, source: SourceMap, paths: dict[int, Path]) -> None:
    # Aliased nodes are walked once per use: the composer bounded how many that makes.
    source.lines.setdefault(path, node.start_mark.line + 1)
    paths.setdefault(id(node), path)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            source.lines[(*path, key)] = key_node.start_mark.line + 1
            _index(value_node, (*path, key), source, paths)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, (*path, index), source, paths)


# The mixin below calls what a loader has; at run time it must not bring PyYAML's pure-Python
# parser in ahead of libyaml's.
if TYPE_CHECKING:
    _Loading = yaml.SafeLoader
else:
    _Loading = object


class _Bounds(_Loading):
    """A loader with bounds: nesting depth, alias expansion, text keys, no duplicate keys.
    Mixed into either parser."""

    def _start(self) -> None:
        """The bounds' own state; each loader calls it after its parser's __init__."""
        self.trail: list[str | int] = []  # the key path of the node being composed
        self.open_anchors: set[str] = set()  # anchors whose node is still being composed
        self.sizes: dict[int, int] = {}  # id(node) -> how many nodes it expands to
        self.aliased = 0
        self.paths: dict[int, Path] = {}  # id(node) -> its first key path, for value errors

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        line = event.start_mark.line + 1
        composing_key = isinstance(parent, yaml.MappingNode) and index is None
        if composing_key and isinstance(event, SequenceStartEvent | MappingStartEvent):
            raise SourceError(tuple(self.trail), line, "a key must be text, not a list or mapping")
        if isinstance(event, AliasEvent):
            if event.anchor in self.open_anchors:
                raise SourceError(
                    tuple(self.trail), line, f"alias *{event.anchor} refers to itself"
                )
            node = super().compose_node(parent, index)
            self.aliased += self.sizes.get(id(node), 1)
            if self.aliased > MAX_ALIASED_NODES:
                raise SourceError(
                    tuple(self.trail),
                    line,
                    f"aliases expand to more than {MAX_ALIASED_NODES} values "
                    "(an alias bomb?): write the repeated parts out, or use defaults:",
                )
        else:
            node = self._compose_new(parent, index, event.anchor, line)
        if composing_key:
            self._check_key(node, line)
        return node

    def _compose_new(
        self, parent: yaml.Node | None, index: Any, anchor: str | None, line: int
    ) -> yaml.Node | None:
        part = index if isinstance(index, int) else index.value if index is not None else None
        if part is not None:
            self.trail.append(part)
        if len(self.trail) > MAX_DEPTH:
            raise SourceError(tuple(self.trail[:8]), line, f"nested deeper than {MAX_DEPTH} levels")
        if anchor is not None:
            self.open_anchors.add(anchor)
        node = super().compose_node(parent, index)
        self.open_anchors.discard(anchor or "")
        if part is not None:
            self.trail.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        self.sizes[id(node)] = 1 + sum(self.sizes[id(child)] for child in children)
        return node

    def _check_key(self, node: yaml.Node | None, line: int) -> None:
        where = tuple(self.trail)
        if not isinstance(node, yaml.ScalarNode):
            raise SourceError(where, line, "a key must be text, not a list or mapping")
        if node.tag == _MERGE_TAG:
            raise SourceError(where, line, "merge keys (<<) are not supported: use defaults:")
        if node.tag != _STR_TAG:
            kind = _KINDS.get(node.tag.rsplit(":", 1)[-1], "not text")
            raise SourceError(where, line, f"key {brief(node.value)} is {kind}: quote it")

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            # A scalar its tag cannot hold: `2024-13-45` (a date), `!!float abc`, a 5000-digit
            # number (beyond Python's int conversion limit).
            kind = node.tag.rsplit(":", 1)[-1]
            path = self.paths.get(id(node), ())
            detail = str(exc).split(":")[0]  # the digits limit goes on to advise a Python call
            message = f"{brief(str(node.value))} is not a valid {kind}: {detail}"
            raise SourceError(path, node.start_mark.line + 1, message) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Refuse duplicate keys instead of silently keeping the last one.
        seen: set[str] = set()
        for key_node, _ in node.value:
            key = key_node.value  # text, as _check_key made sure
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _PyLoader(_Bounds, yaml.SafeLoader):
    def __init__(self, text: str) -> None:
        yaml.SafeLoader.__init__(self, text)
        self._start()


def _fast_loader() -> type[_Bounds]:
    """libyaml's scanner and parser with PyYAML's composer: scanning in pure Python is most of
    the time a config takes to load (5 s at 10,000 checks), while composing in Python keeps
    the bounds above, which libyaml's own composer would skip. Without libyaml: PyYAML's."""
    try:
        from yaml._yaml import CParser  # noqa: PLC0415 (only where libyaml is built)
    except ImportError:
        return _PyLoader

    class FastLoader(_Bounds, Composer, CParser, SafeConstructor, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start()

    return FastLoader


_Loader = _fast_loader()

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(
    data: Any,
    env: dict[str, str],
    on_missing: Callable[[Path, str], str],
    secrets: set[str],
    path: Path = (),
) -> Any:
    """Replace `${NAME}` (and `${NAME:-default}`) in every string; `$$` is a literal `$`.

    Every substituted value is added to `secrets` so it can be redacted wherever it could leak.
    An unset variable is `on_missing`'s to report; what it returns stands in for it.
    """
    if isinstance(data, dict):
        return {k: interpolate(v, env, on_missing, secrets, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, on_missing, secrets, (*path, i)) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            secrets.add(env[name])
            return env[name]
        if default is not None:
            return default
        return on_missing(path, name)

    return _ENV_REF.sub(substitute, data)
