"""The base of every config model, for the daemon and the check types alike."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Names of checks and providers: safe in metric labels, URLs and file names.
NAME_PATTERN = r"^[a-z0-9_.-]+$"


class Model(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
