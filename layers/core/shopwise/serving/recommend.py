"""Serving: read precomputed lists and the shopper's live features in one BatchGetItem, blend, explain."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from shopwise.dal.feature_store import Doc
from shopwise.dal.recommendations import RecommendationRow, batch_get, decode_row
from shopwise.features import ProfileFeatures
from shopwise.keys import POPULAR_KEY, alias_key, item_key, profile_key, user_key

MAX_N = 100


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Tables:
    recommendations: str
    features: str


@dataclass(frozen=True)
class Reason:
    code: str
    text: str


def _reason_for(because: str, profile: ProfileFeatures | None) -> Reason:
    if not because:
        return Reason("personalised", "Picked for you from your history")
    if profile and because in profile.recent_items("purchase"):
        return Reason("bought_together", f"Because you bought item {because}")
    if profile and because in profile.recent_items("cart"):
        return Reason("similar_to_cart", f"Because you added item {because} to your cart")
    return Reason("similar_to_history", f"Because of your interest in item {because}")


def _items(rows: list[list[Any]], n: int, exclude: set[str], reason: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in rows:
        item_id, score = str(entry[0]), float(entry[1])
        if item_id in exclude:
            continue
        because = str(entry[2]) if len(entry) > 2 else ""
        why: Reason = reason(because)
        out.append({"item_id": item_id, "score": round(score, 6), "reason": {"code": why.code, "text": why.text}})
        if len(out) == n:
            break
    return out


def _features_of(rows: list[dict[str, Any]]) -> dict[str, Doc]:
    return {doc.key: doc for doc in (Doc.from_item(row) for row in rows)}


def recommend_for_user(user_id: str, profile_id: str, n: int, tables: Tables) -> dict[str, Any]:
    """Precomputed list for the shopper if there is one and the shopper's profile holds a personalisation consent
    now, else popular items; owned and carted items are left out.

    ``profile_id`` is the alias the storefront knows the shopper by ("c:<customer pseudonym>" or "a:<anonymous
    id>"). One BatchGetItem reads the alias, its profile, its list and the popular list; only a stitched shopper
    (the alias points at another profile) costs a second one."""
    found, trips = batch_get(
        {
            tables.recommendations: [{"pk": {"S": user_key(profile_id)}}, {"pk": {"S": POPULAR_KEY}}],
            tables.features: [{"pk": {"S": alias_key(profile_id)}}, {"pk": {"S": profile_key(profile_id)}}],
        },
        projections={tables.features: "pk, v, doc, merged_into"},
    )
    rows = _live_rows(found[tables.recommendations])
    docs = _features_of(found[tables.features])
    alias, own = docs.get(alias_key(profile_id)), docs.get(profile_key(profile_id))
    target = str(alias.data.get("profile", "")) if alias else ""
    target = (own.merged_into if own and own.merged_into else target) or profile_id
    doc = own
    if target != profile_id:
        more, extra = batch_get(
            {
                tables.recommendations: [{"pk": {"S": user_key(target)}}],
                tables.features: [{"pk": {"S": profile_key(target)}}],
            },
            projections={tables.features: "pk, v, doc, merged_into"},
        )
        trips += extra
        rows.update(_live_rows(more[tables.recommendations]))
        doc = _features_of(more[tables.features]).get(profile_key(target))
    profile = None
    if doc and doc.data.get("features"):
        candidate = ProfileFeatures.from_json(doc.data["features"])
        # a shopper who revoked personalisation gets what a stranger gets
        profile = candidate if candidate.consented(time.time()) else None
    exclude = set(profile.recent_items("purchase")) | set(profile.current_cart()) if profile else set()

    # a precomputed list is personal data: only a shopper with personalisation consent now gets it
    personal = (rows.get(user_key(target)) or rows.get(user_key(profile_id))) if profile is not None else None
    if personal:
        items = _items(personal.items, n, exclude, lambda b: _reason_for(b, profile))
        source, version = "personalised", personal.model_version
        popular_fill = rows.get(POPULAR_KEY)
        if len(items) < n and popular_fill:
            taken = exclude | {i["item_id"] for i in items}
            items += _items(popular_fill.items, n - len(items), taken, lambda _b: _POPULAR)
    else:
        popular = _popular(rows)
        reason = _NEW_SHOPPER if profile is None else _POPULAR
        items = _items(popular.items, n, exclude, lambda _b: reason)
        source, version = "popular", popular.model_version
    return _response({"user_id": user_id, "profile_id": target}, version, source, items, trips)


def similar_items(item_id: str, n: int, tables: Tables) -> dict[str, Any]:
    found, trips = batch_get({tables.recommendations: [{"pk": {"S": item_key(item_id)}}, {"pk": {"S": POPULAR_KEY}}]})
    rows = _live_rows(found[tables.recommendations])
    similar = rows.get(item_key(item_id))
    if similar:
        reason = Reason("similar_item", f"Shoppers who liked item {item_id} also liked this")
        items = _items(similar.items, n, {item_id}, lambda _b: reason)
        source, version = "similar", similar.model_version
    else:
        popular = _popular(rows)
        reason = Reason("popular_fallback", f"Item {item_id} is new to the model: showing popular items")
        items = _items(popular.items, n, {item_id}, lambda _b: reason)
        source, version = "popular", popular.model_version
    return _response({"item_id": item_id}, version, source, items, trips)


def _live_rows(raw_rows: list[dict[str, Any]]) -> dict[str, RecommendationRow]:
    """Stored rows by key, leaving out those past their TTL."""
    return {row.key: row for row in (decode_row(raw) for raw in raw_rows) if row}


def _popular(rows: dict[str, RecommendationRow]) -> RecommendationRow:
    popular = rows.get(POPULAR_KEY)
    if popular is None:
        raise NotFound("no recommendations are loaded yet: run the training pipeline (shopwise train)")
    return popular


def _response(
    subject: dict[str, str], version: str, source: str, items: list[dict[str, Any]], trips: int
) -> dict[str, Any]:
    return {
        **subject,
        "recommendation_id": str(uuid.uuid4()),
        "model_version": version,
        "source": source,
        "items": items,
        "read_round_trips": trips,
    }


_POPULAR = Reason("popular", "Popular with shoppers right now")
_NEW_SHOPPER = Reason("popular_new_shopper", "Popular with shoppers right now (we don't know you yet)")
