"""Key layouts shared by writers and readers: the recommendations table (batch jobs write, serving reads) and the
feature store (the stream updater writes; serving, training and monitoring read)."""

from __future__ import annotations


def popular_key(segment: str) -> str:
    """A popular list: "global", "category:<category path>" or "market:<market>"."""
    return f"popular#{segment}"


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


def entity_of(key: str) -> str:
    """'profile', 'session', 'item', 'segment' or 'alias'."""
    return key.split("#", 1)[0]


def key_id(key: str) -> str:
    return key.split("#", 1)[1]
