"""Benchmark: shopwise's models against peer libraries, on one split per data set, in one run.

Every model — shopwise's and the peers' (``implicit`` ALS and BPR, plain all-time popularity) — gets the same
interactions, the same split, a tuning grid searched on a validation split cut from the training part by the same
protocol, and the same full-ranking evaluation (``shopwise_jobs.evaluation``: all items ranked, seen items
excluded, no sampled negatives). Only the test split is reported; it chooses nothing.

Data sets (interactions: a rating >= 4 is a purchase, lower a view, as the demo maps MovieLens; protocol
leave-last-5-out per user):
- ``synthetic``: ``shopwise simulate`` (8,000 shoppers, 60 days, seed 7), temporal split (the last 10% of time);
- ``ml-100k``: from the PyPI wheel recbole==1.2.1 (``pip download --no-deps`` into .local/cache; never committed);
- ``ml-latest-small``: ../shared/data/ml-latest-small.

    .venv/bin/python tests/bench/bench_models.py [--datasets synthetic,ml-100k,ml-latest-small] [--quick]
        [--synthetic-shoppers 8000]
    .venv/bin/python tests/bench/bench_models.py --sessions   # the session protocol: next click in a session

Prints a table per data set, writes .local/bench/models-<dataset>.json, and ends each data set with one JSON line
{"dataset", "k", "protocol", "models": {NAME: {"ndcg@10", "recall@20", "peer"}}, "best", "best_peer", "ratios"}.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for it; numpy's BLAS then runs single-threaded
import numpy as np
import pandas as pd

from shopwise_jobs.dataset import Split, leave_last_out, temporal_split
from shopwise_jobs.evaluation import Scorer
from shopwise_jobs.selection import Candidate, TrainSet, grid, select, shopwise_candidates
from shopwise_local.paths import REPO_ROOT, SHARED_DATA

CACHE = REPO_ROOT / ".local" / "cache"
OUT = REPO_ROOT / ".local" / "bench"
RECBOLE = "recbole==1.2.1"
SYNTHETIC_SHOPPERS = 8000  # enough test users that a 5% difference is about two standard errors
ML100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def _ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """user, item, rating, ts -> interactions (purchase for rating >= 4, view otherwise)."""
    kind = np.where(frame["rating"].to_numpy(dtype=float) >= 4.0, "purchase", "view")
    return pd.DataFrame(
        {
            "event_id": np.arange(len(frame)).astype(str),
            "user_id": frame["user"].astype(str).to_numpy(),
            "item_id": frame["item"].astype(str).to_numpy(),
            "kind": kind,
            "ts": frame["ts"].astype(np.float64).to_numpy(),
            "price": np.nan,
            "session_id": "",
            "market": "",
        }
    )


def ml_latest_small() -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = SHARED_DATA / "ml-latest-small"
    ratings = pd.read_csv(folder / "ratings.csv").rename(
        columns={"userId": "user", "movieId": "item", "timestamp": "ts"}
    )
    movies = pd.read_csv(folder / "movies.csv")
    catalog = pd.DataFrame(
        {
            "item_id": movies["movieId"].astype(str),
            "title": movies["title"],
            "category": "Movies>" + movies["genres"].str.split("|").str[0],
            "attributes": [{"genres": g.split("|")} for g in movies["genres"]],
        }
    )
    return _ratings(ratings), catalog


def ml_100k() -> tuple[pd.DataFrame, pd.DataFrame]:
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        print(f"fetching {RECBOLE} from PyPI into {CACHE} (pip download --no-deps) ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", RECBOLE, "-d", str(CACHE)], check=True
        )
        wheels = sorted(CACHE.glob("recbole-1.2.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        text = wheel.read(ML100K_MEMBER).decode()
        items_text = wheel.read(ML100K_MEMBER.replace(".inter", ".item")).decode("latin-1")
    ratings = pd.read_csv(io.StringIO(text), sep="\t")
    ratings.columns = ["user", "item", "rating", "ts"]
    items = list(csv.reader(io.StringIO(items_text), delimiter="\t"))
    header, rows = items[0], items[1:]
    frame = pd.DataFrame(rows, columns=[h.split(":")[0] for h in header])
    catalog = pd.DataFrame(
        {
            "item_id": frame["item_id"].astype(str),
            "title": frame["movie_title"],
            "category": "Movies>" + frame["class"].str.split(" ").str[0].fillna("Other"),
            "attributes": [{"genres": str(c).split(" ")} for c in frame["class"]],
        }
    )
    return _ratings(ratings), catalog


def synthetic(shoppers: int = SYNTHETIC_SHOPPERS) -> tuple[pd.DataFrame, pd.DataFrame]:
    from shopwise_jobs.dataset import read_catalog, read_event_import
    from shopwise_local.simulate import SimulationOptions, simulate

    folder = CACHE / f"synthetic-{shoppers}-seed7"
    if not (folder / "events.csv").exists():
        simulate(SimulationOptions(shoppers=shoppers, days=60, seed=7), folder, progress=False)
    return read_event_import(folder / "events.csv").interactions, read_catalog(folder / "items.csv")


DATASETS = {"synthetic": synthetic, "ml-100k": ml_100k, "ml-latest-small": ml_latest_small}


def split_for(name: str, interactions: pd.DataFrame) -> tuple[Split, Split]:
    """(validation, test): the test split of the whole, the validation split of its training part."""
    if name == "synthetic":
        test = temporal_split(interactions, 0.1)
        return temporal_split(test.train, 0.1), test
    test = leave_last_out(interactions, 5)
    return leave_last_out(test.train, 5), test


# ---- peers -----------------------------------------------------------------------------------------------------


def fit_plain_popularity(data: TrainSet, p: dict[str, Any]) -> Scorer:
    counts = np.bincount(
        pd.Index(data.items).get_indexer(data.interactions["item_id"]), minlength=len(data.items)
    ).astype(np.float32)
    return lambda users: np.broadcast_to(counts, (len(users), len(counts))).copy()


def _implicit_scorer(model: Any) -> Scorer:
    user_factors = np.asarray(model.user_factors)
    item_factors = np.asarray(model.item_factors)
    if user_factors.shape[1] != item_factors.shape[1]:  # BPR keeps a bias column on the item side only
        user_factors = user_factors[:, : item_factors.shape[1]]
    return lambda users: user_factors[users] @ item_factors.T


def fit_implicit_als(data: TrainSet, p: dict[str, Any]) -> Scorer:
    from implicit.als import AlternatingLeastSquares

    matrix = data.matrix().matrix.astype(np.float32) * float(p["alpha"])
    model = AlternatingLeastSquares(
        factors=int(p["factors"]), regularization=float(p["regularization"]), iterations=15, random_state=0
    )
    model.fit(matrix.tocsr(), show_progress=False)
    return _implicit_scorer(model)


def fit_implicit_bpr(data: TrainSet, p: dict[str, Any]) -> Scorer:
    from implicit.bpr import BayesianPersonalizedRanking

    matrix = data.matrix().matrix.astype(np.float32)
    model = BayesianPersonalizedRanking(
        factors=int(p["factors"]),
        learning_rate=float(p["learning_rate"]),
        regularization=float(p["regularization"]),
        iterations=int(p["iterations"]),
        random_state=0,
    )
    model.fit(matrix.tocsr(), show_progress=False)
    return _implicit_scorer(model)


def peers(quick: bool) -> list[Candidate]:
    """The peers, tuned as widely as shopwise's own families (issue 20): implicit ALS over regularization 0.1-100,
    alpha 1-40 and 64-256 factors; BPR over learning rate, regularization and factors."""
    return [
        Candidate("peer:popularity", [{}], fit_plain_popularity, peer=True),
        Candidate(
            "peer:implicit-als",
            grid(
                factors=[64] if quick else [64, 128, 256],
                regularization=[0.05] if quick else [0.1, 1.0, 10.0, 100.0],
                alpha=[5.0] if quick else [1.0, 10.0, 40.0],
            ),
            fit_implicit_als,
            peer=True,
        ),
        Candidate(
            "peer:implicit-bpr",
            grid(
                factors=[64] if quick else [64, 128, 256],
                learning_rate=[0.05] if quick else [0.01, 0.05, 0.1],
                regularization=[0.01] if quick else [0.001, 0.01, 0.1],
                iterations=[100],
            ),
            fit_implicit_bpr,
            peer=True,
        ),
    ]


# ---- run -------------------------------------------------------------------------------------------------------


def run(name: str, quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    interactions, catalog = DATASETS[name]()
    validation, test = split_for(name, interactions)
    print(
        f"\n== {name}: {len(interactions):,} interactions, {interactions['user_id'].nunique():,} users, "
        f"{interactions['item_id'].nunique():,} items; {test.protocol}: {len(test.test):,} test interactions of "
        f"{test.test['user_id'].nunique():,} users",
        flush=True,
    )
    n_items = len(set(interactions["item_id"]) | set(catalog["item_id"]))
    candidates = shopwise_candidates(n_items, has_catalog=len(catalog) > 0, budget="quick" if quick else "full")
    prices = None
    if "price" in catalog and catalog["price"].notna().any():
        prices = dict(zip(catalog["item_id"], catalog["price"], strict=True))
    results = select(candidates + peers(quick), validation, test, catalog, prices=prices, log=print)
    assert all(r.test is not None for r in results)
    print(
        f"\n{'model':<22}{'ndcg@10':>9}{'± se':>8}{'recall@20':>11}{'hit@10':>8}{'mrr':>7}{'cov@10':>8}{'pop@10':>8}"
        f"{'coldU ndcg@10':>15}{'coldI rec@20':>14}{'fit s':>7}  params"
    )
    for r in results:
        m = r.test.metrics  # type: ignore[union-attr]
        print(
            f"{r.name:<22}{m['ndcg@10']:>9.4f}{m['se/ndcg@10']:>8.4f}{m['recall@20']:>11.4f}{m['hitrate@10']:>8.3f}{m['mrr']:>7.3f}"
            f"{m['coverage@10']:>8.3f}{m['popularity@10']:>8.3f}{m.get('cold_users/ndcg@10', float('nan')):>15.4f}"
            f"{m.get('cold_items/recall@20', float('nan')):>14.4f}{r.fit_seconds:>7.1f}  {r.params}"
        )
    ours = [r for r in results if not r.peer]
    theirs = [r for r in results if r.peer]
    summary: dict[str, Any] = {"dataset": name, "k": 10, "protocol": test.protocol, "models": {}}
    for r in results:
        m = r.test.metrics  # type: ignore[union-attr]
        summary["models"][r.name] = {
            "ndcg@10": round(m["ndcg@10"], 5),
            "recall@20": round(m["recall@20"], 5),
            "se_ndcg@10": round(m["se/ndcg@10"], 5),
            "peer": r.peer,
        }
    ratios = {}
    for metric in ("ndcg@10", "recall@20"):
        best_ours = max(r.test.metrics[metric] for r in ours)  # type: ignore[union-attr]
        best_peer = max(r.test.metrics[metric] for r in theirs)  # type: ignore[union-attr]
        ratios[metric] = round(best_ours / best_peer, 4) if best_peer else None
    summary["best"] = max(ours, key=lambda r: r.test.metrics["ndcg@10"]).name  # type: ignore[union-attr]
    summary["best_peer"] = max(theirs, key=lambda r: r.test.metrics["ndcg@10"]).name  # type: ignore[union-attr]
    # what the training job would ship: the best of shopwise's on the validation split (results come sorted so)
    chosen = ours[0]
    summary["selected"] = chosen.name
    summary["selected_ratios"] = {
        metric: round(chosen.test.metrics[metric] / max(r.test.metrics[metric] for r in theirs), 4)  # type: ignore[union-attr]
        for metric in ("ndcg@10", "recall@20")
    }
    summary["ratios"] = ratios
    summary["seconds"] = round(time.perf_counter() - started, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    detail = {
        **summary,
        "split": test.describe(),
        "results": [
            {
                "name": r.name,
                "peer": r.peer,
                "params": r.params,
                "test": r.test.metrics,  # type: ignore[union-attr]
                "validation": r.validation,
                "tried": r.tried,
            }
            for r in results
        ],
    }
    (OUT / f"models-{name}.json").write_text(json.dumps(detail, indent=2, default=str))
    return summary


def _next_clicks(predict: Any, sessions: list[list[str]], on_screen_out: bool = False) -> Any:
    """Next-click scores of ``predict`` over every prefix. ``on_screen_out``: the product page's protocol — the
    prefix's newest item is the product on screen, never in its own page's list (serving leaves it out), so the
    list is the model's first 20 without it."""
    from shopwise_local.session_replay import N, Scores

    scores = Scores()
    for seq in sessions:
        for t in range(1, len(seq)):
            if on_screen_out:
                ranked = [i for i in predict(seq[:t], N + 1) if i != seq[t - 1]][:N]
            else:
                ranked = predict(seq[:t], N)
            scores.add(ranked, seq[t])
    return scores


def session_protocol(shoppers: int, held_out_share: float = 0.1, limit: int = 3000) -> dict[str, Any]:
    """Next click within a session, offline: the synthetic store's sessions in time order, the newest
    ``held_out_share`` held out (up to ``limit`` of them with 2+ views); every other view is a prefix whose next view
    is the answer. shopwise's session family — the sequential rules the training job fits (weighted 1/distance
    within ``window``; the session's last views weighted 1, ``recency``, ``recency``², ...; repeat-aware: the
    session's own items at ``repeat`` x ``repeat_decay`` ** age) — against session kNN (V-SKNN), first-order
    transitions and popularity, fitted on the same training sessions (``shopwise_local.session_replay``'s
    baselines: the replay's). The knobs of both session models are chosen on a validation split cut the same way
    from the training sessions (the newest 10% of them), then refitted on all of them; the test sessions choose
    nothing. HR@20 and MRR@20 over all next clicks, and on the product page's protocol (the product on screen —
    the prefix's newest item — never in the list, as serving does it)."""
    from shopwise_jobs.models import SequentialRules
    from shopwise_local.session_replay import Popularity, SessionKnn, Transitions, load_events, session_clicks

    synthetic(shoppers)  # the cached store
    clicks = session_clicks(load_events(CACHE / f"synthetic-{shoppers}-seed7" / "events.csv"))
    ordered = sorted(clicks, key=lambda s: clicks[s][0][0])
    items = sorted({item for seq in clicks.values() for _t, item in seq})
    index = {item: n for n, item in enumerate(items)}

    def cut(names: list[str]) -> tuple[list[str], list[list[str]]]:
        split = int(len(names) * (1 - held_out_share))
        held = [[i for _t, i in clicks[s]] for s in names[split:] if len(clicks[s]) >= 2][:limit]
        return names[:split], held

    def fitted(names: list[str], params: dict[str, Any]) -> dict[str, Any]:
        train = {s: [i for _t, i in clicks[s]] for s in names}
        ends = {s: clicks[s][-1][0] for s in names}
        popularity = Popularity(train)
        rules = SequentialRules.fit(([index[i] for i in seq] for seq in train.values()), len(items), params["window"])

        def sequential(prefix: list[str], n: int) -> list[str]:
            session = [[index[i] for i in prefix]]
            scores = rules.score_sessions(session, params["recency"], params["repeat"], params["repeat_decay"])[0]
            ranked = [items[j] for j in np.argsort(-scores)[:n] if scores[j] > 0]
            return (ranked + [i for i in popularity.top if i not in ranked])[:n]

        return {
            "popularity": popularity.predict,
            "transitions": Transitions(train, popularity).predict,
            "sknn (V-SKNN)": SessionKnn(train, ends, params["k"], params["sample"]).predict,
            "shopwise sequential": sequential,
        }

    started = time.time()
    training, test = cut(ordered)
    inner, validation = cut(training)
    # one stage after another, each keeping what the stages before chose
    stages: list[tuple[str, list[dict[str, Any]]]] = [
        ("shopwise sequential", [{"window": w, "recency": r} for w in (3, 5) for r in (0.1, 0.3, 0.5, 0.7)]),
        ("shopwise sequential", [{"repeat": a, "repeat_decay": d} for a in (0, 0.2, 0.5, 1.0) for d in (0.3, 0.7)]),
        ("sknn (V-SKNN)", [{"k": k, "sample": n} for k in (100, 200, 400, 800) for n in (500, 1000)]),
    ]
    chosen = {"window": 5, "recency": 0.5, "repeat": 0.0, "repeat_decay": 0.3, "k": 100, "sample": 500}
    tried: dict[str, list[dict[str, Any]]] = {}
    for name, knobs in stages:
        results = []
        for params in knobs:
            model = fitted(inner, {**chosen, **params})[name]
            scores = _next_clicks(model, validation)
            results.append({**params, "hr20": round(scores.hr, 4), "mrr20": round(scores.mrr, 4)})
        best = max(results, key=lambda r: r["hr20"] + r["mrr20"])
        chosen.update({k: best[k] for k in knobs[0]})
        tried.setdefault(name, []).extend(results)
    models = fitted(training, chosen)
    models["shopwise sequential, not repeat-aware"] = fitted(training, {**chosen, "repeat": 0.0})["shopwise sequential"]
    table: dict[str, dict[str, float]] = {}
    count = {}
    for protocol, on_screen_out in (("", False), ("product page: ", True)):
        for name, model in models.items():
            scores = _next_clicks(model, test, on_screen_out)
            figures = table.setdefault(name, {})
            figures[f"{protocol}hr20"] = round(scores.hr, 4)
            figures[f"{protocol}mrr20"] = round(scores.mrr, 4)
            count[protocol] = scores.count
    print(
        f"\nsession protocol (synthetic, {len(training)} training sessions, {len(test)} held out, "
        f"{count['']} next clicks; chosen on validation: {chosen})"
    )
    print(f"{'model':40} {'HR@20':>7} {'MRR@20':>7}   product page (on-screen item never listed): HR@20 MRR@20")
    for name, f in table.items():
        print(
            f"{name:40} {f['hr20']:7.3f} {f['mrr20']:7.3f}   "
            f"{f['product page: hr20']:42.3f} {f['product page: mrr20']:6.3f}"
        )
    ours = table["shopwise sequential"]
    return {
        "dataset": "synthetic",
        "protocol": "sessions: next click",
        "sessions": {"train": len(training), "test": len(test), "predictions": count[""]},
        "chosen": chosen,
        "tried": tried,
        "models": table,
        "ratios": {
            f"{m} vs {peer}": round(ours[m] / table[peer][m], 3)
            for peer in ("sknn (V-SKNN)", "transitions")
            for m in ("hr20", "mrr20", "product page: hr20", "product page: mrr20")
        },
        "seconds": round(time.time() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="synthetic,ml-100k,ml-latest-small")
    parser.add_argument("--quick", action="store_true", help="one configuration per model (smoke run)")
    parser.add_argument("--synthetic-shoppers", type=int, default=SYNTHETIC_SHOPPERS)
    parser.add_argument(
        "--sessions", action="store_true", help="the session protocol (next click) on the synthetic store only"
    )
    args = parser.parse_args()
    if args.sessions:
        print(json.dumps(session_protocol(args.synthetic_shoppers)), flush=True)
        return 0
    DATASETS["synthetic"] = functools.partial(synthetic, args.synthetic_shoppers)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}: choose from {', '.join(DATASETS)}")
    for name in names:
        summary = run(name, args.quick)
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
