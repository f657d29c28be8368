"""Shopper tokens and the trust rules: who may act for whom, decided with no network call."""

from __future__ import annotations

import base64
import json

import pytest

from shopwise.access.callers import BROWSER, PUBLIC, SERVER, Caller, Forbidden, Unauthorized, caller_of
from shopwise.access.keys import FixedKeys, KeySource
from shopwise.access.tokens import TokenError, TokenKeys, mint, verify

NOW = 1_800_000_000.0
KEYS = TokenKeys.parse(TokenKeys.generate("k1"))
OTHER = TokenKeys.parse(TokenKeys.generate("k1"))  # another store's key under the same id
ALLOWED = ("https://shop.example", "http://127.0.0.1:*")


def bearer(token: str, origin: str = "https://shop.example") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": origin}


def test_a_token_carries_its_shopper_and_is_refused_when_expired_forged_or_foreign() -> None:
    token = mint(KEYS, visitor="v1", customer="c1", ttl=600, now=NOW)
    claims = verify(token, KEYS, now=NOW + 10)
    assert (claims.visitor, claims.customer, claims.scopes) == ("v1", "c1", frozenset({"events", "recommendations"}))
    with pytest.raises(TokenError, match="expired"):
        verify(token, KEYS, now=NOW + 600 + 61)
    with pytest.raises(TokenError, match="signature"):
        verify(token, OTHER, now=NOW)
    header, claims_part, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(claims_part + "=="))
    forged["sub"] = "someone-else"
    forged_part = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature"):
        verify(f"{header}.{forged_part}.{signature}", KEYS, now=NOW)
    unsigned = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "k1"}).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="HS256"):
        verify(f"{unsigned}.{claims_part}.", KEYS, now=NOW)
    with pytest.raises(TokenError):
        verify("not-a-token", KEYS, now=NOW)


def test_a_rotated_key_verifies_old_and_new_tokens_and_is_read_again_when_unknown() -> None:
    """Given a key source that read the secret before a rotation, when a token signed with the new key arrives,
    then the source reads the secret again once and the token is accepted, as is one signed with the old key."""
    rotated = TokenKeys(current="k2", keys={**KEYS.keys, "k2": b"n" * 40})
    secrets = [json.dumps({"current": "k1", "k1": KEYS.keys["k1"].decode()})]

    class Source(KeySource):
        def _load(self, fresh: bool = False) -> None:
            self._keys = TokenKeys.parse(secrets[-1])
            self._read_at = -1e9  # as if read long ago: a reload is allowed

    source = Source("secret-arn")
    old = mint(KEYS, visitor="v1", now=NOW)
    assert caller_of({}, bearer(old), "/v1/events", source, ALLOWED, now=NOW).visitor == "v1"
    secrets.append(json.dumps({"current": "k2", "k1": KEYS.keys["k1"].decode(), "k2": "n" * 40}))
    new = mint(rotated, visitor="v2", now=NOW)
    assert caller_of({}, bearer(new), "/v1/events", source, ALLOWED, now=NOW).visitor == "v2"
    assert caller_of({}, bearer(old), "/v1/events", source, ALLOWED, now=NOW).visitor == "v1"


def test_who_is_calling() -> None:
    keys = FixedKeys(KEYS)
    iam = {"authorizer": {"iam": {"userArn": "arn:aws:iam::1:role/backend"}}}
    assert caller_of(iam, {}, "/v1/server/events", keys, ALLOWED).kind == SERVER
    assert caller_of({}, {}, "/v1/popular", keys, ALLOWED).kind == PUBLIC
    token = mint(KEYS, visitor="v1", now=NOW)
    assert caller_of({}, bearer(token, "http://127.0.0.1:8123"), "/v1/events", keys, ALLOWED, NOW).kind == BROWSER
    with pytest.raises(Forbidden, match="origin"):
        caller_of({}, bearer(token, "https://evil.example"), "/v1/events", keys, ALLOWED, NOW)
    with pytest.raises(Forbidden, match="IAM"):  # a server route reached without the authoriser
        caller_of({}, {}, "/v1/server/events", keys, ALLOWED, NOW)
    with pytest.raises(Unauthorized, match="Bearer"):
        caller_of({}, {"Authorization": "Basic abc"}, "/v1/events", keys, ALLOWED, NOW)
    with pytest.raises(Unauthorized) as refused:
        caller_of({}, bearer(mint(OTHER, visitor="v1", now=NOW)), "/v1/events", keys, ALLOWED, NOW)
    assert "eyJ" not in str(refused.value)  # the credential is never echoed


def test_a_browser_reads_only_its_own_shoppers_lists() -> None:
    shopper = Caller(BROWSER, visitor="v1", customer="c1", scopes=frozenset({"recommendations"}))
    shopper.may_read("c1", "customer")
    shopper.may_read("v1", "anonymous")
    with pytest.raises(Forbidden):
        shopper.may_read("c2", "customer")
    with pytest.raises(Forbidden):
        shopper.may_read("c1", "anonymous")  # a customer id is not a visitor id
    with pytest.raises(Forbidden, match="scope"):
        Caller(BROWSER, visitor="v1", scopes=frozenset({"events"})).may_read("v1", "anonymous")
    with pytest.raises(Unauthorized):
        Caller(PUBLIC).may_read("c1", "customer")
    Caller(SERVER, principal="backend").may_read("anyone", "customer")
