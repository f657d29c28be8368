"""item-kNN's fit on a store's own co-occurrences, at the store's catalog width and spread over the envelope's.

    .venv/bin/python tests/bench/bench_knn.py --events STORE/events.csv --items STORE/items.csv
        [--width 1000000] [--repeats 2] [--metrics STORE/model-envelope/metrics.json]

What `make scale` extrapolates item-kNN's part of the served fit from. Inside the training job its time a product
grew with the simulated store (27, 25, 39 ns at 10,000, 30,000 and 100,000 shoppers), and a power law fitted to
that grows without end; yet the same fit on the same rows on its own did not (38, 27, 31 ns), and the store's
catalog (1,500 to 16,000 items) is far narrower than the envelope's million items, which scipy's sparse product
pays for: it accumulates each row in an array as wide as the catalog. So the fit is measured here twice on the
same rows: as the training job builds them (``training.train_files``'s data set, the consented rows,
``TrainSet.recent(ITEMKNN_HISTORY)``), and with the same items spread over ``--width`` columns at random (kept in
their order, so the neighbours are the same, which is checked) — the products and the pairs unchanged, only the
width the envelope has. Each fit's best of ``--repeats`` wall and CPU time. ``--metrics``: the training job's
metrics of the same store, whose item-kNN products (``final parts work``) must equal these rows' (else the rows
are not the job's and the figures say nothing about it).

Ends with one JSON line: {"products", "items", "width", "native": [wall s, cpu s], "wide": [wall s, cpu s]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

from shopwise_jobs.dataset import read_catalog, read_events_any
from shopwise_jobs.models import ITEMKNN_HISTORY, ItemKNN
from shopwise_jobs.training import Hyperparameters, catalog_snapshot, fit_frame, personal_interactions, served_set

ENVELOPE_ITEMS = 1_000_000
HP = Hyperparameters()  # the served fit's neighbours, shrinkage and consent rule


def job_rows(events: Path, items: Path) -> sparse.csr_matrix:
    """The rows item-kNN counts co-occurrences over in the training job's served fit, built by the job's own steps."""
    catalog = read_catalog(items)
    interactions = personal_interactions(fit_frame(read_events_any(events, catalog_snapshot(catalog)).interactions), HP)
    return served_set(interactions, catalog, HP).recent(ITEMKNN_HISTORY).tocsr()


def widened(rows: sparse.csr_matrix, width: int, seed: int = 0) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The same rows with their items at random columns of ``width``, in their order; and where each item went."""
    items = rows.shape[1]
    where = (
        np.sort(np.random.default_rng(seed).choice(width, items, replace=False)) if width > items else np.arange(items)
    )
    wide = sparse.csr_matrix((rows.data, where[rows.indices], rows.indptr), shape=(rows.shape[0], max(width, items)))
    return wide, where


def timed_fit(rows: sparse.csr_matrix, repeats: int) -> tuple[float, float, sparse.csr_matrix]:
    """Best wall and CPU seconds of ``repeats`` fits (each its own best: the slower runs are the machine's noise)."""
    best_wall = best_cpu = float("inf")
    similarity = sparse.csr_matrix((0, 0))
    for _ in range(repeats):
        clock, used = time.perf_counter(), time.process_time()
        similarity = ItemKNN.fit(rows, HP.neighbours, HP.shrinkage).similarity
        best_wall = min(best_wall, time.perf_counter() - clock)
        best_cpu = min(best_cpu, time.process_time() - used)
    return best_wall, best_cpu, similarity


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=Path, required=True, help="the store's events (bulk-import file or archive)")
    parser.add_argument("--items", type=Path, required=True, help="the store's catalog")
    parser.add_argument("--width", type=int, default=ENVELOPE_ITEMS, help="columns to spread the items over")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--metrics", type=Path, help="the training job's metrics.json of the same store, to check")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    rows = job_rows(args.events, args.items)
    lengths = np.diff(rows.indptr).astype(np.float64)
    products = float((lengths**2).sum())
    if args.metrics:
        job = float(json.loads(args.metrics.read_text())["final parts work"]["similar"])
        if job != products:
            raise SystemExit(f"these rows take {products:,.0f} products, the job's item-kNN took {job:,.0f}")
    native_wall, native_cpu, native = timed_fit(rows, args.repeats)
    wide, where = widened(rows, args.width)
    wide_wall, wide_cpu, spread = timed_fit(wide, args.repeats)
    back = spread[where][:, where]  # the wide fit's neighbours, at the items' own columns
    if (back != native).nnz or spread.nnz != native.nnz:
        raise SystemExit("the fit over the wide columns found other neighbours than over the catalog's own")
    for name, width, wall, cpu in (
        ("catalog's width", rows.shape[1], native_wall, native_cpu),
        ("envelope's width", wide.shape[1], wide_wall, wide_cpu),
    ):
        print(
            f"{name:>16} ({width:>9,} columns): {wall:6.2f} s wall, {cpu:6.2f} s CPU; "
            f"{wall / products * 1e9:5.0f} ns wall, {cpu / products * 1e9:5.0f} ns CPU a product "
            f"({products / 1e6:,.1f} M products)"
        )
    print(
        json.dumps(
            {
                "products": products,
                "items": rows.shape[1],
                "width": wide.shape[1],
                "native": [round(native_wall, 3), round(native_cpu, 3)],
                "wide": [round(wide_wall, 3), round(wide_cpu, 3)],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
