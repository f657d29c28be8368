"""boto3 clients, created once per process and reused (the endpoint comes from the standard AWS_ENDPOINT_URL*
settings, so this code runs unchanged in AWS and against the local endpoint)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import NoCredentialsError

if TYPE_CHECKING:
    from shopwise.dal.wire import DynamoDBWire

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


@cache
def dynamodb() -> DynamoDBWire:
    """DynamoDB's hot calls (BatchGetItem, BatchWriteItem, PutItem, GetItem, Query) without botocore's per-call machinery
    (``shopwise.dal.wire``): same endpoint, credentials, exceptions and events as ``client("dynamodb")``."""
    from shopwise.dal.wire import DynamoDBWire

    credentials = boto3.session.Session().get_credentials()
    if credentials is None:
        raise NoCredentialsError()
    return DynamoDBWire(client("dynamodb"), credentials)


def dynamodb_clients() -> tuple[Any, ...]:
    """Both ways this process calls DynamoDB: what a meter or a call counter attaches to (their ``meta.events``)."""
    return client("dynamodb"), dynamodb()


def reset_clients() -> None:
    """Forget cached clients, whose connections hold the endpoint they were made with (the local runtime calls this
    after it points the process at a new endpoint)."""
    if dynamodb.cache_info().currsize:
        dynamodb().close()
    dynamodb.cache_clear()
    client.cache_clear()
    for reset in _RESETS:
        reset()


def on_reset(reset: Callable[[], None]) -> None:
    _RESETS.append(reset)
