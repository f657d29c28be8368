"""Key layout of the recommendations table, shared by the batch jobs (writers) and serving (reader)."""

from __future__ import annotations

POPULAR_KEY = "popular#global"


def user_key(profile_id: str) -> str:
    return f"user#{profile_id}"


def item_key(item_id: str) -> str:
    return f"item#{item_id}"
