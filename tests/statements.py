"""Which statements SQLAlchemy had to compile instead of taking them from its cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import CacheStats


@contextmanager
def compiled_afresh(engine: Engine) -> Iterator[list[str]]:
    """The SQL of each statement executed on `engine` within the block that was compiled
    there and then: one SQLAlchemy cannot cache (`[no key]`), or one it meets the first time.
    Compiling costs more CPU than the rest of a small statement's execution."""
    fresh: list[str] = []

    def executing(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if getattr(context, "cache_hit", None) is not CacheStats.CACHE_HIT:
            fresh.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", executing)
    try:
        yield fresh
    finally:
        event.remove(engine, "before_cursor_execute", executing)
