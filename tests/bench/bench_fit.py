"""Fit time and memory of the collaborative families as a store grows, beside the implementations they replaced.

    .venv/bin/python tests/bench/bench_fit.py [--sizes 20000x5000,100000x20000,300000x50000] [--baseline-max 20000]

For each size (users x items), a power-law store (item popularity Zipf 1.1, 8 interactions per user on average,
strengths 1/2/4) is fitted with:
- item-kNN (100 neighbours): sparse blocks of co-occurring pairs cut to the top k (``ItemKNN.fit``), and, as the
  baseline in the same run, the dense blocks it replaced (every item pair of a block, then the top k);
- iALS (64 factors, 10 iterations): ``implicit``'s compiled solver (``IALS.fit``), and, as the baseline, the exact
  Python-loop sweeps it replaced (``_als_sweep`` per side).
Baselines run only up to ``--baseline-max`` items (they take minutes beyond). Peak memory is Python's own
allocations during the fit (tracemalloc: numpy and scipy arrays; not implicit's native buffers).

With ``--content 20000,40000,200000`` it fits the content model instead, on the simulator's catalogs of those sizes
(categories, brands, price bands, titles): the exact dense blocks up to ``--baseline-max`` items (their time grows
as items^2) beside the approximate index (``models.content_neighbours``, n log n), with the share of the index's
neighbours that are as close as the exact k-th (``score_recall``: ties make the exact items the wrong question) and
the mean similarity of each; the exponents are fitted in items.

With ``--ials-split PATH`` (a model's ``history.csr``, e.g. ``make scale``'s 300,000-shopper store's
``.local/cache/scale-300000-14d/model-envelope/history.csr``) or ``--ials-split USERSxITEMS`` (the store above) it
times iALS on threads against processes (``shopwise_jobs.als``), in the same process: the users' half-step by
implicit's own step on one thread and on every core (OpenBLAS's allocator lock shows as CPU time spent waiting) and
the items' on one thread (what ``als.ROW_COST_ENTRIES`` is fitted from), then
the whole fit (64 factors, regularization 1, alpha 10, 10 iterations) on implicit's threads and in a process per core,
wall and CPU (children's included), and whether the two fits' item factors are equal.

Ends with one JSON line: {"sizes": [{"users", "items", "interactions", "itemknn_s", "itemknn_peak_mb",
"itemknn_dense_s", "itemknn_dense_peak_mb", "ials_s", "ials_loop_s", ...}], "itemknn_exponent", "ials_exponent"}:
the growth exponent of fit time in interactions, fitted over the sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
from scipy import sparse

from shopwise_jobs import models
from shopwise_jobs.models import DENSE_BLOCK_CELLS, IALS, ContentKNN, ItemKNN, _als_sweep, dense_top_k


def store(users: int, items: int, per_user: float = 8.0, seed: int = 0) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 1.1
    popularity /= popularity.sum()
    counts = np.maximum(1, rng.poisson(per_user, users))
    rows = np.repeat(np.arange(users), counts)
    cols = rng.choice(items, size=len(rows), p=popularity)
    values = rng.choice(np.array([1.0, 2.0, 4.0], dtype=np.float32), size=len(rows), p=[0.7, 0.2, 0.1])
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=(users, items), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def dense_item_knn(matrix: sparse.csr_matrix, neighbours: int = 100, shrinkage: float = 10.0) -> sparse.csr_matrix:
    """The previous ItemKNN.fit (commit 3e220a9): every pair of a block of items, dense, then the top k."""
    binary = matrix.tocsr().astype(np.float32)
    binary.data = np.ones_like(binary.data)
    by_item = binary.T.tocsr()
    norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel()).astype(np.float32)
    n = matrix.shape[1]
    block_rows = max(1, DENSE_BLOCK_CELLS // max(n, 1))
    blocks = []
    for start in range(0, n, block_rows):
        cooc = np.asarray((by_item[start : start + block_rows] @ binary).todense(), dtype=np.float32)
        cooc[np.arange(cooc.shape[0]), np.arange(start, start + cooc.shape[0])] = 0.0
        cosine = cooc / (norms[start : start + cooc.shape[0], None] * norms[None, :] + 1e-9)
        blocks.append(dense_top_k(cosine * cooc / (cooc + shrinkage), neighbours))
    return sparse.vstack(blocks).tocsr()


def loop_ials(matrix: sparse.csr_matrix, factors: int = 64, iterations: int = 10) -> np.ndarray:
    """The previous IALS.fit (commit 3e220a9): exact sweeps, a Python loop over rows."""
    rng = np.random.default_rng(0)
    item_factors = rng.standard_normal((matrix.shape[1], factors)) * 0.01
    by_user = matrix.astype(np.float64)
    by_item = by_user.T.tocsr()
    for _ in range(iterations):
        user_factors = _als_sweep(by_user, item_factors, 10.0, 1.0)
        item_factors = _als_sweep(by_item, user_factors, 10.0, 1.0)
    return item_factors


def measure(fit: Callable[[sparse.csr_matrix], Any], matrix: sparse.csr_matrix) -> tuple[float, float]:
    """Seconds and peak MB of Python allocations of one fit."""
    tracemalloc.start()
    started = time.perf_counter()
    fit(matrix)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(seconds, 2), round(peak / 1e6, 1)


def exponent(xs: list[float], ys: list[float]) -> float | None:
    """The slope of log y on log x: 1 is linear growth."""
    if len(xs) < 2:
        return None
    return round(float(np.polyfit(np.log(xs), np.log(ys), 1)[0]), 2)


def content(sizes: list[int], baseline_max: int, neighbours: int = 50) -> dict[str, Any]:
    """The content model's fit, exact and from the index, on the simulator's catalogs."""
    import pandas as pd

    from shopwise_local.simulate import SimulationOptions, _catalog

    rows = []
    for size in sizes:
        _, records = _catalog(np.random.default_rng(7), SimulationOptions(items=size))
        catalog = pd.DataFrame(records)
        items = catalog["item_id"].to_numpy()
        row: dict[str, Any] = {"items": size}
        fitted: dict[str, sparse.csr_matrix] = {}

        def fit(
            name: str, ann_from: int, c: pd.DataFrame = catalog, i: np.ndarray = items, into: dict[str, Any] = fitted
        ) -> Callable[..., Any]:
            return lambda _m: into.__setitem__(name, ContentKNN.fit(c, i, neighbours, ann_from).similarity)

        empty = sparse.csr_matrix((1, 1))
        row["index_s"], row["index_peak_mb"] = measure(fit("index", 0), empty)
        row["index_mean_similarity"] = round(float(fitted["index"].data.mean()), 4)
        if size <= baseline_max:
            row["dense_s"], row["dense_peak_mb"] = measure(fit("dense", size + 1), empty)
            exact = fitted["dense"]
            row["dense_mean_similarity"] = round(float(exact.data.mean()), 4)
            kth = np.zeros(size, dtype=np.float32)
            for i in range(size):
                values = exact.data[exact.indptr[i] : exact.indptr[i + 1]]
                kth[i] = np.sort(values)[-min(neighbours, len(values))] if len(values) else 0.0
            pairs = fitted["index"].tocoo()
            row["score_recall"] = round(float((pairs.data >= kth[pairs.row] - 1e-5).mean()), 4)
            row["speedup"] = round(row["dense_s"] / row["index_s"], 2)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        rows.append(row)
    dense = [r for r in rows if "dense_s" in r]
    return {
        "content": rows,
        "index_exponent": exponent([float(r["items"]) for r in rows], [r["index_s"] for r in rows]),
        "dense_exponent": exponent([float(r["items"]) for r in dense], [r["dense_s"] for r in dense]),
    }


def ials_split(matrix: sparse.csr_matrix) -> dict[str, Any]:
    """iALS on implicit's threads against its half-steps in processes (``shopwise_jobs.als``), on ``matrix``."""
    from implicit.cpu import _als

    from shopwise_jobs import als
    from shopwise_jobs.apart import cpu_seconds

    cores = os.cpu_count() or 1
    confidence = matrix.astype(np.float32)
    confidence.data = 1.0 + 10.0 * confidence.data
    rng = np.random.default_rng(0)
    users = rng.random((matrix.shape[0], 64), dtype=np.float32) * 0.01
    items = rng.random((matrix.shape[1], 64), dtype=np.float32) * 0.01
    row: dict[str, Any] = {"users": matrix.shape[0], "items": matrix.shape[1], "entries": int(matrix.nnz)}
    for threads in sorted({1, cores}):
        walls, cpus = [], []
        for _ in range(3):
            clock, used = time.perf_counter(), cpu_seconds()
            _als.least_squares_cg(confidence, users, items, 1.0, num_threads=threads, cg_steps=als.CG_STEPS)
            walls.append(time.perf_counter() - clock)
            cpus.append(cpu_seconds() - used)
        best = int(np.argmin(walls))
        row[f"users_half_step_{threads}_threads_s"] = round(walls[best], 3)
        row[f"users_half_step_{threads}_threads_cpu_s"] = round(cpus[best], 3)
    # the items' half-step on one thread: the same entries over fewer rows, which als.ROW_COST_ENTRIES is fitted from
    transposed = confidence.T.tocsr()
    walls = []
    for _ in range(3):
        clock = time.perf_counter()
        _als.least_squares_cg(transposed, items, users, 1.0, num_threads=1, cg_steps=als.CG_STEPS)
        walls.append(time.perf_counter() - clock)
    row["items_half_step_1_threads_s"] = round(min(walls), 3)
    fitted = {}
    for mode, threshold in (("threads", 1 << 62), ("processes", 0)):
        als.PROCESSES_FROM_ENTRIES = threshold
        clock, used = time.perf_counter(), cpu_seconds()
        fitted[mode] = IALS.fit(matrix, factors=64, regularization=1.0, alpha=10.0, iterations=10).item_factors
        row[f"fit_{mode}_s"] = round(time.perf_counter() - clock, 2)
        row[f"fit_{mode}_cpu_s"] = round(cpu_seconds() - used, 2)
    row["half_step_speedup_on_threads"] = round(
        row["users_half_step_1_threads_s"] / row[f"users_half_step_{cores}_threads_s"], 2
    )
    row["fit_threads_over_processes"] = round(row["fit_threads_s"] / row["fit_processes_s"], 2)
    row["same_factors"] = bool(np.array_equal(fitted["threads"], fitted["processes"]))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000x5000,100000x20000,300000x50000", help="USERSxITEMS,...")
    parser.add_argument("--baseline-max", type=int, default=20000, help="baselines up to this many items")
    parser.add_argument("--content", help="ITEMS,...: the content model on the simulator's catalogs instead")
    parser.add_argument("--pool", type=int, help="--content: the index's candidates per neighbour (ANN_POOL)")
    parser.add_argument("--ials-split", help="PATH to a history.csr, or USERSxITEMS: iALS on threads vs processes")
    args = parser.parse_args()
    if args.ials_split:
        if "x" in args.ials_split and not os.path.exists(args.ials_split):
            matrix = store(*(int(v) for v in args.ials_split.lower().split("x")))
        else:
            from pathlib import Path

            from shopwise_jobs.artifacts import load_csr

            matrix = load_csr(Path(args.ials_split))
        print(json.dumps(ials_split(matrix)))
        return 0
    if args.pool:
        models.ANN_POOL = args.pool
    if args.content:
        print(json.dumps(content([int(v) for v in args.content.split(",")], args.baseline_max)))
        return 0
    rows = []
    for size in args.sizes.split(","):
        users, items = (int(v) for v in size.lower().split("x"))
        matrix = store(users, items)
        row: dict[str, Any] = {"users": users, "items": items, "interactions": int(matrix.nnz)}
        row["itemknn_s"], row["itemknn_peak_mb"] = measure(ItemKNN.fit, matrix)
        row["ials_s"], row["ials_peak_mb"] = measure(lambda m: IALS.fit(m, factors=64, iterations=10), matrix)
        if items <= args.baseline_max:
            row["itemknn_dense_s"], row["itemknn_dense_peak_mb"] = measure(dense_item_knn, matrix)
            row["ials_loop_s"], _ = measure(loop_ials, matrix)
            row["itemknn_speedup"] = round(row["itemknn_dense_s"] / row["itemknn_s"], 1)
            row["ials_speedup"] = round(row["ials_loop_s"] / row["ials_s"], 1)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        rows.append(row)
    interactions = [float(r["interactions"]) for r in rows]
    result = {
        "sizes": rows,
        "itemknn_exponent": exponent(interactions, [r["itemknn_s"] for r in rows]),
        "ials_exponent": exponent(interactions, [r["ials_s"] for r in rows]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
