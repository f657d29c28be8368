"""The API document: one OpenAPI document for every route, made from the HTTP functions' own resolvers (their routes,
parameters and models, the validation they apply) with the security schemes of the route table
(``shopwise.access.routes``). ``make openapi`` writes it into the core package, where the serve function answers
``GET /v1/openapi.json`` and ``/v1/docs`` from it (the serve function cannot import the other functions' code); a
unit test holds the committed document to what the handlers make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shopwise.access.routes import NONE, ROUTES, SHOPPER_TOKEN, SIGV4, credential
from shopwise_local.lambda_runtime import load_handler_module
from shopwise_local.paths import REPO_ROOT

DOCUMENT = REPO_ROOT / "layers" / "core" / "shopwise" / "openapi.json"
FUNCTIONS = tuple(dict.fromkeys(r.function for r in ROUTES))  # every function that answers a route
DESCRIPTION = """Product recommendations for an online store: storefront events in, ranked lists with a reason for
every item out.

Three kinds of callers. A shopper's **browser** sends `Authorization: Bearer <shopper token>` (a JWT the store's
backend mints with the stack's token key, or `POST /v1/visitors` mints for a new visitor) and acts only for the
visitor and customer its token names. The store's **servers** sign their requests with IAM credentials (SigV4,
service `execute-api`) on the `/v1/server/` and admin routes. **Anybody** may call the non-personal routes. Every
error is JSON with a `message` saying what was wrong."""
SCHEMES = {
    SHOPPER_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A shopper token (HS256; claims aud=shopwise, exp, vid, sub, scope): see docs/STOREFRONT.md",
    },
    SIGV4: {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "awsSigv4",
        "description": "AWS Signature Version 4 (service execute-api) by a principal with ServerApiPolicy or "
        "AdminApiPolicy",
    },
}


def document() -> dict[str, Any]:
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "shopwise", "version": "1", "description": DESCRIPTION},
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": SCHEMES},
    }
    for name in FUNCTIONS:
        spec = json.loads(load_handler_module(name).app.get_openapi_json_schema(title="shopwise", version="1"))
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                needs = credential(method.upper(), path)
                operation["security"] = [] if needs == NONE else [{needs: []}]
                merged["paths"].setdefault(path, {})[method] = operation
        merged["components"]["schemas"].update(spec.get("components", {}).get("schemas", {}))
    merged["paths"] = dict(sorted(merged["paths"].items()))
    return merged


def text() -> str:
    return json.dumps(document(), indent=1, sort_keys=True) + "\n"


def write(path: Path = DOCUMENT) -> Path:
    path.write_text(text())
    return path


if __name__ == "__main__":
    print(f"wrote {write()}")
