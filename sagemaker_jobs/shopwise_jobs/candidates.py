"""Scoring over candidates: a user's top K from the items some model part would put near the top, never a row as wide
as the catalog.

``Model.score`` gives every user a dense row over every item — what evaluation and tuning use at a store's size,
but at a million items a block of 512 users is 2 GB per model part, and the batch transform's work grows with
users x items. The transform instead asks each part for its own best ``n`` items per user (its *candidates*):

- item-item parts (item-kNN, content, sequential rules): the nonzeros of the sparse product history x similarity,
  cut to the row's best ``n`` — the neighbour union, bounded by history x neighbours;
- iALS: the best ``n`` by the factors: a dense product, chunked (BLAS), below ``FACTOR_INDEX_FROM_ITEMS`` items;
  from there an inverted-file index over the item factors (``models.FactorIndex``, built once per model and
  process), whose proposals are then scored exactly like every other part's;
- EASE and affinity: the same neighbour union over their weights cut to each row's ``TRUNCATED`` largest (an owned
  item's strongest EASE weights; each of the shopper's attributes' most popular items), scored exactly;
- popularity: the global best ``n``.

A blend's candidates are the union of its parts'; every part is then scored at exactly those (user, item) pairs
(``score_at``), each part's scores scaled to the row's largest (the part's own best is among its candidates, so
this is the scale the dense blend uses) and summed with the blend's weights. The top K of those is the dense top K
whenever every item of it is among some part's best ``n``; ``tests/unit/test_models.py`` holds the two paths to
each other, and ``tests/bench/bench_transform.py --catalogs`` measures both (item-kNN: 14.3 ms a user over every
item of a million, 0.84 over candidates; iALS 23.6 and 1.63).

Scores at candidates travel as a CSR matrix: its pattern the (user, item) pairs, its data the scores.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy import sparse

from shopwise_jobs.models import (
    EASE,
    IALS,
    Affinity,
    ContentKNN,
    FactorIndex,
    Hybrid,
    ItemKNN,
    Popularity,
    SequentialRules,
    dense_top_k,
    top_k_per_row,
)

FACTOR_CELLS = 1 << 24  # users x items cells of one iALS candidate block (64 MB of float32)
# from this many items the transform, model selection and evaluation score candidates (every part's best
# CANDIDATES, the union); below it every item, which is exact and, on a smaller catalog, faster.
# bench_transform.py --catalogs, a core, 20 items a shopper: item-kNN 0.19 ms a user over every item against 0.55
# over candidates at 20,000 items, 1.50 against 0.68 at 200,000, 14.3 against 0.84 at 1,000,000; iALS (its
# candidates from the factor index) 6.45 against 0.48 at 200,000 and 23.6 against 1.63 at 1,000,000, the lists'
# top-50 overlap 0.97-0.98. A job's environment may set it (SHOPWISE_CANDIDATES_FROM_ITEMS; make scale forces 0)
CANDIDATES_FROM_ITEMS = int(os.environ.get("SHOPWISE_CANDIDATES_FROM_ITEMS", "100000"))
CANDIDATES = 100
# from this many items iALS's candidates come from an index over the item factors instead of every item's product
# (bench_transform.py --catalogs measures both); SHOPWISE_FACTOR_INDEX_FROM_ITEMS sets it for a job
FACTOR_INDEX_FROM_ITEMS = int(os.environ.get("SHOPWISE_FACTOR_INDEX_FROM_ITEMS", "100000"))


def _similarity(model: Any) -> sparse.csr_matrix | None:
    if isinstance(model, ItemKNN | ContentKNN):
        return model.similarity
    if isinstance(model, SequentialRules):
        return model.rules
    return None


def _pattern(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    out = matrix.tocsr().copy()
    out.data = np.ones_like(out.data, dtype=np.float32)
    out.sort_indices()
    return out


def _dense_top(scores: np.ndarray, n: int, columns: np.ndarray | None = None, width: int = 0) -> sparse.csr_matrix:
    """The best ``n`` of each dense row as a sparse matrix ``width`` wide (``columns``: the item index of each dense
    column; default: the columns themselves)."""
    users = scores.shape[0]
    width = width or scores.shape[1]
    n = min(n, scores.shape[1])
    if n == 0:
        return sparse.csr_matrix((users, width), dtype=np.float32)
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    values = np.take_along_axis(scores, part, axis=1)
    cols = part if columns is None else columns[part]
    return sparse.csr_matrix(
        (values.ravel().astype(np.float32), (np.repeat(np.arange(users), n), cols.ravel())), shape=(users, width)
    )


Cache = dict[int, Any]  # id(part) -> what scoring a block of rows computed once for it (a product, factors)


def _product(model: Any, rows: sparse.csr_matrix, cache: Cache) -> sparse.csr_matrix | np.ndarray:
    """What a part computes once for a block of rows: an item-item part's sparse product, iALS's user factors."""
    if id(model) not in cache:
        similarity = _similarity(model)
        if similarity is not None:
            cache[id(model)] = (rows @ similarity).tocsr()
        elif isinstance(model, IALS):
            cache[id(model)] = model.user_factors(rows)
        else:
            raise TypeError(f"no candidate search for {type(model).__name__}")
    return cache[id(model)]


def top_candidates(model: Any, rows: sparse.csr_matrix, n: int, cache: Cache | None = None) -> sparse.csr_matrix:
    """Each user's best ``n`` items by this model (a blend: the union of its weighted parts'), as a 0/1 pattern."""
    cache = {} if cache is None else cache
    n_items = rows.shape[1]
    if isinstance(model, Hybrid):
        union = sparse.csr_matrix(rows.shape, dtype=np.float32)
        for weight, part in zip(model.weights, model.parts, strict=True):
            if weight:
                union = union + top_candidates(part, rows, n, cache)
        return _pattern(union)
    if _similarity(model) is not None:
        return _pattern(top_k_per_row(_product(model, rows, cache), n))
    if isinstance(model, Affinity):  # the best of each attribute the shopper has, not every item carrying it
        return _pattern(top_k_per_row(_affinity(model, rows) @ _truncated(model), n))
    if isinstance(model, Popularity):
        best = model.top(n)
        users = rows.shape[0]
        return _pattern(
            sparse.csr_matrix(
                (
                    np.ones(users * len(best), dtype=np.float32),
                    (np.repeat(np.arange(users), len(best)), np.tile(best, users)),
                ),
                shape=rows.shape,
            )
        )
    if isinstance(model, EASE):  # the owned items' strongest weights, as item-kNN's neighbours
        weights = _truncated(model)
        product = (rows[:, model.kept] @ weights).tocsr()
        product.data = np.maximum(product.data, 0.0)
        product.eliminate_zeros()
        top = top_k_per_row(product, n).tocoo()
        return _pattern(sparse.csr_matrix((top.data, (top.row, model.kept[top.col])), shape=rows.shape))
    if isinstance(model, IALS):
        factors = _product(model, rows, cache)
        if n_items >= FACTOR_INDEX_FROM_ITEMS:
            return _indexed(model, factors, n)
        step = max(1, FACTOR_CELLS // max(n_items, 1))
        blocks = [
            _pattern(_dense_top(factors[s : s + step] @ model.item_factors.T, n)) for s in range(0, rows.shape[0], step)
        ]
        return sparse.vstack(blocks).tocsr() if blocks else sparse.csr_matrix(rows.shape, dtype=np.float32)
    raise TypeError(f"no candidate search for {type(model).__name__}")


def factor_index(model: IALS) -> FactorIndex:
    """The model's index over its item factors: built on first use and kept on the model (once per process)."""
    return _memo(model, "_factor_index", lambda: FactorIndex(model.item_factors))


def _indexed(model: IALS, factors: np.ndarray, n: int) -> sparse.csr_matrix:
    """The users' ``n`` approximately best items by the factors, from the model's index, searched single-threaded
    like the rest of a transform worker."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        found = factor_index(model).search(factors, n)
    finally:
        faiss.omp_set_num_threads(threads)
    users, width = found.shape
    rows = np.repeat(np.arange(users), width)
    keep = found.ravel() >= 0
    return sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], found.ravel()[keep])),
        shape=(users, model.item_factors.shape[0]),
    )


# a model's rows cut to their TRUNCATED largest entries: where EASE's and affinity's candidates come from (a
# shopper's candidates then follow their history, not the catalog)
TRUNCATED = 100


def _memo(owner: Any, name: str, make: Any) -> Any:
    """``make()`` once per model object, kept on the object itself (not a dataclass field: never saved), so it
    lives exactly as long as the model — a module-level cache would keep every model tuning fitted alive."""
    if name not in vars(owner):
        vars(owner)[name] = make()
    return vars(owner)[name]


def _truncated(model: EASE | Affinity) -> sparse.csr_matrix:
    def cut() -> sparse.csr_matrix:
        weights = model.weights
        if isinstance(weights, np.ndarray):  # EASE's dense B: argpartition a block of rows at a time
            step = max(1, (1 << 22) // max(weights.shape[1], 1))
            blocks = [dense_top_k(weights[s : s + step], TRUNCATED) for s in range(0, weights.shape[0], step)]
            return sparse.vstack(blocks).tocsr() if blocks else sparse.csr_matrix(weights.shape, dtype=np.float32)
        return top_k_per_row(weights.tocsr(), TRUNCATED)

    return _memo(model, "_candidates_truncated", cut)


def _by_item(model: Affinity) -> sparse.csr_matrix:
    """items x attributes: each item's popularity share within each of its attributes (``weights`` transposed)."""
    return _memo(model, "_candidates_by_item", lambda: model.weights.T.tocsr())


def _affinity(model: Affinity, rows: sparse.csr_matrix) -> sparse.csr_matrix:
    affinity = rows @ model.features
    totals = np.asarray(rows.sum(axis=1)).ravel()
    return (sparse.diags(1.0 / np.maximum(totals, 1e-9)).astype(np.float32) @ affinity).tocsr()


# rows x width cells of ``gather``'s dense buffer (16 MB of float32): a block of rows scattered at once
GATHER_CELLS = 1 << 22


def gather(product: sparse.csr_matrix, at: sparse.csr_matrix) -> np.ndarray:
    """The values of ``product`` at the entries of ``at`` (0 where it has none; a position's entries summed), aligned
    with ``at.data``. A block of rows at a time is scattered into a dense buffer (rows x width, ``GATHER_CELLS``),
    read at ``at``'s positions and cleared: a sparse product's indices come unsorted, and sorting them to search
    (``sum_duplicates``) was a quarter of a transform user's time with the envelope's histories
    (``bench_transform.py --histories --baseline`` times the code before)."""
    product, at = product.tocsr(), at.tocsr()
    out = np.zeros(at.nnz, dtype=np.float32)
    users, width = product.shape
    if not product.nnz or not at.nnz or not width:
        return out
    step = max(1, GATHER_CELLS // width)
    buffer = np.zeros(min(step, users) * width, dtype=np.float32)
    for start in range(0, users, step):
        end = min(users, start + step)
        have, want = _block_keys(product, start, end), _block_keys(at, start, end)
        if not len(have) or not len(want):
            continue
        lo = product.indptr[start]
        np.add.at(buffer, have, product.data[lo : lo + len(have)])
        out[at.indptr[start] : at.indptr[start] + len(want)] = buffer[want]
        buffer[have] = 0.0
    return out


def _block_keys(matrix: sparse.csr_matrix, start: int, end: int) -> np.ndarray:
    """The positions (row within the block x width + column) of rows ``start:end``'s entries, in storage order."""
    indptr = matrix.indptr[start : end + 1]
    rows = np.repeat(np.arange(end - start, dtype=np.int64), np.diff(indptr))
    return rows * matrix.shape[1] + matrix.indices[indptr[0] : indptr[-1]]


def score_at(model: Any, rows: sparse.csr_matrix, at: sparse.csr_matrix, cache: Cache | None = None) -> np.ndarray:
    """The model's scores at the entries of ``at`` (users x items, sorted indices), aligned with ``at.data``: what
    ``model.score(rows)`` has there, without the rest of the row."""
    cache = {} if cache is None else cache
    if isinstance(model, Hybrid):
        total = np.zeros(at.nnz, dtype=np.float32)
        for weight, part in zip(model.weights, model.parts, strict=True):
            if weight:
                total += weight * scale_segments(score_at(part, rows, at, cache), at.indptr)
        return total
    user_of = np.repeat(np.arange(at.shape[0]), np.diff(at.indptr))
    if _similarity(model) is not None:
        return gather(_product(model, rows, cache), at)
    if isinstance(model, Affinity):  # each pair: the shopper's attribute shares . the item's popularity shares
        return _affinity_at(model, rows, at, user_of)
    if isinstance(model, Popularity):
        return model.scores[at.indices].astype(np.float32)
    if isinstance(model, EASE):  # each pair: sum over the owned items j of strength x B[j, item]
        position = np.full(model.n_items, -1, dtype=np.int64)
        position[model.kept] = np.arange(len(model.kept))
        column = position[at.indices]
        owned = rows.tocsr()
        counts = np.diff(owned.indptr)[user_of]
        pair = np.repeat(np.arange(at.nnz), counts)
        starts = np.repeat(owned.indptr[user_of], counts)
        within = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
        j = owned.indices[starts + within]
        row_pos, col_pos = position[j], column[pair]
        ok = (row_pos >= 0) & (col_pos >= 0)
        values = owned.data[starts + within][ok] * model.weights[row_pos[ok], col_pos[ok]]
        return np.bincount(pair[ok], weights=values, minlength=at.nnz).astype(np.float32)
    if isinstance(model, IALS):
        factors = _product(model, rows, cache)
        return np.einsum("ij,ij->i", factors[user_of], model.item_factors[at.indices]).astype(np.float32)
    raise TypeError(f"no scoring at candidates for {type(model).__name__}")


def _affinity_at(model: Affinity, rows: sparse.csr_matrix, at: sparse.csr_matrix, user_of: np.ndarray) -> np.ndarray:
    """Affinity's scores at ``at``: for each pair, over the item's own attributes (a handful), the shopper's share of
    the attribute (``gather``ed from the shoppers' shares) times the item's popularity share in it. Row-indexing the
    shares by pair and multiplying by the items' rows made a pairs x attributes matrix of every attribute the shopper
    has: a fifth of a transform user's time with the envelope's histories."""
    by_item = _by_item(model)
    counts = np.diff(by_item.indptr)[at.indices]  # each pair's item's attributes
    pair = np.repeat(np.arange(at.nnz), counts)
    entry = np.repeat(by_item.indptr[at.indices], counts) + (
        np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    # the (shopper, attribute) positions, grouped by shopper as the pairs are
    wanted = sparse.csr_matrix(
        (
            np.ones(len(pair), dtype=np.float32),
            by_item.indices[entry],
            np.r_[0, np.cumsum(np.bincount(user_of[pair], minlength=at.shape[0]))],
        ),
        shape=(at.shape[0], by_item.shape[1]),
    )
    shares = gather(_affinity(model, rows), wanted)
    return np.bincount(pair, weights=shares * by_item.data[entry], minlength=at.nnz).astype(np.float32)


def scale_segments(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Each row's values (CSR segments) over the row's largest |value| — ``models.scale_rows`` over candidates."""
    counts = np.diff(indptr)
    if not len(values):
        return values
    peaks = np.zeros(len(counts), dtype=np.float32)
    nonempty = counts > 0
    peaks[nonempty] = np.maximum.reduceat(np.abs(values), indptr[:-1][nonempty])
    peak = np.repeat(peaks, counts)
    return (values / np.where(peak > 0, peak, 1.0)).astype(np.float32)


def recommend(
    model: Any, rows: sparse.csr_matrix, k: int, n: int, tiebreak: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``models.top_k(model.score(rows), k, rows)`` over candidates: each user's best ``k`` items they don't own,
    from every part's best ``n`` (users x k indices and scores; -1 and -inf where a user has fewer). Owned items
    stay candidates while a blend scales its parts (the dense blend scales each row by its largest score, owned
    items included) and are dropped before the top ``k``."""
    cache = Cache()
    at = widened_candidates(model, rows, n, cache)
    return rank(at, score_at(model, rows, at, cache), rows, k, tiebreak)


def widened_candidates(model: Any, rows: sparse.csr_matrix, n: int, cache: Cache | None = None) -> sparse.csr_matrix:
    """``top_candidates`` with ``n`` widened by the longest history (up to n more): a part's best n may include what
    the user owns, and k must remain once that is dropped."""
    return top_candidates(model, rows, n + min(int(np.diff(rows.indptr).max(initial=0)), n), cache)


def rank(
    at: sparse.csr_matrix, values: np.ndarray, rows: sparse.csr_matrix, k: int, tiebreak: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best ``k`` candidates (``values`` aligned with ``at.data``) that the row does not own: users x k
    indices and scores, -1 and -inf where a row has fewer. ``tiebreak`` (per item, tiny) is added first, as
    evaluation adds it to dense rows."""
    if tiebreak is not None:
        values = values + tiebreak[at.indices]
    users = at.shape[0]
    owned = gather(_pattern(rows), at) > 0
    idx = np.full((users, k), -1, dtype=np.int64)
    best = np.full((users, k), -np.inf, dtype=np.float32)
    row_of = np.repeat(np.arange(users), np.diff(at.indptr))[~owned]
    items, values = at.indices[~owned], values[~owned]
    if not len(items):
        return idx, best
    items, values, row_of = _above_kth(items, values, row_of, users, k)
    # per row, best score first (ties: the lower item index), the first k kept
    order = np.lexsort((items, -values, row_of))
    starts = np.searchsorted(row_of[order], np.arange(users))
    rank_in_row = np.arange(len(order)) - starts[row_of[order]]
    keep = order[rank_in_row < k]
    r, c = row_of[keep], rank_in_row[rank_in_row < k]
    idx[r, c] = items[keep]
    best[r, c] = values[keep]
    return idx, best


def _above_kth(
    items: np.ndarray, values: np.ndarray, row_of: np.ndarray, users: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries (grouped by row, ``row_of`` ascending) at or above their row's k-th largest value: every entry
    the top k can hold, ties at the k-th included, so sorting these alone ranks exactly as sorting all. A row's
    candidates are the union of every part's best (about a thousand for a blend of six), of which the top k keep
    ten: the blend's weight search ranks them some sixty times a retrain, and the full sort was most of it."""
    counts = np.bincount(row_of, minlength=users)
    width = int(counts.max())
    if width <= k:
        return items, values, row_of
    starts = np.cumsum(counts) - counts
    keep = np.empty(len(values), dtype=bool)
    rows_a_block = max(1, RANK_BLOCK_CELLS // width)  # the padded block's memory, whatever the rows
    for first in range(0, users, rows_a_block):
        last = min(first + rows_a_block, users)
        lo, hi = starts[first], starts[last - 1] + counts[last - 1]
        block_rows = row_of[lo:hi] - first
        padded = np.full((last - first, width), -np.inf, dtype=np.float64)
        padded[block_rows, np.arange(lo, hi) - starts[row_of[lo:hi]]] = values[lo:hi]
        kth = np.partition(padded, width - k, axis=1)[:, width - k]
        keep[lo:hi] = values[lo:hi] >= kth[block_rows]
    return items[keep], values[keep], row_of[keep]


RANK_BLOCK_CELLS = 4_000_000  # 32 MB of padded scores at a time
