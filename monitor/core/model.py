"""The base of every config and status model, for the daemon and the check types alike."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Names of checks and providers: safe in metric labels, URLs and file names.
NAME_PATTERN = r"^[a-z0-9_.-]+$"


class Model(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StatusModel(Model):
    """Base for what the status API, the status page and `intmon status` show.

    A field that may be `None` is a key the JSON always has, `null` when unknown; a field
    that may be `MISSING` is a key the JSON leaves out. Attribute docstrings become the
    descriptions in the published JSON Schema.
    """

    model_config = ConfigDict(use_attribute_docstrings=True)
