"""Batch scoring: top-K per user with the item that explains each pick, neighbours per item (collaborative, filled
from content for items with too few co-interactions, so a new item has neighbours), popular lists (global, per
category, per market)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from shopwise.keys import POPULAR_KEY, item_key, key_id, next_key, popular_key, user_key
from shopwise_jobs import candidates
from shopwise_jobs.artifacts import TrainedModel
from shopwise_jobs.candidates import CANDIDATES, CANDIDATES_FROM_ITEMS
from shopwise_jobs.models import top_k, top_k_per_row

USER_CHUNK = 512


def _shard(count: int, shard: int, shards: int) -> np.ndarray:
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards")
    return np.arange(shard, count, shards)


def entry(model: TrainedModel, item: str, score: float, because: str = "") -> list[Any]:
    """One stored pick: [item id, score, the item that explains it or "", the pick's category path, the explaining
    item's title] — what serving needs for filters, the diversity rule and a readable reason, with no lookup."""
    return [item, score, because, model.category(item), model.title(because) if because else ""]


def popular_row(model: TrainedModel, k: int) -> dict[str, Any]:
    top = model.popularity.top(k)
    return {
        "key": POPULAR_KEY,
        "items": [entry(model, str(model.items[i]), round(float(model.popularity.scores[i]), 6)) for i in top],
    }


# a pick's reason is sought among the shopper's strongest owned items and their closest neighbours only
REASON_OWNED = 10
REASON_NEIGHBOURS = 50


def explain(rows: sparse.csr_matrix, similarity: sparse.csr_matrix, picks: np.ndarray) -> np.ndarray:
    """For each pick (rows x k item indices, unique per row, -1 = none), the owned item with the largest
    weight x similarity to it, or -1. Vectorised: every (user, owned item, neighbour) triple is one array entry,
    looked up among the picks by its row-major position (a sorted search: the work follows the triples, never the
    catalog's width)."""
    users, k = picks.shape
    answer = np.full(users * k, -1, dtype=np.int64)
    owned = rows.tocoo()
    starts = similarity.indptr[owned.col]
    lengths = similarity.indptr[owned.col + 1] - starts
    total = int(lengths.sum())
    r, c = np.nonzero(picks >= 0)
    if total == 0 or not len(r):
        return answer.reshape(users, k)
    width = np.int64(similarity.shape[1])
    pick_keys = r.astype(np.int64) * width + picks[r, c]
    order = np.argsort(pick_keys)
    pick_keys, pick_slots = pick_keys[order], (r.astype(np.int64) * k + c)[order]
    positions = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
    user_of = np.repeat(owned.row, lengths).astype(np.int64)
    keys = user_of * width + similarity.indices[positions]
    found = np.minimum(np.searchsorted(pick_keys, keys), len(pick_keys) - 1)
    hit = pick_keys[found] == keys
    values = similarity.data[positions[hit]] * np.repeat(owned.data, lengths)[hit]
    sources = np.repeat(owned.col, lengths)[hit]
    flat = pick_slots[found[hit]]
    best = np.full(users * k, -np.inf, dtype=np.float64)
    np.maximum.at(best, flat, values)
    winner = (values == best[flat]) & (values > 0)
    answer[flat[winner]] = sources[winner]
    return answer.reshape(users, k)


def user_rows(
    model: TrainedModel, k: int, shard: int = 0, shards: int = 1, candidates_from: int = CANDIDATES_FROM_ITEMS
) -> Iterator[dict[str, Any]]:
    """The selected model's picks, padded with popular items the user doesn't own when it runs dry. The reason
    for a pick is the owned item with the largest similarity-weighted contribution to it (``explain``). From
    ``candidates_from`` items up, each part scores only its candidates (``shopwise_jobs.candidates``): the work per
    user follows the history, not the catalog."""
    popular = model.popularity.top(min(len(model.items), k * 4))
    ids = np.append(model.items, "")  # index -1 -> "" (no reason)
    closest = top_k_per_row(model.similar.similarity, REASON_NEIGHBOURS)
    users = _shard(len(model.users), shard, shards)
    for start in range(0, len(users), USER_CHUNK):
        batch = users[start : start + USER_CHUNK]
        rows = model.history[batch]
        if len(model.items) >= candidates_from:
            idx, scores = candidates.recommend(model.model, rows, k, max(CANDIDATES, 2 * k))
        else:
            idx, scores = top_k(model.model.score(rows), k, rows)
        idx[~(np.isfinite(scores) & (scores != 0))] = -1  # no evidence (or owned): popular items fill the place
        because = explain(top_k_per_row(rows, REASON_OWNED), closest, idx)
        names, reasons, values = ids[idx].tolist(), ids[because].tolist(), np.round(scores, 6).tolist()
        for offset, user in enumerate(batch):
            items = [
                entry(model, n, v, r)
                for n, v, r, i in zip(names[offset], values[offset], reasons[offset], idx[offset], strict=True)
                if i >= 0
            ]
            if len(items) < k:
                taken = set(rows[offset].indices.tolist()) | set(idx[offset][idx[offset] >= 0].tolist())
                for i in popular:
                    if len(items) == k:
                        break
                    if int(i) not in taken:
                        items.append(entry(model, str(model.items[i]), 0.0))
            yield {"key": user_key(str(model.users[user])), "items": items}


def _neighbours(matrix: Any, item: int) -> list[tuple[int, float]]:
    start, end = matrix.indptr[item], matrix.indptr[item + 1]
    data, cols = matrix.data[start:end], matrix.indices[start:end]
    order = np.argsort(-data, kind="stable")
    return [(int(cols[o]), float(data[o])) for o in order if data[o] > 0]


def item_rows(model: TrainedModel, k: int, shard: int = 0, shards: int = 1) -> Iterator[dict[str, Any]]:
    """Collaborative neighbours first; content neighbours (scored below every collaborative one) fill the rest."""
    for item in _shard(len(model.items), shard, shards):
        picks = _neighbours(model.similar.similarity, int(item))[:k]
        if len(picks) < k and model.content is not None:
            taken = {i for i, _ in picks} | {int(item)}
            floor = min((s for _, s in picks), default=1.0)
            extra = [
                (i, s * floor * 0.5) for i, s in _neighbours(model.content.similarity, int(item)) if i not in taken
            ]
            picks += extra[: k - len(picks)]
        if picks:
            subject = str(model.items[item])
            yield {
                "key": item_key(subject),
                "items": [entry(model, model.items[i], round(s, 6), subject) for i, s in picks],
            }


def next_rows(model: TrainedModel, k: int, shard: int = 0, shards: int = 1) -> Iterator[dict[str, Any]]:
    """Per item, what shoppers viewed, carted or bought next in the same session: the real-time candidates for a
    shopper (anonymous ones above all) who just looked at it."""
    for item in _shard(len(model.items), shard, shards):
        picks = _neighbours(model.next_items.rules, int(item))[:k]
        if picks:
            subject = str(model.items[item])
            yield {
                "key": next_key(subject),
                "items": [entry(model, model.items[i], round(s, 6), subject) for i, s in picks],
            }


def segment_rows(model: TrainedModel, k: int) -> Iterator[dict[str, Any]]:
    for segment, items in model.segments.items():
        yield {"key": popular_key(segment), "items": [entry(model, str(i), float(v)) for i, v, *_ in items[:k]]}


def answer(model: TrainedModel, request: dict[str, Any], k: int) -> Iterator[dict[str, Any]]:
    """One transform request line -> output rows. Requests: {"kind": "users"|"items", "shard", "shards"} or
    {"kind": "popular"}."""
    kind = request.get("kind")
    shard, shards = int(request.get("shard", 0)), int(request.get("shards", 1))
    if kind == "users":
        yield from user_rows(model, k, shard, shards)
    elif kind == "items":
        yield from item_rows(model, k, shard, shards)
        yield from next_rows(model, k, shard, shards)
    elif kind == "popular":
        yield popular_row(model, k)
        yield from segment_rows(model, k)
    else:
        raise ValueError(f"unknown request kind {kind!r}: expected users, items or popular")


def write_user_lists(model_dir: Path, k: int, out: Path, progress: bool = False) -> int:
    """``shopwise batch-recommend``: one line per user known to the model, best first:
    {"user_id": ..., "items": [{"item_id": ..., "score": ..., "because": ...}, ...]}."""
    from tqdm import tqdm

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    model = TrainedModel.load(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("w") as handle, tqdm(total=len(model.users), unit="user", disable=not progress) as bar:
        for row in user_rows(model, k):
            items = [{"item_id": i, "score": s, **({"because": b} if b else {})} for i, s, b, *_ in row["items"]]
            handle.write(json.dumps({"user_id": key_id(row["key"]), "items": items}, separators=(",", ":")) + "\n")
            written += 1
            bar.update()
    return written
