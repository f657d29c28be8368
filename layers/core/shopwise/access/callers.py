"""Who is calling, and what they may do: the one place the API's trust rules live (the collect and serve functions,
in AWS and on the local stack alike).

Three kinds of callers:

- ``server``  — the store's servers (and back office): requests signed with IAM credentials (SigV4) on the
  ``/v1/server/...`` and admin routes, which API Gateway's IAM authoriser lets through only for principals allowed to
  invoke them (the stack's ``ServerApiPolicy`` / ``AdminApiPolicy``). They may do everything the storefront needs:
  name any customer, link identities, record consent, send purchases, read any shopper's list.
- ``browser`` — a shopper's browser, with a token (``shopwise.access.tokens``) the store's backend minted for it, or
  that ``POST /v1/visitors`` minted for a new visitor. It acts only for the visitor and the customer its token names.
- ``public``  — no credential: the non-personal routes only (bestsellers, similar items, health, the API document).

A browser call from an origin the environment does not allow (``allowed_origins`` in ``shopwise.config``) is refused
as well, beside the CORS rules API Gateway applies.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shopwise.access.keys import KeySource
from shopwise.access.tokens import Claims, TokenError, UnknownKey, verify

SERVER = "server"
BROWSER = "browser"
PUBLIC = "public"
SERVER_PREFIX = "/v1/server/"

# origins of events, stamped by the server (shopwise.events.EventBase.origin): who vouched for the event
ORIGIN_SERVER = "server"  # the store's servers
ORIGIN_SHOPPER = "shopper"  # a browser whose token names the customer (the store vouched for them)
ORIGIN_VISITOR = "visitor"  # a browser acting for its anonymous visitor only


class Unauthorized(Exception):
    """No usable credential (401)."""


class Forbidden(Exception):
    """A credential that does not cover what was asked (403)."""


@dataclass(frozen=True)
class Caller:
    kind: str
    principal: str = ""  # a server caller's IAM identity
    visitor: str = ""
    customer: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def origin(self) -> str:
        if self.kind == SERVER:
            return ORIGIN_SERVER
        return ORIGIN_SHOPPER if self.customer else ORIGIN_VISITOR

    def need(self, scope: str) -> None:
        """Refuse a browser whose token lacks ``scope`` and a caller with no credential at all."""
        if self.kind == PUBLIC:
            raise Unauthorized(
                "this route needs a credential: a shopper token (Authorization: Bearer ...) from a browser, "
                "or an IAM-signed request to /v1/server/... from the store's servers"
            )
        if self.kind == BROWSER and scope not in self.scopes:
            raise Forbidden(f"the token's scope does not include {scope!r}")

    def may_read(self, user_id: str, id_type: str) -> None:
        """Whether this caller may read the shopper ``user_id`` (a customer id or a visitor id) names."""
        self.need("recommendations")
        if self.kind == SERVER:
            return
        own = self.customer if id_type == "customer" else self.visitor
        if not own or user_id != own:
            raise Forbidden(f"the token does not act for this {id_type}: a browser reads only its own shopper's list")


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """An Origin header against the allowed origins (exact, or a pattern with * such as http://127.0.0.1:*)."""
    return any(origin == a or ("*" in a and fnmatch.fnmatchcase(origin, a)) for a in allowed)


def caller_of(
    request_context: dict[str, Any],
    headers: dict[str, str],
    path: str,
    keys: KeySource,
    allowed_origins: Iterable[str],
    now: float | None = None,
) -> Caller:
    """The caller of an API Gateway HTTP API (payload v2) request. ``keys`` holds the token keys (verifying costs no
    network call)."""
    iam = (request_context.get("authorizer") or {}).get("iam")
    if iam:
        return Caller(SERVER, principal=str(iam.get("userArn") or iam.get("accessKey") or "iam"))
    if path.startswith(SERVER_PREFIX):  # a server route reached without the IAM authoriser: never trusted
        raise Forbidden("/v1/server/ routes take IAM-signed requests only")
    lower = {k.lower(): v for k, v in headers.items()}
    origin = lower.get("origin", "")
    if origin and not origin_allowed(origin, allowed_origins):
        raise Forbidden(f"requests from origin {origin!r} are not allowed")
    authorization = lower.get("authorization", "")
    if not authorization:
        return Caller(PUBLIC)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the shopper token as Authorization: Bearer <token>")
    at = time.time() if now is None else now
    try:
        try:
            claims: Claims = verify(token.strip(), keys.keys(), at)
        except UnknownKey:
            claims = verify(token.strip(), keys.reload(), at)  # a key rotated in since the keys were read
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    return Caller(BROWSER, visitor=claims.visitor, customer=claims.customer, scopes=claims.scopes)
