"""boto3 clients, created once per process and reused (the endpoint comes from the standard AWS_ENDPOINT_URL*
settings, so this code runs unchanged in AWS and against the local endpoint)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# parameter_validation: our requests are built by code under test, and DynamoDB validates them anyway; botocore's
# client-side walk over every nested attribute value was a tenth of the updater's CPU (tests/bench/bench_update.py)
_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "adaptive"}, connect_timeout=2, read_timeout=10, parameter_validation=False
)


# what else caches a connection to the endpoint (PynamoDB models bound to a table: ``shopwise.dal.pynamo``)
_RESETS: list[Callable[[], None]] = []


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Forget cached clients, whose connections hold the endpoint they were made with (the local runtime calls this
    after it points the process at a new endpoint)."""
    client.cache_clear()
    for reset in _RESETS:
        reset()


def on_reset(reset: Callable[[], None]) -> None:
    _RESETS.append(reset)
