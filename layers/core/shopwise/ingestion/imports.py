"""Bulk import of history and catalogs: CSV or JSON Lines, one row at a time, bad rows reported with their line.

Event rows: user_id, item_id, timestamp (ISO 8601 or epoch seconds), event_type, optional id_type (customer, the
default, or anonymous: user_id is then a visitor cookie id), price, quantity, session_id, market, order_id, referrer;
consent rows (event_type consent, no item) list the scopes granted and revoked. Item rows: item_id, title, category,
price, brand, in_stock, created_at, market, and any other column as a free attribute.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from shopwise.catalog.items import CatalogItem
from shopwise.events import Event, EventRejected, parse_event

ITEM_FIELDS = set(CatalogItem.model_fields) - {"attributes"}
ITEM_ROW = ("user_id", "item_id", "timestamp", "event_type")


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass(frozen=True)
class Source:
    """A file to import: its name (the suffixes say the format: .csv or .jsonl, optionally .gz) and how to open its
    bytes — a local file, or an S3 object's body read as it streams (``shopwise.dal.objects.open_object``)."""

    name: str
    open_bytes: Callable[[], IO[bytes]]

    @classmethod
    def of(cls, path: Path | Source) -> Source:
        if isinstance(path, Source):
            return path
        return cls(str(path), lambda: path.open("rb"))

    @property
    def stem(self) -> str:
        """What names the file's events (``event_from_row``'s source): the path's stem, as it always was."""
        return Path(self.name).stem


def _lines(source: Source) -> Iterator[str]:
    """The file's text lines, decoded as they are read: never the whole file in memory."""
    with source.open_bytes() as raw:
        handle: Any = gzip.GzipFile(fileobj=raw) if source.name.endswith(".gz") else raw
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        yield from text


def _format(path: Path | Source) -> str:
    name = Path(Source.of(path).name).name.removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    raise ValueError(f"{Source.of(path).name}: unknown format, expected .csv or .jsonl (optionally .gz)")


def read_rows(path: Path | Source) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """Yield (line number, row) or (line number, BadRow) for every data line of a CSV or JSON Lines file."""
    source = Source.of(path)
    fmt = _format(source)
    lines = _lines(source)
    if fmt == "csv":
        reader = csv.DictReader(lines)
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None and v not in ("", None)}
        return
    for number, line in enumerate(lines, start=1):
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


def _number(row: dict[str, Any], name: str, default: float | None, whole: bool = False) -> Any:
    """A finite, non-negative number from a row's column (``default`` when empty); EventRejected naming the column
    otherwise ("12,50", "two", "nan", "inf", -1)."""
    value = row.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EventRejected(name, f"{str(value)[:40]!r} is not a number (use a point for decimals)") from None
    if not math.isfinite(number) or number < 0 or (whole and (number != int(number) or number > 10_000)):
        kind = "a whole number from 0 to 10,000" if whole else "a finite number >= 0"
        raise EventRejected(name, f"{str(value)[:40]!r} is not {kind}")
    return number


def event_from_row(row: dict[str, Any], line: int, source: str = "import") -> Event:
    """An import row as an event. The event id is derived from source and line so a re-import is idempotent. A
    ``consent`` row needs no item: its ``granted`` / ``revoked`` columns list scopes (personalisation, marketing,
    analytics) separated by spaces or commas."""
    required = ("user_id", "timestamp", "event_type") if row.get("event_type") == "consent" else ITEM_ROW
    for name in required:
        if name not in row:
            raise EventRejected(name, "missing")
    try:
        occurred_at = parse_timestamp(row["timestamp"])
    except (ValueError, OverflowError, OSError) as exc:  # not a time, or one no calendar holds
        raise EventRejected("timestamp", f"not a usable timestamp: {str(exc)[:100]}") from None
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
    quantity = int(_number(row, "quantity", 1.0, whole=True))
    price = _number(row, "price", None)
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
    elif kind == "consent":
        for column in ("granted", "revoked"):
            base[column] = str(row.get(column) or "").replace(",", " ").split()
    else:
        raise EventRejected("event_type", f"{kind!r} can't be imported as history")
    return parse_event(base)


def read_events(path: Path | Source) -> Iterator[tuple[int, Event | BadRow]]:
    source = Source.of(path)
    stem = source.stem  # once a file: a Path a row was a quarter of a large import's parse time
    for line, row in read_rows(source):
        if isinstance(row, BadRow):
            yield line, row
            continue
        try:
            yield line, event_from_row(row, line, source=stem)
        except EventRejected as exc:
            yield line, BadRow(line, str(exc))


def item_from_row(row: dict[str, Any]) -> CatalogItem:
    known = {k: v for k, v in row.items() if k in ITEM_FIELDS}
    extra = {k: v for k, v in row.items() if k not in ITEM_FIELDS and k != "attributes"}
    attributes = {**(row.get("attributes") or {}), **extra}
    if isinstance(known.get("in_stock"), str):
        known["in_stock"] = known["in_stock"].strip().lower() in ("1", "true", "yes", "y")
    return CatalogItem(**known, attributes=attributes)


def read_items(path: Path | Source) -> Iterator[tuple[int, CatalogItem | BadRow]]:
    for line, row in read_rows(path):
        if isinstance(row, BadRow):
            yield line, row
            continue
        try:
            yield line, item_from_row(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            yield line, BadRow(line, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
