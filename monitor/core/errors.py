"""The daemon's own faults, as one hierarchy rooted at `IntmonError`.

A failing *target* is never an exception: it is a Result (`checks/base.py`). What derives from
`IntmonError` is something an operator can fix (a config file, a database, a notifier), so the
command line prints its message and exits 1 (2 for a `ConfigError`) without a traceback.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class IntmonError(Exception):
    """Root of intmon's own errors. Subclasses carry what went wrong as data, not only text."""


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
class ConfigError(IntmonError):
    """A config file that cannot be used. Carries every issue found in one pass."""

    file: str
    issues: list[ConfigIssue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(issue.render(self.file) for issue in self.issues)


class DeliveryError(IntmonError):
    """A notification that did not go out. `permanent` errors are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class StorageError(IntmonError):
    """The database cannot be used as it is: unreachable, refused, or of a schema we do not know."""
