"""The models, the splits and the metrics, on data small enough to know the right answer."""

import itertools
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from shopwise_jobs.dataset import (
    INTERACTION_COLUMNS,
    Matrix,
    interaction_matrix,
    leave_last_out,
    sessions,
    temporal_split,
)
from shopwise_jobs.evaluation import evaluate
from shopwise_jobs.models import EASE, IALS, ContentKNN, ItemKNN, SequentialRules, Sessions, _blocks, tfidf_rows

TRIBES = 2
ITEMS_PER_TRIBE = 10


def tribes(users: int = 40, seed: int = 3) -> sparse.csr_matrix:
    """Users of tribe t touch 6 of tribe t's 10 items and nothing else."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(users):
        tribe = u % TRIBES
        for item in rng.choice(ITEMS_PER_TRIBE, 6, replace=False):
            rows.append(u)
            cols.append(tribe * ITEMS_PER_TRIBE + int(item))
    return sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(users, TRIBES * ITEMS_PER_TRIBE)
    )


def tribes_shopping(
    users: int = 200, kinds: bool = True
) -> tuple[sparse.csr_matrix, list[tuple[str, str, str, float]]]:
    """``tribes(users)`` as events: each user's items in a random order, of random kinds (or views alone)."""
    rng = np.random.default_rng(5)
    history = tribes(users)
    rows = []
    for u in range(history.shape[0]):
        for n, i in enumerate(rng.permutation(history[u].indices)):
            kind = str(rng.choice(["view", "view", "cart", "purchase"])) if kinds else "view"
            rows.append((f"u{u}", f"i{i}", kind, float(u + 1000 * n)))
    return history, rows


def frame(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(f"e{n}", u, i, k, ts, np.nan, "", "", "") for n, (u, i, k, ts) in enumerate(rows)],
        columns=INTERACTION_COLUMNS,
    )


def test_ease_matches_the_closed_form_in_double_precision() -> None:
    x = tribes()
    model = EASE.fit(x, l2=5.0, min_support=1)
    g = (x.T @ x).toarray().astype(np.float64) + 5.0 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights, expected, atol=1e-4)
    assert np.all(np.diag(model.weights) == 0.0)


def test_ease_leaves_rare_items_out_and_refuses_catalogs_beyond_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    x = tribes().tolil()
    x[0, 0] = 0
    x[:, 0] = 0
    x[0, 0] = 1.0  # item 0 now has one user: below min_support=2
    model = EASE.fit(x.tocsr(), l2=5.0, min_support=2)
    assert 0 not in model.kept
    assert model.score(x.tocsr()[:3]).shape == (3, x.shape[1])
    monkeypatch.setattr("shopwise_jobs.models.EASE_MAX_ITEMS", 5)
    with pytest.raises(ValueError, match="use IALS"):
        EASE.fit(tribes(), l2=5.0)


@pytest.mark.parametrize("make", [lambda x: EASE.fit(x, l2=5.0), lambda x: IALS.fit(x, factors=2, regularization=0.1)])
def test_factor_and_linear_models_rank_the_users_own_tribe_first(make) -> None:
    x = tribes()
    model = make(x)
    scores = model.score(x)
    seen = x.toarray() > 0
    for u in range(x.shape[0]):
        own = np.zeros(x.shape[1], dtype=bool)
        own[(u % TRIBES) * ITEMS_PER_TRIBE : (u % TRIBES + 1) * ITEMS_PER_TRIBE] = True
        # every unseen item of the user's own tribe outscores every item of the other tribe
        assert scores[u][own & ~seen[u]].min() > scores[u][~own].max(), u


def test_ials_folds_in_a_history_it_never_saw() -> None:
    x = tribes()
    model = IALS.fit(x, factors=2, regularization=0.1)  # the data's true rank
    newcomer = sparse.csr_matrix(([1.0, 1.0], ([0, 0], [11, 12])), shape=(1, x.shape[1]))
    top = np.argsort(-model.score(newcomer)[0])
    assert set(top[:8]) <= set(range(10, 20))


def test_the_compiled_ials_fit_minimises_the_same_objective_as_exact_sweeps() -> None:
    """The compiled solver (conjugate-gradient steps) reaches what exact least-squares sweeps (the fold-in's own
    solver) reach under shopwise's objective: confidence 1 + alpha x strength, L2 on both sides."""
    from shopwise_jobs.models import _als_sweep

    rng = np.random.default_rng(3)
    x = sparse.random(300, 120, density=0.05, random_state=4, format="csr", dtype=np.float64)
    x.data = rng.choice([1.0, 2.0, 4.0], size=len(x.data))
    alpha, reg, factors = 10.0, 1.0, 8

    def loss(items: np.ndarray) -> float:
        users = _als_sweep(x, items.astype(np.float64), alpha, reg)  # the best users for these items
        prediction = users @ items.T
        confidence = 1.0 + alpha * x.toarray()
        preference = (x.toarray() > 0).astype(float)
        fit = (confidence * (preference - prediction) ** 2).sum()
        return float(fit + reg * ((users**2).sum() + (items**2).sum()))

    exact = rng.standard_normal((120, factors)) * 0.01
    for _ in range(15):
        exact = _als_sweep(x.T.tocsr(), _als_sweep(x, exact, alpha, reg), alpha, reg)
    compiled = IALS.fit(x, factors=factors, regularization=reg, alpha=alpha, iterations=15).item_factors
    assert loss(compiled) < 1.05 * loss(exact)


def _store_like(seed: int = 6) -> sparse.csr_matrix:
    """A users x items strength matrix shaped as a store's: most shoppers a few items, some many, some none."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.15, 400), 60)
    lengths[::37] = 0  # shoppers with nothing left (their rows are solved to zero)
    rows = np.repeat(np.arange(400), lengths)
    cols = rng.integers(0, 150, len(rows))
    values = rng.choice(np.array([1.0, 2.0, 4.0], dtype=np.float32), len(rows))
    return sparse.csr_matrix((values, (rows, cols)), shape=(400, 150))


@pytest.mark.parametrize("processes", [2, 3])
def test_ials_fitted_in_processes_is_implicits_fit(processes: int, tmp_path: Path, monkeypatch) -> None:
    """iALS's half-steps on blocks of rows in processes (shopwise_jobs.als) give implicit's threaded fit's item
    factors bit for bit, in any number of blocks; the shared files are gone after."""
    from shopwise_jobs import als

    monkeypatch.setenv("SHOPWISE_SCRATCH", str(tmp_path))
    x = _store_like()
    monkeypatch.setattr(als, "PROCESSES_FROM_ENTRIES", 10**12)  # implicit's own fit, on its threads
    threaded = IALS.fit(x, factors=8, regularization=1.0, alpha=10.0, iterations=4, seed=5)
    monkeypatch.setattr(als, "PROCESSES_FROM_ENTRIES", 0)
    monkeypatch.setattr("shopwise_jobs.models.FIT_THREADS", processes)
    before = sum(os.times()[2:4])
    split = IALS.fit(x, factors=8, regularization=1.0, alpha=10.0, iterations=4, seed=5)
    assert sum(os.times()[2:4]) > before  # the work ran in the (ended) child processes
    assert np.isfinite(threaded.item_factors).all() and np.abs(threaded.item_factors).max() > 0.01
    assert np.array_equal(split.item_factors, threaded.item_factors)
    assert list(tmp_path.iterdir()) == []
    # and another seed is another start: the same factors are not the same whatever the seed
    other = IALS.fit(x, factors=8, regularization=1.0, alpha=10.0, iterations=4, seed=6)
    assert not np.array_equal(other.item_factors, split.item_factors)


def test_ials_row_blocks_cover_every_row_once_at_about_equal_cost() -> None:
    from shopwise_jobs.als import ROW_COST_ENTRIES, row_blocks

    x = _store_like()
    blocks = row_blocks(x.indptr, 4)
    assert blocks[0][0] == 0 and blocks[-1][1] == x.shape[0]
    assert all(a < b == c for (a, b), (c, _) in itertools.pairwise(blocks))  # contiguous, none empty
    costs = [(b - a) * ROW_COST_ENTRIES + x.indptr[b] - x.indptr[a] for a, b in blocks]
    assert len(blocks) == 4 and max(costs) < 1.1 * min(costs)
    assert row_blocks(x.indptr[:3], 8) == [(0, 1), (1, 2)]  # more processes than rows: a block a row


@pytest.mark.parametrize(
    ("block_pairs", "threads"), [(1 << 24, 1), (50, 1), (50, 3)]
)  # one block, and many (a row's pairs alone exceed 50), one at a time and three at a time
def test_item_knn_keeps_each_items_top_k_of_the_shrunk_cosine(block_pairs: int, threads: int, monkeypatch) -> None:
    monkeypatch.setattr("shopwise_jobs.models.SPARSE_BLOCK_PAIRS", block_pairs)
    monkeypatch.setattr("shopwise_jobs.models.FIT_THREADS", threads)
    x = sparse.random(200, 60, density=0.08, random_state=5, format="csr", dtype=np.float32)
    model = ItemKNN.fit(x, neighbours=7, shrinkage=3.0)
    # the oracle: every pair, dense
    binary = (x.toarray() > 0).astype(np.float64)
    shared = binary.T @ binary
    np.fill_diagonal(shared, 0.0)
    norms = np.sqrt(binary.sum(axis=0))
    full = shared / (np.outer(norms, norms) + 1e-9) * shared / (shared + 3.0)
    kept = model.similarity.toarray()
    for i in range(60):
        row = kept[i][kept[i] > 0]
        assert len(row) == min(7, int((full[i] > 0).sum()))
        np.testing.assert_allclose(kept[i][kept[i] > 0], full[i][kept[i] > 0], rtol=1e-5)  # the right values
        np.testing.assert_allclose(np.sort(row), np.sort(full[i])[-len(row) :], rtol=1e-5)  # and the largest


def test_item_knn_blocks_cover_the_rows_in_order_each_within_the_budget_and_its_last_row() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        work = rng.integers(0, 20, int(rng.integers(1, 40))).astype(np.float64)
        work[rng.integers(0, len(work))] = 100.0  # a row above the budget
        budget = float(rng.integers(1, 60))
        blocks = _blocks(work, budget)
        assert blocks[0][0] == 0 and blocks[-1][1] == len(work)
        assert all(a < b for a, b in blocks) and all(
            end == start for (_, end), (start, _) in itertools.pairwise(blocks)
        )
        assert all(work[a:b].sum() <= budget + work[b - 1] for a, b in blocks)
    assert _blocks(np.ones(5), 2.0) == [(0, 2), (2, 4), (4, 5)]  # cut where the budget is reached
    assert _blocks(np.array([1.0, 9.0, 1.0, 1.0]), 2.0) == [(0, 2), (2, 4)]  # the row above it ends its range
    assert _blocks(np.zeros(3), 1.0) == [(0, 3)] and _blocks(np.zeros(0), 1.0) == []


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matrices_summed_in_blocks_of_rows_on_threads_are_the_whole_sum(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """models.summed_matrices holds its sums as blocks of rows, each part cut into them on its thread and each sum
    added block by block on the threads: the very matrix summing them whole gives (its entries, their order and
    values), with parts holding duplicates, empty rows and a row holding most entries (the rules from dozens of
    chunks: test_sequential_rules_sum_one_over_the_distance_of_every_pair_in_a_session)."""
    from shopwise_jobs import models

    monkeypatch.setattr(models, "FIT_THREADS", threads)
    rng = np.random.default_rng(3)
    n = 120

    def matrix() -> sparse.csr_matrix:
        rows = np.r_[rng.integers(0, n, 400), np.full(600, 7)]  # row 7 holds most entries
        rows = rows[(rows < 40) | (rows >= 60)]  # rows 40-59 empty
        cols = rng.integers(0, n, len(rows))
        return sparse.csr_matrix(
            (rng.random(len(rows)), cols, np.r_[0, np.cumsum(np.bincount(rows, minlength=n))]), shape=(n, n)
        )

    parts = [matrix() for _ in range(11)]  # each row's entries unsorted and repeated, as given
    whole = parts[0].copy()
    for other in parts[1:]:
        whole = whole + other
    whole.sum_duplicates()
    summed = models.summed_matrices(list(range(len(parts))), lambda i: parts[i], (n, n))
    assert summed.nnz > n
    for name in ("indptr", "indices"):
        assert np.array_equal(getattr(summed, name), getattr(whole, name)), name
    assert np.allclose(summed.data, whole.data, rtol=1e-12)


def test_sequential_rules_sum_one_over_the_distance_of_every_pair_in_a_session() -> None:
    rng = np.random.default_rng(11)
    sessions = [rng.integers(0, 30, rng.integers(1, 12)).tolist() for _ in range(300)]
    oracle: dict[tuple[int, int], float] = {}  # the definition, pair by pair
    for seq in sessions:
        for p, i in enumerate(seq):
            for d in range(1, 4):
                if p + d < len(seq) and seq[p + d] != i:
                    oracle[(i, seq[p + d])] = oracle.get((i, seq[p + d]), 0.0) + 1.0 / d
    for given in (sessions, Sessions.of(sessions)):
        rules = SequentialRules.fit(given, n_items=30, window=3, neighbours=30).rules.todok()
        assert set(rules.keys()) == set(oracle)
        for pair, value in oracle.items():
            assert rules[pair] == pytest.approx(value, rel=1e-6)
    cut = SequentialRules.fit(Sessions.of(sessions), n_items=30, window=3, neighbours=4).rules
    assert np.diff(cut.indptr).max() == 4  # each row cut to its 4 strongest followers
    # in chunks of whole sessions of about 40 events (dozens of chunks, summed as they come): the same rules to the
    # bit, the cut included — the sums are whole numbers, exact in any order
    for chunk_rows in (40, 1):
        chunked = SequentialRules.fit(Sessions.of(sessions), n_items=30, window=3, neighbours=4, chunk_rows=chunk_rows)
        assert (chunked.rules != cut).nnz == 0
        assert np.array_equal(chunked.rules.indices, cut.indices) and np.array_equal(chunked.rules.data, cut.data)


def test_sessions_match_a_loop_over_each_users_events() -> None:
    """Named sessions (interleaved with unnamed events), gaps, repeats, one-item sessions, users in any order."""
    rng = np.random.default_rng(4)
    rows = []
    for n in range(600):
        user = f"u{rng.integers(0, 12)}"
        named = rng.random() < 0.4
        rows.append(
            (f"e{n}", user, f"i{rng.integers(0, 15)}", "view", float(rng.integers(0, 40) * 300), np.nan,
             f"s{rng.integers(0, 3)}" if named else "", "", "")
        )  # fmt: skip
    data = pd.DataFrame(rows, columns=INTERACTION_COLUMNS)
    items = np.array([f"i{k}" for k in range(14)])  # i14 is not among them: its events are left out
    index = {item: k for k, item in enumerate(items)}
    known = data[data["item_id"].isin(index)].sort_values(["user_id", "ts"], kind="stable")
    groups: dict[tuple[str, str], list[int]] = {}  # in the order each session starts
    last: dict[str, float] = {}
    counter = 0
    for user, item, ts, named in known[["user_id", "item_id", "ts", "session_id"]].itertuples(index=False):
        if user not in last or ts - last[user] > 1800:
            counter += 1
        last[user] = ts
        groups.setdefault((user, named or f"#{counter}"), []).append(index[item])
    expected = []
    for seq in groups.values():
        collapsed = [c for n, c in enumerate(seq) if n == 0 or c != seq[n - 1]]
        if len(collapsed) > 1:
            expected.append(collapsed)
    assert sessions(data, items).tolist() == expected
    assert len(expected) > 40
    # in chunks of whole users (a chunk boundary inside a user moves to the user's first row): the same sessions
    for chunk_rows in (30, 1):
        assert sessions(data, items, chunk_rows=chunk_rows).tolist() == expected


def test_sequential_rules_predict_what_followed_and_weigh_the_newest_item_most() -> None:
    sessions = [[0, 1, 2]] * 5 + [[3, 4]] * 5
    model = SequentialRules.fit(sessions, n_items=5, window=2)
    scores = model.score_sessions([[0], [3], [0, 3]])
    assert np.argmax(scores[0]) == 1
    assert np.argmax(scores[1]) == 4
    assert np.argmax(scores[2]) == 4  # 3 is newest: what follows 3 leads
    assert scores[0][2] > 0 and scores[0][2] < scores[0][1]  # two steps ahead counts half


def test_repeat_aware_rules_bring_back_the_session_s_own_items_newest_first() -> None:
    sessions = [[0, 1, 2]] * 5 + [[3, 4]] * 5
    model = SequentialRules.fit(sessions, n_items=5, window=2)
    plain = model.score_sessions([[3, 0]])[0]
    assert plain[0] == 0 and plain[3] == 0  # never an item after itself: the session's own items score nothing
    aware = model.score_sessions([[3, 0]], recency=0.5, repeat=0.6, repeat_decay=0.5)[0]
    assert aware[0] == pytest.approx(0.6) and aware[3] == pytest.approx(0.3)  # newest at `repeat`, then decayed
    assert aware[1] == pytest.approx(1.0) and aware[4] == pytest.approx(0.5)  # the rules scaled to their best
    assert list(np.argsort(-aware)[:2]) == [1, 0]  # what follows 0 still leads; the item just seen comes next
    assert np.array_equal(np.argsort(-plain[[1, 2, 4]]), np.argsort(-aware[[1, 2, 4]]))  # the rules' order kept


def test_content_neighbours_come_from_category_brand_and_title() -> None:
    catalog = pd.DataFrame(
        [
            {
                "item_id": "old-boot",
                "title": "Trail boot waterproof",
                "category": "Shoes>Boots",
                "brand": "Acme",
                "price": 120.0,
            },
            {
                "item_id": "new-boot",
                "title": "Trail boot lite",
                "category": "Shoes>Boots",
                "brand": "Acme",
                "price": 110.0,
            },
            {
                "item_id": "sandal",
                "title": "Beach sandal",
                "category": "Shoes>Sandals",
                "brand": "Sunny",
                "price": 30.0,
            },
            {"item_id": "lamp", "title": "Desk lamp", "category": "Home>Lighting", "brand": "Glow", "price": 40.0},
        ]
    )
    items = catalog["item_id"].to_numpy()
    model = ContentKNN.fit(catalog, items, neighbours=3)
    row = model.similarity[1].toarray()[0]  # new-boot: nobody has touched it
    assert np.argmax(row) == 0
    assert row[2] > row[3] == 0.0  # a sandal shares the department, a lamp shares nothing
    assert row[1] == 0.0  # never its own neighbour


def test_content_neighbours_from_the_index_are_exact_cosines_of_nearly_the_same_pairs() -> None:
    # a catalog with the shape of a real one: departments > categories > leaves, brands per department, titles
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(300)]
    rows = []
    for i in range(3000):
        department, category, leaf = rng.integers(6), rng.integers(5), rng.integers(4)
        rows.append(
            {
                "item_id": f"i{i}",
                "title": " ".join(rng.choice(words, size=3, replace=False)),
                "category": f"D{department}>C{department}{category}>L{department}{category}{leaf}",
                "brand": f"B{department}{rng.integers(8)}",
                "price": float(rng.lognormal(3.0, 0.6)),
            }
        )
    catalog = pd.DataFrame(rows)
    items = catalog["item_id"].to_numpy()
    k = 20
    exact = ContentKNN.fit(catalog, items, k).similarity
    approximate = ContentKNN.fit(catalog, items, k, ann_from=0).similarity
    tfidf = tfidf_rows(catalog, items)
    pairs = approximate.tocoo()
    assert (np.diff(approximate.indptr) <= k).all() and not (pairs.row == pairs.col).any()
    # every similarity it keeps is the pair's exact cosine (re-scored from the TF-IDF rows, not the projection's)
    cosine = np.asarray(tfidf[pairs.row].multiply(tfidf[pairs.col]).sum(axis=1)).ravel()
    np.testing.assert_allclose(pairs.data, cosine, atol=1e-5)
    # and nearly every neighbour is as close as the exact k-th (ties make "the same items" the wrong question)
    kth = np.array([np.sort(exact[i].data)[-k] for i in range(len(items))])
    assert (pairs.data >= kth[pairs.row] - 1e-5).mean() > 0.95
    assert approximate.nnz >= 0.99 * exact.nnz


def shaped_catalog(n: int, seed: int = 5) -> pd.DataFrame:
    """A catalog with the shape of a real one: departments > categories > leaves, brands per department, titles."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    return pd.DataFrame(
        [
            {
                "item_id": f"i{i}",
                "title": " ".join(rng.choice(words, size=3, replace=False)),
                "category": f"D{(d := rng.integers(6))}>C{d}{(c := rng.integers(5))}>L{d}{c}{rng.integers(4)}",
                "brand": f"B{d}{rng.integers(8)}",
                "price": float(rng.lognormal(3.0, 0.6)),
            }
            for i in range(n)
        ]
    )


@pytest.mark.parametrize("ann_from", [None, 0])  # exact blocks, and the index
def test_content_neighbours_do_not_depend_on_the_items_order(ann_from: int | None) -> None:
    """A job's splits list the same items in orders of their own: each gets the same neighbours, permuted (the
    index's graph and the top k's ties would otherwise follow the order), so one fit can serve them all."""
    catalog = shaped_catalog(1500)
    items = catalog["item_id"].to_numpy()
    shuffled = np.random.default_rng(1).permutation(items)
    first = ContentKNN.fit(catalog, items, 20, ann_from=ann_from).similarity
    second = ContentKNN.fit(catalog, shuffled, 20, ann_from=ann_from).similarity
    at = {item: i for i, item in enumerate(items)}
    back = np.array([at[item] for item in shuffled])  # second's row r is first's row back[r]
    assert (first[back][:, back] != second).nnz == 0 and second.nnz > 0


def test_a_job_fits_the_content_model_once_for_a_catalog_and_its_items_in_any_order(monkeypatch) -> None:
    from shopwise_jobs import selection

    fits: list[int] = []
    real = ContentKNN.fit_ordered.__func__  # type: ignore[attr-defined]

    def counted(cls: type, catalog: pd.DataFrame, items: np.ndarray, *args: Any, **kwargs: Any) -> ContentKNN:
        fits.append(len(items))
        return real(cls, catalog, items, *args, **kwargs)

    monkeypatch.setattr(ContentKNN, "fit_ordered", classmethod(counted))
    catalog = shaped_catalog(800)
    items = catalog["item_id"].to_numpy()
    shuffled = np.random.default_rng(2).permutation(items)
    fresh = ContentKNN.fit(catalog, shuffled, 10).similarity
    fits.clear()
    first = selection.content_fit(catalog, items, 10)
    again = selection.content_fit(catalog, shuffled, 10)
    assert fits == [800]  # the second split's order: no second fit
    assert (again.similarity != fresh).nnz == 0  # what a fit of its own would have given
    assert (first.similarity != ContentKNN.fit(catalog, items, 10).similarity).nnz == 0
    fits.clear()
    selection.content_fit(catalog, items, 20)  # other neighbours
    selection.content_fit(catalog.copy(), items, 20)  # another catalog, though equal
    selection.content_fit(catalog, items[:-1], 20)  # other items
    assert fits == [800, 800, 799]


def test_leave_last_out_holds_out_each_users_newest_items() -> None:
    data = frame(
        [
            ("u1", "a", "view", 1),
            ("u1", "b", "view", 2),
            ("u1", "c", "purchase", 3),
            ("u1", "a", "cart", 4),  # a again later: a was first seen at 1, so it stays in training
            ("u2", "x", "view", 1),
        ]
    )
    split = leave_last_out(data, n=1)
    assert set(zip(split.test["user_id"], split.test["item_id"], strict=True)) == {("u1", "c")}
    assert "u2" in set(split.train["user_id"])  # one item: stays in training
    assert len(split.train) + len(split.test) == len(data)


def test_temporal_split_cuts_at_one_time_for_everyone() -> None:
    data = frame([(f"u{n % 3}", f"i{n}", "view", float(n)) for n in range(100)])
    split = temporal_split(data, 0.2)
    assert split.train["ts"].max() < split.cutoff <= split.test["ts"].min()
    assert 15 <= len(split.test) <= 25


def test_decay_counts_back_from_each_users_newest_interaction() -> None:
    data = frame([("u1", "a", "view", 0.0), ("u1", "b", "view", 86400.0), ("u2", "a", "view", 50 * 86400.0)])
    m = interaction_matrix(data, half_life_days=1.0)
    u1, u2 = m.user_index()["u1"], m.user_index()["u2"]
    a, b = m.item_index()["a"], m.item_index()["b"]
    assert m.matrix[u1, a] == pytest.approx(0.5)
    assert m.matrix[u1, b] == pytest.approx(1.0)
    assert m.matrix[u2, a] == pytest.approx(1.0)  # u2's only interaction is its newest, however old globally


def test_sessions_break_on_session_id_or_a_gap() -> None:
    data = frame(
        [
            ("u1", "a", "view", 0),
            ("u1", "b", "view", 60),
            ("u1", "c", "view", 60 + 3600),
            ("u1", "d", "view", 60 + 3660),
        ]
    )
    items = np.array(["a", "b", "c", "d"])
    assert sessions(data, items).tolist() == [[0, 1], [2, 3]]


def test_metrics_by_hand() -> None:
    # two users, four items; u0 had item 0, u1 had item 1; the test: u0 -> {2, 3}, u1 -> {3}
    train = Matrix(
        matrix=sparse.csr_matrix(([1.0, 1.0], ([0, 1], [0, 1])), shape=(2, 4)),
        users=np.array(["u0", "u1"]),
        items=np.array(["i0", "i1", "i2", "i3"]),
    )
    test = frame(
        [("u0", "i2", "view", 9), ("u0", "i3", "view", 9), ("u1", "i3", "view", 9), ("u1", "i1", "view", 9)]
    )  # u1 had i1 already: not relevant
    # the scorer ranks i3 > i2 > i1 > i0 for u0 and i2 > i0 > i3 for u1 (seen items drop out)
    fixed = np.array([[0.1, 0.2, 0.3, 0.4], [0.3, 0.9, 0.5, 0.1]], dtype=np.float32)
    result = evaluate(lambda users: fixed[users], train, test, ks=(1, 2), prices={"i2": 10.0, "i3": 30.0})
    m = result.metrics
    assert result.users == 2
    # u0: top1 i3 hit; top2 i3, i2 both hit. u1: top1 i2 miss; top2 i2, i0 miss (i3 is third)
    assert m["recall@1"] == pytest.approx((1 / 1 + 0) / 2)
    assert m["recall@2"] == pytest.approx((2 / 2 + 0) / 2)
    assert m["se/recall@1"] == pytest.approx(0.5)  # values 1 and 0: sample variance 0.5, over 2 users
    assert m["hitrate@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["mrr"] == pytest.approx((1.0 + 0.0) / 2)  # u1's first hit is beyond the largest K
    assert m["coverage@1"] == pytest.approx(2 / 4)
    # relevant value 10 + 30 (u0) + 30 (u1); hit at 1: i3 for u0 = 30
    assert m["revenue_hitrate@1"] == pytest.approx(30 / 70)
    # every training item has <= 5 users: all relevant items are cold, all users are cold
    assert m["cold_items/recall@2"] == pytest.approx(m["recall@2"])
    assert m["cold_users/ndcg@2"] == pytest.approx(m["ndcg@2"])


def test_explain_finds_the_owned_item_that_contributes_most_to_each_pick() -> None:
    from shopwise_jobs.scoring import explain

    rng = np.random.default_rng(1)
    similarity = sparse.random(60, 60, density=0.15, format="csr", random_state=2, dtype=np.float32)
    rows = sparse.random(25, 60, density=0.1, format="csr", random_state=3, dtype=np.float32)
    picks = np.array([rng.permutation(60)[:8] for _ in range(25)])
    picks[rng.random(picks.shape) < 0.2] = -1  # no pick in that place
    got = explain(rows, similarity, picks)
    dense_sim = similarity.toarray()
    for u in range(25):
        owned, weights = rows[u].indices, rows[u].data
        for j, pick in enumerate(picks[u]):
            contrib = weights * dense_sim[owned, pick] if pick >= 0 and len(owned) else np.zeros(0)
            expected = int(owned[np.argmax(contrib)]) if len(contrib) and contrib.max() > 0 else -1
            assert got[u, j] == expected, (u, j)


def test_top_k_per_row_keeps_each_rows_largest_entries() -> None:
    from shopwise_jobs.models import top_k_per_row

    matrix = sparse.random(40, 30, density=0.4, format="csr", random_state=4, dtype=np.float32)
    kept = top_k_per_row(matrix, 3).toarray()
    dense = matrix.toarray()
    for r in range(40):
        expected = np.sort(dense[r][dense[r] > 0])[::-1][:3]
        assert np.allclose(np.sort(kept[r][kept[r] > 0])[::-1], expected)
        assert set(np.flatnonzero(kept[r])) <= set(np.flatnonzero(dense[r]))


@pytest.mark.parametrize("k", [1, 12, 16])
def test_top_k_per_row_breaks_ties_to_the_earlier_entry(k: int) -> None:
    """Rows shorter and longer than k, values with many ties: every row keeps exactly what a stable sort by value
    keeps (ties at the k-th value: the earlier entries), columns in order."""
    from shopwise_jobs.models import top_k_per_row

    matrix = sparse.random(60, 50, density=0.3, format="csr", random_state=7, dtype=np.float64)
    matrix.data = np.round(matrix.data * 4) / 4 + 0.25  # few distinct values: ties everywhere, nothing zero
    kept = top_k_per_row(matrix, k)
    counts = np.diff(matrix.indptr)
    assert (counts > k).any() and (k == 1 or (counts <= k).any())  # both kinds of row are exercised
    for r in range(60):
        span = slice(matrix.indptr[r], matrix.indptr[r + 1])
        entries = list(zip(matrix.indices[span].tolist(), matrix.data[span].tolist(), strict=True))
        expected = sorted(sorted(enumerate(entries), key=lambda p: (-p[1][1], p[0]))[:k], key=lambda p: p[1][0])
        got = slice(kept.indptr[r], kept.indptr[r + 1])
        assert kept.indices[got].tolist() == [col for _pos, (col, _v) in expected], r
        assert kept.data[got].tolist() == [v for _pos, (_c, v) in expected], r


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_top_k_in_blocks_of_rows_on_threads_is_top_k_per_row_of_the_whole(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next-item rules' cut in blocks of rows, a block a thread: the very matrix the whole's cut gives, ties
    included, however many threads cut it (and with empty rows and rows shorter than k in the blocks)."""
    from shopwise_jobs import models

    monkeypatch.setattr(models, "FIT_THREADS", threads)
    matrix = sparse.random(97, 80, density=0.2, format="csr", random_state=11, dtype=np.float64)
    matrix.data = np.round(matrix.data * 4) / 4 + 0.25  # ties everywhere
    matrix.data[matrix.indptr[5] : matrix.indptr[9]] = 0  # empty rows
    matrix.eliminate_zeros()
    whole, blocks = models.top_k_per_row(matrix, 6), models.top_k_in_blocks(matrix, 6)
    assert (np.diff(matrix.indptr) > 6).any() and (np.diff(matrix.indptr) <= 6).any()
    assert blocks.dtype == whole.dtype == np.float32 and blocks.shape == whole.shape
    for name in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(blocks, name), getattr(whole, name)), name


def test_affinity_ranks_the_popular_items_of_the_shoppers_categories_and_brands() -> None:
    from shopwise_jobs.models import Affinity

    catalog = pd.DataFrame(
        [
            {"item_id": "boot-a", "category": "Shoes>Boots", "brand": "Acme"},
            {"item_id": "boot-b", "category": "Shoes>Boots", "brand": "Zed"},
            {"item_id": "boot-c", "category": "Shoes>Boots", "brand": "Zed"},
            {"item_id": "lamp", "category": "Home>Lighting", "brand": "Glow"},
        ]
    )
    items = catalog["item_id"].to_numpy()
    # popularity: boot-b 5, boot-c 1, lamp 9; one shopper owns boot-a only
    history = sparse.csr_matrix(([5.0, 1.0, 9.0, 1.0], ([0, 1, 2, 3], [1, 2, 3, 0])), shape=(4, 4), dtype=np.float32)
    model = Affinity.fit(history, catalog, items)
    scores = model.score(history[3])[0]
    assert scores[1] > scores[2] > scores[3] == 0.0  # popular boot, then the other boot; the lamp shares nothing


def test_the_champion_scores_a_new_split_through_its_own_item_index() -> None:
    """A served model scores the histories of a split whose item universe differs from its own: items it knows are
    mapped to its columns, items it never saw rank below every item it can score."""
    from types import SimpleNamespace

    from shopwise_jobs.selection import champion_scorer, train_set

    class Echo:  # scores each item by how often the history holds the item before it (champion's own columns)
        def score(self, rows: sparse.csr_matrix) -> np.ndarray:
            dense = rows.toarray()
            return np.roll(dense, 1, axis=1) + 0.01

    champion = SimpleNamespace(
        items=np.array(["c", "a", "b"]), model=Echo(), meta={"selected": {"params": {}}}, kind="echo"
    )
    train = frame([("u1", "a", "view", 1.0), ("u1", "a", "view", 2.0), ("u2", "b", "view", 1.0)])
    test = frame([("u1", "new", "view", 3.0)])
    data = train_set(train, test, pd.DataFrame({"item_id": ["new"]}))
    assert list(data.matrix().items) == ["a", "b", "new"]
    scores = champion_scorer(champion, data)(np.array([0, 1]))
    assert isinstance(scores, np.ndarray)  # the champion scores whole rows (its catalog is small)
    # u1 holds a (champion column 1) twice: the echo puts 2 on column 2 = item b; u2 holds b: echo on column 0 = c
    assert scores[0, 1] == pytest.approx(2.01) and scores[0, 0] == pytest.approx(0.01)
    assert scores[1, 0] == pytest.approx(0.01) and scores[1, 1] == pytest.approx(0.01)
    assert scores[0, 2] < scores[0].min(initial=np.inf, where=[True, True, False])  # the unknown item ranks last


def test_tuning_scores_a_fixed_sample_of_validation_users_and_all_of_a_small_split() -> None:
    from shopwise_jobs.selection import tuning_sample

    rows = pd.DataFrame({"user_id": [f"u{n % 30}" for n in range(90)], "item_id": "i"})
    sample = tuning_sample(rows, limit=10)
    assert sample["user_id"].nunique() == 10 and len(sample) == 30  # every row of each sampled user
    assert sample.equals(tuning_sample(rows, limit=10))  # the same users every time: configurations compare
    assert tuning_sample(rows, limit=30) is rows


def test_scoring_over_candidates_is_the_dense_ranking_when_every_item_can_be_a_candidate() -> None:
    """``candidates.recommend`` scores each part only at the union of the parts' best n: with n as wide as the
    catalog it must give exactly the dense ranking, part by part and for a blend of every family (each part's
    ``score_at`` checked against its dense row); with n a few times k, the same lists on planted tribes."""
    from shopwise_jobs import candidates
    from shopwise_jobs.models import Affinity, Hybrid, Popularity, top_k

    history = tribes(60)
    n_users, n_items = history.shape
    items = np.array([f"i{n}" for n in range(n_items)])
    catalog = pd.DataFrame(
        {"item_id": items, "category": [f"Dept{n % 3}>Kind{n % 7}" for n in range(n_items)], "brand": "b"}
    )
    sequences = [list(history[u].indices) for u in range(n_users)]
    parts: dict[str, Any] = {
        "itemknn": ItemKNN.fit(history, 10),
        "ease": EASE.fit(history, 50.0, min_support=1),
        "ials": IALS.fit(history, 8, 1.0, 10.0, 8),
        "sequential": SequentialRules.fit(sequences, n_items),
        "content": ContentKNN.fit(catalog, items, 10),
        "affinity": Affinity.fit(history, catalog, items),
        "popularity": Popularity.fit(history),
    }
    blend = Hybrid(parts=list(parts.values()), kinds=list(parts), weights=[1.0, 0.5, 0.5, 0.25, 0.1, 0.25, 0.1])
    rows = history[:30]
    for name, model in [*parts.items(), ("blend", blend)]:
        dense = np.asarray(model.score(rows), dtype=np.float32)
        at = candidates.top_candidates(model, rows, n_items)
        cells = np.repeat(np.arange(rows.shape[0]), np.diff(at.indptr)), at.indices
        if name != "blend":  # a part scored at its candidates is its dense row there
            assert np.allclose(candidates.score_at(model, rows, at), dense[cells], atol=1e-5), name
        # the scores of the picks with evidence, best first (a score of 0 is no evidence: the transform fills those
        # places with bestsellers); scores, not ids, because items with equal scores may swap places
        want = picked(*top_k(dense, 5, rows))
        assert picked(*candidates.recommend(model, rows, 5, n_items)) == want, name
        assert picked(*candidates.recommend(model, rows, 5, 20)) == want, name


def test_ials_candidates_from_the_factor_index_are_nearly_the_exact_best(monkeypatch: pytest.MonkeyPatch) -> None:
    """From FACTOR_INDEX_FROM_ITEMS items iALS proposes its candidates from an inverted-file index over the item factors:
    nearly the exact best n, and the top 10 ranked from them (scored exactly) nearly the dense top 10."""
    from shopwise_jobs import candidates
    from shopwise_jobs.models import top_k

    rng = np.random.default_rng(11)
    users, n_items = 2000, 3000
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    taste = rng.integers(0, 10, users)  # ten tribes, each with its own third of the catalog
    cells: set[tuple[int, int]] = set()
    for u in range(users):
        own = np.arange(taste[u] * 300, taste[u] * 300 + 900)
        own = own % n_items
        chosen = rng.choice(own, size=12, replace=False, p=popularity[own] / popularity[own].sum())
        cells.update((u, int(i)) for i in chosen)
    r, c = zip(*sorted(cells), strict=True)
    history = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(users, n_items))
    model = IALS.fit(history, 32, 1.0, 10.0, 10)
    rows = history[:400]
    monkeypatch.setattr(candidates, "FACTOR_INDEX_FROM_ITEMS", 0)
    indexed = candidates.top_candidates(model, rows, 50)
    assert "_factor_index" in vars(model)  # the index answered (built once, kept on the model)
    monkeypatch.setattr(candidates, "FACTOR_INDEX_FROM_ITEMS", n_items + 1)
    exact = candidates.top_candidates(model, rows, 50)
    assert (np.diff(indexed.indptr) == 50).all()
    assert indexed.multiply(exact).sum() / exact.sum() > 0.95
    monkeypatch.setattr(candidates, "FACTOR_INDEX_FROM_ITEMS", 0)
    got = candidates.recommend(model, rows, 10, 100)[0]
    want = top_k(model.score(rows), 10, rows)[0]
    assert np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)]) > 0.95


def test_a_saved_ials_model_folds_in_and_proposes_from_its_memory_mapped_factors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transform reads the model memory-mapped: implicit's compiled fold-in and the factor index take the mapped
    factors as they take the fitted ones (a read-only map made the fold-in refuse the buffer)."""
    from shopwise_jobs import candidates
    from shopwise_jobs.artifacts import load_part, save_part

    history = tribes(40)
    fitted = IALS.fit(history, 8, 1.0, 10.0, 8)
    loaded = load_part(IALS, tmp_path, "model", save_part(fitted, tmp_path, "model"))
    assert isinstance(loaded.item_factors, np.memmap)
    np.testing.assert_allclose(loaded.user_factors(history[:10]), fitted.user_factors(history[:10]), atol=1e-5)
    monkeypatch.setattr(candidates, "FACTOR_INDEX_FROM_ITEMS", 0)
    got, want = candidates.recommend(loaded, history[:10], 5, 20), candidates.recommend(fitted, history[:10], 5, 20)
    np.testing.assert_array_equal(got[0], want[0])


def picked(idx: np.ndarray, scores: np.ndarray) -> list[list[float]]:
    return [
        [round(float(s), 4) for i, s in zip(r, v, strict=True) if i >= 0 and np.isfinite(s) and s != 0]
        for r, v in zip(idx, scores, strict=True)
    ]


def test_model_selection_over_candidates_scores_as_over_every_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """From CANDIDATES_FROM_ITEMS items, tuning, the blend's weight search and the test evaluation rank over
    candidates (evaluation.Ranked) instead of catalog-wide rows. Forced on a small store, the same configurations
    and blend weights win and every figure is within 0.01 of the dense run's (items the model scores alike may
    swap places: the two paths break such ties differently)."""
    from shopwise_jobs import candidates
    from shopwise_jobs.selection import select, shopwise_candidates

    history, rows = tribes_shopping()
    test = leave_last_out(frame(rows), 2)
    validation = leave_last_out(test.train, 2)
    wanted = ["itemknn", "ease", "popularity"]
    families = shopwise_candidates(history.shape[1], has_catalog=False, budget="quick", wanted=wanted)

    def run() -> dict[str, tuple[dict[str, Any], float, float]]:
        results = select(families, validation, test, pd.DataFrame(columns=["item_id"]))
        return {
            r.name: (r.params, r.validation["ndcg@10"], r.test.metrics["ndcg@10"])  # type: ignore[union-attr]
            for r in results
        }

    dense = run()
    monkeypatch.setattr(candidates, "CANDIDATES_FROM_ITEMS", 0)
    ranked = run()
    assert set(ranked) == set(dense) == {*wanted, "hybrid"}
    for name, (params, valid, tested) in dense.items():
        assert ranked[name][0] == params, name
        assert ranked[name][1] == pytest.approx(valid, abs=0.01) and ranked[name][2] == pytest.approx(tested, abs=0.01)
    assert dense["itemknn"][2] > dense["popularity"][2] + 0.2  # the figures compared are of models that differ


def test_test_figures_are_scored_on_a_fixed_sample_of_test_users_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past EVALUATION_USERS test users, each family's and the blend's test figures are the evaluation of a fixed
    sample of them (the same users for every family, and run after run); below it, of every test user."""
    from shopwise_jobs import selection
    from shopwise_jobs.evaluation import evaluate
    from shopwise_jobs.selection import select, shopwise_candidates, train_set, tuning_sample

    history, rows = tribes_shopping(kinds=False)
    test = leave_last_out(frame(rows), 2)
    validation = leave_last_out(test.train, 2)
    families = shopwise_candidates(
        history.shape[1], has_catalog=False, budget="quick", wanted=["itemknn", "popularity"]
    )
    whole = {r.name: r.test for r in select(families, validation, test, pd.DataFrame(columns=["item_id"]))}
    users = test.test["user_id"].nunique()
    assert all(t is not None and t.users == users for t in whole.values())
    monkeypatch.setattr(selection, "EVALUATION_USERS", 50)
    lines: list[str] = []
    results = select(families, validation, test, pd.DataFrame(columns=["item_id"]), log=lines.append)
    assert any(f"fixed sample of 50 of {users}" in line for line in lines)
    sampled = {r.name: r for r in results}
    assert {name: r.test.users for name, r in sampled.items() if r.test} == {
        "itemknn": 50,
        "popularity": 50,
        "hybrid": 50,
    }
    # the itemknn figures are exactly those of its refitted configuration on the sample's users
    outer = train_set(test.train, test.test, pd.DataFrame(columns=["item_id"]))
    itemknn = next(c for c in families if c.name == "itemknn")
    scorer = itemknn.fit(outer, sampled["itemknn"].params)
    expected = evaluate(scorer, outer.matrix(), tuning_sample(test.test, 50), selection.KS)
    got = sampled["itemknn"].test
    assert got is not None and got.metrics == pytest.approx(expected.metrics)
    assert got.metrics != pytest.approx(whole["itemknn"].metrics)  # type: ignore[union-attr]  # a sample, not all


def test_the_compiled_fold_in_solves_the_exact_sweeps_equations() -> None:
    """iALS scores a history by folding it in: implicit's compiled solver must give ``_als_sweep``'s exact factors
    (users with no history: zeros)."""
    from shopwise_jobs.models import _als_sweep

    history = tribes(30)
    history = sparse.vstack([history, sparse.csr_matrix((1, history.shape[1]), dtype=np.float32)]).tocsr()
    history.data *= np.random.default_rng(2).uniform(0.5, 3.0, history.nnz).astype(np.float32)
    model = IALS.fit(history, 8, 2.0, 10.0, 6)
    exact = _als_sweep(history.astype(np.float64), model.item_factors.astype(np.float64), 10.0, 2.0)
    folded = model.user_factors(history)
    assert np.allclose(folded, exact, atol=1e-3 * np.abs(exact).max()) and not folded[-1].any()


def test_the_champion_ranks_a_new_split_over_candidates_as_over_every_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """The promotion gate's champion, from CANDIDATES_FROM_ITEMS items, hands evaluation its rankings over candidates
    mapped into the split's items: on a store where it knows most items, the same figures as its dense rows."""
    from types import SimpleNamespace

    from shopwise_jobs import candidates
    from shopwise_jobs.selection import champion_scorer, train_set

    rng = np.random.default_rng(9)
    history = tribes(200)
    rows = [
        (f"u{u}", f"i{i}", str(rng.choice(["view", "cart", "purchase"])), float(u + 1000 * n))
        for u in range(history.shape[0])
        for n, i in enumerate(rng.permutation(history[u].indices))
    ]
    split = leave_last_out(frame(rows), 2)
    # the champion knows the items in its own order, and one the split never saw
    own = np.array([*[f"i{n}" for n in range(history.shape[1])][::-1], "gone"])
    to_own = pd.Index(own).get_indexer([f"i{n}" for n in range(history.shape[1])])
    champion_history = sparse.csr_matrix((history.data, to_own[history.indices], history.indptr), shape=(200, len(own)))
    champion = SimpleNamespace(items=own, model=ItemKNN.fit(champion_history, 10), meta={"selected": {"params": {}}})
    data = train_set(split.train, split.test, pd.DataFrame(columns=["item_id"]))
    dense = evaluate(champion_scorer(champion, data), data.matrix(), split.test).metrics
    monkeypatch.setattr(candidates, "CANDIDATES_FROM_ITEMS", 0)
    ranked = evaluate(champion_scorer(champion, data), data.matrix(), split.test).metrics
    assert dense["ndcg@10"] > 0.3
    for name in ("ndcg@10", "recall@20", "mrr"):
        assert ranked[name] == pytest.approx(dense[name], abs=0.01), name


@pytest.mark.parametrize("slices", [None, (7, 3), (1, 16)])
def test_ids_are_coded_as_pandas_would_code_them(
    slices: tuple[int, int] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same codes, ids and weights whether a column is coded whole or in slices on threads (``slices``: rows a
    slice at least, threads at most)."""
    from shopwise_jobs import ids
    from shopwise_jobs.ids import codes_in, unique_ids, weights_of

    if slices:
        monkeypatch.setattr(ids, "CODE_SLICE_ROWS", slices[0])
        monkeypatch.setattr(ids, "CODE_THREADS", slices[1])

    rng = np.random.default_rng(2)
    universe = np.array(sorted({f"u{n}" for n in rng.integers(0, 500, 300)}))
    values = pd.Series([f"u{n}" for n in rng.integers(0, 700, 5000)] + [None, "", "é-ü"], dtype="str")
    expected = pd.Index(universe).get_indexer(values)  # -1 where absent (the missing id, the blank, the stranger)
    assert np.array_equal(codes_in(values, universe), expected)
    assert (codes_in(values, universe)[-3:] == -1).all()
    assert np.array_equal(codes_in(np.array([3, 7]), np.array(["3", "5"])), [0, -1])  # numbers code as their text
    # a universe as an Arrow-backed index is taken as it is; ``through`` reads each slice's codes through a narrow
    # table, its last slot for the absent
    assert np.array_equal(codes_in(values, pd.Index(universe, dtype="str")), expected)
    table = np.append(np.arange(len(universe)) % 7, -1).astype(np.int8)
    narrow = codes_in(values, universe, through=table)
    assert narrow.dtype == np.int8 and np.array_equal(narrow, table[expected]) and (narrow[-3:] == -1).all()
    more = pd.Series(["zz", "u1", "é-ü"], dtype="str")
    assert np.array_equal(
        unique_ids(values.dropna(), more),
        np.unique(np.concatenate([values.dropna().to_numpy(str), more.to_numpy(str)])),
    )
    kinds = pd.Series(["view", "purchase", None, "like", "cart", "view"], dtype="str")
    assert weights_of(kinds, {"view": 1.0, "cart": 2.0, "purchase": 4.0}).tolist() == [1.0, 4.0, 0.0, 0.0, 2.0, 1.0]
    # non-blank rows, distinct values in first-seen order (pandas' factorize's), each key's value at its first row
    assert np.array_equal(ids.nonblank(values), values.fillna("").to_numpy(str) != "")
    _codes, uniques = pd.factorize(values)
    assert ids.distinct(values).to_pylist() == [str(v) for v in uniques]
    sessions = pd.Series([f"s{n}" for n in rng.integers(0, 900, 5000)] + [None, "s1", ""], dtype="str")
    rows = rng.permutation(len(values))[:3000]
    keys, firsts = ids.first_of_each(sessions, values, rows)
    expected_first = (
        pd.DataFrame({"key": sessions.to_numpy(object)[rows], "value": values.to_numpy(object)[rows]})
        .dropna(subset=["key"])
        .drop_duplicates("key")
    )
    assert keys.to_pylist() == expected_first["key"].tolist()
    assert firsts.to_pylist() == [None if pd.isna(v) else v for v in expected_first["value"]]


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_the_interaction_matrix_is_summed_alike_on_any_number_of_threads(threads: int, monkeypatch) -> None:
    """``summed_spans`` — each thread's share a matrix, then each block of rows summed over them and stacked —
    gives scipy's matrix of the triples with its duplicates summed (in float64, then the values' dtype), whatever
    the threads; rows and columns nobody touched stay empty."""
    from scipy import sparse

    from shopwise_jobs import models

    monkeypatch.setattr(models, "FIT_THREADS", threads)
    rng = np.random.default_rng(4)
    rows, cols = rng.integers(0, 40, 3000), rng.integers(0, 25, 3000)
    rows[rows == 7] = 8  # row 7 empty
    values = rng.choice([1.0, 2.0, 0.37], 3000).astype(np.float32)
    expected = sparse.csr_matrix((values.astype(np.float64), (rows, cols)), shape=(41, 30))
    expected.sum_duplicates()
    got = models.summed_spans(len(rows), lambda a, b: (rows[a:b], cols[a:b], values[a:b]), (41, 30), np.float32)
    assert got.dtype == np.float32 and got.shape == (41, 30) and got.has_canonical_format
    assert np.array_equal(got.indptr, expected.indptr) and np.array_equal(got.indices, expected.indices)
    assert np.array_equal(got.data, expected.data.astype(np.float32))
    assert got[7].nnz == 0 and got[:, 25:].nnz == 0
    empty = models.summed_spans(0, lambda a, b: (rows[a:b], cols[a:b], values[a:b]), (5, 3), np.float32)
    assert empty.shape == (5, 3) and empty.nnz == 0


@pytest.mark.parametrize("threads", [1, 3, 8])
@pytest.mark.parametrize("now", [None, 40 * 86400.0])
def test_a_decayed_matrix_made_span_by_span_is_the_whole_columns_formula(
    threads: int, now: float | None, monkeypatch
) -> None:
    """The decay and the mask run on the threads that sum each span (``models.summed_spans``): the matrix is the one
    the formula over the whole columns gives — each row's kind weight x 0.5^(age / half-life), its age counted back
    from its user's newest row (or ``now``), rows of users or items outside the index and of kinds without a weight
    dropped — on any number of threads, to the last bit."""
    from scipy import sparse

    from shopwise_jobs import models

    monkeypatch.setattr(models, "FIT_THREADS", threads)
    rng = np.random.default_rng(9)
    n = 4000
    data = frame(
        [
            (f"u{rng.integers(0, 60)}", f"i{rng.integers(0, 35)}", ["view", "cart", "purchase", "like"][rng.integers(0, 4)],
             float(rng.integers(0, 30 * 86400)))
            for _ in range(n)
        ]
    )  # fmt: skip
    users = np.array(sorted({f"u{k}" for k in range(55)}))  # u55..u59 and i30..i34 outside the index: dropped
    items = np.array(sorted({f"i{k}" for k in range(30)}))
    weights = {"view": 1.0, "cart": 2.0, "purchase": 4.0}  # "like": no weight, dropped
    got = interaction_matrix(data, weights, 3.0, now=now, users=users, items=items).matrix
    u = pd.Index(users).get_indexer(data["user_id"])
    i = pd.Index(items).get_indexer(data["item_id"])
    w = data["kind"].map(weights).fillna(0.0).to_numpy(dtype=np.float64)
    ts = data["ts"].to_numpy(dtype=np.float64)
    newest = pd.Series(ts).groupby(u).max().reindex(range(len(users))).to_numpy()
    ref = now if now is not None else newest[np.maximum(u, 0)]
    w = w * np.power(0.5, (ref - ts) / (3.0 * 86400.0))
    keep = (u >= 0) & (i >= 0) & (w > 0)
    expected = sparse.csr_matrix(
        (w[keep].astype(np.float32).astype(np.float64), (u[keep], i[keep])), shape=(len(users), len(items))
    )
    expected.sum_duplicates()
    assert got.dtype == np.float32 and got.has_canonical_format
    assert np.array_equal(got.indptr, expected.indptr) and np.array_equal(got.indices, expected.indices)
    assert np.array_equal(got.data, expected.data.astype(np.float32))
    assert 0 < got.nnz < len(users) * len(items)


def test_only_the_matrix_families_read_a_decayed_matrix() -> None:
    """The served fit builds before its parts (which run at once on the instance) the decayed matrices of the
    families in MATRIX_KINDS, and no others: every family fitted with a half-life of its own reads that matrix if,
    and only if, it is one of them (a family that started reading one would build it lazily inside the threads)."""
    from shopwise_jobs.selection import MATRIX_KINDS, MODEL_KINDS, build_model, train_set

    _history, rows = tribes_shopping(60)
    catalog = pd.DataFrame(
        {
            "item_id": [f"i{n}" for n in range(20)],
            "category": ["A>B", "C"] * 10,
            "brand": ["x"] * 20,
            "title": ["t"] * 20,
        }
    )
    params: dict[str, dict[str, float]] = {
        "popularity": {"window_days": 30.0},
        "itemknn": {"neighbours": 5, "shrinkage": 0.0},
        "ease": {"l2": 10.0},
        "ials": {"factors": 4, "regularization": 0.1, "alpha": 1.0, "iterations": 2},
        "sequential": {"window": 3},
        "content": {"neighbours": 5},
        "affinity": {},
    }
    assert set(params) == set(MODEL_KINDS) - {"hybrid"}
    for kind, p in params.items():
        data = train_set(frame(rows), frame(rows).iloc[:0], catalog)
        build_model(kind, data, {**p, "half_life_days": 3.0})
        assert (3.0 in data._matrices) is (kind in MATRIX_KINDS), kind


def test_item_knn_pairs_each_shoppers_most_recent_items_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from shopwise_jobs.selection import build_model, train_set

    # u1 touched a, b, c, d, e in that order (b again last); u2 touched a and b; u3 d and e
    rows = [("u1", item, "view", float(t)) for t, item in enumerate("abcde")] + [("u1", "b", "cart", 9.0)]
    rows += [("u2", "a", "view", 1.0), ("u2", "b", "view", 2.0), ("u3", "d", "view", 1.0), ("u3", "e", "view", 2.0)]
    data = train_set(frame(rows), frame(rows).iloc[:0], pd.DataFrame())
    recent = data.recent(3)
    u1 = list(data.users).index("u1")
    assert [data.items[i] for i in recent[u1].indices] == ["b", "d", "e"]  # b's newest touch is the last
    assert recent.sum() == 3 + 2 + 2  # the other shoppers whole
    assert (data.recent(0) != (data.matrix().matrix > 0)).nnz == 0  # 0: every item
    monkeypatch.setattr("shopwise_jobs.selection.ITEMKNN_HISTORY", 3)
    capped = build_model("itemknn", data, {"neighbours": 10, "shrinkage": 0.0}).similarity.toarray()
    index = {item: n for n, item in enumerate(data.items)}
    assert capped[index["a"], index["c"]] == 0 and capped[index["c"], index["d"]] == 0  # u1's old items pair no more
    assert capped[index["b"], index["d"]] > 0 and capped[index["a"], index["b"]] > 0  # recent ones (and u2's) do
    monkeypatch.setattr("shopwise_jobs.selection.ITEMKNN_HISTORY", 0)
    whole = build_model("itemknn", data, {"neighbours": 10, "shrinkage": 0.0}).similarity.toarray()
    assert whole[index["a"], index["c"]] > 0


def test_families_tuned_side_by_side_give_the_figures_of_one_after_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """With workers, tuning runs in spawned processes (selection.tune_families): a family of one fit as one task, a
    family of several (full grids) as a task a fit and then its test refit. The same configurations win with the
    same validation and test figures as tuned one after another in this process, the log has every line in the
    same order, each family's time is recorded, and the content fit made in a worker is the one the blend's parts
    then reuse here (selection._CONTENT)."""
    from shopwise_jobs import selection
    from shopwise_jobs.selection import select, shopwise_candidates

    history, rows = tribes_shopping()
    catalog = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(history.shape[1])],
            "title": [f"{'boot' if i < ITEMS_PER_TRIBE else 'lamp'} model {i}" for i in range(history.shape[1])],
            "category": ["Shoes" if i < ITEMS_PER_TRIBE else "Home" for i in range(history.shape[1])],
            "brand": ["Acme" if i % 2 else "Glow" for i in range(history.shape[1])],
            "price": [10.0 + i for i in range(history.shape[1])],
        }
    )
    test = leave_last_out(frame(rows), 2)
    validation = leave_last_out(test.train, 2)
    wanted = ["itemknn", "ials", "popularity", "sequential", "content"]
    # item-kNN and popularity with their full grids: 4 and 3 fits, each fit's configurations a task of its own
    families = [
        *shopwise_candidates(history.shape[1], has_catalog=True, budget="full", wanted=["itemknn", "popularity"]),
        *shopwise_candidates(
            history.shape[1], has_catalog=True, budget="quick", wanted=["ials", "sequential", "content"]
        ),
    ]
    assert {c.name: len(selection.fit_groups(c)) for c in families} == {
        "itemknn": 4,
        "popularity": 3,
        "ials": 1,
        "sequential": 1,
        "content": 1,
    }

    def run(workers: int) -> tuple[dict[str, Any], list[str]]:
        selection._CONTENT.clear()
        lines: list[str] = []
        results = select(families, validation, test, catalog, log=lines.append, workers=workers)
        assert selection._CONTENT and selection._CONTENT[0] is catalog  # the content fit, here either way
        assert all(r.seconds > 0 and r.cpu > 0 for r in results)
        # each family's time as the tasks a worker takes: a wall time for each fit's configurations, then its test
        # refit's, adding up to the family's
        tasks = {r.name: (r.group_seconds, r.test_seconds) for r in results if r.name != "hybrid"}
        assert {name: len(fits) for name, (fits, _test) in tasks.items()} == {
            c.name: len(selection.fit_groups(c)) for c in families
        }
        for r in results:
            if r.name != "hybrid":
                assert all(t > 0 for t in r.group_seconds) and r.test_seconds > 0
                assert sum(r.group_seconds) + r.test_seconds == pytest.approx(r.seconds, rel=1e-6)
        return {r.name: (r.params, r.validation, r.test.metrics, r.tried) for r in results if r.test}, lines

    alone, alone_lines = run(1)

    def refitted(*_args: Any) -> None:
        raise AssertionError("the content model fitted again in the job's process")

    def searched_here(*_args: Any) -> None:
        raise AssertionError("the blend's weights searched in the job's process")

    monkeypatch.setattr(ContentKNN, "fit_ordered", refitted)  # here, not in the spawned workers
    monkeypatch.setattr(selection.BlendSearch, "rows", searched_here)
    side_by_side, lines = run(2)
    assert set(side_by_side) == set(alone) == {*wanted, "hybrid"}
    for name, figures in alone.items():
        assert side_by_side[name] == figures, name
    workers = ["tuning 5 families in 2 processes side by side", "searching the blend's weights on 3 kinds of rows in "
               "2 processes side by side"]  # fmt: skip
    assert [line for line in lines if "side by side" in line] == workers
    untimed = [re.sub(r" \(\d+\.\ds\)$", "", line) for line in lines if line not in workers]  # each its run's time
    assert untimed == [re.sub(r" \(\d+\.\ds\)$", "", line) for line in alone_lines]  # in the same order
    assert {line.split(":")[0] for line in lines if ": test " in line} == {*wanted, "hybrid"}
    assert alone["itemknn"][2]["ndcg@10"] > alone["popularity"][2]["ndcg@10"] + 0.2  # the figures differ by model


def test_ranking_over_candidates_keeps_each_rows_best_k_with_ties_to_the_lower_item() -> None:
    """candidates.rank sorts only the entries at or above each row's k-th value (candidates._above_kth): the same
    top k, in the same order, as ranking every candidate of the row — ties at the k-th included, broken to the
    lower item index — and what the row owns never ranks; rows wider than a padded block are cut into blocks."""
    from shopwise_jobs import candidates

    rng = np.random.default_rng(7)
    users, items, k = 400, 3000, 10
    lengths = rng.integers(0, 120, users)
    lengths[3] = 0  # a row with no candidates
    lengths[4] = 5  # fewer candidates than k
    indices = [np.sort(rng.choice(items, n, replace=False)) for n in lengths]
    at = sparse.csr_matrix(
        (np.ones(int(lengths.sum()), dtype=np.float32), np.concatenate(indices), np.r_[0, np.cumsum(lengths)]),
        shape=(users, items),
    )
    values = rng.integers(0, 6, at.nnz).astype(np.float32)  # a few values: ties everywhere, at the k-th too
    owned_rows = sparse.random(users, items, density=0.01, format="csr", random_state=3, dtype=np.float32)
    owned_rows.data[:] = 1.0

    def expected(u: int) -> list[tuple[int, float]]:
        row = at.indices[at.indptr[u] : at.indptr[u + 1]]
        scores = values[at.indptr[u] : at.indptr[u + 1]]
        owned = set(owned_rows[u].indices)
        pairs = [(int(i), float(s)) for i, s in zip(row, scores, strict=True) if i not in owned]
        return sorted(pairs, key=lambda p: (-p[1], p[0]))[:k]

    for block in (candidates.RANK_BLOCK_CELLS, 500):  # one block, and blocks of a few rows
        candidates.RANK_BLOCK_CELLS, before = block, candidates.RANK_BLOCK_CELLS
        try:
            top, best = candidates.rank(at, values, owned_rows, k)
        finally:
            candidates.RANK_BLOCK_CELLS = before
        for u in range(users):
            want = expected(u)
            assert [int(i) for i in top[u][: len(want)]] == [i for i, _ in want], u
            assert list(best[u][: len(want)]) == [s for _, s in want], u
            assert np.all(top[u][len(want) :] == -1) and np.all(np.isneginf(best[u][len(want) :])), u
    assert sum(len(expected(u)) == k for u in range(users)) > users / 2  # most rows were cut at the k-th


def test_gathering_a_products_values_at_candidates_reads_each_position_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """candidates.gather scatters a block of rows into a dense buffer and reads it at the candidates: a product's
    value at each wanted position (0 where it has none), whatever the order of its indices, a position's duplicate
    entries summed — in one block, in blocks of a few rows, and a row at a time (the buffer narrower than a row)."""
    from shopwise_jobs import candidates

    rng = np.random.default_rng(11)
    users, items = 300, 2000
    sizes = rng.integers(0, 200, users)
    sizes[5] = 0  # a row the product has nothing in
    rows = np.repeat(np.arange(users), sizes)
    cols = rng.integers(0, items, len(rows))  # repeats: duplicate entries at a position
    values = rng.random(len(rows)).astype(np.float32)
    # built from its arrays, so its entries stay as given: each row's indices unsorted, as a sparse product's come,
    # and repeated (a COO matrix would sum them)
    product = sparse.csr_matrix((values, cols, np.r_[0, np.cumsum(sizes)]), shape=(users, items))
    assert not product.has_sorted_indices
    by_hand: dict[tuple[int, int], float] = {}
    for r, c, v in zip(rows, cols, values, strict=True):
        by_hand[(int(r), int(c))] = by_hand.get((int(r), int(c)), 0.0) + float(v)
    wanted = sparse.random(users, items, density=0.05, format="csr", random_state=4, dtype=np.float32)
    wanted = wanted + sparse.csr_matrix(  # half of them where the product has an entry
        (np.ones(len(rows[::2]), dtype=np.float32), (rows[::2], cols[::2])), shape=(users, items)
    )
    wanted.sort_indices()
    want_rows = np.repeat(np.arange(users), np.diff(wanted.indptr))
    expected = np.array([by_hand.get((int(r), int(c)), 0.0) for r, c in zip(want_rows, wanted.indices, strict=True)])
    assert (expected > 0).mean() > 0.3 and (expected == 0).mean() > 0.3  # both kinds of position are asked
    assert len(by_hand) < len(rows)  # some positions hold more than one entry
    for cells in (candidates.GATHER_CELLS, 5 * items, items // 2):
        monkeypatch.setattr(candidates, "GATHER_CELLS", cells)
        got = candidates.gather(product, wanted)
        assert np.allclose(got, expected, atol=1e-5), cells
    assert not candidates.gather(sparse.csr_matrix((users, items), dtype=np.float32), wanted).any()


def test_metrics_over_many_users_in_chunks_match_each_users_by_hand() -> None:
    """evaluate looks each user's top k up in the relevant items' sorted keys, never in rows as wide as the catalog:
    over users in several chunks, with seen items, cold items and prices, each metric is the mean of every user's
    own figure computed here by hand from their ranking."""
    rng = np.random.default_rng(11)
    users, items, ks = 60, 40, (3, 10)
    train = Matrix(
        matrix=sparse.random(users, items, density=0.08, format="csr", random_state=5, dtype=np.float32),
        users=np.array([f"u{u}" for u in range(users)]),
        items=np.array([f"i{i}" for i in range(items)]),
    )
    rows = [
        (f"u{u}", f"i{i}", "view", 9.0)
        for u, i in zip(rng.integers(0, users, 200), rng.integers(0, items, 200), strict=True)
    ]
    test = frame(rows)
    prices = {f"i{i}": float(i + 1) for i in range(0, items, 3)}
    scores = rng.random((users, items)).astype(np.float32)
    result = evaluate(lambda u: scores[u], train, test, ks=ks, prices=prices, chunk=7)

    seen = train.matrix.toarray() > 0
    support = seen.sum(axis=0)
    per_user: dict[str, list[float]] = {}
    revenue_hit, revenue_all = dict.fromkeys(ks, 0.0), 0.0
    for u in range(users):
        relevant = {int(i[1:]) for uid, i, *_ in rows if uid == f"u{u}"} - set(np.flatnonzero(seen[u]))
        if not relevant:
            continue
        ranking = [int(i) for i in np.argsort(-scores[u], kind="stable") if not seen[u, i]]
        hits = [i in relevant for i in ranking]
        per_user.setdefault("mrr", []).append(1.0 / (hits.index(True) + 1) if True in hits[: max(ks)] else 0.0)
        revenue_all += sum(prices.get(f"i{i}", 0.0) for i in relevant)
        for k in ks:
            top = hits[:k]
            ideal = sum(1 / np.log2(n + 2) for n in range(min(k, len(relevant))))
            per_user.setdefault(f"ndcg@{k}", []).append(sum(h / np.log2(n + 2) for n, h in enumerate(top)) / ideal)
            per_user.setdefault(f"recall@{k}", []).append(sum(top) / min(k, len(relevant)))
            per_user.setdefault(f"hitrate@{k}", []).append(float(any(top)))
            cold = {i for i in relevant if support[i] <= 5}
            if cold:
                found = sum(i in cold for i in ranking[:k])
                per_user.setdefault(f"cold_items/recall@{k}", []).append(found / min(k, len(cold)))
            revenue_hit[k] += sum(prices.get(f"i{i}", 0.0) for i in ranking[:k] if i in relevant)
    assert result.users == len(per_user["mrr"]) > 2 * 7  # several chunks
    for name, values in per_user.items():
        assert result.metrics[name] == pytest.approx(np.mean(values)), name
    for k in ks:
        assert result.metrics[f"revenue_hitrate@{k}"] == pytest.approx(revenue_hit[k] / revenue_all)
    assert 0 < result.metrics["recall@10"] < 1 and 0 < result.metrics["cold_items/recall@10"] < 1
