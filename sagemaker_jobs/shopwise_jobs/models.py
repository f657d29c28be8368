"""Models: windowed popularity and item-item collaborative filtering (cosine with shrinkage, top-k neighbours)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass
class Popularity:
    """Item scores from interaction strength; the same list for everyone."""

    scores: np.ndarray  # per item index

    @classmethod
    def fit(cls, matrix: sparse.csr_matrix) -> Popularity:
        return cls(scores=np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32))

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.scores, (user_rows.shape[0], len(self.scores))).copy()

    def top(self, k: int) -> np.ndarray:
        k = min(k, len(self.scores))
        top = np.argpartition(-self.scores, k - 1)[:k]
        return top[np.argsort(-self.scores[top], kind="stable")]


@dataclass
class ItemKNN:
    """similarity[i, j]: cosine of items i and j over users, shrunk by co-occurrence support, top-k per row."""

    similarity: sparse.csr_matrix

    @classmethod
    def fit(cls, matrix: sparse.csr_matrix, neighbours: int = 100, shrinkage: float = 10.0) -> ItemKNN:
        binary = matrix.copy()
        binary.data = np.ones_like(binary.data)
        cooc = (binary.T @ binary).tocsr().astype(np.float32)
        counts = cooc.diagonal().astype(np.float32)
        cooc.setdiag(0)
        cooc.eliminate_zeros()
        coo = cooc.tocoo()
        norms = np.sqrt(counts)
        cosine = coo.data / (norms[coo.row] * norms[coo.col] + 1e-9)
        # shrink similarities supported by few shared users towards zero
        values = cosine * coo.data / (coo.data + shrinkage)
        shrunk = sparse.csr_matrix((values, (coo.row, coo.col)), shape=cooc.shape)
        return cls(similarity=_top_k_per_row(shrunk, neighbours))

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        # scores = history x similarity: items close to many of the user's items come first
        return np.asarray((user_rows @ self.similarity).todense(), dtype=np.float32)


def _top_k_per_row(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        if start == end:
            continue
        data = matrix.data[start:end]
        idx = matrix.indices[start:end]
        if len(data) > k:
            keep = np.argpartition(-data, k - 1)[:k]
            data, idx = data[keep], idx[keep]
        rows.append(np.full(len(data), r))
        cols.append(idx)
        vals.append(data)
    if not rows:
        return sparse.csr_matrix(matrix.shape, dtype=np.float32)
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=matrix.shape,
        dtype=np.float32,
    )


def top_k(scores: np.ndarray, k: int, seen: sparse.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best k item indices and scores per row, excluding seen items. Rows with fewer candidates pad with -1."""
    scores = scores.copy()
    if seen is not None:
        coo = seen.tocoo()
        scores[coo.row, coo.col] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    best = np.take_along_axis(part_scores, order, axis=1)
    idx[~np.isfinite(best)] = -1
    return idx, best
