"""What DynamoDB charges for an item: its size by DynamoDB's rules, and the write units a put of it costs.

Sizes follow the developer guide ("Item sizes and formats"): an attribute's name in UTF-8 bytes plus its value —
strings in UTF-8 bytes, numbers about one byte per two significant digits plus one, binary in bytes, booleans and
nulls one byte, maps and lists 3 bytes plus one byte per element plus the elements. A standard write costs one
write unit per started KB of the item (the larger of the old and new item for an update; a put of a document that
replaces its previous version costs the new item's size), a transactional write twice that. The updater counts
what it writes with these rules, the benchmark reports them, and the 400 KB item limit is checked before a write
rather than discovered from DynamoDB's error.

Reads: an eventually consistent read costs half a read unit per started 4 KB, a strongly consistent one a whole
unit, a transactional one two; GetItem and BatchGetItem round each item on its own, Query the total of the items it
returns. ``ReadMeter`` counts them on the wire (botocore's after-call hook) from the items a response carries, so
the benchmarks report read units per request and per event the way they report write units.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

ITEM_LIMIT_BYTES = 400 * 1024  # DynamoDB's maximum item size
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


def _number_bytes(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0").split("e")[0].split("E")[0].rstrip("0")
    return (max(len(digits), 1) + 1) // 2 + 1


def value_bytes(value: dict[str, Any]) -> int:
    """The size of one attribute value in DynamoDB's typed JSON ({"S": ...}, {"N": ...}, {"M": ...}, ...)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return _number_bytes(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(_number_bytes(n) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_bytes(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + value_bytes(v) for v in inner)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_bytes(item: dict[str, Any]) -> int:
    """The size of an item (attribute name -> typed value) as DynamoDB counts it. Strings and numbers, what the
    updater's documents and ledger rows are made of, are sized in the loop (a call per value was 5% of its CPU)."""
    total = 0
    for name, value in item.items():
        total += len(name) if name.isascii() else len(name.encode())
        text = value.get("S")
        if text is not None:
            total += len(text) if text.isascii() else len(text.encode())
        elif "N" in value:
            total += _number_bytes(value["N"])
        else:
            total += value_bytes(value)
    return total


def write_units(item: dict[str, Any], transactional: bool = False) -> int:
    """Write capacity units of one put of ``item``."""
    return write_units_of_size(item_bytes(item), transactional)


def write_units_of_size(size: int, transactional: bool = False) -> int:
    """Write capacity units of one put of an item of ``size`` bytes (``item_bytes``)."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


def read_units_of_size(size: float, consistent: bool = False) -> float:
    """Read units of reading ``size`` bytes in one unit of rounding: an item (GetItem, a BatchGetItem key), or all
    that a Query or Scan page returned; at least the minimum."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def read_units(item: dict[str, Any] | None, consistent: bool = False) -> float:
    """Read units of one GetItem (or one key of a BatchGetItem) that returned ``item``. A key that found nothing is
    counted at the minimum, which DynamoDB charges for GetItem (a conservative count for BatchGetItem)."""
    return read_units_of_size(item_bytes(item) if item else 0, consistent)


class ReadMeter:
    """Read units and calls of every DynamoDB read the attached clients make, counted from the responses.

    ``attach(*clients)`` registers hooks on their events (the handler's own clients, boto3's and the wire's:
    ``shopwise.dal.aws.dynamodb_clients``, so what is counted is what the code under measurement read). GetItem,
    BatchGetItem and Query are counted; a BatchGetItem's unprocessed keys are counted when their retry returns them.
    DynamoDB charges a projected read for the whole item, so a read with a ``ProjectionExpression`` is sized by
    reading the same keys again, whole, through a second client the hooks are not on."""

    def __init__(self) -> None:
        self.units = 0.0
        self.calls = 0  # reads
        self.by_operation: Counter[str] = Counter()  # every DynamoDB call the client made, by operation
        # the meter's own CPU (its threads' time in the hooks: sizing what was read, re-reading projected reads
        # whole), for a caller that measures the process's CPU to take out
        self.cpu_seconds = 0.0
        self._whole: Any = None

    def attach(self, *clients: Any) -> ReadMeter:
        """Count the reads of these clients (boto3's, and ``shopwise.dal.wire``'s: ``dal.aws.dynamodb_clients``)."""
        import boto3

        first = clients[0].meta
        self._whole = boto3.client("dynamodb", endpoint_url=first.endpoint_url, region_name=first.region_name)
        for ddb in clients:
            ddb.meta.events.register("provide-client-params.dynamodb", self._remember)
            ddb.meta.events.register("after-call.dynamodb", self._count)
        return self

    def detach(self, *clients: Any) -> None:
        for ddb in clients:
            ddb.meta.events.unregister("provide-client-params.dynamodb", self._remember)
            ddb.meta.events.unregister("after-call.dynamodb", self._count)

    @property
    def requests(self) -> int:
        """Every DynamoDB call the client made (reads and writes)."""
        return sum(self.by_operation.values())

    def _remember(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name in ("GetItem", "BatchGetItem", "Query"):
            context["shopwise_read_params"] = dict(params)

    def _count(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        started = time.thread_time()
        try:
            self._count_read(http_response, parsed, model, context)
        finally:
            self.cpu_seconds += time.thread_time() - started

    def _count_read(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any]) -> None:
        self.by_operation[model.name] += 1
        params = context.get("shopwise_read_params")
        if params is None or http_response.status_code != 200:
            return
        self.calls += 1
        consistent = bool(params.get("ConsistentRead"))
        if model.name == "GetItem":
            item = parsed.get("Item")
            if item and "ProjectionExpression" in params:
                whole = {k: v for k, v in params.items() if k in ("TableName", "Key")}
                item = self._whole.get_item(**whole).get("Item")
            self.units += read_units(item, consistent)
        elif model.name == "Query":
            items = parsed.get("Items", [])
            if "ProjectionExpression" in params:
                again = {k: v for k, v in params.items() if k not in ("ProjectionExpression", "Select")}
                items = self._whole.query(**again).get("Items", [])
            self.units += read_units_of_size(sum(item_bytes(i) for i in items), consistent)
        else:  # BatchGetItem
            unprocessed = parsed.get("UnprocessedKeys", {})
            for table, spec in params["RequestItems"].items():
                consistent = bool(spec.get("ConsistentRead"))
                found = parsed.get("Responses", {}).get(table, [])
                retried = len(unprocessed.get(table, {}).get("Keys", []))
                if "ProjectionExpression" in spec and found:
                    keys = [k for k in spec["Keys"] if k not in unprocessed.get(table, {}).get("Keys", [])]
                    again = self._whole.batch_get_item(RequestItems={table: {"Keys": keys}})
                    found = again.get("Responses", {}).get(table, [])
                self.units += sum(read_units(item, consistent) for item in found)
                missing = len(spec["Keys"]) - len(found) - retried
                self.units += max(0, missing) * read_units(None, consistent)
