"""BatchGetItem and BatchWriteItem, in DynamoDB's chunks, retrying unprocessed keys and items with backoff: the
generic part of every batch read and write (the feature store, the serving reads, the recommendation rows)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from shopwise.dal.aws import dynamodb
from shopwise.retry import backoff

MAX_BATCH_RETRIES = 8
GET_CHUNK = 100  # BatchGetItem: keys per call
WRITE_CHUNK = 25  # BatchWriteItem: items per call

Keys = dict[str, list[dict[str, Any]]]  # table -> key maps
Rows = dict[str, list[dict[str, Any]]]  # table -> items as DynamoDB returns them


class WritesUnprocessed(RuntimeError):
    """A chunk's items were still unprocessed (throttled) after MAX_BATCH_RETRIES calls: the caller, or whatever ran
    it (a stream batch is retried by its event source), tries again later."""


def pk(key: str, name: str = "pk") -> dict[str, Any]:
    """A key map for a table whose partition key is one string attribute."""
    return {name: {"S": key}}


def chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def batch_get(request: Keys, projections: dict[str, str] | None = None, consistent: bool = False) -> tuple[Rows, int]:
    """One BatchGetItem over one or more tables (at most 100 keys in all), retrying UnprocessedKeys. Returns rows per
    table and the round trips it took. ``projections`` names the attributes to read per table, where not all are
    needed; ``consistent`` asks for strongly consistent reads."""
    ddb = dynamodb()
    found: Rows = {table: [] for table in request}
    pending: dict[str, Any] = {t: {"Keys": keys} for t, keys in request.items() if keys}
    for table, spec in pending.items():
        if projections and table in projections:
            spec["ProjectionExpression"] = projections[table]
        if consistent:
            spec["ConsistentRead"] = True
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


def get_many(table: str, keys: list[dict[str, Any]], projection: str = "", consistent: bool = False) -> list[Any]:
    """Every row of ``keys`` in one table, GET_CHUNK keys per BatchGetItem."""
    rows: list[Any] = []
    for chunk in chunks(keys, GET_CHUNK):
        got, _trips = batch_get({table: chunk}, {table: projection} if projection else None, consistent)
        rows += got[table]
    return rows


def batch_write(table: str, items: Iterable[dict[str, Any]]) -> int:
    """BatchWriteItem (puts) in chunks of 25, retrying UnprocessedItems with backoff. Returns the number written."""
    return _batch(table, ({"PutRequest": {"Item": item}} for item in items))


def batch_put_left(table: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BatchWriteItem (puts) in chunks of 25, retrying UnprocessedItems with backoff, without giving up on the
    rest: returns the items still unprocessed after the retries (the others are written)."""
    left: list[dict[str, Any]] = []
    for chunk in chunks(items, WRITE_CHUNK):
        left += [
            request["PutRequest"]["Item"]
            for request in _write_chunk(table, [{"PutRequest": {"Item": i}} for i in chunk])
        ]
    return left


def batch_delete(table: str, keys: Iterable[dict[str, Any]]) -> int:
    """BatchWriteItem (deletes of these key maps; absent items are no error). Returns the number of keys sent."""
    return _batch(table, ({"DeleteRequest": {"Key": key}} for key in keys))


def _batch(table: str, requests: Iterable[dict[str, Any]]) -> int:
    written = 0
    for chunk in chunks(requests, WRITE_CHUNK):
        if _write_chunk(table, chunk):
            raise WritesUnprocessed(f"{table}: items still unprocessed after {MAX_BATCH_RETRIES} retries")
        written += len(chunk)
    return written


def _write_chunk(table: str, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One chunk of write requests (puts or deletes): those still unprocessed after MAX_BATCH_RETRIES calls."""
    ddb = dynamodb()
    request: dict[str, Any] = {table: chunk}
    for attempt in range(MAX_BATCH_RETRIES):
        unprocessed = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
        if not unprocessed:
            return []
        request = unprocessed
        if attempt + 1 < MAX_BATCH_RETRIES:
            backoff(attempt)
    return list(request[table])
