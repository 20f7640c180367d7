"""`--env-file`: the variables of a systemd `EnvironmentFile=`, read as systemd reads them.

So `intmon validate --env-file /etc/intmon/intmon.env` sees what the service will see. The
syntax (systemd.exec(5), and systemd's env-file parser): `KEY=VALUE` lines; blank lines, lines
without `=` and lines starting with `#` or `;` are skipped; whitespace around key and value is
dropped; a value may be 'single-quoted' (verbatim) or "double-quoted" (backslash escapes only
`"`, `\\`, `` ` ``, `$` and a newline), either spanning lines; unquoted, a backslash keeps the
next character and continues the line before a newline. There is no `export`, no `${}`
expansion and no comment after a value. A name that is not `[A-Za-z_][A-Za-z0-9_]*` (such as
`export TOKEN`) is skipped, as systemd skips it: `ignored` lists those lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from monitor.core.errors import ConfigError, ConfigIssue

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WHITESPACE = " \t\r"
_DOUBLE_QUOTE_ESCAPES = '"\\`$'


@dataclass
class EnvFile:
    values: dict[str, str] = field(default_factory=dict)
    ignored: list[tuple[int, str]] = field(default_factory=list)  # (line, key) not a valid name


def read_env_file(file: str) -> EnvFile:
    try:
        text = Path(file).read_bytes().decode("utf-8")
    except OSError as exc:
        issue = ConfigIssue("", f"cannot read env file: {exc.strerror}")
        raise ConfigError(file, [issue]) from None
    except UnicodeDecodeError as exc:  # systemd refuses such a file too
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(file, [ConfigIssue("", "not UTF-8 text", line)]) from None
    return parse_env_file(text)


def parse_env_file(text: str) -> EnvFile:
    """systemd's state machine (src/basic/env-file.c), one character at a time."""
    parser = _Parser()
    for char in text:
        getattr(parser, parser.state)(char)
        if char == "\n":
            parser.line += 1
    if parser.state not in ("pre_key", "key", "comment", "comment_escape"):
        parser.push()  # the last value, without a newline after it
    return parser.out


class _Parser:
    """One method per state of systemd's parser; each takes the next character."""

    def __init__(self) -> None:
        self.out = EnvFile()
        self.state = "pre_key"
        self.name = self.text = ""  # the key and the value read so far
        self.line = self.key_line = 1
        self.trailing = 0  # unquoted whitespace at the end of `value`, dropped with the line

    def push(self) -> None:
        name = self.name.rstrip(_WHITESPACE)
        if _NAME.fullmatch(name):
            end = len(self.text) - self.trailing
            self.out.values[name] = self.text[:end]
        else:
            self.out.ignored.append((self.key_line, name))

    def end_line(self) -> None:
        self.push()
        self.state = "pre_key"

    def pre_key(self, char: str) -> None:
        if char in "#;":
            self.state = "comment"
        elif char != "\n" and char not in _WHITESPACE:
            self.state, self.name, self.key_line = "key", char, self.line

    def key(self, char: str) -> None:
        if char == "\n":
            self.state = "pre_key"  # no `=`: skipped
        elif char == "=":
            self.state, self.text, self.trailing = "pre_value", "", 0
        else:
            self.name += char

    def pre_value(self, char: str) -> None:
        quoted = {"'": "single", '"': "double", "\\": "escape"}
        if char == "\n":
            self.end_line()
        elif char in quoted:
            self.state = quoted[char]
        elif char not in _WHITESPACE:  # after a closing quote too: 'a'b is ab
            self.state, self.text, self.trailing = "value", self.text + char, 0

    def value(self, char: str) -> None:
        if char == "\n":
            self.end_line()
        elif char == "\\":
            self.state, self.trailing = "escape", 0
        else:
            self.text += char
            self.trailing = self.trailing + 1 if char in _WHITESPACE else 0

    def escape(self, char: str) -> None:
        self.state = "value"
        if char != "\n":  # a backslash before a newline continues the line
            self.text += char

    def single(self, char: str) -> None:
        if char == "'":
            self.state = "pre_value"
        else:
            self.text += char

    def double(self, char: str) -> None:
        if char == '"':
            self.state = "pre_value"
        elif char == "\\":
            self.state = "double_escape"
        else:
            self.text += char

    def double_escape(self, char: str) -> None:
        self.state = "double"
        if char in _DOUBLE_QUOTE_ESCAPES:
            self.text += char
        elif char != "\n":  # a newline after a backslash continues the line
            self.text += "\\" + char

    def comment(self, char: str) -> None:
        if char == "\\":
            self.state = "comment_escape"
        elif char == "\n":
            self.state = "pre_key"

    def comment_escape(self, char: str) -> None:
        self.state = "comment"
