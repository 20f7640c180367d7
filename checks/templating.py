"""`{{ var }}` placeholders in flow requests. Pure: no I/O.

Rules, chosen so a flow reads like the client code it imitates:
- a string that is exactly one placeholder takes the variable's value with its JSON type, so
  `{"id": "{{ id }}"}` sends the number 7, not "7";
- inside a longer string the value is inserted as text (JSON for objects, lists, booleans);
- in a URL, values after the first character are percent-encoded (an id with a `/` stays one
  path segment); a placeholder at the very start is inserted as is, so `{{ base }}/items` works.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class MissingVariable(Exception):
    """A placeholder names a variable that is not set (yet).

    Config validation rejects names nothing defines, so at run time this means the step that
    extracts it failed first: the flow skips that cleanup step or records an `assertion` Result.
    Part of a target's failing run, not a fault of intmon, so it stays outside
    `monitor.core.errors.IntmonError` (like checks.tokens.AuthError).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def references(value: Any) -> set[str]:
    """Every variable name a value (string, list, mapping keys and values) refers to."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(references(k) | references(v) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value))
    return set()


def render(value: Any, variables: dict[str, Any]) -> Any:
    """Substitute placeholders everywhere in a JSON-like value. Raises MissingVariable."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return _lookup(whole.group(1), variables)
        return PLACEHOLDER.sub(lambda m: _text(_lookup(m.group(1), variables)), value)
    if isinstance(value, dict):
        return {render_text(str(k), variables): render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    return value


def render_text(value: str, variables: dict[str, Any]) -> str:
    """Substitute placeholders in a string that must stay a string (headers, params, body)."""
    return PLACEHOLDER.sub(lambda m: _text(_lookup(m.group(1), variables)), value)


def render_url(url: str, variables: dict[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        text = _text(_lookup(match.group(1), variables))
        return text if match.start() == 0 else quote(text, safe="")

    return PLACEHOLDER.sub(substitute, url)


def _lookup(name: str, variables: dict[str, Any]) -> Any:
    if name not in variables:
        raise MissingVariable(name)
    return variables[name]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
