"""Precomputed recommendation rows and the active-model pointer (thin boto3 layer: the serve path's cross-table
BatchGetItem is what PynamoDB can't do in one call).

A row's picks are stored as one compact JSON array (``shopwise.picks.StoredPick`` lists) compressed with zlib into
a binary attribute ``z``: cheaper to read than a list of maps, in DynamoDB and in the local endpoint alike, and a
quarter of the JSON's size — the demo store's lists (50 picks with their categories and reasons) average 1,075 bytes
against 4,104 as a JSON string (``tests/bench/bench_serve.py``): what every read of a list pays, and (base64 in the
import's DynamoJSON, 1,469 bytes a list) what every retrain's load pays.

Two slots, ``a`` and ``b``, each a table of its own (``<stem>-a``, ``<stem>-b``: ``slot_table``), every row stored
under ``<slot>/<key>``. A load fills the slot that is not serving with a DynamoDB import from S3: it drops the
slot's table (the version before the rollback target), stages the rows in S3 as DynamoDB JSON and imports them
into a new table of the same name — no write units (an import is priced by the gigabytes it reads: $0.15 a GB,
against $0.625 a million write units for about 1.75 units a 1 KB list), no cold table to throttle the writes, and
no rows of an older version left behind. Promotion flips the pointer (config row ``active_model``: version, slot,
what each slot holds). Readers read the pointer with the rows and keep only the active slot's rows of the active
version, so a promotion or a rollback to the version in the other slot takes effect on the very next read, with
nothing recomputed or rewritten.

The slot tables are made by the load, not by the stack (an import makes its own table): the stack names them
(``slot_table``), grants every function that reads or deletes rows the two names and nothing else, and deletes them
when it is deleted (a custom resource a table).

An erasure deletes the shopper's rows from whichever slot table exists and holds their keys (``hold_erasure``) for
the import in flight, whose table does not exist yet: the load's last step deletes them from the new table
(``erase_held``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from shopwise import fastjson
from shopwise.dal.aws import client, dynamodb
from shopwise.dal.batch import batch_delete, get_many, pk
from shopwise.keys import ACTIVE_MODEL_KEY, HELD_ERASURES_KEY, SLOTS, slot_key
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


def slot_table(stem: str, slot: str) -> str:
    """The table that holds a slot's rows (made by the slot's last load)."""
    if slot not in SLOTS:
        raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
    return f"{stem}-{slot}"


def slot_tables(stem: str) -> list[str]:
    """Both slots' tables: what a function that reads or deletes rows is granted."""
    return [slot_table(stem, slot) for slot in SLOTS]


def read_rows(stem: str, keys: list[str], pointer: Pointer, now: float | None = None) -> dict[str, RecommendationRow]:
    """The serving rows of these keys (100 per BatchGetItem) in the pointer's slot; keys with no row, an expired
    one or one of another version are left out."""
    if not pointer.slot or not keys:
        return {}
    return pointer.keep(get_many(slot_table(stem, pointer.slot), row_keys(keys, (pointer.slot,))), now)


def serving_rows(stem: str, config_table: str, keys: list[str]) -> dict[str, RecommendationRow]:
    """``read_rows`` of the version serving now (reads the pointer first)."""
    return read_rows(stem, keys, get_pointer(config_table)) if keys else {}


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
        items=decode_picks(item["z"]["B"]),
        model_version=item["model_version"]["S"],
    )


# -- the load: a DynamoDB import from S3 per slot --------------------------------------------------------------------
IMPORT_FORMAT = {"InputFormat": "DYNAMODB_JSON", "InputCompressionType": "GZIP"}
IMPORT_MAX_OBJECTS = 50_000  # an import reads at most this many S3 objects
HELD_ERASURE_HOURS = 1.0  # a held key outlives the begin of the load it could reach by this much (clocks, retries)


class TableNotGone(RuntimeError):
    """The slot's table from its load before is still being deleted: the import step tries again shortly."""


class ImportFailed(RuntimeError):
    """DynamoDB's import of a slot's rows ended without every staged row in the table."""


@dataclass(frozen=True)
class ImportState:
    status: str  # IN_PROGRESS, COMPLETED, FAILED, CANCELLING, CANCELLED
    imported: int
    errors: int
    failure: str = ""


def import_line(row: RecommendationRow, slot: str, ttl_days: int, now: float | None = None) -> bytes:
    """A row as one line of an import's DynamoDB JSON (the item ``encode_row`` writes)."""
    return import_json(encode_row(row, slot, ttl_days, now))


def import_json(item: dict[str, Any]) -> bytes:
    """An item (its top-level string, number and binary attributes) as a line of DynamoDB JSON, binary in base64:
    what an import reads, and is billed by, for the item."""
    coded = {k: {"B": base64.b64encode(v["B"]).decode()} if "B" in v else v for k, v in item.items()}
    return fastjson.dumps({"Item": coded}) + b"\n"


def _missing(err: Exception) -> bool:
    return isinstance(err, client("dynamodb").exceptions.ResourceNotFoundException)


def table_status(table: str) -> str:
    """ACTIVE, CREATING, DELETING, ... or "" when there is no such table."""
    try:
        return str(client("dynamodb").describe_table(TableName=table)["Table"]["TableStatus"])
    except Exception as err:
        if _missing(err):
            return ""
        raise


def drop_slot_table(stem: str, slot: str) -> None:
    """Delete a slot's table (the version it held can no longer be served). None, or one already going, is no
    error; one still being made is left to ``start_import``, which refuses to import over it."""
    ddb = client("dynamodb")
    with contextlib.suppress(ddb.exceptions.ResourceNotFoundException, ddb.exceptions.ResourceInUseException):
        ddb.delete_table(TableName=slot_table(stem, slot))


def start_import(stem: str, slot: str, bucket: str, prefix: str, version: str) -> str:
    """Import the rows staged under ``s3://bucket/prefix`` into a new table for ``slot``; the import's ARN. The
    same version and slot ask with the same client token, so a step that is run again gets the import it started."""
    table = slot_table(stem, slot)
    status = table_status(table)
    if status == "DELETING":
        raise TableNotGone(f"{table} is still being deleted: the import tries again")
    # the same version and slot always ask with the same token: DynamoDB answers a step run again (the table is
    # then CREATING) with the import it started, and refuses a table of this name made otherwise (ResourceInUse)
    token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"shopwise-lists/{table}/{version}"))
    ddb = client("dynamodb")
    try:
        response = ddb.import_table(
            ClientToken=token,
            S3BucketSource={"S3Bucket": bucket, "S3KeyPrefix": prefix},
            **IMPORT_FORMAT,
            TableCreationParameters={
                "TableName": table,
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
    except ddb.exceptions.ResourceInUseException as err:
        raise TableNotGone(f"{table} exists ({status}) and is not this load's import: {err}") from err
    return str(response["ImportTableDescription"]["ImportArn"])


def import_state(import_arn: str) -> ImportState:
    d = client("dynamodb").describe_import(ImportArn=import_arn)["ImportTableDescription"]
    return ImportState(
        status=str(d["ImportStatus"]),
        imported=int(d.get("ImportedItemCount") or 0),
        errors=int(d.get("ErrorCount") or 0),
        failure=" ".join(str(d.get(k) or "") for k in ("FailureCode", "FailureMessage")).strip(),
    )


def hold_erasure(config_table: str, keys: Iterable[str], at: float) -> None:
    """Hold the row keys (no slot) of an erased shopper's lists for the load whose import is in flight: its table
    does not exist yet, so the erasure cannot delete them there (``erase_held`` does, when the import ends)."""
    _change_held(config_table, "ADD", [f"{at!r}|{k}" for k in keys])  # repr: the erasure's own time, exactly


def erase_lists(stem: str, config_table: str, keys: list[str], at: float) -> int:
    """An erased shopper's rows (``keys`` without the slot) deleted from both slots' tables, those that exist,
    after holding the keys for a load whose import is in flight (its table does not exist yet); the rows deleted."""
    hold_erasure(config_table, keys, at)
    deleted = 0
    for slot in SLOTS:
        table = slot_table(stem, slot)
        try:
            present = get_many(table, [pk(slot_key(slot, k)) for k in keys], projection="pk", consistent=True)
            deleted += batch_delete(table, [pk(row["pk"]["S"]) for row in present])
        except Exception as err:
            if not _missing(err):  # a slot a load is making (held above) or never loaded
                raise
    return deleted


def forget_held(config_table: str, until: float) -> int:
    """Drop the held keys of erasures made at or before ``until`` (what the purge does for the erasures it
    completes: by then no load that could need them is in flight); how many were dropped."""
    return _change_held(config_table, "DELETE", [e for e in held_entries(config_table) if _held_at(e) <= until])


def erase_held(config_table: str, stem: str, slot: str, began_at: float) -> int:
    """Delete from a freshly imported slot the rows of shoppers erased while its load ran (held by the erasures);
    forget the held keys no load can reach any more (erased well before this load began: its staging left them
    out). Returns the keys deleted."""
    held = held_entries(config_table)
    horizon = began_at - HELD_ERASURE_HOURS * 3600
    recent = dict.fromkeys(e.partition("|")[2] for e in held if _held_at(e) >= horizon)
    deleted = batch_delete(slot_table(stem, slot), [pk(slot_key(slot, k)) for k in recent])
    _change_held(config_table, "DELETE", [e for e in held if _held_at(e) < horizon])
    return deleted


def held_entries(config_table: str) -> list[str]:
    """The held entries, ``<erased at>|<row key>``."""
    item = client("dynamodb").get_item(TableName=config_table, Key=pk(HELD_ERASURES_KEY), ConsistentRead=True)
    return list(item.get("Item", {}).get("held", {}).get("SS", []))


def _held_at(entry: str) -> float:
    return float(entry.partition("|")[0])


def _change_held(config_table: str, action: str, entries: list[str]) -> int:
    """ADD or DELETE ``entries`` in the held row's string set (one atomic update); how many."""
    if entries:
        client("dynamodb").update_item(
            TableName=config_table,
            Key=pk(HELD_ERASURES_KEY),
            UpdateExpression=f"{action} held :k",
            ExpressionAttributeValues={":k": {"SS": entries}},
        )
    return len(entries)


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
