"""Operating the model loop on the local stack: two full retrain cycles on a simulated store with a taste drift
between them (the second model promoted), an instant rollback to the first model's recommendations on the very next
request, a promotion back, a drift above threshold that starts a retrain, and a promotion of a version no slot
holds any more (loaded again from its output, not recomputed). The gate's rejection of a worse model is tested in
test_serving.py."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shopwise.dal.recommendations import RecommendationRow, activate, get_pointer
from shopwise.keys import POPULAR_KEY, user_key
from shopwise.lifecycle import registry
from shopwise.lifecycle.loading import Unservable, load_rows
from shopwise.picks import StoredPick
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise_local import cli
from shopwise_local.importer import import_events, import_items
from shopwise_local.pipeline import PipelineResult, run_pipeline
from shopwise_local.replay import replay
from shopwise_local.simulate import demo_dataset
from shopwise_local.stack import LocalStack

from .conftest import Api, dynamodb_calls

pytestmark = pytest.mark.e2e

DAYS = 30
DRIFT_DAY = 20  # the simulator's default: two thirds through


@dataclass
class Cycles:
    first: PipelineResult
    second: PipelineResult
    first_lists: dict[str, dict[str, Any]]  # path -> response while the first model served
    paths: list[str]


def split_at_drift(history: Path, out: Path) -> tuple[Path, Path]:
    """The bulk history before the taste drift and after it."""
    start = datetime.now(UTC).date() - timedelta(days=DAYS)
    cut = datetime.combine(start + timedelta(days=DRIFT_DAY), datetime.min.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with history.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    at = header.index("timestamp")
    parts = (out / "before.csv", out / "after.csv")
    for path, chunk in zip(parts, ([r for r in rows if r[at] < cut], [r for r in rows if r[at] >= cut]), strict=True):
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(chunk)
    return parts


def pipeline(stack: LocalStack, work: Path, **more: Any) -> PipelineResult:
    assert stack.resources
    return run_pipeline(
        stack.resources.archive_bucket,
        stack.resources.artifacts_bucket,
        work,
        hyperparameters={"budget": "quick"},
        load_function=stack.functions["load"],
        registry_function=stack.functions["registry"],
        export_function=stack.functions["export_catalog"],
        **more,
    )


def ask(api: Api, path: str) -> dict[str, Any]:
    status, body = api.get(path)
    assert status == 200, body
    return dict(body)


def items_of(body: dict[str, Any]) -> list[tuple[str, float]]:
    return [(i["item_id"], i["score"]) for i in body["items"]]


@pytest.fixture(scope="module")
def cycles(stack: LocalStack, api: Api, tmp_path_factory: pytest.TempPathFactory) -> Cycles:
    """Cycle 1 on the history before the drift; cycle 2 after the rest of the history and the replay."""
    assert stack.resources and stack.poller and stack.api
    work = tmp_path_factory.mktemp("operate")
    data = demo_dataset(work / "data", shoppers=400, days=DAYS, replay_max=400, progress=False, items=200)
    before, after = split_at_drift(data.history, work)
    tables = stack.resources.tables
    import_items(data.items, tables["items"], tables["features"], False)
    pseudonymiser = load_pseudonymiser(stack.resources.pseudonym_key_secret)
    import_events(before, stack.resources.archive_bucket, pseudonymiser, False)
    first = pipeline(stack, work / "jobs1")

    with data.items.open(newline="") as handle:
        catalog = [r["item_id"] for r in csv.DictReader(handle)]
    paths = ["/v1/popular?n=10", *[f"/v1/items/{item}/similar?n=10" for item in catalog[:40]]]
    first_lists = {path: ask(api, path) for path in paths}

    import_events(after, stack.resources.archive_bucket, pseudonymiser, False)
    sent = replay(stack.api.url, data.replay, progress=False, grant_consent=True)
    assert not sent.rejected, sent.reasons[:3]
    assert stack.poller.wait_idle(120)
    second = pipeline(stack, work / "jobs2")
    return Cycles(first, second, first_lists, paths)


def test_the_second_cycle_after_the_taste_drift_is_gated_and_promoted(
    stack: LocalStack, api: Api, cycles: Cycles
) -> None:
    assert stack.resources
    config_table = stack.resources.tables["config"]
    first = registry.get(config_table, cycles.first.model_version)
    second = registry.get(config_table, cycles.second.model_version)
    assert first and second
    assert second.status == "active" and second.reason == "promoted by the pipeline" and second.trigger == "manual"
    assert first.status == "retired" and cycles.second.model_version in first.reason
    assert second.data_window[1] > first.data_window[1]  # trained on the events after the drift
    pointer = get_pointer(config_table)
    assert pointer.version == second.version and pointer.previous == first.version
    assert {pointer.slots[s]["version"] for s in ("a", "b")} == {first.version, second.version}
    now = {path: ask(api, path) for path in cycles.paths}
    assert all(body["model_version"] == second.version for body in now.values())
    changed = [p for p in cycles.paths if items_of(now[p]) != items_of(cycles.first_lists[p])]
    assert len(changed) > len(cycles.paths) // 2, "the drifted data should change most lists"


def test_a_rollback_restores_the_first_models_lists_on_the_very_next_request(
    stack: LocalStack, api: Api, cycles: Cycles, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.resources
    config_table = stack.resources.tables["config"]
    ask(api, cycles.paths[0])  # this process's serve function has read the serving slot
    assert cli.main(["rollback", "--by", "the test"]) == 0
    assert f"serving {cycles.first.model_version}" in capsys.readouterr().out
    with dynamodb_calls() as calls:
        first_after = ask(api, cycles.paths[0])
    assert calls == ["BatchGetItem"] * 2  # the slot it read last is not serving any more: the other slot, once
    assert first_after["model_version"] == cycles.first.model_version
    with dynamodb_calls() as calls:
        ask(api, cycles.paths[0])
    assert calls == ["BatchGetItem"]  # and from then on one again
    now = {path: ask(api, path) for path in cycles.paths}
    for path in cycles.paths:
        assert now[path]["model_version"] == cycles.first.model_version
        assert items_of(now[path]) == items_of(cycles.first_lists[path]), path
    first, second = (
        registry.get(config_table, cycles.first.model_version),
        registry.get(config_table, cycles.second.model_version),
    )
    assert first and first.status == "active" and first.reason == "rolled back by the test"
    assert second and second.status == "rolled_back"
    # a second rollback does not undo the first: the standby slot holds the version just rolled back
    assert cli.main(["rollback"]) == 1
    assert "was rolled back itself" in capsys.readouterr().err

    assert cli.main(["promote", cycles.second.model_version]) == 0
    assert ask(api, cycles.paths[0])["model_version"] == cycles.second.model_version
    assert cli.main(["promote", "no-such-version"]) == 1
    assert "no version 'no-such-version'" in capsys.readouterr().err


def test_a_drift_above_threshold_starts_a_retrain_and_an_old_version_can_be_promoted_again(
    stack: LocalStack, api: Api, cycles: Cycles, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.resources and stack.poller
    config_table = stack.resources.tables["config"]
    # a burst of shoppers on products the model has never seen
    burst: list[dict[str, Any]] = []
    at = datetime.now(UTC).isoformat()
    for n in range(40):
        who = {"anonymous_id": f"newcomer-{n}", "occurred_at": at}
        burst.append({"event_id": f"c-{n}", "event_type": "consent", "granted": ["personalisation"], **who})
        burst += [
            {"event_id": f"v-{n}-{k}", "event_type": "product_view", "item_id": f"fresh-{n}-{k}", **who}
            for k in range(4)
        ]
    for start in range(0, len(burst), 100):
        status, body = api.post("/v1/events", {"events": burst[start : start + 100]})
        assert status == 200 and body["rejected"] == 0, body
    assert stack.poller.wait_idle(60)

    assert cli.main(["drift", "--hours", "0.5", "--retrain", "--hp", "budget=quick"]) == 0
    out = capsys.readouterr().out
    assert "new items" in out and "retraining" in out
    third = registry.active(config_table)
    assert third and third.version not in (cycles.first.model_version, cycles.second.model_version)
    assert third.trigger.startswith("drift: ") and "new items" in third.trigger
    pointer = get_pointer(config_table)
    # the third load took the slot the first version was in: the second stays for a rollback
    assert {pointer.slots[s]["version"] for s in ("a", "b")} == {cycles.second.model_version, third.version}

    # the first version is in no slot now: promoting it loads its output again (no training, no transform)
    assert cli.main(["promote", cycles.first.model_version]) == 0
    assert "loading" in capsys.readouterr().out
    for path in cycles.paths[:5]:
        body = ask(api, path)
        assert body["model_version"] == cycles.first.model_version
        assert items_of(body) == items_of(cycles.first_lists[path])
    assert cli.main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"serving: {cycles.first.model_version}; a rollback restores {third.version}" in listing
    assert registry.get(config_table, third.version).status == "retired"  # type: ignore[union-attr]


def test_a_load_whose_lists_are_empty_is_never_made_ready_nor_promotable(stack: LocalStack, cycles: Cycles) -> None:
    assert stack.resources
    tables = stack.resources.tables
    rows = [RecommendationRow(POPULAR_KEY, [StoredPick("p1", 1.0)], "hollow")]
    rows += [
        RecommendationRow(user_key(f"c:u{n}"), [] if n % 2 else [StoredPick("p1", 1.0)], "hollow") for n in range(40)
    ]
    before = get_pointer(tables["config"])
    with pytest.raises(Unservable, match="20 of 40 shoppers' lists are empty"):
        load_rows(rows, "hollow", tables["recommendations"], tables["config"], 7)
    after = get_pointer(tables["config"])
    assert after.version == before.version and after.slots[after.standby]["state"] == "loading"
    with pytest.raises(LookupError, match="not loaded in either slot"):
        activate(tables["config"], "hollow")
    no_bestsellers = [r for r in rows if r.key != POPULAR_KEY and r.items]
    with pytest.raises(Unservable, match="no global bestseller list"):
        load_rows(no_bestsellers, "hollow", tables["recommendations"], tables["config"], 7)
