"""The item catalog in DynamoDB: what the import and PUT /v1/items write and the feature updater reads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from shopwise.catalog.items import CatalogItem
from shopwise.dal.recommendations import batch_get, batch_write
from shopwise.keys import OUT_OF_STOCK, UNAVAILABLE_KEY


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
    if item.created_at is not None:
        row["created_at"] = {"S": item.created_at.isoformat()}
    if item.attributes:
        row["attributes"] = {"S": json.dumps(item.attributes, sort_keys=True, default=str)}
    return row


def decode_item(row: dict[str, Any]) -> dict[str, Any]:
    """A items-table row as the catalog's JSON form (what the training job reads)."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if "S" in value:
            out[name] = json.loads(value["S"]) if name == "attributes" else value["S"]
        elif "N" in value:
            out[name] = float(value["N"])
        elif "BOOL" in value:
            out[name] = value["BOOL"]
    return out


def scan_items(table: str) -> Iterator[dict[str, Any]]:
    """Every catalog item (a paginated Scan; one read of the table)."""
    from shopwise.dal.aws import client

    for page in client("dynamodb").get_paginator("scan").paginate(TableName=table):
        for row in page.get("Items", []):
            yield decode_item(row)


def put_items(table: str, items: Iterable[CatalogItem]) -> int:
    return batch_write(table, (encode_item(item) for item in items))


def set_availability(features_table: str, in_stock: dict[str, bool]) -> None:
    """Keep the out-of-stock set serving reads in its one round trip (``UNAVAILABLE_KEY`` in the feature store):
    ADD the items out of stock, DELETE those back in stock. Set updates commute, so concurrent writers agree."""
    from shopwise.dal.aws import client

    gone = sorted(i for i, ok in in_stock.items() if not ok)
    back = sorted(i for i, ok in in_stock.items() if ok)
    for verb, ids in (("ADD", gone), ("DELETE", back)):  # one path may not be updated twice in one expression
        for start in range(0, len(ids), 1000):
            client("dynamodb").update_item(
                TableName=features_table,
                Key={"pk": {"S": UNAVAILABLE_KEY}},
                UpdateExpression=f"{verb} {OUT_OF_STOCK} :ids",
                ExpressionAttributeValues={":ids": {"SS": ids[start : start + 1000]}},
            )


def categories(table: str, item_ids: Iterable[str]) -> dict[str, str]:
    """item id -> category for the items the catalog knows (one BatchGetItem per 100 items)."""
    wanted = sorted(set(item_ids))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 100):
        keys = [{"item_id": {"S": i}} for i in wanted[start : start + 100]]
        rows, _trips = batch_get({table: keys}, projections={table: "item_id, category"})
        for row in rows[table]:
            if "category" in row:
                found[row["item_id"]["S"]] = row["category"]["S"]
    return found


def patch_item(table: str, item_id: str, changes: dict[str, Any]) -> bool:
    """Set the given fields of one item in place (UpdateItem); returns True if the item did not exist before."""
    from shopwise.dal.aws import client

    names = {f"#f{n}": name for n, name in enumerate(changes)}
    values: dict[str, Any] = {}
    for n, value in enumerate(changes.values()):
        if isinstance(value, bool):
            values[f":v{n}"] = {"BOOL": value}
        elif isinstance(value, int | float):
            values[f":v{n}"] = {"N": repr(float(value))}
        else:
            values[f":v{n}"] = {"S": str(value)}
    response = client("dynamodb").update_item(
        TableName=table,
        Key={"item_id": {"S": item_id}},
        UpdateExpression="SET " + ", ".join(f"#f{n} = :v{n}" for n in range(len(changes))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValues="UPDATED_OLD",
    )
    return not response.get("Attributes")
