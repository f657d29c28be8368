"""The shopper's serving view: real-time candidates resolved at write time, so a request reads them in its one round
trip.

The feature updater, when it folds a consenting shopper's events into the profile, also reads the precomputed rows
of what the shopper just did — items similar to the newest views and cart lines (``item#``), what shoppers went on
to after those views and after the newest purchases (``next#``), and the bestsellers of the shopper's strongest
category (``popular#category:``) — and stores their blend in the profile document under ``serving``. Serving blends
that view with the precomputed personal list; it never has to look up rows keyed by what the shopper did.

A view is as fresh as the shopper's newest event: a new model's rows reach it with the shopper's next event (the
precomputed personal list and the popular lists, read at request time, are always the active ones).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shopwise.features.definitions import KIND_WEIGHTS, ProfileFeatures
from shopwise.keys import item_key, next_key, popular_key
from shopwise.picks import StoredPick, ViewPick

VIEW_LIMIT = 50
RECENCY = (1.0, 0.7, 0.5)  # weight of the newest, second and third interaction of a kind
# (kind, how many of the newest, [(row key function, source weight, reason code), ...])
SOURCES: tuple[tuple[str, int, tuple[tuple[Any, float, str], ...]], ...] = (
    ("view", 3, ((item_key, 1.0, "because_viewed"), (next_key, 0.8, "next_after_viewed"))),
    ("cart", 3, ((item_key, 1.0, "because_carted"),)),
    ("purchase", 2, ((next_key, 1.0, "complements"),)),
)
CATEGORY_WEIGHT = 0.3  # the strongest category's bestsellers: the session's category affinity


def top_category(profile: ProfileFeatures) -> str:
    if not profile.affinity:
        return ""
    newest = max(float(pair[1]) for pair in profile.affinity.values())
    return profile.top_categories(newest, 1)[0][0]


def view_keys(profile: ProfileFeatures) -> list[str]:
    """The recommendations-table rows the view of this profile is made of."""
    keys = [
        key_of(item)
        for kind, newest, sources in SOURCES
        for item in profile.recent_items(kind)[:newest]
        for key_of, _weight, _code in sources
    ]
    category = top_category(profile)
    if category:
        keys.append(popular_key(f"category:{category}"))
    return list(dict.fromkeys(keys))


def batch_view_keys(stored: ProfileFeatures, items: Iterable[str], categories: Iterable[str]) -> list[str]:
    """Every row the view may need once a batch is folded into ``stored``, without folding it: the newest items
    after the fold are among the stored newest and the batch's items, the strongest category among the stored one
    and the batch's categories."""
    keys = view_keys(stored)
    for item in items:
        keys += [item_key(item), next_key(item)]
    keys += [popular_key(f"category:{c}") for c in categories]
    return list(dict.fromkeys(keys))


class _Candidates:
    """Source rows added one by one: each scaled to its best score and weighted; an item's score sums its sources,
    its reason is the strongest one."""

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.best: dict[str, tuple[float, str, StoredPick]] = {}

    def add(self, entries: list[StoredPick], weight: float, code: str) -> None:
        top = max((float(e.score) for e in entries), default=0.0)
        for rank, e in enumerate(entries):
            # a row of zero scores keeps its order
            share = float(e.score) / top if top > 0 else 1.0 / (rank + 1)
            value = weight * share
            self.scores[e.item_id] = self.scores.get(e.item_id, 0.0) + value
            if e.item_id not in self.best or value > self.best[e.item_id][0]:
                self.best[e.item_id] = (value, code, e)

    def picks(self) -> list[ViewPick]:
        ranked = sorted(self.scores, key=lambda i: (-self.scores[i], i))[:VIEW_LIMIT]
        return [
            ViewPick(
                i,
                round(self.scores[i], 6),
                self.best[i][1],
                self.best[i][2].because,
                self.best[i][2].because_title,
                self.best[i][2].category,
            )
            for i in ranked
        ]


def serving_view(profile: ProfileFeatures, rows: dict[str, list[StoredPick]]) -> dict[str, Any]:
    """{"at": time of the newest interaction it reflects, "items": [ViewPick as a list, ...] best first}. Each source
    row is scaled to its best score, weighted by the interaction kind, its recency rank and the source; an item's
    score sums its sources, its reason is the strongest one."""
    found = _Candidates()
    newest_at = 0.0
    for kind, newest, sources in SOURCES:
        for rank, (item, at) in enumerate(profile.recent.get(kind, [])[:newest]):
            newest_at = max(newest_at, float(at))
            for key_of, weight, code in sources:
                entries = rows.get(key_of(str(item)))
                if entries:
                    found.add(entries, KIND_WEIGHTS[kind] / KIND_WEIGHTS["purchase"] * RECENCY[rank] * weight, code)
    category = top_category(profile)
    entries = rows.get(popular_key(f"category:{category}")) if category else None
    if entries:
        found.add(entries, CATEGORY_WEIGHT, "session_category")
    return {"at": newest_at, "items": [p.encode() for p in found.picks()]}


# ------------------------------------------------------------------------------------------ in-request context
CONTEXT_LIMIT = len(RECENCY)  # the page's newest items used, as the view uses the newest 3 views


def context_keys(items: Iterable[str]) -> list[str]:
    """The rows the request's context needs (read in the request's one BatchGetItem): each of the newest items'
    neighbours and next-item rules."""
    view = next(kind for kind in SOURCES if kind[0] == "view")
    return list(dict.fromkeys(key_of(i) for i in list(items)[:CONTEXT_LIMIT] for key_of, _w, _c in view[2]))


def context_view(items: Iterable[str], rows: dict[str, list[StoredPick]]) -> list[ViewPick]:
    """The real-time candidates of what the page says the shopper is looking at (the product on screen, then the
    session's recent items, newest first), made exactly as the serving view makes them from product views — for a
    request that carries its context, whatever the stream has applied yet."""
    found = _Candidates()
    view = next(kind for kind in SOURCES if kind[0] == "view")
    for rank, item in enumerate(list(items)[:CONTEXT_LIMIT]):
        for key_of, weight, code in view[2]:
            entries = rows.get(key_of(item))
            if entries:
                found.add(entries, KIND_WEIGHTS["view"] / KIND_WEIGHTS["purchase"] * RECENCY[rank] * weight, code)
    return found.picks()
