"""How long one ``evaluation.evaluate`` takes as the catalog widens: what every configuration of tuning, every
family's test figures and each of the blend's ~60 weight trials pay.

A store of ``--users`` shoppers with a history of 20 items each over ``--items`` items (comma list), 5,000 of them
evaluated (tuning's ``TUNING_USERS``) on 3 test items each, scored over candidates (an ``evaluation.Ranked`` of 100
picks a user, as from 100,000 items every ranking is). Prints each width's median over ``--repeats`` runs and the
evaluation's peak Python allocations (tracemalloc).

A/B against another commit's code: the same command with ``PYTHONPATH`` at that commit's ``sagemaker_jobs`` (a
``git worktree``), which takes precedence over the installed package.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

import numpy as np
import pandas as pd
from scipy import sparse

from shopwise_jobs import evaluation
from shopwise_jobs.dataset import Matrix


def store(users: int, items: int, seed: int = 0) -> tuple[Matrix, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(users), 20)
    cols = rng.zipf(1.3, len(rows)) % items  # a long tail, as a store's
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(users, items))
    matrix.sum_duplicates()
    evaluated = rng.choice(users, min(5000, users), replace=False)
    test = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in np.repeat(evaluated, 3)],
            "item_id": [f"i{i}" for i in rng.integers(0, items, 3 * len(evaluated))],
        }
    )
    ids = Matrix(matrix, np.array([f"u{u}" for u in range(users)]), np.array([f"i{i}" for i in range(items)]))
    return ids, test


def ranked(items: int, seed: int = 1) -> evaluation.Scorer:
    rng = np.random.default_rng(seed)

    def scorer(users: np.ndarray) -> evaluation.Ranked:
        top = rng.integers(0, items, (len(users), 100))
        return evaluation.Ranked(top, np.sort(rng.random((len(users), 100)).astype(np.float32), axis=1)[:, ::-1])

    return scorer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"evaluation.py: {evaluation.__file__}")
    print(f"{'items':>10} {'median s':>9} {'min s':>7} {'peak MB':>8}")
    figures = []
    for items in (int(n) for n in args.items.split(",")):
        train, test = store(args.users, items)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            evaluation.evaluate(ranked(items), train, test)
            times.append(time.perf_counter() - started)
        tracemalloc.start()
        evaluation.evaluate(ranked(items), train, test)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"{items:>10,} {statistics.median(times):>9.3f} {min(times):>7.3f} {peak:>8.0f}", flush=True)
        figures.append({"items": items, "median_s": statistics.median(times), "peak_mb": round(peak, 1)})
    print(json.dumps({"users": args.users, "evaluated": min(5000, args.users), "figures": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
