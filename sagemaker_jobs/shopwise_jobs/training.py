"""The training job: build the data set, tune and select a model on a validation split, report it on the test split,
refit on everything, write the model directory and metrics.json. Runs under the SageMaker script-mode contract
(``contract.py``) and, from the CLI, on plain folders and files (``shopwise train --events F --items F --out D``).
"""

from __future__ import annotations

import json
import os
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy import sparse

from shopwise.catalog import categories
from shopwise.dal.erasures import pending_targets
from shopwise.features.definitions import KIND_WEIGHTS, Context
from shopwise.lifecycle.figures import TrainingMetrics
from shopwise.privacy.tombstones import Targets
from shopwise_jobs.apart import Apart, cpu_seconds
from shopwise_jobs.artifacts import TrainedModel
from shopwise_jobs.contract import TrainingContract, run_job
from shopwise_jobs.dataset import EventData, Split, read_catalog, read_events_any, split
from shopwise_jobs.drift import event_mix
from shopwise_jobs.evaluation import KS, Evaluation, evaluate
from shopwise_jobs.feature_snapshot import FeatureSnapshot
from shopwise_jobs.ids import codes_in, distinct, first_of_each, nonblank
from shopwise_jobs.memory import Phases, array_bytes
from shopwise_jobs.models import (
    CONTENT_ANN_FROM_ITEMS,
    EASE_MAX_ITEMS,
    FIT_THREADS,
    ITEMKNN_HISTORY,
    CodedInteractions,
    ContentKNN,
    ItemKNN,
    best,
    chunk_bounds,
    summed_in_threads,
)
from shopwise_jobs.selection import (
    EVALUATION_USERS,
    MATRIX_KINDS,
    MODEL_KINDS,
    Result,
    TrainSet,
    blend_of,
    build_model,
    champion_scorer,
    fit_groups,
    fitted_kinds,
    history_rows,
    hybrid_components,
    model_fit,
    select,
    shopwise_candidates,
    summary,
    train_set,
    tuning_sample,
    tuning_workers,
)
from shopwise_jobs.spark_dataset import copy_snapshot, is_built, read_built

Log = Callable[[str], None]


BUDGETS = ("auto", "full", "quick")
# budget=auto's last store on the full grids (its interactions). make scale --budget full: at the envelope (2.6 B
# events) the full grids' retrain fit takes 1.7 h on the largest instance and holds 944 GB (its 768: tuning's 12
# workers each holding their own); at 1 B, 0.6 h and 364 GB, within what the quick grids take at the envelope (0.9 h,
# 578 GB: README, *The deployed default's tuning*, --envelope-events). A job's environment may set it
# (SHOPWISE_FULL_BUDGET_INTERACTIONS)
FULL_BUDGET_INTERACTIONS = int(os.environ.get("SHOPWISE_FULL_BUDGET_INTERACTIONS", "1000000000"))


@dataclass(frozen=True)
class Hyperparameters:
    top_k: int = 50
    protocol: str = "temporal"  # or leave_last_out
    test_fraction: float = 0.1  # temporal: the newest share of interactions is the test (and again: validation)
    holdout: int = 1  # leave_last_out: items held out per user
    # full: every family's grid (39 configurations, 23 fits); quick: one configuration a family (the demo); auto (the
    # deployed default): full up to FULL_BUDGET_INTERACTIONS interactions, quick past them (``budget_for``)
    budget: str = "auto"
    models: str = ""  # comma-separated subset of the model families; empty = all that fit the catalog
    metric: str = "ndcg@10"  # what selection maximises on the validation split
    neighbours: int = 100  # similar items kept per item
    shrinkage: float = 10.0
    popular_window_days: float = 30.0
    weights: str = (
        "view=1,cart=2,purchase=4"  # interaction strength per event kind (shopwise.features.definitions.KIND_WEIGHTS)
    )
    model_version: str = ""
    # required: only what a shopper did while they had granted personalisation (and still have) trains the personal
    # models — the feature store's own consent rule; assumed: every shopper counts as consenting (offline evaluation
    # of data sets with no consent records, such as MovieLens — never a store's own data)
    consent: str = "required"
    # s3:// prefix of the pending erasures (shopwise.dal.erasures): their shoppers' events are not trained on
    erasures: str = ""

    @classmethod
    def parse(cls, values: dict[str, Any]) -> Hyperparameters:
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        casts = {"int": int, "float": float, "str": str}
        hp = cls(**{k: casts[str(known[k])](v) for k, v in values.items()})
        hp.kind_weights()  # refuse bad weights before any data is read
        if hp.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {', '.join(BUDGETS)}, got {hp.budget!r}")
        if hp.consent not in ("required", "assumed"):
            raise ValueError(f"consent must be required or assumed, got {hp.consent!r}")
        wrong = [m for m in hp.model_list() if m not in MODEL_KINDS]
        if wrong:
            raise ValueError(f"unknown model(s) {wrong}: choose from {', '.join(MODEL_KINDS)}")
        return hp

    def kind_weights(self) -> dict[str, float]:
        pairs = [p.split("=", 1) for p in self.weights.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"weights come as kind=number,...; got {self.weights!r}")
        weights = {k.strip(): float(v) for k, v in pairs}
        unknown = set(weights) - set(KIND_WEIGHTS)
        if unknown or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights: kinds are {', '.join(KIND_WEIGHTS)} with weights >= 0; got {self.weights!r}")
        return {**dict.fromkeys(KIND_WEIGHTS, 0.0), **weights}

    def budget_for(self, interactions: int) -> str:
        """The grids a store of ``interactions`` (the served model's) is tuned with: ``auto`` is full up to
        FULL_BUDGET_INTERACTIONS and quick past them; quick and full are themselves."""
        if self.budget != "auto":
            return self.budget
        return "full" if interactions <= FULL_BUDGET_INTERACTIONS else "quick"

    def model_list(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    def wants_hybrid(self) -> bool:
        """The blend is tried unless a list of models leaves it out ("hybrid" alone blends every family)."""
        return not self.model_list() or "hybrid" in self.model_list()


# a market's or referrer's sums are dense (items x its values) up to this many cells a dimension, sparse past it
DENSE_SEGMENT_CELLS = 1 << 24


def segment_lists(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    items: np.ndarray,
    weights: dict[str, float],
    window_days: float,
    k: int,
    coded: CodedInteractions | None = None,
    chunk_rows: int | None = None,
    dense_cells: int | None = None,
) -> dict[str, list[list[Any]]]:
    """Popular items per category (every level of the category path), per market and per referrer (the
    interactions of sessions whose first referred event came from it), in the last window: each segment's
    ``windowed_popularity`` (its window ends at the segment's newest row). ``coded``: the same interactions coded
    (``CodedInteractions.of``), when the caller has them.

    One pass over the rows in chunks of about ``chunk_rows`` (``models.FIT_CHUNK_ROWS``), a chunk a thread, summed by
    ``bincount``, never sorted:
    - a category level is a function of the item: an item's all-time strength is the same in every level, and its
      strength in the window a count per item for each level (the row's window is its item's segment's);
    - a market or a referrer is the row's: its strengths are an items x values array (the dense key item x values +
      value), or past ``dense_cells`` (``DENSE_SEGMENT_CELLS``) cells an items x values sparse matrix.
    It was one items x segments sparse matrix of every row in every dimension, sorted: some 10 entries a row, 2.3x
    the time on the 100,000-shopper store of ``make scale``."""
    interactions = interactions.reset_index(drop=True)
    coded = coded or CodedInteractions.of(interactions, items, weights)
    n_items = coded.n_items
    names: dict[str, int] = {}  # segment name -> its number

    def segment(name: str) -> int:
        return names.setdefault(name, len(names))

    # category levels: each item's segment at each level (-1: none; the last slot, for items outside ``items``)
    levels_of_item: list[np.ndarray] = []
    if len(catalog) and "category" in catalog:
        paths = catalog.set_index("item_id")["category"].fillna("").astype(str)
        path_of_item, path_names = pd.factorize(pd.Series(items).map(paths).fillna(""))
        chains = [categories.prefixes(str(path)) if str(path) != "" else [] for path in path_names]
        for chain in chains:  # named path by path, as the lists were always listed
            for prefix in chain:
                segment(f"category:{prefix}")
        item_path = np.append(path_of_item, -1)
        for depth in range(max((len(chain) for chain in chains), default=0)):
            table = np.array(
                [segment(f"category:{chain[depth]}") if depth < len(chain) else -1 for chain in chains] + [-1],
                dtype=np.int64,
            )
            levels_of_item.append(table[item_path])
    # markets and referrers: each row's column in the dimension (-1: none), as the smallest integers that hold the
    # columns, and each column's segment
    spans = [slice(a, b) for a, b in chunk_bounds(len(interactions), chunk_rows)]
    by_row: list[tuple[np.ndarray, np.ndarray]] = []

    def by_value(segments: np.ndarray, column: Callable[[np.ndarray], np.ndarray]) -> None:
        """``segments``: each value code's segment (-1: none), with a last slot (-1) for a row without a value;
        ``column``: every row's entry of a table indexed by value code (-1, the last slot: none)."""
        used = segments >= 0
        if not used.any():  # every value blank: no segment in this dimension
            return
        columns, column_of_value = np.unique(segments[used], return_inverse=True)
        table = np.full(len(segments), -1, dtype=np.min_scalar_type(-max(len(columns), 1)))
        table[used] = column_of_value
        by_row.append((column(table), columns))

    # both coded by Arrow in slices on threads (ids): pandas' factorize of the markets, and its sort and group-by of
    # the referred rows, held the lists to 57% in parallel on 2 cores (75% now: bench_training.py --parts served,
    # 300,000 shoppers)
    if "market" in interactions:
        markets = distinct(interactions["market"])  # in the order they first appear, as pandas' factorize
        by_value(
            np.array([segment(f"market:{v}") if v != "" else -1 for v in markets.to_pylist()] + [-1], dtype=np.int64),
            lambda table: codes_in(interactions["market"], markets, through=table),  # none: the table's last slot
        )
    referred = np.flatnonzero(nonblank(interactions["referrer"])) if "referrer" in interactions else np.zeros(0)
    if len(referred):
        # each session's first referred row by time (ties: the earlier row), and its referrer
        referred = referred[np.argsort(coded.ts[referred], kind="stable")]
        keys, first = first_of_each(interactions["session_id"], interactions["referrer"], referred)
        named = np.flatnonzero(nonblank(keys))  # a blank session id is no session
        keys, first = keys.take(named), first.take(named)
        sources = distinct(first)
        by_value(
            np.append(
                np.array([segment(f"referrer:{v}") for v in sources.to_pylist()], dtype=np.int64)[
                    codes_in(first, sources)
                ],
                -1,
            ),
            # a row's session among the referred ones (-1: none), by Arrow's hashing in one call over the column
            # (no Python string per row, and no NumPy copy of the sessions' ids)
            lambda table: codes_in(interactions["session_id"], keys, through=table),
        )
    if not names:
        return {}
    n = len(names)
    dense = [len(columns) * n_items <= (dense_cells or DENSE_SEGMENT_CELLS) for _c, columns in by_row]

    def newest(rows: slice) -> np.ndarray:
        """Each segment's newest row in the chunk (-inf: none)."""
        latest = np.full(n, -np.inf)
        item, ts = coded.codes[rows], coded.ts[rows]
        if levels_of_item:  # the newest row of each item, then of each item's segments
            known = item >= 0
            of_item = np.full(n_items, -np.inf)
            np.maximum.at(of_item, item[known], ts[known])
            for level in levels_of_item:
                inside = level[:n_items] >= 0
                np.maximum.at(latest, level[:n_items][inside], of_item[inside])
        for column_of, columns in by_row:
            column = column_of[rows].astype(np.int64)
            inside = column >= 0
            np.maximum.at(latest, columns[column[inside]], ts[inside])
        return latest

    with ThreadPoolExecutor(FIT_THREADS) as pool:
        latest = np.max(np.vstack([np.full(n, -np.inf), *pool.map(newest, spans)]), axis=0)
    since = latest - window_days * 86400.0  # each segment's window ends at its newest row

    def strength(rows: slice) -> list[Any]:
        """The chunk's sums: each item's all-time strength, its strength in each category level's window, and for
        each market and referrer dimension its items x columns all-time and in-window strengths."""
        item, w, ts = coded.codes[rows], coded.weights[rows], coded.ts[rows]
        known = item >= 0
        out: list[Any] = [np.bincount(item[known], w[known], minlength=n_items)]
        for level in levels_of_item:
            at = level[item]  # an item outside ``items`` (-1) reads the last slot: no segment
            recent = (at >= 0) & (ts >= since[np.maximum(at, 0)])
            out.append(np.bincount(item[recent], w[recent], minlength=n_items))
        for (column_of, columns), flat in zip(by_row, dense, strict=True):
            column = column_of[rows].astype(np.int64)
            inside = known & (column >= 0)
            recent = inside & (ts >= since[columns[np.maximum(column, 0)]])
            for chosen in (inside, recent):
                if flat:
                    key = item[chosen] * len(columns) + column[chosen]
                    out.append(np.bincount(key, w[chosen], minlength=n_items * len(columns)))
                else:
                    chunk = sparse.csr_matrix(
                        (w[chosen], (item[chosen], column[chosen])), shape=(n_items, len(columns))
                    )
                    chunk.sum_duplicates()
                    out.append(chunk)
        return out

    zero = strength(slice(0, 0))
    sums = summed_in_threads(spans, strength, zero, lambda a, b: [x + y for x, y in zip(a, b, strict=True)])
    found: dict[int, list[list[Any]]] = {}

    def listed(segment_of: int, scores: np.ndarray, pool: np.ndarray) -> None:
        """A segment's list: its items (ascending) with a positive score, the best k. windowed_popularity's score,
        element for element: all-time x 1e-3 + in the window (with whole-number kind weights, the defaults, the sums
        are exact in any order; with others, equal to the last bit)."""
        values = scores.astype(np.float32)
        positive = values > 0
        pool, values = pool[positive], values[positive]
        top = best(values, pool, k)
        if len(top):
            at = values[np.searchsorted(pool, top)]  # the pool is ascending
            found[segment_of] = [[str(items[i]), round(float(v), 4)] for i, v in zip(top, at, strict=True)]

    all_time, rest = sums[0] * 1e-3, sums[1:]
    for level, window in zip(levels_of_item, rest[: len(levels_of_item)], strict=True):
        scores, member = all_time + window, level[:n_items]
        order = np.argsort(member, kind="stable")  # items by segment, ascending within one
        order = order[member[order] >= 0]
        cuts = np.flatnonzero(np.diff(member[order])) + 1
        for group in np.split(order, cuts) if len(order) else []:
            listed(int(member[group[0]]), scores[group], group)
    for index, ((_column_of, columns), flat) in enumerate(zip(by_row, dense, strict=True)):
        ever, recent = rest[len(levels_of_item) + 2 * index : len(levels_of_item) + 2 * index + 2]
        if flat:
            table = (ever.reshape(n_items, len(columns)) * 1e-3 + recent.reshape(n_items, len(columns))).T
            for column, segment_of in enumerate(columns):
                listed(int(segment_of), table[column], np.arange(n_items))
        else:
            table = sparse.csc_matrix(ever * 1e-3 + recent)
            table.sort_indices()
            for column, segment_of in enumerate(columns):
                start, end = table.indptr[column], table.indptr[column + 1]
                listed(int(segment_of), table.data[start:end], table.indices[start:end])
    return {name: found[row] for name, row in names.items() if row in found}


@dataclass
class Tuned:
    validation: Split
    test: Split
    results: list[Result]  # best validation first
    workers: int = 1  # families tuned side by side (selection.tune_families)


def describe(interactions: pd.DataFrame, catalog: pd.DataFrame) -> str:
    return (
        f"{len(interactions):,} interactions, {interactions['user_id'].nunique():,} users, "
        f"{interactions['item_id'].nunique():,} items with interactions, {len(catalog):,} catalog items"
    )


def tune(interactions: pd.DataFrame, catalog: pd.DataFrame, hp: Hyperparameters, log: Log = print) -> Tuned:
    """Split (test, then validation inside its training part) and tune every wanted model family: what both the
    training job and ``shopwise evaluate`` do."""
    log(f"data: {describe(interactions, catalog)}")
    test = split(interactions, hp.protocol, hp.test_fraction, hp.holdout)
    validation = split(test.train, hp.protocol, hp.test_fraction, hp.holdout)
    n_items = len(set(interactions["item_id"]) | set(catalog["item_id"] if len(catalog) else []))
    families = [m for m in hp.model_list() if m != "hybrid"] or None
    # (the training job has resolved auto by the served model's interactions; shopwise evaluate by these)
    candidates = shopwise_candidates(n_items, len(catalog) > 0, hp.budget_for(len(interactions)), families)
    if not candidates:
        raise ValueError(
            f"none of {hp.model_list()} can run here (EASE needs <= {EASE_MAX_ITEMS} items; content needs a catalog)"
        )
    prices = None
    if "price" in catalog and catalog["price"].notna().any():
        prices = dict(zip(catalog["item_id"], catalog["price"].astype(float), strict=True))
    log(f"validation: {validation.describe()}; test: {test.describe()}")
    workers = tuning_workers(sum(len(fit_groups(c)) for c in candidates))  # a task a fit at most
    results = select(
        candidates,
        validation,
        test,
        catalog,
        metric=hp.metric,
        prices=prices,
        log=log,
        hybrid=hp.wants_hybrid(),
        weights=hp.kind_weights(),
        workers=workers,
    )
    return Tuned(validation, test, results, workers)


CHAMPION_MIN_USERS = 20  # fewer test shoppers after the champion's data window: no comparison (too noisy)


def _figures(scored: Evaluation) -> dict[str, float]:
    return {k: float(v) for k, v in scored.metrics.items() if "/" not in k or k.startswith("se/")}


def champion_comparison(
    champion: TrainedModel,
    validation: Split,
    test: Split,
    catalog: pd.DataFrame,
    hp: Hyperparameters,
    chosen: Result,
    everyone: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The serving model against the selected candidate, two ways.

    ``recipe``: the champion's configuration (family and hyperparameters) refitted on the candidate's validation
    split and scored there, beside the candidate's own validation figure — same data, no leak; it catches a worse
    recipe (a forced family, broken hyperparameters) whatever the data.

    The artefact itself, on what neither has trained on: the test split's interactions after the champion's data
    window (both scored from the same histories, the candidate refitted on the test split's training part). The
    champion saw everything before its window's end, the validation window included, so only those newer
    interactions compare like for like. Too few of them (a retrain soon after the last): skipped, said so. Scored
    on at most EVALUATION_USERS of those shoppers (a fixed sample beyond).

    ``everyone``: when the splits are a tuning sample's (``shopper_sample``), the store's whole interactions — the
    artefact learnt from every shopper, so the candidate it meets is refitted on every shopper too (split the same
    way) and they meet on every shopper's newer interactions; the recipes stay on the sample, both refitted there."""
    end = float(champion.meta.get("data_window", [0.0, 0.0])[1])
    if everyone is not None:
        test = split(everyone, hp.protocol, hp.test_fraction, hp.holdout)
    unseen = tuning_sample(test.test[test.test["ts"] > end], EVALUATION_USERS)
    weights = hp.kind_weights()
    prices = None
    if "price" in catalog and catalog["price"].notna().any():
        prices = dict(zip(catalog["item_id"], catalog["price"].astype(float), strict=True))
    selected = champion.meta.get("selected") or {}
    inner = train_set(validation.train, validation.test, catalog, weights)
    recipe = evaluate(
        model_fit(str(selected.get("kind", champion.kind)))(inner, dict(selected.get("params", {}))),
        inner.matrix(),
        validation.test,
        KS,
        prices,
    )
    doc: dict[str, Any] = {
        "version": str(champion.meta.get("model_version", "")),
        "kind": champion.kind,
        "recipe": _figures(recipe),
        "data_end": end,
        "test_interactions": len(unseen),
        "test_users": int(unseen["user_id"].nunique()),
    }
    if doc["test_users"] < CHAMPION_MIN_USERS:
        doc["skipped"] = (
            f"{doc['test_users']} test shoppers acted after the active model's data window "
            f"(fewer than {CHAMPION_MIN_USERS}): nothing unseen by both to compare on"
        )
        return doc
    outer = train_set(test.train, unseen, catalog, weights)
    both = {
        "champion": evaluate(champion_scorer(champion, outer), outer.matrix(), unseen, KS, prices),
        "candidate": evaluate(model_fit(chosen.name)(outer, chosen.params), outer.matrix(), unseen, KS, prices),
    }
    for side, scored in both.items():
        doc[side] = _figures(scored)
    return doc


T = TypeVar("T")
# interactions the tuning (every family's grid, the blend's search, the test figures, the champion's recipe) is fitted
# on: a store with more is tuned on the whole history of a fixed sample of its shoppers holding about this many, and
# only the selected configuration is fitted on everything. Tuning then costs the same at 10 M shoppers as at
# 100,000 (make scale's 100,000-shopper store holds 1.6 M: tuning and reporting take 59 s of its 76 s of fitting);
# the figures it reports are those of a store of the sample's size, said in the metrics (``tuning_sample``)
TUNING_INTERACTIONS = int(os.environ.get("SHOPWISE_TUNING_INTERACTIONS", "2000000"))


def shopper_sample(interactions: pd.DataFrame, limit: int | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every interaction of the shoppers whose id hashes below the share that holds about ``limit`` interactions
    (all of them when there are no more): the same shoppers retrain after retrain, and each keeps a whole history,
    so sessions, co-occurrences and the temporal splits are those of a smaller store. Also: what was kept."""
    limit = TUNING_INTERACTIONS if limit is None else limit
    users = interactions["user_id"]
    if len(interactions) <= limit:
        return interactions, {}
    share = limit / len(interactions)
    position = (pd.util.hash_pandas_object(users, index=False).to_numpy() >> np.uint64(11)) / float(1 << 53)
    kept = interactions[position < share].reset_index(drop=True)
    return kept, {
        "shoppers": int(kept["user_id"].nunique()),
        "of_shoppers": int(users.nunique()),
        "interactions": len(kept),
        "of_interactions": len(interactions),
    }


def personal_interactions(interactions: pd.DataFrame, hp: Hyperparameters) -> pd.DataFrame:
    """What the personal models may learn from: the interactions of shoppers while they had granted personalisation
    (and still have), unless the data set has no consent records and says so (``consent=assumed``)."""
    if hp.consent == "assumed" or "consented" not in interactions:
        return interactions
    consented = interactions["consented"].to_numpy(dtype=bool)
    kept = int(consented.sum())
    if consented[:kept].all():  # the consented rows come first (``fit_frame``): a slice, not a copy of them
        return interactions.iloc[:kept].reset_index(drop=True)
    return interactions[consented].reset_index(drop=True)


# what the fit reads of the data set's rows: the event id (the build's de-duplication) and the price (the catalog's
# prices are the evaluation's) are left out of the frame held through the fit
FIT_DROPS = ("event_id", "price")


def fit_frame(interactions: pd.DataFrame) -> pd.DataFrame:
    """The data set's rows as the fit holds them: without the columns it never reads, and the consented rows first
    (in their order, then the others in theirs), so the personal models' rows are a slice of every row's frame,
    not a second copy of most of it: the frame is most of what the fit holds in memory for the whole job."""
    frame = interactions.drop(columns=[c for c in FIT_DROPS if c in interactions])
    if "consented" in frame:
        consented = frame["consented"].to_numpy(dtype=bool)
        if not consented[: int(consented.sum())].all():
            frame = frame.take(np.argsort(~consented, kind="stable")).reset_index(drop=True)
    return frame


def fit_and_select(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    hp: Hyperparameters,
    version: str,
    log: Log = print,
    champion: TrainedModel | None = None,
    phases: Phases | None = None,
) -> tuple[TrainedModel, dict[str, Any]]:
    """Everything the job does between reading the data and writing files: the personal models from the consented
    interactions; the bestseller lists (anonymous aggregates, as the feature store's) from all of them. ``phases``:
    the job's memory by phase, which this continues (tuning, the champion comparison, the served fit)."""
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    phases = phases or Phases()
    phases.begin("tuning")
    # the rows the whole fit holds: every interaction's (bestsellers and segment lists), the consented ones a slice
    # of it when they come first (``fit_frame``), a copy when not
    frame_mb = float(interactions.memory_usage(deep=True).sum()) / 2**20
    everyone, interactions = interactions, personal_interactions(interactions, hp)
    if not np.shares_memory(everyone["ts"].to_numpy(), interactions["ts"].to_numpy()):
        frame_mb += float(interactions.memory_usage(deep=True).sum()) / 2**20
    if interactions.empty:
        raise ValueError("no interactions of shoppers who granted personalisation: nothing to personalise with")
    log(f"consent: {len(interactions):,} of {len(everyone):,} interactions from shoppers who granted personalisation")
    if hp.budget == "auto":  # by the served model's interactions: the full grids' cost is its fit's as much as tuning's
        hp = replace(hp, budget=hp.budget_for(len(interactions)))
        log(
            f"budget auto: {hp.budget} grids ({len(interactions):,} interactions; full up to "
            f"{FULL_BUDGET_INTERACTIONS:,}, SHOPWISE_FULL_BUDGET_INTERACTIONS)"
        )
    tuning, sampled = shopper_sample(interactions)
    if sampled:
        log(
            f"tuning on {sampled['shoppers']:,} of {sampled['of_shoppers']:,} shoppers ({len(tuning):,} interactions, "
            f"a fixed sample: SHOPWISE_TUNING_INTERACTIONS={TUNING_INTERACTIONS:,}); the selected configuration "
            "is fitted on every shopper"
        )
    tuned = tune(tuning, catalog, hp, log)
    seconds["tuning"] = time.perf_counter() - started
    test, validation, results = tuned.test, tuned.validation, tuned.results
    chosen = results[0]
    log(f"selected {summary(chosen.name, chosen.params)} (validation {hp.metric}={chosen.validation[hp.metric]:.4f})")
    clock = time.perf_counter()
    phases.begin("champion")
    incumbent = (
        champion_comparison(champion, validation, test, catalog, hp, chosen, interactions if sampled else None)
        if champion is not None
        else None
    )
    seconds["champion"] = time.perf_counter() - clock
    if incumbent is not None:
        log(
            f"champion {incumbent['version']}'s recipe refitted on this validation split: "
            f"{hp.metric}={incumbent['recipe'][hp.metric]:.4f} (the candidate: {chosen.validation[hp.metric]:.4f})"
        )
        if "skipped" in incumbent:
            log(f"champion {incumbent['version']}: {incumbent['skipped']}")
        else:
            log(
                f"on {incumbent['test_users']} test shoppers after champion {incumbent['version']}'s data: "
                f"{hp.metric} candidate {incumbent['candidate'][hp.metric]:.4f}, "
                f"champion {incumbent['champion'][hp.metric]:.4f}"
            )

    # the model served: the selected configuration and its companions fitted on every shopper, each part timed
    parts: dict[str, float] = {}
    cpu: dict[str, float] = {}  # the process's CPU seconds in each part: above its seconds where it used more cores

    def timed(part: str, fit: Callable[[], T]) -> T:
        clock, used = time.perf_counter(), cpu_seconds()
        with phases.within(part):  # its memory: held at its start (the parts before it) and its own peak
            out = fit()
        parts[part] = round(time.perf_counter() - clock, 3)
        cpu[part] = round(cpu_seconds() - used, 3)
        return out

    fit_started = time.perf_counter()
    phases.begin("final fit")
    # every stretch of the served fit is a part, so the parts add up to its time: its ids (the served set's users
    # and items, read off every row, and every row's codes) and the inputs the parts share, built before them, were untimed stretches that
    # make scale's figure for the instance left out
    everyone = everyone.reset_index(drop=True)

    data, coded = timed("ids", lambda: served_and_every_row(interactions, everyone, catalog, hp))
    # the content index of a catalog large enough for its ANN path reads the catalog and the item order alone: it
    # runs in a process of its own while the parts below run (shopwise_jobs.apart), unless the model fits it
    apart: Apart[ContentKNN] | None = None
    if (
        len(catalog)
        and len(data.items) >= CONTENT_ANN_FROM_ITEMS
        and "content" not in fitted_kinds(chosen.name, chosen.params)
    ):
        apart = Apart(ContentKNN.fit, data.catalog, data.items, hp.neighbours, imports=("faiss",))
        if APART_FIRST:  # (make scale on few cores: done before the other parts start, none of them slowed by it)
            log(f"content index apart: {apart.result().seconds:.1f} s, before the other parts (SHOPWISE_APART_FIRST)")
    history = timed("matrix", data.matrix)  # built once: the parts below that read it reuse it
    # the rows served (and every matrix they read): before the parts, so none of them builds a matrix another does
    rows = timed("history", lambda: history_rows(data, chosen.params))
    # the selected model a part at a time, each timed as the served part it also is (served_part): the similar items,
    # content neighbours and next-item rules it fits on the same data are the served ones, not fitted again
    components: list[dict[str, Any]] = (
        hybrid_components(chosen.params)
        if chosen.name == "hybrid"
        else [{"kind": chosen.name, "params": chosen.params}]
    )
    tasks: dict[str, Callable[[], Any]] = {
        served_part(c["kind"], c["params"], hp): partial(build_model, c["kind"], data, c["params"]) for c in components
    }
    if "content" not in tasks and len(catalog) and apart is None:
        tasks["content"] = partial(build_model, "content", data, {"neighbours": hp.neighbours})
    tasks.setdefault("similar", lambda: ItemKNN.fit(data.recent(ITEMKNN_HISTORY), hp.neighbours, hp.shrinkage))
    tasks.setdefault("next_items", partial(build_model, "sequential", data, {"window": 5}))

    def inputs() -> None:  # what the parts read, built here (the data's lazy caches are not shared safely)
        for component in components:  # the decayed matrices of the families that read one, and only theirs
            if component["kind"] in MATRIX_KINDS:
                data.matrix(float(component["params"].get("half_life_days", 0.0)))
        data.codes()
        data.recent(ITEMKNN_HISTORY)

    timed("inputs", inputs)

    def bestsellers_then_segments(record: Callable[[str, Callable[[], Any]], Any]) -> tuple[Any, Any]:
        popularity = record("popularity", lambda: coded.popularity(None, hp.popular_window_days))
        segments = record("segments", lambda: served_segments(everyone, catalog, data, coded, hp))
        return popularity, segments

    side_by_side = final_side_by_side()
    if side_by_side:
        # on the instance's cores the parts run at once, each with its own threads inside: a part's time is its
        # wall time beside the others, its memory and CPU time the group's (the process's counters are shared)
        def clocked(part: str, fit: Callable[[], T]) -> T:
            clock = time.perf_counter()
            out = fit()
            parts[part] = round(time.perf_counter() - clock, 3)
            return out

        clock, used = time.perf_counter(), cpu_seconds()
        with phases.within("side by side"), ThreadPoolExecutor(len(tasks) + 1) as pool:
            futures = {name: pool.submit(clocked, name, fit) for name, fit in tasks.items()}
            chained = pool.submit(bestsellers_then_segments, clocked)
            fitted = {name: future.result() for name, future in futures.items()}
            popularity, segments = chained.result()
        parts["side by side"] = round(time.perf_counter() - clock, 3)
        cpu["side by side"] = round(cpu_seconds() - used, 3)
    else:
        fitted = {name: timed(name, fit) for name, fit in tasks.items()}
        popularity, segments = bestsellers_then_segments(timed)
    model_object = (
        blend_of(chosen.params, lambda c: fitted[served_part(c["kind"], c["params"], hp)])
        if chosen.name == "hybrid"
        else fitted[served_part(chosen.name, chosen.params, hp)]
    )
    content, similar, next_items = fitted.get("content"), fitted["similar"], fitted["next_items"]
    # item-kNN's work: the products its co-occurrence counts take, the sum over shoppers of their (capped) history
    # length squared — what make scale extrapolates its time in, bounded at the envelope by shoppers x cap^2
    lengths = np.diff(data.recent(ITEMKNN_HISTORY).indptr).astype(np.float64)
    work = {"similar": float((lengths**2).sum())}
    if apart is not None:
        done = apart.result()
        content, parts["content"], cpu["content"] = done.value, done.seconds, done.cpu
        if done.own_mb is not None:  # its own process: nothing of the job's is held in it
            phases.parts.setdefault("final fit", {})["content"] = [0.0, done.own_mb]
    model = TrainedModel(
        users=history.users,
        items=history.items,
        history=rows,
        kind=chosen.name,
        model=model_object,
        similar=similar,
        next_items=next_items,
        popularity=popularity,
        content=content,
        segments=segments,
        catalog=catalog_facts(catalog, history.items),
        meta={
            "model_version": version,
            "trained_at": int(time.time()),
            "hyperparameters": asdict(hp),
            "selected": {"kind": chosen.name, "params": chosen.params},
            "users": len(history.users),
            "items": len(history.items),
            "interactions": len(interactions),
            "data_window": [float(interactions["ts"].min()), float(interactions["ts"].max())],
        },
    )
    phases.end()
    # what the served fit keeps by the end, by the arrays' own sizes: the training set's codes and matrices, the
    # history rows and the bestsellers' coded rows grow with the events; the fitted parts with the items
    held = {
        "events": array_bytes([data, rows, coded], skip=("interactions", "catalog", "models")) / 2**20,
        "items": array_bytes([model_object, similar, next_items, content, popularity]) / 2**20,
    }
    metric_k = hp.metric
    reported = TrainingMetrics(
        model_version=version,
        metric=metric_k,
        selected=chosen.name,
        summary=summary(chosen.name, chosen.params),
        validation={k: chosen.validation[k] for k in (metric_k, f"se/{metric_k}") if k in chosen.validation},
        test=dict(chosen.test.metrics) if chosen.test else {},
        data_window=list(model.meta["data_window"]),
        hyperparameters=asdict(hp),
        champion=incumbent or {},
    )
    metrics_doc = {
        **reported.to_json(),
        "params": chosen.params,
        metric_k: chosen.test.metrics[metric_k] if chosen.test else None,
        "split": test.describe(),
        "validation_split": validation.describe(),
        "models": {
            r.name: {
                "params": r.params,
                "validation": r.validation,
                "test": r.test.metrics if r.test else None,
                "tried": r.tried,
            }
            for r in results
        },
        "users": int(model.meta["users"]),  # what the batch transform's plan is cut from
        "items": int(model.meta["items"]),
        "fit_seconds": round(time.perf_counter() - fit_started, 2),
        "train_seconds": round(time.perf_counter() - started, 2),
        # where the job's fitting went: tuning (on the sample when there is one), the champion comparison, and the
        # served model's fit on every shopper by part (make scale extrapolates each by its own growth)
        "seconds": {
            "tuning": round(seconds["tuning"], 2),
            # tuning by family (the blend's weight search and its refit as "hybrid"), wall and CPU: with families
            # side by side (tuning workers above 1) each is its own worker's; the rest of tuning is the splits
            "tuning parts": {r.name: round(r.seconds, 3) for r in results},
            "tuning parts cpu": {r.name: round(r.cpu, 3) for r in results},
            "tuning workers": tuned.workers,
            # each family's tasks as tuning's workers take them (selection.tune_families), wall: its fits'
            # configurations, one list entry a fit, and the best's refit and test figures (make scale spreads them
            # over the instance's workers)
            "tuning tasks": {
                r.name: {"fits": [round(t, 3) for t in r.group_seconds], "test": round(r.test_seconds, 3)}
                for r in results
                if r.group_seconds
            },
            # the blend's steps, wall: the families' fits, each history rows' search (side by side with workers),
            # its test refit
            "tuning hybrid steps": {
                step: round(t, 3) for r in results if r.name == "hybrid" for step, t in r.steps.items()
            },
            "champion": round(seconds["champion"], 2),
            "final fit": round(time.perf_counter() - fit_started, 2),
            "final parts": parts,
            "final parts cpu": cpu,
            # parts that ran in a process of their own, beside the others (their seconds overlap the others')
            "final parts apart": ["content"] if apart is not None else [],
            # the parts ran at once, in threads (final_side_by_side: on 16 vCPUs or more): each part's seconds its
            # wall time beside the others, "side by side" the group's wall and CPU time
            "final parts side by side": side_by_side,
        },
        "tuning_sample": sampled,
        # resident memory by phase: held at its start and its peak (Linux's counters; absent elsewhere)
        "memory_mb": phases.figures,
        # the served fit's parts: [held at the part's start above the phase's, the part's own peak above that]
        "memory_parts_mb": phases.parts,
        "final parts work": work,
        "final held mb": {name: round(mb, 1) for name, mb in held.items()},
        "frame_mb": round(frame_mb, 1),
    }
    return model, metrics_doc


# the served fit's parts at once (threads, each part's own threads inside) from this many vCPUs, as tuning's families
# side by side: on the instance a part's serial stretches (the conversions, the Python between its parallel loops)
# overlap the others' work instead of adding up. Below it, one after another: make scale measures each part alone on
# 2 cores. SHOPWISE_FINAL_SIDE_BY_SIDE: 1 forces it, 0 forbids it
FINAL_SIDE_BY_SIDE_FROM_CORES = 16


# the served fit waits for its part in a process of its own (the content index) before the others start: make scale
# sets it, where on 2 cores that process took a core from the parts beside it (item-kNN at 300,000 shoppers 4.1 ->
# 7.7 s of wall for the same CPU, read as no parallel share at all), which the instance gives it cores of its own
APART_FIRST = os.environ.get("SHOPWISE_APART_FIRST", "") == "1"


def final_side_by_side(cores: int | None = None) -> bool:
    """Whether the served fit runs its parts at once on ``cores`` (this machine's)."""
    forced = os.environ.get("SHOPWISE_FINAL_SIDE_BY_SIDE", "")
    if forced in ("0", "1"):
        return forced == "1"
    return (cores or os.cpu_count() or 1) >= FINAL_SIDE_BY_SIDE_FROM_CORES


def served_part(kind: str, params: dict[str, Any], hp: Hyperparameters) -> str:
    """What a part of the selected model is in the served fit, the name its time and memory are recorded under: item-kNN
    with the served similar items' neighbours and shrinkage is the similar items' fit ("similar": the same call on the
    same rows), the content index the served content neighbours ("content"), the next-item rules the served ones
    ("next_items"); any other family is the model's alone ("model:<kind>"). make scale grows each by what drives it:
    item-kNN in its products, the content index in items, the rest in events."""
    if kind == "itemknn" and (int(params["neighbours"]), float(params["shrinkage"])) == (hp.neighbours, hp.shrinkage):
        return "similar"
    return {"content": "content", "sequential": "next_items"}.get(kind, f"model:{kind}")


def catalog_facts(catalog: pd.DataFrame, items: Any) -> dict[str, list[str]]:
    """item id -> [category path, title] for the model's items (what serving shows in reasons and filters on)."""
    if catalog.empty:
        return {}
    wanted = set(map(str, items))
    frame = catalog[catalog["item_id"].isin(wanted)]
    columns = [
        frame[c].fillna("").astype(str) if c in frame else pd.Series("", index=frame.index)
        for c in ("category", "title")
    ]
    return {str(i): [c, t] for i, c, t in zip(frame["item_id"], columns[0], columns[1], strict=True)}


def catalog_snapshot(catalog: pd.DataFrame) -> FeatureSnapshot:
    """The feature snapshot a data set build folds its events into, with the catalog's category paths."""
    paths = dict(zip(catalog["item_id"], catalog["category"].fillna(""), strict=True)) if "category" in catalog else {}
    return FeatureSnapshot(Context(categories={k: v for k, v in paths.items() if v}))


def build_data_set(
    events: Path, snapshot: FeatureSnapshot, erased: Targets | None, features: Path
) -> tuple[EventData, dict[str, float]]:
    """The training job's own data set build (a bulk-import file, or an archive the Spark job has not built) and the
    feature snapshot, which ``train_files`` runs in a process of its own (``shopwise_jobs.apart``). The build holds
    every event as a Python object, by profile and by item, until the snapshot's folds: 14.7 GB resident for the
    300,000-shopper store's 5.9 M events (``make scale``), about 2.5 KB an event. Freed, that memory was not given
    back whole, and in the job's own process the fit started on top of it: tuning began at 14.0 GB there, and the
    store's training on every item was killed at 23.1 GB of the machine's 24. Returned: the rows as the fit holds
    them, and the snapshot's counts (written to ``features``)."""
    data = read_events_any(events, snapshot, erased)
    if not data.interactions.empty:
        data = replace(data, interactions=fit_frame(data.interactions))
    return data, snapshot.write(features)


def served_set(interactions: pd.DataFrame, catalog: pd.DataFrame, hp: Hyperparameters) -> TrainSet:
    """What the served model is fitted on: every (consented) interaction, no test rows."""
    return train_set(interactions, interactions.iloc[:0], catalog, hp.kind_weights())


def served_and_every_row(
    interactions: pd.DataFrame, everyone: pd.DataFrame, catalog: pd.DataFrame, hp: Hyperparameters
) -> tuple[TrainSet, CodedInteractions]:
    """The served fit's first part ("ids"): the served set of the consented ``interactions`` and every row's codes
    (``everyone``'s: the bestsellers and segment lists count from them), the served rows' views of them."""
    served = served_set(interactions, catalog, hp)
    return served, served.coded_with(everyone)


def served_segments(
    everyone: pd.DataFrame, catalog: pd.DataFrame, data: TrainSet, coded: CodedInteractions, hp: Hyperparameters
) -> dict[str, list[list[Any]]]:
    """The served fit's segment lists: every row's, over the served set's items (``segment_lists``)."""
    return segment_lists(everyone, catalog, data.items, data.weights, hp.popular_window_days, hp.top_k, coded)


def train_files(
    events: Path,
    items: Path | None,
    out: Path,
    hyperparameters: dict[str, Any] | None = None,
    log: Log = print,
    version: str = "",
    champion: Path | None = None,
) -> dict[str, Any]:
    """``shopwise train``: events (bulk-import file or archive folder), optional catalog, a model folder out;
    ``champion``: the serving model's folder, scored on the same validation split for the promotion gate."""
    hp = Hyperparameters.parse(hyperparameters or {})
    catalog = read_catalog(items) if items else pd.DataFrame(columns=["item_id"])
    snapshot = catalog_snapshot(catalog)
    erased = pending_targets(hp.erasures) if hp.erasures else None
    built = events.is_dir() and is_built(events)  # a data set the Spark job made: its rows and its snapshot
    phases = Phases(log)
    phases.begin("data set")
    counts: dict[str, float] = {}
    if built:
        data = read_built(events)
    else:  # built and the snapshot written in a process of its own, which gives its memory back when it ends
        done = Apart(build_data_set, events, snapshot, erased, out / "features").result()
        data, counts = done.value
        phases.beside(done.peak_mb)
    if erased:
        log(f"erasures: {data.erased} events of {len(erased)} erased aliases left out (pending the purge)")
    if data.skipped:
        log(f"skipped {data.skipped} of {data.records} records that are not valid events")
    if data.interactions.empty:
        raise ValueError(f"{events}: no interactions (views, cart adds, purchases) to train on")
    frame = fit_frame(data.interactions) if built else data.interactions  # (the build's: already so)
    data = replace(data, interactions=frame)  # the build's own frame is let go
    model, metrics_doc = fit_and_select(
        frame,
        catalog,
        hp,
        hp.model_version or version or f"local-{time.strftime('%Y%m%dT%H%M%S')}",
        log,
        TrainedModel.load(champion) if champion is not None else None,
        phases,
    )
    model.save(out)
    # the features as of the newest training event, folded by the feature store's own code: monitoring's baseline
    counts = copy_snapshot(events, out / "features") if built else counts
    # and the event-type mix of the training interactions: the drift report's baseline for the recent mix
    (out / "features" / "event_mix.json").write_text(json.dumps(event_mix(data.interactions["kind"])))
    log(f"feature snapshot: {counts['profiles']} profiles, {counts['items']} items -> {out / 'features'}")
    metrics_doc.update(
        records=data.records, skipped_records=data.skipped, erased_records=data.erased, feature_snapshot=counts
    )
    (out / "metrics.json").write_text(json.dumps(metrics_doc, indent=2, default=str))
    return metrics_doc


def unpack_champion(channel: Path | None, target: Path) -> Path | None:
    """The ``champion`` channel holds the serving model's model.tar.gz (or is absent: no model serves yet)."""
    if channel is None:
        return None
    tarballs = sorted(channel.rglob("*.tar.gz"))
    if not tarballs:
        return None
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(target, filter="data")
    return target


def train(contract: TrainingContract, log: Log = print) -> dict[str, Any]:
    hp = Hyperparameters.parse(contract.hyperparameters)
    version = hp.model_version or contract.job_name
    catalog_dir = contract.optional_channel("catalog")
    champion = unpack_champion(contract.optional_channel("champion"), contract.model_dir.parent / "champion")
    metrics_doc = train_files(
        contract.channel("events"), catalog_dir, contract.model_dir, contract.hyperparameters, log, version, champion
    )
    contract.output_data_dir.mkdir(parents=True, exist_ok=True)
    (contract.output_data_dir / "metrics.json").write_text(json.dumps(metrics_doc, indent=2, default=str))
    # each family's test metrics against K, beside metrics.json: the console shows it with the registry's verdicts
    from shopwise_jobs.report import plot_models

    (contract.output_data_dir / "evaluation.png").write_bytes(plot_models(metrics_doc["models"]))
    # metric lines for the job's metric definitions (regex "<model>:<metric>=([0-9.]+)", "ndcg@10=([0-9.]+)")
    for name, doc in metrics_doc["models"].items():
        for key, value in (doc["test"] or {}).items():
            if "/" not in key:
                log(f"metric {name}:{key}={value:.6f}")
    for line in TrainingMetrics.from_json(metrics_doc).log_lines():
        log(line)
    return metrics_doc


def main(argv: list[str] | None = None) -> int:
    return run_job(train, argv)
