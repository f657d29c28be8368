"""A local stack shared by the end-to-end tests of one module: moto server, resources, the real handlers, the
stream poller and the HTTP API, on free loopback ports, with its state in a temporary folder."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shopwise.dal.aws import client, dynamodb_clients
from shopwise_local.endpoint import free_port
from shopwise_local.stack import LocalStack

SERVER_ROUTES = ("/v1/events", "/v1/users/", "/v1/rank")


def server_path(path: str) -> str:
    """The store's servers' route for a storefront path: /v1/events -> /v1/server/events, and likewise."""
    return path.replace("/v1/", "/v1/server/", 1) if path.startswith(SERVER_ROUTES) else path


class Api:
    """The local HTTP API, called as the store's servers do (``get``/``post``: IAM-signed, through the
    /v1/server/ routes), as a shopper's browser does (``browser``: a token), or with no credential (``call``)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def admin(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """A server or admin route, called as the store's servers do: signed with IAM credentials (SigV4)."""
        from shopwise_local.sigv4 import signed_headers

        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
        headers = signed_headers(method, f"{self.url}{path}", data, {"Content-Type": "application/json"})
        return self.call(method, path, data, headers)

    def get(self, path: str) -> tuple[int, Any]:
        return self.admin("GET", server_path(path), None)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self.admin("POST", server_path(path), body)

    def browser(self, method: str, path: str, token: str, body: Any = None, origin: str = "") -> tuple[int, Any]:
        """As a shopper's browser calls it: with the token the store's backend minted (and its page's origin)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if origin:
            headers["Origin"] = origin
        return self.call(method, path, body, headers)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("shopwise-home")
    previous = os.environ.get("SHOPWISE_HOME")
    os.environ["SHOPWISE_HOME"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("SHOPWISE_HOME", None)
    else:
        os.environ["SHOPWISE_HOME"] = previous


@pytest.fixture(scope="module")
def stack(state_dir: Path) -> Iterator[LocalStack]:
    local = LocalStack(state_dir, free_port(), free_port())
    try:
        local.start_endpoint()
        local.create_resources()
        local.start_functions()
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Api:
    assert stack.api
    return Api(stack.api.url)


def drain(queue_url: str) -> list[dict[str, Any]]:
    """Every message waiting on a queue, as parsed JSON bodies, deleted as read (PurgeQueue allows one call a
    minute)."""

    sqs = client("sqs")
    bodies: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return bodies


@contextmanager
def dynamodb_calls() -> Iterator[list[str]]:
    """The DynamoDB operations this process sends while the block runs (the serve handler shares the client)."""
    seen: list[str] = []

    def count(model: Any, **_kwargs: Any) -> None:
        seen.append(model.name)

    clients = dynamodb_clients()  # boto3's and the wire's (shopwise.dal.wire)
    for ddb in clients:
        ddb.meta.events.register("before-call.dynamodb", count)
    try:
        yield seen
    finally:
        for ddb in clients:
            ddb.meta.events.unregister("before-call.dynamodb", count)
