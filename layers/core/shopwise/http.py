"""What every HTTP handler shares: JSON responses (Powertools' Response, content type set), who the caller is
(``shopwise.access.callers``) and the answers to a caller refused."""

from __future__ import annotations

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
