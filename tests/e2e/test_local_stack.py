"""End to end on the local stack: HTTP -> collect -> Kinesis -> update_features -> DynamoDB and the archive;
MovieLens history -> training -> batch transform -> load -> the serving API, all through the real handlers."""

from __future__ import annotations

import gzip
import json
import re
import socket
import tarfile
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pytest
from botocore.exceptions import ClientError

from shopwise import config
from shopwise.dal import objects
from shopwise.dal.aws import client, dynamodb, dynamodb_clients
from shopwise.dal.capacity import ReadMeter
from shopwise.dal.feature_store import FeatureStore
from shopwise.dal.objects import list_keys, parse_s3_uri, read_json_lines
from shopwise.dal.stream import shard_ids
from shopwise.dal.wire import _Connection
from shopwise.features.definitions import Context, ItemFeatures, ProfileFeatures
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise_jobs.feature_snapshot import FeatureSnapshot
from shopwise_local import cli
from shopwise_local.importer import import_events, import_items
from shopwise_local.movielens import convert
from shopwise_local.paths import SHARED_DATA
from shopwise_local.pipeline import PipelineResult, run_pipeline
from shopwise_local.replay import replay
from shopwise_local.sigv4 import signed_headers
from shopwise_local.stack import LocalStack
from tests.compare import normalised

from .conftest import Api, drain

pytestmark = pytest.mark.e2e


CORRUPT_PROFILE = "a:corrupt"


def now_iso(minutes_ago: int = 1) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def view(event_id: str, who: str, item: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "product_view",
        "occurred_at": now_iso(),
        "anonymous_id": who,
        "item_id": item,
    }


def consent(event_id: str, who: str, minutes_ago: int = 2, **ids: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "consent",
        "occurred_at": now_iso(minutes_ago),
        **(ids or {"anonymous_id": who}),
        "granted": ["personalisation"],
    }


def feature_doc(stack: LocalStack, key: str) -> dict[str, Any] | None:
    assert stack.resources
    row = (
        client("dynamodb")
        .get_item(TableName=stack.resources.tables["features"], Key={"pk": {"S": key}}, ConsistentRead=True)
        .get("Item")
    )
    return json.loads(row["doc"]["S"]) if row else None


def item_features(stack: LocalStack, item_id: str) -> ItemFeatures | None:
    """An item's features as the feature store holds them: its parts (one per stream shard) merged."""
    assert stack.resources
    store = FeatureStore(stack.resources.tables["features"])
    return store.item_features([item_id], shard_ids(stack.resources.stream)).get(item_id)


def profile(stack: LocalStack, profile_id: str) -> dict[str, Any] | None:
    doc = feature_doc(stack, f"profile#{profile_id}")
    return doc["features"] if doc and "features" in doc else None


def test_events_flow_from_the_api_to_the_feature_store_and_the_archive(stack: LocalStack, api: Api) -> None:
    # Given a batch with two good events and one bad one
    batch = [
        consent("flow-0", "visitor-a"),
        view("flow-1", "visitor-a", "sku-1"),
        {**view("flow-bad", "visitor-a", "sku-x"), "item_id": ""},
        {
            "event_id": "flow-2",
            "event_type": "add_to_cart",
            "occurred_at": now_iso(0),
            "anonymous_id": "visitor-a",
            "item_id": "sku-2",
        },
    ]
    # When it is posted
    status, body = api.post("/v1/events", {"events": batch})
    # Then the good ones are accepted, the bad one named, and both good ones reach the profile
    assert status == 200
    assert (body["accepted"], body["rejected"]) == (3, 1)
    assert body["results"][2] == {
        "index": 2,
        "event_id": "flow-bad",
        "status": "rejected",
        "field": "item_id",
        "reason": "String should have at least 1 character",
    }
    assert stack.poller and stack.poller.wait_idle(60)
    features = profile(stack, "a:visitor-a")
    assert features is not None
    assert [pair[0] for pair in features["recent"]["view"]] == ["sku-1"]
    assert [pair[0] for pair in features["recent"]["cart"]] == ["sku-2"]
    # and the archive holds the accepted events, Parquet under events/dt=YYYY-MM-DD/hour=HH/
    assert stack.resources
    s3 = client("s3")
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=stack.resources.archive_bucket, Prefix="events/dt=")["Contents"]
    ]
    assert keys and all(re.search(r"^events/dt=\d{4}-\d\d-\d\d/hour=\d\d/.+\.parquet$", k) for k in keys)
    archived = [r for key in keys for r in objects.read_archive(stack.resources.archive_bucket, key) if r]
    assert {e["event_id"] for e in archived} >= {"flow-1", "flow-2"}
    assert all("received_at" in e for e in archived)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{nope", 400, "JSON"),
        ({"events": [{"event_type": "product_view"}]}, 400, "event_id"),
        ({"something": []}, 400, "body.events: Field required"),
        ({"events": []}, 400, "body.events"),
        ({"events": [{}] * 501}, 400, "at most 500"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        ("café".encode("latin-1"), 400, "not UTF-8"),
        (b"x" * 1_000_001, 413, "limit"),
    ],
)
def test_bad_requests_get_a_json_4xx_saying_what_is_wrong(api: Api, body: Any, status: int, needle: str) -> None:
    got_status, got = api.post("/v1/events", body)
    assert got_status == status
    assert needle in json.dumps(got)


def test_a_poison_record_goes_to_the_failure_queue_with_its_reason_and_the_rest_is_applied(stack: LocalStack) -> None:
    assert stack.resources and stack.poller
    queue = stack.resources.failure_queue_url
    drain(queue)
    kinesis = client("kinesis")
    good = {**view("after-poison", "visitor-p", "sku-9"), "received_at": now_iso(0), "pseudonymised": True}
    raw = {**view("raw-ids", "visitor-p", "sku-9"), "customer_id": "not-hashed"}
    # records that bypassed the collector: never applicable, whatever the retries
    kinesis.put_record(StreamName=stack.resources.stream, PartitionKey="x", Data=b'{"event_type": "garbage"}')
    kinesis.put_record(StreamName=stack.resources.stream, PartitionKey="y", Data=json.dumps(raw).encode())
    kinesis.put_record(StreamName=stack.resources.stream, PartitionKey="visitor-p", Data=json.dumps(good).encode())
    assert stack.poller.wait_idle(60)

    bodies = sorted(drain(queue), key=lambda b: b["sequenceNumber"])
    assert [b["condition"] for b in bodies] == ["PoisonRecord", "PoisonRecord"]
    assert "event_type" in bodies[0]["reason"] and bodies[0]["data"] == '{"event_type": "garbage"}'
    assert "pseudonymised" in bodies[1]["reason"]
    item = item_features(stack, "sku-9")  # the good event still counts (anonymous aggregates need no consent)
    assert item is not None and sum(c[0] for c in item.buckets.values()) == 1


def test_a_profile_that_cannot_be_written_fails_only_its_own_records(stack: LocalStack, api: Api) -> None:
    # Given a corrupt profile row (features stored as a number) that the updater can never read
    assert stack.resources and stack.poller
    client("dynamodb").put_item(
        TableName=stack.resources.tables["features"],
        Item={"pk": {"S": f"profile#{CORRUPT_PROFILE}"}, "doc": {"N": "1"}, "v": {"N": "1"}},
    )
    queue = stack.resources.failure_queue_url
    drain(queue)
    # When events for it and for a healthy profile arrive in one request
    events = [
        consent("h-0", "healthy"),
        consent("c-0", "corrupt"),
        view("c-1", "corrupt", "sku-1"),
        view("h-1", "healthy", "sku-2"),
    ]
    status, _ = api.post("/v1/events", {"events": events})
    assert status == 200
    assert stack.poller.wait_idle(60)
    # Then the healthy profile is updated and the corrupt one's record ends at the failure destination
    assert profile(stack, "a:healthy") is not None
    assert [body["requestContext"]["condition"] for body in drain(queue)] == ["RetryAttemptsExhausted"]


def test_before_any_model_is_loaded_serving_says_what_to_do(api: Api) -> None:
    # runs before the `trained` fixture below is first used: nothing is loaded yet
    for path in ("/v1/users/anyone/recommendations", "/v1/popular"):
        status, body = api.get(path)
        assert status == 404
        assert "run the training pipeline" in body["message"]


def test_catalog_updates_must_be_signed_and_change_items_in_place(stack: LocalStack, api: Api) -> None:
    assert stack.resources
    items = stack.resources.tables["items"]
    client("dynamodb").put_item(
        TableName=items, Item={"item_id": {"S": "sku-cat"}, "title": {"S": "Red shoe"}, "price": {"N": "50"}}
    )
    body = {
        "items": [{"item_id": "sku-cat", "price": 39.5, "in_stock": False}, {"item_id": "sku-new", "category": "Shoes"}]
    }
    status, answer = api.call("PUT", "/v1/items", body)
    assert status == 403 and "not signed" in answer["message"]
    # signed by somebody else's key, or signed for another body: refused alike
    data = json.dumps(body).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-key")
        forged = signed_headers("PUT", f"{api.url}/v1/items", data, {"Content-Type": "application/json"})
    assert api.call("PUT", "/v1/items", data, forged)[0] == 403
    honest = signed_headers("PUT", f"{api.url}/v1/items", data, {"Content-Type": "application/json"})
    status, answer = api.call("PUT", "/v1/items", json.dumps({"items": []}).encode(), honest)
    assert status == 403 and "does not match" in answer["message"]

    bad = {"item_id": "sku-bad", "price": -1}
    status, answer = api.admin("PUT", "/v1/items", {"items": [*body["items"], bad]})
    assert status == 200
    assert (answer["updated"], answer["created"], answer["rejected"]) == (1, 1, 1)
    assert answer["results"][2]["field"] == "price"
    row = client("dynamodb").get_item(TableName=items, Key={"item_id": {"S": "sku-cat"}}, ConsistentRead=True)["Item"]
    assert (row["title"]["S"], float(row["price"]["N"]), row["in_stock"]["BOOL"]) == ("Red shoe", 39.5, False)
    assert "sku-bad" not in json.dumps(client("dynamodb").scan(TableName=items, ProjectionExpression="item_id"))


@pytest.fixture(scope="module")
def trained(stack: LocalStack, api: Api, tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    """MovieLens imported and replayed, then the pipeline run: the `make demo` path without the printing."""
    assert stack.resources and stack.poller
    work = tmp_path_factory.mktemp("movielens")
    data = convert(SHARED_DATA / "ml-latest-small", work, replay_days=30)
    tables = stack.resources.tables
    assert import_items(data.items, tables["items"], tables["features"], False).imported == data.items_count
    pseudonymiser = load_pseudonymiser(stack.resources.pseudonym_key_secret)
    assert import_events(data.history, stack.resources.archive_bucket, pseudonymiser, False).imported == (
        data.history_count
    )
    sent = replay(api.url, data.replay, progress=False, grant_consent=True)
    assert sent.rejected == 0 and sent.accepted > data.replay_count  # the events and a consent per shopper
    assert stack.poller.wait_idle(120)
    return run_pipeline(
        stack.resources.archive_bucket,
        stack.resources.artifacts_bucket,
        work / "jobs",
        # MovieLens has no consent records: its ratings count as consenting (never a store's own data)
        hyperparameters={"consent": "assumed"},
        load_function=stack.functions["load"],
        registry_function=stack.functions["registry"],
    )


def test_pipeline_loads_recommendations_stamped_with_the_model_version(
    stack: LocalStack, trained: PipelineResult
) -> None:
    assert trained.metrics["ndcg@10"] > 0.0
    # a row for the popular list, one per user of the data set and one per item with neighbours
    assert trained.rows_loaded > 610 + 1000
    assert stack.resources
    active = client("dynamodb").get_item(TableName=stack.resources.tables["config"], Key={"pk": {"S": "active_model"}})
    assert active["Item"]["model_version"]["S"] == trained.model_version
    # the transform's plan: request objects spread over the instances (the local stack runs two), at most a line
    # per worker in each (one here), each object's output beside the others', every user shard requested once
    from shopwise.lifecycle.transform import prefix

    bucket = stack.resources.artifacts_bucket
    requests = list_keys(bucket, prefix(trained.model_version))
    outputs = list_keys(bucket, f"{config.RECOMMENDATIONS_PREFIX}{trained.model_version}/")
    instances = config.environment("local").transform_min_instances  # the plan's size for a store this small
    assert len(requests) >= instances == 2
    assert all(sum(1 for _ in read_json_lines(bucket, key)) == 1 for key in requests)
    # every output object was loaded (one load step each): the rows loaded are the output's lines
    assert trained.rows_loaded == sum(1 for key in outputs for _ in read_json_lines(bucket, key))
    assert sorted(k.rsplit("/", 1)[1] for k in outputs) == sorted(k.rsplit("/", 1)[1] + ".out" for k in requests)
    lines = [line for key in requests for line in read_json_lines(bucket, key)]
    users = [line for line in lines if line["kind"] == "users"]
    assert sorted(line["shard"] for line in users) == list(range(users[0]["shards"])) and len(users) >= instances


def present(row: dict[str, Any]) -> dict[str, Any]:
    """A table row with its missing values (None or NaN, by how the table was stored) as None, floats normalised."""
    return normalised({k: None if v is None or (isinstance(v, float) and v != v) else v for k, v in row.items()})


def test_training_folds_the_same_features_the_feature_store_holds(
    stack: LocalStack, trained: PipelineResult, tmp_path: Path
) -> None:
    """The training job folds the archive with the feature store's own code: for every profile and item the
    stream updater also built (and nothing touched since), the two agree feature for feature."""
    assert stack.resources
    bucket, key = parse_s3_uri(trained.model_uri)
    client("s3").download_file(bucket, key, str(tmp_path / "model.tar.gz"))
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        tar.extractall(tmp_path / "model", filter="data")
    as_of = trained.metrics["feature_snapshot"]["as_of"]
    trained_profiles = pd.read_parquet(tmp_path / "model/features/profiles.parquet").set_index("profile_id")
    trained_items = pd.read_parquet(tmp_path / "model/features/items.parquet").set_index("item_id")

    compared = 0
    for profile_id in trained_profiles.index:
        if profile_id == CORRUPT_PROFILE:
            continue  # another test planted an unreadable document there
        doc = feature_doc(stack, f"profile#{profile_id}")
        if not doc or "features" not in doc:
            continue
        state = ProfileFeatures.from_json(doc["features"])
        if state.last_event_at > as_of or doc.get("merged_into") or not state.counts:
            continue  # changed after training read the archive, or stitched: not the same events
        live = FeatureSnapshot(Context(), profiles={profile_id: state}).profile_table(as_of).set_index("profile_id")
        assert present(live.loc[profile_id].to_dict()) == present(trained_profiles.loc[profile_id].to_dict())
        compared += 1
    assert compared >= 10, compared

    compared = 0
    for item_id in trained_items.index[:400]:
        item = item_features(stack, item_id)
        if not item or not item.buckets:
            continue
        if max(item.buckets) > as_of:
            continue
        assert present(item.windows(as_of)) == present(trained_items.loc[item_id].to_dict()), item_id
        compared += 1
    assert compared >= 10, compared


def test_catalog_changes_through_the_api_reach_the_training_snapshot(
    stack: LocalStack, trained: PipelineResult
) -> None:
    # the pipeline exported the items table before training: the items PUT /v1/items changed are in the snapshot
    assert stack.resources
    snapshot = {row["item_id"]: row for row in read_json_lines(stack.resources.artifacts_bucket, config.CATALOG_KEY)}
    assert len(snapshot) >= 9742
    assert (snapshot["sku-cat"]["price"], snapshot["sku-cat"]["in_stock"]) == (39.5, False)
    assert snapshot["sku-new"]["category"] == "Shoes"
    assert snapshot["1"]["attributes"]["genres"][0] == "Adventure"  # imported attributes travel with the item


def test_a_known_shopper_gets_personal_picks_with_reasons(stack: LocalStack, api: Api, trained: PipelineResult) -> None:
    # 414's ratings are all older than the replay: history without a consent is not personalised ...
    assert api.get("/v1/users/414/recommendations?n=7")[1]["source"] == "global"
    # ... until the shopper grants it
    assert api.post("/v1/events", {"events": [consent("c-414", "", customer_id="414")]})[0] == 200
    assert stack.poller and stack.poller.wait_idle(60)
    status, body = api.get("/v1/users/414/recommendations?n=7")
    assert status == 200
    assert body["source"] == "personalised"
    assert body["model_version"] == trained.model_version
    assert len(body["items"]) == 7
    assert body["read_round_trips"] == 1
    assert all(item["reason"]["code"] and item["reason"]["text"] for item in body["items"])
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_what_a_shopper_just_bought_is_not_recommended_again(
    stack: LocalStack, api: Api, trained: PipelineResult
) -> None:
    status, before = api.get("/v1/users/414/recommendations?n=3")
    top = before["items"][0]["item_id"]
    assert api.post("/v1/events", {"events": [consent("c-414", "", customer_id="414")]})[0] == 200  # (again: alone)
    purchase = {
        "event_id": "buy-top",
        "event_type": "purchase",
        "occurred_at": now_iso(0),
        "customer_id": "414",
        "order_id": "o-414",
        "items": [{"item_id": top, "quantity": 1, "unit_price": 9.0}],
    }
    assert api.post("/v1/events", {"events": [purchase]})[0] == 200
    assert stack.poller and stack.poller.wait_idle(60)  # the feature store is updated asynchronously
    status, after = api.get("/v1/users/414/recommendations?n=3")
    assert status == 200
    assert top not in [item["item_id"] for item in after["items"]]


def test_a_shopper_who_revokes_personalisation_is_served_as_a_stranger_from_the_next_request(
    stack: LocalStack, api: Api, trained: PipelineResult
) -> None:
    shopper = next(
        str(u)
        for u in range(1, 611)
        if u != 414 and api.get(f"/v1/users/{u}/recommendations?n=1")[1]["source"] == "personalised"
    )
    revoke = {**consent(f"revoke-{shopper}", "", 0, customer_id=shopper), "granted": [], "revoked": ["personalisation"]}
    assert api.post("/v1/events", {"events": [revoke]})[0] == 200
    assert stack.poller and stack.poller.wait_idle(60)
    status, body = api.get(f"/v1/users/{shopper}/recommendations?n=5")
    assert status == 200
    assert body["sources"] == ["global"]
    assert {item["reason"]["code"] for item in body["items"]} == {"popular"}


def test_an_unknown_shopper_gets_popular_items_and_is_told_so(api: Api, trained: PipelineResult) -> None:
    status, body = api.get("/v1/users/never-seen-anywhere/recommendations")
    assert status == 200
    assert body["sources"] == ["global"]
    assert len(body["items"]) == 10
    assert {item["reason"]["text"] for item in body["items"]} == {"Popular with shoppers right now"}


def test_similar_items_and_a_fallback_for_an_unknown_item(api: Api, trained: PipelineResult) -> None:
    status, body = api.get("/v1/items/1/similar?n=5")
    assert status == 200 and body["source"] == "similar" and len(body["items"]) == 5
    assert "1" not in [item["item_id"] for item in body["items"]]
    assert {item["reason"]["code"] for item in body["items"]} == {"similar_item"}
    status, body = api.get("/v1/items/no-such-item/similar?n=5")
    assert status == 404 and "no-such-item" in body["message"]


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/v1/users/414/recommendations?n=0", 400, "n"),
        ("/v1/users/414/recommendations?n=lots", 400, "integer"),
        ("/v1/nowhere", 404, "Not found"),
    ],
)
def test_serving_errors_are_json_with_a_message(api: Api, path: str, status: int, needle: str) -> None:
    got_status, body = api.get(path)
    assert got_status == status
    assert needle.lower() in json.dumps(body).lower()


def test_health_and_openapi(api: Api) -> None:
    assert api.get("/v1/health") == (200, {"status": "ok"})
    status, spec = api.get("/v1/openapi.json")
    assert status == 200
    assert "/v1/users/{user_id}/recommendations" in spec["paths"]
    assert "/v1/items/{item_id}/similar" in spec["paths"]
    request = urllib.request.Request(f"{api.url}/v1/docs")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert b"swagger" in response.read().lower()


def test_cli_recommend_reads_the_running_stack(
    trained: PipelineResult, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["recommend", "414", "-n", "3", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["model_version"] == trained.model_version
    assert len(body["items"]) == 3


def test_a_stitched_shopper_is_found_under_every_alias(stack: LocalStack, api: Api, trained: PipelineResult) -> None:
    # Given an anonymous visitor who consents, carts the most popular item, then logs in on a phone
    _, popular = api.get("/v1/users/nobody-at-all/recommendations?n=1&id_type=anonymous")
    top = popular["items"][0]["item_id"]
    cart = {**view("st-2", "visitor-st", top), "event_type": "add_to_cart"}
    identify = {
        "event_id": "st-3",
        "event_type": "identify",
        "occurred_at": now_iso(0),
        "anonymous_id": "visitor-st",
        "customer_id": "cust-st",
        "email": "st@example.com",
        "device_id": "phone-st",
    }
    status, _ = api.post("/v1/events", {"events": [consent("st-1", "visitor-st"), cart, identify]})
    assert status == 200 and stack.poller and stack.poller.wait_idle(60)
    # Then by customer id and by the old cookie the same profile answers, and the carted item is left out
    _, by_customer = api.get("/v1/users/cust-st/recommendations?n=5")
    _, by_cookie = api.get("/v1/users/visitor-st/recommendations?n=5&id_type=anonymous")
    ids = lambda body: [item["item_id"] for item in body["items"]]  # noqa: E731
    assert ids(by_customer) == ids(by_cookie) and by_customer["sources"][0] in ("personalised", "realtime")
    assert "profile_id" not in by_customer and "profile_id" not in by_cookie  # no pseudonym leaves the API
    assert by_cookie["read_round_trips"] == 2  # the alias points on to the customer's profile
    for body in (by_customer, by_cookie):
        assert top not in [item["item_id"] for item in body["items"]]
    # and no raw email or customer id is stored anywhere in the feature store
    assert stack.resources
    rows = json.dumps(client("dynamodb").scan(TableName=stack.resources.tables["features"])["Items"])
    assert "st@example.com" not in rows and "cust-st" not in rows and "phone-st" not in rows


def test_cli_features_shows_a_stitched_profile_and_an_items_windows(
    trained: PipelineResult, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # runs after the stitching test above: visitor-st became cust-st, with one item in the cart
    assert cli.main(["features", "profile", "visitor-st", "--anonymous"]) == 0
    by_cookie = json.loads(capsys.readouterr().out)
    assert cli.main(["features", "profile", "cust-st"]) == 0
    by_customer = json.loads(capsys.readouterr().out)
    decayed = "category_affinity"  # decays between the two calls: compare which categories, not the values
    assert by_cookie[decayed].keys() == by_customer[decayed].keys()
    assert {k: v for k, v in by_cookie.items() if k != decayed} == {
        k: v for k, v in by_customer.items() if k != decayed
    }
    assert by_customer["personalisation"] is True and len(by_customer["cart"]) == 1
    item = next(iter(by_customer["cart"]))
    assert cli.main(["features", "item", item]) == 0
    windows = json.loads(capsys.readouterr().out)
    assert windows["carts_1h"] >= 1 and windows["carts_7d"] >= windows["carts_1h"]
    assert cli.main(["features", "profile", "never-seen"]) == 1


def test_read_units_are_counted_on_the_wire_by_dynamodbs_rules(stack: LocalStack) -> None:
    """What the benchmarks' read units per request and per event rest on: each item of a read rounded up to 4 KB,
    half a unit eventually consistent, a whole one strongly consistent, a key that found nothing at the minimum."""
    assert stack.resources
    table = stack.resources.tables["config"]
    ddb = client("dynamodb")
    big, small, missing = ({"pk": {"S": f"meter#{name}"}} for name in ("big", "small", "missing"))
    ddb.put_item(TableName=table, Item={**big, "blob": {"S": "x" * 5000}})  # two started 4 KB blocks
    ddb.put_item(TableName=table, Item={**small, "v": {"S": "y"}})
    meter = ReadMeter().attach(ddb)
    try:
        ddb.batch_get_item(RequestItems={table: {"Keys": [big, small, missing]}})  # 1.0 + 0.5 + 0.5
        ddb.get_item(TableName=table, Key=big, ConsistentRead=True)  # 2.0
        # a projection returns less but is charged for the whole item
        ddb.batch_get_item(RequestItems={table: {"Keys": [big], "ProjectionExpression": "pk"}})  # 1.0
        ddb.put_item(TableName=table, Item={**small, "v": {"S": "z"}})  # a write: not a read
    finally:
        meter.detach(ddb)
    ddb.get_item(TableName=table, Key=big)  # detached: not counted
    assert (meter.units, meter.calls) == (5.0, 3)

    # the same reads through the wire client (shopwise.dal.wire), which the hot paths use: same answers, same events
    wire = dynamodb()
    meter = ReadMeter().attach(*dynamodb_clients())
    try:
        got = wire.batch_get_item(RequestItems={table: {"Keys": [big, small, missing]}})
        assert sorted(i["pk"]["S"] for i in got["Responses"][table]) == ["meter#big", "meter#small"]
        assert wire.get_item(TableName=table, Key=big, ConsistentRead=True)["Item"]["blob"] == {"S": "x" * 5000}
        wire.batch_get_item(RequestItems={table: {"Keys": [big], "ProjectionExpression": "pk"}})
    finally:
        meter.detach(*dynamodb_clients())
    assert (meter.units, meter.calls) == (5.0, 3)


def test_the_wire_client_speaks_dynamodbs_protocol_as_boto3_does(stack: LocalStack) -> None:
    """shopwise.dal.wire against the local endpoint: binary values round-trip as bytes, a failed condition raises
    boto3's modelled exception (what FeatureStore.write catches), a bad request boto3's ClientError with its code,
    and a dropped connection is re-opened."""
    assert stack.resources
    table = stack.resources.tables["config"]
    wire, ddb = dynamodb(), client("dynamodb")
    key = {"pk": {"S": "wire#1"}}
    blob = bytes(range(256))
    wire.put_item(
        TableName=table, Item={**key, "z": {"B": blob}, "n": {"N": "1"}}, ConditionExpression="attribute_not_exists(pk)"
    )
    assert ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["z"]["B"] == blob  # boto3 reads it
    rows = wire.batch_get_item(RequestItems={table: {"Keys": [key], "ConsistentRead": True}})["Responses"][table]
    assert rows[0]["z"]["B"] == blob and rows[0]["n"] == {"N": "1"}
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException) as failed:
        wire.put_item(TableName=table, Item=key, ConditionExpression="attribute_not_exists(pk)")
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as invalid:
        wire.put_item(TableName=table, Item={"not_the_key": {"S": "x"}})
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    # the endpoint keeps connections open between calls, as AWS does: calls one after another open none
    wire.batch_get_item(RequestItems={table: {"Keys": [key]}})
    opened = wire.opened
    for _ in range(5):
        wire.batch_get_item(RequestItems={table: {"Keys": [key]}})
    assert wire.opened == opened
    # a kept-alive connection the endpoint dropped (an idle one it closed): the call is sent again on a new one
    url = urlsplit(wire.meta.endpoint_url)
    stale = _Connection(url.hostname or "", url.port or 80, None)
    stale._sock.shutdown(socket.SHUT_RDWR)
    wire.close()
    wire._idle.append(stale)  # the pool's only idle connection
    opened = wire.opened
    written = wire.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": key}}]})
    assert written.get("UnprocessedItems") == {} and wire.opened == opened + 1
    assert "Item" not in ddb.get_item(TableName=table, Key=key, ConsistentRead=True)

    # a Query's pages are followed to the end (Limit 2: three pages for five rows)
    ledger = stack.resources.tables["ledger"]
    rows = [{"pk": {"S": "wire-source"}, "sk": {"S": f"e{n}"}} for n in range(5)]
    wire.batch_write_item(RequestItems={ledger: [{"PutRequest": {"Item": row}} for row in rows]})
    pages = wire.query_items(
        TableName=ledger,
        KeyConditionExpression="pk = :s",
        ExpressionAttributeValues={":s": {"S": "wire-source"}},
        ConsistentRead=True,
        Limit=2,
    )
    assert [row["sk"]["S"] for row in pages] == ["e0", "e1", "e2", "e3", "e4"]


def test_objects_are_read_line_by_line_across_chunk_boundaries(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load, the importer and the jobs read S3 objects a chunk at a time: a line cut by a chunk boundary, blank
    lines, CRLF endings and a gzip object of two members all come back as the lines written."""
    from shopwise.dal import objects

    assert stack.resources
    bucket = stack.resources.artifacts_bucket
    lines = [json.dumps({"n": n, "pad": "x" * (n % 97)}).encode() for n in range(3000)]
    monkeypatch.setattr(objects, "READ_CHUNK", 1000)  # lines of up to 120 bytes: many cut by a boundary
    body = b"\n".join(lines[:1500]) + b"\n\n" + b"\r\n".join(lines[1500:]) + b"\r\n"
    client("s3").put_object(Bucket=bucket, Key="test/lines.jsonl", Body=body)
    assert list(objects.read_lines(bucket, "test/lines.jsonl")) == lines
    two_members = gzip.compress(b"\n".join(lines[:10]) + b"\n") + gzip.compress(b"\n".join(lines[10:]))
    client("s3").put_object(Bucket=bucket, Key="test/lines.jsonl.gz", Body=two_members)
    assert list(objects.read_lines(bucket, "test/lines.jsonl.gz")) == lines
    assert [r["n"] for r in objects.read_json_lines(bucket, "test/lines.jsonl.gz")] == list(range(3000))
    # an empty object (a campaign run with no holdout): boto3 sends Expect: 100-continue with no body, which the
    # local endpoint's server must answer, not wait on
    client("s3").put_object(Bucket=bucket, Key="test/empty.jsonl", Body=b"")
    assert list(objects.read_lines(bucket, "test/empty.jsonl")) == []
