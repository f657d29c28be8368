"""Comparing feature documents built in different orders."""

from __future__ import annotations

from typing import Any


def normalised(value: Any) -> Any:
    """Floats to 9 significant digits: decayed sums re-based in another order differ in the last bits."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


def merge_item_parts(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Feature documents' data by key, with every item's parts (one per stream shard, and the shared one) merged
    under the item's key: the store as one document per entity, which is how two runs of the updater compare."""
    from shopwise.dal.feature_store import Doc, merged_items
    from shopwise.keys import entity_of, item_key

    out = {key: data for key, data in docs.items() if entity_of(key) != "item"}
    items = merged_items(Doc(key, data) for key, data in docs.items())
    return {**out, **{item_key(item): features.to_json() for item, features in items.items()}}
