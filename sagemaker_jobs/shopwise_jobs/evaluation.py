"""Offline evaluation on a temporal split: full ranking over the whole catalog, no sampled negatives."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import sparse

from shopwise_jobs.dataset import Matrix
from shopwise_jobs.models import top_k

Scorer = Callable[[sparse.csr_matrix], np.ndarray]


def evaluate(scorer: Scorer, train: Matrix, test: pd.DataFrame, k: int = 10, chunk: int = 1024) -> dict[str, float]:
    """Recall@k (hits / relevant items) and HitRate@k over test users, excluding items seen in training."""
    user_index, item_index = train.user_index(), train.item_index()
    relevant: dict[int, set[int]] = {}
    for user, item in zip(test["user_id"], test["item_id"], strict=True):
        if user in user_index and item in item_index:
            relevant.setdefault(user_index[user], set()).add(item_index[item])
    # items the user already had in training can't count as a hit
    seen = train.matrix
    users = np.array(sorted(relevant))
    recalls, hits = [], []
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        rows = seen[batch]
        idx, _ = top_k(scorer(rows), k, rows)
        for user, ranked in zip(batch, idx, strict=True):
            wanted = relevant[int(user)] - set(seen[int(user)].indices)
            if not wanted:
                continue
            got = len(wanted.intersection(int(i) for i in ranked if i >= 0))
            recalls.append(got / len(wanted))
            hits.append(1.0 if got else 0.0)
    return {
        f"recall@{k}": float(np.mean(recalls)) if recalls else 0.0,
        f"hitrate@{k}": float(np.mean(hits)) if hits else 0.0,
        "test_users": float(len(recalls)),
    }
