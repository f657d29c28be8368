"""Precomputed recommendation lists and the active model version (thin boto3 layer: batch reads and writes
across tables are what PynamoDB can't do in one call).

A list is stored as one compact JSON string attribute: cheaper to read than a list of maps, in DynamoDB and in the
local endpoint alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shopwise.dal.aws import backoff, client

MAX_BATCH_RETRIES = 8
ACTIVE_MODEL_KEY = "active_model"


@dataclass(frozen=True)
class RecommendationRow:
    key: str  # "user#<id>", "item#<id>", "next#<id>", "popular#global", "popular#category:<c>", "popular#market:<m>"
    items: list[list[Any]]  # [[item_id, score, because_item_id or ""], ...] best first
    model_version: str


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def batch_write(table: str, items: Iterable[dict[str, Any]]) -> int:
    """BatchWriteItem in chunks of 25, retrying UnprocessedItems with backoff. Returns the number written."""
    ddb = client("dynamodb")
    written = 0
    for chunk in _chunks(items, 25):
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        for attempt in range(MAX_BATCH_RETRIES):
            unprocessed = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not unprocessed:
                break
            request = unprocessed
            backoff(attempt)
        else:
            raise RuntimeError(f"{table}: items still unprocessed after {MAX_BATCH_RETRIES} retries")
        written += len(chunk)
    return written


def batch_get(
    request: dict[str, list[dict[str, Any]]], projections: dict[str, str] | None = None
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """BatchGetItem over one or more tables, retrying UnprocessedKeys. Returns rows per table and round trips.
    ``projections`` names the attributes to read per table (a ProjectionExpression), where not all are needed."""
    ddb = client("dynamodb")
    found: dict[str, list[dict[str, Any]]] = {table: [] for table in request}
    pending: dict[str, Any] = {t: {"Keys": keys} for t, keys in request.items() if keys}
    for table, projection in (projections or {}).items():
        if table in pending:
            pending[table]["ProjectionExpression"] = projection
    trips = 0
    while pending:
        response = ddb.batch_get_item(RequestItems=pending)
        trips += 1
        for table, rows in response.get("Responses", {}).items():
            found[table].extend(rows)
        pending = response.get("UnprocessedKeys") or {}
        if pending:
            if trips > MAX_BATCH_RETRIES:
                raise RuntimeError("BatchGetItem: keys still unprocessed after retries")
            backoff(trips)
    return found, trips


def read_rows(table: str, keys: list[str], now: float | None = None) -> dict[str, RecommendationRow]:
    """The live rows of these keys (100 per BatchGetItem); keys with no row, or an expired one, are left out."""
    found: dict[str, RecommendationRow] = {}
    for start in range(0, len(keys), 100):
        got, _trips = batch_get({table: [{"pk": {"S": k}} for k in keys[start : start + 100]]})
        for raw in got[table]:
            row = decode_row(raw, now)
            if row:
                found[row.key] = row
    return found


def encode_row(row: RecommendationRow, ttl_days: int, now: float | None = None) -> dict[str, Any]:
    expires = int((now or time.time()) + ttl_days * 86400)
    return {
        "pk": {"S": row.key},
        "items": {"S": json.dumps(row.items, separators=(",", ":"))},
        "model_version": {"S": row.model_version},
        "expires_at": {"N": str(expires)},
    }


def decode_row(item: dict[str, Any], now: float | None = None) -> RecommendationRow | None:
    """A stored row, or None when its TTL has passed (DynamoDB deletes expired items lazily)."""
    if int(item.get("expires_at", {}).get("N", "0")) < (now or time.time()):
        return None
    return RecommendationRow(
        key=item["pk"]["S"], items=json.loads(item["items"]["S"]), model_version=item["model_version"]["S"]
    )


def write_recommendations(table: str, rows: Iterable[RecommendationRow], ttl_days: int) -> int:
    now = time.time()
    return batch_write(table, (encode_row(row, ttl_days, now) for row in rows))


def set_active_model(config_table: str, model_version: str, metrics: dict[str, float] | None = None) -> None:
    client("dynamodb").put_item(
        TableName=config_table,
        Item={
            "pk": {"S": ACTIVE_MODEL_KEY},
            "model_version": {"S": model_version},
            "activated_at": {"N": str(int(time.time()))},
            "metrics": {"S": json.dumps(metrics or {})},
        },
    )


def get_active_model(config_table: str) -> str | None:
    row = client("dynamodb").get_item(TableName=config_table, Key={"pk": {"S": ACTIVE_MODEL_KEY}}).get("Item")
    return row["model_version"]["S"] if row else None
