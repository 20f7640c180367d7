"""Check types. A new type is one module, one entry here, one test file."""

from checks.base import CheckConfig, Result, RunContext
from checks.http import HttpCheck

REGISTRY: dict[str, type[CheckConfig]] = {
    "http": HttpCheck,
}

__all__ = ["REGISTRY", "CheckConfig", "Result", "RunContext"]
