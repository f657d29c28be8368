"""Shopper tokens: what lets a browser act for its shopper — short-lived, HMAC-signed by the store's key, verified with
no network call (the key is read once per execution environment and cached).

A token is a JSON Web Token with HS256 (so a store's backend can mint one with any JWT library, or with
``shopwise.access.tokens.mint``): header ``{"alg": "HS256", "typ": "JWT", "kid": <key id>}``, claims

    aud    "shopwise"
    exp    expiry (epoch seconds); iat, the time it was minted
    vid    the visitor id (the storefront's anonymous cookie id) the browser acts for
    sub    the store's customer id, when the store's backend vouches that this browser is that customer
    scope  space-separated: "events" (send events) and/or "recommendations" (read the shopper's lists)

The key is a secret of the stack (Secrets Manager; generated at deploy, and by the local stack for itself) holding
``{"current": "<key id>", "<key id>": "<key>", ...}``: tokens are minted with the current key and verified with any
key the secret still holds, so a key is rotated by adding a new one, making it current, and removing the old one once
the tokens it signed have expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

AUDIENCE = "shopwise"
SCOPES = ("events", "recommendations")
MAX_TOKEN_BYTES = 4096
MAX_TTL_SECONDS = 30 * 86400  # the longest a token may live (visitor tokens; shopper tokens are minted for an hour)
SHOPPER_TTL_SECONDS = 3600
VISITOR_TTL_SECONDS = 30 * 86400  # what POST /v1/visitors mints: an anonymous visitor, for as long as a cookie
MAX_ID_LENGTH = 128
CLOCK_SKEW_SECONDS = 60


class TokenError(ValueError):
    """A token that cannot be used, and why (never the token itself)."""


class UnknownKey(TokenError):
    """The token names a key the verifier does not hold (yet: a rotation may have added it)."""


@dataclass(frozen=True)
class TokenKeys:
    """The store's token keys: the one new tokens are signed with, and every one a token may be signed with."""

    current: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, secret: str) -> TokenKeys:
        try:
            raw = json.loads(secret)
        except ValueError:
            raise ValueError('the token key secret is not JSON: expected {"current": id, id: key, ...}') from None
        if not isinstance(raw, dict) or str(raw.get("current", "")) not in raw:
            raise ValueError("the token key secret names no current key that it holds")
        keys = {str(k): str(v).encode() for k, v in raw.items() if k != "current"}
        if any(len(key) < 32 for key in keys.values()):
            raise ValueError("every token key must be at least 32 characters")
        return cls(str(raw["current"]), keys)

    @classmethod
    def generate(cls, key_id: str = "k1") -> str:
        """A fresh secret string (what the local stack stores; the CDK stack has Secrets Manager generate one)."""
        return json.dumps({"current": key_id, key_id: secrets.token_urlsafe(36)})


@dataclass(frozen=True)
class Claims:
    visitor: str
    customer: str
    scopes: frozenset[str]
    expires: int


def new_visitor_id() -> str:
    """A fresh anonymous visitor id: 128 random bits, so nobody can guess another visitor's."""
    return "v-" + secrets.token_urlsafe(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, signing_input: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def mint(
    keys: TokenKeys,
    visitor: str = "",
    customer: str = "",
    ttl: int = SHOPPER_TTL_SECONDS,
    scopes: tuple[str, ...] = SCOPES,
    now: float | None = None,
) -> str:
    """A token for this visitor (and, when the store vouches for it, this customer), valid ``ttl`` seconds."""
    if not visitor and not customer:
        raise ValueError("a token acts for a visitor, a customer or both: give at least one")
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 1 and {MAX_TTL_SECONDS} seconds")
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {SCOPES}, got {sorted(scopes)}")
    if max(len(visitor), len(customer)) > MAX_ID_LENGTH:
        raise ValueError(f"ids are at most {MAX_ID_LENGTH} characters")
    issued = int(time.time() if now is None else now)
    header = {"alg": "HS256", "typ": "JWT", "kid": keys.current}
    claims: dict[str, Any] = {"aud": AUDIENCE, "iat": issued, "exp": issued + ttl, "scope": " ".join(scopes)}
    if visitor:
        claims["vid"] = visitor
    if customer:
        claims["sub"] = customer
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
    return f"{signing_input.decode()}.{_b64(_signature(keys.keys[keys.current], signing_input))}"


def verify(token: str, keys: TokenKeys, now: float | None = None) -> Claims:
    """The token's claims, if a key the store holds signed it, it has not expired, and it is for shopwise."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("the token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("the token is not a signed JWT (header.claims.signature)")
    try:
        header = json.loads(_unb64(parts[0]))
        signature = _unb64(parts[2])
    except ValueError:
        raise TokenError("the token is not a signed JWT (header.claims.signature)") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise TokenError("the token must be signed with HS256")
    key = keys.keys.get(str(header.get("kid", "")))
    if key is None:
        raise UnknownKey("the token names a key this store does not hold")
    if not hmac.compare_digest(signature, _signature(key, f"{parts[0]}.{parts[1]}".encode())):
        raise TokenError("the token's signature does not match")
    try:
        claims = json.loads(_unb64(parts[1]))
    except ValueError:
        raise TokenError("the token's claims are not JSON") from None
    if not isinstance(claims, dict) or claims.get("aud") != AUDIENCE:
        raise TokenError(f"the token is not for {AUDIENCE} (aud)")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires + CLOCK_SKEW_SECONDS < (time.time() if now is None else now):
        raise TokenError("the token has expired")
    visitor, customer = str(claims.get("vid") or ""), str(claims.get("sub") or "")
    if (not visitor and not customer) or max(len(visitor), len(customer)) > MAX_ID_LENGTH:
        raise TokenError("the token names no visitor or customer it acts for")
    scopes = frozenset(str(claims.get("scope") or "").split()) & frozenset(SCOPES)
    return Claims(visitor, customer, scopes, int(expires))
