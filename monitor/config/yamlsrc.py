"""YAML loading that remembers where every key came from, so errors can name the line."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

Path = tuple[str | int, ...]


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
    """Parse YAML text; raises yaml.YAMLError (with a mark) on malformed input."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    source = SourceMap()
    if node is None:
        return None, source
    _index(node, (), source)
    data = yaml.load(text, Loader=_UniqueKeyLoader)
    return data, source


def _index(node: yaml.Node, path: Path, source: SourceMap) -> None:
    source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            source.lines[(*path, key)] = key_node.start_mark.line + 1
            _index(value_node, (*path, key), source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, (*path, index), source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(
    data: Any,
    env: dict[str, str],
    on_missing: Callable[[Path, str], None],
    secrets: set[str],
    path: Path = (),
) -> Any:
    """Replace `${NAME}` (and `${NAME:-default}`) in every string; `$$` is a literal `$`.

    Every substituted value is added to `secrets` so it can be redacted wherever it could leak.
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
        on_missing(path, name)
        return ""

    return _ENV_REF.sub(substitute, data)
