"""The models. Each one scores a block of users' history rows against every item (full ranking, no sampling):

- ``Popularity``: windowed interaction strength, the same list for everyone (and per category / market lists);
- ``ItemKNN``: item-item cosine over users, shrunk by co-occurrence support, top-k neighbours per item;
- ``EASE``: the closed-form linear item-item model of Steck (2019), for catalogs up to ``EASE_MAX_ITEMS``;
- ``IALS``: implicit alternating least squares (Hu, Koren & Volinsky 2008; fitted by ``implicit``'s compiled
  solver), for catalogs beyond that;
- ``SequentialRules``: next-item rules from ordered sessions, for anonymous shoppers with a few clicks;
- ``ContentKNN``: TF-IDF over item attributes (category path, brand, price band, title tokens), so a new item has
  neighbours, and can be recommended, from day one (from ``CONTENT_ANN_FROM_ITEMS`` items, from an index).

A history row is a users x items CSR row of interaction strength (kind weight x time decay, ``dataset.py``).
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy import linalg, sparse

from shopwise.catalog import categories
from shopwise_jobs.ids import codes_in, weights_of

T = TypeVar("T")
S = TypeVar("S")

# EASE inverts an items x items Gram matrix: 4 bytes x n^2 twice over (Gram + Cholesky in place) and O(n^3) time.
# 20,000 items = 1.6 GB and about 2 minutes on 2 cores; beyond it the training job switches to iALS.
EASE_MAX_ITEMS = 20_000
# content similarity is computed in dense blocks of this many cells (64 MB of float32), then cut to top k
DENSE_BLOCK_CELLS = 1 << 24
# from this many items, content neighbours come from an approximate nearest-neighbour index (``content_neighbours``):
# the dense blocks are items^2 cells, the index about n log n. bench_fit.py --content on the simulator's catalogs:
# 135 s dense against 93 s from the index at 100,000 items (25 against 29 at 40,000), growing ^1.8 against ^1.1
CONTENT_ANN_FROM_ITEMS = int(os.environ.get("SHOPWISE_CONTENT_ANN_FROM_ITEMS", "100000"))
# the index's vectors: a random projection of the TF-IDF rows to this many dimensions (every token keeps its weight,
# inner products kept to about 1/sqrt(d)); each item's ANN_POOL x k nearest are re-scored exactly from the TF-IDF rows
# (pool 4: 90% of the neighbours as close as the exact k-th at 100,000 items; pool 8: 95%, at 1.8x the time:
# bench_fit.py --content 100000 --pool 4)
ANN_DIMENSIONS = 256
ANN_POOL = 8
ANN_QUERY_CHUNK = 10_000  # items searched and re-scored at a time: their 4 M candidate pairs, about 1 GB
# item-kNN's co-occurrences are computed in sparse blocks of about this many item pairs (~200 MB in COO form)
SPARSE_BLOCK_PAIRS = 1 << 24
# and at least this many blocks a fit thread, so the threads finish together
BLOCKS_PER_THREAD = 4
# item-kNN counts each shopper's co-occurrences over their most recent this many distinct items: its work is the sum
# of the history lengths squared, which the longest histories drive (make scale: ^1.24 in events, 11.5 of the 14.2
# hours of the served fit at the envelope); capped, it is at most shoppers x 200^2. Recent items also pair better:
# item-kNN alone on the model benchmark's splits (k 100, shrinkage 10; tests/bench/bench_training.py --parts itemknn),
# capped at 200 against every item: ML-100K
# NDCG@10 0.1020 / 0.1015, Recall@20 0.1869 / 0.1771; ml-latest-small 0.0486 / 0.0433, 0.1049 / 0.0915 (pairs 1.7x
# and 7.3x fewer). 0: no cap
ITEMKNN_HISTORY = int(os.environ.get("SHOPWISE_ITEMKNN_HISTORY", "200"))
# threads for the fits whose work shopwise splits itself (item-kNN's blocks), and processes for iALS's half-steps
# (shopwise_jobs.als); the content index uses faiss's own, every core
FIT_THREADS = int(os.environ.get("SHOPWISE_FIT_THREADS", "0")) or os.cpu_count() or 1
# the served fit's column work over every event (the sessions and their next-item rules, the segment lists) runs in
# chunks of at most this many rows, at least a chunk a thread: its memory is the chunks in flight, not the events'
# (whole, the next-item rules' pairs were 130 bytes an event: 340 GB at the envelope's 2.6 B)
FIT_CHUNK_ROWS = int(os.environ.get("SHOPWISE_FIT_CHUNK_ROWS", str(1 << 22)))


def chunk_bounds(total: int, limit: int | None = None) -> list[tuple[int, int]]:
    """[start, end) ranges over ``total`` rows: at most ``limit`` (FIT_CHUNK_ROWS) each, at least one a thread."""
    size = max(1, min(limit or FIT_CHUNK_ROWS, -(-total // FIT_THREADS)))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def summed_in_threads(
    work: Sequence[T],
    part: Callable[[T], S],
    zero: S,
    add: Callable[[S, S], S] = operator.add,
    pool: ThreadPoolExecutor | None = None,
) -> S:
    """``zero`` plus the sum (``add``) of ``part(w)`` over the work, FIT_THREADS parts at a time (scipy's sparse
    kernels and NumPy's sorts and bincounts release the GIL). Parts are added pairwise as they arrive, like a binary
    counter: each entry is added about log2(parts) times, not once for every part after it, and at most that many
    sums wait at once. The adds run in the calling thread (``add`` may itself hand work to ``pool``, the pool the
    parts run on: its own, if not given)."""
    waiting: list[tuple[int, S]] = []  # (level, a sum of 2^level parts)
    own = pool is None
    threads = pool or ThreadPoolExecutor(FIT_THREADS)
    try:
        for start in range(0, len(work), FIT_THREADS):
            for total in threads.map(part, work[start : start + FIT_THREADS]):
                level = 0
                while waiting and waiting[-1][0] == level:
                    total = add(waiting.pop()[1], total)
                    level += 1
                waiting.append((level, total))
    finally:
        if own:
            threads.shutdown()
    out = zero
    for _level, total in waiting:
        out = add(out, total)
    return out


def summed_matrices(
    work: Sequence[T], part: Callable[[T], sparse.csr_matrix], shape: tuple[int, int]
) -> sparse.csr_matrix:
    """``summed_in_threads`` of sparse matrices of ``shape``, duplicates summed — held as blocks of rows: each part
    cuts its matrix into the blocks on its own thread, a sum adds block to block, a block a task on the parts'
    threads, and the blocks are stacked once at the end. The same matrix as summed whole. Whole, every sum ran on
    the calling thread while the parts waited: with the 650 chunks of the envelope's next-item rules each entry is
    added about log2(650) times in the binary counter, and that serial work grows with the events where these 2
    cores, with 2 chunks, add once (forced into 85 chunks on the 300,000-shopper store, the rules' parallel share
    fell from 0.81 to 0.48)."""
    cuts = np.unique(np.linspace(0, shape[0], FIT_THREADS * BLOCKS_PER_THREAD + 1).astype(np.int64))
    spans = list(itertools.pairwise(cuts))
    if not spans:  # no rows: nothing to sum
        return sparse.csr_matrix(shape, dtype=np.float64)

    def blocked(w: T) -> list[sparse.csr_matrix]:
        matrix = part(w).tocsr()
        matrix.sum_duplicates()
        return [matrix[a:b] for a, b in spans]

    with ThreadPoolExecutor(FIT_THREADS) as pool:

        def add(x: list[sparse.csr_matrix], y: list[sparse.csr_matrix]) -> list[sparse.csr_matrix]:
            return list(pool.map(lambda i: x[i] + y[i], range(len(spans))))

        zero = [sparse.csr_matrix((b - a, shape[1]), dtype=np.float64) for a, b in spans]
        blocks = summed_in_threads(work, blocked, zero, add, pool)
    out = sparse.vstack(blocks, format="csr")
    out.sum_duplicates()
    return out


def summed_spans(
    n: int,
    triples: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    shape: tuple[int, int],
    dtype: Any,
) -> sparse.csr_matrix:
    """``csr_matrix((values, (rows, cols)), shape)`` with its duplicates summed, of the triples ``triples(a, b)``
    makes of rows [a, b) of ``n``, built on FIT_THREADS threads where scipy's conversion and ``sum_duplicates`` ran
    on one core (the interaction matrix over every event: 0.22 h of the served fit at the envelope, make scale).
    Each span's triples are made on the thread that turns them into a matrix of its own — what makes them (a mask,
    a time decay over every event) runs on every core, not before on one; then each block of rows is the sum of
    those matrices' rows there, a block a thread, and the blocks are stacked. Summed in float64 whatever the split
    (the same matrix on any number of cores), returned in ``dtype``."""
    spans = [(a, b) for a, b in chunk_bounds(n, max(-(-n // FIT_THREADS), 1)) if b > a] or [(0, 0)]

    def part(span: tuple[int, int]) -> sparse.csr_matrix:
        rows, cols, values = triples(*span)
        matrix = sparse.csr_matrix((values.astype(np.float64), (rows, cols)), shape=shape)
        matrix.sum_duplicates()
        return matrix

    with ThreadPoolExecutor(FIT_THREADS) as pool:
        parts = list(pool.map(part, spans))
        if len(parts) > 1:
            cuts = np.unique(np.linspace(0, shape[0], FIT_THREADS * BLOCKS_PER_THREAD + 1).astype(np.int64))

            def block(span: tuple[int, int]) -> sparse.csr_matrix:
                total = parts[0][span[0] : span[1]]
                for other in parts[1:]:
                    total = total + other[span[0] : span[1]]
                return total

            blocks = list(pool.map(block, itertools.pairwise(cuts)))
            parts = [sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix(shape, dtype=np.float64)]
    return parts[0].astype(dtype)


@dataclass
class Popularity:
    """Item scores from interaction strength; the same list for everyone."""

    scores: np.ndarray  # per item index

    @classmethod
    def fit(cls, matrix: sparse.csr_matrix) -> Popularity:
        return cls(scores=np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32))

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.scores, (user_rows.shape[0], len(self.scores))).copy()

    def top(self, k: int, among: np.ndarray | None = None) -> np.ndarray:
        """Best k item indices, optionally only among the given indices."""
        pool = np.arange(len(self.scores)) if among is None else np.asarray(among)
        return best(self.scores[pool], pool, k)


def best(values: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """The k entries of ``pool`` with the largest ``values`` (aligned with it), best first."""
    k = min(k, len(pool))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-values, k - 1)[:k]
    return pool[top[np.argsort(-values[top], kind="stable")]]


def windowed_popularity(
    interactions: pd.DataFrame, items: np.ndarray, weights: dict[str, float], window_days: float
) -> Popularity:
    """Strength in the last ``window_days``; all-time strength (x 1e-3) breaks ties and ranks items quiet lately."""
    if interactions.empty:
        return Popularity(scores=np.zeros(len(items), dtype=np.float32))
    return CodedInteractions.of(interactions, items, weights).popularity(None, window_days)


@dataclass(frozen=True)
class CodedInteractions:
    """Interactions as the arrays popularity counts: item index (-1: not among the items), kind weight, time. Coded
    once, a segment's popularity is a ``bincount`` over its rows' positions: the bestsellers of every category,
    market and referrer re-coded each segment's item ids from strings, three times the events over."""

    codes: np.ndarray
    weights: np.ndarray
    ts: np.ndarray
    n_items: int

    @classmethod
    def of(cls, interactions: pd.DataFrame, items: np.ndarray, weights: dict[str, float]) -> CodedInteractions:
        return cls(
            codes=codes_in(interactions["item_id"], items),
            weights=weights_of(interactions["kind"], weights),
            ts=interactions["ts"].to_numpy(dtype=np.float64),
            n_items=len(items),
        )

    def popularity(self, at: np.ndarray | None, window_days: float) -> Popularity:
        """``windowed_popularity`` of the rows at positions ``at`` (None: every row; its window ends at their
        newest)."""
        codes, w, ts = (
            (self.codes, self.weights, self.ts) if at is None else (self.codes[at], self.weights[at], self.ts[at])
        )
        if len(codes) == 0:
            return Popularity(scores=np.zeros(self.n_items, dtype=np.float32))
        since = ts.max() - window_days * 86400.0

        def counted(span: tuple[int, int]) -> np.ndarray:  # [every row's, the window's] weights by item
            c, weight = codes[span[0] : span[1]], w[span[0] : span[1]]
            known = c >= 0
            recent = known & (ts[span[0] : span[1]] >= since)
            return np.stack([
                np.bincount(c[known], weights=weight[known], minlength=self.n_items),
                np.bincount(c[recent], weights=weight[recent], minlength=self.n_items),
            ])  # fmt: skip

        # in chunks of rows on threads: what a chunk holds (its masks and the rows they pick, ~40 bytes a row) is
        # bounded by the chunk, where the whole column's was 100 GB at the envelope's 2.6 B events
        total = summed_in_threads(chunk_bounds(len(codes)), counted, np.zeros((2, self.n_items)))
        return Popularity(scores=(total[0] * 1e-3 + total[1]).astype(np.float32))


@dataclass
class ItemKNN:
    """similarity[i, j]: cosine of items i and j over users, shrunk by co-occurrence support, top-k per row."""

    similarity: sparse.csr_matrix

    @classmethod
    def fit(cls, matrix: sparse.csr_matrix, neighbours: int = 100, shrinkage: float = 10.0) -> ItemKNN:
        binary = matrix.tocsr().astype(np.float32)
        binary.data = np.ones_like(binary.data)
        by_item = binary.T.tocsr()
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel()).astype(np.float32)
        n = matrix.shape[1]
        # co-occurrence in sparse blocks of items, cut to the top k per row before the next block: the memory is
        # the blocks' pairs (at most SPARSE_BLOCK_PAIRS products each, FIT_THREADS blocks at a time), the result
        # n x k; the work is the pairs that co-occur at all (the sum over users of their history length squared),
        # never n x n. scipy's sparse product releases the GIL: the blocks run on every core
        pairs = by_item @ np.asarray(binary.sum(axis=1)).ravel()  # products each item's row takes

        def block(span: tuple[int, int]) -> sparse.csr_matrix:
            start, end = span
            # the product is a csr matrix already: its rows' columns sorted in place, and the diagonal dropped from
            # its arrays (through coo and back, the pairs were sorted again: a third of the block's time)
            cooc = by_item[start:end] @ binary
            cooc.sort_indices()
            rows = np.repeat(np.arange(end - start), np.diff(cooc.indptr))
            other = cooc.indices != rows + start  # not its own neighbour
            rows, cols, shared = rows[other], cooc.indices[other], cooc.data[other]
            cosine = shared / (norms[rows + start] * norms[cols] + 1e-9)
            # shrink similarities supported by few shared users towards zero
            values = (cosine * shared / (shared + shrinkage)).astype(np.float32)
            indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=end - start))])
            return top_k_per_row(sparse.csr_matrix((values, cols, indptr), shape=(end - start, n)), neighbours)

        # at least BLOCKS_PER_THREAD blocks a thread, so a store whose pairs fit one block still uses every core, and
        # no thread waits on another's last block (3 blocks on 2 threads: two thirds of the work on one of them)
        budget = min(float(SPARSE_BLOCK_PAIRS), max(float(pairs.sum()) / (FIT_THREADS * BLOCKS_PER_THREAD), 1.0))
        with ThreadPoolExecutor(FIT_THREADS) as pool:
            blocks = list(pool.map(block, _blocks(pairs, budget)))
        similarity = sparse.vstack(blocks).tocsr() if blocks else sparse.csr_matrix((n, n), dtype=np.float32)
        return cls(similarity=similarity)

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        # scores = history x similarity: items close to many of the user's items come first
        return np.asarray((user_rows @ self.similarity).todense(), dtype=np.float32)


@dataclass
class EASE:
    """Embarrassingly shallow autoencoder: B = argmin ||X - XB||^2 + l2 ||B||^2, diag(B) = 0, in closed form.

    Items with fewer than ``min_support`` users are left out of B (they would get a near-zero column anyway), which
    shrinks the O(n^3) inverse; ``kept`` maps B's rows and columns to item indices.
    """

    weights: np.ndarray  # len(kept) x len(kept), float32
    kept: np.ndarray  # item indices
    n_items: int

    @classmethod
    def fit(cls, matrix: sparse.csr_matrix, l2: float = 500.0, min_support: int = 2) -> EASE:
        support = np.asarray((matrix > 0).sum(axis=0)).ravel()
        kept = np.flatnonzero(support >= min_support)
        if len(kept) > EASE_MAX_ITEMS:
            raise ValueError(
                f"EASE needs an items x items inverse: {len(kept)} items is above EASE_MAX_ITEMS={EASE_MAX_ITEMS}; "
                "use IALS"
            )
        x = matrix[:, kept].astype(np.float32)
        gram = np.asarray((x.T @ x).todense(), dtype=np.float32)
        gram[np.diag_indices_from(gram)] += l2
        # Cholesky inverse of the (positive definite) regularised Gram matrix, in place, lower triangle
        factor, info = linalg.lapack.spotrf(gram, lower=1, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: Gram matrix is not positive definite (potrf info {info})")
        inverse, info = linalg.lapack.spotri(factor, lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: inverse failed (potri info {info})")
        inverse = np.tril(inverse) + np.tril(inverse, -1).T
        weights = inverse / (-np.diag(inverse))[None, :]
        weights[np.diag_indices_from(weights)] = 0.0
        return cls(weights=weights.astype(np.float32), kept=kept, n_items=matrix.shape[1])

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        out = np.zeros((user_rows.shape[0], self.n_items), dtype=np.float32)
        out[:, self.kept] = user_rows[:, self.kept] @ self.weights
        return out


@dataclass
class IALS:
    """Implicit ALS: confidence 1 + alpha x strength on observed pairs, 1 on the rest.

    Fitted by ``implicit``'s compiled solver (conjugate-gradient steps, every core: from ``als.PROCESSES_FROM_ENTRIES``
    its steps on blocks of rows in ``FIT_THREADS`` processes, ``shopwise_jobs.als``; its GPU build on a GPU instance),
    given the confidences themselves: implicit weighs an observed pair by the value it is given, so passing
    1 + alpha x strength makes its model exactly this one. Scoring a user solves for the user's factors from the
    history row (the fold-in step of ALS, exact), so a history that changed after training, or a user the model
    never saw, is scored the same way as a training user.
    """

    item_factors: np.ndarray  # items x factors
    alpha: float
    regularization: float

    @classmethod
    def fit(
        cls,
        matrix: sparse.csr_matrix,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 12,
        seed: int = 0,
    ) -> IALS:
        import implicit.gpu
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        from shopwise_jobs import als

        confidence = matrix.tocsr().astype(np.float32, copy=True)
        confidence.data = 1.0 + alpha * confidence.data
        if not implicit.gpu.HAS_CUDA and als.in_processes(confidence.nnz, FIT_THREADS):
            # implicit's own step on blocks of rows in processes: on threads every row's solve waits on OpenBLAS's
            # allocator lock (shopwise_jobs.als); the same factors
            factors_of = als.fit_factors(confidence, factors, regularization, iterations, seed, FIT_THREADS)
            return cls(item_factors=factors_of, alpha=alpha, regularization=regularization)
        # implicit parallelises over rows itself: BLAS threads inside would only contend with its own
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=factors,
                regularization=regularization,
                alpha=1.0,  # the confidences above already carry alpha
                iterations=iterations,
                random_state=seed,
                use_gpu=implicit.gpu.HAS_CUDA,
            )
            model.fit(confidence, show_progress=False)
        item_factors = model.item_factors
        if hasattr(item_factors, "to_numpy"):  # the GPU model's factors live on the device
            item_factors = item_factors.to_numpy()
        return cls(item_factors=np.asarray(item_factors, dtype=np.float32), alpha=alpha, regularization=regularization)

    def user_factors(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        """The fold-in: each row's exact least-squares factors with the items fixed (``_als_sweep``'s equations),
        solved by ``implicit``'s compiled Cholesky solver, one thread (the transform runs a worker per vCPU).
        ``tests/bench/bench_transform.py --models ials``: the transform 9,700 users/s a core, 7,600 with the Python
        loop it replaced (the fold-in and top-K floor alone: 25,800 against 12,100)."""
        from implicit.cpu.als import AlternatingLeastSquares

        confidence = user_rows.tocsr().astype(np.float32, copy=True)
        confidence.data = 1.0 + self.alpha * confidence.data
        solver = AlternatingLeastSquares(
            factors=self.item_factors.shape[1],
            regularization=self.regularization,
            alpha=1.0,
            dtype=np.float32,
            num_threads=1,
        )
        solver.item_factors = np.ascontiguousarray(self.item_factors, dtype=np.float32)
        return np.asarray(solver.recalculate_user(np.arange(confidence.shape[0]), confidence), dtype=np.float32)

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        return self.user_factors(user_rows) @ self.item_factors.T


def _als_sweep(rows: sparse.csr_matrix, fixed: np.ndarray, alpha: float, regularization: float) -> np.ndarray:
    """Solve every row's factors with the other side fixed: (YtY + Yu^T (Cu - I) Yu + reg I) x = Yu^T Cu 1."""
    factors = fixed.shape[1]
    gram = fixed.T @ fixed + regularization * np.eye(factors)
    out = np.zeros((rows.shape[0], factors))
    for r in range(rows.shape[0]):
        start, end = rows.indptr[r], rows.indptr[r + 1]
        if start == end:
            continue
        cols = rows.indices[start:end]
        confidence = alpha * rows.data[start:end]  # C_u - I on the observed items
        y = fixed[cols]
        a = gram + (y.T * confidence) @ y
        b = y.T @ (1.0 + confidence)
        out[r] = linalg.solve(a, b, assume_a="pos", check_finite=False)
    return out


@dataclass(frozen=True)
class Sessions:
    """Item-index sequences in one flat array, session s being ``codes[starts[s]:starts[s + 1]]``: what the next-item
    rules are fitted from. As lists of Python ints they cost about 36 bytes an event; as these arrays 16."""

    codes: np.ndarray
    starts: np.ndarray  # one more than there are sessions, from 0

    @classmethod
    def of(cls, sequences: Iterable[Sequence[int]]) -> Sessions:
        flat: list[int] = []
        lengths: list[int] = []
        for seq in sequences:
            flat.extend(seq)
            lengths.append(len(seq))
        return cls(np.asarray(flat, dtype=np.int64), np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))

    def __len__(self) -> int:
        return len(self.starts) - 1

    def tolist(self) -> list[list[int]]:
        return [self.codes[a:b].tolist() for a, b in zip(self.starts[:-1], self.starts[1:], strict=True)]


@dataclass
class SequentialRules:
    """rules[i, j]: how often j followed i within ``window`` steps of a session, weighted 1 / distance.

    The next-item model for anonymous shoppers: score = the session's last items (most recent weighted most)
    times the rules. Fitted from sequences of item indices in time order.
    """

    rules: sparse.csr_matrix

    @classmethod
    def fit(
        cls,
        sequences: Sessions | Iterable[Sequence[int]],
        n_items: int,
        window: int = 5,
        neighbours: int = 100,
        chunk_rows: int | None = None,
    ) -> SequentialRules:
        """Every pair (i, j) where j came ``d`` <= ``window`` steps after i in one session (and is not i) adds 1 / d:
        one vectorised pass per distance over the flat sessions, not a Python loop over events; the sessions in
        chunks of about ``chunk_rows`` events (FIT_CHUNK_ROWS), a chunk a thread, their pairs summed. Each pair
        adds lcm(1..window) / d, a whole number, so the sums are exact in any order (how the sessions were chunked
        changes no rule, nor a tie at the k-th), and are divided by the lcm at the end."""
        flat = sequences if isinstance(sequences, Sessions) else Sessions.of(sequences)
        scale = float(math.lcm(*range(1, window + 1)))
        session_bounds = [
            (int(np.searchsorted(flat.starts, a, "left")), int(np.searchsorted(flat.starts, b, "left")))
            for a, b in chunk_bounds(int(flat.starts[-1]), chunk_rows)
        ]  # chunks of whole sessions: a chunk's end rounds up to the next session's start

        def pairs(span: tuple[int, int]) -> sparse.csr_matrix:
            first, last = span
            codes = flat.codes[flat.starts[first] : flat.starts[last]]
            session = np.repeat(np.arange(last - first), np.diff(flat.starts[first : last + 1]))
            rows, cols, vals = [], [], []
            for d in range(1, min(window, len(codes) - 1) + 1):
                before, after = codes[:-d], codes[d:]
                pair = (session[:-d] == session[d:]) & (before != after)
                rows.append(before[pair])
                cols.append(after[pair])
                vals.append(np.full(int(pair.sum()), scale / d))
            if not rows:
                return sparse.csr_matrix((n_items, n_items), dtype=np.float64)
            chunk = sparse.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items)
            )
            chunk.sum_duplicates()
            return chunk

        spans = sorted({span for span in session_bounds if span[1] > span[0]})
        rules = summed_matrices(spans, pairs, (n_items, n_items))
        rules.data /= scale
        return cls(rules=top_k_in_blocks(rules, neighbours))

    def score_sessions(
        self, sessions: Sequence[Sequence[int]], recency: float = 0.5, repeat: float = 0.0, repeat_decay: float = 0.3
    ) -> np.ndarray:
        """Scores for each session from its last items: the newest weighs 1, the one before ``recency``, ...

        ``repeat`` > 0 makes it repeat-aware: each row's rule scores are scaled to its best (1), and the session's own
        items join at ``repeat`` x ``repeat_decay`` ** (views since the item was last viewed) — the newest item at
        ``repeat``. Shoppers go back to what they just saw (18% of the synthetic store's next clicks, 8% the same
        product again); the rules never propose an item after itself, session kNN does, and this is what it
        gains there (``tests/bench/bench_models.py --sessions``)."""
        weights = sparse.lil_matrix((len(sessions), self.rules.shape[0]), dtype=np.float32)
        for s, seq in enumerate(sessions):
            for back, item in enumerate(reversed(seq[-5:])):
                weights[s, item] += recency**back
        scores = np.asarray((weights.tocsr() @ self.rules).todense(), dtype=np.float32)
        if repeat <= 0:
            return scores
        scores /= np.maximum(scores.max(axis=1, keepdims=True), 1e-12)
        for s, seq in enumerate(sessions):
            own: dict[int, float] = {}
            for back, item in enumerate(reversed(seq)):
                own.setdefault(int(item), repeat * repeat_decay**back)
            for item, value in own.items():
                scores[s, item] += value
        return scores

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        # without order, every item of the row counts as a recent one
        return np.asarray((user_rows @ self.rules).todense(), dtype=np.float32)


@dataclass
class Hybrid:
    """A weighted blend of fitted models: score = sum of weight x (the model's scores / the row's largest |score|).

    Each row is scaled to [-1, 1] per model before blending, so weights compare models whose scores live on
    different scales (EASE regression weights, cosine sums, counts).
    """

    parts: list[Any]
    kinds: list[str]
    weights: list[float]

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        total: np.ndarray | None = None
        for weight, part in zip(self.weights, self.parts, strict=True):
            if weight:
                scores = weight * scale_rows(part.score(user_rows))
                total = scores if total is None else total + scores
        if total is None:
            raise ValueError("a hybrid needs at least one part with a weight")
        return total


def scale_rows(scores: np.ndarray) -> np.ndarray:
    peak = np.abs(scores).max(axis=1, keepdims=True)
    return (scores / np.where(peak > 0, peak, 1.0)).astype(np.float32)


TOKEN = re.compile(r"[a-z0-9]{2,}")
STOP_WORDS = frozenset(
    ["the", "and", "for", "with", "of", "in", "on", "to", "from", "by", "an", "at", "is", "it", "this", "that"]
)


def item_tokens(row: Mapping[Any, Any], price_band: int | None) -> list[str]:
    """The content tokens of one catalog item: category path prefixes, brand, price band, title words, tags."""
    tokens: list[str] = []
    path = categories.parts(str(row.get("category") or "").lower())
    tokens += ["cat:" + categories.join(path[: d + 1]) for d in range(len(path))]
    if row.get("brand"):
        tokens.append("brand:" + str(row["brand"]).strip().lower())
    if price_band is not None:
        tokens.append(f"price:{path[0] if path else ''}:{price_band}")
    tokens += ["w:" + t for t in TOKEN.findall(str(row.get("title") or "").lower()) if t not in STOP_WORDS]
    attributes = row.get("attributes")
    if isinstance(attributes, dict):
        for name, value in attributes.items():
            values = value if isinstance(value, list) else [value]
            tokens += [f"a:{name}:{str(v).strip().lower()}" for v in values if isinstance(v, str | int | bool)]
    return tokens


def price_bands(catalog: pd.DataFrame, bands: int = 5) -> dict[str, int]:
    """Price quantile band (0 = cheapest) of each priced item within its top-level category."""
    if "price" not in catalog or catalog["price"].isna().all():
        return {}
    frame = catalog[["item_id", "price"]].copy()
    frame["top"] = catalog.get("category", pd.Series("", index=catalog.index)).fillna("").map(categories.top_level)
    frame = frame.dropna(subset=["price"])
    frame["band"] = frame.groupby("top")["price"].rank(pct=True).mul(bands).clip(upper=bands - 0.5).astype(int)
    return dict(zip(frame["item_id"].astype(str), frame["band"], strict=True))


def token_matrix(catalog: pd.DataFrame, items: np.ndarray, prefixes: tuple[str, ...] = ()) -> sparse.csr_matrix:
    """items x tokens, binary: the ``item_tokens`` of each item (only those starting with ``prefixes`` if given),
    in the order of ``items``; items missing from the catalog get an empty row."""
    bands = price_bands(catalog)
    docs = {
        str(row["item_id"]): {
            t for t in item_tokens(row, bands.get(str(row["item_id"]))) if not prefixes or t.startswith(prefixes)
        }
        for row in catalog.to_dict("records")
    }
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for index, item in enumerate(items):
        for token in docs.get(str(item), ()):
            rows.append(index)
            cols.append(vocabulary.setdefault(token, len(vocabulary)))
    return sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(items), max(len(vocabulary), 1))
    )


@dataclass
class Affinity:
    """Category and brand affinity x popularity: score(u, i) = sum over i's attributes a (department, category at
    every level, brand, price band) of the share of u's history carrying a, times i's popularity among the items
    carrying a. The profile's category affinity (the feature store's) made into a ranker."""

    features: sparse.csr_matrix  # items x attributes, binary
    weights: sparse.csr_matrix  # attributes x items: popularity share of each item within the attribute

    @classmethod
    def fit(cls, matrix: sparse.csr_matrix, catalog: pd.DataFrame, items: np.ndarray) -> Affinity:
        features = token_matrix(catalog, items, prefixes=("cat:", "brand:", "price:"))
        popularity = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)
        per_attribute = features.T.multiply(popularity[None, :]).tocsr()
        totals = np.asarray(per_attribute.sum(axis=1)).ravel()
        weights = sparse.diags(1.0 / np.maximum(totals, 1e-9)).astype(np.float32) @ per_attribute
        return cls(features=features, weights=weights.tocsr().astype(np.float32))

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        affinity = user_rows @ self.features
        totals = np.asarray(user_rows.sum(axis=1)).ravel()
        affinity = sparse.diags(1.0 / np.maximum(totals, 1e-9)).astype(np.float32) @ affinity
        return np.asarray((affinity @ self.weights).todense(), dtype=np.float32)


@dataclass
class ContentKNN:
    """similarity[i, j]: cosine of the TF-IDF token vectors of items i and j, top-k per row."""

    similarity: sparse.csr_matrix

    @classmethod
    def fit(
        cls, catalog: pd.DataFrame, items: np.ndarray, neighbours: int = 50, ann_from: int | None = None
    ) -> ContentKNN:
        """``items`` fixes the index order; items missing from the catalog get no neighbours. Exact (dense blocks)
        below ``ann_from`` items (default ``CONTENT_ANN_FROM_ITEMS``), from an approximate index at and above it.
        Fitted over the items in the order of their ids and permuted to ``items``' (``reordered``): any order of the
        same items gets the same neighbours — the index's graph and the top k's ties would otherwise follow the
        order — so one fit serves every split of a job (``selection.content_fit``)."""
        ordered = np.sort(np.asarray(items))
        return cls.fit_ordered(catalog, ordered, neighbours, ann_from).reordered(ordered, items)

    def reordered(self, ordered: np.ndarray, items: np.ndarray) -> ContentKNN:
        """The same neighbours indexed in ``items``' order, from a fit over the same items sorted (``ordered``)."""
        items = np.asarray(items)
        if len(items) == len(ordered) and np.array_equal(items, ordered):
            return self
        at = np.searchsorted(ordered, items)  # each item's row in the sorted fit
        return ContentKNN(similarity=self.similarity[at][:, at].tocsr())

    @classmethod
    def fit_ordered(
        cls, catalog: pd.DataFrame, items: np.ndarray, neighbours: int = 50, ann_from: int | None = None
    ) -> ContentKNN:
        """The fit in exactly ``items``' order (``fit`` gives it the items sorted)."""
        normalised = tfidf_rows(catalog, items)
        if len(items) >= (CONTENT_ANN_FROM_ITEMS if ann_from is None else ann_from):
            return cls(similarity=content_neighbours(normalised, neighbours))
        n = len(items)
        # shared broad tokens (a department) make these products dense: blocks of rows, dense, argpartition
        block_rows = max(1, DENSE_BLOCK_CELLS // max(n, 1))
        blocks = []
        for start in range(0, n, block_rows):
            block = np.asarray((normalised[start : start + block_rows] @ normalised.T).todense(), dtype=np.float32)
            block[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = 0.0  # not its own neighbour
            blocks.append(dense_top_k(block, neighbours))
        similarity = sparse.vstack(blocks).tocsr() if blocks else sparse.csr_matrix((n, n), dtype=np.float32)
        return cls(similarity=similarity.astype(np.float32))

    def score(self, user_rows: sparse.csr_matrix) -> np.ndarray:
        return np.asarray((user_rows @ self.similarity).todense(), dtype=np.float32)


def tfidf_rows(catalog: pd.DataFrame, items: np.ndarray) -> sparse.csr_matrix:
    """items x tokens: the ``token_matrix`` weighted by inverse document frequency, each row scaled to unit length
    (so a product of two rows is their cosine)."""
    features = token_matrix(catalog, items)
    document_frequency = np.asarray((features > 0).sum(axis=0)).ravel()
    idf = np.log((1.0 + len(items)) / (1.0 + document_frequency)) + 1.0
    weighted = features @ sparse.diags(idf.astype(np.float32))
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    return (sparse.diags(1.0 / np.maximum(norms, 1e-9)).astype(np.float32) @ weighted).tocsr()


def content_neighbours(rows: sparse.csr_matrix, k: int, seed: int = 0) -> sparse.csr_matrix:
    """The top k neighbours by cosine of unit-length sparse rows, without comparing every pair: the rows projected
    to ``ANN_DIMENSIONS`` random directions go into an HNSW index (faiss, inner product); each row's
    ``ANN_POOL`` x k nearest there are re-scored exactly (the sparse rows' products) and cut to the best k. The work
    is n log n for the index plus n x ANN_POOL x k products; what it can miss is a neighbour the projection ranks
    below the pool (``bench_fit.py --content`` measures how often against the dense blocks)."""
    n = rows.shape[0]
    if n < 2 or k < 1:
        return sparse.csr_matrix((n, n), dtype=np.float32)
    rng = np.random.default_rng(seed)
    projection = (rng.standard_normal((rows.shape[1], ANN_DIMENSIONS)) / np.sqrt(ANN_DIMENSIONS)).astype(np.float32)
    vectors = np.ascontiguousarray(rows @ projection, dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    index = HnswIndex(vectors)
    pool = min(n, ANN_POOL * k + 1)  # (+1: the item itself comes back first)
    blocks = []
    for start in range(0, n, ANN_QUERY_CHUNK):
        end = min(n, start + ANN_QUERY_CHUNK)
        found = index.search(vectors[start:end], pool)
        own = np.repeat(np.arange(start, end), pool)
        other = found.ravel()
        keep = (other >= 0) & (other != own)
        own, other = own[keep], other[keep]
        cosine = np.asarray(rows[own].multiply(rows[other]).sum(axis=1), dtype=np.float32).ravel()
        block = sparse.csr_matrix((cosine, (own - start, other)), shape=(end - start, n))
        block.eliminate_zeros()  # (TF-IDF rows are non-negative: a pair sharing no token is 0, not a neighbour)
        blocks.append(top_k_per_row(block, k))
    return sparse.vstack(blocks).tocsr().astype(np.float32)


class HnswIndex:
    """Approximately the nearest unit-length vectors by inner product (their cosine): faiss's HNSW graph (M 32,
    efConstruction 80), searched with efSearch at least the number asked for."""

    def __init__(self, vectors: np.ndarray) -> None:
        import faiss  # the jobs' dependency (training, the transform); never the Lambda functions'

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.size = vectors.shape[0]
        self.index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = 80
        self.index.add(vectors)

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """Each query's ``n`` (at most the index's size) approximately nearest rows, -1 padded."""
        n = min(n, self.size)
        self.index.hnsw.efSearch = max(128, n)
        _, found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n)
        return np.asarray(found)


class FactorIndex:
    """Approximately the largest inner products with vectors of different lengths (iALS's item factors): faiss's
    inverted file (IVF: exact products within the lists searched), 4 x sqrt(n) lists from k-means (10 iterations)
    on a sample (at least 100,000 vectors, 39 a list), a sixteenth of the lists (at least 32) searched per query: a
    sixteenth of the work of every item's product. ``bench_transform.py --catalogs``: the lists' top-50 overlap with
    the exact ones 0.97 at 200,000 items, 0.98 at 1,000,000; an HNSW graph, good at cosine, kept 0.30 of them."""

    def __init__(self, vectors: np.ndarray, seed: int = 0) -> None:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.size, dimensions = vectors.shape
        lists = max(1, min(self.size // 39, int(4 * np.sqrt(self.size))))  # k-means wants 39 points a centroid
        self.quantizer = faiss.IndexFlatIP(dimensions)
        self.index = faiss.IndexIVFFlat(self.quantizer, dimensions, lists, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.niter = 10
        self.index.cp.seed = seed
        sample = np.random.default_rng(seed).permutation(self.size)[: max(lists * 39, 100_000)]
        self.index.train(vectors[np.sort(sample)])
        self.index.add(vectors)
        self.index.nprobe = min(lists, max(32, lists // 16))

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """Each query's ``n`` (at most the index's size) approximately largest inner products' rows, -1 padded."""
        _, found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(n, self.size))
        return np.asarray(found)


def dense_top_k(block: np.ndarray, k: int) -> sparse.csr_matrix:
    """The k largest positive entries of every row of a dense block, as a sparse matrix."""
    k = min(k, block.shape[1])
    if k == 0:
        return sparse.csr_matrix(block.shape, dtype=np.float32)
    cols = np.argpartition(-block, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(block, cols, axis=1)
    rows = np.repeat(np.arange(block.shape[0]), k)
    keep = values.ravel() > 0
    return sparse.csr_matrix(
        (values.ravel()[keep], (rows[keep], cols.ravel()[keep])), shape=block.shape, dtype=np.float32
    )


def _blocks(work: np.ndarray, budget: float) -> list[tuple[int, int]]:
    """Consecutive [start, end) ranges of rows, each ending at the first row whose cumulative ``work`` reaches the next
    multiple of ``budget``: a range's work is at most the budget plus its last row's (a row above the budget ends a
    range of its own or shares it with rows whose work is below the budget). Found for every row at once: a Python
    loop over the rows was most of the 0.25 s a fit over a million items took on a store whose pairs took 0.09 s."""
    if not len(work):
        return []
    total = np.cumsum(np.asarray(work, dtype=np.float64))
    marks = np.arange(1, int(np.ceil(total[-1] / budget)) + 1) * budget if total[-1] > 0 else np.zeros(0)
    ends = np.unique(np.minimum(np.searchsorted(total, marks, side="left") + 1, len(work)))
    ends = ends[ends < len(work)]
    bounds = np.concatenate([[0], ends, [len(work)]])
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def top_k_per_row(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """Keep the k largest entries of every row (ties at the k-th value: the earlier entries). A row of more than k
    entries gives its k-th value by a partition (a sort of every entry, co-occurring pairs, was most of item-kNN's fit
    and grew ^1.6 in them); the entries above it, and as many equal to it as the row has room for, are then found
    for every row at once. The per-row loop does nothing else: it holds the GIL, the rest releases it (the loop was
    a mask, a concatenation and two searches a row: twice the time, and item-kNN's serial share)."""
    matrix = matrix.tocsr()
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) <= k:
        return matrix.astype(np.float32)
    data, indptr = matrix.data, matrix.indptr
    kth = np.full(matrix.shape[0], -np.inf, dtype=data.dtype)  # a row of at most k entries keeps them all
    for row in np.flatnonzero(counts > k):
        values = data[indptr[row] : indptr[row + 1]]
        kth[row] = np.partition(values, len(values) - k)[len(values) - k]
    threshold = np.repeat(kth, counts)
    above, equal = np.flatnonzero(data > threshold), np.flatnonzero(data == threshold)
    del threshold

    def row_of(positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(indptr, positions, side="right") - 1

    room = k - np.bincount(row_of(above), minlength=matrix.shape[0])  # after the entries above the k-th value
    equal_rows = row_of(equal)
    rank = np.arange(len(equal)) - np.searchsorted(equal_rows, equal_rows, side="left")  # among its row's equal ones
    keep = np.sort(np.concatenate([above, equal[rank < room[equal_rows]]]))
    out = sparse.csr_matrix(
        (data[keep].astype(np.float32), matrix.indices[keep], np.concatenate([[0], np.cumsum(np.minimum(counts, k))])),
        shape=matrix.shape,
    )
    out.sum_duplicates()  # canonical: each row's columns in order
    return out


def top_k_in_blocks(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """``top_k_per_row`` of blocks of rows, a block a thread (FIT_THREADS x BLOCKS_PER_THREAD blocks), stacked: the
    same matrix. Whole, its passes over every entry ran on one core: the next-item rules' cut was a third of their
    fit and most of its serial share."""
    matrix = matrix.tocsr()
    cuts = np.unique(np.linspace(0, matrix.shape[0], FIT_THREADS * BLOCKS_PER_THREAD + 1).astype(np.int64))
    if FIT_THREADS == 1 or len(cuts) <= 2:
        return top_k_per_row(matrix, k)
    with ThreadPoolExecutor(FIT_THREADS) as pool:
        blocks = list(pool.map(lambda span: top_k_per_row(matrix[span[0] : span[1]], k), itertools.pairwise(cuts)))
    return sparse.vstack(blocks, format="csr")


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
