"""What every HTTP handler answers with: a JSON response (Powertools' Response, content type set)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types


def json_response(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def invalid_request(errors: list[Any]) -> Response:
    """The resolver's validation errors as a 400 whose message names every problem ("query.n: Input should be
    greater than or equal to 1")."""
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors]
    return json_response(400, {"message": "; ".join(problems), "errors": problems})
