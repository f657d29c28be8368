from datetime import UTC, datetime, timedelta

import pytest

from shopwise.events import (
    AddToCart,
    EventRejected,
    Purchase,
    check_clock,
    interaction_items,
    parse_event,
    to_record,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def view(**overrides: object) -> dict[str, object]:
    return {
        "event_id": "e1",
        "event_type": "product_view",
        "occurred_at": "2026-11-23T11:59:00Z",
        "anonymous_id": "anon-1",
        "item_id": "sku-1",
        **overrides,
    }


def test_purchase_yields_one_interaction_per_line_item() -> None:
    event = parse_event(
        {
            "event_id": "p1",
            "event_type": "purchase",
            "occurred_at": "2026-11-23T10:00:00",
            "customer_id": "c1",
            "order_id": "o1",
            "items": [{"item_id": "a", "quantity": 2, "unit_price": 3.5}, {"item_id": "b"}],
            "revenue": 7.0,
        }
    )
    assert isinstance(event, Purchase)
    assert event.occurred_at.tzinfo is not None  # a naive timestamp is read as UTC
    assert interaction_items(event) == [("a", "purchase"), ("b", "purchase")]
    assert event.profile_id == "c:c1"  # the customer, keyed as a profile


def test_customer_id_wins_over_anonymous_id_for_the_profile() -> None:
    event = parse_event(view(customer_id="c9"))
    assert event.profile_id == "c:c9"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (view(event_type="teleport"), "event_type"),
        (view(item_id=""), "item_id"),
        (view(occurred_at="yesterday-ish"), "occurred_at"),
        ({k: v for k, v in view().items() if k != "event_id"}, "event_id"),
        (view(surprise="field"), "surprise"),
    ],
)
def test_rejection_names_the_field_at_fault(raw: dict[str, object], field: str) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_event(raw)
    assert caught.value.field == field


def test_an_event_needs_someone() -> None:
    with pytest.raises(EventRejected) as caught:
        parse_event({k: v for k, v in view().items() if k != "anonymous_id"})
    assert "anonymous_id or customer_id" in caught.value.reason


def test_clock_rule_rejects_far_future_and_far_past_but_allows_skew() -> None:
    check_clock(parse_event(view(occurred_at=(NOW + timedelta(minutes=4)).isoformat())), NOW)
    with pytest.raises(EventRejected, match="future"):
        check_clock(parse_event(view(occurred_at=(NOW + timedelta(minutes=6)).isoformat())), NOW)
    with pytest.raises(EventRejected, match="shopwise import"):
        check_clock(parse_event(view(occurred_at=(NOW - timedelta(days=91)).isoformat())), NOW)


def test_record_round_trips_through_the_schema() -> None:
    event = parse_event(
        {
            "event_id": "c1",
            "event_type": "add_to_cart",
            "occurred_at": "2026-11-23T10:00:00Z",
            "anonymous_id": "a",
            "item_id": "x",
            "quantity": 3,
        }
    )
    again = parse_event(to_record(event))
    assert isinstance(again, AddToCart)
    assert again == event
