"""Benchmark: batch transform throughput — users scored per second per core.

A synthetic store (``shopwise simulate``) is trained with each row-scoring model family; then, single-threaded
(OPENBLAS_NUM_THREADS=1, so the figures are per core), every user's top-K is produced by:
- ``shopwise``: the batch-transform path itself (``scoring.user_rows``: score, exclude owned items, top-K, the reason
  item for every pick, popular padding), as the SageMaker transform container runs it;
- ``baseline``: a bare numpy matmul of the same factors (iALS: fold-in user factors x item factors; EASE: history x
  weights) and ``argpartition`` top-K, nothing else — the floor any implementation pays.

    .venv/bin/python tests/bench/bench_transform.py [--shoppers 20000] [--k 50] [--repeats 3]
    .venv/bin/python tests/bench/bench_transform.py --catalogs 1500,20000,200000
    .venv/bin/python tests/bench/bench_transform.py --overlap .local/cache/scale-100000-14d/model
    .venv/bin/python tests/bench/bench_transform.py --histories .local/cache/scale-300000-14d/model-envelope \
        --factors 1,13 --baseline
    .venv/bin/python tests/bench/bench_transform.py --workers-memory 4 --models ease --items 12000

``--overlap MODEL_DIR``: a trained model's first 4,096 shoppers' lists (top 50) over every item and over candidates,
their milliseconds a user and the share of the dense top 10 and top 50 the candidate lists hold (``make scale``
leaves a model per size under ``.local/cache/``).

``--histories MODEL_DIR [--factors 1,4,13]``: the transform's own path over candidates (one core) on a trained
model, its shoppers' histories made ``factor`` times as long (each row the sum of as many shoppers' rows, drawn at
random): what a user costs at the envelope's 260 events a shopper (13x the simulated stores' 20), where ``make
scale`` can only grow a store's whole transform in events. With ``--baseline``, each length is also scored with
the scoring at candidates as it was before (``candidates.gather`` sorting the product's indices, then searching them:
``gather_by_sorting``; Affinity's scores from its shares row-indexed by pair: ``affinity_by_rows``), the two
alternated, best of ``--repeats``, and the ratio printed.

``--workers-memory 4``: the memory of a transform instance's workers, each loading the model (trained on the
``--shoppers`` store with the first of ``--models``) and scoring its share of the users, as the model is read now
(memory-mapped: the workers share the files' pages) and as it was read before (every array copied into each
worker's memory): each worker's private MB and the instance's total (the sum of the workers' proportional set sizes,
Linux's ``/proc/self/smaps_rollup``).

``--catalogs``: scoring over candidates (``shopwise_jobs.candidates``, what the transform does from
``CANDIDATES_FROM_ITEMS`` items) against every item (``model.score`` + ``top_k``), on random models of each catalog
size (item-kNN: 100 neighbours an item; iALS: 64 factors, items in 64 clusters) and 512 shoppers of 20 items each:
milliseconds a user, the ratio, and the share of the dense top K the candidate lists hold (item-kNN's candidates
are exact; iALS's come from an inverted-file index from ``FACTOR_INDEX_FROM_ITEMS`` items, its build time printed apart:
once per model and worker process).

Ends with one JSON line: {"users", "items", "k", "models": {NAME: {"users_per_s_per_core", "baseline_users_per_s",
"ratio"}}}; for EASE also the share of top-10 picks that get a reason, capped search vs exhaustive.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shopwise_jobs.artifacts import TrainedModel
from shopwise_jobs.models import top_k, top_k_per_row
from shopwise_jobs.scoring import REASON_NEIGHBOURS, REASON_OWNED, explain, user_rows
from shopwise_jobs.training import train_files
from shopwise_local.paths import REPO_ROOT
from shopwise_local.simulate import SimulationOptions, simulate

CACHE = REPO_ROOT / ".local" / "cache"


def baseline(model: TrainedModel, k: int) -> float:
    """Seconds for numpy alone: the model's own user representation x item matrix, then argpartition top-K."""
    started = time.perf_counter()
    chunk = 512
    for start in range(0, len(model.users), chunk):
        rows = model.history[start : start + chunk]
        if model.kind == "ials":
            scores = model.model.user_factors(rows) @ model.model.item_factors.T
        elif model.kind == "ease":
            scores = rows[:, model.model.kept] @ model.model.weights
        else:
            scores = (rows @ model.model.similarity).toarray()
        np.argpartition(-scores, k, axis=1)[:, :k]
    return time.perf_counter() - started


def reason_coverage(model: TrainedModel, k: int, users: int = 4096) -> dict[str, float]:
    """Share of top-10 picks that get a reason item: the capped search the transform runs, and an exhaustive one
    (every owned item, every neighbour), with the seconds each took."""
    rows = model.history[:users]
    picks, _ = top_k(model.model.score(rows), k, rows)
    out: dict[str, float] = {}
    for name, owned, similarity in (
        ("capped", top_k_per_row(rows, REASON_OWNED), top_k_per_row(model.similar.similarity, REASON_NEIGHBOURS)),
        ("exhaustive", rows, model.similar.similarity),
    ):
        started = time.perf_counter()
        because = explain(owned, similarity, picks)
        out[f"reason_top10_{name}"] = round(float((because[:, :10] >= 0).mean()), 3)
        out[f"reason_seconds_{name}"] = round(time.perf_counter() - started, 3)
    return out


def shopwise(model: TrainedModel, k: int) -> float:
    started = time.perf_counter()
    for _row in user_rows(model, k):
        pass
    return time.perf_counter() - started


def catalog_curve(sizes: list[int], k: int, owned_each: list[int] | None = None) -> dict[str, Any]:
    from scipy import sparse

    from shopwise_jobs import candidates
    from shopwise_jobs.models import IALS, ItemKNN

    rng = np.random.default_rng(0)
    users, neighbours = 512, 100
    centres = rng.standard_normal((64, 64))
    out: dict[str, Any] = {}
    for n_items, owned in ((n, o) for n in sizes for o in owned_each or [20]):
        similarity = sparse.csr_matrix(
            (
                rng.random(n_items * neighbours).astype(np.float32),
                (np.repeat(np.arange(n_items), neighbours), rng.integers(0, n_items, n_items * neighbours)),
            ),
            shape=(n_items, n_items),
        )
        history = sparse.csr_matrix(
            (
                np.ones(users * owned, np.float32),
                (np.repeat(np.arange(users), owned), rng.integers(0, n_items, users * owned)),
            ),
            shape=(users, n_items),
        )
        models: dict[str, Any] = {
            "itemknn": ItemKNN(similarity=similarity),
            # factors with the structure a fitted model's have (items in 64 clusters), not isotropic noise
            "ials": IALS(
                item_factors=(
                    centres[rng.integers(0, len(centres), n_items)] + 0.5 * rng.standard_normal((n_items, 64))
                ).astype(np.float32)
                * 0.1,
                alpha=10.0,
                regularization=1,
            ),
        }
        for name, model in models.items():
            figures: dict[str, Any] = {}
            if isinstance(model, IALS) and n_items >= candidates.FACTOR_INDEX_FROM_ITEMS:
                figures["index_build_s"] = round(_seconds(lambda m=model: candidates.factor_index(m)), 1)
            dense = statistics.median(_seconds(lambda m=model, h=history: top_k(m.score(h), k, h)) for _ in range(3))
            cand = statistics.median(
                _seconds(lambda m=model, h=history: candidates.recommend(m, h, k, max(100, 2 * k))) for _ in range(3)
            )
            want = top_k(model.score(history), k, history)[0]
            got = candidates.recommend(model, history, k, max(100, 2 * k))[0]
            shared = [
                len(set(w[w >= 0]) & set(g[g >= 0])) / max(int((w >= 0).sum()), 1)
                for w, g in zip(want, got, strict=True)
            ]
            figures |= {
                "dense_ms_per_user": round(dense * 1000 / users, 3),
                "candidates_ms_per_user": round(cand * 1000 / users, 3),
                "speedup": round(dense / cand, 2),
                "top_k_overlap": round(float(np.mean(shared)), 3),
            }
            out[f"{name}@{n_items}" + (f"x{owned}" if owned_each else "")] = figures
            print(
                f"{n_items:>9,} items {owned:>4} owned {name:<8} every item {figures['dense_ms_per_user']:>7.3f} ms/user   candidates "
                f"{figures['candidates_ms_per_user']:>7.3f} ms/user   x{figures['speedup']}   top-{k} overlap "
                f"{figures['top_k_overlap']:.3f}"
                + (f"   (index built in {figures['index_build_s']} s)" if "index_build_s" in figures else ""),
                flush=True,
            )
    return out


def overlap(model_dir: Path, k: int, users: int = 4096) -> dict[str, float]:
    import dataclasses

    model = TrainedModel.load(model_dir)
    model = dataclasses.replace(model, users=model.users[:users], history=model.history[:users])
    lists, out = {}, {}
    for name, start in (("every_item", 10**12), ("candidates", 0)):
        started = time.perf_counter()
        lists[name] = [[p[0] for p in row["items"]] for row in user_rows(model, k, candidates_from=start)]
        out[f"{name}_ms_per_user"] = round((time.perf_counter() - started) * 1000 / len(model.users), 3)
    for top in (10, k):
        shared = sum(
            len(set(a[:top]) & set(b[:top])) for a, b in zip(lists["every_item"], lists["candidates"], strict=True)
        )
        out[f"top{top}_overlap"] = round(shared / (top * len(model.users)), 4)
    print(f"{model_dir}: {len(model.users):,} shoppers x {len(model.items):,} items: {out}", flush=True)
    return out


def gather_by_sorting(product: Any, at: Any) -> np.ndarray:
    """``candidates.gather`` as it was before a dense buffer: the product's indices sorted (``sum_duplicates``), then
    every wanted position searched in its row-major keys. The baseline of ``--histories --baseline``."""

    def keys(matrix: Any) -> np.ndarray:
        rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
        return rows * matrix.shape[1] + matrix.indices

    product = product.tocsr()
    product.sum_duplicates()
    have, want = keys(product), keys(at)
    out = np.zeros(len(want), dtype=np.float32)
    if not len(have):
        return out
    pos = np.minimum(np.searchsorted(have, want), len(have) - 1)
    hit = have[pos] == want
    out[hit] = product.data[pos[hit]]
    return out


def affinity_by_rows(model: Any, rows: Any, at: Any, user_of: np.ndarray) -> np.ndarray:
    """``candidates._affinity_at`` as it was: the shoppers' shares row-indexed by pair (pairs x every attribute the
    shopper has), times the items' rows. The baseline of ``--histories --baseline``."""
    from shopwise_jobs import candidates

    shares = candidates._affinity(model, rows)[user_of]
    return np.asarray(shares.multiply(candidates._by_item(model)[at.indices]).sum(axis=1), dtype=np.float32).ravel()


def histories(
    model_dir: Path,
    k: int,
    factors: list[int],
    users: int = 2048,
    seed: int = 0,
    baseline: bool = False,
    repeats: int = 1,
) -> dict[str, Any]:
    """The transform's path (``user_rows`` over candidates, one core) on a trained model, for shoppers whose
    histories are ``factor`` times as long as the store's: each row the sum of ``factor`` of its shoppers' rows drawn
    at random. Random shoppers' items spread over more of the catalog than one shopper's longer history would (fewer
    shared neighbours), so the longer rows' cost is an upper bound of a real shopper's with as many events.
    ``baseline``: each length timed with ``gather_by_sorting`` and ``affinity_by_rows`` too (alternated, best of
    ``repeats``)."""
    import dataclasses

    from scipy import sparse

    from shopwise_jobs import candidates

    model = TrainedModel.load(model_dir)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    # once before the clock: what a worker computes once per model (the reasons' neighbours, the truncated weights)
    for _row in user_rows(dataclasses.replace(model, users=model.users[:256], history=model.history[:256]), k, 0, 1, 0):
        pass
    for factor in factors:
        picks = rng.integers(0, len(model.users), users * factor)
        summed = sparse.csr_matrix(
            (np.ones(users * factor, np.float32), (np.repeat(np.arange(users), factor), picks)),
            shape=(users, len(model.users)),
        )
        rows = (summed @ model.history).tocsr()
        sized = dataclasses.replace(model, users=model.users[:users], history=rows)

        def timed(sized: Any = sized) -> float:
            started = time.perf_counter()
            for _row in user_rows(sized, k, candidates_from=0):
                pass
            return (time.perf_counter() - started) * 1000 / users

        now: list[float] = []
        before: list[float] = []
        current = candidates.gather, candidates._affinity_at
        for _ in range(repeats if baseline else 1):
            now.append(timed())
            if baseline:
                candidates.gather, candidates._affinity_at = gather_by_sorting, affinity_by_rows
                try:
                    before.append(timed())
                finally:
                    candidates.gather, candidates._affinity_at = current
        ms = min(now)
        owned = float(np.diff(rows.indptr).mean())
        out[f"x{factor}"] = {
            "items_a_shopper": round(owned, 1),
            "ms_per_user": round(ms, 3),
            "users_per_s": round(1000 / ms),
        }
        line = (
            f"{model_dir}: histories x{factor:<3} {owned:>6.1f} items a shopper   {ms:7.3f} ms a user   "
            f"{1000 / ms:>7,.0f} users/s on one core"
        )
        if baseline:
            out[f"x{factor}"]["before_ms_per_user"] = round(min(before), 3)
            line += f"   (before: {min(before):.3f} ms, {min(before) / ms:.2f}x)"
        print(line, flush=True)
    return out


def _in_memory(model: TrainedModel) -> TrainedModel:
    """The model with every array copied into this process's memory: how a model directory was read before."""
    import copy
    import dataclasses

    from scipy import sparse

    def owned(value: Any) -> Any:
        if sparse.issparse(value):
            return value.copy()
        if isinstance(value, np.ndarray):
            return np.array(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.replace(
                value, **{f.name: owned(getattr(value, f.name)) for f in dataclasses.fields(value)}
            )
        if isinstance(value, list):
            return [owned(v) for v in value]
        return copy.copy(value)

    return owned(model)  # type: ignore[no-any-return]


def _worker(model_dir: str, share: int, shares: int, copied: bool, k: int) -> dict[str, float]:
    import dataclasses

    model = TrainedModel.load(Path(model_dir))
    if copied:
        model = _in_memory(model)
    mine = dataclasses.replace(model, users=model.users[share::shares], history=model.history[share::shares])
    sum(1 for _ in user_rows(mine, k))
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024  # kB -> MB
    return {"pss_mb": fields["Pss"], "private_mb": fields["Private_Clean"] + fields["Private_Dirty"]}


def workers_memory(model_dir: Path, workers: int, k: int) -> dict[str, Any]:
    import multiprocessing

    out: dict[str, Any] = {}
    context = multiprocessing.get_context("spawn")  # nothing inherited: each worker loads the model itself
    for name, copied in (("memory_mapped", False), ("copied_before", True)):
        with context.Pool(workers) as pool:
            got = pool.starmap(_worker, [(str(model_dir), n, workers, copied, k) for n in range(workers)])
        out[name] = {
            "private_mb_per_worker": round(statistics.mean(g["private_mb"] for g in got), 1),
            "instance_total_mb": round(sum(g["pss_mb"] for g in got), 1),
        }
        print(f"{name:<14} {workers} workers: {out[name]}", flush=True)
    size = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
    out["model_dir_mb"] = round(size / 2**20, 1)
    return out


def _seconds(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=20000)
    parser.add_argument("--items", type=int, default=1500, help="the simulated store's catalog")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="ials,ease,itemknn")
    parser.add_argument("--overlap", default="", help="a trained model folder: candidates' lists against dense ones")
    parser.add_argument("--catalogs", default="", help="catalog sizes: candidates against every item, and stop")
    parser.add_argument(
        "--owned",
        default="",
        help="with --catalogs: items a shopper owns, each size (default 20); the envelope's "
        "shoppers have about 260 events in a 30-day window",
    )
    parser.add_argument(
        "--histories",
        default="",
        help="a trained model folder: the transform over candidates with its shoppers' histories --factors times as "
        "long",
    )
    parser.add_argument("--factors", default="1,4,13", help="with --histories: each history length's multiple")
    parser.add_argument("--users", type=int, default=2048, help="with --histories: shoppers scored at each length")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="with --histories: also time the scoring at candidates as it was (gather_by_sorting, affinity_by_rows), "
        "alternated, best of --repeats",
    )
    parser.add_argument("--workers-memory", type=int, default=0, help="WORKERS: a transform instance's memory")
    args = parser.parse_args()
    if args.overlap:
        print(json.dumps({"k": args.k, "overlap": overlap(Path(args.overlap), args.k)}))
        return 0
    if args.histories:
        factors = [int(n) for n in args.factors.split(",")]
        print(
            json.dumps(
                {
                    "k": args.k,
                    "histories": histories(
                        Path(args.histories), args.k, factors, args.users, 0, args.baseline, args.repeats
                    ),
                }
            )
        )
        return 0
    if args.catalogs:
        owned = [int(n) for n in args.owned.split(",")] if args.owned else None
        sizes = [int(n) for n in args.catalogs.split(",")]
        print(json.dumps({"k": args.k, "catalogs": catalog_curve(sizes, args.k, owned)}))
        return 0
    data = CACHE / (f"transform-{args.shoppers}" + (f"x{args.items}" if args.items != 1500 else ""))
    if not (data / "events.csv").exists():
        simulate(SimulationOptions(shoppers=args.shoppers, days=60, seed=11, items=args.items), data, progress=True)
    out: dict[str, Any] = {"k": args.k, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models.split(","):
            model_dir = Path(tmp) / kind
            train_files(
                data / "events.csv",
                data / "items.csv",
                model_dir,
                {"budget": "quick", "models": kind, "consent": "assumed"},  # every shopper: throughput per user
                log=lambda _line: None,
            )
            if args.workers_memory:  # the first family's model only
                print(json.dumps({"workers_memory": workers_memory(model_dir, args.workers_memory, args.k)}))
                return 0
            model = TrainedModel.load(model_dir)
            out["users"], out["items"] = len(model.users), len(model.items)
            ours = [shopwise(model, args.k) for _ in range(args.repeats)]
            floor = [baseline(model, args.k) for _ in range(args.repeats)]
            users = len(model.users)
            result: dict[str, float] = {
                "users_per_s_per_core": round(users / statistics.median(ours)),
                "baseline_users_per_s": round(users / statistics.median(floor)),
            }
            result["ratio"] = round(result["users_per_s_per_core"] / result["baseline_users_per_s"], 3)
            if kind == "ease":
                result.update(reason_coverage(model, args.k))
            out["models"][kind] = result
            print(
                f"{kind:<10} shopwise {result['users_per_s_per_core']:>9,} users/s/core   numpy floor "
                f"{result['baseline_users_per_s']:>9,} users/s   ratio {result['ratio']:.3f}   "
                f"({users:,} users x {len(model.items):,} items, median of {args.repeats})",
                flush=True,
            )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
