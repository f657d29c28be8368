"""The feature store: one DynamoDB table, one versioned document per entity (see shopwise.features.definitions for the keys).

A row is ``pk``, ``v`` (version), ``doc`` (the entity's features as compact JSON, UTF-8), ``hwm`` (the highest
stream sequence number applied per shard — per shard and source on profiles: what makes a retried batch a no-op
however hot the entity; a client's repeated event is caught earlier, by the event ledger), ``merged_into`` (a
profile stitched into another), for sessions ``expires_at`` (TTL), and for a live profile or an item ``active``: its
entry in the activity index (the day of its newest event, ``shopwise.keys.activity_key``; a merged profile leaves
it), which campaign runs and the drift job read instead of scanning the table. A document's size is checked before
it is written (``TooLarge``): DynamoDB's 400 KB item limit is never met as a write error.

A document another writer may write at the same time (a profile, a session, an item's shared part) is written
conditionally on the version read, so two writers never lose each other's updates: the loser gets ``Conflict``,
re-reads and re-applies — one PutItem per document. An item's parts (``shopwise.keys.item_part_key``: one per
stream shard, written by that shard's updater alone, the stream handing a shard's batches to one invocation at a
time) need no condition and go 25 a BatchWriteItem: items are most of the documents an event touches, and
each call costs CPU (``shopwise.dal.wire``). Readers merge an item's parts (``FeatureStore.item_features``,
``ItemFeatures.merged``). Reads are consistent BatchGetItem calls, 100 keys per round trip.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shopwise import fastjson
from shopwise.config import ACTIVITY_INDEX, IndexSpec
from shopwise.dal.aws import client, dynamodb
from shopwise.dal.batch import GET_CHUNK, batch_get, batch_put_left, chunks, get_many, pk
from shopwise.dal.capacity import ITEM_LIMIT_BYTES, item_bytes, write_units_of_size
from shopwise.features.definitions import ItemFeatures, reachable
from shopwise.keys import (
    PROFILE_PREFIX,
    activity_key,
    activity_keys,
    entity_key,
    entity_of,
    item_key,
    item_part_key,
    key_id,
    reach_key,
)


class Conflict(Exception):
    """Somebody else wrote the document since it was read."""


class TooLarge(ValueError):
    """The document would pass DynamoDB's 400 KB item limit: refused before the write (the bounds in
    ``shopwise.features.definitions`` keep every entity well below it; this is the guard if one does not)."""


@dataclass
class Doc:
    key: str
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 0  # 0: not stored yet
    hwm: dict[str, str] = field(default_factory=dict)
    merged_into: str = ""
    expires_at: int = 0
    error: str = ""  # the stored row could not be read: this entity fails, the others go on

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": {"S": self.key},
            "v": {"N": str(self.version + 1)},
            "doc": {"S": fastjson.dumps_text(self.data, sort_keys=True)},
        }
        if self.hwm:
            item["hwm"] = {"S": fastjson.dumps_text(self.hwm, sort_keys=True)}
        if self.merged_into:
            item["merged_into"] = {"S": self.merged_into}
        elif at := newest_event(self.key, self.data):
            item["active"] = {"S": activity_key(self.key, at)}
            if self.key.startswith(PROFILE_PREFIX) and reachable(key_id(self.key), self.data, at):
                item["reach"] = {"S": reach_key(self.key, at)}
        if self.expires_at:
            item["expires_at"] = {"N": str(self.expires_at)}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Doc:
        return cls(
            key=item["pk"]["S"],
            data=fastjson.loads(item["doc"]["S"]) if "doc" in item else {},
            version=int(item.get("v", {}).get("N", "0")),
            hwm=fastjson.loads(item["hwm"]["S"]) if "hwm" in item else {},
            merged_into=item.get("merged_into", {}).get("S", ""),
            expires_at=int(item.get("expires_at", {}).get("N", "0")),
        )

    def condition(self) -> dict[str, Any]:
        if self.version == 0:
            return {"ConditionExpression": "attribute_not_exists(pk)"}
        return {"ConditionExpression": "v = :v", "ExpressionAttributeValues": {":v": {"N": str(self.version)}}}


def newest_event(key: str, data: dict[str, Any]) -> float:
    """When the newest event folded into a profile or item document happened (0: none, or another kind): the
    profile's ``last_event_at``, the start of an item's newest hourly bucket (``ItemFeatures``' layout)."""
    if key.startswith(PROFILE_PREFIX):
        return float(data.get("features", {}).get("last_event_at") or 0.0)
    if entity_of(key) == "item" and data.get("buckets"):
        newest = max(int(k) for k in data["buckets"])
        return float(newest * 3600 if newest < 10**8 else newest)  # hour numbers; epoch seconds in older rows
    return 0.0


def active_docs(
    table: str, entity: str, since: float, until: float, sample: int | None = None, index: IndexSpec = ACTIVITY_INDEX
) -> Iterator[Doc]:
    """The live documents of one kind (``profile``, ``item``) whose newest event falls between ``since`` and
    ``until`` (whole UTC days, so a superset), from the activity index: one Query per day and shard for the keys,
    then the documents 100 a call, streamed. What campaign runs and the drift job read instead of a Scan: the cost
    follows the active entities, not the table.

    ``sample``: read the documents of at most this many entities — a fixed pseudo-random subset of the active ones
    (those whose key's CRC32 is smallest: the same entities run after run while they stay active; an item's parts
    come together, to be merged by the caller: ``ItemFeatures.merged``). The index's keys are still all read
    (60 bytes an entry); the documents, a kilobyte each, follow the sample. What the drift job compares.

    ``index``: the reach index (``REACH_INDEX``, entity ``reach``) holds the profiles a campaign may write to."""
    keys: list[str] = []
    for partition in activity_keys(entity, since, until):
        found = dynamodb().query_items(
            TableName=table,
            IndexName=index.name,
            KeyConditionExpression="#k = :k",
            ExpressionAttributeNames={"#k": index.partition_key},
            ExpressionAttributeValues={":k": {"S": partition}},
        )
        keys += [item["pk"]["S"] for item in found]
    unique = list(dict.fromkeys(keys))
    del keys
    if sample is not None:
        entities = list(dict.fromkeys(map(entity_key, unique)))  # an item's parts are one entity: sampled together
        if len(entities) > sample:
            kept = set(sorted(entities, key=lambda k: zlib.crc32(k.encode()))[:sample])
            unique = [k for k in unique if entity_key(k) in kept]
    for chunk in chunks((pk(k) for k in unique), GET_CHUNK):  # streamed: a chunk's keys and documents at a time
        got, _trips = batch_get({table: chunk})
        for item in got[table]:
            yield Doc.from_item(item)


class FeatureStore:
    """DynamoDB (or the local endpoint) behind the read / write / transact primitives the updater needs."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.write_requests = 0  # documents written (a transaction counts once per document)
        self.write_units = 0  # what they cost, by DynamoDB's size rules (shopwise.dal.capacity)
        self.largest_item = 0  # bytes of the largest document written
        self.writes_by_key: Counter[str] = Counter()  # how often each row was written (hot rows)
        self.units_by_entity: Counter[str] = Counter()  # write units per entity kind (the key's prefix)

    def _item(self, doc: Doc, transactional: bool = False) -> dict[str, Any]:
        item = doc.to_item()
        size = item_bytes(item)
        if size > ITEM_LIMIT_BYTES:
            raise TooLarge(f"{doc.key}: {size} bytes, over DynamoDB's {ITEM_LIMIT_BYTES} byte item limit")
        self.write_requests += 1
        units = write_units_of_size(size, transactional)
        self.write_units += units
        self.units_by_entity[entity_of(doc.key)] += units
        self.largest_item = max(self.largest_item, size)
        self.writes_by_key[doc.key] += 1
        return item

    def read(self, keys: list[str]) -> dict[str, Doc]:
        """Consistent reads, 100 keys a call; a key with no row comes back as a new, empty document."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, Doc] = {}
        for item in get_many(self.table, [pk(k) for k in unique], consistent=True):
            try:
                doc = Doc.from_item(item)
            except (KeyError, TypeError, ValueError) as exc:
                key = item.get("pk", {}).get("S", "?")
                doc = Doc(key, error=f"unreadable row {key}: {type(exc).__name__}: {exc}")
            found[doc.key] = doc
        return {k: found.get(k) or Doc(k) for k in unique}

    def write(self, doc: Doc) -> None:
        """Conditional put: raises Conflict if the document changed since it was read."""
        ddb = dynamodb()
        item = self._item(doc)
        try:
            ddb.put_item(TableName=self.table, Item=item, **doc.condition())
        except ddb.exceptions.ConditionalCheckFailedException:
            raise Conflict(doc.key) from None
        doc.version += 1

    def transact(self, docs: list[Doc]) -> None:
        """All of the documents or none (identity merges); raises Conflict if any changed since it was read."""
        ddb = client("dynamodb")
        items = [{"Put": {"TableName": self.table, "Item": self._item(d, True), **d.condition()}} for d in docs]
        try:
            ddb.transact_write_items(TransactItems=items)
        except ddb.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons", [])
            if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                raise Conflict(", ".join(d.key for d in docs)) from None
            raise
        for doc in docs:
            doc.version += 1

    def put_unconditional(self, docs: list[Doc]) -> dict[str, str]:
        """Documents with one writer (an item's part: ``shopwise.keys.item_part_key``), 25 a BatchWriteItem call and
        no condition. Returns the keys not written, each with why: over the item limit (``TooLarge``, not sent), or
        still unprocessed after the retries. The others are written."""
        unwritten: dict[str, str] = {}
        items = []
        for doc in docs:
            try:
                items.append(self._item(doc))
            except TooLarge as exc:
                unwritten[doc.key] = f"TooLarge: {exc}"
        left = batch_put_left(self.table, items)
        unwritten.update(dict.fromkeys((item["pk"]["S"] for item in left), "still unprocessed after the retries"))
        for doc in docs:
            if doc.key not in unwritten:
                doc.version += 1
        return unwritten

    def item_features(self, item_ids: list[str], shards: list[str]) -> dict[str, ItemFeatures]:
        """Items' features as they stand: each item's shared part and its parts of these stream ``shards`` (every
        shard id the stream has had: ``shopwise.dal.stream.shard_ids``), merged. An item with none is left out."""
        keys = [key for item_id in item_ids for key in item_keys(item_id, shards)]
        return merged_items(doc for doc in self.read(keys).values() if doc.version)


def item_keys(item_id: str, shards: list[str]) -> list[str]:
    """Every document of one item: its shared part and one part per stream shard."""
    return [item_key(item_id), *(item_part_key(item_id, shard) for shard in shards)]


def merged_items(docs: Iterable[Doc]) -> dict[str, ItemFeatures]:
    """Item id -> its features: the item documents among ``docs`` (its shared part, its shards' parts) merged
    (``ItemFeatures.merged``); other documents are passed over."""
    parts: dict[str, list[ItemFeatures]] = defaultdict(list)
    for doc in docs:
        if entity_of(doc.key) == "item":
            parts[key_id(doc.key)].append(ItemFeatures.from_json(doc.data))
    return {item_id: ItemFeatures.merged(found) for item_id, found in parts.items()}
