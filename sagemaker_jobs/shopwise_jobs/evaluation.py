"""Offline evaluation: full ranking over every item of the catalog, no sampled negatives (from
``CANDIDATES_FROM_ITEMS`` items a scorer may hand over its rankings already cut, as ``Ranked``: scored over every
part's candidates, ``shopwise_jobs.candidates``, instead of catalog-wide rows).

For each test user the model ranks all items; items the user already had in training are excluded, and the
relevant set is the user's test items not seen in training. Ties, and users with no history at all, fall back to
training popularity (as serving does), with a weight too small to reorder anything the model did score.

Metrics at each K (default 5, 10, 20, 50):
- ``recall@K`` = hits / min(K, |relevant|) (Steck 2019; 1.0 is reachable at every K);
- ``ndcg@K`` binary-relevance DCG over the ideal DCG of min(K, |relevant|) hits;
- ``hitrate@K``: share of users with at least one hit; ``mrr``: 1 / rank of the first hit within the largest K;
- ``coverage@K``: share of the catalog that appears in somebody's top K;
- ``popularity@K``: mean training-popularity percentile of recommended items (1.0 = only the most popular);
- ``revenue_hitrate@K``: price of the hit items over price of the relevant items, where prices are known;
- slices: ``cold_users/...`` (users with at most ``cold_threshold`` training items, none included) and
  ``cold_items/recall@K`` (relevant items with at most ``cold_threshold`` training users);
- ``se/<metric>``: the standard error of NDCG, Recall and MRR over users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from shopwise_jobs.dataset import Matrix
from shopwise_jobs.models import top_k

KS: tuple[int, ...] = (5, 10, 20, 50)


@dataclass(frozen=True)
class Ranked:
    """A block of users' rankings already cut, by scoring over candidates (``shopwise_jobs.candidates``): users x K
    item indices best first and their scores (-1 / -inf where a user has fewer). Evaluation keeps the picks with a
    positive score and fills the rest with the most popular items the user has not had — where the dense ranking's
    popularity tiebreak puts them."""

    top: np.ndarray
    scores: np.ndarray


# a block of users (indices into the training matrix) -> their scores, users x items; or their rankings, cut
Scorer = Callable[[np.ndarray], np.ndarray | Ranked]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    ks: tuple[int, ...]
    users: int
    skipped_users: int  # test users the matrix has no row for (the caller left them out)
    slices: dict[str, int] = field(default_factory=dict)

    def curve(self, metric: str) -> list[float]:
        return [self.metrics[f"{metric}@{k}"] for k in self.ks]


def popularity_tiebreak(matrix: sparse.csr_matrix) -> np.ndarray:
    """Per item, training popularity scaled to at most 1e-6: added to every score, it orders ties (and the items a
    model gives nothing) by popularity without reordering anything the model did score."""
    popularity = np.asarray(matrix.sum(axis=0)).ravel()
    return (popularity / max(float(popularity.max(initial=0.0)), 1e-9) * 1e-6).astype(np.float32)


def relevance(train: Matrix, test: pd.DataFrame) -> sparse.csr_matrix:
    """users x items: 1 where a test interaction names an item the user did not have in training."""
    u = pd.Index(train.users).get_indexer(test["user_id"].astype(str))
    i = pd.Index(train.items).get_indexer(test["item_id"].astype(str))
    keep = (u >= 0) & (i >= 0)
    rel = sparse.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (u[keep], i[keep])), shape=train.matrix.shape)
    rel.sum_duplicates()
    rel.data[:] = 1.0
    seen = train.matrix.copy()
    seen.data[:] = 1.0
    rel = (rel - rel.multiply(seen)).tocsr()
    rel.eliminate_zeros()
    return rel


def evaluate(
    scorer: Scorer,
    train: Matrix,
    test: pd.DataFrame,
    ks: Sequence[int] = KS,
    prices: dict[str, float] | None = None,
    cold_threshold: int = 5,
    chunk: int = 1024,
) -> Evaluation:
    ks = tuple(sorted(set(ks)))
    k_max = ks[-1]
    rel = relevance(train, test)
    known_users = pd.Index(train.users).get_indexer(test["user_id"].astype(str).unique())
    skipped = int((known_users < 0).sum())
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    n_items = train.matrix.shape[1]

    seen = train.matrix
    support = np.asarray((seen > 0).sum(axis=0)).ravel()
    history = np.diff(seen.indptr)
    popularity = np.asarray(seen.sum(axis=0)).ravel()
    tiebreak = popularity_tiebreak(seen)
    by_popularity = np.argsort(-popularity, kind="stable")
    percentile = pd.Series(popularity).rank(pct=True).to_numpy()
    price = np.full(n_items, np.nan)
    if prices:
        price = pd.Series(prices).reindex(train.items).to_numpy(dtype=np.float64)
    cold_item = support <= cold_threshold
    discount = 1.0 / np.log2(np.arange(2, k_max + 2))
    # the ideal DCG for a user with n relevant items, at each k (n above k: k's)
    ideal_at = {k: np.array([discount[: min(k, n)].sum() for n in range(k + 1)]) for k in ks}
    # the relevant items looked up at each user's top k (their keys, row x items + column, sorted), never in rows as
    # wide as the catalog (a chunk of 1,024 users is 1 GB a dense row copy at a million items); a row's relevant
    # items' count, cold items' count and prices summed, once
    rel.sort_indices()
    rel_rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    rel_keys = rel_rows * n_items + rel.indices
    rel_count = np.diff(rel.indptr)
    rel_cold = np.bincount(rel_rows, weights=cold_item[rel.indices], minlength=rel.shape[0]).astype(np.int64)
    rel_price = np.bincount(rel_rows, weights=np.nan_to_num(price[rel.indices]), minlength=rel.shape[0])

    sums: dict[str, float] = {}
    squares: dict[str, float] = {}
    counts: dict[str, int] = {}
    recommended = {k: np.zeros(n_items, dtype=bool) for k in ks}
    revenue_hit = dict.fromkeys(ks, 0.0)
    revenue_relevant = 0.0

    def add(name: str, values: np.ndarray) -> None:
        if not len(values):
            return
        sums[name] = sums.get(name, 0.0) + float(values.sum())
        squares[name] = squares.get(name, 0.0) + float(np.square(values).sum())
        counts[name] = counts.get(name, 0) + len(values)

    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        rows = seen[batch]
        scores = scorer(batch)
        if isinstance(scores, Ranked):
            top = fill_popular(scores, rows, by_popularity, k_max)
        else:
            scores = np.where(np.isfinite(scores), scores, 0.0).astype(np.float32) + tiebreak
            top, _ = top_k(scores, k_max, rows)
        if top.shape[1] < k_max:  # a catalog smaller than K: the missing places are empty
            top = np.pad(top, ((0, 0), (0, k_max - top.shape[1])), constant_values=-1)
        valid = top >= 0
        safe = np.where(valid, top, 0)
        wanted = batch.astype(np.int64)[:, None] * n_items + safe
        at = np.minimum(np.searchsorted(rel_keys, wanted), max(len(rel_keys) - 1, 0))
        hit = (rel_keys[at] == wanted) & valid if len(rel_keys) else np.zeros_like(valid)
        n_rel = rel_count[batch]
        cold_user = history[batch] <= cold_threshold
        first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, np.inf)
        add("mrr", 1.0 / first)
        add("cold_users/mrr", (1.0 / first)[cold_user])
        revenue_relevant += float(rel_price[batch].sum())
        n_cold = rel_cold[batch]
        has_cold = n_cold > 0
        for k in ks:
            h = hit[:, :k]
            hits = h.sum(axis=1)
            ideal = ideal_at[k][np.minimum(n_rel, k)]
            ndcg = (h * discount[:k]).sum(axis=1) / ideal
            recall = hits / np.minimum(n_rel, k)
            hitrate = (hits > 0).astype(np.float64)
            for prefix, mask in (("", slice(None)), ("cold_users/", cold_user)):
                add(f"{prefix}recall@{k}", recall[mask])
                add(f"{prefix}ndcg@{k}", ndcg[mask])
                add(f"{prefix}hitrate@{k}", hitrate[mask])
            recommended[k][top[:, :k][valid[:, :k]]] = True
            add(f"popularity@{k}", percentile[safe[:, :k]][valid[:, :k]])
            revenue_hit[k] += float(np.where(h, np.nan_to_num(price[safe[:, :k]]), 0.0).sum())
            cold_hits = (h & cold_item[safe[:, :k]]).sum(axis=1)
            add(f"cold_items/recall@{k}", cold_hits[has_cold] / np.minimum(n_cold[has_cold], k))

    # a slice with no users has no metric (absent, not zero)
    metrics = {name: sums[name] / counts[name] for name in sums}
    # standard errors of the user-averaged metrics: differences within about two of them are noise
    for name in [n for n in sums if "/" not in n and n.startswith(("ndcg@", "recall@", "mrr"))]:
        mean, n = metrics[name], counts[name]
        variance = max(squares[name] / n - mean * mean, 0.0)
        metrics[f"se/{name}"] = (variance / max(n - 1, 1)) ** 0.5
    if revenue_relevant > 0:
        for k in ks:
            metrics[f"revenue_hitrate@{k}"] = revenue_hit[k] / revenue_relevant
    for k in ks:
        metrics[f"coverage@{k}"] = float(recommended[k].sum()) / max(n_items, 1)
    cold_users = int((history[users] <= cold_threshold).sum())
    cold_item_users = int(((rel[users].multiply(cold_item[None, :].astype(np.float32))).sum(axis=1) > 0).sum())
    return Evaluation(
        metrics=dict(sorted(metrics.items())),
        ks=ks,
        users=len(users),
        skipped_users=skipped,
        slices={"cold_users": cold_users, "cold_item_users": cold_item_users},
    )


def fill_popular(ranked: Ranked, rows: sparse.csr_matrix, by_popularity: np.ndarray, k: int) -> np.ndarray:
    """users x k: each user's picks with a positive score, then the most popular items they neither own nor were
    given, -1 past the catalog."""
    users = ranked.top.shape[0]
    top = np.full((users, k), -1, dtype=np.int64)
    width = min(k, ranked.top.shape[1])
    keep = (ranked.top[:, :width] >= 0) & np.isfinite(ranked.scores[:, :width]) & (ranked.scores[:, :width] > 0)
    for r in range(users):
        picks = ranked.top[r, :width][keep[r]]
        top[r, : len(picks)] = picks
        missing = k - len(picks)
        if missing:
            have = set(picks.tolist()) | set(rows.indices[rows.indptr[r] : rows.indptr[r + 1]].tolist())
            fill = [int(i) for i in by_popularity[: len(have) + missing] if int(i) not in have][:missing]
            top[r, len(picks) : len(picks) + len(fill)] = fill
    return top
