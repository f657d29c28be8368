"""The HTTP API's route table, defined once: which function answers each route, its kind (the throttle it gets, and
whether API Gateway's IAM authoriser guards it), and the credential each operation takes. The CDK app builds the
routes from it, the local HTTP API dispatches by it, the API document's security comes from it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

READS, EVENTS, VISITORS, SERVER, ADMIN = "reads", "events", "visitors", "server", "admin"
IAM_KINDS = (SERVER, ADMIN)

# the credentials an operation takes (the API document's security schemes)
SIGV4 = "sigv4"  # the store's servers and back office
SHOPPER_TOKEN = "shopperToken"  # a shopper's browser
NONE = "none"  # anybody
BROWSER_PATHS = ("/v1/events", "/v1/users/", "/v1/rank")  # a browser's own shopper: its token


@dataclass(frozen=True)
class Route:
    key: str  # API Gateway's route key: "GET /v1/{proxy+}"
    function: str  # the Lambda that answers it (lambdas/<function>)
    kind: str

    @property
    def method(self) -> str:
        return self.key.split(" ", 1)[0]

    @property
    def path(self) -> str:
        return self.key.split(" ", 1)[1]

    @property
    def iam(self) -> bool:
        return self.kind in IAM_KINDS

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"(\{[^}]+\})", self.path)
        regex = "".join(
            ".+" if p.endswith("+}") else "[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p
        )
        return re.compile(f"^{regex}$")

    @property
    def greedy(self) -> bool:
        return "+}" in self.path


ROUTES: tuple[Route, ...] = (
    Route("POST /v1/events", "collect", EVENTS),
    Route("POST /v1/server/events", "collect", SERVER),
    Route("GET /v1/{proxy+}", "serve", READS),
    Route("POST /v1/rank", "serve", READS),
    Route("POST /v1/visitors", "serve", VISITORS),
    Route("GET /v1/server/{proxy+}", "serve", SERVER),
    Route("POST /v1/server/rank", "serve", SERVER),
    Route("PUT /v1/items", "catalog", ADMIN),
    Route("GET /v1/campaigns/{name}/recipients", "campaigns", ADMIN),
    Route("DELETE /v1/users/{user_id}", "privacy", ADMIN),
    Route("GET /v1/erasures", "privacy", ADMIN),
    Route("GET /v1/erasures/{erasure_id}", "privacy", ADMIN),
)


def match(method: str, path: str) -> Route | None:
    """The route API Gateway picks for a request: an exact or parameterised path before a greedy one, and among
    greedy ones the longest prefix."""
    found = [r for r in ROUTES if r.method == method and r.pattern.match(path)]
    if not found:
        return None
    return min(found, key=lambda r: (r.greedy, -len(r.path)))


def credential(method: str, path: str) -> str:
    """What an operation of the API document takes: IAM signatures on server and admin routes, the shopper token on a
    browser's own-shopper routes, nothing on the rest."""
    route = match(method, path.replace("{", "x").replace("}", "x"))
    if route is not None and route.iam:
        return SIGV4
    return SHOPPER_TOKEN if path.startswith(BROWSER_PATHS) else NONE
