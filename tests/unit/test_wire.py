"""shopwise.dal.wire without an endpoint: its signature against botocore's signer (the local endpoint does not check
signatures, AWS does), its reading of DynamoDB's error answers, and binary values both ways. Calls against the
local endpoint are in tests/e2e/test_local_stack.py."""

from __future__ import annotations

import json
import socket
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from shopwise.dal.wire import MAX_ATTEMPTS, DynamoDBWire, _bytes_in, _bytes_out, _Retry

REGION = "eu-west-1"
ENDPOINT = f"https://dynamodb.{REGION}.amazonaws.com"


def wire(token: str | None = "session-token") -> DynamoDBWire:
    boto = boto3.client(
        "dynamodb", region_name=REGION, endpoint_url=ENDPOINT, aws_access_key_id="AKID", aws_secret_access_key="s"
    )
    return DynamoDBWire(boto, Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token))


def wire_at(url: str) -> DynamoDBWire:
    """A client of an endpoint at ``url`` (a local server in these tests), with throwaway credentials."""
    boto = boto3.client(
        "dynamodb", region_name=REGION, endpoint_url=url, aws_access_key_id="a", aws_secret_access_key="s"
    )
    return DynamoDBWire(boto, Credentials("a", "s"))


@pytest.mark.parametrize("token", ["session-token", None])
def test_the_signature_is_botocores(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    now = datetime(2026, 12, 2, 23, 59, 58, tzinfo=UTC)
    body = json.dumps({"RequestItems": {"t": {"Keys": [{"pk": {"S": "profile#é"}}]}}}).encode()
    ours = wire(token)._signed("BatchGetItem", body, now.timestamp())

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    request = AWSRequest(
        method="POST",
        url=ENDPOINT + "/",
        data=body,
        headers={"Content-Type": ours["content-type"], "X-Amz-Target": ours["x-amz-target"]},
    )
    botocore.auth.SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "dynamodb", REGION
    ).add_auth(request)

    assert ours["x-amz-date"] == request.headers["X-Amz-Date"] == "20261202T235958Z"
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours.get("x-amz-security-token") == request.headers.get("X-Amz-Security-Token")
    # another day signs with another key
    assert wire(token)._signed("BatchGetItem", body, now.timestamp() + 2)["authorization"] != ours["authorization"]


def answer(body: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    return {"x-amz-crc32": str(zlib.crc32(raw)), "x-amzn-requestid": "r-1"}, raw


def test_errors_raise_boto3s_modelled_exceptions_and_retry_what_botocore_retries() -> None:
    client = wire()
    headers, raw = answer(
        {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException", "message": "no"}
    )
    with pytest.raises(client.exceptions.ConditionalCheckFailedException) as failed:
        client._parse("PutItem", 400, headers, raw)
    assert failed.value.response["Error"] == {"Code": "ConditionalCheckFailedException", "Message": "no"}
    assert failed.value.operation_name == "PutItem"

    headers, raw = answer(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "canceled",
            "CancellationReasons": [{"Code": "ConditionalCheckFailed"}],
        }
    )
    with pytest.raises(client.exceptions.TransactionCanceledException) as canceled:
        client._parse("TransactWriteItems", 400, headers, raw)
    assert canceled.value.response["CancellationReasons"] == [{"Code": "ConditionalCheckFailed"}]  # as boto3 has it

    headers, raw = answer({"__type": "com.amazon.coral.validate#ValidationException", "message": "bad key"})
    with pytest.raises(ClientError) as invalid:
        client._parse("PutItem", 400, headers, raw)
    assert invalid.value.response["Error"]["Code"] == "ValidationException"

    for status, kind in (
        (400, "ProvisionedThroughputExceededException"),
        (400, "ThrottlingException"),
        (500, "InternalServerError"),
    ):
        headers, raw = answer({"__type": f"com.amazonaws.dynamodb.v20120810#{kind}"})
        with pytest.raises(_Retry) as retried:
            client._parse("BatchWriteItem", status, headers, raw)
        assert isinstance(retried.value.final, ClientError)  # what the caller gets once no attempt is left
        assert retried.value.final.response["Error"]["Code"] == kind
    headers, raw = answer({"UnprocessedItems": {}})
    with pytest.raises(_Retry, match="crc32"):  # a damaged answer is asked for again, not believed
        client._parse("BatchWriteItem", 200, {**headers, "x-amz-crc32": "1"}, raw)
    assert client._parse("BatchWriteItem", 200, headers, raw)["UnprocessedItems"] == {}
    headers, raw = answer({"Item": {"z": {"B": "AQ=="}, "doc": {"S": '{"a":1}'}}})
    assert client._parse("GetItem", 200, headers, raw)["Item"] == {"z": {"B": b"\x01"}, "doc": {"S": '{"a":1}'}}


def test_binary_values_travel_base64_and_come_back_as_bytes() -> None:
    item = {"pk": {"S": "rec#1"}, "z": {"B": b"\x00\xffpicks"}, "m": {"M": {"B": {"S": "a map key named B"}}}}
    sent = json.loads(json.dumps(item, default=_bytes_out))
    assert sent["z"] == {"B": "AP9waWNrcw=="}
    nested = {
        "Responses": {"t": [sent, {"pk": {"S": "x"}, "s": {"BS": ["AQ==", "Ag=="]}, "l": {"L": [{"B": "AQ=="}]}}]}
    }
    _bytes_in(nested)
    first, second = nested["Responses"]["t"]
    assert first == item
    assert second["s"] == {"BS": [b"\x01", b"\x02"]} and second["l"] == {"L": [{"B": b"\x01"}]}
    with pytest.raises(TypeError):
        json.dumps({"x": object()}, default=_bytes_out)


def test_a_call_retries_then_raises_what_boto3_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throttled every time: MAX_ATTEMPTS sends, then boto3's modelled exception (not the internal retry signal); a
    dropped connection once, then an answer: the answer."""
    client = wire()
    monkeypatch.setattr("shopwise.dal.wire.backoff", lambda attempt: None)
    sent: list[bytes] = []

    def throttled(name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        sent.append(body)
        headers, raw = answer({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"})
        return 400, headers, raw

    monkeypatch.setattr(client, "_send", throttled)
    with pytest.raises(client.exceptions.ProvisionedThroughputExceededException):
        client.put_item(TableName="t", Item={"pk": {"S": "a"}})
    assert len(sent) == MAX_ATTEMPTS

    attempts: list[int] = []

    def dropped_once(name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        attempts.append(1)
        if len(attempts) == 1:
            raise _Retry(ConnectionResetError("reset by peer"))
        headers, raw = answer({"Item": {"pk": {"S": "a"}}})
        return 200, headers, raw

    monkeypatch.setattr(client, "_send", dropped_once)
    assert client.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}
    assert len(attempts) == 2


def test_an_endpoint_that_refuses_is_retried_then_its_error_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens: every attempt connects anew, and the connection's own error reaches the caller."""
    monkeypatch.setattr("shopwise.dal.wire.backoff", lambda attempt: None)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = wire_at(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionRefusedError):
        client.get_item(TableName="t", Key={"pk": {"S": "a"}})


def test_connections_are_kept_alive_across_threads_and_a_closed_one_is_not_reused() -> None:
    """The updater's writer threads are new every batch: connections are pooled, not tied to a thread, so three
    batches of four threads open at most four; an answer that says it closes its connection is not pooled."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    closing = threading.Event()
    peers: set[tuple[str, int]] = set()

    class Endpoint(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            peers.add(self.client_address)
            raw = json.dumps({"Item": {"pk": {"S": "a"}}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("x-amz-crc32", str(zlib.crc32(raw)))
            if closing.is_set():
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = wire_at(f"http://127.0.0.1:{server.server_address[1]}")
        barrier = threading.Barrier(4)

        def call(_: int) -> dict[str, Any]:
            barrier.wait()  # four calls at once: four connections in use
            return client.get_item(TableName="t", Key={"pk": {"S": "a"}})

        for _batch in range(3):
            with ThreadPoolExecutor(4) as pool:  # new threads, as each of the updater's batches has
                assert all(r["Item"] == {"pk": {"S": "a"}} for r in pool.map(call, range(4)))
        assert client.opened == 4 and len(peers) == 4
        closing.set()  # each answer now closes its connection: the four pooled ones are used once more, then each
        for _call in range(6):  # call opens its own
            client.get_item(TableName="t", Key={"pk": {"S": "a"}})
        assert client.opened == 6
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_calls_go_over_tls_verified_against_the_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In AWS every call is HTTPS: the client verifies the endpoint's certificate against AWS_CA_BUNDLE (botocore's
    bundle by default) and keeps the TLS connection alive between calls; a certificate it does not trust fails."""
    import datetime as dt
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    class Endpoint(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            raw = json.dumps({"Item": {"pk": {"S": self.headers["x-amz-target"]}}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    url = f"https://localhost:{server.server_address[1]}"

    try:
        monkeypatch.setattr("shopwise.dal.wire.backoff", lambda attempt: None)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(folder / "cert.pem"))
        trusting = wire_at(url)
        for _call in range(3):
            assert trusting.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"] == {
                "pk": {"S": "DynamoDB_20120810.GetItem"}
            }
        assert trusting.opened == 1
        trusting.close()
        monkeypatch.delenv("AWS_CA_BUNDLE")  # botocore's bundle does not know this certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            wire_at(url).get_item(TableName="t", Key={"pk": {"S": "a"}})
    finally:
        server.shutdown()
        server.server_close()
