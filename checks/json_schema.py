"""`expect.json_schema`: a JSON Schema the body must satisfy, checked once at config load.

The schema is checked against its draft's meta-schema and compiled when the config loads, and
the one validator serves every run. Nothing a schema says makes intmon fetch anything: the
registry holds only the schema itself and the drafts' meta-schemas and refuses every other
URI, at load and at run time, and a `$ref` to a URL is a config error.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urljoin

from jsonschema import exceptions, validators
from jsonschema.protocols import Validator
from pydantic import PlainSerializer, PlainValidator, ValidationInfo
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

# A schema is a page or two; a megabyte is no schema but a mistake (or an attack).
MAX_SCHEMA_BYTES = 2**20
# Best match among the first few errors: a body that breaks the schema everywhere must not
# cost a full scan on every run.
_ERRORS_CONSIDERED = 50
_MESSAGE_CHARS = 160
_DRAFTS: tuple[type[Validator], ...] = (
    validators.Draft4Validator,
    validators.Draft6Validator,
    validators.Draft7Validator,
    validators.Draft201909Validator,
    validators.Draft202012Validator,
)
_FETCHED_SCHEMES = re.compile(r"^(https?|ftp|file):", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _uri(value: object) -> str:
    return str(value).rstrip("#") if isinstance(value, str) else ""


_BY_URI = {_uri(cls.META_SCHEMA.get("$id", cls.META_SCHEMA.get("id"))): cls for cls in _DRAFTS}


def _refuse(uri: str) -> Resource[Any]:
    # referencing builds its classes with attrs through a wrapper mypy cannot see through.
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


class JsonSchema:
    """A checked, compiled schema. Equal when the schemas are, so a reload sees no change."""

    def __init__(self, schema: Any, origin: str = "") -> None:
        where = f"{origin}: " if origin else ""
        if not isinstance(schema, dict | bool):
            raise ValueError(f"{where}a JSON Schema is a mapping (or true/false)")
        draft = _draft(schema, where)
        try:
            error = exceptions.best_match(draft(draft.META_SCHEMA).iter_errors(schema))
        except RecursionError:
            raise ValueError(f"{where}the schema is nested too deeply") from None
        if error is not None:
            inside = _pointer(error.absolute_path)
            raise ValueError(f"{where}{inside}{_short(error.message)} (not a valid JSON Schema)")
        _refuse_fetches(schema, where)
        self.schema = schema
        refusing = Registry(retrieve=_refuse)  # type: ignore[call-arg]  # (see _refuse)
        self.validator = draft(schema, registry=refusing)

    def violation(self, document: Any) -> str | None:
        """Why the document breaks the schema: the best of its first errors, at its JSON path."""
        try:
            errors = itertools.islice(self.validator.iter_errors(document), _ERRORS_CONSIDERED)
            error = exceptions.best_match(errors)
        except Unresolvable as exc:
            return f"json_schema: {exc} (intmon resolves only references inside the schema)"
        except RecursionError:
            return "json_schema: the body is nested too deeply to check"
        if error is None:
            return None
        return f"{json_path(error.absolute_path)}: {_short(error.message)} ({error.validator})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonSchema) and other.schema == self.schema

    def __hash__(self) -> int:
        return hash(json.dumps(self.schema, sort_keys=True, default=str))

    def __repr__(self) -> str:
        return f"JsonSchema({_short(json.dumps(self.schema, default=str))})"


def _draft(schema: dict[str, Any] | bool, where: str) -> type[Validator]:
    declared = schema.get("$schema") if isinstance(schema, dict) else None
    if declared is None:
        return validators.Draft202012Validator
    draft = _BY_URI.get(_uri(declared))
    if draft is None:
        known = ", ".join(sorted(_BY_URI))
        problem = f"$schema {_short(repr(declared))} is not a draft"
        raise ValueError(f"{where}{problem} (one of: {known})")
    return draft


def _refuse_fetches(schema: Any, where: str) -> None:
    """A `$ref` to a URL the schema does not itself declare (as an `$id`) would need a fetch.

    Resolved against the root's `$id` only: what a nested `$id` makes of a `$ref` the registry
    refuses at run time, and the run fails saying so."""
    ids, refs = set(), []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("$id"), str):
                ids.add(node["$id"].split("#")[0])
            for key in ("$ref", "$dynamicRef", "$recursiveRef"):
                if isinstance(node.get(key), str):
                    refs.append(node[key])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    base = schema.get("$id") if isinstance(schema, dict) else None
    base = base if isinstance(base, str) else ""
    ids = {urljoin(base, i) for i in ids}
    for ref in refs:
        target = urljoin(base, ref).split("#")[0]
        if _FETCHED_SCHEMES.match(target) and target not in ids:
            raise ValueError(
                f"{where}$ref {_short(repr(ref))} points outside the schema, and intmon "
                "fetches no schemas: put what it refers to in $defs"
            )


def load(value: Any, info: ValidationInfo) -> JsonSchema:
    """Inline (a mapping) or `{file: path}`, the path relative to the config file's folder."""
    if isinstance(value, JsonSchema):
        return value
    if isinstance(value, dict) and set(value) == {"file"}:
        base = (info.context or {}).get("config_dir", ".")
        name = str(value["file"])
        return JsonSchema(_read(Path(base) / name, name), origin=name)
    return JsonSchema(value)


def _read(path: Path, name: str) -> Any:
    """The file's JSON; errors name it as the config does."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SCHEMA_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {name!r}: {exc.strerror}") from None
    if len(data) > MAX_SCHEMA_BYTES:
        raise ValueError(f"{name!r} is larger than {MAX_SCHEMA_BYTES // 2**20} MiB")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        problem = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ValueError(f"{name!r} is not JSON: {problem}") from None


def json_path(parts: Any) -> str:
    """`$.data.items[0].total`; keys that are not identifiers as `['a key']` (RFC 9535)."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}"
        else:
            out += "[" + repr(part) + "]"
    return out


def _pointer(parts: Any) -> str:
    path = ".".join(str(part) for part in parts)
    return f"{path}: " if path else ""


def _short(text: str) -> str:
    """Messages quote the offending value, which may be a whole object."""
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def _dump(value: JsonSchema) -> Any:
    return value.schema


# The type of `expect.json_schema`: checked and compiled while the config is validated.
SchemaField = Annotated[JsonSchema, PlainValidator(load), PlainSerializer(_dump)]
