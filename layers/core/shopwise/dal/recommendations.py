"""Precomputed recommendation rows and the active-model pointer (thin boto3 layer: the serve path's cross-table
BatchGetItem is what PynamoDB can't do in one call).

A row's picks are stored as one compact JSON array (``shopwise.picks.StoredPick`` lists) compressed with zlib into
a binary attribute ``z``: cheaper to read than a list of maps, in DynamoDB and in the local endpoint alike, and a
quarter of the JSON's size — the demo store's lists (50 picks with their categories and reasons) average 1,075 bytes
and 1.75 write units against 4,104 bytes and 4.62 as a JSON string (``tests/bench/bench_serve.py``), paid on every
retrain's load and every read of the list.
Rows written before (the JSON in the string attribute ``items``) still decode.

Two slots: every row is stored under ``<slot>/<key>`` for slot ``a`` or ``b``. A load writes the slot that is not
serving; promotion flips the pointer (config row ``active_model``: version, slot, what each slot holds). Readers
read the pointer with the rows and keep only the active slot's rows of the active version, so a promotion or a
rollback to the version in the other slot takes effect on the very next read, with nothing recomputed or
rewritten. Rows a slot kept from an older version (a user the new version no longer lists) are not served: their
model_version is not the slot's.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from shopwise.dal.aws import client, dynamodb
from shopwise.dal.batch import batch_write, get_many, pk
from shopwise.keys import ACTIVE_MODEL_KEY, SLOTS, slot_key
from shopwise.picks import StoredPick

ZLIB_LEVEL = 6  # level 9 saves 0.2% more for twice the time


@dataclass(frozen=True)
class Pointer:
    """The ``active_model`` row: which version serves from which slot, and what each slot holds."""

    version: str = ""  # "" before the first promotion
    slot: str = ""
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)  # slot -> {"version", "state", "at"}
    previous: str = ""  # the version that served before this one
    revision: int = 0  # optimistic lock: every write expects the revision it read

    @property
    def standby(self) -> str:
        """The slot a load writes: the one not serving."""
        return "b" if self.slot == "a" else "a"

    def slot_of(self, version: str) -> str:
        """The slot holding a fully loaded version, or ""."""
        for slot, held in self.slots.items():
            if held.get("version") == version and held.get("state") == "ready":
                return slot
        return ""

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> Pointer:
        if not item or "slot" not in item:
            return cls()
        return cls(
            version=item["model_version"]["S"],
            slot=item["slot"]["S"],
            slots=json.loads(item.get("slots", {}).get("S", "{}")),
            previous=item.get("previous", {}).get("S", ""),
            revision=int(item.get("revision", {}).get("N", "0")),
        )

    def keep(self, raw_rows: list[dict[str, Any]], now: float | None = None) -> dict[str, RecommendationRow]:
        """The rows a reader may use, by their key without the slot: the active slot's, of the active version,
        within their TTL."""
        prefix = slot_key(self.slot, "") if self.slot else None
        found: dict[str, RecommendationRow] = {}
        for raw in raw_rows:
            if prefix is None or not raw["pk"]["S"].startswith(prefix):
                continue
            row = decode_row(raw, now)
            if row and row.model_version == self.version:
                found[row.key] = row
        return found


@dataclass(frozen=True)
class RecommendationRow:
    key: str  # "user#<id>", "item#<id>", "next#<id>", "popular#global", "popular#category:<c>", "popular#market:<m>"
    items: list[StoredPick]  # best first
    model_version: str


def row_keys(keys: Iterable[str], slots: Iterable[str]) -> list[dict[str, Any]]:
    """The key maps of these rows in these slots (each key once)."""
    unique = list(dict.fromkeys(keys))
    return [pk(slot_key(slot, k)) for slot in slots for k in unique]


def read_rows(table: str, keys: list[str], pointer: Pointer, now: float | None = None) -> dict[str, RecommendationRow]:
    """The serving rows of these keys (100 per BatchGetItem) in the pointer's slot; keys with no row, an expired
    one or one of another version are left out."""
    if not pointer.slot or not keys:
        return {}
    return pointer.keep(get_many(table, row_keys(keys, (pointer.slot,))), now)


def serving_rows(recommendations_table: str, config_table: str, keys: list[str]) -> dict[str, RecommendationRow]:
    """``read_rows`` of the version serving now (reads the pointer first)."""
    return read_rows(recommendations_table, keys, get_pointer(config_table)) if keys else {}


def encode_row(row: RecommendationRow, slot: str, ttl_days: int, now: float | None = None) -> dict[str, Any]:
    expires = int((now or time.time()) + ttl_days * 86400)
    return {
        "pk": {"S": slot_key(slot, row.key)},
        "z": {"B": encode_picks(row.items)},
        "model_version": {"S": row.model_version},
        "expires_at": {"N": str(expires)},
    }


def encode_picks(picks: Iterable[StoredPick]) -> bytes:
    return zlib.compress(json.dumps([p.encode() for p in picks], separators=(",", ":")).encode(), ZLIB_LEVEL)


def decode_picks(blob: bytes) -> list[StoredPick]:
    return [StoredPick.decode(e) for e in json.loads(zlib.decompress(blob))]


def decode_row(item: dict[str, Any], now: float | None = None) -> RecommendationRow | None:
    """A stored row, or None when its TTL has passed (DynamoDB deletes expired items lazily)."""
    if int(item.get("expires_at", {}).get("N", "0")) < (now or time.time()):
        return None
    return RecommendationRow(
        key=item["pk"]["S"].partition("/")[2],
        items=decode_picks(item["z"]["B"])
        if "z" in item
        else [StoredPick.decode(e) for e in json.loads(item["items"]["S"])],
        model_version=item["model_version"]["S"],
    )


def write_recommendations(table: str, rows: Iterable[RecommendationRow], slot: str, ttl_days: int) -> int:
    if slot not in SLOTS:
        raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
    now = time.time()
    return batch_write(table, (encode_row(row, slot, ttl_days, now) for row in rows))


class PointerMoved(RuntimeError):
    """Someone else changed the pointer between our read and our write (a concurrent load or promotion)."""


def get_pointer(config_table: str) -> Pointer:
    item = dynamodb().get_item(TableName=config_table, Key=pk(ACTIVE_MODEL_KEY), ConsistentRead=True).get("Item")
    return Pointer.from_item(item)


def put_pointer(config_table: str, pointer: Pointer, expected: Pointer) -> Pointer:
    """Write ``pointer`` if the stored one is still ``expected`` (by revision); the written pointer."""
    written = replace(pointer, revision=expected.revision + 1)
    try:
        client("dynamodb").put_item(
            TableName=config_table,
            Item={
                "pk": {"S": ACTIVE_MODEL_KEY},
                "model_version": {"S": written.version},
                "slot": {"S": written.slot},
                "slots": {"S": json.dumps(written.slots, sort_keys=True)},
                "previous": {"S": written.previous},
                "revision": {"N": str(written.revision)},
                "activated_at": {"N": str(int(time.time()))},
            },
            ConditionExpression="attribute_not_exists(pk) OR revision = :r",
            ExpressionAttributeValues={":r": {"N": str(expected.revision)}},
        )
    except client("dynamodb").exceptions.ConditionalCheckFailedException as err:
        raise PointerMoved(f"the active-model pointer changed since revision {expected.revision}: retry") from err
    return written


def mark_slot(config_table: str, slot: str, version: str, state: str) -> Pointer:
    """Record what a slot holds ("loading" while a load writes it, then "ready"); the serving slot is refused."""
    pointer = get_pointer(config_table)
    if pointer.slot == slot:
        raise PointerMoved(f"slot {slot} is serving version {pointer.version}: a load writes the other slot")
    slots = {**pointer.slots, slot: {"version": version, "state": state, "at": int(time.time())}}
    return put_pointer(config_table, replace(pointer, slots=slots), pointer)


def activate(config_table: str, version: str) -> Pointer:
    """Serve ``version`` from the slot that holds it, from the next read on. Returns the new pointer."""
    pointer = get_pointer(config_table)
    slot = pointer.slot_of(version)
    if not slot:
        raise LookupError(f"version {version} is not loaded in either slot (slots: {pointer.slots})")
    if pointer.version == version:
        return pointer
    return put_pointer(config_table, replace(pointer, version=version, slot=slot, previous=pointer.version), pointer)


def get_active_model(config_table: str) -> str | None:
    return get_pointer(config_table).version or None
