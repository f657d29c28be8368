"""The item catalog in DynamoDB (the items table also holds the item counters the feature updater keeps)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shopwise.catalog import CatalogItem
from shopwise.dal.recommendations import batch_write


def encode_item(item: CatalogItem) -> dict[str, Any]:
    row: dict[str, Any] = {"item_id": {"S": item.item_id}, "in_stock": {"BOOL": item.in_stock}}
    if item.title:
        row["title"] = {"S": item.title}
    if item.category:
        row["category"] = {"S": item.category}
    if item.price is not None:
        row["price"] = {"N": repr(float(item.price))}
    if item.brand:
        row["brand"] = {"S": item.brand}
    if item.market:
        row["market"] = {"S": item.market}
    return row


def put_items(table: str, items: Iterable[CatalogItem]) -> int:
    return batch_write(table, (encode_item(item) for item in items))
