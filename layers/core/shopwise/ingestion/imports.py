"""Bulk import of history and catalogs: CSV or JSON Lines, one row at a time, bad rows reported with their line.

Event rows: user_id, item_id, timestamp (ISO 8601 or epoch seconds), event_type, optional id_type (customer, the
default, or anonymous: user_id is then a visitor cookie id), price, quantity, session_id, market, order_id, referrer. Item rows: item_id, title, category, price, brand, in_stock, created_at, market, and
any other column as a free attribute.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from shopwise.catalog.items import CatalogItem
from shopwise.events import Event, EventRejected, parse_event

ITEM_FIELDS = set(CatalogItem.model_fields) - {"attributes"}


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8")
    return path.open(encoding="utf-8", newline="")


def _format(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    raise ValueError(f"{path}: unknown format, expected .csv or .jsonl (optionally .gz)")


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """Yield (line number, row) or (line number, BadRow) for every data line of a CSV or JSON Lines file."""
    fmt = _format(path)
    with _open(path) as handle:
        if fmt == "csv":
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if k is not None and v not in ("", None)}
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, BadRow(number, f"invalid JSON: {exc.msg}")
                continue
            if not isinstance(value, dict):
                yield number, BadRow(number, "expected a JSON object")
                continue
            yield number, value


def parse_timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
        number = float(value)
        if number > 1e11:  # milliseconds
            number /= 1000.0
        return datetime.fromtimestamp(number, tz=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a timestamp: {value!r}")


def event_from_row(row: dict[str, Any], line: int, source: str = "import") -> Event:
    """An import row as an event. The event id is derived from source and line so a re-import is idempotent."""
    for name in ("user_id", "item_id", "timestamp", "event_type"):
        if name not in row:
            raise EventRejected(name, "missing")
    try:
        occurred_at = parse_timestamp(row["timestamp"])
    except ValueError as exc:
        raise EventRejected("timestamp", str(exc)) from None
    kind = str(row["event_type"])
    id_type = str(row.get("id_type") or "customer")
    if id_type not in ("customer", "anonymous"):
        raise EventRejected("id_type", f"{id_type!r} is neither customer nor anonymous")
    base: dict[str, Any] = {
        "origin": "import",
        "event_id": str(row.get("event_id") or f"{source}:{line}"),
        "event_type": kind,
        "occurred_at": occurred_at,
        f"{id_type}_id": str(row["user_id"]),
    }
    for optional in ("session_id", "market", "referrer"):
        if row.get(optional):
            base[optional] = str(row[optional])
    quantity = int(float(row.get("quantity", 1) or 1))
    price = float(row["price"]) if row.get("price") not in (None, "") else None
    if kind == "purchase":
        unit = price or 0.0
        base["order_id"] = str(row.get("order_id") or base["event_id"])
        base["items"] = [{"item_id": str(row["item_id"]), "quantity": quantity, "unit_price": unit}]
        base["revenue"] = unit * quantity
    elif kind in ("add_to_cart", "remove_from_cart"):
        base["item_id"] = str(row["item_id"])
        base["quantity"] = quantity
    elif kind in ("product_view", "click"):
        base["item_id"] = str(row["item_id"])
        if price is not None and kind == "product_view":
            base["price"] = price
    else:
        raise EventRejected("event_type", f"{kind!r} can't be imported as history")
    return parse_event(base)


def read_events(path: Path) -> Iterator[tuple[int, Event | BadRow]]:
    for line, row in read_rows(path):
        if isinstance(row, BadRow):
            yield line, row
            continue
        try:
            yield line, event_from_row(row, line, source=path.stem)
        except EventRejected as exc:
            yield line, BadRow(line, str(exc))


def item_from_row(row: dict[str, Any]) -> CatalogItem:
    known = {k: v for k, v in row.items() if k in ITEM_FIELDS}
    extra = {k: v for k, v in row.items() if k not in ITEM_FIELDS and k != "attributes"}
    attributes = {**(row.get("attributes") or {}), **extra}
    if isinstance(known.get("in_stock"), str):
        known["in_stock"] = known["in_stock"].strip().lower() in ("1", "true", "yes", "y")
    return CatalogItem(**known, attributes=attributes)


def read_items(path: Path) -> Iterator[tuple[int, CatalogItem | BadRow]]:
    for line, row in read_rows(path):
        if isinstance(row, BadRow):
            yield line, row
            continue
        try:
            yield line, item_from_row(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            yield line, BadRow(line, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
