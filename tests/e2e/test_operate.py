"""Operating the model loop on the local stack: two full retrain cycles on a simulated store with a taste drift
between them (the second model promoted), an instant rollback to the first model's recommendations on the very next
request, a promotion back, a drift above threshold that starts a retrain, and a promotion of a version no slot
holds any more (loaded again from its output, not recomputed); then the same story in the operator's console, in a
real browser. The gate's rejection of a worse model is tested in test_serving.py."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shopwise.dal.model_packages import describe_package, list_packages
from shopwise.dal.recommendations import (
    ImportFailed,
    PointerMoved,
    RecommendationRow,
    activate,
    get_pointer,
    read_rows,
    slot_table,
    table_status,
)
from shopwise.keys import POPULAR_KEY, user_key
from shopwise.lifecycle import registry
from shopwise.lifecycle.loading import Unservable, load_rows
from shopwise.picks import StoredPick
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise.settings import model_package_group
from shopwise_local import cli
from shopwise_local.console import examples_from
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
    customers: list[str]  # the replay's customers (each granted consent): what the console's picker offers


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
    return Cycles(first, second, first_lists, paths, examples_from(data.replay))


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


def approval(arn: str) -> tuple[str, str, str]:
    """A version's model package as SageMaker describes it: approval status, shopwise status, description."""
    assert arn, "the version has no model package"
    package = describe_package(arn)
    return (
        package["ModelApprovalStatus"],
        package.get("CustomerMetadataProperties", {}).get("shopwise_status", ""),
        package.get("ApprovalDescription", ""),
    )


def test_each_version_is_mirrored_as_a_model_package_in_the_environments_group(
    stack: LocalStack, cycles: Cycles, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.resources
    records = registry.records(stack.resources.tables["config"])
    packages = list_packages(model_package_group(stack.resources.env))
    assert {p["ModelPackageArn"] for p in packages} == {r.package_arn for r in records} and len(packages) == 2
    second = next(r for r in records if r.version == cycles.second.model_version)
    package = describe_package(second.package_arn)
    assert package["ModelApprovalStatus"] == "Approved"
    properties = package["CustomerMetadataProperties"]
    assert properties["shopwise_version"] == second.version and properties["shopwise_status"] == "active"
    assert float(properties["test_ndcg@10"]) == pytest.approx(second.test["ndcg@10"], abs=1e-6)
    assert properties["gate"] == second.gate and second.gate.startswith("passed against")
    # a sync brings every package up to date and makes none twice
    assert cli.main(["models", "sync"]) == 0
    assert "2 of 2 versions mirrored in shopwise-local-models" in capsys.readouterr().out
    assert len(list_packages(model_package_group(stack.resources.env))) == 2


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
    # mirrored in SageMaker Model Registry: the approval status follows the rollback
    assert approval(first.package_arn) == ("Approved", "active", "rolled back by the test")
    assert approval(second.package_arn)[:2] == ("Rejected", "rolled_back")
    # a second rollback does not undo the first: the standby slot holds the version just rolled back
    assert cli.main(["rollback"]) == 1
    assert "was rolled back itself" in capsys.readouterr().err

    assert cli.main(["promote", cycles.second.model_version]) == 0
    assert ask(api, cycles.paths[0])["model_version"] == cycles.second.model_version
    assert approval(second.package_arn)[:2] == ("Approved", "active")
    assert approval(first.package_arn)[:2] == ("Approved", "retired")
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
    tables, stem = stack.resources.tables, stack.resources.lists_stem
    rows = [RecommendationRow(POPULAR_KEY, [StoredPick("p1", 1.0)], "hollow")]
    rows += [
        RecommendationRow(user_key(f"c:u{n}"), [] if n % 2 else [StoredPick("p1", 1.0)], "hollow") for n in range(40)
    ]
    before = get_pointer(tables["config"])
    with pytest.raises(Unservable, match="20 of 40 shoppers' lists are empty"):
        load_rows(rows, "hollow", stem, tables["config"], 7, stack.resources.artifacts_bucket)
    after = get_pointer(tables["config"])
    assert after.version == before.version and after.slots[after.standby]["state"] == "loading"
    with pytest.raises(LookupError, match="not loaded in either slot"):
        activate(tables["config"], "hollow")
    no_bestsellers = [r for r in rows if r.key != POPULAR_KEY and r.items]
    with pytest.raises(Unservable, match="no global bestseller list"):
        load_rows(no_bestsellers, "hollow", stem, tables["config"], 7, stack.resources.artifacts_bucket)
    assert not table_status(slot_table(stem, after.standby))  # nothing was imported: the slot has no table


def test_the_drift_job_reads_a_fixed_sample_of_the_active_documents(stack: LocalStack, cycles: Cycles) -> None:
    """``active_docs(..., sample=N)``: N documents of the active ones, the same N on every read (a panel, not a new
    draw each run), what the drift job's live side reads so its cost stops growing with the store."""
    import time

    from shopwise.dal.feature_store import active_docs
    from shopwise_jobs.drift import live_tables

    assert stack.resources
    table, now = stack.resources.tables["features"], time.time()
    every = [d.key for d in active_docs(table, "profile", now - 40 * 86400, now)]
    assert len(every) > 20
    sampled = [d.key for d in active_docs(table, "profile", now - 40 * 86400, now, sample=12)]
    assert len(sampled) == 12 and set(sampled) < set(every)
    assert sampled == [d.key for d in active_docs(table, "profile", now - 40 * 86400, now, sample=12)]
    assert len([d for d in active_docs(table, "profile", now - 40 * 86400, now, sample=10**6)]) == len(every)
    profiles, items = live_tables(table, now, sample=7)
    assert len(items) == 7 and len(profiles) <= 7  # profiles: the consenting ones of the sample


def test_the_load_stages_each_output_object_in_its_own_step_imports_them_and_readies_the_slot_only_at_the_end(
    stack: LocalStack, cycles: Cycles
) -> None:
    """The retrain's load states, through the load function as the state machine calls it: begin finds the output
    objects (nothing else under the prefix) and drops the standby slot's table, each object is one Distributed Map
    item staged as DynamoDB JSON, start imports them into a new table, and the slot stays ``loading`` — not
    promotable — until finish has checked the import against every object's tally. A shopper erased while the import
    runs (the table does not exist yet) has their list deleted from it by finish, and the staged objects, which
    still hold it, go too."""
    import time

    from shopwise.dal.objects import list_keys, write_json_lines
    from shopwise.dal.recommendations import erase_lists, forget_held, held_entries, hold_erasure

    assert stack.resources
    tables, bucket, load = stack.resources.tables, stack.resources.artifacts_bucket, stack.functions["load"]
    stem = stack.resources.lists_stem
    prefix = "recommendations/split-load/"

    def row(key: str, items: list[str]) -> dict[str, Any]:
        return {"key": key, "items": [StoredPick(i, 1.0).encode() for i in items]}

    write_json_lines(bucket, f"{prefix}part-0000.jsonl.out", [row(POPULAR_KEY, ["p1"]), row(user_key("c:s1"), ["p2"])])
    write_json_lines(bucket, f"{prefix}part-0001.jsonl.out", [row(user_key(f"c:s{n}"), ["p1"]) for n in range(2, 5)])
    write_json_lines(bucket, f"{prefix}part-0000.jsonl", [{"kind": "popular"}])  # a request object, not output
    with pytest.raises(ValueError, match="'key'"):
        load.invoke({"action": "object", "bucket": bucket, "model_version": "split", "slot": "a", "staging": "x/"})

    serving = get_pointer(tables["config"]).slot
    standby = "b" if serving == "a" else "a"
    begun = load.invoke({"action": "begin", "output_uri": f"s3://{bucket}/{prefix}", "model_version": "split"})
    assert begun["slot"] == standby and not table_status(slot_table(stem, standby))  # dropped: an import makes it
    common = {"bucket": bucket, "staging": begun["staging"], "model_version": "split", "slot": begun["slot"]}
    for slot, version in ((serving, "split"), (begun["slot"], "another")):  # never the served slot, nor a stale run
        with pytest.raises(PointerMoved, match="no longer awaits"):
            load.invoke({"action": "object", **common, "key": begun["keys"][0], "model_version": version, "slot": slot})
    assert [k.rsplit("/", 1)[1] for k in begun["keys"]] == ["part-0000.jsonl.out", "part-0001.jsonl.out"]
    tallies = [load.invoke({"action": "object", "key": k, **common}) for k in begun["keys"]]
    assert [(t["rows"], t["users"], t["popular"]) for t in tallies] == [(2, 1, True), (3, 3, False)]
    assert len(list_keys(bucket, begun["staging"])) == 2
    held = get_pointer(tables["config"]).slots[begun["slot"]]
    assert (held["version"], held["state"]) == ("split", "loading")
    with pytest.raises(LookupError, match="not loaded in either slot"):
        activate(tables["config"], "split")
    # shopper s3 is erased now: the staged objects hold their list, and the slot's table does not exist yet
    assert erase_lists(stem, tables["config"], [user_key("c:s3")], time.time()) == 0
    # a key held by an erasure two hours before this load began: its staging left it out, no load needs it any more
    hold_erasure(tables["config"], [user_key("c:long-ago")], begun["began_at"] - 7200)
    started = load.invoke({"action": "start", "tallies": tallies, **common})
    while (state := load.invoke({"action": "check", **started}))["status"] == "IN_PROGRESS":
        time.sleep(0.2)
    assert state["status"] == "COMPLETED" and state["imported"] == 5 and state["errors"] == 0
    with pytest.raises(ImportFailed, match="5 of 3 rows imported"):  # a tally the import does not match
        load.invoke({"action": "finish", "tallies": tallies[1:], "began_at": begun["began_at"], **started, **common})
    done = load.invoke({"action": "finish", "tallies": tallies, "began_at": begun["began_at"], **started, **common})
    assert {k: done[k] for k in ("rows", "objects", "slot", "erased", "erased_late")} == {
        "rows": 5,
        "objects": 2,
        "slot": begun["slot"],
        "erased": 0,
        "erased_late": 1,
    }
    assert done["imported_bytes"] > 0 and not list_keys(bucket, begun["staging"])
    still_held = {e.partition("|")[2] for e in held_entries(tables["config"])}
    assert user_key("c:s3") in still_held and user_key("c:long-ago") not in still_held  # the purge drops the rest
    # the purge drops what it completes, by the erasure's own time to the last digit (1,234.5678 held and purged)
    hold_erasure(tables["config"], [user_key("c:purged")], 1_234.5678)
    forget_held(tables["config"], 1_234.5678)
    assert user_key("c:purged") not in {e.partition("|")[2] for e in held_entries(tables["config"])}
    assert get_pointer(tables["config"]).slot_of("split") == begun["slot"]
    stored = read_rows(
        stem,
        [user_key(f"c:s{n}") for n in range(1, 5)],
        replace(get_pointer(tables["config"]), slot=begun["slot"], version="split"),
    )
    assert sorted(stored) == [user_key("c:s1"), user_key("c:s2"), user_key("c:s4")]  # s3's list: erased
    # a start whose objects brought no bestseller list imports nothing: the slot stays loading (and the run failed)
    again = load.invoke({"action": "begin", "output_uri": f"s3://{bucket}/{prefix}", "model_version": "split2"})
    assert again["slot"] == begun["slot"] and not table_status(slot_table(stem, again["slot"]))
    with pytest.raises(Unservable, match="no global bestseller list"):
        load.invoke(
            {
                "action": "start",
                **common,
                "staging": again["staging"],
                "model_version": "split2",
                "tallies": tallies[1:],
            }
        )
    assert get_pointer(tables["config"]).slot_of("split2") == ""


CHROMIUM = "/usr/bin/chromium"  # the OS's browser (make test installs it): `playwright install` downloads, never


def test_the_console_shows_lists_models_drift_and_experiments_in_a_real_browser(
    stack: LocalStack, api: Api, cycles: Cycles, tmp_path: Path
) -> None:
    """Click through the console as an operator: pick a shopper, see the list the API serves with titles and
    reasons, send a view from the page and watch the list change, similar items, the registry with the gate's
    verdicts and a version's evaluation.png, the newest drift report, an experiment's readout. Screenshots go to
    $SHOPWISE_SCREENSHOTS (docs/console for the README) or the test's folder."""
    from playwright.sync_api import expect, sync_playwright

    from shopwise import config
    from shopwise.dal.catalog import item_facts
    from shopwise.dal.experiments import clear_experiments, put_experiments
    from shopwise.dal.objects import newest_key

    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs it (apt-get install chromium)"
    assert stack.api and stack.api.console and stack.resources
    tables = stack.resources.tables
    stack.api.console.target.examples = cycles.customers
    if newest_key(stack.resources.artifacts_bucket, config.MONITORING_PREFIX, "/output.tar.gz") is None:
        assert cli.main(["drift", "--hours", "1"]) == 0  # this test alone: the drift test made one already
    experiment = {
        "name": "console-check",
        "salt": "t",
        "holdout": 0.1,
        "placements": ["home"],
        "variants": [{"name": "a", "weight": 1, "params": {}}, {"name": "b", "weight": 1, "params": {}}],
    }
    put_experiments(tables["config"], json.dumps([experiment]))
    exposed = cycles.customers[:30]  # home lists served under the experiment: impressions for its readout
    for shopper in exposed:
        assert ask(api, f"/v1/users/{shopper}/recommendations?placement=home&n=5")["experiment"] == "console-check"
    assert stack.impressions
    stack.impressions.flush()  # what Firehose's buffer interval does: the impressions reach the archive
    shots = Path(os.environ.get("SHOPWISE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    serving = get_pointer(tables["config"]).version
    customer = cycles.customers[0]
    errors: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(f"{stack.api.url}/")
            expect(page.locator("#serving")).to_have_text(f"serving {serving}")
            expect(page.locator("#shopper-examples option")).to_have_count(min(20, len(cycles.customers)))

            # a shopper's product-page list: what the API serves that shopper, with the catalog's titles
            page.fill("#shopper-id", customer)
            page.select_option("#shopper-placement", "product")
            page.click("#shopper-form button[type=submit]")
            rows = page.locator("#list tbody tr")
            expect(rows).to_have_count(10)
            expect(page.locator("#list-meta")).to_contain_text(f"model {serving}")
            served = ask(api, f"/v1/users/{customer}/recommendations?placement=product&n=10")
            shown = [str(rows.nth(i).get_attribute("data-item")) for i in range(10)]
            assert shown == [i["item_id"] for i in served["items"]]
            titles = item_facts(tables["items"], [shown[0]])
            expect(rows.first.locator(".title")).to_have_text(titles[shown[0]]["title"])
            expect(page.locator("#profile-body")).to_contain_text("granted")
            page.screenshot(path=str(shots / "shopper.png"), full_page=True)

            # a product view sent from the page goes collect -> stream -> updater; the page watches the list change
            viewed = shown[-1]
            rows.last.locator("button[data-action=view]").click()
            expect(page.locator("#shopper-status")).to_contain_text("the list changed after", timeout=30_000)
            expect(page.locator("#profile-body")).to_contain_text(str(viewed))
            after = ask(api, f"/v1/users/{customer}/recommendations?placement=product&n=10")
            assert [i["item_id"] for i in after["items"]] != shown or [i["reason"] for i in after["items"]] != [
                i["reason"] for i in served["items"]
            ]
            page.screenshot(path=str(shots / "shopper-after-view.png"), full_page=True)

            # similar items of the (new) first product, from its row
            product = str(rows.first.get_attribute("data-item"))
            rows.first.locator("button[data-action=similar]").click()
            expect(page.locator("#tab-similar")).to_be_visible()
            similar = ask(api, f"/v1/items/{product}/similar?n=10")
            expect(page.locator("#similar tbody tr")).to_have_count(len(similar["items"]))
            title = item_facts(tables["items"], [product])[product]["title"]
            expect(page.locator("#similar-meta")).to_contain_text(f"like {title}")
            shown_similar = page.locator("#similar tbody tr")
            assert [shown_similar.nth(i).get_attribute("data-item") for i in range(len(similar["items"]))] == [
                i["item_id"] for i in similar["items"]
            ]
            page.screenshot(path=str(shots / "similar.png"), full_page=True)

            # the registry, every version with its status and the gate's verdict; one version's figures
            page.click("nav button[data-tab=models]")
            records = registry.records(tables["config"])
            versions = page.locator("#models tbody tr")
            expect(versions).to_have_count(len(records))
            active = page.locator(f"#models tbody tr[data-version='{serving}']")
            expect(active).to_contain_text("active")
            gated = next(r for r in records if r.gate)
            expect(page.locator(f"#models tbody tr[data-version='{gated.version}']")).to_contain_text(gated.gate)
            active.locator("button.link").click()
            families = page.locator("#model-families tbody tr")
            expect(families.first).to_be_visible()
            assert families.count() >= 2
            expect(page.locator("#model-plot")).to_be_visible()
            width = 0
            for _ in range(50):
                width = page.locator("#model-plot").evaluate("img => img.complete ? img.naturalWidth : 0")
                if width:
                    break
                page.wait_for_timeout(100)
            assert width > 600, "evaluation.png did not load"
            page.screenshot(path=str(shots / "models.png"), full_page=True)

            # the newest drift report: a bar per feature, and what it was measured against
            page.click("nav button[data-tab=drift]")
            expect(page.locator("#drift-meta")).to_contain_text("against model")
            expect(page.locator("#drift-body .bar-row[data-name='event mix']")).to_have_count(1)
            assert page.locator("#drift-body .bar-row").count() >= 5
            page.screenshot(path=str(shots / "drift.png"), full_page=True)

            # the experiment, read out from the event archive
            page.click("nav button[data-tab=experiments]")
            card = page.locator(".card[data-experiment='console-check']")
            expect(card).to_contain_text("holdout 10.0%")
            card.locator("button").click()
            arms = card.locator("table.readout tr")
            expect(arms).to_have_count(4, timeout=30_000)  # header, a, b, holdout
            shoppers = [int(arms.nth(i).locator("td").nth(1).inner_text()) for i in (1, 2, 3)]
            assert sum(shoppers) == len(exposed) and min(shoppers[:2]) > 0, shoppers
            expect(card.locator("img")).to_be_visible()
            page.screenshot(path=str(shots / "experiments.png"), full_page=True)
            browser.close()
    finally:
        clear_experiments(tables["config"])
    assert not errors, errors


def test_train_remote_sends_the_pipelines_job_through_the_sagemaker_sdk_with_the_direct_runs_result(
    stack: LocalStack, cycles: Cycles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`shopwise train --remote`: the SDK's CreateTrainingJob, recorded by the local endpoint and executed by the
    local SageMaker runner as recorded; the same job run directly gives the same models."""
    from shopwise.dal.aws import client
    from shopwise_local.sagemaker import run_training_job
    from shopwise_local.target import LOCAL_SAGEMAKER

    assert stack.resources
    assert cli.main(["train", "--remote", "--hp", "budget=quick", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "with the SageMaker SDK" in captured.err
    job = client("sagemaker").describe_training_job(TrainingJobName=result["job_name"])
    assert job["AlgorithmSpecification"]["TrainingImage"] == LOCAL_SAGEMAKER["image"]
    assert job["RoleArn"] == LOCAL_SAGEMAKER["role"]
    assert job["ResourceConfig"]["InstanceType"] == stack.resources.env.training_instance_type
    assert job["HyperParameters"]["sagemaker_program"] == "train.py" and job["HyperParameters"]["budget"] == "quick"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels["events"] == f"s3://{stack.resources.archive_bucket}/events/" and "catalog" in channels
    assert result["status"] == "Completed" and result["model_uri"] == job["ModelArtifacts"]["S3ModelArtifacts"]

    direct = run_training_job(
        "shopwise-direct-check",
        channels=channels,
        hyperparameters={k: v for k, v in job["HyperParameters"].items() if not k.startswith("sagemaker_")},
        output_uri=job["OutputDataConfig"]["S3OutputPath"],
        work_dir=tmp_path,
    )
    remote = result["metrics"]
    assert remote["selected"] == direct.metrics["selected"] and remote["params"] == direct.metrics["params"]
    for name, doc in direct.metrics["models"].items():
        assert remote["models"][name]["validation"] == pytest.approx(doc["validation"], rel=1e-9), name


def test_batch_recommend_remote_transforms_a_version_through_the_sdk_as_the_pipeline_did(
    stack: LocalStack, cycles: Cycles, capsys: pytest.CaptureFixture[str]
) -> None:
    """`shopwise batch-recommend --remote --version V`: CreateModel and CreateTransformJob from the SDK, recorded and
    executed as recorded (two instances, a worker per vCPU); the rows are the pipeline's own transform's rows."""
    from shopwise.dal.aws import client
    from shopwise.dal.objects import list_keys, read_json_lines

    assert stack.resources
    version = cycles.second.model_version
    assert cli.main(["batch-recommend", "--remote", "--version", version, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    sagemaker = client("sagemaker")
    job = sagemaker.describe_transform_job(TransformJobName=result["job_name"])
    # sized from the version's users like the retrain's: a small store's get the environment's fewest
    assert job["TransformResources"]["InstanceCount"] == stack.resources.env.transform_min_instances
    assert job["MaxConcurrentTransforms"] == 4  # ml.m5.xlarge: a worker per vCPU
    model = sagemaker.describe_model(ModelName=job["ModelName"])["PrimaryContainer"]
    assert model["ModelDataUrl"] == cycles.second.model_uri
    assert model["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    # the plan's objects (at most a line per worker each, at least one per instance), an output object for each
    assert result["status"] == "Completed" and len(result["objects"]) >= 2

    def rows(prefix: str) -> dict[str, list[object]]:
        bucket = stack.resources.artifacts_bucket  # type: ignore[union-attr]
        found: dict[str, list[object]] = {}
        for key in list_keys(bucket, prefix):
            if key.endswith(".out"):
                for row in read_json_lines(bucket, key):
                    found[str(row["key"])] = row["items"]  # user#, item#, next#, popular# rows
        return found

    remote = rows(f"recommendations/{result['job_name']}/")
    pipeline = rows(f"recommendations/{version}/")
    assert len(remote) == result["rows"] > 100 and remote == pipeline
