"""Model selection: every candidate family is tuned on a validation split cut from the training part (the same
protocol as the test split), the best configuration of each is refitted on the whole training part and reported
on the test split. The test split never chooses anything.

A candidate is a name, a grid of hyperparameters and a fit function ``(TrainSet, params) -> Scorer``; peers
(other libraries, in the benchmark) are candidates like any other, so they get the same data, split, tuning
budget and metrics.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from shopwise.features.definitions import KIND_WEIGHTS
from shopwise_jobs import candidates
from shopwise_jobs.apart import cpu_seconds, threads_for_children
from shopwise_jobs.dataset import Matrix, Split, codes_in, interaction_matrix, sessions, unique_ids, weights_of
from shopwise_jobs.evaluation import KS, Evaluation, Ranked, Scorer, evaluate, popularity_tiebreak, relevance
from shopwise_jobs.models import (
    EASE,
    EASE_MAX_ITEMS,
    IALS,
    ITEMKNN_HISTORY,
    Affinity,
    CodedInteractions,
    ContentKNN,
    Hybrid,
    ItemKNN,
    SequentialRules,
    scale_rows,
    top_k_per_row,
)

Log = Callable[[str], None]


@dataclass
class TrainSet:
    """The interactions a model may learn from, over a fixed user and item universe (test users and catalog items
    included, with empty rows / columns), and the catalog for content features."""

    interactions: pd.DataFrame
    users: np.ndarray
    items: np.ndarray
    catalog: pd.DataFrame
    weights: dict[str, float] = field(default_factory=lambda: dict(KIND_WEIGHTS))
    _matrices: dict[float, Matrix] = field(default_factory=dict)
    models: dict[Any, Any] = field(default_factory=dict)  # the last fitted model by (kind, fit parameters)

    _codes: tuple[np.ndarray, np.ndarray] | None = None
    _coded: CodedInteractions | None = None
    _recent: dict[int, sparse.csr_matrix] = field(default_factory=dict)  # the served fit's item-kNN and similar rows

    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Each interaction's user and item index in ``users`` and ``items``: coded once, read by every part."""
        if self._codes is None:
            self._codes = (
                codes_in(self.interactions["user_id"], self.users),
                # coded with the rows after them (``coded_with``): a view of that
                self._coded.codes if self._coded is not None else codes_in(self.interactions["item_id"], self.items),
            )
        return self._codes

    def coded(self) -> CodedInteractions:
        """The rows as popularity counts them — item index, kind weight, time — from ``codes``: each popularity fit
        coded every row's item id and kind from their strings again, a pass over every event on one core (0.20 h
        of the served fit at the envelope, beside the matrix's own 0.22 h of the same work)."""
        if self._coded is None:
            self._coded = CodedInteractions(
                codes=self.codes()[1],
                weights=weights_of(self.interactions["kind"], self.weights),
                ts=self.interactions["ts"].to_numpy(dtype=np.float64),
                n_items=len(self.items),
            )
        return self._coded

    def coded_with(self, everyone: pd.DataFrame) -> CodedInteractions:
        """Every row of ``everyone`` coded as ``coded`` codes this set's rows: the bestsellers and the segment lists
        count every interaction, consented or not. Where this set's rows are ``everyone``'s first rows (the same
        memory: ``fit_frame`` puts the consented rows first and ``personal_interactions`` slices them off) and
        none is coded yet, every row is coded in one pass and this set's codes are views of its first rows: no row
        coded twice, nothing copied (joining this set's codes to the rest's copied 24 bytes an event: 62 GB at the
        envelope's 2.6 B). Coded already, the rows after this set's are coded and joined to its codes; not its
        first rows, every row is coded apart."""
        n, ts, own_ts = len(self.interactions), everyone["ts"].to_numpy(), self.interactions["ts"].to_numpy()
        if not (0 < n <= len(everyone) and np.shares_memory(ts[:1], own_ts[:1]) and ts.strides == own_ts.strides):
            return CodedInteractions.of(everyone, self.items, self.weights)
        if self._coded is None and self._codes is None:
            whole = CodedInteractions.of(everyone, self.items, self.weights)
            self._coded = CodedInteractions(whole.codes[:n], whole.weights[:n], whole.ts[:n], whole.n_items)
            return whole
        own = self.coded()
        if n == len(everyone):
            return own
        rest = CodedInteractions.of(everyone.iloc[n:], self.items, self.weights)
        return CodedInteractions(
            codes=np.concatenate([own.codes, rest.codes]),
            weights=np.concatenate([own.weights, rest.weights]),
            ts=np.concatenate([own.ts, rest.ts]),
            n_items=own.n_items,
        )

    def recent(self, cap: int) -> sparse.csr_matrix:
        """Each user's ``cap`` most recently touched distinct items (1 where kept; every item with ``cap`` 0): what
        item-kNN counts co-occurrences over (``ITEMKNN_HISTORY``). Ties at a user's cap-th time keep the lower item
        index."""
        if cap not in self._recent:
            self._recent[cap] = self._recent_items(cap)
        return self._recent[cap]

    def _recent_items(self, cap: int) -> sparse.csr_matrix:
        history = self.matrix().matrix
        binary = history.copy()
        binary.data = np.ones_like(binary.data)
        counts = np.diff(history.indptr)
        if cap <= 0 or counts.max(initial=0) <= cap:
            return binary
        # only the shoppers past the cap are cut, so only their rows are read for each item's newest touch (a few
        # of them: a group-by over every row was a quarter of item-kNN's fit, on one thread)
        long = counts > cap
        u, i = self.codes()
        ts = self.interactions["ts"].to_numpy(dtype=np.float64)
        rows = np.flatnonzero((u >= 0) & (i >= 0) & np.append(long, False)[u])  # u -1: the appended False
        newest = pd.DataFrame({"u": u[rows], "i": i[rows], "ts": ts[rows]}).groupby(["u", "i"])["ts"].max()
        at = newest.index.to_frame(index=False)
        recency = sparse.csr_matrix(
            (newest.to_numpy() - newest.min() + 1.0, (at["u"].to_numpy(), at["i"].to_numpy())), shape=history.shape
        )
        cut = top_k_per_row(recency.multiply(binary).tocsr(), cap)  # only items the history holds
        cut.data = np.ones_like(cut.data)
        whole = sparse.diags((~long).astype(binary.dtype)) @ binary  # the others' rows as they are
        kept = (whole + cut).tocsr()
        kept.sum_duplicates()
        return kept

    def matrix(self, half_life_days: float = 0.0) -> Matrix:
        if half_life_days not in self._matrices:
            coded = self.coded()
            self._matrices[half_life_days] = interaction_matrix(
                self.interactions,
                self.weights,
                half_life_days,
                users=self.users,
                items=self.items,
                codes=self.codes(),
                strengths=coded.weights,
                ts=coded.ts,
            )
        return self._matrices[half_life_days]


def hybrid_components(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts a blend fits: its components of non-zero weight (``{"kind", "params", "weight"}`` each)."""
    return [c for c in p["components"] if c["weight"]]


def fitted_kinds(kind: str, p: dict[str, Any]) -> list[str]:
    """The families ``build_model(kind, ..., p)`` fits: the blend's parts, or the one family."""
    return [c["kind"] for c in hybrid_components(p)] if kind == "hybrid" else [kind]


# the job's content fit: [the catalog it read, neighbours, the items sorted, the fit over them in that order]
_CONTENT: list[Any] = []


def content_fit(catalog: pd.DataFrame, items: np.ndarray, neighbours: int) -> ContentKNN:
    """The content model for these items in their order, fitted once a job: it reads nothing but the catalog and
    the items, and tuning asks for it four times over the same catalog (the family's validation and test fits, the
    blend's parts on both splits) and the served blend once more, each split's items in an order of its own — at a
    million items a fit is about 0.58 h of one process (make scale's content index). A fit is kept for the catalog it read (the same
    object, held so its identity cannot pass to another) and the same items; any other asks for a fit of its own."""
    ordered = np.sort(np.asarray(items))
    if not (_CONTENT and _CONTENT[0] is catalog and _CONTENT[1] == neighbours and np.array_equal(_CONTENT[2], ordered)):
        _CONTENT[:] = [catalog, neighbours, ordered, ContentKNN.fit_ordered(catalog, ordered, neighbours)]
    fitted: ContentKNN = _CONTENT[3]
    return fitted.reordered(ordered, items)


def build_model(kind: str, data: TrainSet, p: dict[str, Any]) -> Any:
    """Fit one shopwise model family with the given hyperparameters; the object scores history rows."""
    half_life = float(p.get("half_life_days", 0.0))
    if kind == "popularity":
        return data.coded().popularity(None, float(p["window_days"]))
    if kind == "itemknn":
        # co-occurrences over each user's recent items (a binary fit: the half-life does not change it)
        return ItemKNN.fit(data.recent(ITEMKNN_HISTORY), int(p["neighbours"]), float(p["shrinkage"]))
    if kind == "ease":
        return EASE.fit(data.matrix(half_life).matrix, float(p["l2"]))
    if kind == "ials":
        return IALS.fit(
            data.matrix(half_life).matrix,
            int(p["factors"]),
            float(p["regularization"]),
            float(p["alpha"]),
            int(p["iterations"]),
        )
    if kind == "sequential":
        return SequentialRules.fit(
            sessions(data.interactions, data.items, codes=data.codes()), len(data.items), int(p["window"])
        )
    if kind == "content":
        return content_fit(data.catalog, data.items, int(p["neighbours"]))
    if kind == "affinity":
        return Affinity.fit(data.matrix(half_life).matrix, data.catalog, data.items)
    if kind == "hybrid":
        return blend_of(p, lambda c: build_model(c["kind"], data, c["params"]))
    raise ValueError(f"unknown model {kind!r}: expected one of {', '.join(MODEL_KINDS)}")


def blend_of(p: dict[str, Any], fit_part: Callable[[dict[str, Any]], Any]) -> Hybrid:
    """The blend ``p`` describes, each of its parts (``hybrid_components``) fitted by ``fit_part(component)``: the
    served fit times each part on its own (``training.fit_and_select``)."""
    used = hybrid_components(p)
    return Hybrid(
        parts=[fit_part(c) for c in used], kinds=[c["kind"] for c in used], weights=[float(c["weight"]) for c in used]
    )


MODEL_KINDS = ("popularity", "itemknn", "ease", "ials", "sequential", "content", "affinity", "hybrid")
# the families whose fit reads the interaction matrix decayed by their half-life (``build_model``): the others read
# the rows' codes (popularity), the recent items (item-kNN), the sessions (next-item rules) or the catalog (content),
# whatever half-life their parameters carry — the served fit built the 300,000-shopper store's blend two decayed
# matrices (its next-item rules' 7 days, its content's 30) that no part read, 0.5 s each before every part
MATRIX_KINDS = ("ease", "ials", "affinity")
HYBRID_WEIGHTS = (0.1, 0.25, 0.5, 1.0)
# the history rows every part of the blend scores: plain, with the recent-session boost, and decayed (drift)
HYBRID_ROWS = (
    {"recent_boost": 0.0, "half_life_days": 0.0},
    {"recent_boost": 2.0, "half_life_days": 0.0},
    {"recent_boost": 2.0, "half_life_days": 14.0},
)
# validation users each configuration and the blend's weight search are scored on (a deterministic sample beyond
# that): tuning costs the same at 40 thousand shoppers as at 10 million
TUNING_USERS = 5000
# test users each family's and the blend's reported figures are scored on: every one below this (every benchmark
# data set, every store below about half a million shoppers), a fixed sample above: the test figures of seven
# models cost about 1 ms a test user (make scale's 100,000-shopper store: fit and selection 127 s scoring all 20,834
# test users, 111 s scoring 5,000), so a million test users at the envelope would be 17 minutes of the retrain;
# NDCG@10's standard error at 50,000 users is about 0.0005. SHOPWISE_EVALUATION_USERS sets it for a job
EVALUATION_USERS = int(os.environ.get("SHOPWISE_EVALUATION_USERS", "50000"))


# parameters that change how a user's history row is built, not the fitted model: tuning them costs no refit
ROW_PARAMS = ("half_life_days", "recent_boost", "recent_hours")


def history_rows(data: TrainSet, p: dict[str, Any]) -> sparse.csr_matrix:
    """The rows a model scores: the user's history (decayed by ``half_life_days``) plus ``recent_boost`` times the
    same history decayed with a half-life of ``recent_hours``, which lifts what the shopper did in their last
    session (the feature store's recent items) above what they did months ago."""
    rows = data.matrix(float(p.get("half_life_days", 0.0))).matrix
    boost = float(p.get("recent_boost", 0.0))
    if boost > 0:
        rows = (rows + boost * data.matrix(float(p.get("recent_hours", 0.25)) / 24.0).matrix).tocsr()
    return rows


def summary(kind: str, params: dict[str, Any]) -> str:
    """One line for people: "ease l2=500 recent_boost=2" or "hybrid of itemknn x1, ease x1, content x0.5 (...)"."""
    if kind == "hybrid":
        blend = ", ".join(f"{c['kind']} x{c['weight']:g}" for c in params["components"] if c["weight"])
        rows = ", ".join(f"{k}={params.get(k, 0.0):g}" for k in ("recent_boost", "half_life_days"))
        return f"hybrid of {blend} ({rows})"
    return " ".join([kind, *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())])


@dataclass(frozen=True)
class ModelFit:
    """A shopwise family's fit as a candidate's ``fit``: ``(TrainSet, params) -> Scorer``. A class, not a closure, so
    a candidate pickles into the process that tunes it (``tune_families``)."""

    kind: str

    def __call__(self, data: TrainSet, p: dict[str, Any]) -> Scorer:
        kind = self.kind
        key = (kind, fit_key(p))
        if key not in data.models:
            data.models.clear()  # grids vary the row parameters fastest: one model in memory is enough
            data.models[key] = build_model(kind, data, p)
        model = data.models[key]
        rows = history_rows(data, p)
        if len(data.items) >= candidates.CANDIDATES_FROM_ITEMS:  # rankings over candidates, never 1 M-wide rows
            tiebreak = popularity_tiebreak(data.matrix().matrix)
            return lambda users: Ranked(
                *candidates.recommend(model, rows[users], max(KS), candidates.CANDIDATES, tiebreak)
            )
        return lambda users: model.score(rows[users])


def fit_key(p: dict[str, Any]) -> str:
    """The model a configuration fits: its parameters but the row parameters after the half-life, which change the
    history rows scored and cost no refit."""
    return json.dumps({k: v for k, v in p.items() if k not in ROW_PARAMS[1:]}, sort_keys=True)


def model_fit(kind: str) -> ModelFit:
    return ModelFit(kind)


def champion_scorer(champion: Any, data: TrainSet) -> Scorer:
    """The serving model (a ``TrainedModel``) scoring ``data``'s users from their histories in ``data``: the
    histories are mapped into the champion's item space (items it never saw are dropped), its scores mapped back;
    items it cannot score rank below every item it can. What the promotion gate compares a candidate with, on the
    candidate's own validation split. From ``CANDIDATES_FROM_ITEMS`` items its rankings over candidates are mapped
    back instead (``Ranked``; the places after its own picks go to popular items, known to it or not)."""
    matrix = data.matrix()
    rows = history_rows(data, dict(champion.meta.get("selected", {}).get("params", {})))
    to_champion = pd.Index(champion.items).get_indexer(matrix.items)
    known = np.flatnonzero(to_champion >= 0)
    project = sparse.csr_matrix(
        (np.ones(len(known)), (known, to_champion[known])), shape=(len(matrix.items), len(champion.items))
    )

    if len(champion.items) >= candidates.CANDIDATES_FROM_ITEMS:  # its rankings over candidates, mapped back
        back = np.full(len(champion.items), -1, dtype=np.int64)
        back[to_champion[known]] = known
        tiebreak = np.zeros(len(champion.items), dtype=np.float32)
        tiebreak[to_champion[known]] = popularity_tiebreak(matrix.matrix)[known]

        def ranked(users: np.ndarray) -> Ranked:
            mine = (rows[users] @ project).tocsr()
            top, best = candidates.recommend(champion.model, mine, max(KS), candidates.CANDIDATES, tiebreak)
            mapped = np.where(top >= 0, back[np.maximum(top, 0)], -1)  # an item this split doesn't have: no place
            return Ranked(mapped, np.where(mapped >= 0, best, -np.inf))

        return ranked

    def score(users: np.ndarray) -> np.ndarray:
        theirs = np.asarray(champion.model.score((rows[users] @ project).tocsr()), dtype=np.float64)
        theirs = np.where(np.isfinite(theirs), theirs, np.nan)
        floor = np.nan_to_num(np.nanmin(theirs, axis=1, initial=0.0), nan=0.0) - 1.0
        out = np.repeat(floor[:, None], len(matrix.items), axis=1)
        out[:, known] = np.where(np.isnan(theirs[:, to_champion[known]]), floor[:, None], theirs[:, to_champion[known]])
        return out

    return score


@dataclass(frozen=True)
class Candidate:
    name: str
    grid: list[dict[str, Any]]
    fit: Callable[[TrainSet, dict[str, Any]], Scorer]
    peer: bool = False


def grid(**axes: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        out = [{**row, name: value} for row in out for value in values]
    return out


def shopwise_candidates(
    n_items: int, has_catalog: bool, budget: str = "full", wanted: list[str] | None = None
) -> list[Candidate]:
    """shopwise's model families with their tuning grids. EASE up to EASE_MAX_ITEMS items, iALS beyond (or both
    when ``budget`` is "full" or iALS is ``wanted`` by name). ``budget`` "quick" trims the grids (the demo);
    ``wanted`` keeps only the named families."""
    if budget not in ("quick", "full"):
        raise ValueError(f"the grids are quick or full, not {budget!r} (Hyperparameters.budget_for resolves auto)")
    quick = budget == "quick"
    decay = [0.0] if quick else [0.0, 60.0]
    boost = [2.0] if quick else [0.0, 2.0]
    out = [
        Candidate("popularity", grid(window_days=[30.0] if quick else [7.0, 30.0, 3650.0]), model_fit("popularity")),
        Candidate(
            "itemknn",
            grid(half_life_days=decay, neighbours=[100] if quick else [50, 200], shrinkage=[10.0], recent_boost=boost),
            model_fit("itemknn"),
        ),
        Candidate("sequential", grid(half_life_days=[7.0], window=[5]), model_fit("sequential")),
    ]
    if n_items <= EASE_MAX_ITEMS:
        l2 = [500.0] if quick else [300.0, 1000.0, 3000.0]
        out.append(Candidate("ease", grid(half_life_days=decay, l2=l2, recent_boost=boost), model_fit("ease")))
    if n_items > EASE_MAX_ITEMS or not quick or "ials" in (wanted or []):
        out.append(
            Candidate(
                "ials",
                grid(  # a compiled fit takes about a second: the grid is as wide as the peers'
                    half_life_days=decay[:1],
                    factors=[64] if quick else [64, 256],
                    regularization=[1.0] if quick else [1.0, 10.0, 100.0],
                    alpha=[10.0] if quick else [1.0, 10.0],
                    iterations=[10],
                    recent_boost=boost,
                ),
                model_fit("ials"),
            )
        )
    if has_catalog:
        out.append(Candidate("content", grid(half_life_days=[30.0], neighbours=[50]), model_fit("content")))
        out.append(Candidate("affinity", grid(half_life_days=[0.0] if quick else [0.0, 14.0]), model_fit("affinity")))
    return [c for c in out if c.name in wanted] if wanted else out


@dataclass
class Result:
    name: str
    peer: bool
    params: dict[str, Any]
    validation: dict[str, float]
    test: Evaluation | None = None
    fit_seconds: float = 0.0
    tried: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    # the family's tuning: its grid's fits and scores, then its refit and test figures; wall and its process's CPU
    # (the job's, or the worker's that tuned it: every thread of it)
    seconds: float = 0.0
    cpu: float = 0.0
    # the blend's: its steps' wall seconds (the families' fits, each history rows' search, its test refit)
    steps: dict[str, float] = field(default_factory=dict)
    # its tuning as the tasks ``tune_families`` spreads over workers: each fit's configurations (``fit_groups``, in
    # their order), wall, and the best's refit and test figures (make scale schedules them on the instance's workers)
    group_seconds: list[float] = field(default_factory=list)
    test_seconds: float = 0.0


def train_set(
    train: pd.DataFrame, test: pd.DataFrame, catalog: pd.DataFrame, weights: dict[str, float] | None = None
) -> TrainSet:
    """The universe: every user of train and test, every item of train, test and the catalog."""
    users = unique_ids(train["user_id"], test["user_id"])
    items = unique_ids(train["item_id"], test["item_id"], *([catalog["item_id"]] if len(catalog) else []))
    return TrainSet(
        interactions=train, users=users, items=items, catalog=catalog, weights=weights or dict(KIND_WEIGHTS)
    )


@dataclass(frozen=True)
class BlendSearch:
    """What the blend's weight search scores: the families' fits on ``inner`` (``parts``, best first), the tuning
    users' validation rows (``test``, ``users``: their rows in ``inner``'s matrix). One search for each of
    HYBRID_ROWS (``rows``), each independent of the others: with tuning's workers, each in a process of its own."""

    inner: TrainSet
    parts: list[Any]
    kinds: list[str]
    test: pd.DataFrame
    users: np.ndarray
    metric: str
    ks: tuple[int, ...]
    prices: dict[str, float] | None

    def rows(self, row_params: dict[str, Any]) -> tuple[list[float], float, dict[str, float], float, float]:
        """The greedy search on one kind of history rows: the anchor (the best family) at weight 1, each other
        family, best first, at the weight in HYBRID_WEIGHTS that raises the metric most, or left out. Returns the
        weights, the metric, every metric, and the search's wall and CPU seconds."""
        started, used = time.perf_counter(), cpu_seconds()
        inner, parts, users, ks, metric = self.inner, self.parts, self.users, self.ks, self.metric
        matrix = inner.matrix()
        position = np.full(matrix.matrix.shape[0], -1)
        position[users] = np.arange(len(users))
        large = len(inner.items) >= candidates.CANDIDATES_FROM_ITEMS
        tiebreak = popularity_tiebreak(matrix.matrix) if large else None
        rows = history_rows(inner, row_params)[users]
        at: sparse.csr_matrix | None = None
        if large:  # every part scaled at the union of all parts' candidates: a weight trial re-ranks that union
            cache = candidates.Cache()
            every = Hybrid(parts=parts, kinds=self.kinds, weights=[1.0] * len(parts))
            at = candidates.widened_candidates(every, rows, candidates.CANDIDATES, cache)
            cached = [candidates.scale_segments(candidates.score_at(p, rows, at, cache), at.indptr) for p in parts]
        else:
            cached = [scale_rows(part.score(rows)) for part in parts]

        def value(weights: list[float]) -> tuple[float, dict[str, float]]:
            blend = np.zeros_like(cached[0])
            for w, c in zip(weights, cached, strict=True):
                if w:
                    blend += w * c
            if at is not None:
                ranked = Ranked(*candidates.rank(at, blend, rows, max(ks), tiebreak))
                scorer: Scorer = lambda u: Ranked(ranked.top[position[u]], ranked.scores[position[u]])  # noqa: E731
            else:
                scorer = lambda u: blend[position[u]]  # noqa: E731
            evaluation = evaluate(scorer, matrix, self.test, ks, self.prices)
            return evaluation.metrics[metric], evaluation.metrics

        weights = [1.0] + [0.0] * (len(parts) - 1)
        current, metrics = value(weights)
        for i in range(1, len(parts)):
            for w in HYBRID_WEIGHTS:
                trial = [*weights[:i], w, *weights[i + 1 :]]
                v, m = value(trial)
                if v > current:
                    current, metrics, weights = v, m, trial
        return weights, current, metrics, time.perf_counter() - started, cpu_seconds() - used


# the worker's BlendSearch, set once by its initializer (pickled into it at its spawn)
_BLEND: list[BlendSearch] = []


def _blend_worker(search: BlendSearch) -> None:
    _BLEND[:] = [search]


def _blend_rows(row_params: dict[str, Any]) -> tuple[list[float], float, dict[str, float], float, float]:
    return _BLEND[0].rows(row_params)


def tune_hybrid(
    results: list[Result],
    inner: TrainSet,
    validation: Split,
    metric: str,
    ks: tuple[int, ...],
    prices: dict[str, float] | None,
    log: Log,
    workers: int = 1,
) -> Result:
    """A blend of the tuned families, searched greedily on the validation split (``BlendSearch.rows``) on each of
    HYBRID_ROWS (plain, with the recent-session boost, decayed with a 14-day half-life: every part scores the same
    rows, so the search scores exactly what the batch transform will serve), the best of the three kept. With
    ``workers`` above 1 the three searches run at once in spawned processes, each given the fitted families once
    and its share of the cores; the figures are the same. Its ``steps``: the families' fits and each search's
    wall seconds (``make scale`` puts the blend on the instance as the fits, then the longest search)."""
    started = time.perf_counter()
    families = sorted((r for r in results if not r.peer and r.name in MODEL_KINDS), key=lambda r: -r.validation[metric])
    parts = [build_model(r.name, inner, r.params) for r in families]
    steps = {"fits": time.perf_counter() - started}
    matrix = inner.matrix()
    rel = relevance(matrix, validation.test)
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    test = validation.test
    if len(users) > TUNING_USERS:
        users = np.sort(np.random.default_rng(0).choice(users, TUNING_USERS, replace=False))
        test = test[test["user_id"].isin(set(matrix.users[users]))]
    search = BlendSearch(inner, parts, [r.name for r in families], test, users, metric, ks, prices)
    workers = min(workers, len(HYBRID_ROWS))
    if workers > 1:
        log(f"searching the blend's weights on {len(HYBRID_ROWS)} kinds of rows in {workers} processes side by side")
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_blend_worker,
            initargs=(search,),
        )
        try:
            with threads_for_children(max(1, (os.cpu_count() or 1) // workers)):
                futures = [pool.submit(_blend_rows, row_params) for row_params in HYBRID_ROWS]
            found = [future.result() for future in futures]
        finally:
            pool.shutdown(cancel_futures=True)
    else:
        found = [search.rows(row_params) for row_params in HYBRID_ROWS]
    best: tuple[float, dict[str, Any], dict[str, float]] | None = None
    tried: list[tuple[dict[str, Any], float]] = []
    for n, (row_params, (weights, current, metrics, seconds, _cpu)) in enumerate(zip(HYBRID_ROWS, found, strict=True)):
        steps[f"rows {n}"] = seconds
        params = {
            **row_params,
            "components": [
                {"kind": r.name, "params": r.params, "weight": w} for r, w in zip(families, weights, strict=True)
            ],
        }
        tried.append((params, current))
        if best is None or current > best[0]:
            best = (current, params, metrics)
    assert best is not None
    log(f"  {summary('hybrid', best[1])}: validation {metric}={best[0]:.4f} ({time.perf_counter() - started:.1f}s)")
    return Result("hybrid", False, best[1], best[2], tried=tried, steps=steps)


def tuning_sample(test: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """The validation rows of at most ``limit`` (TUNING_USERS) users, a fixed sample when there are more."""
    limit = TUNING_USERS if limit is None else limit
    users = np.unique(test["user_id"].to_numpy(dtype=str))
    if len(users) <= limit:
        return test
    keep = np.random.default_rng(0).choice(users, limit, replace=False)
    return test[test["user_id"].isin(set(keep))]


@dataclass(frozen=True)
class Tuning:
    """What every family is tuned and reported on: fitted on ``inner`` and scored on ``tuning`` (the validation
    split's sample), refitted on ``outer`` and scored on ``reported`` (the test split's), on ``metric``."""

    inner: TrainSet
    tuning: pd.DataFrame
    outer: TrainSet | None
    reported: pd.DataFrame
    metric: str
    ks: tuple[int, ...]
    prices: dict[str, float] | None


Scored = tuple[dict[str, Any], float, dict[str, float], float, float]  # params, value, metrics, wall s, CPU s


def scored(candidate: Candidate, grid: list[dict[str, Any]], on: Tuning, log: Log) -> list[Scored]:
    """Configurations of a family fitted on ``on.inner`` and scored on the tuning sample, in their order."""
    out: list[Scored] = []
    for params in grid:
        started, used = time.perf_counter(), cpu_seconds()
        scorer = candidate.fit(on.inner, params)
        evaluation = evaluate(scorer, on.inner.matrix(), on.tuning, on.ks, on.prices)
        value = evaluation.metrics[on.metric]
        wall = time.perf_counter() - started
        log(f"  {candidate.name} {params}: validation {on.metric}={value:.4f} ({wall:.1f}s)")
        out.append((params, value, evaluation.metrics, wall, cpu_seconds() - used))
    return out


def chosen(candidate: Candidate, grid: list[Scored]) -> Result:
    """The family's best configuration on the tuning sample (the first of equals, in the grid's order)."""
    assert grid, f"{candidate.name} has an empty grid"
    best = grid[0]
    for entry in grid[1:]:
        if entry[1] > best[1]:
            best = entry
    return Result(
        candidate.name,
        candidate.peer,
        best[0],
        best[2],
        tried=[(params, value) for params, value, *_ in grid],
        seconds=sum(entry[3] for entry in grid),
        cpu=sum(entry[4] for entry in grid),
        group_seconds=[sum(grid[i][3] for i in group) for group in fit_groups(candidate)],
    )


def tested(candidate: Candidate, result: Result, on: Tuning, log: Log) -> Result:
    """The family's best configuration refitted on ``on.outer`` and scored on the test sample (its figures and time
    added to ``result``)."""
    if on.outer is None:
        return result
    clock, used = time.perf_counter(), cpu_seconds()
    scorer = candidate.fit(on.outer, result.params)
    result.fit_seconds = time.perf_counter() - clock
    result.test = evaluate(scorer, on.outer.matrix(), on.reported, on.ks, on.prices)
    log(f"{candidate.name}: test {on.metric}={result.test.metrics[on.metric]:.4f} with {result.params}")
    result.test_seconds = time.perf_counter() - clock
    result.seconds += result.test_seconds
    result.cpu += cpu_seconds() - used
    return result


def tune_family(candidate: Candidate, on: Tuning, log: Log) -> Result:
    """One family: every configuration of its grid fitted on ``on.inner`` and scored on the tuning sample, the best
    refitted on ``on.outer`` and scored on the test sample."""
    return tested(candidate, chosen(candidate, scored(candidate, candidate.grid, on, log)), on, log)


def fit_groups(candidate: Candidate) -> list[list[int]]:
    """The grid's configurations by the model they fit (``fit_key``), in the grid's order: one worker scores a group
    on one fit."""
    groups: dict[str, list[int]] = {}
    for index, params in enumerate(candidate.grid):
        groups.setdefault(fit_key(params), []).append(index)
    return list(groups.values())


# processes tuning at once (``tune_families``): 0 sizes it from the cores, a worker for every CORES_A_WORKER
# (ml.r5.24xlarge's 96 vCPUs: 12, more than a quick grid's families; 1 below 16 cores: one family after another in
# the job's process, as on a laptop)
TUNING_WORKERS = int(os.environ.get("SHOPWISE_TUNING_WORKERS", "0"))
CORES_A_WORKER = 8


def tuning_workers(tasks: int, cores: int | None = None) -> int:
    """The workers for ``tasks`` (the fits of every family's grid, ``fit_groups``) on ``cores`` (this machine's):
    never more than the tasks."""
    cores = cores or os.cpu_count() or 1
    wanted = TUNING_WORKERS or (cores // CORES_A_WORKER if cores >= 2 * CORES_A_WORKER else 1)
    return max(1, min(wanted, tasks))


# the worker's Tuning, set once by its initializer (pickled into it at its spawn)
_TUNING: list[Tuning] = []


def _tuning_worker(on: Tuning) -> None:
    _TUNING[:] = [on]


def _tune_apart(candidate: Candidate) -> tuple[Result, list[str], list[Any]]:
    """In a worker: a family tuned whole, its log lines, and the content fit it made (the job's blend reuses it)."""
    lines: list[str] = []
    result = tune_family(candidate, _TUNING[0], lines.append)
    return result, lines, _CONTENT[1:] if candidate.name == "content" else []


def _scored_apart(candidate: Candidate, grid: list[dict[str, Any]]) -> tuple[list[Scored], list[str]]:
    """In a worker: a group of a family's configurations (one fit) scored, and its log lines."""
    lines: list[str] = []
    return scored(candidate, grid, _TUNING[0], lines.append), lines


def _tested_apart(candidate: Candidate, result: Result) -> tuple[Result, list[str]]:
    """In a worker: a family's best configuration refitted and scored on the test split, and its log lines."""
    lines: list[str] = []
    return tested(candidate, result, _TUNING[0], lines.append), lines


def tune_families(candidates: list[Candidate], on: Tuning, log: Log, workers: int = 1) -> list[Result]:
    """Every family tuned (``tune_family``), in the candidates' order. With ``workers`` above 1 the work runs at
    once in spawned processes, each given ``on`` once and its share of the cores (``threads_for_children``): a
    family of one fit (every family at ``budget=quick``) is one task, whole; a family of several fits (``full``:
    iALS's 12, item-kNN's 4) is a task for each fit's configurations, then one for its best's test refit. Tuning on
    an instance then takes about its longest task chain, where one after another it took their sum (``make
    scale``'s tuning at the envelope). Spawned, not forked: the job has run OpenMP by then. A family's fit must
    pickle (a shopwise family's ``ModelFit`` does). Every fit is deterministic and reads nothing another family
    wrote, so the figures are those of one process — but the content index's ANN graph (from 100,000 items), whose
    faiss build follows its threads."""
    groups = [fit_groups(candidate) for candidate in candidates]
    workers = min(workers, sum(len(g) for g in groups))
    if workers <= 1:  # (one family of one fit, too)
        return [tune_family(candidate, on, log) for candidate in candidates]
    log(f"tuning {len(candidates)} families in {workers} processes side by side")
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_tuning_worker, initargs=(on,)
    )
    threads = max(1, (os.cpu_count() or 1) // workers)
    try:
        with threads_for_children(threads):
            whole = {i: pool.submit(_tune_apart, c) for i, c in enumerate(candidates) if len(groups[i]) == 1}
            parts = {
                i: [pool.submit(_scored_apart, c, [c.grid[j] for j in group]) for group in groups[i]]
                for i, c in enumerate(candidates)
                if len(groups[i]) > 1
            }
        lines: dict[int, list[str]] = {}
        best: dict[int, Future[tuple[Result, list[str]]]] = {}
        for i, futures in parts.items():
            by_index: dict[int, Scored] = {}
            lines[i] = []
            for group, future in zip(groups[i], futures, strict=True):
                grid, group_lines = future.result()
                by_index.update(zip(group, grid, strict=True))
                lines[i] += group_lines
            with threads_for_children(threads):
                best[i] = pool.submit(
                    _tested_apart, candidates[i], chosen(candidates[i], [by_index[j] for j in sorted(by_index)])
                )
        results = []
        for i in range(len(candidates)):
            if i in whole:
                result, family_lines, content = whole[i].result()
                if content:  # the job's one content fit (content_fit), made in the worker, for the blend's parts
                    _CONTENT[:] = [on.inner.catalog, *content]
            else:
                result, test_lines = best[i].result()
                family_lines = lines[i] + test_lines
            for line in family_lines:
                log(line)
            results.append(result)
        return results
    finally:
        pool.shutdown(cancel_futures=True)


def select(
    candidates: list[Candidate],
    validation: Split,
    test: Split | None,
    catalog: pd.DataFrame,
    metric: str = "ndcg@10",
    ks: tuple[int, ...] = KS,
    prices: dict[str, float] | None = None,
    log: Log = lambda _line: None,
    hybrid: bool = True,
    weights: dict[str, float] | None = None,
    workers: int = 1,
) -> list[Result]:
    """Tune each candidate on ``validation`` (fit on its train part, score its test part), then refit the best
    configuration on ``test.train`` and evaluate on ``test.test``. Results are sorted best first on the validation
    metric: the test split reports, it never chooses. ``workers``: families tuned at once (``tune_families``)."""
    inner = train_set(validation.train, validation.test, catalog, weights)
    inner.matrix()  # built once before the families (and pickled with them into their workers)
    outer = train_set(test.train, test.test, catalog, weights) if test is not None else None
    reported = tuning_sample(test.test, EVALUATION_USERS) if test is not None else pd.DataFrame()
    if test is not None and len(reported) < len(test.test):
        log(f"test figures on a fixed sample of {EVALUATION_USERS:,} of {test.test['user_id'].nunique():,} test users")
    on = Tuning(inner, tuning_sample(validation.test), outer, reported, metric, ks, prices)
    results = tune_families(candidates, on, log, workers)
    if hybrid and sum(1 for r in results if not r.peer) >= 2:
        clock, used = time.perf_counter(), cpu_seconds()
        # the three searches at once where the families were tuned side by side
        blended = tune_hybrid(results, inner, validation, metric, ks, prices, log, workers)
        if outer is not None and test is not None:
            started = time.perf_counter()
            scorer = model_fit("hybrid")(outer, blended.params)
            blended.fit_seconds = time.perf_counter() - started
            blended.test = evaluate(scorer, outer.matrix(), reported, ks, prices)
            blended.steps["test"] = time.perf_counter() - started
            log(f"hybrid: test {metric}={blended.test.metrics[metric]:.4f}")
        blended.seconds, blended.cpu = time.perf_counter() - clock, cpu_seconds() - used
        results.append(blended)  # last: on a tie with a single family, the simpler model is chosen
    return sorted(results, key=lambda r: r.validation[metric], reverse=True)
