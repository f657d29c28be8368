"""DynamoDB's JSON protocol spoken directly, for the calls every event and every request make (BatchGetItem,
BatchWriteItem, PutItem, GetItem, Query): the request is the same typed JSON boto3's low-level client takes, signed with Signature
Version 4, sent on a kept-alive connection per thread, and the answer is ``json.loads``'s.

Why: botocore costs about 1.5 ms of CPU per call before any item (its event hooks, endpoint rules, request and
header objects, the signer, urllib3) and walks every attribute of every item against the service model both
ways; the updater spent most of its CPU there (``tests/bench/bench_update.py --profile``). This client does the
same wire work in a third to a half of the CPU (``tests/bench/bench_wire.py``; its hand-written signature takes a
ninth of botocore's signer's CPU). What it keeps from boto3:
the endpoint (``AWS_ENDPOINT_URL*``, the region's default) and the credentials (the session's chain, refreshed
when they expire) come from the boto3 client; errors raise that client's modelled exceptions
(``ConditionalCheckFailedException`` and the rest, a ``ClientError``), so callers catch what they caught; the
same events are emitted (``provide-client-params``, ``before-call``, ``after-call``, on ``meta.events``) so a
read meter or a test that counts calls sees these calls too. Throttling, 5xx answers, a response whose CRC32
does not match and a dropped connection are retried with backoff (``MAX_ATTEMPTS``), as botocore's retry mode
does. Binary values travel base64-encoded, as the protocol has them: ``bytes`` in, ``bytes`` out.

Everything else (transactions, Scans, table administration) stays on boto3's client. Not kept: X-Ray's
subsegment per call (the Tracer patches botocore; these calls show inside the function's segment, not apart).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ChecksumError, ClientError
from botocore.hooks import HierarchicalEmitter
from botocore.httpsession import get_cert_path

from shopwise.retry import backoff

MAX_ATTEMPTS = 5
TARGET = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
RETRIED_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Service:
    service_name: str = "dynamodb"


@dataclass(frozen=True)
class Operation:
    """What an event handler is told of the call: botocore's ``OperationModel``'s ``name`` and ``service_model``."""

    name: str
    service_model: Service = Service()


@dataclass(frozen=True)
class HttpResponse:
    status_code: int
    headers: dict[str, str]


class Meta:
    def __init__(self, endpoint_url: str, region_name: str) -> None:
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.events = HierarchicalEmitter()


class _Retry(Exception):
    """A failure worth another attempt; ``final`` is what the caller gets when no attempt is left (boto3's modelled
    exception for an error answer, botocore's ChecksumError, the connection's own error)."""

    def __init__(self, final: Exception) -> None:
        super().__init__(str(final))
        self.final = final


class DynamoDBWire:
    """The calls below, with boto3's low-level client's arguments and answers."""

    def __init__(self, boto_client: Any, credentials: Any) -> None:
        self._boto = boto_client  # for its exception classes, its endpoint and region
        self._credentials = credentials
        self.meta = Meta(boto_client.meta.endpoint_url, boto_client.meta.region_name)
        url = urlsplit(self.meta.endpoint_url)
        self._https = url.scheme == "https"
        self._host = url.netloc
        self._hostname = url.hostname or ""
        self._port = url.port
        self._path = url.path or "/"
        self._local = threading.local()  # a connection per thread: http.client's are not shared safely
        self._keys: dict[tuple[str, str], bytes] = {}  # (secret, day) -> signing key

    def batch_get_item(self, **params: Any) -> dict[str, Any]:
        return self.call("BatchGetItem", params)

    def batch_write_item(self, **params: Any) -> dict[str, Any]:
        return self.call("BatchWriteItem", params)

    def put_item(self, **params: Any) -> dict[str, Any]:
        return self.call("PutItem", params)

    def get_item(self, **params: Any) -> dict[str, Any]:
        return self.call("GetItem", params)

    def query_items(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item a Query returns, page after page (``LastEvaluatedKey``), as boto3's paginator pages them."""
        while True:
            page = self.call("Query", params)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            params = {**params, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    @property
    def exceptions(self) -> Any:
        return self._boto.exceptions

    def call(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        operation = Operation(name)
        context: dict[str, Any] = {}
        events = self.meta.events
        events.emit(f"provide-client-params.dynamodb.{name}", params=params, model=operation, context=context)
        events.emit(f"before-call.dynamodb.{name}", params=params, model=operation, context=context)
        body = json.dumps(params, separators=(",", ":"), default=_bytes_out).encode()
        for attempt in range(MAX_ATTEMPTS):
            try:
                status, headers, answer = self._send(name, body)
                parsed = self._parse(name, status, headers, answer)
            except _Retry as retry:
                if attempt + 1 == MAX_ATTEMPTS:
                    raise retry.final from None
                backoff(attempt)
                continue
            events.emit(
                f"after-call.dynamodb.{name}",
                http_response=HttpResponse(status, headers),
                parsed=parsed,
                model=operation,
                context=context,
            )
            return parsed
        raise AssertionError("unreachable")

    def _parse(self, name: str, status: int, headers: dict[str, str], answer: bytes) -> dict[str, Any]:
        expected, actual = headers.get("x-amz-crc32"), zlib.crc32(answer)
        if expected is not None and actual != int(expected):
            raise _Retry(ChecksumError(checksum_type="crc32", expected_checksum=expected, actual_checksum=str(actual)))
        parsed: dict[str, Any] = json.loads(answer) if answer else {}
        if status == 200:
            # a binary value's key, "B" or "BS" (or a string that holds those bytes: then walked for nothing)
            if b'"B' in answer:
                _bytes_in(parsed)
            parsed["ResponseMetadata"] = {"HTTPStatusCode": 200, "RequestId": headers.get("x-amzn-requestid", "")}
            return parsed
        code = str(parsed.get("__type", "")).rpartition("#")[2] or str(status)
        message = parsed.get("message") or parsed.get("Message") or ""
        extra = {k: v for k, v in parsed.items() if k not in ("__type", "message", "Message")}
        error = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": headers.get("x-amzn-requestid", "")},
            **extra,  # e.g. a canceled transaction's CancellationReasons, a failed condition's Item
        }
        kind: type[ClientError] = self._boto.exceptions.from_code(code)
        failure = kind(error, name)  # type: ignore[arg-type]
        if status >= 500 or code in RETRIED_CODES:
            raise _Retry(failure)
        raise failure

    def _send(self, name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = self._signed(name, body)
        connection: http.client.HTTPConnection | None = None
        try:
            connection = self._connection()
            connection.request("POST", self._path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:  # refused, dropped or timed out: a new connection
            if connection is not None:
                connection.close()
            self._local.connection = None
            raise _Retry(exc) from exc
        if response.will_close:
            connection.close()
            self._local.connection = None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._https:
                tls = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True))
                connection = http.client.HTTPSConnection(
                    self._hostname, self._port, timeout=CONNECT_TIMEOUT_S, context=tls
                )
            else:
                connection = http.client.HTTPConnection(self._hostname, self._port, timeout=CONNECT_TIMEOUT_S)
            connection.connect()
            if connection.sock is not None:
                connection.sock.settimeout(READ_TIMEOUT_S)
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.connection = connection
        return connection

    def _signed(self, name: str, body: bytes, now: float | None = None) -> dict[str, str]:
        """Signature Version 4 headers of one POST at ``now`` (epoch seconds; the clock's by default), as botocore's
        signer makes them (a unit test compares the two; the local endpoint does not check signatures)."""
        frozen = self._credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day, region = stamp[:8], self.meta.region_name
        headers = {"content-type": CONTENT_TYPE, "host": self._host, "x-amz-date": stamp, "x-amz-target": TARGET + name}
        if frozen.token:
            headers["x-amz-security-token"] = frozen.token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join(
            [
                "POST",
                self._path,
                "",
                *(f"{n}:{headers[n]}" for n in names),
                "",
                signed,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{region}/dynamodb/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._key(frozen.secret_key, day, region), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    def _key(self, secret: str, day: str, region: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (day, region, "dynamodb", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # one day's key at a time
        return key

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def _bytes_out(value: Any) -> str:
    """json.dumps's fallback: a binary attribute value as the protocol carries it."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} is not a DynamoDB value")


def _bytes_in(node: Any) -> None:
    """Binary attribute values (``B``, ``BS``) of an answer decoded in place, at any depth; the walk goes into maps
    and lists only, so items of string attributes (the feature documents) cost a dict lookup per attribute."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "B" and isinstance(value, str):
                node[key] = base64.b64decode(value)
            elif key == "BS" and isinstance(value, list):
                node[key] = [base64.b64decode(v) for v in value]
            elif isinstance(value, dict | list):
                _bytes_in(value)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list):
                _bytes_in(value)
