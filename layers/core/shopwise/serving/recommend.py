"""Serving: one BatchGetItem reads what a request needs, the blend (``shopwise.serving.blend``) does the rest.

The read of a recommendation request names every key it can know in advance, across tables, in one BatchGetItem:
the alias and profile documents of the id the storefront sent (the profile holds the shopper's features and the
serving view: real-time candidates resolved at write time), the out-of-stock set, the shopper's precomputed list,
the popular lists of the requested market and category, the global list, and the experiments. Only a stitched
shopper (the alias belongs to another profile) costs a second round trip, for that profile and its list. Nothing
costs a third.

Rows live in two slots (``shopwise.dal.recommendations``); the read names the rows in the slot that served the
last request of this execution environment plus the ``active_model`` pointer, keeps what the pointer says is live,
and only when a promotion or rollback moved the pointer since (once per environment) reads the other slot in the
second round trip. A cold environment reads both slots once.

Every response carries a recommendation_id, the experiment and variant, and the model version, and is written as
one impression line to the function's log (``impression_line``): a log subscription ships those lines to the event
archive, so what was shown reaches training and the experiment readout with no network call on the request path.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TextIO

from shopwise.dal.feature_store import Doc
from shopwise.dal.recommendations import (
    ACTIVE_MODEL_KEY,
    SLOTS,
    Pointer,
    RecommendationRow,
    batch_get,
    slot_key,
)
from shopwise.features.definitions import ProfileFeatures
from shopwise.keys import (
    OUT_OF_STOCK,
    POPULAR_KEY,
    UNAVAILABLE_KEY,
    alias_key,
    item_key,
    popular_key,
    profile_key,
    user_key,
)
from shopwise.serving.blend import (
    Pick,
    Selection,
    combine,
    params_for,
    personal_picks,
    popular_picks,
    realtime_factor,
    reason,
    similar_picks,
    view_picks,
)
from shopwise.serving.experiments import (
    EXPERIMENTS_KEY,
    NO_EXPERIMENT,
    Assignment,
    Experiment,
    assign,
    parse_experiments,
)
from shopwise.settings import Settings

MAX_N = 100
MAX_RANK_ITEMS = 500
MAX_EXCLUDE = 100
FEATURE_ATTRIBUTES = f"pk, v, doc, merged_into, {OUT_OF_STOCK}"
POPULARITY_PRIOR = 0.1  # weight of global popularity when re-ranking given items (breaks ties among the unknown)


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Tables:
    recommendations: str
    features: str
    config: str
    items: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Tables:
        return cls(settings.recommendations_table, settings.features_table, settings.config_table, settings.items_table)


@dataclass(frozen=True)
class Request:
    user_id: str
    profile_id: str  # "c:<customer pseudonym>" or "a:<anonymous id>"
    placement: str = "home"
    n: int = 10
    category: str = ""
    market: str = ""
    exclude: frozenset[str] = frozenset()
    referrer: str = ""  # a referrer source (``shopwise.keys.referrer_source``)


@dataclass
class Shopper:
    """What one request read: the live profile (None unless it holds a personalisation grant now), its rows."""

    target: str
    profile: ProfileFeatures | None
    view: dict[str, Any]
    rows: dict[str, RecommendationRow]
    unavailable: set[str]
    experiments: list[Experiment]
    trips: int


@lru_cache(maxsize=8)
def _experiments(text: str) -> list[Experiment]:
    return parse_experiments(text)


_serving_slot: dict[str, str] = {}  # recommendations table -> the slot the last read found serving


def _slots(table: str) -> tuple[str, ...]:
    hint = _serving_slot.get(table)
    return (hint,) if hint else SLOTS


def _row_keys(keys: list[str], slots: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"pk": {"S": slot_key(slot, k)}} for slot in slots for k in dict.fromkeys(keys)]


def _config(raw: list[dict[str, Any]]) -> tuple[Pointer, list[Experiment]]:
    by_key = {item["pk"]["S"]: item for item in raw}
    experiments = by_key.get(EXPERIMENTS_KEY, {})
    parsed = _experiments(experiments["experiments"]["S"]) if "experiments" in experiments else []
    return Pointer.from_item(by_key.get(ACTIVE_MODEL_KEY)), parsed


def _docs(raw: list[dict[str, Any]]) -> tuple[dict[str, Doc], set[str]]:
    docs: dict[str, Doc] = {}
    unavailable: set[str] = set()
    for item in raw:
        if item["pk"]["S"] == UNAVAILABLE_KEY:
            unavailable = set(item.get(OUT_OF_STOCK, {}).get("SS", []))
        else:
            docs[item["pk"]["S"]] = Doc.from_item(item)
    return docs, unavailable


def _first(request: dict[str, list[dict[str, Any]]], row_keys: list[str], tables: Tables) -> dict[str, Any]:
    return {
        **request,
        tables.recommendations: [
            *request.get(tables.recommendations, []),
            *_row_keys(row_keys, _slots(tables.recommendations)),
        ],
        tables.config: [*request.get(tables.config, []), {"pk": {"S": ACTIVE_MODEL_KEY}}],
    }


def _shopper_request(profile_id: str, tables: Tables) -> dict[str, list[dict[str, Any]]]:
    keys = (alias_key(profile_id), profile_key(profile_id), UNAVAILABLE_KEY)
    return {
        tables.features: [{"pk": {"S": k}} for k in keys],
        tables.config: [{"pk": {"S": EXPERIMENTS_KEY}}],
    }


def first_read(profile_id: str, row_keys: list[str], tables: Tables) -> dict[str, list[dict[str, Any]]]:
    """The keys of a shopper request's first (usually only) BatchGetItem."""
    return _first(_shopper_request(profile_id, tables), [user_key(profile_id), *row_keys], tables)


def read_with_rows(
    request: dict[str, list[dict[str, Any]]],
    row_keys: list[str],
    tables: Tables,
    projections: dict[str, str] | None = None,
    more: Callable[[dict[str, list[dict[str, Any]]], Pointer], dict[str, list[dict[str, Any]]]] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, RecommendationRow], Pointer, int]:
    """``request`` plus the rows of ``row_keys`` and the pointer in one BatchGetItem; a second round trip only
    for rows of a slot the first did not read (the pointer moved) and for what ``more(found, pointer)`` names
    (a stitched shopper's profile and list). Returns what was read, the live rows by key, the pointer, trips."""
    slots = _slots(tables.recommendations)
    found, trips = batch_get(_first(request, row_keys, tables), projections)
    pointer, _experiments_now = _config(found[tables.config])
    second: dict[str, list[dict[str, Any]]] = more(found, pointer) if more else {}
    if pointer.slot and pointer.slot not in slots:
        second[tables.recommendations] = [
            *second.get(tables.recommendations, []),
            *_row_keys(row_keys, (pointer.slot,)),
        ]
    if second:
        extra, extra_trips = batch_get(second, projections)
        trips += extra_trips
        for table, rows in extra.items():
            found.setdefault(table, []).extend(rows)
    if pointer.slot:
        _serving_slot[tables.recommendations] = pointer.slot
    return found, pointer.keep(found.get(tables.recommendations, [])), pointer, trips


def read_shopper(profile_id: str, row_keys: list[str], tables: Tables, now: float) -> Shopper:
    """Round trip 1: the alias, profile and out-of-stock set, the shopper's list and ``row_keys`` (popular lists),
    the experiments and the pointer. Round trip 2, a stitched shopper (or a moved pointer) only."""

    first: dict[str, Any] = {}  # the first round trip's documents, parsed once (the profile is the big one)

    def stitched(found: dict[str, list[dict[str, Any]]], pointer: Pointer) -> dict[str, list[dict[str, Any]]]:
        first["count"] = len(found[tables.features])
        first["docs"], first["unavailable"] = _docs(found[tables.features])
        target = _target(profile_id, first["docs"])
        if target == profile_id:
            return {}
        return {
            tables.recommendations: _row_keys([user_key(target)], (pointer.slot,) if pointer.slot else SLOTS),
            tables.features: [{"pk": {"S": profile_key(target)}}],
        }

    found, rows, _pointer, trips = read_with_rows(
        _shopper_request(profile_id, tables),
        [user_key(profile_id), *row_keys],
        tables,
        projections={tables.features: FEATURE_ATTRIBUTES},
        more=stitched,
    )
    docs, unavailable = first["docs"], first["unavailable"]
    docs.update(_docs(found[tables.features][first["count"] :])[0])  # the stitched profile, if a second trip read it
    experiments = _config(found[tables.config])[1]
    target = _target(profile_id, docs)
    profile, view = personalisable(docs.get(profile_key(target)), now)
    return Shopper(target, profile, view, rows, unavailable, experiments, trips)


def _target(profile_id: str, docs: dict[str, Doc]) -> str:
    """The profile an id resolves to: the one its alias names, or the one its own profile was merged into."""
    alias, own = docs.get(alias_key(profile_id)), docs.get(profile_key(profile_id))
    target = str(alias.data.get("profile", "")) if alias else ""
    return (own.merged_into if own and own.merged_into else target) or profile_id


def personalisable(doc: Doc | None, now: float) -> tuple[ProfileFeatures | None, dict[str, Any]]:
    """The profile's features and serving view if it holds a personalisation grant now; a shopper who revoked it
    (or never granted it) gets what a stranger gets."""
    if doc and doc.data.get("features"):
        profile = ProfileFeatures.from_json(doc.data["features"])
        if profile.consented(now):
            return profile, doc.data.get("serving") or {}
    return None, {}


def shared_rows(
    tables: Tables, row_keys: list[str]
) -> tuple[dict[str, RecommendationRow], set[str], list[Experiment], Pointer]:
    """What every shopper's answer reads alike — lists, the out-of-stock set, the experiments, the pointer — for
    jobs that answer many shoppers (campaign runs)."""
    found, rows, pointer, _trips = read_with_rows(
        {tables.features: [{"pk": {"S": UNAVAILABLE_KEY}}], tables.config: [{"pk": {"S": EXPERIMENTS_KEY}}]},
        row_keys,
        tables,
    )
    return rows, _docs(found[tables.features])[1], _config(found[tables.config])[1], pointer


def recommend_for_user(req: Request, tables: Tables, repeat_categories: tuple[str, ...] = ()) -> dict[str, Any]:
    """The shopper's list for a placement: precomputed picks blended with real-time candidates (personalisation
    consent required), then the fallback chain — market bestsellers, category bestsellers, global bestsellers —
    with exclusions (owned unless a repeat-purchase category, in cart, out of stock, asked), the category filter
    and the diversity rule applied throughout."""
    now = time.time()
    segment_keys = _segment_keys(req.market, req.category, req.referrer)
    shopper = read_shopper(req.profile_id, [*segment_keys.values(), POPULAR_KEY], tables, now)
    return answer(req, shopper, repeat_categories, now)


def answer(req: Request, shopper: Shopper, repeat_categories: tuple[str, ...], now: float) -> dict[str, Any]:
    """The blend and the fallback chain over what was read for the shopper (no I/O)."""
    segment_keys = _segment_keys(req.market, req.category, req.referrer)
    assignment = assign(shopper.experiments, req.placement, shopper.target)
    params = params_for(req.placement, assignment.params)
    profile = None if assignment.holdout else shopper.profile  # the holdout is served a non-personalised control
    excluded = set(req.exclude) | shopper.unavailable
    purchased: frozenset[str] = frozenset()
    if profile is not None:
        excluded |= set(profile.current_cart())
        purchased = frozenset(profile.recent_items("purchase"))
    selection = Selection(req.n, excluded, repeat_categories, purchased, req.category, params.max_per_category)

    version = ""
    if profile is not None:
        personal_row = shopper.rows.get(user_key(shopper.target)) or shopper.rows.get(user_key(req.profile_id))
        personal = personal_picks(personal_row.items, profile) if personal_row else []
        realtime = view_picks(shopper.view.get("items", []))
        weight = params.realtime_weight * realtime_factor(float(shopper.view.get("at", 0.0)), now)
        selection.offer(combine([(personal, params.personal_weight), (realtime, weight)]))
        if personal_row and personal:
            version = personal_row.model_version
    _fallbacks(selection, shopper.rows, segment_keys)
    items = selection.finish()
    version = version or _version(shopper.rows, segment_keys)
    market = req.market or (profile.market[0] if profile and profile.market else "")
    return _response(
        {"user_id": req.user_id, "profile_id": shopper.target, "placement": req.placement, "market": market},
        assignment,
        version,
        selection.levels,
        items,
        market,
        shopper.trips,
        req.referrer,
    )


def rank_items(req: Request, item_ids: list[str], tables: Tables) -> dict[str, Any]:
    """Re-rank the given items for the shopper (a category page's sort order): the same blend, restricted to them,
    a little popularity to order the rest; items out of stock go last; nothing is dropped."""
    now = time.time()
    shopper = read_shopper(req.profile_id, [POPULAR_KEY], tables, now)
    assignment = assign(shopper.experiments, req.placement, shopper.target)
    params = params_for(req.placement, assignment.params)
    profile = None if assignment.holdout else shopper.profile
    sources: list[tuple[list[Pick], float]] = []
    version = ""
    if profile is not None:
        personal_row = shopper.rows.get(user_key(shopper.target)) or shopper.rows.get(user_key(req.profile_id))
        if personal_row:
            sources.append((personal_picks(personal_row.items, profile), params.personal_weight))
            version = personal_row.model_version
        weight = params.realtime_weight * realtime_factor(float(shopper.view.get("at", 0.0)), now)
        sources.append((view_picks(shopper.view.get("items", [])), weight))
    popular = shopper.rows.get(POPULAR_KEY)
    if popular:
        sources.append((popular_picks(popular.items, "popular", "global"), POPULARITY_PRIOR))
    scored = {p.item_id: p for p in combine(sources)}  # every candidate: the given items may be anywhere
    given = list(dict.fromkeys(item_ids))
    position = {item: n for n, item in enumerate(given)}
    ranked = sorted(
        given,
        key=lambda i: (i in shopper.unavailable, -(scored[i].score if i in scored else 0.0), position[i]),
    )
    picks = [scored.get(i) or Pick(i, 0.0, "store_order", source="store_order") for i in ranked]
    levels = list(dict.fromkeys(p.source for p in picks))
    response = _response(
        {"user_id": req.user_id, "profile_id": shopper.target, "placement": req.placement, "market": req.market},
        assignment,
        version or (popular.model_version if popular else ""),
        levels,
        picks,
        req.market,
        shopper.trips,
    )
    for item in response["items"]:
        item["in_stock"] = item["item_id"] not in shopper.unavailable
    return response


def popular_items(n: int, market: str, category: str, tables: Tables) -> dict[str, Any]:
    """Bestsellers of a category and/or market (category first), then global ones; in stock only."""
    segment_keys = _segment_keys(market, category)
    found, rows, _pointer, trips = read_with_rows(
        {tables.features: [{"pk": {"S": UNAVAILABLE_KEY}}]},
        [*segment_keys.values(), POPULAR_KEY],
        tables,
        projections={tables.features: f"pk, {OUT_OF_STOCK}"},
    )
    unavailable = _docs(found[tables.features])[1]
    selection = Selection(n, unavailable, category=category, max_per_category=n)
    order: dict[str, str] = {k: segment_keys[k] for k in ("category", "market") if k in segment_keys}
    _fallbacks(selection, rows, order)
    items = selection.finish()
    response = _response(
        {"market": market, "category": category},
        NO_EXPERIMENT,
        _version(rows, segment_keys),
        selection.levels,
        items,
        market,
        trips,
    )
    return response


def similar_items(item_id: str, n: int, tables: Tables) -> dict[str, Any]:
    """Items like this one: its precomputed neighbours (collaborative, content-filled for new products); a product
    newer than the model (or with too few neighbours in stock) gets its category's bestsellers, read in a second
    round trip; then global ones. In stock only, never itself."""

    def category_row(found: dict[str, list[dict[str, Any]]], pointer: Pointer) -> dict[str, list[dict[str, Any]]]:
        category = found[tables.items][0].get("category", {}).get("S", "") if found[tables.items] else ""
        own = pointer.keep(found[tables.recommendations]).get(item_key(item_id))
        gone = _docs(found[tables.features])[1] | {item_id}
        if not category or (own and sum(1 for e in own.items if e[0] not in gone) >= n):
            return {}
        key = popular_key(f"category:{category}")
        return {tables.recommendations: _row_keys([key], (pointer.slot,) if pointer.slot else SLOTS)}

    found, rows, _pointer, trips = read_with_rows(
        {tables.features: [{"pk": {"S": UNAVAILABLE_KEY}}], tables.items: [{"item_id": {"S": item_id}}]},
        [item_key(item_id), POPULAR_KEY],
        tables,
        projections={tables.features: f"pk, {OUT_OF_STOCK}", tables.items: "item_id, category, title"},
        more=category_row,
    )
    unavailable = _docs(found[tables.features])[1]
    catalog = found[tables.items][0] if found[tables.items] else {}
    similar = rows.get(item_key(item_id))
    if similar is None and not catalog:
        raise NotFound(f"item {item_id!r} is neither in the catalog nor in the model")
    selection = Selection(n, unavailable | {item_id}, max_per_category=n)
    if similar:
        selection.offer(similar_picks(similar.items, item_id))
    version = similar.model_version if similar else ""
    category = catalog.get("category", {}).get("S", "")
    row = rows.get(popular_key(f"category:{category}")) if category else None
    if not selection.full and row:
        title = catalog.get("title", {}).get("S", "") or f"item {item_id}"
        selection.offer(
            [
                Pick(p.item_id, p.score, "new_item_category", item_id, title, p.category or category, "category")
                for p in popular_picks(row.items, "new_item_category", "category")
            ]
        )
        version = version or row.model_version
    if POPULAR_KEY in rows:
        selection.offer(popular_picks(rows[POPULAR_KEY].items, "popular", "global"))
    items = selection.finish()
    return _response(
        {"item_id": item_id}, NO_EXPERIMENT, version or _version(rows, {}), selection.levels, items, "", trips
    )


def _segment_keys(market: str, category: str, referrer: str = "") -> dict[str, str]:
    """The segments' popular lists, in the order of the fallback chain."""
    keys = {}
    if referrer:
        keys["referrer"] = popular_key(f"referrer:{referrer}")
    if market:
        keys["market"] = popular_key(f"market:{market}")
    if category:
        keys["category"] = popular_key(f"category:{category}")
    return keys


def _fallbacks(selection: Selection, rows: dict[str, RecommendationRow], segment_keys: dict[str, str]) -> None:
    """The chain after the shopper's own candidates: the requested segments in the order given, then global."""
    codes = {"referrer": "popular_referrer", "market": "popular_market", "category": "popular_category"}
    for level, key in segment_keys.items():
        if selection.full:
            return
        row = rows.get(key)
        if row:
            selection.offer(popular_picks(row.items, codes[level], level))
    if not selection.full:
        popular = rows.get(POPULAR_KEY)
        if popular is None:
            raise NotFound("no recommendations are loaded yet: run the training pipeline (shopwise retrain)")
        selection.offer(popular_picks(popular.items, "popular", "global"))


def _version(rows: dict[str, RecommendationRow], segment_keys: dict[str, str]) -> str:
    for key in [*segment_keys.values(), POPULAR_KEY]:
        if key in rows:
            return rows[key].model_version
    return ""


def _response(
    subject: dict[str, str],
    assignment: Assignment,
    version: str,
    levels: list[str],
    items: list[Pick],
    market: str,
    trips: int,
    referrer: str = "",
) -> dict[str, Any]:
    return {
        **subject,
        "recommendation_id": str(uuid.uuid4()),
        "experiment": assignment.experiment,
        "variant": assignment.variant,
        "model_version": version,
        "source": levels[0] if levels else "none",
        "sources": levels,
        "items": [{"item_id": p.item_id, "score": p.score, "reason": reason(p, market, referrer)} for p in items],
        "read_round_trips": trips,
    }


def impression_line(response: dict[str, Any], stream: TextIO, now: float | None = None) -> None:
    """One log line that is exactly an ``impression`` event (shopwise.events.Impression) for a shopper's response:
    the log subscription's filter picks it, Firehose puts it in the event archive beside the storefront's events."""
    if not response["items"]:
        return
    at = datetime.fromtimestamp(now or time.time(), UTC).isoformat()
    kind, _, ident = response["profile_id"].partition(":")
    market = response.get("market", "")
    event = {
        "event_id": f"imp-{response['recommendation_id']}",
        "event_type": "impression",
        "occurred_at": at,
        "received_at": at,
        ("customer_id" if kind == "c" else "anonymous_id"): ident,
        "pseudonymised": True,
        "recommendation_id": response["recommendation_id"],
        "items": [item["item_id"] for item in response["items"]],
        "placement": response["placement"],
        "experiment": response["experiment"],
        "variant": response["variant"],
        "model_version": response["model_version"],
        "source": response["source"],
        "scores": [item["score"] for item in response["items"]],
        **({"market": market} if 2 <= len(market) <= 8 else {}),
    }
    stream.write(json.dumps(event, separators=(",", ":")) + "\n")
