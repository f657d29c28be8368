"""The event ledger: one small row per event a source sent, kept for ``config.DEDUP_HOURS``.

An event's identity is its source and its id: ``pk`` is the alias that sent it (the pseudonymised profile id the
collector published it under, which is also the stream's partition key), ``sk`` a digest of its ``event_id``. Two
shoppers' "e1" are two rows; a client's retry of the same event, however many other events came between, finds the
row and is a duplicate. The row also names the stream record that first carried the event (``shard``, ``seq``): the
stream retrying that same record is not a duplicate (the entities' high-water marks decide what they applied).

``done``: only on the row of an event whose record failed (an entity write gave up, the stream moved on, the record
went to the failure queue): the entities that have applied it. Written on the failure path alone, it makes a replay
(``shopwise.ingestion.replay``) apply the event to the others and to nothing twice, however far the entities'
high-water marks have moved since; such a row lives as long as the failure queue keeps records (``config.FAILURE_QUEUE_DAYS``).

``held``: while the shopper has not granted personalisation at the event's time, the event's record waits here for a
consent that may arrive later than the events it covers (a throttled PutRecords retried behind them, another shard);
when one arrives, the updater folds the held events it covers. Nothing else reads ``held``; it goes with the row.

One source's records are on one shard (the partition key), and Lambda processes a shard's records in order, so
one updater at a time reads and writes a source's rows: plain batch reads and writes, no conditions. A row costs one
write unit (under 1 KB with a held record of ordinary size) and is deleted by TTL, or by an erasure of its source.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shopwise import fastjson
from shopwise.dal.aws import dynamodb
from shopwise.dal.batch import batch_delete, batch_write, get_many
from shopwise.dal.capacity import write_units


def event_digest(event_id: str) -> str:
    """A short stable id of an event id (12 characters)."""
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=9).digest()).decode()


@dataclass(frozen=True)
class Claim:
    source: str  # the alias that sent the event
    event: str  # event_digest(event_id)
    shard: str = ""  # the stream record that first carried it
    sequence: str = ""
    expires_at: int = 0
    held: dict[str, Any] | None = None  # the event's record, while it waits for a consent
    done: frozenset[str] | None = None  # after a failure: the entity keys that have applied the event

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.event)

    def same_record(self, shard: str, sequence: str) -> bool:
        return bool(shard and sequence) and (self.shard, self.sequence) == (shard, sequence)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": {"S": self.source},
            "sk": {"S": self.event},
            "expires_at": {"N": str(self.expires_at)},
        }
        if self.shard:
            item["shard"] = {"S": self.shard}
        if self.sequence:
            item["seq"] = {"S": self.sequence}
        if self.held is not None:
            item["held"] = {"S": fastjson.dumps_text(self.held)}
        if self.done is not None:
            item["done"] = {"S": fastjson.dumps_text(sorted(self.done))}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Claim:
        return cls(
            source=item["pk"]["S"],
            event=item["sk"]["S"],
            shard=item.get("shard", {}).get("S", ""),
            sequence=item.get("seq", {}).get("S", ""),
            expires_at=int(item.get("expires_at", {}).get("N", "0")),
            held=fastjson.loads(item["held"]["S"]) if "held" in item else None,
            done=frozenset(fastjson.loads(item["done"]["S"])) if "done" in item else None,
        )


class EventLedger:
    """The ledger table behind the three operations the updater needs."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.write_requests = 0
        self.write_units = 0

    def read(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Claim]:
        """The rows of these (source, digest) keys that exist (consistent reads, 100 a call)."""
        unique = list(dict.fromkeys(keys))
        rows = get_many(self.table, [{"pk": {"S": s}, "sk": {"S": e}} for s, e in unique], consistent=True)
        found = (Claim.from_item(row) for row in rows)
        return {c.key: c for c in found}

    def record(self, claims: list[Claim]) -> None:
        items = [c.to_item() for c in claims]
        self.write_requests += len(items)
        self.write_units += sum(write_units(i) for i in items)
        batch_write(self.table, items)

    def held(self, sources: Iterable[str], now: float | None = None) -> list[Claim]:
        """The events these sources sent that are waiting for a consent (unexpired rows with a held record)."""
        now = time.time() if now is None else now
        alive = {"FilterExpression": "attribute_exists(held) AND expires_at > :now"}
        return [Claim.from_item(r) for r in self._rows(sources, {":now": {"N": str(int(now))}}, **alive)]

    def forget(self, sources: Iterable[str]) -> int:
        """Delete every row of these sources (an erasure). Returns the number of rows deleted."""
        keys = list(self._rows(sources, ProjectionExpression="pk, sk"))
        batch_delete(self.table, keys)
        return len(keys)

    def _rows(self, sources: Iterable[str], values: dict[str, Any] | None = None, **query: str) -> Iterator[Any]:
        """The rows of each source (one paginated Query per source), narrowed by ``query``."""
        for source in dict.fromkeys(sources):
            yield from dynamodb().query_items(
                TableName=self.table,
                KeyConditionExpression="pk = :s",
                ExpressionAttributeValues={":s": {"S": source}, **(values or {})},
                ConsistentRead=True,
                **query,
            )
