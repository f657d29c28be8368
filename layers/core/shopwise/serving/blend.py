"""The blend: precomputed picks + real-time candidates, exclusions, a diversity rule, the fallback chain, and a
reason for every item. Pure functions over stored rows and the shopper's features: no I/O, so they are cheap to
test and the serve Lambda stays noise inside its latency budget.

Stored entries (``shopwise_jobs.scoring.entry``): [item, score, because item, category path, because title].
Serving-view entries (``shopwise.serving.view``): [item, score, reason code, because item, because title,
category path].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from shopwise.features.definitions import ProfileFeatures

CATEGORY_SEPARATOR = ">"


@dataclass(frozen=True)
class BlendParams:
    personal_weight: float = 1.0
    realtime_weight: float = 0.6
    max_per_category: int = 4  # at most this many items of one top-level category in a list (if others exist)


# per placement: a product or cart page is about what the shopper is doing now, an email about who they are
PLACEMENT_PARAMS: dict[str, BlendParams] = {
    "home": BlendParams(),
    "product": BlendParams(personal_weight=0.5, realtime_weight=1.0),
    "cart": BlendParams(personal_weight=0.5, realtime_weight=1.0),
    "email": BlendParams(personal_weight=1.0, realtime_weight=0.3),
}
REALTIME_HALF_LIFE = 6 * 3600.0  # the real-time candidates weigh less as the shopper's newest action ages
REALTIME_FLOOR = 0.25


def params_for(placement: str, overrides: dict[str, float]) -> BlendParams:
    base = PLACEMENT_PARAMS[placement]
    if not overrides:
        return base
    values = {k: v for k, v in overrides.items() if k != "max_per_category"}
    if "max_per_category" in overrides:
        values["max_per_category"] = max(1, int(overrides["max_per_category"]))
    return replace(base, **values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Pick:
    item_id: str
    score: float
    code: str
    because: str = ""
    because_title: str = ""
    category: str = ""
    source: str = ""


def leaf(category: str) -> str:
    parts = [p.strip() for p in category.split(CATEGORY_SEPARATOR) if p.strip()]
    return parts[-1] if parts else category


def top_level(category: str) -> str:
    return category.split(CATEGORY_SEPARATOR, 1)[0].strip()


REASON_TEXT = {
    "because_viewed": "Because you viewed {title}",
    "because_carted": "Goes with {title} in your cart",
    "because_purchased": "Because you bought {title}",
    "next_after_viewed": "Shoppers who viewed {title} went on to this",
    "complements": "Often bought after {title}, which you bought",
    "session_category": "Trending in {category}",
    "personalised": "Picked for you from your history",
    "popular_market": "Popular in {market}",
    "popular_referrer": "Popular with shoppers coming from {referrer}",
    "popular_category": "Trending in {category}",
    "popular": "Popular with shoppers right now",
    "similar_item": "Shoppers who liked {title} also liked this",
    "new_item_category": "Popular in {category}, like {title}",
    "store_order": "In the store's order: no signal for this item",
}


def reason(pick: Pick, market: str = "", referrer: str = "") -> dict[str, str]:
    title = pick.because_title or (f"item {pick.because}" if pick.because else "")
    category = leaf(pick.category) or "this category"
    text = REASON_TEXT[pick.code].format(title=title, category=category, market=market, referrer=referrer)
    return {"code": pick.code, "text": text}


def _entry(entry: list[Any], index: int) -> str:
    return str(entry[index]) if len(entry) > index and entry[index] is not None else ""


def personal_picks(entries: list[list[Any]], profile: ProfileFeatures | None) -> list[Pick]:
    """The precomputed list; a pick explained by an item the shopper bought, carted or viewed says which."""
    bought = set(profile.recent_items("purchase")) if profile else set()
    carted = set(profile.recent_items("cart")) if profile else set()
    picks = []
    for e in entries:
        because = _entry(e, 2)
        if not because:
            code = "personalised"
        elif because in bought:
            code = "because_purchased"
        elif because in carted:
            code = "because_carted"
        else:
            code = "because_viewed"
        picks.append(Pick(str(e[0]), float(e[1]), code, because, _entry(e, 4), _entry(e, 3), "personalised"))
    return picks


def view_picks(entries: list[list[Any]]) -> list[Pick]:
    return [
        Pick(str(e[0]), float(e[1]), str(e[2]), _entry(e, 3), _entry(e, 4), _entry(e, 5), "realtime") for e in entries
    ]


def popular_picks(entries: list[list[Any]], code: str, source: str) -> list[Pick]:
    return [Pick(str(e[0]), float(e[1]), code, category=_entry(e, 3), source=source) for e in entries]


def similar_picks(entries: list[list[Any]], item_id: str) -> list[Pick]:
    return [
        Pick(str(e[0]), float(e[1]), "similar_item", item_id, _entry(e, 4), _entry(e, 3), "similar") for e in entries
    ]


def realtime_factor(newest_at: float, now: float) -> float:
    """1 right after the shopper's newest action, halving every REALTIME_HALF_LIFE, never below REALTIME_FLOOR."""
    if newest_at <= 0:
        return REALTIME_FLOOR
    return max(REALTIME_FLOOR, math.pow(2.0, -max(0.0, now - newest_at) / REALTIME_HALF_LIFE))


def combine(sources: list[tuple[list[Pick], float]]) -> Iterator[Pick]:
    """Each source scaled to its best score and weighted; an item's score sums its sources, its reason is the one
    that contributed most. Best first; ties keep the first source's order. Lazy: a list of 10 takes only the picks
    it looks at."""
    scores: dict[str, float] = {}
    best: dict[str, tuple[float, Pick]] = {}
    order: dict[str, int] = {}
    for picks, weight in sources:
        if weight <= 0 or not picks:
            continue
        top = max((p.score for p in picks), default=0.0)
        for rank, pick in enumerate(picks):
            share = pick.score / top if top > 0 else 1.0 / (rank + 2)
            value = weight * max(share, 0.0)
            scores[pick.item_id] = scores.get(pick.item_id, 0.0) + value
            order.setdefault(pick.item_id, len(order))
            if pick.item_id not in best or value > best[pick.item_id][0]:
                best[pick.item_id] = (value, pick)
    ranked = sorted(scores, key=lambda i: (-scores[i], order[i]))
    return (replace(best[i][1], score=round(scores[i], 6)) for i in ranked)


@dataclass
class Selection:
    """Builds a list from candidates in order: exclusions, a category filter and the diversity rule applied as
    items are offered; items over their category's cap wait and fill the list only if nothing else does."""

    n: int
    excluded: set[str]
    repeat_categories: tuple[str, ...] = ()
    purchased: frozenset[str] = frozenset()
    category: str = ""
    max_per_category: int = 4

    def __post_init__(self) -> None:
        self.items: list[Pick] = []
        self.taken: set[str] = set()
        self.per_category: dict[str, int] = {}
        self.waiting: list[Pick] = []
        self.levels: list[str] = []

    @property
    def full(self) -> bool:
        return len(self.items) >= self.n

    def allowed(self, pick: Pick) -> bool:
        if pick.item_id in self.taken or pick.item_id in self.excluded:
            return False
        if pick.item_id in self.purchased and not any(in_category(pick.category, c) for c in self.repeat_categories):
            return False
        return not self.category or in_category(pick.category, self.category)

    def offer(self, picks: Iterable[Pick]) -> None:
        for pick in picks:
            if self.full:
                return
            if not self.allowed(pick):
                continue
            group = top_level(pick.category)
            if group and not self.category and self.per_category.get(group, 0) >= self.max_per_category:
                self.waiting.append(pick)
                self.taken.add(pick.item_id)
                continue
            self._take(pick)

    def _take(self, pick: Pick) -> None:
        self.items.append(pick)
        self.taken.add(pick.item_id)
        group = top_level(pick.category)
        self.per_category[group] = self.per_category.get(group, 0) + 1
        if pick.source not in self.levels:
            self.levels.append(pick.source)

    def finish(self) -> list[Pick]:
        for pick in self.waiting:
            if self.full:
                break
            self._take(pick)
        return self.items


def in_category(path: str, wanted: str) -> bool:
    """Whether an item's category path lies in ``wanted`` (a path prefix at a separator, case-insensitive)."""
    have = [p.strip().lower() for p in path.split(CATEGORY_SEPARATOR)]
    want = [p.strip().lower() for p in wanted.split(CATEGORY_SEPARATOR)]
    return have[: len(want)] == want
