import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shopwise.ingestion.collect import MAX_EVENTS_PER_BATCH, BadBatch, collect, parse_batch

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


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

    result = collect(batch, NOW, publisher)

    assert (result.accepted, result.rejected) == (2, 2)
    assert [r["status"] for r in result.results] == ["accepted", "rejected", "rejected", "accepted"]
    assert result.results[1]["field"] == "item_id"
    assert [key for key, _ in publisher.published] == ["c1", "c1"]
    # the server stamps received_at
    assert all(record["received_at"].startswith("2026-11-23T12:00") for _, record in publisher.published)


def test_nothing_is_published_when_everything_is_rejected() -> None:
    publisher = RecordingPublisher()
    result = collect([event("x", occurred_at="2027-01-01T00:00:00Z")], NOW, publisher)
    assert result.accepted == 0
    assert result.results[0]["field"] == "occurred_at"
    assert publisher.published == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("", 400, "empty body"),
        ("{not json", 400, "not JSON"),
        (json.dumps([1, 2]), 400, "expected a JSON object"),
        (json.dumps({"events": []}), 400, "empty"),
        (json.dumps({"events": [{}] * (MAX_EVENTS_PER_BATCH + 1)}), 413, "limit"),
        ("x" * 1_000_001, 413, "bytes"),
    ],
)
def test_unusable_batches_say_what_is_wrong(body: str, status: int, message: str) -> None:
    with pytest.raises(BadBatch) as caught:
        parse_batch(body)
    assert caught.value.status == status
    assert message in str(caught.value)
