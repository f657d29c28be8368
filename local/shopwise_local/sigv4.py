"""IAM authorisation of the admin routes, played locally: AWS Signature Version 4, as API Gateway checks it.

In the stack, admin routes (``PUT /v1/items``) have API Gateway's IAM authoriser: the caller signs the request with
credentials whose policy allows ``execute-api:Invoke`` on the route (the stack's ``AdminApiPolicy``). Here the
local HTTP API verifies the same signature with botocore's own signer against the local credentials, so clients
sign exactly as they would in AWS (``curl --aws-sigv4 "aws:amz:<region>:execute-api"``, or ``signed_headers``).
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from urllib.parse import urlsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"
MAX_SKEW_SECONDS = 15 * 60


def _credentials() -> Credentials:
    """This process's credentials: the environment's keys (the local stack's), else the AWS settings' (a profile,
    SSO, a role) — what an operator signs a deployed stack's admin routes with."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return Credentials(
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            os.environ.get("AWS_SESSION_TOKEN") or None,
        )
    import boto3

    found = boto3.session.Session().get_credentials()
    if found is None:
        raise RuntimeError("no AWS credentials to sign with: set a profile (--profile) or the AWS_* variables")
    frozen = found.get_frozen_credentials()
    return Credentials(str(frozen.access_key), str(frozen.secret_key), frozen.token)


def _region(url: str = "") -> str:
    """The region a request is signed for: the API's own (``<id>.execute-api.<region>.amazonaws.com``), else the
    process's."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    if len(parts) >= 4 and parts[1] == "execute-api":
        return parts[2]
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def signed_headers(method: str, url: str, body: bytes | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of a request signed with this process's credentials (what an IAM-authorised client sends)."""
    request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers or {}))
    SigV4Auth(_credentials(), SERVICE, _region(url)).add_auth(request)
    return dict(request.headers.items())


def verify(method: str, url: str, headers: dict[str, str], body: bytes | None) -> str:
    """ "" if the request carries a valid signature by the local credentials, else why not."""
    lower = {k.lower(): v for k, v in headers.items()}
    authorization = lower.get("authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return "the request is not signed (AWS Signature Version 4 with execute-api credentials)"
    fields = dict(
        part.strip().split("=", 1) for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",") if "=" in part
    )
    scope = fields.get("Credential", "").split("/")
    if len(scope) != 5 or scope[3] != SERVICE:
        return "the signature's credential scope is not <key>/<date>/<region>/execute-api/aws4_request"
    credentials = _credentials()
    if scope[0] != credentials.access_key:
        return f"unknown access key {scope[0]!r}"
    stamp = lower.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return "missing or malformed X-Amz-Date"
    if abs((datetime.now(UTC) - signed_at).total_seconds()) > MAX_SKEW_SECONDS:
        return "the signature is more than 15 minutes old (or ahead)"
    names = [n for n in fields.get("SignedHeaders", "").split(";") if n]
    if "host" not in names:
        return "the host header must be signed"
    if "host" not in lower:
        lower["host"] = urlsplit(url).netloc
    # the signature covers the body through its hash: the hash of the body received, never one the client states
    # (a captured request must not carry another body), and never UNSIGNED-PAYLOAD
    received = hashlib.sha256(body or b"").hexdigest()
    stated = lower.get("x-amz-content-sha256")
    if stated is not None and stated != received:
        return "the body is not the one signed (x-amz-content-sha256 differs from the body's hash)"
    if "x-amz-content-sha256" in names:
        lower["x-amz-content-sha256"] = received
    request = AWSRequest(method=method, url=url, data=body or b"", headers={n: lower.get(n, "") for n in names})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(credentials, SERVICE, scope[2])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return "" if expected == fields.get("Signature") else "the signature does not match the request"
