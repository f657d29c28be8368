"""The training and batch-transform entrypoints, run as SageMaker runs them: a child process, SM_* variables,
channel folders in, a model folder out."""

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shopwise_jobs.artifacts import TrainedModel
from shopwise_jobs.contract import TrainingContract
from shopwise_jobs.scoring import answer
from shopwise_jobs.training import Hyperparameters
from shopwise_local.paths import SAGEMAKER_DIR

CLUSTER_ITEMS = {"a": [f"a{i}" for i in range(12)], "b": [f"b{i}" for i in range(12)]}


def planted_events(path: Path, users: int = 60, seed: int = 7) -> None:
    """Two tribes of shoppers, each interacting only with its own dozen items."""
    rng = random.Random(seed)
    lines = []
    n = 0
    for u in range(users):
        tribe = "a" if u % 2 else "b"
        # every shopper granted personalisation before their first event (training models only those who did)
        grant = {"event_id": f"consent-{u}", "event_type": "consent", "occurred_at": "2026-10-31T10:00:00Z"}
        lines.append(json.dumps({**grant, "customer_id": f"u{u}", "granted": ["personalisation"], "origin": "server"}))
        for item in rng.sample(CLUSTER_ITEMS[tribe], 6):
            n += 1
            kind = rng.choice(["product_view", "purchase"])
            event: dict[str, Any] = {
                "event_id": f"e{n}",
                "event_type": kind,
                "occurred_at": f"2026-11-{1 + n % 20:02d}T10:00:00Z",
                "customer_id": f"u{u}",
                "origin": "server",  # as the collector stamps what the store's servers sent
            }
            if kind == "purchase":
                event.update(order_id=f"o{n}", items=[{"item_id": item}])
            else:
                event["item_id"] = item
            lines.append(json.dumps(event))
    path.parent.mkdir(parents=True, exist_ok=True)
    # the archive copies the stream as it is: a record that never was a valid event, and a torn line
    lines += ['{"event_type": "garbage"}', '{"event_id": "torn']
    path.write_text("\n".join(lines) + "\n")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SAGEMAKER_DIR), **extra}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("opt_ml")
    planted_events(root / "input/data/events/dt=2026-11-20/part-0.jsonl")
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(
        json.dumps({"top_k": "5", "test_fraction": "0.2", "budget": "quick"})
    )
    result = subprocess.run(
        [sys.executable, str(SAGEMAKER_DIR / "train.py"), "--neighbours", "20"],
        env=child_env({"SM_OPT_ML": str(root), "TRAINING_JOB_NAME": "job-1"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "metric recall@10=" in result.stdout  # the line the job's metric definition matches
    assert "memory: data set begins at" in result.stdout and "memory: tuning peaked at" in result.stdout
    return root


def test_training_writes_model_and_metrics(trained: Path) -> None:
    metrics = json.loads((trained / "model/metrics.json").read_text())
    assert metrics["model_version"] == "job-1"
    assert 0.0 <= metrics["ndcg@10"] <= 1.0
    # every family that fits a catalog-less data set was tuned and reported; the pick is the best on validation
    assert set(metrics["models"]) == {"popularity", "itemknn", "sequential", "ease", "hybrid"}
    best = max(metrics["models"].values(), key=lambda m: m["validation"]["ndcg@10"])
    assert metrics["models"][metrics["selected"]]["validation"]["ndcg@10"] == best["validation"]["ndcg@10"]
    assert metrics["skipped_records"] == 2  # reported, not fatal
    # the data set was built in a process of its own: the phase's peak counts that process whole (its interpreter
    # and libraries, some 100 MB and more) on top of what the job held, and tuning starts from the job's own again
    memory = metrics["memory_mb"]
    assert memory["data set"]["peak_mb"] - memory["tuning"]["start_mb"] > 50
    meta = json.loads((trained / "model/model.json").read_text())
    # hyperparameters come from the file and from --name value arguments alike
    assert meta["hyperparameters"]["top_k"] == 5
    assert meta["hyperparameters"]["neighbours"] == 20
    assert (trained / "output/data/metrics.json").exists()
    # each family against K, beside it (what the console shows for the version): a real PNG, one panel per metric
    png = (trained / "output/data/evaluation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") > 1000  # width in pixels


def test_itemknn_learns_the_planted_structure(trained: Path) -> None:
    # On two disjoint tribes, neighbours of a tribe's item are its own tribe's items, so item-kNN must find held-out
    # items better than global popularity does.
    metrics = json.loads((trained / "model/metrics.json").read_text())
    models = metrics["models"]
    assert models["itemknn"]["test"]["recall@10"] > models["popularity"]["test"]["recall@10"]
    assert models["ease"]["test"]["recall@10"] > models["popularity"]["test"]["recall@10"]
    model = TrainedModel.load(trained / "model")
    rows = {row["key"]: row for row in answer(model, {"kind": "items"}, 5)}
    for neighbour in rows["item#a0"]["items"]:
        assert neighbour[0].startswith("a")


def test_user_picks_exclude_owned_items_and_explain_themselves(trained: Path) -> None:
    model = TrainedModel.load(trained / "model")
    owned = {
        str(model.users[u]): {str(model.items[i]) for i in model.history[u].indices} for u in range(len(model.users))
    }
    rows = list(answer(model, {"kind": "users", "shard": 0, "shards": 1}, 5))
    assert len(rows) == len(model.users)
    for row in rows:
        user = row["key"].removeprefix("user#")
        assert len(row["items"]) == 5
        for item_id, _score, because, *_ in row["items"]:
            assert item_id not in owned[user]
            assert because == "" or because in owned[user]


def test_a_model_is_read_memory_mapped_and_a_directory_of_before_still_loads(trained: Path, tmp_path: Path) -> None:
    """Every array of a loaded model is a map of its file (the transform's workers share the page cache),
    and a model directory written before (``.npz`` matrices, read into memory) gives the same lists."""
    import mmap
    import shutil

    from scipy import sparse

    from shopwise_jobs.artifacts import load_csr

    def mapped(array: Any) -> bool:  # a view of a file's memory map (scipy wraps the np.memmap it is given)
        while array is not None and not isinstance(array, mmap.mmap):
            array = getattr(array, "base", None)
        return array is not None

    model = TrainedModel.load(trained / "model")
    for matrix in (model.history, model.similar.similarity):
        assert all(mapped(a) for a in (matrix.data, matrix.indices, matrix.indptr))
    assert mapped(model.popularity.scores)
    old = tmp_path / "model"
    shutil.copytree(trained / "model", old)
    for folder in old.glob("*.csr"):  # back to the layout of before: one .npz a matrix
        sparse.save_npz(folder.with_suffix(".npz"), load_csr(folder).copy())
        shutil.rmtree(folder)
    before = TrainedModel.load(old)
    assert not mapped(before.history.data)
    request = {"kind": "users", "shard": 0, "shards": 1}
    assert list(answer(before, request, 5)) == list(answer(model, request, 5))


def test_shards_partition_the_users(trained: Path) -> None:
    model = TrainedModel.load(trained / "model")
    keys = [
        row["key"] for shard in range(3) for row in answer(model, {"kind": "users", "shard": shard, "shards": 3}, 2)
    ]
    assert sorted(keys) == sorted(f"user#{u}" for u in model.users)


def test_transform_container_answers_every_request_line(trained: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/requests.jsonl").write_text('{"kind": "popular"}\n{"kind": "users", "shard": 0, "shards": 1}\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopwise_local.transform_container",
            "--model-dir",
            str(trained / "model"),
            "--input-dir",
            str(tmp_path / "in"),
            "--output-dir",
            str(tmp_path / "out"),
            "--program",
            str(SAGEMAKER_DIR / "inference.py"),
        ],
        env=child_env({"SHOPWISE_TOP_K": "3"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "out/requests.jsonl.out").read_text().splitlines()]
    assert lines[0]["key"] == "popular#global"
    assert len(lines) == 1 + 60
    assert all(len(line["items"]) == 3 for line in lines)


def test_a_failing_job_leaves_its_reason_where_sagemaker_reads_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SAGEMAKER_DIR / "train.py")],
        env=child_env({"SM_OPT_ML": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "input channel 'events' is missing" in (tmp_path / "output/failure").read_text()


def test_unknown_hyperparameters_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown hyperparameters: topk"):
        Hyperparameters.parse({"topk": "5"})


def test_contract_reads_sm_variables_over_defaults(tmp_path: Path) -> None:
    contract = TrainingContract.from_environment(
        ["--top_k=7"],
        {
            "SM_OPT_ML": str(tmp_path),
            "SM_HPS": json.dumps({"top_k": 3, "sagemaker_program": "train.py", "eval_k": '"10"'}),
            "SM_CHANNEL_EVENTS": str(tmp_path / "ev"),
            "SM_MODEL_DIR": str(tmp_path / "m"),
        },
    )
    assert contract.hyperparameters == {"top_k": "7", "eval_k": "10"}  # sagemaker_* dropped, JSON decoded
    assert contract.channels["events"] == tmp_path / "ev"
    assert contract.model_dir == tmp_path / "m"


def test_the_transform_over_candidates_writes_the_lists_of_the_dense_transform(trained: Path) -> None:
    """A catalog of CANDIDATES_FROM_ITEMS items or more is scored over candidates: forced on this small model, every
    user's list is the dense path's — the same picks with evidence and the same reasons (ties may swap places)."""
    from shopwise_jobs.scoring import user_rows

    model = TrainedModel.load(trained / "model")
    dense = list(user_rows(model, 5, candidates_from=10**9))
    sparse_rows = list(user_rows(model, 5, candidates_from=0))
    assert [r["key"] for r in dense] == [r["key"] for r in sparse_rows]
    for a, b in zip(dense, sparse_rows, strict=True):
        assert [round(p[1], 4) for p in a["items"]] == [round(p[1], 4) for p in b["items"]]
        assert {(p[0], p[2]) for p in a["items"] if p[1]} == {(p[0], p[2]) for p in b["items"] if p[1]}


def test_the_bestsellers_are_every_rows_strength_over_a_thousand_plus_the_windows_in_any_chunking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``windowed_popularity``, the definition the segment lists are held to: each item's kind weights summed over
    every row, times 1e-3, plus over the rows of the last window days (ending at the newest row); rows of items
    outside ``items`` count for none. Counted in chunks on threads: the same scores whichever chunks, a row or
    thousands each."""
    import numpy as np
    import pandas as pd

    from shopwise_jobs import models
    from shopwise_jobs.dataset import INTERACTION_COLUMNS

    rng = np.random.default_rng(11)
    kinds = np.array(["view", "cart", "purchase", "search"])  # a search has no weight
    frame = pd.DataFrame(
        [(f"e{n}", f"u{n % 90}", f"i{rng.integers(0, 33)}", kinds[rng.integers(0, 4)],
          float(rng.integers(0, 40 * 86400)), np.nan, "", "", "") for n in range(2500)],
        columns=INTERACTION_COLUMNS,
    )  # fmt: skip
    frame.loc[0, ["item_id", "kind", "ts"]] = ["i0", "purchase", frame["ts"].max() - 14 * 86400.0]  # the window's edge
    items = np.array([f"i{n}" for n in range(30)])  # i30..i32: touched, not among the items
    weights = {"view": 1.0, "cart": 2.0, "purchase": 4.0}
    strength = frame["kind"].map(weights).fillna(0.0)
    recent = frame["ts"] >= frame["ts"].max() - 14 * 86400.0
    by_item = (strength.groupby(frame["item_id"]).sum() * 1e-3).add(
        strength[recent].groupby(frame["item_id"][recent]).sum(), fill_value=0.0
    )
    expected = by_item.reindex(items, fill_value=0.0).to_numpy(dtype=np.float32)
    assert (expected > 0).sum() == 30
    for chunk in (1 << 22, 1000, 7, 1):
        monkeypatch.setattr(models, "FIT_CHUNK_ROWS", chunk)
        got = models.windowed_popularity(frame, items, weights, 14.0).scores
        assert np.array_equal(got, expected), chunk
    assert not models.windowed_popularity(frame.iloc[:0], items, weights, 14.0).scores.any()


def test_segment_lists_are_each_segments_windowed_bestsellers_in_any_chunking() -> None:
    """Every level of the category path, the market and the first referrer of the session: each segment's list is
    ``windowed_popularity`` of its own rows (its window ending at its newest row), the definition, whichever chunks
    the rows were summed in, a market's and a referrer's sums dense or sparse."""
    import numpy as np
    import pandas as pd

    from shopwise.catalog import categories
    from shopwise_jobs.dataset import INTERACTION_COLUMNS
    from shopwise_jobs.models import windowed_popularity
    from shopwise_jobs.training import segment_lists

    rng = np.random.default_rng(5)
    paths = ["A>B>C", "A>B>D", "A>E", "F", ""]
    catalog = pd.DataFrame({"item_id": [f"i{n}" for n in range(40)], "category": [paths[n % 5] for n in range(40)]})
    rows: list[tuple[object, ...]] = []
    for n in range(3000):
        session = f"s{rng.integers(0, 300)}" if rng.random() < 0.9 else ""
        referrer = ["", "", "", "google", "newsletter"][rng.integers(0, 5)]
        rows.append(
            (f"e{n}", f"u{rng.integers(0, 80)}", f"i{rng.integers(0, 44)}",  # i40..i43: in no catalog, not coded
             ["view", "cart", "purchase"][rng.integers(0, 3)], float(rng.integers(0, 60 * 86400)), np.nan, session,
             ["de", "fr", ""][rng.integers(0, 3)], referrer)
        )  # fmt: skip
    # a session whose two referred rows tie in time: the earlier row's referrer is its first; missing values (a
    # market, a referrer, a session id) are blank
    rows += [
        ("t0", "u1", "i1", "view", 86400.0 * 59, np.nan, "s-tie", "de", "newsletter"),
        ("t1", "u1", "i2", "view", 86400.0 * 59, np.nan, "s-tie", "de", "google"),
        ("t2", "u1", "i3", "cart", 86400.0 * 59 + 1, np.nan, "s-tie", "de", ""),
        ("t3", "u2", "i4", "view", 86400.0 * 10, np.nan, "s7", None, None),
        ("t4", "u2", "i5", "view", 86400.0 * 3, np.nan, None, "fr", "google"),
    ]  # fmt: skip
    # ... and bought one item enough to top its referrer's list: the tie decides which list that is
    rows += [(f"t{n}", "u1", "i39", "purchase", 86400.0 * 59 + 2, np.nan, "s-tie", "de", "") for n in range(5, 15)]
    data = pd.DataFrame(rows, columns=INTERACTION_COLUMNS)
    items = np.array([f"i{n}" for n in range(40)])
    weights = {"view": 1.0, "cart": 2.0, "purchase": 4.0}

    def listed(frame: pd.DataFrame) -> list[list[object]]:
        scores = windowed_popularity(frame, items, weights, 14.0)
        top = scores.top(5, among=np.flatnonzero(scores.scores > 0))
        return [[str(items[i]), round(float(scores.scores[i]), 4)] for i in top]

    path_of = dict(zip(catalog["item_id"], catalog["category"], strict=True))
    expected: dict[str, list[list[object]]] = {}
    for prefix in sorted({p for path in paths if path for p in categories.prefixes(path)}):
        inside = data["item_id"].map(lambda i, prefix=prefix: prefix in categories.prefixes(path_of.get(i, "") or ""))
        expected[f"category:{prefix}"] = listed(data[inside.to_numpy(dtype=bool)])
    for market in ("de", "fr"):
        expected[f"market:{market}"] = listed(data[data["market"] == market])
    referred = data[data["referrer"].fillna("") != ""].sort_values("ts", kind="stable")
    first = referred[referred["session_id"].fillna("") != ""].groupby("session_id")["referrer"].first()
    assert first["s-tie"] == "newsletter"
    for source in ("google", "newsletter"):
        sessions = set(first[first == source].index)
        expected[f"referrer:{source}"] = listed(data[data["session_id"].isin(sessions)])
    assert all(expected.values()) and len(expected) == 10  # A, A>B, A>B>C, A>B>D, A>E, F; 2 markets; 2 referrers
    for chunk_rows, dense_cells in ((None, None), (250, None), (7, None), (None, 1), (250, 1)):
        got = segment_lists(data, catalog, items, weights, 14.0, 5, chunk_rows=chunk_rows, dense_cells=dense_cells)
        assert got == expected, (chunk_rows, dense_cells)
    # a store without markets or referrers (every value blank): the category lists alone
    blank = data.assign(market="", referrer="")
    categories_only = {name: lists for name, lists in expected.items() if name.startswith("category:")}
    assert segment_lists(blank, catalog, items, weights, 14.0, 5) == categories_only


def test_every_rows_codes_reuse_the_served_sets_and_equal_coding_them_all() -> None:
    """The bestsellers count every interaction, the personal models the consented ones: every row is coded once,
    the served set's codes views of its first rows (the consented rows first: a slice of the frame), or, coded
    already, the rest coded and joined; rows interleaved (a copy) are all coded apart. Each way gives what coding
    every row from its strings gives, and the served set's own codes what coding its rows gives."""
    import numpy as np
    import pandas as pd

    from shopwise_jobs.dataset import INTERACTION_COLUMNS, codes_in
    from shopwise_jobs.memory import array_bytes
    from shopwise_jobs.models import CodedInteractions
    from shopwise_jobs.selection import train_set
    from shopwise_jobs.training import Hyperparameters, fit_frame, personal_interactions

    rng = np.random.default_rng(3)
    rows = [
        (f"e{n}", f"u{rng.integers(0, 50)}", f"i{rng.integers(0, 30)}", ["view", "cart", "purchase"][n % 3],
         float(rng.integers(0, 30 * 86400)), np.nan, "", "", "")
        for n in range(600)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=INTERACTION_COLUMNS)
    frame["consented"] = rng.random(len(frame)) < 0.7
    catalog = pd.DataFrame({"item_id": [f"i{n}" for n in range(25)]})  # i25..i29: touched, in no catalog
    hp = Hyperparameters.parse({})
    for everyone in (fit_frame(frame), frame, frame.assign(consented=True)):
        everyone = everyone.reset_index(drop=True)  # as the fit passes it
        personal = personal_interactions(everyone, hp)
        first = np.shares_memory(everyone["ts"].to_numpy()[:1], personal["ts"].to_numpy()[:1])
        for coded_before in (False, True):
            data = train_set(personal, personal.iloc[:0], catalog, hp.kind_weights())
            if coded_before:
                data.coded()
            got = data.coded_with(everyone)
            expected = CodedInteractions.of(everyone, data.items, data.weights)
            for name in ("codes", "weights", "ts"):
                assert np.array_equal(getattr(got, name), getattr(expected, name)), name
            own = CodedInteractions.of(personal, data.items, data.weights)
            assert np.array_equal(data.coded().codes, own.codes) and np.array_equal(data.coded().weights, own.weights)
            assert np.array_equal(data.codes()[1], own.codes)
            assert np.array_equal(data.codes()[0], codes_in(personal["user_id"], data.users))
            # one pass where nothing was coded and the served rows come first: the served set's codes are views
            shared = np.shares_memory(got.codes, data.coded().codes)
            assert shared is bool(first and (not coded_before or len(personal) == len(everyone)))
            # what the fit says it holds counts each byte once: the views are every row's arrays' memory
            whole = sum(a.nbytes for a in (got.codes, got.weights))
            held = array_bytes([data.coded().codes, data.coded().weights, got.codes, got.weights])
            assert held == (whole if shared else whole + data.coded().codes.nbytes + data.coded().weights.nbytes)
    assert len(personal_interactions(frame, hp)) < len(frame)  # the interleaved frame's rows: some not consented


@pytest.mark.parametrize("first", ["", "1"])
def test_a_large_catalogs_content_index_is_fitted_apart_as_the_job_would_fit_it(tmp_path: Path, first: str) -> None:
    """From the content index's ANN path on (forced here: SHOPWISE_CONTENT_ANN_FROM_ITEMS=0), the served fit runs it
    in a spawned process of its own beside the other parts; the model holds the same neighbours the fit in this
    process gives, and the job's metrics say it ran apart, with its own time and memory. With SHOPWISE_APART_FIRST
    (make scale's) the fit waits for it before the other parts, and says so: the same model."""
    import numpy as np

    from shopwise_jobs.dataset import read_catalog
    from shopwise_jobs.models import ContentKNN, tfidf_rows

    root = tmp_path / "opt_ml"
    planted_events(root / "input/data/events/dt=2026-11-20/part-0.jsonl")
    catalog = root / "input/data/catalog/items.jsonl"
    catalog.parent.mkdir(parents=True)
    rows = [
        {
            "item_id": item,
            "title": f"{tribe} thing {i % 4}",
            "category": f"Home > {tribe.upper()} > {i % 3}",
            "price": 5 + i,
        }
        for tribe, items in CLUSTER_ITEMS.items()
        for i, item in enumerate(items)
    ]
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(
        json.dumps({"top_k": "5", "test_fraction": "0.2", "budget": "quick", "models": "popularity,itemknn"})
    )
    result = subprocess.run(
        [sys.executable, str(SAGEMAKER_DIR / "train.py"), "--neighbours", "5"],
        env=child_env(
            {
                "SM_OPT_ML": str(root),
                "TRAINING_JOB_NAME": "job-apart",
                "SHOPWISE_CONTENT_ANN_FROM_ITEMS": "0",
                "SHOPWISE_APART_FIRST": first,
            }
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("before the other parts (SHOPWISE_APART_FIRST)" in result.stdout) is (first == "1")
    metrics = json.loads((root / "model/metrics.json").read_text())
    assert metrics["selected"] in {"popularity", "itemknn"}  # the content index is the served fit's own part
    seconds = metrics["seconds"]
    assert seconds["final parts apart"] == ["content"]
    assert seconds["final parts"]["content"] > 0 and seconds["final parts cpu"]["content"] > 0
    assert metrics["memory_parts_mb"]["final fit"]["content"][0] == 0.0  # nothing of the job's held in its process
    model = TrainedModel.load(root / "model")
    items = read_catalog(catalog.parent)
    expected = ContentKNN.fit(items, model.items, 5, ann_from=0).similarity.tocsr()
    assert model.content is not None and model.content.similarity.nnz == 24 * 5
    got, cosines = model.content.similarity.tocsr(), tfidf_rows(items, model.items)
    for row in range(24):
        # the same best scores (neighbours tied on a score may come in either order: HNSW's threads), each the
        # pair's exact cosine
        scores = got.data[got.indptr[row] : got.indptr[row + 1]]
        assert np.allclose(np.sort(scores), np.sort(expected.data[expected.indptr[row] : expected.indptr[row + 1]]))
        for column, score in zip(got.indices[got.indptr[row] : got.indptr[row + 1]], scores, strict=True):
            assert score == pytest.approx(float(cosines[row].multiply(cosines[column]).sum()), abs=1e-5)


def test_the_jobs_own_data_set_build_runs_apart_and_gives_what_the_build_in_this_process_gives(tmp_path: Path) -> None:
    """The Python data set build and the feature snapshot run in a spawned process (``build_data_set``): what the
    fit gets back — rows, counts, the snapshot's files — is what the same build in this process gives; and the job's
    memory phases count the build's process with what the job held (its peak), and say so in the log as they go."""
    import pandas as pd

    from shopwise_jobs.apart import Apart
    from shopwise_jobs.memory import Phases
    from shopwise_jobs.training import build_data_set, catalog_snapshot

    archive = tmp_path / "events"
    planted_events(archive / "dt=2026-11-20/part-0.jsonl")
    no_catalog = pd.DataFrame(columns=["item_id"])
    here, here_counts = build_data_set(archive, catalog_snapshot(no_catalog), None, tmp_path / "here")
    done = Apart(build_data_set, archive, catalog_snapshot(no_catalog), None, tmp_path / "apart").result()
    there, there_counts = done.value
    pd.testing.assert_frame_equal(here.interactions, there.interactions)
    assert (
        (there.records, there.skipped) == (here.records, here.skipped) == (60 * 7 + 2, 2)
    )  # 60 consents, 360 events, 2 bad lines
    assert there_counts == here_counts and there_counts["profiles"] == 60
    for table in ("profiles.parquet", "items.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "here" / table), pd.read_parquet(tmp_path / "apart" / table)
        )
    assert done.peak_mb is not None and done.own_mb is not None and done.peak_mb > done.own_mb > 0

    logged: list[str] = []
    phases = Phases(logged.append)
    phases.begin("data set")
    phases.beside(done.peak_mb)
    phases.begin("tuning")
    figures = phases.end()
    start = figures["data set"]["start_mb"]
    assert figures["data set"]["peak_mb"] >= start + done.peak_mb - 0.1  # both processes' at once
    # the line rounds the resident figure to the MB, the figures to a tenth of it: 1,825.46 is 1,825 and 1,825.5
    begins = re.fullmatch(r"memory: data set begins at ([\d,]+) MB resident", logged[0])
    assert begins is not None and abs(float(begins.group(1).replace(",", "")) - start) <= 0.55
    assert [line.split(" at ")[0] for line in logged] == [
        "memory: data set begins",
        "memory: data set peaked",
        "memory: tuning begins",
        "memory: tuning peaked",
    ]


def test_the_environment_a_child_inherits_is_set_for_one_spawning_thread_at_a_time() -> None:
    """threads_for_children sets os.environ, the process's: a sibling thread setting its own counts meanwhile (the
    served fit's parts side by side) would change them under the first while it spawns, then restore the wrong
    ones. The second waits until the first is done, and each sees its own count throughout."""
    import os
    import threading
    import time

    from shopwise_jobs.apart import threads_for_children

    seen: dict[str, list[str | None]] = {"first": [], "second": []}
    inside = threading.Event()
    before = os.environ.get("OMP_NUM_THREADS")

    def first() -> None:
        with threads_for_children(1):
            seen["first"].append(os.environ.get("OMP_NUM_THREADS"))
            inside.set()
            time.sleep(0.2)  # the second thread asks meanwhile
            seen["first"].append(os.environ.get("OMP_NUM_THREADS"))

    def second() -> None:
        inside.wait()
        with threads_for_children(3):
            seen["second"].append(os.environ.get("OMP_NUM_THREADS"))
            time.sleep(0.4)  # past the first's end, which restores what it found
            seen["second"].append(os.environ.get("OMP_NUM_THREADS"))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"first": ["1", "1"], "second": ["3", "3"]}
    assert os.environ.get("OMP_NUM_THREADS") == before  # the process's own again
