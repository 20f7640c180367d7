"""What the subcommands share: exit codes, the plain-text table and its cells, and a database
the user pointed us at as a user error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from sqlalchemy.exc import SQLAlchemyError

from monitor.config.settings import Config
from monitor.core.errors import StorageError
from monitor.core.redact import redact
from monitor.core.units import format_duration
from monitor.storage.store import Store

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


@contextlib.contextmanager
def database(config: Config, doing: str) -> Iterator[None]:
    """A database the user pointed us at that cannot be used (a path, a server, a newer schema)
    is theirs to fix, not a bug: say which database, without a traceback."""
    try:
        yield
    except (SQLAlchemyError, StorageError) as exc:
        message = f"cannot {doing} the database {config.monitor.database}: {exc}"
        # The URL may carry a password, written literally or through ${ENV}.
        raise StorageError(redact(message, config.secrets)) from exc


@contextlib.contextmanager
def opened_store(config: Config, *, writing: bool) -> Iterator[Store]:
    """The configured database, opened by this process rather than the daemon's, and closed
    after. Reading never creates, upgrades or vacuums: a daemon may be writing. Writing goes
    straight to the database, since the daemon's writer is not in this process to use."""
    store = Store(config.monitor.database_url, read_only=not writing)
    with database(config, "use" if writing else "read"), contextlib.closing(store):
        store.open()
        yield store


def table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [header, *[[str(c) for c in row] + [""] * (len(header) - len(row)) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def quota_cell(remaining: object, limit: object) -> str:
    # A limit without a remaining count says nothing about what is left.
    if not isinstance(remaining, int | float) or not isinstance(limit, int | float) or not limit:
        return "-"
    return f"{remaining:g}/{limit:g}"


def sunset_cell(deprecated: bool, left: float | None) -> str:
    """Time left to an announced sunset, `deprecated` without a date, `-` when neither."""
    if not deprecated:
        return "-"
    return "deprecated" if left is None else format_duration(left, coarse=True)
