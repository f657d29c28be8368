"""DynamoDB's JSON protocol spoken directly, for the calls every event and every request make (BatchGetItem,
BatchWriteItem, PutItem, GetItem, Query): the request is the same typed JSON boto3's low-level client takes, signed with Signature
Version 4, sent on a kept-alive connection from a pool the threads share, and the answer is ``shopwise.fastjson``'s (orjson).

Why: botocore costs about 1.5 ms of CPU per call before any item (its event hooks, endpoint rules, request and
header objects, the signer, urllib3) and walks every attribute of every item against the service model both
ways; the updater spent most of its CPU there (``tests/bench/bench_update.py --profile``). This client does the
same wire work in a fifth to a third of the CPU (``tests/bench/bench_wire.py``; its hand-written signature takes a
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

from shopwise import fastjson
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
MAX_LINE = 65536  # an answer's status or header line
MAX_IDLE = 16  # kept-alive connections kept between calls (the updater's writers are 8 threads)
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


class _Connection:
    """One kept-alive HTTP/1.1 connection: a request written in one piece, an answer read by its Content-Length
    (or its chunks, or to the close). http.client parsed each answer's headers through the ``email`` package's
    feed parser: with its request and header objects, a sixth of the updater's CPU (``bench_update.py --profile``)."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
            sock.settimeout(READ_TIMEOUT_S)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = sock.makefile("rb")

    def exchange(self, head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """Send a request; its answer's status, headers (lower-case names), body, and whether the connection is
        done (the endpoint closes it, or the body ran to the close)."""
        self._sock.sendall(head + body)
        line = self._reader.readline(MAX_LINE)
        if not line:
            raise ConnectionResetError("the endpoint closed the connection")
        version, _, rest = line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/") or not code.isdigit():
            raise ConnectionError(f"not an HTTP answer: {line[:80]!r}")
        headers: dict[str, str] = {}
        while True:
            line = self._reader.readline(MAX_LINE)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        status = int(code)
        closing = headers.get("connection", "").lower() == "close" or version == b"HTTP/1.0"
        if status in (204, 304) or 100 <= status < 200:
            return status, headers, b"", closing
        if "content-length" in headers:
            length = int(headers["content-length"])
            answer = self._reader.read(length)
            if len(answer) != length:
                raise ConnectionResetError(f"the answer ended after {len(answer)} of {length} bytes")
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            answer = self._chunks()
        else:  # the body runs to the close
            answer, closing = self._reader.read(), True
        return status, headers, answer, closing

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self._reader.readline(MAX_LINE).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._reader.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(parts)
            chunk = self._reader.read(size + 2)  # the chunk and its CRLF
            if len(chunk) != size + 2:
                raise ConnectionResetError("the answer ended inside a chunk")
            parts.append(chunk[:size])

    def close(self) -> None:
        self._reader.close()
        self._sock.close()


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
        # kept-alive connections not in use, newest last: a call takes one (or opens one) and gives it back, so a
        # connection outlives the thread that opened it — the updater's writer threads are new every batch, and a
        # connection per thread opened (in AWS: a TLS handshake) up to WRITERS connections a batch
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        self._keys: dict[tuple[str, str], bytes] = {}  # (secret, day) -> signing key
        self.opened = 0  # connections opened (tests and benchmarks)

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
        body = fastjson.dumps(params, default=_bytes_out)
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
        parsed: dict[str, Any] = fastjson.loads(answer) if answer else {}
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
        head = self._head(self._signed(name, body), len(body))
        connection: _Connection | None = None
        try:
            connection = self._take()
            status, headers, answer, closing = connection.exchange(head, body)
        except (OSError, ValueError) as exc:  # refused, dropped, timed out or garbled: the idle ones are likely as
            # stale, a new connection
            if connection is not None:
                connection.close()
            self.close()
            raise _Retry(exc) from exc
        if closing:
            connection.close()
        else:
            self._give(connection)
        return status, headers, answer

    def _head(self, headers: dict[str, str], length: int) -> bytes:
        lines = [f"POST {self._path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), f"content-length: {length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _take(self) -> _Connection:
        """An idle kept-alive connection (the most recently used), or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._https and self._tls is None:  # the CA bundle read once, not per connection
                self._tls = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True))
        connection = _Connection(self._hostname, self._port or (443 if self._https else 80), self._tls)
        with self._lock:
            self.opened += 1
        return connection

    def _give(self, connection: _Connection) -> None:
        """A connection back after a whole answer: kept for the next call, up to MAX_IDLE."""
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
                return
        connection.close()

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
        """Close the idle connections (a call in flight closes or keeps its own when it ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _bytes_out(value: Any) -> str:
    """The encoder's fallback: a binary attribute value as the protocol carries it."""
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
