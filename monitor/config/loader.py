"""The config file: YAML -> validated models, with errors that name the file, line and key."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path as FsPath
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from checks import REGISTRY
from checks.base import CheckConfig
from monitor.config.alerting import AlertingSettings, SilenceConfig
from monitor.config.rules import AlertConfigError, RuleConfig, parse_alerts, validate_defaults
from monitor.config.settings import Config, MonitorSettings, NotifierConfig
from monitor.config.web import StatusPageSettings, exposure_issues
from monitor.config.yamlsrc import Path, SourceError, SourceMap, interpolate, load_yaml
from monitor.core.errors import ConfigError, ConfigIssue
from monitor.core.model import Model
from monitor.core.redact import redact
from monitor.core.units import brief

DEFAULT_CONFIG = "config/monitor.yaml"
# Ten thousand checks take about 2 MiB of YAML.
MAX_CONFIG_BYTES = 16 * 2**20
SECTIONS = ("monitor", "defaults", "notifiers", "checks", "alerting", "silences", "status_page")
M = TypeVar("M", bound=Model)


def resolve_config_path(arg: str | None) -> str:
    return arg or os.environ.get("INTMON_CONFIG") or DEFAULT_CONFIG


def load_config(
    file: str,
    env: Mapping[str, str] | None = None,
    registry: dict[str, type[CheckConfig]] | None = None,
    *,
    secrets_needed: bool = True,
) -> Config:
    """The config in `file`, validated. With `secrets_needed=False` (for commands that only
    read the database, such as `intmon status`), a `${NAME}` outside `monitor:` may be unset:
    it stands for a placeholder, and is an error only where the value cannot be checked
    without it (a URL that is all variable)."""
    try:
        with FsPath(file).open("rb") as handle:
            # Bounded: `--config /dev/zero` must end with a message, not fill the memory.
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(file, [ConfigIssue("", f"cannot read config: {exc.strerror}")]) from None
    if len(data) > MAX_CONFIG_BYTES:
        issue = ConfigIssue("", f"larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a config file")
        raise ConfigError(file, [issue])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # e.g. saved as Latin-1 by an editor
        line = exc.object[: exc.start].count(b"\n") + 1
        issue = ConfigIssue("", "not UTF-8 text: save the file as UTF-8", line)
        raise ConfigError(file, [issue]) from None
    return parse_config(text, file, env, registry, secrets_needed=secrets_needed)


def parse_config(
    text: str,
    file: str = "<memory>",
    env: Mapping[str, str] | None = None,
    registry: dict[str, type[CheckConfig]] | None = None,
    *,
    secrets_needed: bool = True,
) -> Config:
    """Validate everything in one pass; raise ConfigError listing every problem found."""
    try:
        raw, source = load_yaml(text)
    except SourceError as exc:
        raise ConfigError(
            file, [ConfigIssue(format_path(exc.path), exc.message, exc.line)]
        ) from None
    except yaml.reader.ReaderError as exc:  # a control character, e.g. NUL in a binary file
        where = text.count("\n", 0, exc.position) + 1
        problem = f"invalid YAML: character {exc.character:#x} is not allowed in YAML text"
        raise ConfigError(file, [ConfigIssue("", problem, where)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(file, [ConfigIssue("", f"invalid YAML: {problem}", line)]) from None
    return _Validator(file, source, registry or REGISTRY, secrets_needed).run(
        raw, os.environ if env is None else env
    )


class _Validator:
    def __init__(
        self,
        file: str,
        source: SourceMap,
        registry: dict[str, type[CheckConfig]],
        secrets_needed: bool = True,
    ) -> None:
        self.file = file
        self.source = source
        self.registry = registry
        self.secrets_needed = secrets_needed
        self.issues: list[ConfigIssue] = []
        # Keys whose ${VAR} is unset: their empty value would only add a second, confusing error.
        self.unset: set[Path] = set()
        # Keys whose unset ${VAR} stands for a placeholder, as secrets_needed=False allows.
        self.placeholders: dict[Path, str] = {}
        self.rule_cache: dict[str, dict[str, RuleConfig]] = {}
        # For the models' validators: files a config names (`file:`) are relative to its folder.
        self.context = {"config_dir": str(FsPath(file).parent)}

    def fail(self, path: Path, message: str) -> None:
        self.issues.append(ConfigIssue(format_path(path), message, self.source.line(path)))

    def run(self, raw: Any, env: Any) -> Config:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.fail((), "the config must be a mapping with monitor, defaults, notifiers, checks")
            raise ConfigError(self.file, self.issues)
        secrets: set[str] = set()
        raw = interpolate(
            raw,
            dict(env),
            self.unset_variable,
            secrets,
        )
        for key in raw:
            if key not in SECTIONS:
                self.fail((key,), f"unknown key (expected {', '.join(SECTIONS)})")

        monitor = self.model(MonitorSettings, raw.get("monitor") or {}, ("monitor",))
        raw_notifiers = self.sequence(raw, "notifiers")
        notifiers = [
            self.model(NotifierConfig, item, ("notifiers", i))
            for i, item in enumerate(raw_notifiers)
        ]
        alerting = self.model(AlertingSettings, raw.get("alerting") or {}, ("alerting",))
        silences = [
            self.model(SilenceConfig, item, ("silences", i))
            for i, item in enumerate(self.sequence(raw, "silences"))
        ]
        status_page = self.model(StatusPageSettings, raw.get("status_page") or {}, ("status_page",))
        defaults = self.defaults(raw.get("defaults") or {})
        default_alerts = defaults.pop("alerts", {})
        self.default_alerts(default_alerts)
        checks = [
            self.check(item, defaults, ("checks", i))
            for i, item in enumerate(self.sequence(raw, "checks"))
        ]
        rules = {
            check.name: self.rules(check, default_alerts, ("checks", i))
            for i, check in enumerate(checks)
            if check is not None
        }
        valid_checks = [c for c in checks if c is not None]
        if monitor is not None:
            for sub, message in exposure_issues(monitor.listen_host, checks):
                self.fail(("checks", *sub), message)
            # Not secrets to a check, but as good as passwords to an offline guesser: masked
            # wherever the config's secrets are (logs, results, errors).
            secrets.update(monitor.web.basic_auth_users.values())
        # A notifier with a bad URL is reported once, at its URL: checks routing to it by
        # name are not wrong, so they get no second, misleading "no notifier named" error.
        named = {
            item["name"]
            for item in raw_notifiers
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        }
        self.cross_checks(valid_checks, [n for n in notifiers if n is not None], named)
        if self.issues:
            # An issue may quote a value that came from ${ENV}; `intmon validate` runs under
            # systemd and a refused reload is logged, so the message goes to the journal.
            masked = [replace(i, message=redact(i.message, secrets)) for i in self.issues]
            raise ConfigError(self.file, masked)
        # An invalid section would have raised above.
        assert monitor is not None
        assert alerting is not None
        assert status_page is not None
        return Config(
            monitor=monitor,
            checks=valid_checks,
            notifiers=[n for n in notifiers if n is not None],
            rules=rules,
            alerting=alerting,
            silences=[s for s in silences if s is not None],
            status_page=status_page,
            secrets=frozenset(secrets),
            source=self.file,
        )

    def default_alerts(self, value: Any) -> None:
        if not isinstance(value, dict):
            self.fail(("defaults", "alerts"), "must be a mapping of rule name to settings")
            return
        try:
            validate_defaults(value)
        except AlertConfigError as exc:
            for sub, message in exc.issues:
                self.fail(("defaults", "alerts", *sub), message)

    def rules(self, check: CheckConfig, default_alerts: Any, path: Path) -> dict[str, RuleConfig]:
        defaults = default_alerts if isinstance(default_alerts, dict) else {}
        max_age = getattr(check, "max_age", None)
        # Most checks end up with identical (frozen) rules: share them. At 10,000 checks the
        # copies would be tens of megabytes.
        slo = check.slo is not None
        key = json.dumps([check.alerts, check.type, max_age, slo], sort_keys=True, default=str)
        if key in self.rule_cache:
            return self.rule_cache[key]
        try:
            rules = parse_alerts(check.alerts, defaults, check.type, max_age=max_age, slo=slo)
        except AlertConfigError as exc:
            for sub, message in exc.issues:
                self.fail((*path, "alerts", *sub), message)
            return {}
        self.rule_cache[key] = rules
        return rules

    def unset_variable(self, path: Path, name: str) -> str:
        if not self.secrets_needed and path[:1] != ("monitor",):
            # Long enough for a secret's minimum length, and a URL if it starts one.
            self.placeholders[path] = name
            return "http://unset.invalid/"
        self.unset.add(path)
        self.fail(path, f"environment variable {name} is not set")
        return ""

    def sequence(self, raw: dict[str, Any], key: str) -> list[Any]:
        value = raw.get(key) or []
        if not isinstance(value, list):
            self.fail((key,), "must be a list")
            return []
        return value

    def defaults(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(("defaults",), "must be a mapping of check fields")
            return {}
        known = {name for cls in self.registry.values() for name in _field_names(cls)}
        for key in value:
            if key not in known or key in ("name", "type"):
                self.fail(("defaults", key), "unknown key: not a field of any check type")
        return {k: v for k, v in value.items() if k in known and k not in ("name", "type")}

    def check(self, item: Any, defaults: dict[str, Any], path: Path) -> CheckConfig | None:
        if not isinstance(item, dict):
            self.fail(path, "each check must be a mapping")
            return None
        kind = item.get("type", "http")
        cls = self.registry.get(kind) if isinstance(kind, str) else None
        if cls is None:
            known = ", ".join(sorted(self.registry))
            self.fail((*path, "type"), f"unknown check type {kind!r} (one of: {known})")
            return None
        fields = _field_names(cls)
        # defaults.alerts is layered by the rules themselves (monitor.config.rules.parse_alerts).
        merged = deep_merge({k: v for k, v in defaults.items() if k in fields}, item)
        merged["type"] = kind
        return self.model(cls, merged, path)

    def model(self, cls: type[M], data: Any, path: Path) -> M | None:
        try:
            return cls.model_validate(data, context=self.context)
        except ValidationError as exc:
            for error in exc.errors():
                full = (*path, *_data_path(data, error["loc"]))
                if full in self.placeholders and path[0] == "notifiers":
                    continue  # left out: the commands that allow placeholders never notify
                if full in self.placeholders:
                    name = self.placeholders[full]
                    self.fail(full, f"environment variable {name} is not set, and needed here")
                elif full not in self.unset:
                    self.fail(full, _message(error))
            return None

    def cross_checks(
        self, checks: list[CheckConfig], notifiers: list[NotifierConfig], notifier_names: set[str]
    ) -> None:
        seen: dict[str, int] = {}
        for index, check in enumerate(checks):
            if check.name in seen:
                self.fail(
                    ("checks", index, "name"),
                    f"duplicate check name {check.name!r} (also checks[{seen[check.name]}])",
                )
            seen.setdefault(check.name, index)
            for j, target in enumerate(check.notify):
                if target not in notifier_names:
                    self.fail(("checks", index, "notify", j), f"no notifier named {target!r}")
        names = [n.name for n in notifiers]
        for index, name in enumerate(names):
            if name in names[:index]:
                self.fail(("notifiers", index, "name"), f"duplicate notifier name {name!r}")


def _field_names(cls: type[Model]) -> set[str]:
    names = set(cls.model_fields)
    names.update(f.alias for f in cls.model_fields.values() if f.alias)
    return names


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` wins; nested mappings are merged key by key (defaults.request.headers...)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _data_path(data: Any, loc: tuple[int | str, ...]) -> Path:
    """Keep only the parts of a pydantic error location that exist in the data.

    Pydantic adds union member and validator names to locations; the user only knows keys.
    """
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
        elif index == len(loc) - 1:
            path.append(part)  # a missing required key, or an unknown one: name it
    return tuple(path)


def _message(error: Any) -> str:
    kind, msg, value = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        return str(msg).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return f"{brief(value)} must match {error['ctx']['pattern']}"
    if kind == "literal_error":
        return f"{brief(value)} is not allowed: {msg.removeprefix('Input should be ')}"
    if isinstance(value, str | int | float | bool) and not isinstance(value, dict):
        return f"{brief(value)}: {msg[0].lower()}{msg[1:]}"
    return str(msg[0].lower() + msg[1:])


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
