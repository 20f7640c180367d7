"""The daemon's own error types. A failing *target* is never an exception: it is a Result."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConfigIssue:
    """One problem in a config file: where it is and what is wrong."""

    path: str  # key path, e.g. "checks[2].interval"
    message: str
    line: int | None = None

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class ConfigError(Exception):
    """A config file that cannot be used. Carries every issue found in one pass."""

    file: str
    issues: list[ConfigIssue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(issue.render(self.file) for issue in self.issues)


class DeliveryError(Exception):
    """A notification that did not go out. `permanent` errors are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
