"""The item catalog (PynamoDB): what the bulk import and PUT /v1/items write, the catalog export scans and the
feature updater reads categories from; and the out-of-stock set serving reads in its one round trip (a string set
in the feature store, kept by the same writers)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from shopwise.catalog.items import CatalogItem
from shopwise.dal.aws import client
from shopwise.dal.batch import get_many, pk
from shopwise.dal.pynamo import bound
from shopwise.keys import OUT_OF_STOCK, UNAVAILABLE_KEY

FIELDS = ("title", "category", "price", "brand", "market", "in_stock", "created_at")


class ItemRow(Model):
    item_id = UnicodeAttribute(hash_key=True)
    title = UnicodeAttribute(null=True)
    category = UnicodeAttribute(null=True)  # the category path, most general first
    price = NumberAttribute(null=True)
    brand = UnicodeAttribute(null=True)
    market = UnicodeAttribute(null=True)
    in_stock = BooleanAttribute(null=True)
    created_at = UnicodeAttribute(null=True)  # ISO 8601
    attributes = UnicodeAttribute(null=True)  # free attributes, a JSON object


def _row(model: type[ItemRow], item: CatalogItem) -> ItemRow:
    return model(
        item.item_id,
        title=item.title or None,
        category=item.category or None,
        price=float(item.price) if item.price is not None else None,
        brand=item.brand or None,
        market=item.market or None,
        in_stock=item.in_stock,
        created_at=item.created_at.isoformat() if item.created_at is not None else None,
        attributes=json.dumps(item.attributes, sort_keys=True, default=str) if item.attributes else None,
    )


def as_json(row: ItemRow) -> dict[str, Any]:
    """An items-table row as the catalog's JSON form (what the training job reads): the fields it has."""
    out: dict[str, Any] = {"item_id": row.item_id}
    for name in FIELDS:
        value = getattr(row, name)
        if value is not None:
            out[name] = float(value) if name == "price" else value
    if row.attributes:
        out["attributes"] = json.loads(row.attributes)
    return out


def put_items(table: str, items: Iterable[CatalogItem]) -> int:
    model = bound(ItemRow, table)
    written = 0
    with model.batch_write() as batch:
        for item in items:
            batch.save(_row(model, item))
            written += 1
    return written


def scan_items(table: str) -> Iterator[dict[str, Any]]:
    """Every catalog item (a paginated Scan; one read of the table)."""
    for row in bound(ItemRow, table).scan():
        yield as_json(row)


def categories(table: str, item_ids: Iterable[str]) -> dict[str, str]:
    """item id -> category for the items the catalog knows (one BatchGetItem per 100 items). Every batch of the
    stream updater reads it: through ``dal.batch``'s rows, not PynamoDB's models (a third of the CPU for a batch's
    65 ids: ``tests/bench/bench_wire.py``)."""
    wanted = sorted(set(item_ids))
    rows = get_many(table, [pk(item_id, "item_id") for item_id in wanted], "item_id, category") if wanted else []
    return {row["item_id"]["S"]: row["category"]["S"] for row in rows if row.get("category", {}).get("S")}


def item_facts(table: str, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """item id -> its catalog fields (title, category, price, ...) for the items the catalog knows (one
    BatchGetItem per 100 items): what an operator's view puts beside a list of ids."""
    wanted = sorted(set(item_ids))
    if not wanted:
        return {}
    return {row.item_id: as_json(row) for row in bound(ItemRow, table).batch_get(wanted)}


def patch_item(table: str, item_id: str, changes: dict[str, Any]) -> bool:
    """Set the given fields of one item in place (an update, never a read-modify-write); returns True if the item
    did not exist before (it is created with just these fields)."""
    model = bound(ItemRow, table)
    actions = [getattr(model, name).set(float(value) if name == "price" else value) for name, value in changes.items()]
    for exists in (True, False):
        condition = model.item_id.exists() if exists else model.item_id.does_not_exist()
        try:
            model(item_id).update(actions=actions, condition=condition)
            return not exists
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    return patch_item(table, item_id, changes)  # created (or deleted) between the two: try again


def set_availability(features_table: str, in_stock: dict[str, bool]) -> None:
    """Keep the out-of-stock set serving reads in its one round trip (``UNAVAILABLE_KEY`` in the feature store):
    ADD the items out of stock, DELETE those back in stock. Set updates commute, so concurrent writers agree."""
    gone = sorted(i for i, ok in in_stock.items() if not ok)
    back = sorted(i for i, ok in in_stock.items() if ok)
    for verb, ids in (("ADD", gone), ("DELETE", back)):  # one path may not be updated twice in one expression
        for start in range(0, len(ids), 1000):
            client("dynamodb").update_item(
                TableName=features_table,
                Key=pk(UNAVAILABLE_KEY),
                UpdateExpression=f"{verb} {OUT_OF_STOCK} :ids",
                ExpressionAttributeValues={":ids": {"SS": ids[start : start + 1000]}},
            )
