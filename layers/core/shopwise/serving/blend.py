"""The blend: precomputed picks + real-time candidates, exclusions, a diversity rule, the fallback chain, and a
reason for every item. Pure functions over stored rows and the shopper's features: no I/O, so they are cheap to
test and the serve Lambda stays noise inside its latency budget.

Its inputs are the typed picks of ``shopwise.picks``: stored (the batch jobs' rows) and view (the shopper's real-time
candidates). The four lists serving answers with are built at the end of this module: a shopper's (``shopper_list``),
given items re-ranked for a shopper (``ranked``), bestsellers (``bestsellers``) and an item's neighbours
(``neighbours``); each returns a ``Blended`` list that says which sources filled it and which model made it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from shopwise.catalog.categories import contains, leaf, top_level
from shopwise.dal.recommendations import RecommendationRow
from shopwise.features.definitions import ProfileFeatures
from shopwise.keys import POPULAR_KEY, item_key, popular_key, user_key
from shopwise.picks import (
    CATEGORY,
    GLOBAL,
    MARKET,
    PERSONALISED,
    REALTIME,
    REFERRER,
    SIMILAR,
    STORE_ORDER,
    StoredPick,
    ViewPick,
)
from shopwise.serving.shopper import NotFound, Request, Shopper
from shopwise.serving.view import context_view


@dataclass(frozen=True)
class BlendParams:
    personal_weight: float = 1.0
    realtime_weight: float = 0.6
    max_per_category: int = 4  # at most this many items of one top-level category in a list (if others exist)


# per placement: a product or cart page is about what the shopper is doing now, an email about who they are. On a
# product page the diversity rule gives way: replayed sessions (tests/bench/bench_sessions.py) go on to the same
# department far more often than not — capped at 4 items of one department the served list hit the next click 0.474
# of the time, at 20 0.832 (the transitions baseline 0.674, session kNN 0.819). And what is on screen outweighs the
# precomputed list 4 to 1: known customers' sessions replayed with the page's context (bench_sessions.py --known)
# hit 0.694 / MRR 0.284 at real-time 2.0 against personal 0.5, 0.687 / 0.275 at 1.0, 0.660 / 0.215 at 1 to 1
PLACEMENT_PARAMS: dict[str, BlendParams] = {
    "home": BlendParams(),
    "product": BlendParams(personal_weight=0.5, realtime_weight=2.0, max_per_category=20),
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


def personal_picks(entries: list[StoredPick], profile: ProfileFeatures | None) -> list[Pick]:
    """The precomputed list; a pick explained by an item the shopper bought, carted or viewed says which."""
    bought = set(profile.recent_items("purchase")) if profile else set()
    carted = set(profile.recent_items("cart")) if profile else set()
    picks = []
    for e in entries:
        if not e.because:
            code = "personalised"
        elif e.because in bought:
            code = "because_purchased"
        elif e.because in carted:
            code = "because_carted"
        else:
            code = "because_viewed"
        picks.append(Pick(e.item_id, float(e.score), code, e.because, e.because_title, e.category, PERSONALISED))
    return picks


def view_picks(entries: list[ViewPick]) -> list[Pick]:
    return [Pick(e.item_id, float(e.score), e.code, e.because, e.because_title, e.category, REALTIME) for e in entries]


def popular_picks(entries: list[StoredPick], code: str, source: str) -> list[Pick]:
    return [Pick(e.item_id, float(e.score), code, category=e.category, source=source) for e in entries]


def similar_picks(entries: list[StoredPick], item_id: str) -> list[Pick]:
    return [
        Pick(e.item_id, float(e.score), "similar_item", item_id, e.because_title, e.category, SIMILAR) for e in entries
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
        if pick.item_id in self.purchased and not any(contains(pick.category, c) for c in self.repeat_categories):
            return False
        return not self.category or contains(pick.category, self.category)

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


# ------------------------------------------------------------------------------------------------ the lists served
POPULARITY_PRIOR = 0.1  # weight of global popularity when re-ranking given items (breaks ties among the unknown)
POPULAR_CODES = {REFERRER: "popular_referrer", MARKET: "popular_market", CATEGORY: "popular_category"}


@dataclass(frozen=True)
class Blended:
    items: list[Pick]
    sources: list[str]  # which links of the chain filled the list, first first
    model_version: str

    def to_json(self, market: str = "", referrer: str = "") -> list[dict[str, Any]]:
        return [{"item_id": p.item_id, "score": p.score, "reason": reason(p, market, referrer)} for p in self.items]


def segment_keys(market: str, category: str, referrer: str = "") -> dict[str, str]:
    """The segments' popular lists a request falls back on, in the order of the chain."""
    keys = {}
    if referrer:
        keys[REFERRER] = popular_key(f"referrer:{referrer}")
    if market:
        keys[MARKET] = popular_key(f"market:{market}")
    if category:
        keys[CATEGORY] = popular_key(f"category:{category}")
    return keys


def shopper_list(
    req: Request,
    shopper: Shopper,
    profile: ProfileFeatures | None,
    params: BlendParams,
    repeat_categories: tuple[str, ...],
    now: float,
    contextual: bool = True,
) -> Blended:
    """The shopper's own candidates (``profile``: None for a stranger or the holdout) and the candidates of the
    request's context (``contextual``: False for the holdout, whose control list uses no signal of the shopper),
    then the fallback chain — referrer, market, category, global bestsellers — with exclusions (owned unless a
    repeat-purchase category, in cart, out of stock, asked), the category filter and the diversity rule applied
    throughout."""
    excluded = set(req.exclude) | shopper.unavailable
    purchased: frozenset[str] = frozenset()
    if profile is not None:
        excluded |= set(profile.current_cart())
        purchased = frozenset(profile.recent_items("purchase"))
    selection = Selection(req.n, excluded, repeat_categories, purchased, req.category, params.max_per_category)
    context = req.context if contextual else ()
    sources, version = _own_candidates(req, shopper, profile, params, now, fresh=frozenset(context))
    if context:
        rows = {key: row.items for key, row in shopper.rows.items()}
        sources.append((view_picks(context_view(context, rows)), params.realtime_weight))
    if sources:
        selection.offer(combine(sources))
    segments = segment_keys(req.market, req.category, req.referrer)
    _fallbacks(selection, shopper.rows, segments)
    return Blended(selection.finish(), selection.levels, version or _version(shopper.rows, segments))


def ranked(
    req: Request,
    shopper: Shopper,
    profile: ProfileFeatures | None,
    params: BlendParams,
    item_ids: list[str],
    now: float,
) -> Blended:
    """The given items in the shopper's order (a category page's sort): the same blend restricted to them, a little
    global popularity to order the rest; items out of stock last; nothing dropped."""
    sources, version = _own_candidates(req, shopper, profile, params, now, personal_required=False)
    popular = shopper.rows.get(POPULAR_KEY)
    if popular:
        sources.append((popular_picks(popular.items, "popular", GLOBAL), POPULARITY_PRIOR))
    scored = {p.item_id: p for p in combine(sources)}  # every candidate: the given items may be anywhere
    given = list(dict.fromkeys(item_ids))
    position = {item: n for n, item in enumerate(given)}
    order = sorted(
        given,
        key=lambda i: (i in shopper.unavailable, -(scored[i].score if i in scored else 0.0), position[i]),
    )
    picks = [scored.get(i) or Pick(i, 0.0, "store_order", source=STORE_ORDER) for i in order]
    return Blended(
        picks, list(dict.fromkeys(p.source for p in picks)), version or (popular.model_version if popular else "")
    )


def bestsellers(
    n: int, market: str, category: str, rows: dict[str, RecommendationRow], gone: frozenset[str]
) -> Blended:
    """Bestsellers of a category and/or market (category first), then global ones; ``gone`` (out of stock) left out."""
    segments = segment_keys(market, category)
    selection = Selection(n, set(gone), category=category, max_per_category=n)
    _fallbacks(selection, rows, {k: segments[k] for k in (CATEGORY, MARKET) if k in segments})
    return Blended(selection.finish(), selection.levels, _version(rows, segments))


def neighbours(
    item_id: str, n: int, rows: dict[str, RecommendationRow], gone: frozenset[str], category: str, title: str
) -> Blended:
    """Items like this one: its precomputed neighbours, then (a product newer than the model, or too few neighbours
    in stock) its category's bestsellers, then global ones. ``gone`` (out of stock) and the item itself left out."""
    own = rows.get(item_key(item_id))
    selection = Selection(n, set(gone) | {item_id}, max_per_category=n)
    if own:
        selection.offer(similar_picks(own.items, item_id))
    version = own.model_version if own else ""
    row = rows.get(popular_key(f"category:{category}")) if category else None
    if not selection.full and row:
        selection.offer(
            Pick(p.item_id, p.score, "new_item_category", item_id, title, p.category or category, CATEGORY)
            for p in popular_picks(row.items, "new_item_category", CATEGORY)
        )
        version = version or row.model_version
    if POPULAR_KEY in rows:
        selection.offer(popular_picks(rows[POPULAR_KEY].items, "popular", GLOBAL))
    return Blended(selection.finish(), selection.levels, version or _version(rows, {}))


def _own_candidates(
    req: Request,
    shopper: Shopper,
    profile: ProfileFeatures | None,
    params: BlendParams,
    now: float,
    personal_required: bool = True,
    fresh: frozenset[str] = frozenset(),
) -> tuple[list[tuple[list[Pick], float]], str]:
    """The shopper's own candidates, each with its weight: the precomputed list and the real-time candidates of the
    serving view (the view's weight decays with the age of the shopper's newest action; candidates explained by an
    item of the request's context, ``fresh``, are left to the context's own, at full weight); and the model version
    behind the list. Nothing without a profile that may be personalised."""
    if profile is None:
        return [], ""
    row = shopper.rows.get(user_key(shopper.target)) or shopper.rows.get(user_key(req.profile_id))
    personal = personal_picks(row.items, profile) if row else []
    used = row is not None and (bool(personal) or not personal_required)
    sources: list[tuple[list[Pick], float]] = [(personal, params.personal_weight)] if used else []
    view = [e for e in shopper.view if e.because not in fresh] if fresh else shopper.view
    sources.append((view_picks(view), params.realtime_weight * realtime_factor(shopper.view_at, now)))
    return sources, row.model_version if row is not None and used else ""


def _fallbacks(selection: Selection, rows: dict[str, RecommendationRow], segments: dict[str, str]) -> None:
    """The chain after the shopper's own candidates: the requested segments in the order given, then global. The
    order (``segment_keys``: referrer, market, category) is the replay's: a stranger's first click hit the
    referrer's bestsellers at MRR@20 0.076 against the global list's 0.042 (``session_replay.first_clicks``)."""
    for level, key in segments.items():
        if selection.full:
            return
        row = rows.get(key)
        if row:
            selection.offer(popular_picks(row.items, POPULAR_CODES[level], level))
    if not selection.full:
        global_row = rows.get(POPULAR_KEY)
        if global_row is None:
            raise NotFound("no recommendations are loaded yet: run the training pipeline (shopwise retrain)")
        selection.offer(popular_picks(global_row.items, "popular", GLOBAL))


def _version(rows: dict[str, RecommendationRow], segments: dict[str, str]) -> str:
    for key in [*segments.values(), POPULAR_KEY]:
        if key in rows:
            return rows[key].model_version
    return ""
