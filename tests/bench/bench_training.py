"""Benchmark: the training job's choices for large stores, each against what it replaced, in one run.

    .venv/bin/python tests/bench/bench_training.py [--parts ids,itemknn,sample] [--store DIR]

- ``ids``: coding 2 M Arrow-string ids into a sorted universe of 100,000 with ``shopwise_jobs.ids.codes_in`` against
  pandas' ``get_indexer`` (what every part of the fit did), best of 3.
- ``itemknn``: item-kNN alone (100 neighbours, shrinkage 10) on the model benchmark's test splits of ML-100K and
  ml-latest-small (``bench_models.split_for``), its co-occurrences over each shopper's most recent 0 (all), 100, 200
  and 500 items (``ITEMKNN_HISTORY``): NDCG@10, Recall@20 and the pairs counted.
- ``sample``: tuning on every shopper against tuning on a third of them (``SHOPWISE_TUNING_INTERACTIONS``), on
  ``make scale``'s 30,000-shopper store (simulated if missing) with ``--hp budget=quick``: both chosen recipes refitted
  on the whole store's training split and scored on its test split (a few minutes).
- ``served`` (not run by default): the served fit's parts in columns over every event — the sessions, the next-item
  rules, the segment lists, the bestsellers and a decayed interaction matrix (a half-life of 60 days, what a
  blend's part with one reads) — on a ``make scale`` store (``--store``, default the
  300,000-shopper one, else the 30,000), each best of 3: wall, CPU and the share of its work in parallel on this
  machine's cores (what ``make scale`` reads their time on the instance from) — once in the chunks this machine cuts
  (a chunk a thread: the 300,000-shopper store's 5.6 M rows in 2), and once chunked as at the envelope
  (``ENVELOPE_CHUNKS_A_THREAD``, 6 a thread), with the ratio: ``make scale``'s stores are 2 chunks at every size, so
  a cost paid once a chunk (a sum on the calling thread, a table rebuilt for each chunk) shows on no curve, only
  here. Run it with another commit's code on ``PYTHONPATH`` for the figures before a change;
  ``SHOPWISE_FIT_CHUNK_ROWS=65536`` sets the first run's chunks (85 here).
- ``first`` (not run by default): the served fit's first stretch in the job's order — the served set's ids and every
  row's codes, the history matrix, the inputs, the bestsellers, the segment lists — in fresh child processes, as the
  job runs it once in its own: each part's first call, then the bestsellers and segment lists called again in the same
  process (memory the process has touched before). Two children with NumPy's transparent huge pages on
  (``NUMPY_MADVISE_HUGEPAGE=1``) and two off, alternated, on the same store as ``served``: where this machine's
  balloon reports free pages to its host (``shopwise_local.machine``), a fresh huge page comes back 4 KB at a time and
  the first calls, not the second, show it. The best of 3 in ``served`` hides it.

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from shopwise_local.machine import numpy_pages  # before NumPy: what its arrays' pages are on this machine

PAGES = numpy_pages()
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shopwise_local.paths import REPO_ROOT  # noqa: E402

STORE = REPO_ROOT / ".local" / "cache" / "scale-30000-14d"
# the envelope's chunks a thread in the served fit's column work: 2.6 B events in chunks of 4 M rows
# (models.FIT_CHUNK_ROWS) over the training instance's 96 vCPUs
ENVELOPE_CHUNKS_A_THREAD = round(2.6e9 / (1 << 22) / 96)


def ids() -> dict[str, float]:
    from shopwise_jobs.ids import codes_in

    rng = np.random.default_rng(0)
    universe = np.array([f"c:cust-{n:07d}" for n in range(100_000)])
    values = pd.Series(universe[rng.integers(0, len(universe), 2_000_000)], dtype="str")

    def best(run: Any) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    arrow = best(lambda: codes_in(values, universe))
    pandas = best(lambda: pd.Index(universe).get_indexer(values.astype(str)))
    assert np.array_equal(codes_in(values, universe), pd.Index(universe).get_indexer(values))
    print(f"2 M ids: codes_in {arrow:.2f} s, pandas get_indexer {pandas:.2f} s ({pandas / arrow:.1f}x)")
    return {"codes_in_s": round(arrow, 3), "get_indexer_s": round(pandas, 3)}


def itemknn() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_models

    from shopwise_jobs import selection
    from shopwise_jobs.evaluation import KS, evaluate

    out: dict[str, Any] = {}
    for name, loader in (("ml-100k", bench_models.ml_100k), ("ml-latest-small", bench_models.ml_latest_small)):
        interactions, catalog = loader()
        _validation, test = bench_models.split_for(name, interactions)
        for cap in (0, 100, 200, 500):
            selection.ITEMKNN_HISTORY = cap
            data = selection.train_set(test.train, test.test, catalog)
            pairs = float((np.diff(data.recent(cap).indptr).astype(float) ** 2).sum())
            scorer = selection.model_fit("itemknn")(data, {"neighbours": 100, "shrinkage": 10.0})
            figures = evaluate(scorer, data.matrix(), test.test, KS).metrics
            row = {"ndcg@10": round(figures["ndcg@10"], 4), "recall@20": round(figures["recall@20"], 4), "pairs": pairs}
            out[f"{name} cap {cap}"] = row
            over = f"each shopper's {cap} most recent items" if cap else "every item"
            print(f"{name}, over {over}: {row}", flush=True)
    return out


def served(store: Path) -> dict[str, Any]:
    from shopwise_jobs import models, training
    from shopwise_jobs.apart import cpu_seconds
    from shopwise_jobs.dataset import interaction_matrix, read_catalog, read_event_import, sessions
    from shopwise_jobs.models import SequentialRules

    frame = training.fit_frame(read_event_import(store / "events.csv").interactions)
    catalog = read_catalog(store / "items.csv")
    hp = training.Hyperparameters.parse({"budget": "quick"})
    # as the job's part "ids": every row coded once, the served rows' views of it
    data, coded = training.served_and_every_row(training.personal_interactions(frame, hp), frame, catalog, hp)
    cores = os.cpu_count() or 1

    def best(run: Any) -> dict[str, float]:
        figures = []
        for _ in range(3):
            wall, cpu = time.perf_counter(), cpu_seconds()
            run()
            figures.append((time.perf_counter() - wall, cpu_seconds() - cpu))
        wall, cpu = min(figures)
        speedup = min(max(cpu / wall, 1.0), cores)
        share = (1 - 1 / speedup) / (1 - 1 / cores) if cores > 1 else 0.0
        return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "parallel_share": round(share, 2)}

    flat = sessions(data.interactions, data.items, codes=data.codes())
    served_rows = data.coded()

    def decayed() -> Any:  # what TrainSet.matrix(60.0) builds, a blend's part with a half-life of 60 days
        return interaction_matrix(
            data.interactions, data.weights, 60.0, users=data.users, items=data.items, codes=data.codes(),
            strengths=served_rows.weights, ts=served_rows.ts,
        )  # fmt: skip

    def parts() -> dict[str, dict[str, float]]:
        return {
            "sessions": best(lambda: sessions(data.interactions, data.items, codes=data.codes())),
            "next-item rules": best(lambda: SequentialRules.fit(flat, len(data.items), 5)),
            "segment lists": best(lambda: training.served_segments(frame, catalog, data, coded, hp)),
            # the job's part "popularity": every row's codes counted
            "bestsellers": best(lambda: coded.popularity(None, hp.popular_window_days)),
            "decayed matrix": best(decayed),
        }

    own_rows = models.FIT_CHUNK_ROWS
    envelope_rows = max(1, -(-len(frame) // (ENVELOPE_CHUNKS_A_THREAD * cores)))
    own = parts()
    try:
        models.FIT_CHUNK_ROWS = envelope_rows  # read by models.chunk_bounds at each call
        enveloped = parts()
    finally:
        models.FIT_CHUNK_ROWS = own_rows
    referred = frame.loc[frame["referrer"].fillna("") != "", "session_id"].nunique() if "referrer" in frame else 0
    print(
        f"{len(frame):,} events ({referred:,} referred sessions) on {cores} cores; chunks of at most {own_rows:,} "
        f"rows, and {envelope_rows:,}"
    )
    for part, row in own.items():
        ratio = enveloped[part]["wall_s"] / max(row["wall_s"], 1e-9)
        print(f"{part}: {row}; chunked as at the envelope {enveloped[part]} ({ratio:.2f}x the wall)", flush=True)
    return {
        "events": len(frame),
        "referred sessions": int(referred),
        "chunk_rows": {"own": own_rows, "as at the envelope": envelope_rows},
        "own chunks": own,
        "chunked as at the envelope": enveloped,
    }


FIRST_REPEATS = 2  # children a setting, alternated


def first(store: Path) -> dict[str, Any]:
    from shopwise_jobs import training
    from shopwise_jobs.dataset import read_event_import

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=REPO_ROOT / ".local") as tmp:
        # read once here: each child unpickles the frame, the job's own reading left out of the stretch timed
        frame_path = Path(tmp) / "frame.pkl"
        training.fit_frame(read_event_import(store / "events.csv").interactions).to_pickle(frame_path)
        runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": [], "warm-up": []}
        # a child first, not counted: the one after a change imports what the stretch reads from cold files
        for setting, value in [("warm-up", "0")] + [("on", "1"), ("off", "0")] * FIRST_REPEATS:
            child = subprocess.run(
                [sys.executable, __file__, "--first-stretch-of", str(frame_path), "--store", str(store)],
                env={**os.environ, "NUMPY_MADVISE_HUGEPAGE": value},
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[setting].append(json.loads(child.stdout.splitlines()[-1]))
    del runs["warm-up"]
    for setting, children in runs.items():
        parts = {
            part: {"wall_s": [c[part]["wall_s"] for c in children], "cpu_s": [c[part]["cpu_s"] for c in children]}
            for part in children[0]
        }
        out[f"huge pages {setting}"] = parts
        for part, figures in parts.items():
            walls = ", ".join(f"{w:.3f}" for w in figures["wall_s"])
            print(
                f"huge pages {setting}, {part}: {walls} s (CPU {', '.join(map(str, figures['cpu_s']))} s)", flush=True
            )
    return out


def first_stretch(frame_path: Path, store: Path) -> dict[str, dict[str, float]]:
    """In a child of ``first``: the stretch timed, a part at a time, in the job's order (fit_and_select)."""
    from shopwise_jobs import training
    from shopwise_jobs.apart import cpu_seconds
    from shopwise_jobs.dataset import read_catalog
    from shopwise_jobs.selection import ITEMKNN_HISTORY

    everyone = pd.read_pickle(frame_path)
    catalog = read_catalog(store / "items.csv")
    hp = training.Hyperparameters.parse({"budget": "quick"})
    personal = training.personal_interactions(everyone, hp)
    everyone = everyone.reset_index(drop=True)
    figures: dict[str, dict[str, float]] = {}

    def timed(part: str, run: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), cpu_seconds()
        out = run()
        figures[part] = {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(cpu_seconds() - cpu, 3)}
        return out

    data, coded = timed("ids", lambda: training.served_and_every_row(personal, everyone, catalog, hp))
    timed("matrix", data.matrix)
    timed("inputs", lambda: (data.codes(), data.recent(ITEMKNN_HISTORY)))

    for call in ("", " again"):
        timed(f"bestsellers{call}", lambda: coded.popularity(None, hp.popular_window_days))
        timed(f"segment lists{call}", lambda: training.served_segments(everyone, catalog, data, coded, hp))
    return figures


def sample() -> dict[str, Any]:
    from shopwise_jobs import training
    from shopwise_jobs.dataset import read_catalog, read_event_import, split
    from shopwise_jobs.evaluation import KS, evaluate
    from shopwise_jobs.selection import model_fit, train_set

    if not (STORE / "events.csv").exists():
        import subprocess

        subprocess.run(
            [str(Path(sys.executable).with_name("shopwise")), "simulate", "--shoppers", "30000", "--items", "4655",
             "--days", "14", "--out", str(STORE), "--no-progress"],
            check=True, capture_output=True,
        )  # fmt: skip
    interactions = read_event_import(STORE / "events.csv").interactions
    catalog = read_catalog(STORE / "items.csv")
    hp = training.Hyperparameters.parse({"budget": "quick"})
    personal = training.personal_interactions(interactions, hp)
    test = split(personal, hp.protocol, hp.test_fraction, hp.holdout)
    outer = train_set(test.train, test.test, catalog, hp.kind_weights())
    prices = dict(zip(catalog["item_id"], catalog["price"].astype(float), strict=True))
    out: dict[str, Any] = {}
    for label, cap in (("every shopper", len(personal)), ("a third", len(personal) // 3)):
        training.TUNING_INTERACTIONS = cap
        _model, metrics = training.fit_and_select(interactions, catalog, hp, "bench", log=lambda _line: None)
        scored = evaluate(
            model_fit(metrics["selected"])(outer, metrics["params"]), outer.matrix(), test.test, KS, prices
        )
        row = {k: round(scored.metrics[k], 4) for k in ("ndcg@10", "recall@20", "hitrate@10")}
        out[label] = {"recipe": metrics["summary"], **row}
        print(f"tuned on {label}: {metrics['summary']}; on the whole store's test split {row}", flush=True)
    return out


PARTS: dict[str, Any] = {"ids": ids, "itemknn": itemknn, "sample": sample, "served": served, "first": first}
LARGE = REPO_ROOT / ".local" / "cache" / "scale-300000-14d"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="ids,itemknn,sample", help=f"of: {', '.join(PARTS)}")
    parser.add_argument(
        "--store", type=Path, default=LARGE if (LARGE / "events.csv").exists() else STORE, help="served's store"
    )
    parser.add_argument("--first-stretch-of", type=Path, help=argparse.SUPPRESS)  # a child of ``first``
    args = parser.parse_args()
    if args.first_stretch_of:
        print(json.dumps(first_stretch(args.first_stretch_of, args.store)))
        return 0
    wanted = [p.strip() for p in args.parts.split(",")]
    if unknown := set(wanted) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}: expected some of {', '.join(PARTS)}")
    if {"served", "first"} & set(wanted) and not (args.store / "events.csv").exists():
        parser.error(f"{args.store} holds no events.csv: run make scale (or SCALE_SHOPPERS=...) first")
    runs: dict[str, Callable[[], Any]] = {
        **PARTS,
        "served": lambda: served(args.store),
        "first": lambda: first(args.store),
    }
    print(PAGES, flush=True)
    print(json.dumps({"pages": PAGES, **{part: runs[part]() for part in wanted}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
