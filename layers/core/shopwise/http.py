"""What every HTTP handler shares: JSON responses (Powertools' Response, content type set), who the caller is
(``shopwise.access.callers``) and the answers to a caller refused."""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from shopwise.access.callers import Caller, Forbidden, Unauthorized, caller_of
from shopwise.access.keys import key_source
from shopwise.settings import get_settings


def json_response(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def invalid_request(errors: list[Any]) -> Response:
    """The resolver's validation errors as a 400 whose message names every problem ("query.n: Input should be
    greater than or equal to 1")."""
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors]
    return json_response(400, {"message": "; ".join(problems), "errors": problems})


def request_caller(event: Any) -> Caller:
    """The caller of the resolver's current event (Powertools' APIGatewayProxyEventV2)."""
    settings = get_settings()
    return caller_of(
        event.raw_event.get("requestContext") or {},
        dict(event.headers or {}),
        event.path,
        key_source(settings.shopper_token_secret),
        settings.allowed_origins,
    )


def refused(exc: Unauthorized | Forbidden) -> Response:
    """401 (with the scheme to use) or 403, saying why — never echoing the credential."""
    if isinstance(exc, Unauthorized):
        response = json_response(401, {"message": str(exc)})
        response.headers["WWW-Authenticate"] = 'Bearer realm="shopwise"'
        return response
    return json_response(403, {"message": str(exc)})


def _answer(status: int, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"message": message}),
    }


def unreadable_body(event: dict[str, Any], max_bytes: int) -> dict[str, Any] | None:
    """A body the resolver cannot read — another media type, not UTF-8, larger than the route takes — gets a 4xx
    that says so, here, before the resolver's own parsing would fail on it (an API Gateway v2 response)."""
    body = event.get("body")
    if event.get("requestContext", {}).get("http", {}).get("method") not in ("POST", "PUT") or not body:
        return None
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return _answer(415, f"send the body as application/json, not {media or 'no Content-Type'}")
    try:
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
        raw.decode("utf-8")
    except (ValueError, UnicodeError):
        return _answer(400, "the body is not UTF-8 JSON")
    if len(raw) > max_bytes:
        return _answer(413, f"body is {len(raw)} bytes; the limit is {max_bytes}")
    return None


def too_deep(exc: RecursionError) -> Response:
    """JSON nested deeper than Python's parser goes: a bad request, never a 500."""
    return json_response(400, {"message": "the body is nested too deeply to be JSON this API takes"})
