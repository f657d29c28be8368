"""Key layouts shared by writers and readers: the recommendations table (batch jobs write, serving reads) and the
feature store (the stream updater writes; serving, training and monitoring read)."""

from __future__ import annotations


def popular_key(segment: str) -> str:
    """A popular list: "global", "category:<category path>", "market:<market>" or "referrer:<source>"."""
    return f"popular#{segment}"


def referrer_source(referrer: str) -> str:
    """Where a visit came from, as a segment name: the referring URL's host without "www." ("instagram.com"), or
    the value itself lower-cased when it is not a URL ("newsletter"); "" for none."""
    value = referrer.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].split(":", 1)[0]
    return value.removeprefix("www.")[:128]


POPULAR_KEY = popular_key("global")


def user_key(profile_id: str) -> str:
    return f"user#{profile_id}"


def item_key(item_id: str) -> str:
    """An item's precomputed similar items (recommendations table) and its features (feature store)."""
    return f"item#{item_id}"


def next_key(item_id: str) -> str:
    """What shoppers went on to after this item within a session (the sequential model's rules)."""
    return f"next#{item_id}"


# Feature store entities (one table, one document per entity).
def profile_key(profile_id: str) -> str:
    return f"profile#{profile_id}"


def session_key(session_id: str) -> str:
    return f"session#{session_id}"


def category_key(category: str) -> str:
    return f"segment#category:{category}"


def market_key(market: str) -> str:
    return f"segment#market:{market}"


def alias_key(alias: str) -> str:
    return f"alias#{alias}"


# the catalog's out-of-stock item ids, one string set kept by the catalog writers (so serving reads stock with the
# shopper's features, in one round trip)
UNAVAILABLE_KEY = "catalog#unavailable"
OUT_OF_STOCK = "out_of_stock"


def entity_of(key: str) -> str:
    """'profile', 'session', 'item', 'segment' or 'alias'."""
    return key.split("#", 1)[0]


def key_id(key: str) -> str:
    return key.split("#", 1)[1]
