"""What a recommendation list is made of, as it crosses packages: the picks the batch jobs store, the picks of a
shopper's serving view, and the sources a served list says it came from.

Stored and view picks travel as compact JSON lists (cheap to store and to read: one string attribute per row); these
named tuples are their schema. ``decode`` reads a stored list (shorter lists are padded with defaults), ``encode``
writes one. Named tuples, not classes: a request decodes a few hundred picks and a tuple costs nothing more.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class StoredPick(NamedTuple):
    """A pick in a precomputed row (``shopwise_jobs.scoring``): a shopper's list, an item's neighbours, the next-item
    rules, a popular list."""

    item_id: str
    score: float
    because: str = ""  # the item that explains it ("" for popular lists and unexplained picks)
    category: str = ""  # the pick's category path (filters and the diversity rule need it without a lookup)
    because_title: str = ""  # the explaining item's title (the reason's text needs it without a lookup)

    def encode(self) -> list[Any]:
        return list(self)

    @classmethod
    def decode(cls, entry: list[Any]) -> StoredPick:
        return cls._make(entry) if len(entry) == 5 and None not in entry else cls(*_padded(entry, 5))


class ViewPick(NamedTuple):
    """A real-time candidate in a shopper's serving view (``shopwise.serving.view``), resolved when the feature
    updater writes the profile."""

    item_id: str
    score: float
    code: str  # the reason code: because_viewed, because_carted, next_after_viewed, complements, session_category
    because: str = ""
    because_title: str = ""
    category: str = ""

    def encode(self) -> list[Any]:
        return list(self)

    @classmethod
    def decode(cls, entry: list[Any]) -> ViewPick:
        return cls._make(entry) if len(entry) == 6 and None not in entry else cls(*_padded(entry, 6))


def _padded(entry: list[Any], width: int) -> list[Any]:
    values = [str(entry[0]), float(entry[1]), *("" if v is None else str(v) for v in entry[2:width])]
    return values + [""] * (width - len(values))


# Where the items of a served list come from, in the order of the fallback chain: the shopper's precomputed list,
# the real-time candidates of the serving view, the bestsellers of the visit's referrer, market and category, the
# global bestsellers; an item's neighbours (similar items); the store's own order (re-ranking an item with no
# signal). Every answer names its first source (``source``) and all of them (``sources``); the serve function counts
# answers per first source as the ``Served_<source>`` metric; the drift job's serving side reads them from the
# impressions; the dashboard plots them.
PERSONALISED = "personalised"
REALTIME = "realtime"
REFERRER = "referrer"
MARKET = "market"
CATEGORY = "category"
GLOBAL = "global"
SIMILAR = "similar"
STORE_ORDER = "store_order"
SOURCES = (PERSONALISED, REALTIME, REFERRER, MARKET, CATEGORY, GLOBAL, SIMILAR, STORE_ORDER)
PERSONAL_SOURCES = (PERSONALISED, REALTIME)  # what the shopper's own history made
NO_SOURCE = "none"  # an answer with no items


def served_metric(source: str) -> str:
    """The CloudWatch metric that counts answers by their first source."""
    return f"Served_{source}"
