"""What a serving request reads: one BatchGetItem across the feature store, the recommendations, the config and the
items tables, returned as a typed value (thin boto3 layer: PynamoDB can't read several tables in one call, and the
serve function imports no PynamoDB).

A shopper's read names every key it can know in advance: the alias and profile documents of the id the storefront
sent (the profile holds the shopper's features and the serving view: real-time candidates resolved at write time),
the out-of-stock set, the shopper's precomputed list and the lists the request asks for (popular lists), the
experiments and the active-model pointer. Only a stitched shopper (the alias belongs to another profile) costs a
second round trip, for that profile and its list. Nothing costs a third.

Rows live in two slots, a table each (``shopwise.dal.recommendations``); a read names the rows in the slot that
served the last request of this execution environment (the slot cache below) plus the pointer, keeps what the
pointer says is live, and only when a promotion or rollback moved the pointer since (once per environment) reads the
other slot in the second round trip. A cold environment reads the pointer first and the serving slot's rows in the
second trip, once: the other slot's table may not exist (a load drops it and imports a new one). A slot table the
cache names that two loads have replaced since is read again the same way.

The out-of-stock set is one row every answer needs; with ``stock_ttl`` (the serve function's
``stock_cache_seconds``) an execution environment reads it with its first request and again only once it is that
old, so a catalog with thousands of items out of stock does not cost every request its read units (a set of 6,000
ids is about 60 KB: 7.5 read units a request, 3,750 a second on one partition at 500 requests a second). A stock
change then reaches an environment's answers within that many seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shopwise.dal.aws import client
from shopwise.dal.batch import Keys, Rows, batch_get, pk
from shopwise.dal.feature_store import Doc
from shopwise.dal.recommendations import Pointer, RecommendationRow, row_keys, slot_table
from shopwise.keys import (
    ACTIVE_MODEL_KEY,
    EXPERIMENTS_KEY,
    OUT_OF_STOCK,
    SLOTS,
    UNAVAILABLE_KEY,
    alias_key,
    popular_key,
    profile_key,
    user_key,
)
from shopwise.settings import Settings

PROFILE_ATTRIBUTES = f"pk, v, doc, merged_into, {OUT_OF_STOCK}"
STOCK_ATTRIBUTES = f"pk, {OUT_OF_STOCK}"
ITEM_ATTRIBUTES = "item_id, category, title"


@dataclass(frozen=True)
class Tables:
    lists: str  # the slot tables' stem
    features: str
    config: str
    items: str
    ledger: str = ""  # the event ledger (the updater's, and an erasure's): serving never reads it

    @classmethod
    def from_settings(cls, settings: Settings) -> Tables:
        return cls(
            settings.lists_stem,
            settings.features_table,
            settings.config_table,
            settings.items_table,
            settings.ledger_table,
        )


@dataclass(frozen=True)
class ListsRead:
    """Lists every answer reads alike: the live rows asked for by key, the out-of-stock set, the experiments (their
    stored JSON, "" for none), the pointer, and the round trips it took."""

    rows: dict[str, RecommendationRow]
    unavailable: frozenset[str]
    experiments: str
    pointer: Pointer
    trips: int


@dataclass(frozen=True)
class ShopperRead(ListsRead):
    """A shopper's read: the lists, and the profile the asked id resolves to now (through stitching)."""

    target: str  # the live profile id: the asked one, or the profile its alias was merged into
    profile: Doc | None  # that profile's document, None when there is none


@dataclass(frozen=True)
class ItemRead(ListsRead):
    """An item's read: its neighbours' row (in ``rows``), its catalog entry, and its category's bestsellers when the
    neighbours in stock are too few."""

    known: bool  # the catalog has the item
    title: str
    category: str


_serving_slot: dict[str, str] = {}  # lists stem -> the slot the last read found serving
_stock: dict[str, tuple[float, frozenset[str]]] = {}  # features table -> (monotonic time read, the out-of-stock set)


class ServingReader:
    """The reads of the serve function (and of campaign runs, which answer many shoppers with the same blend)."""

    def __init__(self, tables: Tables, stock_ttl: float = 0.0) -> None:
        self.tables = tables
        self.stock_ttl = stock_ttl

    def _stock_keys(self) -> list[dict[str, Any]]:
        """The out-of-stock row's key when this environment's copy is older than ``stock_ttl`` (or there is none)."""
        cached = _stock.get(self.tables.features)
        if cached and self.stock_ttl > 0 and time.monotonic() - cached[0] < self.stock_ttl:
            return []
        return [pk(UNAVAILABLE_KEY)]

    def _stock_now(self, rows: list[dict[str, Any]], asked: bool) -> frozenset[str]:
        """The out-of-stock set: as read now (and kept), or this environment's copy when the read did not ask."""
        if not asked:
            return _stock[self.tables.features][1]
        row = next((r for r in rows if r["pk"]["S"] == UNAVAILABLE_KEY), None)
        unavailable = _unavailable(row)
        _stock[self.tables.features] = (time.monotonic(), unavailable)
        return unavailable

    def shopper(self, profile_id: str, keys: list[str]) -> ShopperRead:
        """Round trip 1: the alias, profile and out-of-stock set, the shopper's list and ``keys``, the experiments and
        the pointer. Round trip 2, a stitched shopper (or a moved pointer) only."""
        t = self.tables
        keys = [user_key(profile_id), *keys]
        request = self._shopper_keys(profile_id)
        stock = pk(UNAVAILABLE_KEY) in request[t.features]
        found, trips, slots = self._read_first(request, keys, {t.features: PROFILE_ATTRIBUTES})
        docs = {item["pk"]["S"]: item for item in found[t.features]}
        pointer = _pointer(found[t.config])
        target = _target(profile_id, docs)
        second: Keys = {}
        if target != profile_id:
            second[t.features] = [pk(profile_key(target))]
            self._add_rows(second, [user_key(target)], pointer.slot)
        trips += self._second(found, second, pointer, slots, keys, {t.features: PROFILE_ATTRIBUTES})
        docs.update({item["pk"]["S"]: item for item in found[t.features]})
        profile = docs.get(profile_key(target))
        return ShopperRead(
            rows=pointer.keep(self._rows(found)),
            unavailable=self._stock_now(list(docs.values()), stock),
            experiments=_experiments(found[t.config]),
            pointer=pointer,
            trips=trips,
            target=target,
            profile=Doc.from_item(profile) if profile else None,
        )

    def shopper_request(self, profile_id: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The RequestItems of a shopper read's first (usually only) BatchGetItem: what the serving benchmark
        replays as the bare read the handler is measured against."""
        first, _slots = self._first(self._shopper_keys(profile_id), [user_key(profile_id), *keys])
        t = self.tables
        return {
            table: {"Keys": k, **({"ProjectionExpression": PROFILE_ATTRIBUTES} if table == t.features else {})}
            for table, k in first.items()
        }

    def _shopper_keys(self, profile_id: str) -> Keys:
        t = self.tables
        return {
            t.features: [pk(alias_key(profile_id)), pk(profile_key(profile_id)), *self._stock_keys()],
            t.config: [pk(EXPERIMENTS_KEY)],
        }

    def lists(self, keys: list[str], experiments: bool = False) -> ListsRead:
        """The live rows of ``keys``, the out-of-stock set (and the experiments): one round trip, two after a
        promotion or rollback moved the pointer."""
        t = self.tables
        stock = self._stock_keys()
        request = {t.features: stock, t.config: [pk(EXPERIMENTS_KEY)] if experiments else []}
        found, trips, slots = self._read_first(request, keys, {t.features: STOCK_ATTRIBUTES})
        pointer = _pointer(found[t.config])
        trips += self._second(found, {}, pointer, slots, keys, {t.features: STOCK_ATTRIBUTES})
        return ListsRead(
            rows=pointer.keep(self._rows(found)),
            unavailable=self._stock_now(found[t.features], bool(stock)),
            experiments=_experiments(found[t.config]),
            pointer=pointer,
            trips=trips,
        )

    def item(self, item_id: str, n: int, keys: list[str]) -> ItemRead:
        """An item's catalog entry, the out-of-stock set and the rows of ``keys`` (its neighbours first); a second
        round trip for its category's bestsellers when it has fewer than ``n`` neighbours in stock (a product newer
        than the model)."""
        t = self.tables
        stock = self._stock_keys()
        projections = {t.features: STOCK_ATTRIBUTES, t.items: ITEM_ATTRIBUTES}
        request = {t.features: stock, t.items: [pk(item_id, "item_id")], t.config: []}
        found, trips, slots = self._read_first(request, keys, projections)
        pointer = _pointer(found[t.config])
        unavailable = self._stock_now(found[t.features], bool(stock))
        catalog = found[t.items][0] if found[t.items] else {}
        category = catalog.get("category", {}).get("S", "")
        own = pointer.keep(self._rows(found)).get(keys[0]) if keys else None
        gone = unavailable | {item_id}
        second: Keys = {}
        if category and not (own and sum(1 for p in own.items if p.item_id not in gone) >= n):
            self._add_rows(second, [popular_key(f"category:{category}")], pointer.slot)
        trips += self._second(found, second, pointer, slots, keys, projections)
        return ItemRead(
            rows=pointer.keep(self._rows(found)),
            unavailable=unavailable,
            experiments="",
            pointer=pointer,
            trips=trips,
            known=bool(catalog),
            title=catalog.get("title", {}).get("S", ""),
            category=category,
        )

    # -- the two round trips ----------------------------------------------------------------------------------
    def _first(self, request: Keys, keys: list[str]) -> tuple[Keys, tuple[str, ...]]:
        """``request`` plus the pointer and the rows of ``keys`` in the slot this environment last found serving
        (none in a cold one); and the slots it reads."""
        t = self.tables
        hint = _serving_slot.get(t.lists)
        slots = (hint,) if hint else ()
        first = {**request, t.config: [*request.get(t.config, []), pk(ACTIVE_MODEL_KEY)]}
        self._add_rows(first, keys, hint)
        return first, slots

    def _read_first(
        self, request: Keys, keys: list[str], projections: dict[str, str]
    ) -> tuple[Rows, int, tuple[str, ...]]:
        """The first round trip: (what it read, the trips it took, the slots it read). A slot table that is gone
        (two loads replaced it since this environment last read) is forgotten and the read made without it."""
        first, slots = self._first(request, keys)
        try:
            found, trips = batch_get(first, projections)
        except Exception as err:
            if not slots or not isinstance(err, client("dynamodb").exceptions.ResourceNotFoundException):
                raise
            _serving_slot.pop(self.tables.lists, None)
            first, slots = self._first(request, keys)
            found, trips = batch_get(first, projections)
            trips += 1
        return found, trips, slots

    def _add_rows(self, reads: Keys, keys: list[str], slot: str | None) -> None:
        """Name the rows of ``keys`` in ``slot``'s table in ``reads`` (nothing without a slot: none serves)."""
        if slot and keys:
            table = slot_table(self.tables.lists, slot)
            reads[table] = [*reads.get(table, []), *row_keys(keys, (slot,))]

    def _rows(self, found: Rows) -> list[dict[str, Any]]:
        """The rows read from either slot's table."""
        return [row for slot in SLOTS for row in found.get(slot_table(self.tables.lists, slot), [])]

    def _second(
        self,
        found: Rows,
        second: Keys,
        pointer: Pointer,
        slots: tuple[str, ...],
        keys: list[str],
        projections: dict[str, str],
    ) -> int:
        """The second round trip, if anything needs one: ``second``, plus the rows of ``keys`` in the serving slot
        when the first read another (or none). Adds what it read to ``found``; returns the trips it took."""
        if pointer.slot and pointer.slot not in slots:
            self._add_rows(second, keys, pointer.slot)
        if pointer.slot:
            _serving_slot[self.tables.lists] = pointer.slot
        if not second:
            return 0
        extra, trips = batch_get(second, projections)
        for table, rows in extra.items():
            found.setdefault(table, []).extend(rows)
        return trips


def _pointer(config_rows: list[dict[str, Any]]) -> Pointer:
    return Pointer.from_item(next((r for r in config_rows if r["pk"]["S"] == ACTIVE_MODEL_KEY), None))


def _experiments(config_rows: list[dict[str, Any]]) -> str:
    row = next((r for r in config_rows if r["pk"]["S"] == EXPERIMENTS_KEY), None)
    return str(row["experiments"]["S"]) if row and "experiments" in row else ""


def _unavailable(row: dict[str, Any] | None) -> frozenset[str]:
    return frozenset(row.get(OUT_OF_STOCK, {}).get("SS", [])) if row else frozenset()


def _target(profile_id: str, docs: dict[str, dict[str, Any]]) -> str:
    """The profile an id resolves to: the one its own profile was merged into, or the one its alias names."""
    own = docs.get(profile_key(profile_id))
    if own and own.get("merged_into", {}).get("S"):
        return str(own["merged_into"]["S"])
    alias = docs.get(alias_key(profile_id))
    if alias and "doc" in alias:
        return str(Doc.from_item(alias).data.get("profile") or profile_id)
    return profile_id
