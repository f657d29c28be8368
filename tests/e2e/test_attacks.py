"""The API tried as an attacker would, against the local stack (which enforces the stack's rules with the same code):
nobody reads or writes another shopper's data, forges server-side facts, replays a signed request with another
body, or calls from an origin the store does not allow — and nothing changes in any store when they try."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shopwise.access.tokens import TokenKeys, mint
from shopwise.dal.aws import client
from shopwise.dal.objects import list_keys, read_archive
from shopwise_local.sigv4 import signed_headers
from shopwise_local.stack import LocalStack
from shopwise_local.store import StockedStore, stock
from shopwise_local.store_backend import shopper_token, token_keys

from .conftest import Api

pytestmark = pytest.mark.e2e

SHOP = "http://127.0.0.1:3000"  # an origin the local environment allows (http://127.0.0.1:*)
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def store(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> StockedStore:
    return stock(stack, tmp_path_factory.mktemp("store"), shoppers=300, items=200, replay_max=300)


@pytest.fixture(scope="module")
def victim(api: Api, store: StockedStore) -> str:
    """A customer with a personal list (the store's servers can see it)."""
    for customer in store.customers:
        status, body = api.get(f"/v1/users/{customer}/recommendations?n=5")
        if status == 200 and body["source"] == "personalised":
            return customer
    raise AssertionError("no customer with a personal list in the stocked store")


def everything(stack: LocalStack) -> tuple[str, dict[str, bytes]]:
    """Every row of the feature store and every object of the archive, to prove an attack changed nothing."""
    assert stack.resources and stack.poller and stack.poller.wait_idle(60) and stack.impressions
    stack.impressions.flush()  # impressions of earlier answers land now, not by the timer during an attack
    rows = client("dynamodb").scan(TableName=stack.resources.tables["features"])["Items"]
    bucket = stack.resources.archive_bucket
    archive = {k: client("s3").get_object(Bucket=bucket, Key=k)["Body"].read() for k in list_keys(bucket, "")}
    return json.dumps(sorted(rows, key=lambda r: r["pk"]["S"]), sort_keys=True), archive


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_nobody_reads_another_customers_list(api: Api, stack: LocalStack, victim: str) -> None:
    path = f"/v1/users/{victim}/recommendations?n=5"
    mine = shopper_token(customer="attacker-1")
    old = mint(token_keys(), customer=victim, ttl=60, now=time.time() - 3600)  # expired an hour ago
    foreign = mint(TokenKeys.parse(TokenKeys.generate("k1")), customer=victim)  # another store's key
    visitor = api.call("POST", "/v1/visitors")[1]["token"]  # anyone can be a new visitor ...
    attempts = {
        "a guessed id, no credential": (api.call("GET", path), 401),
        "an expired token for the victim": (api.browser("GET", path, old), 401),
        "a token signed by another key": (api.browser("GET", path, foreign), 401),
        "another customer's token": (api.browser("GET", path, mine), 403),
        "a visitor's token": (api.browser("GET", path, visitor), 403),  # ... but no visitor is a customer
        "the victim's id as a visitor id": (api.browser("GET", path + "&id_type=anonymous", visitor), 403),
        "the re-rank of the victim": (
            api.browser("POST", "/v1/rank", mine, {"user_id": victim, "item_ids": ["x"]}),
            403,
        ),
        "a server route, unsigned": (api.call("GET", f"/v1/server/users/{victim}/recommendations"), 403),
    }
    for what, ((status, body), expected) in attempts.items():
        assert status == expected, (what, status, body)
        assert "items" not in body and "message" in body, what
        assert "eyJ" not in json.dumps(body), what  # a refusal never echoes the credential
    # the victim's own token (minted by the store's backend) reads it, and nothing identifying comes back
    status, answer = api.browser("GET", path, shopper_token(customer=victim), origin=SHOP)
    assert status == 200 and answer["source"] == "personalised"
    assert "profile_id" not in answer and "c:" not in json.dumps(answer)


def test_a_browser_cannot_forge_server_side_facts_and_nothing_changes(api: Api, stack: LocalStack, victim: str) -> None:
    """Given an attacker with a visitor token (and one with a shopper token of their own account), when they send
    events that stitch their cookie to the victim, grant the victim's marketing consent, buy as a guest, fake an
    impression or link an email, then every event is refused with its field, and no store changes."""
    attacker = api.call("POST", "/v1/visitors")[1]
    visitor, token = attacker["visitor_id"], attacker["token"]
    account = shopper_token(customer="attacker-2", visitor=visitor)
    base = {"occurred_at": now_iso(), "anonymous_id": visitor}
    forged: list[tuple[str, dict[str, Any], str]] = [
        (token, {"event_type": "identify", "customer_id": victim}, "customer_id"),
        (token, {"event_type": "consent", "customer_id": victim, "granted": ["marketing"]}, "customer_id"),
        (
            token,
            {"event_type": "consent", "anonymous_id": "someone-else", "granted": ["personalisation"]},
            "anonymous_id",
        ),
        (
            token,
            {"event_type": "purchase", "order_id": "o", "items": [{"item_id": "x", "unit_price": 1}]},
            "customer_id",
        ),
        (token, {"event_type": "impression", "recommendation_id": "r", "items": ["x"]}, "event_type"),
        (account, {"event_type": "identify", "customer_id": "attacker-2", "email": "victim@example.com"}, "email"),
        (account, {"event_type": "product_view", "customer_id": victim, "item_id": "x"}, "customer_id"),
    ]
    before = everything(stack)
    for n, (credential, fields, field) in enumerate(forged):
        event = {**base, "event_id": f"forged-{n}-{time.time_ns()}", **fields}
        status, body = api.browser("POST", "/v1/events", credential, {"events": [event]}, origin=SHOP)
        assert status == 400 and body["accepted"] == 0, (fields, body)
        assert body["results"][0]["field"] == field, (fields, body)
    # no credential at all: refused whole
    assert (
        api.call(
            "POST", "/v1/events", {"events": [{**base, "event_id": "anon", "event_type": "search", "query": "q"}]}
        )[0]
        == 401
    )
    assert before == everything(stack)  # the feature store and the archive are as they were


def test_a_captured_signed_request_cannot_carry_another_body(api: Api, stack: LocalStack, store: StockedStore) -> None:
    item = next(iter(store.catalog))
    honest = json.dumps({"items": [{"item_id": item, "price": 10.0}]}).encode()
    headers = signed_headers("PUT", f"{api.url}/v1/items", honest, {"Content-Type": "application/json"})
    swapped = json.dumps({"items": [{"item_id": item, "price": 0.01}]}).encode()
    status, body = api.call("PUT", "/v1/items", swapped, headers)
    assert status == 403 and ("body" in body["message"] or "signature" in body["message"])
    # nor skip the body's hash
    unsigned = signed_headers(
        "PUT",
        f"{api.url}/v1/items",
        b"",
        {"Content-Type": "application/json", "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"},
    )
    assert api.call("PUT", "/v1/items", swapped, unsigned)[0] == 403
    assert stack.resources
    row = client("dynamodb").get_item(TableName=stack.resources.tables["items"], Key={"item_id": {"S": item}})["Item"]
    assert float(row.get("price", {"N": "-1"})["N"]) != 0.01  # the swapped body never reached the catalog


def test_only_the_stores_origins_may_call_from_a_browser(api: Api, victim: str) -> None:
    path = f"/v1/users/{victim}/recommendations?n=3"
    token = shopper_token(customer=victim)
    status, body = api.browser("GET", path, token, origin=EVIL)
    assert status == 403 and "origin" in body["message"]
    assert api.browser("GET", path, token, origin=SHOP)[0] == 200
    # the CORS preflight answers the store's origin, not another
    import urllib.request

    def preflight(origin: str) -> dict[str, str]:
        request = urllib.request.Request(
            f"{api.url}{path}", method="OPTIONS", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(response.headers.items())

    assert preflight(SHOP)["Access-Control-Allow-Origin"] == SHOP
    assert "authorization" in preflight(SHOP)["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in preflight(EVIL)


def test_impressions_in_the_archive_are_the_serve_apis_own(api: Api, stack: LocalStack, victim: str) -> None:
    """What the readouts trust: every impression archived carries origin "serve" (clients cannot send one)."""
    assert api.get(f"/v1/users/{victim}/recommendations?n=3")[0] == 200
    assert stack.impressions and stack.impressions.flush() >= 0 and stack.resources
    bucket = stack.resources.archive_bucket
    impressions = [
        record
        for key in list_keys(bucket, "events/")
        for record in read_archive(bucket, key)
        if record and record["event_type"] == "impression"
    ]
    assert impressions and all(i["origin"] == "serve" for i in impressions)


def test_what_the_server_refuses_before_any_route_is_json_too(api: Api) -> None:
    """A request line over 64 KB is refused by the HTTP server itself (414): as API Gateway does, with a JSON
    message a client can read, not an HTML page (found by the property-based test's generated ids)."""
    status, body = api.call("GET", "/v1/popular?n=1&category=" + "x" * 70_000)
    assert status == 414 and "too long" in body["message"].lower()
    assert api.call("GET", "/v1/health")[0] == 200  # the server goes on answering
