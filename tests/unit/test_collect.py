import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shopwise.access.callers import BROWSER, Caller
from shopwise.ingestion.collect import collect
from shopwise.privacy.pseudonyms import Pseudonymiser

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = Pseudonymiser(b"k" * 32)
SERVER = Caller("server", principal="arn:aws:iam::123456789012:role/store-backend")
EVENTS = frozenset({"events"})


class RecordingPublisher:
    """A fake of the Kinesis port: keeps what it was asked to publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def publish(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        self.published.extend(records)


def event(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "product_view",
        "occurred_at": "2026-11-23T11:00:00Z",
        "customer_id": "c1",
        "item_id": "sku",
        **overrides,
    }


def test_valid_events_are_published_even_beside_invalid_ones() -> None:
    publisher = RecordingPublisher()
    batch = [event("ok-1"), event("bad", item_id=None), "not an object", event("ok-2", anonymous_id="a")]

    result = collect(batch, NOW, publisher, KEY, SERVER)

    assert (result.accepted, result.rejected) == (2, 2)
    assert [r["status"] for r in result.results] == ["accepted", "rejected", "rejected", "accepted"]
    assert result.results[1]["field"] == "item_id"
    # partitioned by profile, and the customer id is a pseudonym by the time it is published
    assert [key for key, _ in publisher.published] == [f"c:{KEY.customer('c1')}"] * 2
    assert all(record["customer_id"] == KEY.customer("c1") for _, record in publisher.published)
    assert all(record["pseudonymised"] is True for _, record in publisher.published)
    # the server stamps received_at
    assert all(record["received_at"].startswith("2026-11-23T12:00") for _, record in publisher.published)


def test_nothing_is_published_when_everything_is_rejected() -> None:
    publisher = RecordingPublisher()
    result = collect([event("x", occurred_at="2027-01-01T00:00:00Z")], NOW, publisher, KEY, SERVER)
    assert result.accepted == 0
    assert result.results[0]["field"] == "occurred_at"
    assert publisher.published == []


def test_identify_emails_and_devices_are_hashed_and_the_raw_email_is_gone() -> None:
    publisher = RecordingPublisher()
    identify = {
        "event_id": "id-1",
        "event_type": "identify",
        "occurred_at": "2026-11-23T11:00:00Z",
        "anonymous_id": "cookie-1",
        "customer_id": "c1",
        "email": " Ada@Example.COM ",
        "device_id": "phone-1",
    }
    result = collect([identify], NOW, publisher, KEY, SERVER)
    assert result.accepted == 1
    _, record = publisher.published[0]
    assert "email" not in record
    assert "ada" not in json.dumps(record).lower() and "example.com" not in json.dumps(record).lower()
    assert record["email_hash"] == KEY.email("ada@example.com")  # normalised before hashing
    assert record["device_id"] == KEY.device("phone-1") != "phone-1"
    assert record["anonymous_id"] == "cookie-1"  # a random cookie id is already a pseudonym


def test_a_client_cannot_claim_its_ids_are_already_hashed() -> None:
    publisher = RecordingPublisher()
    batch = [event("x", pseudonymised=True), event("y", email_hash="abc"), event("z", origin="server")]
    result = collect(batch, NOW, publisher, KEY, SERVER)
    assert result.accepted == 0 and publisher.published == []
    assert [r["field"] for r in result.results] == ["pseudonymised", "email_hash", "origin"]
    assert result.results[1] == {
        "index": 1,
        "event_id": "y",
        "status": "rejected",
        "field": "email_hash",
        "reason": "is set by the server, not by the client",
    }


def test_pseudonyms_depend_on_the_key() -> None:
    other = Pseudonymiser(b"o" * 32)
    assert KEY.customer("c1") == KEY.customer("c1") != other.customer("c1")
    assert KEY.customer("c1") != KEY.device("c1")  # the kind is part of what is hashed
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymiser(b"short")


def test_a_browser_sends_events_only_for_its_own_visitor_and_customer() -> None:
    """Given a browser whose token names visitor v1 (and, with a shopper token, customer c1), when it sends events
    that name other shoppers, claim purchases or link emails, then those events alone are refused, the field named."""
    visitor = Caller(BROWSER, visitor="v1", scopes=EVENTS)
    shopper = Caller(BROWSER, visitor="v1", customer="c1", scopes=EVENTS)
    purchase: dict[str, Any] = {
        "event_type": "purchase",
        "order_id": "o1",
        "items": [{"item_id": "sku", "unit_price": 9.5}],
        "item_id": None,
    }
    del_customer = {"customer_id": None}
    batch = [
        event("own", **del_customer),  # names nobody: the token's visitor is filled in
        event("other-visitor", **del_customer, anonymous_id="v2"),
        event("other-customer", customer_id="c2"),
        event("guest-purchase", **del_customer, anonymous_id="v1", **purchase),
        event("link-email", event_type="identify", **del_customer, item_id=None, anonymous_id="v1", email="x@y.z"),
        event("impression", event_type="impression", recommendation_id="r", items=["a"], item_id=None),
    ]
    publisher = RecordingPublisher()
    result = collect([{k: v for k, v in e.items() if v is not None} for e in batch], NOW, publisher, KEY, visitor)
    assert [(r["event_id"], r.get("field")) for r in result.results] == [
        ("own", None),
        ("other-visitor", "anonymous_id"),
        ("other-customer", "customer_id"),
        ("guest-purchase", "customer_id"),
        ("link-email", "email"),
        ("impression", "event_type"),
    ]
    assert [(r["anonymous_id"], r["origin"]) for _, r in publisher.published] == [("v1", "visitor")]
    # the store vouched for customer c1: its purchase and its link to the visitor are accepted
    publisher = RecordingPublisher()
    mine = [event("buy", **purchase), event("link", event_type="identify", item_id=None, anonymous_id="v1")]
    result = collect([{k: v for k, v in e.items() if v is not None} for e in mine], NOW, publisher, KEY, shopper)
    assert result.accepted == 2 and {r["origin"] for _, r in publisher.published} == {"shopper"}


def test_impressions_come_from_no_client_not_even_the_stores_servers() -> None:
    publisher = RecordingPublisher()
    fake = event("imp", event_type="impression", recommendation_id="r1", items=["a", "b"], item_id=None)
    result = collect([fake], NOW, publisher, KEY, SERVER)
    assert result.results[0]["field"] == "event_type" and publisher.published == []


def test_numbers_no_store_charges_and_times_no_calendar_holds_are_rejected_alone() -> None:
    publisher = RecordingPublisher()
    buy = {"event_type": "purchase", "order_id": "o1", "item_id": None}
    batch = [
        event("inf-price", **buy, items=[{"item_id": "i", "unit_price": float("inf")}]),
        event("nan-revenue", **buy, items=[{"item_id": "i", "unit_price": 1.0}], revenue=float("nan")),
        event("huge", **buy, items=[{"item_id": "i", "unit_price": 1e13}]),
        event("year-one", occurred_at="0001-01-01T00:00:00+01:00"),
        event("tiny", **buy, items=[{"item_id": "i", "unit_price": 1e-200}]),  # a price of 0 after rounding
        event("fine"),
    ]
    batch = [{k: v for k, v in e.items() if v is not None} for e in batch]

    result = collect(batch, NOW, publisher, KEY, SERVER)

    fields = {r["event_id"]: r.get("field") for r in result.results if r["status"] == "rejected"}
    assert fields == {
        "inf-price": "items.0.unit_price",
        "nan-revenue": "revenue",
        "huge": "items.0.unit_price",
        "year-one": "occurred_at",
    }
    published = {record["event_id"]: record for _, record in publisher.published}
    assert set(published) == {"tiny", "fine"}
    assert published["tiny"]["items"][0]["unit_price"] == 0.0
    assert "Infinity" not in json.dumps(published) and "NaN" not in json.dumps(published)


def test_a_catalog_price_is_a_finite_amount_too() -> None:
    from pydantic import ValidationError

    from shopwise.catalog.api import ItemPatch

    for bad in (float("nan"), float("inf"), -1.0, 1e13):
        with pytest.raises(ValidationError, match="price"):
            ItemPatch(item_id="x", price=bad)
    assert ItemPatch(item_id="x", price=1e-200).price == 0.0  # DynamoDB holds no number that small
    assert ItemPatch(item_id="x", price=12.3456789).price == 12.345679
