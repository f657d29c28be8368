"""The API document the serve function answers with is the one the HTTP functions' own resolvers make."""

from __future__ import annotations

import json

from shopwise.access.routes import ROUTES, SHOPPER_TOKEN, SIGV4
from shopwise_local.openapi import DOCUMENT, document, text


def test_the_committed_document_is_current() -> None:
    assert DOCUMENT.read_text() == text(), (
        "the API changed: run `make openapi` and commit layers/core/shopwise/openapi.json"
    )


def test_every_route_is_documented_with_the_credential_it_takes() -> None:
    spec = document()
    operations = {(m.upper(), p): o for p, ops in spec["paths"].items() for m, o in ops.items()}
    assert {"POST /v1/events", "POST /v1/server/events", "PUT /v1/items", "POST /v1/visitors"} <= {
        f"{m} {p}" for m, p in operations
    }
    security = {f"{m} {p}": json.dumps(o["security"]) for (m, p), o in operations.items()}
    assert security["GET /v1/users/{user_id}/recommendations"] == json.dumps([{SHOPPER_TOKEN: []}])
    assert security["GET /v1/server/users/{user_id}/recommendations"] == json.dumps([{SIGV4: []}])
    assert security["PUT /v1/items"] == json.dumps([{SIGV4: []}])
    assert security["GET /v1/popular"] == "[]" and security["POST /v1/visitors"] == "[]"
    # every route of the table has an operation, and every IAM route's operations ask for a signature
    for route in ROUTES:
        matching = [o for (m, p), o in operations.items() if m == route.method and route.pattern.match(p)]
        assert matching, route.key
        if route.iam:
            assert all(o["security"] == [{SIGV4: []}] for o in matching), route.key
    assert all(o.get("summary") and not o["summary"].startswith(("GET ", "POST ", "PUT ")) for o in operations.values())
