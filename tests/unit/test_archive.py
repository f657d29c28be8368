"""The archive's table (``shopwise.archive``): every field of every event has a column, a record comes back from
Parquet exactly as it was archived, and what Firehose's conversion would refuse goes to the error side."""

from __future__ import annotations

import gzip
import io
import json
import typing
from typing import Any

import pyarrow.parquet as pq
import pytest

from shopwise import archive
from shopwise.events import Event, Purchase, parse_event, to_record

AT = "2026-11-30T10:00:00Z"
WHO = {"anonymous_id": "v1", "customer_id": "c" * 32, "session_id": "s1", "market": "NZ", "referrer": "x.com"}
COMMON = {**WHO, "occurred_at": AT, "received_at": AT, "user_agent_class": "mobile", "pseudonymised": True}
# one event of every type, every optional field set
EVERY_TYPE: list[dict[str, Any]] = [
    {"event_type": "product_view", "item_id": "i1", "price": 9.5, "origin": "shopper"},
    {"event_type": "add_to_cart", "item_id": "i1", "quantity": 2, "unit_price": 9.5, "origin": "visitor"},
    {"event_type": "remove_from_cart", "item_id": "i1", "quantity": 1, "origin": "visitor"},
    {
        "event_type": "purchase",
        "order_id": "o1",
        "items": [{"item_id": "i1", "quantity": 2, "unit_price": 9.5, "currency": "NZD"}],
        "revenue": 19.0,
        "currency": "NZD",
        "origin": "server",
    },
    {"event_type": "search", "query": "boots", "results": ["i1", "i2"], "origin": "visitor"},
    {
        "event_type": "impression",
        "recommendation_id": "r1",
        "items": ["i1", "i2"],
        "placement": "product",
        "experiment": "e",
        "variant": "v",
        "model_version": "m1",
        "source": "realtime",
        "scores": [1.0, 0.5],
        "origin": "serve",
    },
    {"event_type": "click", "item_id": "i2", "recommendation_id": "r1", "placement": "product", "origin": "visitor"},
    {"event_type": "identify", "email_hash": "e" * 32, "device_id": "d1", "origin": "server"},
    {"event_type": "consent", "granted": ["personalisation"], "revoked": ["marketing"], "origin": "visitor"},
    {"event_type": "rekey", "previous": ["a:old", "c:older"], "origin": "server"},
]


def records() -> list[dict[str, Any]]:
    return [to_record(parse_event({"event_id": f"e{n}", **COMMON, **e})) for n, e in enumerate(EVERY_TYPE)]


def test_every_field_of_every_event_type_has_a_column() -> None:
    (union, *_meta) = typing.get_args(Event)
    models = typing.get_args(union)
    assert len(models) == len(EVERY_TYPE)  # a new event type needs its sample here
    for model in models:
        kind = typing.get_args(model.model_fields["event_type"].annotation)[0]
        renamed = archive.RENAMED.get(kind, {})
        for field in model.model_fields:
            assert field in archive.NEVER_ARCHIVED or renamed.get(field, field) in archive.NAMES, (kind, field)


def test_each_event_comes_back_from_parquet_exactly_as_it_was_archived() -> None:
    written = records()
    assert {r["event_type"] for r in written} == {e["event_type"] for e in EVERY_TYPE}
    body = archive.encode_parquet(written)
    table = pq.read_table(io.BytesIO(body))
    assert table.schema.names == [c.name for c in archive.COLUMNS]  # the Glue table's columns, in its order
    # an impression's item ids sit in their own column; a purchase's line items keep theirs
    rows = table.to_pylist()
    assert rows[5]["impression_items"] == ["i1", "i2"] and rows[5]["items"] is None
    assert rows[3]["items"][0]["item_id"] == "i1" and rows[3]["impression_items"] is None
    back = list(archive.read_records("events/dt=2026-11-30/hour=10/x.parquet", io.BytesIO(body)))
    assert back == written
    assert [parse_event(r) for r in back] == [parse_event(r) for r in written]


def test_a_record_comes_back_without_the_fields_it_was_written_without_nested_ones_too() -> None:
    # what another writer than the collector may archive: a line item without its currency (the model's default)
    sparse = {
        "event_id": "p1",
        "event_type": "purchase",
        "occurred_at": AT,
        "customer_id": "c1",
        "order_id": "o1",
        "items": [{"item_id": "i1", "quantity": 2, "unit_price": 5.0}],
    }
    (back,) = archive.read_records(".parquet", io.BytesIO(archive.encode_parquet([sparse])))
    assert back == sparse
    purchase = parse_event(back)
    assert isinstance(purchase, Purchase) and purchase.items[0].currency == "USD"  # the default applies again


def test_json_lines_from_before_the_conversion_read_the_same() -> None:
    written = records()
    body = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in written) + b"not json\n\n")
    back = list(archive.read_records("events/dt=2026-11-30/hour=10/old.jsonl.gz", io.BytesIO(body)))
    assert back == [*written, None]  # a line that is not JSON is None, for the reader to count


def test_what_the_conversion_refuses_goes_to_the_error_side_not_the_table() -> None:
    good = [json.dumps(r).encode() for r in records()]
    bad = [b"not json", b"[1, 2]", json.dumps({"event_id": "x", "event_type": "product_view", "colour": 1}).encode()]
    parquet, failed = archive.convert([bad[0], *good, *bad[1:]])
    assert failed == bad
    assert parquet is not None and list(archive.read_records(".parquet", io.BytesIO(parquet))) == records()
    assert archive.convert(bad) == (None, bad)
    with pytest.raises(archive.NotArchivable, match="colour"):
        archive.to_row(json.loads(bad[2]))


def test_row_groups_bound_what_a_reader_holds() -> None:
    many = [{**records()[0], "event_id": f"e{n}"} for n in range(archive.ROW_GROUP + 10)]
    parquet = pq.ParquetFile(io.BytesIO(archive.encode_parquet(many)))
    assert parquet.metadata.num_row_groups == 2 and parquet.metadata.num_rows == len(many)
