"""Run the real Lambda handlers in-process, with the event shapes AWS sends them.

A handler module is loaded from ``lambdas/<name>/handler.py``; each has its own lock so it sees one invocation at a
time, as one Lambda execution environment does.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

from shopwise_local.paths import LAMBDAS_DIR, state_dir

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 1024
    timeout_ms: int = 30_000
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    function_version: str = "$LATEST"
    _deadline: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.timeout_ms - (time.monotonic() - self._deadline) * 1000))


class _FunctionOutput(io.TextIOBase):
    """stdout that sends what a function prints (logs, EMF metrics) to that function's log file, as CloudWatch
    Logs would take it, and everything else to the terminal."""

    def __init__(self, terminal: Any) -> None:
        self.terminal = terminal
        self.current = threading.local()

    def _target(self) -> Any:
        target = getattr(self.current, "log", None) or self.terminal
        return sys.__stdout__ if getattr(target, "closed", False) else target  # a capture that ended since

    def write(self, text: str) -> int:
        return int(self._target().write(text))

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return bool(self.terminal.isatty())


_OUTPUT: _FunctionOutput | None = None


def _function_output() -> _FunctionOutput:
    """The one stdout every local function writes through (one, because a function's logger binds the stream it
    saw first: a second wrapper would leave that logger writing to the terminal). When something replaced stdout
    since (pytest's capture), what is not a function's goes there from now on."""
    global _OUTPUT
    if _OUTPUT is None:
        _OUTPUT = _FunctionOutput(sys.stdout)
    if sys.stdout is not _OUTPUT:
        _OUTPUT.terminal = sys.stdout
        sys.stdout = _OUTPUT
    return _OUTPUT


class _Tee:
    """A function's log file, and the log subscription that reads the same lines."""

    def __init__(self, log: Any, subscription: Any) -> None:
        self.log = log
        self.subscription = subscription

    def write(self, text: str) -> int:
        self.subscription.feed(text)
        return int(self.log.write(text))

    def flush(self) -> None:
        self.log.flush()


class LocalFunction:
    def __init__(self, name: str, log_dir: Path | None = None, subscription: Any = None) -> None:
        self.name = name
        self.subscription = subscription  # a shopwise_local.logs.LogSubscription, or None
        self._output = _function_output()  # before the module loads, so its logger writes through it
        self.module = load_handler_module(name)
        self._lock = threading.Lock()
        self.log_path = (log_dir or state_dir() / "logs") / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock, self.log_path.open("a") as log:
            context = LambdaContext(
                function_name=f"shopwise-local-{self.name}", log_group_name=f"/aws/lambda/{self.name}"
            )
            self._output.current.log = _Tee(log, self.subscription) if self.subscription else log
            try:
                return self.module.lambda_handler(event, context)
            finally:
                self._output.current.log = None


def load_handler_module(name: str) -> ModuleType:
    path = LAMBDAS_DIR / name / "handler.py"
    if not path.exists():
        raise FileNotFoundError(f"no Lambda handler at {path}")
    spec = importlib.util.spec_from_file_location(f"shopwise_lambda_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_api_event(
    method: str,
    raw_path: str,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source_ip: str = "127.0.0.1",
    route_key: str = "$default",
    iam_caller: str = "",
) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 event, as API Gateway builds it (``iam_caller``: the access key of a
    request the IAM authoriser let through)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value  # repeated keys are comma-joined
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if iam_caller:
        event["requestContext"]["authorizer"] = {
            "iam": {
                "accessKey": iam_caller,
                "accountId": ACCOUNT,
                "userArn": f"arn:aws:iam::{ACCOUNT}:user/{iam_caller}",
            }
        }
    if query:
        event["queryStringParameters"] = query
    if "cookie" in headers:
        event["cookies"] = [c.strip() for c in headers["cookie"].split(";")]
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def kinesis_event(records: list[dict[str, Any]], stream_arn: str, shard_id: str) -> dict[str, Any]:
    """A Lambda Kinesis event from GetRecords output."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/shopwise-local-update-features",
                "awsRegion": REGION,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }
