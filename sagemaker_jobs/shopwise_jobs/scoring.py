"""Batch scoring: top-K per user with the item that explains each pick, neighbours per item, a popular list."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from shopwise.keys import POPULAR_KEY, item_key, user_key
from shopwise_jobs.artifacts import TrainedModel
from shopwise_jobs.models import top_k

USER_CHUNK = 512


def _shard(count: int, shard: int, shards: int) -> np.ndarray:
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards")
    return np.arange(shard, count, shards)


def popular_row(model: TrainedModel, k: int) -> dict[str, Any]:
    top = model.popularity.top(k)
    return {
        "key": POPULAR_KEY,
        "items": [[model.items[i], round(float(model.popularity.scores[i]), 6)] for i in top],
    }


def user_rows(model: TrainedModel, k: int, shard: int = 0, shards: int = 1) -> Iterator[dict[str, Any]]:
    """Item-kNN picks, padded with popular items the user doesn't own when the neighbourhood runs dry."""
    popular = model.popularity.top(min(len(model.items), k * 4))
    sim = model.knn.similarity
    users = _shard(len(model.users), shard, shards)
    for start in range(0, len(users), USER_CHUNK):
        batch = users[start : start + USER_CHUNK]
        rows = model.history[batch]
        idx, scores = top_k(model.knn.score(rows), k, rows)
        for offset, user in enumerate(batch):
            owned_idx = rows[offset].indices
            owned_w = rows[offset].data
            picks = [(int(i), float(s)) for i, s in zip(idx[offset], scores[offset], strict=True) if i >= 0 and s > 0]
            items: list[list[Any]] = []
            if picks:
                pick_idx = np.array([p[0] for p in picks])
                # contribution of each owned item to each pick; the largest one is the reason shown
                contrib = sim[owned_idx][:, pick_idx].toarray() * owned_w[:, None]
                because = owned_idx[np.argmax(contrib, axis=0)]
                items = [
                    [model.items[i], round(s, 6), model.items[b]] for (i, s), b in zip(picks, because, strict=True)
                ]
            if len(items) < k:
                taken = set(owned_idx.tolist()) | {p[0] for p in picks}
                for i in popular:
                    if len(items) == k:
                        break
                    if int(i) not in taken:
                        items.append([model.items[i], 0.0, ""])
            yield {"key": user_key(str(model.users[user])), "items": items}


def item_rows(model: TrainedModel, k: int, shard: int = 0, shards: int = 1) -> Iterator[dict[str, Any]]:
    sim = model.knn.similarity
    for item in _shard(len(model.items), shard, shards):
        start, end = sim.indptr[item], sim.indptr[item + 1]
        if start == end:
            continue
        data, cols = sim.data[start:end], sim.indices[start:end]
        order = np.argsort(-data, kind="stable")[:k]
        yield {
            "key": item_key(str(model.items[item])),
            "items": [[model.items[cols[o]], round(float(data[o]), 6)] for o in order],
        }


def answer(model: TrainedModel, request: dict[str, Any], k: int) -> Iterator[dict[str, Any]]:
    """One transform request line -> output rows. Requests: {"kind": "users"|"items", "shard", "shards"} or
    {"kind": "popular"}."""
    kind = request.get("kind")
    shard, shards = int(request.get("shard", 0)), int(request.get("shards", 1))
    if kind == "users":
        yield from user_rows(model, k, shard, shards)
    elif kind == "items":
        yield from item_rows(model, k, shard, shards)
    elif kind == "popular":
        yield popular_row(model, k)
    else:
        raise ValueError(f"unknown request kind {kind!r}: expected users, items or popular")
