"""The synthetic store and the file-based model commands, run as a user runs them: simulate -> train ->
batch-recommend -> evaluate, through ``shopwise_local.cli.main``."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopwise_jobs.models import scale_rows
from shopwise_local.cli import main
from shopwise_local.simulate import SimulationOptions, simulate

SMALL = SimulationOptions(shoppers=400, days=30, seed=5, items=300)


def train(store: Path, out: Path, *hps: str, catalog: bool = True) -> int:
    """``shopwise train`` on the simulated store, as a user types it (budget=quick, then the given --hp values)."""
    items = ["--items", str(store / "items.csv")] if catalog else []
    hp_args = [arg for hp in ("budget=quick", *hps) for arg in ("--hp", hp)]
    return main(["train", "--events", str(store / "events.csv"), *items, "--out", str(out), *hp_args])


def profile_ids(events: pd.DataFrame) -> pd.Series:
    """The profile id training keys a simulated event by: c:<customer> or a:<visitor>."""
    return events["id_type"].map({"customer": "c:", "anonymous": "a:"}) + events["user_id"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store")
    simulate(SMALL, out, progress=False)
    return out


def test_same_seed_same_files_other_seed_other_files(store: Path, tmp_path: Path) -> None:
    simulate(SMALL, tmp_path / "again", progress=False)
    for name in ("items.csv", "events.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (store / name).read_bytes()
    simulate(SimulationOptions(shoppers=400, days=30, seed=6, items=300), tmp_path / "other", progress=False)
    assert (tmp_path / "other/events.csv").read_bytes() != (store / "events.csv").read_bytes()


def test_the_store_looks_like_a_store(store: Path) -> None:
    truth = json.loads((store / "truth.json").read_text())
    events = pd.read_csv(store / "events.csv", parse_dates=["timestamp"])
    items = pd.read_csv(store / "items.csv", parse_dates=["created_at"])
    assert 0.4 <= truth["anonymous_session_share"] <= 0.6
    sessions = events.groupby("session_id")["id_type"].first()
    assert 0.4 <= (sessions == "anonymous").mean() <= 0.6
    kinds = events["event_type"].value_counts()
    assert kinds["product_view"] > kinds["add_to_cart"] > kinds["purchase"] > 0  # a funnel
    # every purchase was carted first in its session
    carted = set(
        zip(
            events.loc[events.event_type == "add_to_cart", "session_id"],
            events.loc[events.event_type == "add_to_cart", "item_id"],
            strict=True,
        )
    )
    bought = events[events.event_type == "purchase"]
    assert all(pair in carted for pair in zip(bought["session_id"], bought["item_id"], strict=True))
    # nobody touches a product before it launches
    launched = events.merge(items[["item_id", "created_at"]], on="item_id")
    assert (launched["timestamp"] >= launched["created_at"]).all()
    assert truth["launched_items"] > 0


def test_taste_drift_moves_demand_into_the_season(store: Path) -> None:
    truth = json.loads((store / "truth.json").read_text())
    events = pd.read_csv(store / "events.csv", parse_dates=["timestamp"])
    items = pd.read_csv(store / "items.csv")
    views = events[events.event_type == "product_view"].merge(items[["item_id", "category"]], on="item_id")
    drift_at = pd.Timestamp(SMALL.start, tz="UTC") + pd.Timedelta(days=truth["drift_day"])
    in_season = views["category"].isin(truth["in_season"])
    before = in_season[views["timestamp"] < drift_at].mean()
    after = in_season[views["timestamp"] >= drift_at].mean()
    assert after > 1.5 * before


def test_train_then_batch_recommend_then_evaluate(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    assert train(store, model) == 0
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["selected"] in metrics["models"]
    assert "content" in metrics["models"]  # a catalog was given
    out = tmp_path / "recs.jsonl"
    assert main(["batch-recommend", "--model", str(model), "-k", "7", "--out", str(out), "--no-progress"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    events = pd.read_csv(store / "events.csv", dtype=str)
    profile = profile_ids(events)
    owned = events.groupby(profile)["item_id"].apply(set)
    # only shoppers who granted personalisation are modelled and get a list (the simulator's consent banner)
    granted = events["granted"].fillna("").str.contains("personalisation")
    consenting = set(profile[granted])
    assert {line["user_id"] for line in lines} == consenting & set(profile[~granted])
    assert 0.7 < len(consenting) / profile.nunique() < 0.95
    for line in lines:
        ids = [item["item_id"] for item in line["items"]]
        assert len(ids) == 7 == len(set(ids))
        assert not set(ids) & owned[line["user_id"]]
        scores = [item["score"] for item in line["items"] if item["score"] > 0]
        assert scores == sorted(scores, reverse=True)
    report = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--events",
                str(store / "events.csv"),
                "--items",
                str(store / "items.csv"),
                "--out",
                str(report),
                "--hp",
                "budget=quick",
                "--hp",
                "models=popularity,itemknn,content",
            ]
        )
        == 0
    )
    doc = json.loads((report / "evaluation.json").read_text())
    assert {m["name"] for m in doc["models"]} == {"popularity", "itemknn", "content"}
    assert "<img" in (report / "evaluation.html").read_text()
    printed = capsys.readouterr().out
    assert "ndcg@10" in printed and "itemknn" in printed


def test_bad_input_gets_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--events", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "m")]) == 1
    assert "nope.csv does not exist" in capsys.readouterr().err
    assert main(["batch-recommend", "--model", str(tmp_path), "-k", "5", "--out", str(tmp_path / "o.jsonl")]) == 1
    assert "is not a shopwise model directory" in capsys.readouterr().err
    (tmp_path / "e.csv").write_text("user_id,item_id,timestamp,event_type\nu1,i1,2026-01-01T00:00:00Z,view\n")
    assert (
        main(["train", "--events", str(tmp_path / "e.csv"), "--out", str(tmp_path / "m"), "--hp", "budget=huge"]) == 1
    )
    assert "budget must be one of auto, full, quick" in capsys.readouterr().err


def test_the_auto_budget_tunes_the_full_grids_up_to_its_size_and_the_quick_ones_past_it(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """budget=auto (the deployed default) by the served model's interactions: at most FULL_BUDGET_INTERACTIONS, every
    family's grid (item-kNN's 8 configurations, popularity's 3); past it one configuration a family. The job says
    which, and its metrics record the grids it used."""
    from shopwise_jobs import training
    from shopwise_jobs.dataset import read_catalog, read_event_import
    from shopwise_jobs.training import Hyperparameters, fit_and_select, personal_interactions

    interactions = read_event_import(store / "events.csv").interactions
    catalog = read_catalog(store / "items.csv")
    hp = Hyperparameters.parse({"models": "popularity,itemknn"})
    assert hp.budget == "auto" and Hyperparameters.parse({"budget": "full"}).budget_for(1) == "full"
    served = len(personal_interactions(interactions, hp))
    for limit, grids, tried in ((served, "full", {"itemknn": 8, "popularity": 3}), (served - 1, "quick", None)):
        monkeypatch.setattr(training, "FULL_BUDGET_INTERACTIONS", limit)
        lines: list[str] = []
        _model, metrics = fit_and_select(interactions, catalog, hp, "v1", log=lines.append)
        assert metrics["hyperparameters"]["budget"] == grids
        assert f"budget auto: {grids} grids ({served:,} interactions; full up to {limit:,}" in "\n".join(lines)
        counts = {name: len(metrics["models"][name]["tried"]) for name in ("itemknn", "popularity")}
        assert counts == (tried or {"itemknn": 1, "popularity": 1})


def test_a_hybrid_model_survives_the_model_folder(store: Path, tmp_path: Path) -> None:
    from shopwise_jobs.artifacts import TrainedModel
    from shopwise_jobs.dataset import read_catalog, read_event_import
    from shopwise_jobs.models import Hybrid
    from shopwise_jobs.training import Hyperparameters, fit_and_select

    interactions = read_event_import(store / "events.csv").interactions
    catalog = read_catalog(store / "items.csv")
    hp = Hyperparameters.parse({"budget": "quick", "models": "hybrid"})
    model, metrics = fit_and_select(interactions, catalog, hp, "v1", log=lambda _line: None)
    assert metrics["selected"] == "hybrid" and isinstance(model.model, Hybrid)
    blended = [c for c in metrics["params"]["components"] if c["weight"]]
    assert model.model.kinds == [c["kind"] for c in blended]
    model.save(tmp_path / "m")
    loaded = TrainedModel.load(tmp_path / "m")
    assert isinstance(loaded.model, Hybrid) and loaded.model.weights == model.model.weights
    rows = model.history[:50]
    np.testing.assert_allclose(loaded.model.score(rows), model.model.score(rows), rtol=1e-6)
    # the blend is the weighted sum of its parts, each scaled to its row's largest score
    expected = sum(w * scale_rows(p.score(rows)) for w, p in zip(model.model.weights, model.model.parts, strict=True))
    np.testing.assert_allclose(model.model.score(rows), expected, rtol=1e-5)


def test_the_selected_item_knn_is_the_served_similar_items_when_fitted_alike(store: Path) -> None:
    """Item-kNN selected with the served similar items' neighbours and shrinkage is the same fit on the same rows:
    fitted once, recorded as "similar"; with other neighbours it is the model's own part, and the similar items
    are fitted as the job asks."""
    from shopwise_jobs.dataset import read_catalog, read_event_import
    from shopwise_jobs.models import ITEMKNN_HISTORY, ItemKNN
    from shopwise_jobs.training import Hyperparameters, fit_and_select, personal_interactions, served_set

    interactions = read_event_import(store / "events.csv").interactions
    catalog = read_catalog(store / "items.csv")
    hp = Hyperparameters.parse({"budget": "quick", "models": "itemknn"})  # the quick grid: 100 neighbours, as served
    model, metrics = fit_and_select(interactions, catalog, hp, "v1", log=lambda _line: None)
    assert metrics["selected"] == "itemknn" and metrics["params"]["neighbours"] == hp.neighbours
    assert model.similar is model.model
    assert "similar" in metrics["seconds"]["final parts"] and "model:itemknn" not in metrics["seconds"]["final parts"]

    narrow = Hyperparameters.parse({"budget": "quick", "models": "itemknn", "neighbours": "3"})
    model, metrics = fit_and_select(interactions, catalog, narrow, "v1", log=lambda _line: None)
    assert model.similar is not model.model
    assert {"similar", "model:itemknn"} <= set(metrics["seconds"]["final parts"])
    rows = served_set(personal_interactions(interactions, narrow), catalog, narrow).recent(ITEMKNN_HISTORY)
    expected = ItemKNN.fit(rows, 3, narrow.shrinkage).similarity.tocsr()
    got = model.similar.similarity.tocsr()
    assert np.diff(got.indptr).max() == 3 and np.diff(model.model.similarity.tocsr().indptr).max() > 3
    assert (got != expected).nnz == 0


def test_the_served_fits_parts_side_by_side_give_the_model_of_one_after_another(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On 16 vCPUs or more the served fit runs its parts at once, in threads (forced here): the same model, file for
    file, as one part after another; its metrics say so, with each part's wall time and the group's."""
    from shopwise_jobs.dataset import read_catalog, read_event_import
    from shopwise_jobs.training import Hyperparameters, fit_and_select

    interactions = read_event_import(store / "events.csv").interactions
    catalog = read_catalog(store / "items.csv")
    hp = Hyperparameters.parse(
        {"budget": "quick", "models": "popularity,itemknn,sequential,ials,content,affinity,hybrid"}
    )
    saved: dict[str, Path] = {}
    for forced in ("0", "1"):
        monkeypatch.setenv("SHOPWISE_FINAL_SIDE_BY_SIDE", forced)
        model, metrics = fit_and_select(interactions, catalog, hp, "v1", log=lambda _line: None)
        assert metrics["seconds"]["final parts side by side"] is (forced == "1")
        saved[forced] = tmp_path / forced
        model.save(saved[forced])
    final = metrics["seconds"]["final parts"]
    assert metrics["selected"] == "hybrid" and {"side by side", "similar", "next_items", "popularity"} <= set(final)
    assert (
        len(set(final) - {"ids", "matrix", "history", "inputs", "side by side"}) >= 5
    )  # the blend's parts and the served ones
    assert "side by side" in metrics["seconds"]["final parts cpu"]
    files = sorted(f.relative_to(saved["0"]) for f in saved["0"].rglob("*") if f.is_file())
    assert files == sorted(f.relative_to(saved["1"]) for f in saved["1"].rglob("*") if f.is_file())
    for name in files:
        one, other = (saved["0"] / name).read_bytes(), (saved["1"] / name).read_bytes()
        if name.name == "model.json":  # the time it was trained at differs
            one_doc, other_doc = json.loads(one), json.loads(other)
            one_doc.pop("trained_at"), other_doc.pop("trained_at")
            assert one_doc == other_doc
        else:
            assert one == other, name


def test_a_large_store_is_tuned_on_a_fixed_sample_of_shoppers_and_served_from_every_one(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shopwise_jobs import training
    from shopwise_jobs.dataset import read_catalog, read_event_import
    from shopwise_jobs.training import Hyperparameters, fit_and_select, personal_interactions, shopper_sample

    interactions = read_event_import(store / "events.csv").interactions
    catalog = read_catalog(store / "items.csv")
    hp = Hyperparameters.parse({"budget": "quick", "models": "popularity,itemknn"})
    personal = personal_interactions(interactions, hp)
    monkeypatch.setattr(training, "TUNING_INTERACTIONS", len(personal) // 3)
    lines: list[str] = []
    model, metrics = fit_and_select(interactions, catalog, hp, "v1", log=lines.append)
    sample = metrics["tuning_sample"]
    assert sample["of_interactions"] == len(personal) and sample["of_shoppers"] == personal["user_id"].nunique()
    assert 0.2 * len(personal) < sample["interactions"] < 0.5 * len(personal)  # about the third asked for
    assert sample["shoppers"] < 0.5 * sample["of_shoppers"]
    assert any(line.startswith(f"tuning on {sample['shoppers']:,} of") for line in lines)
    # tuned and reported on the sample's splits ...
    split = metrics["split"]
    assert split["train_interactions"] + split["test_interactions"] <= sample["interactions"]
    # ... the model served learnt from every shopper
    assert set(model.users) == set(personal["user_id"]) and model.history.sum() > 0
    kept, again = shopper_sample(personal, len(personal) // 3)
    assert again == sample and set(kept["user_id"]) < set(personal["user_id"])  # the same shoppers every retrain
    assert metrics["seconds"]["tuning"] > 0 and {"similar", "next_items"} <= set(metrics["seconds"]["final parts"])

    # the champion's artefact learnt from every shopper: the candidate it meets is refitted on every shopper too,
    # and they meet on every shopper's test interactions after the champion's data (not only the sample's)
    cut = personal["ts"].quantile(0.8)
    earlier, _ = fit_and_select(interactions[interactions["ts"] <= cut], catalog, hp, "v0", log=lines.append)
    _, compared = fit_and_select(interactions, catalog, hp, "v1", log=lines.append, champion=earlier)
    champion = compared["champion"]
    assert "skipped" not in champion and "candidate" in champion and "recipe" in champion
    full_test = training.split(personal, hp.protocol, hp.test_fraction, hp.holdout).test
    assert champion["test_users"] == full_test[full_test["ts"] > earlier.meta["data_window"][1]]["user_id"].nunique()
    assert champion["test_users"] > compared["split"]["test_users"]


def test_event_kind_weights_are_a_hyperparameter(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shopwise_jobs.artifacts import TrainedModel

    model_dir = tmp_path / "m"
    assert train(store, model_dir, "models=itemknn", "weights=purchase=1,view=0,cart=0", catalog=False) == 0
    model = TrainedModel.load(model_dir)
    events = pd.read_csv(store / "events.csv", dtype=str)
    consenting = set(profile_ids(events)[events["granted"].fillna("").str.contains("personalisation")])
    bought = events[(events.event_type == "purchase") & profile_ids(events).isin(consenting)]
    expected = set(zip(profile_ids(bought), bought["item_id"], strict=True))
    rows, cols = model.history.nonzero()
    assert {(model.users[r], model.items[c]) for r, c in zip(rows, cols, strict=True)} == expected
    assert train(store, model_dir, "weights=like=3", catalog=False) == 1
    assert "weights: kinds are view, cart, purchase" in capsys.readouterr().err


def test_the_transform_writes_next_items_popular_segments_and_similar_items(store: Path, tmp_path: Path) -> None:
    from shopwise_jobs.artifacts import TrainedModel
    from shopwise_jobs.scoring import answer

    assert train(store, tmp_path / "m", "models=itemknn") == 0
    model = TrainedModel.load(tmp_path / "m")
    rows = {row["key"]: row["items"] for kind in ("items", "popular") for row in answer(model, {"kind": kind}, 5)}
    events = pd.read_csv(store / "events.csv", dtype=str).sort_values(["session_id", "timestamp"], kind="stable")
    followed = set()
    for _session, frame in events.groupby("session_id"):
        raw = frame["item_id"].tolist()
        seq = [item for n, item in enumerate(raw) if n == 0 or item != raw[n - 1]]  # a view-cart-buy run is one step
        followed |= {(a, b) for n, a in enumerate(seq) for b in seq[n + 1 : n + 6] if a != b}
    nexts = {k: v for k, v in rows.items() if k.startswith("next#")}
    titles: dict[str, str] = dict(
        pd.read_csv(store / "items.csv", dtype=str)[["item_id", "title"]].itertuples(index=False)
    )
    assert len(nexts) > 50
    for key, items in nexts.items():
        assert all((key.removeprefix("next#"), item) in followed for item, _score, *_ in items)
        # each pick carries the item it follows and that item's title, for the reason text
        assert {(e[2], e[4]) for e in items} == {(key.removeprefix("next#"), titles[key.removeprefix("next#")])}
    items = pd.read_csv(store / "items.csv", dtype=str)
    markets = set(events["market"].dropna())  # consent rows carry none
    assert {f"popular#market:{m}" for m in markets} <= set(rows)
    department = items["category"].str.split(">").str[0].iloc[0]
    in_department = set(items.loc[items["category"].str.startswith(department), "item_id"])
    assert {item for item, *_ in rows[f"popular#category:{department}"]} <= in_department
    assert all(e[3].startswith(department) for e in rows[f"popular#category:{department}"])
    # sessions referred by instagram are about Beauty and Apparel (the simulator's rule): so is their list
    referred = rows["popular#referrer:instagram.com"]
    assert sum(e[3].split(">")[0] in ("Beauty", "Apparel") for e in referred) >= 4
    # every item with a catalog entry has similar items (content fills in where co-views are thin)
    assert sum(1 for k in rows if k.startswith("item#")) == len(items)


def test_the_cli_says_its_version_shows_defaults_and_completes_in_bash(capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("shopwise 0.")
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    assert "(default: auto)" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        probe = f'{script}\nCOMP_WORDS=(shopwise {line}); COMP_CWORD={len(words)}; _shopwise; echo "${{COMPREPLY[@]}}"'
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True, timeout=30)
        return done.stdout.split()

    assert complete("mod") == ["models"]
    assert complete("--stack", "shopwise-prod", "imp") == ["import"]  # a value after --stack is not a command
    assert set(complete("import", "--v")) == {"--via"} and set(complete("import", "it")) == {"items"}
    assert "--allow-events" in complete("console", "--")
