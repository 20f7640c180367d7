"""Check types. A new type is one module, one entry here, one test file."""

from checks.base import CheckConfig, Result, RunContext
from checks.flow import FlowCheck
from checks.freshness import FreshnessCheck
from checks.graphql import GraphqlCheck
from checks.http import HttpCheck

REGISTRY: dict[str, type[CheckConfig]] = {
    "http": HttpCheck,
    "flow": FlowCheck,
    "freshness": FreshnessCheck,
    "graphql": GraphqlCheck,
}

__all__ = ["REGISTRY", "CheckConfig", "Result", "RunContext"]
