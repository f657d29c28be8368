"""What DynamoDB charges for an item: its size by DynamoDB's rules, and the write units a put of it costs.

Sizes follow the developer guide ("Item sizes and formats"): an attribute's name in UTF-8 bytes plus its value —
strings in UTF-8 bytes, numbers about one byte per two significant digits plus one, binary in bytes, booleans and
nulls one byte, maps and lists 3 bytes plus one byte per element plus the elements. A standard write costs one
write unit per started KB of the item (the larger of the old and new item for an update; a put of a document that
replaces its previous version costs the new item's size), a transactional write twice that. The updater counts
what it writes with these rules, the benchmark reports them, and the 400 KB item limit is checked before a write
rather than discovered from DynamoDB's error.
"""

from __future__ import annotations

import math
from typing import Any

ITEM_LIMIT_BYTES = 400 * 1024  # DynamoDB's maximum item size
WRITE_UNIT_BYTES = 1024


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
    """The size of an item (attribute name -> typed value) as DynamoDB counts it."""
    return sum(len(name.encode()) + value_bytes(value) for name, value in item.items())


def write_units(item: dict[str, Any], transactional: bool = False) -> int:
    """Write capacity units of one put of ``item``."""
    units = max(1, math.ceil(item_bytes(item) / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units
