"""The serving API end to end on a simulated store: the blend with real-time signals, exclusions, the diversity rule,
the cold-start chain, A/B assignment with a holdout and impressions in the archive, re-ranking, bestsellers, and
the read path's round trips counted on the wire (botocore's own event hooks on the client the handlers use)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from shopwise import config
from shopwise.access.routes import SHOPPER_TOKEN, SIGV4, credential
from shopwise.dal.aws import client
from shopwise.dal.objects import read_archive
from shopwise.dal.recommendations import serving_rows
from shopwise.events import Impression, parse_event
from shopwise.keys import POPULAR_KEY, item_key, user_key
from shopwise.lifecycle import registry
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise_local import cli
from shopwise_local.paths import LAMBDAS_DIR
from shopwise_local.pipeline import Rejected, run_pipeline
from shopwise_local.sigv4 import signed_headers
from shopwise_local.stack import LocalStack
from shopwise_local.store import StockedStore, stock
from shopwise_local.store_backend import shopper_token

from .conftest import Api, dynamodb_calls, server_path

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def store(stack: LocalStack, api: Api, tmp_path_factory: pytest.TempPathFactory) -> StockedStore:
    """A small simulated store imported, replayed with consent, trained, transformed and loaded."""
    return stock(stack, tmp_path_factory.mktemp("store"))


def ask(api: Api, path: str) -> dict[str, Any]:
    status, body = api.get(path)
    assert status == 200, body
    return dict(body)


def settle(stack: LocalStack) -> None:
    assert stack.poller and stack.poller.wait_idle(60)


def send(stack: LocalStack, api: Api, *events: dict[str, Any]) -> None:
    status, body = api.post("/v1/events", {"events": list(events)})
    assert status == 200 and body["rejected"] == 0, body
    settle(stack)


def event(kind: str, customer: str, item: str = "", **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"{kind}-{customer}-{item}-{time.time_ns()}",
        "event_type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        "customer_id": customer,
        **more,
    }
    if item:
        body["item_id"] = item
    return body


def personal_shopper(api: Api, store: StockedStore, skip: set[str] | None = None) -> tuple[str, dict[str, Any]]:
    """A consenting customer with a precomputed list (and the list)."""
    for customer in store.customers:
        if customer in (skip or set()):
            continue
        body = ask(api, f"/v1/users/{customer}/recommendations?n=10")
        if "personalised" in body["sources"]:
            return customer, body
    raise AssertionError("no customer of the replay has a personal list")


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_each_request_costs_one_read_and_a_stitched_shopper_two(
    stack: LocalStack, api: Api, store: StockedStore
) -> None:
    customer, _ = personal_shopper(api, store)
    settle(stack)
    for path in (
        f"/v1/users/{customer}/recommendations?n=10",
        f"/v1/users/{customer}/recommendations?n=10&placement=product&market=NZ&category=Shoes",
        "/v1/users/never-seen/recommendations?n=10&id_type=anonymous&market=NZ",
        "/v1/popular?n=5&market=NZ&category=Home",
        f"/v1/items/{next(iter(store.catalog))}/similar?n=5",
    ):
        with dynamodb_calls() as calls:
            body = ask(api, path)
        assert calls == ["BatchGetItem"], path
        assert body["read_round_trips"] == 1
    with dynamodb_calls() as calls:
        status, body = api.post("/v1/rank", {"user_id": customer, "item_ids": list(store.catalog)[:50]})
    assert status == 200 and calls == ["BatchGetItem"]

    # a visitor who logs in: asked by the old cookie, the alias points on to the customer's profile
    send(stack, api, event("identify", customer, anonymous_id=f"cookie-{customer}"))
    with dynamodb_calls() as calls:
        body = ask(api, f"/v1/users/cookie-{customer}/recommendations?n=10&id_type=anonymous")
    assert calls == ["BatchGetItem", "BatchGetItem"]
    assert body["read_round_trips"] == 2 and "personalised" in body["sources"]


def test_what_a_shopper_just_viewed_brings_similar_items_in_real_time(
    stack: LocalStack, api: Api, store: StockedStore
) -> None:
    customer, before = personal_shopper(api, store)
    assert stack.resources
    # an item with stored neighbours that are not already on the shopper's list
    rows = serving_rows(
        stack.resources.lists_stem,
        stack.resources.tables["config"],
        [item_key(i) for i in list(store.catalog)[:100]],
    )
    viewed, neighbours = next(
        (row.key.split("#", 1)[1], [e[0] for e in row.items[:5]])
        for row in rows.values()
        if not set(e[0] for e in row.items[:5]) & set(ids(before))
    )
    send(stack, api, event("product_view", customer, viewed))
    after = ask(api, f"/v1/users/{customer}/recommendations?n=10&placement=product")
    live = [i for i in after["items"] if i["reason"]["code"] == "because_viewed" and i["item_id"] in neighbours]
    assert live, after
    title = store.catalog[viewed]["title"]
    # a neighbour shared with an item the shopper viewed earlier (other tests use the same shoppers) may name that one
    assert any(i["reason"]["text"] == f"Because you viewed {title}" for i in live), (title, live)
    assert all(i["reason"]["text"].startswith("Because you viewed ") for i in live)
    assert after["sources"][0] == "realtime" and after["read_round_trips"] == 1


def test_the_product_on_screen_brings_its_neighbours_to_a_stranger_in_the_same_read_with_no_event(
    stack: LocalStack, api: Api, store: StockedStore
) -> None:
    """The page's context (``item``, ``recent``): a visitor nobody has seen, whose events have not reached the stream,
    gets the product's neighbours on its product page in the one BatchGetItem; the product itself is never listed."""
    assert stack.resources
    rows = serving_rows(
        stack.resources.lists_stem,
        stack.resources.tables["config"],
        [item_key(i) for i in list(store.catalog)[:50]],
    )
    on_screen, row = next((r.key.split("#", 1)[1], r) for r in rows.values() if len(r.items) >= 5)
    before = ask(api, "/v1/users/never-seen/recommendations?n=10&id_type=anonymous&placement=product")
    assert before["sources"] == ["global"]
    with dynamodb_calls() as calls:
        path = f"/v1/users/never-seen/recommendations?n=10&id_type=anonymous&placement=product&item={on_screen}"
        after = ask(api, path)
    assert calls == ["BatchGetItem"] and after["sources"][0] == "realtime"
    assert on_screen not in ids(after)
    title = store.catalog[on_screen]["title"]
    live = [i for i in after["items"] if i["reason"]["text"] == f"Because you viewed {title}"]
    assert {i["item_id"] for i in live} >= {e[0] for e in row.items[:3]} - {on_screen}
    # recent items, newest first, count too (the newest 3 with the product on screen); more than 5 are refused
    recent = ",".join(i for i in list(store.catalog)[:4] if i != on_screen)
    status, body = api.get(f"{path}&recent={recent}")
    assert status == 200 and body["sources"][0] == "realtime"
    status, body = api.get(f"{path}&recent=" + ",".join(f"i{n}" for n in range(6)))
    assert status == 400 and "recent" in body["message"]
    status, body = api.get(f"{path}&recent=" + "x" * 129)
    assert status == 400 and "recent" in body["message"]


def test_cart_purchases_out_of_stock_and_asked_exclusions(stack: LocalStack, api: Api, store: StockedStore) -> None:
    assert stack.resources
    customer, before = personal_shopper(api, store, skip={store.customers[0]})
    carted, bought, gone, unwanted = ids(before)[:4]
    purchase: dict[str, Any] = {
        "order_id": f"o-{customer}",
        "items": [{"item_id": bought, "quantity": 1, "unit_price": 5.0}],
    }
    send(stack, api, event("add_to_cart", customer, carted), event("purchase", customer, **purchase))
    status, _ = api.admin("PUT", "/v1/items", {"items": [{"item_id": gone, "in_stock": False}]})
    assert status == 200
    after = ask(api, f"/v1/users/{customer}/recommendations?n=10&exclude={unwanted}")
    assert not {carted, bought, gone, unwanted} & set(ids(after))
    # out of stock is left out for everybody, strangers included, until it is back
    top = ids(ask(api, "/v1/popular?n=1"))[0]
    assert api.admin("PUT", "/v1/items", {"items": [{"item_id": top, "in_stock": False}]})[0] == 200
    assert top not in ids(ask(api, "/v1/popular?n=100"))
    assert api.admin("PUT", "/v1/items", {"items": [{"item_id": top, "in_stock": True}]})[0] == 200
    assert ids(ask(api, "/v1/popular?n=1")) == [top]
    api.admin("PUT", "/v1/items", {"items": [{"item_id": gone, "in_stock": True}]})


def test_an_environment_finds_the_serving_slot_table_cold_and_after_its_cached_slot_table_is_gone(
    stack: LocalStack, store: StockedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each slot is a table a load makes: a cold environment reads the pointer first and the serving slot's rows in
    a second trip, then one trip a read; one whose cached slot names a table that is gone (two loads replaced it
    since) is refused by DynamoDB, forgets it and reads again — the answer is the same, never an error."""
    from shopwise.dal import serving_read
    from shopwise.dal.recommendations import get_pointer, slot_table, table_status
    from shopwise.dal.serving_read import ServingReader, Tables

    assert stack.resources
    t, stem = stack.resources.tables, stack.resources.lists_stem
    reader = ServingReader(Tables(stem, t["features"], t["config"], t["items"]))
    serving = get_pointer(t["config"]).slot
    monkeypatch.setattr(serving_read, "_serving_slot", {})  # a cold environment
    cold = reader.lists([POPULAR_KEY])
    assert cold.trips == 2 and POPULAR_KEY in cold.rows and serving_read._serving_slot == {stem: serving}
    warm = reader.lists([POPULAR_KEY])
    assert warm.trips == 1 and warm.rows == cold.rows
    gone = "b" if serving == "a" else "a"
    assert not table_status(slot_table(stem, gone))  # the demo loaded one version: the other slot has no table
    monkeypatch.setitem(serving_read._serving_slot, stem, gone)
    again = reader.shopper(f"a:nobody-{time.time_ns()}", [POPULAR_KEY])
    assert again.rows == cold.rows and again.trips == 3  # refused, read without it, then the serving slot's rows
    assert serving_read._serving_slot[stem] == serving


def test_a_warm_environment_reads_the_out_of_stock_set_once_per_its_cache_age(
    stack: LocalStack, api: Api, store: StockedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the deployed serve function does (``stock_cache_seconds``, 30 in dev and prod): the set is read with an
    environment's first request and again once the copy is that old; in between a request does not name its row."""
    from shopwise.dal import serving_read
    from shopwise.dal.serving_read import ServingReader, Tables

    assert stack.resources
    t = stack.resources.tables
    reader = ServingReader(Tables(stack.resources.lists_stem, t["features"], t["config"], t["items"]), stock_ttl=30.0)
    clock = [1000.0]
    monkeypatch.setattr(serving_read.time, "monotonic", lambda: clock[0])
    monkeypatch.setitem(serving_read._stock, t["features"], (0.0, frozenset()))  # an old copy: read at once
    top = ids(ask(api, "/v1/popular?n=1"))[0]
    assert top not in reader.lists([POPULAR_KEY]).unavailable
    assert api.admin("PUT", "/v1/items", {"items": [{"item_id": top, "in_stock": False}]})[0] == 200
    try:
        clock[0] += 29.0  # within the age: the copy answers, and the request names no stock row
        assert reader._stock_keys() == [] and top not in reader.lists([POPULAR_KEY]).unavailable
        assert top not in reader.shopper(f"a:nobody-{time.time_ns()}", [POPULAR_KEY]).unavailable
        clock[0] += 2.0  # older than 30 s: read again with the next request
        assert reader._stock_keys() and top in reader.lists([POPULAR_KEY]).unavailable
        assert top in reader.item(top, 5, [item_key(top)]).unavailable
    finally:
        assert api.admin("PUT", "/v1/items", {"items": [{"item_id": top, "in_stock": True}]})[0] == 200


def test_no_department_takes_more_than_its_share_of_a_list(stack: LocalStack, api: Api, store: StockedStore) -> None:
    assert stack.resources
    pseudonymiser = load_pseudonymiser(stack.resources.pseudonym_key_secret)
    profiles = {c: pseudonymiser.customer_profile(c) for c in store.customers}
    rows = serving_rows(
        stack.resources.lists_stem,
        stack.resources.tables["config"],
        [user_key(p) for p in profiles.values()],
    )

    def department(item: str) -> str:
        return store.catalog[item]["category"].split(">")[0]

    # shoppers whose stored list alone would break the rule (more than 4 of one department in its top 10)
    narrow = [
        c
        for c, p in profiles.items()
        if user_key(p) in rows
        and Counter(department(e[0]) for e in rows[user_key(p)].items[:10]).most_common(1)[0][1] > 4
    ]
    assert len(narrow) >= 3
    for customer in narrow[:3]:
        body = ask(api, f"/v1/users/{customer}/recommendations?n=10")
        served = Counter(department(i) for i in ids(body) if i in store.catalog)
        assert len(body["items"]) == 10 and served.most_common(1)[0][1] <= 4, served
    # asked for one department, the list is all that department: the rule gives way to the filter
    body = ask(api, f"/v1/users/{narrow[0]}/recommendations?n=10&category=Home")
    assert len(body["items"]) == 10 and {department(i) for i in ids(body)} == {"Home"}


def test_strangers_fall_back_from_referrer_to_market_to_category_to_global_bestsellers(
    api: Api, store: StockedStore
) -> None:
    insta = "https://www.instagram.com/p/abc"
    body = ask(api, "/v1/users/first-visit/recommendations?n=5&id_type=anonymous&market=NZ")
    assert body["sources"] == ["market"]
    assert {i["reason"]["text"] for i in body["items"]} == {"Popular in NZ"}
    body = ask(api, "/v1/users/first-visit/recommendations?n=5&id_type=anonymous&category=Shoes")
    assert all(store.catalog[i]["category"].startswith("Shoes>") for i in ids(body))
    assert body["sources"] == ["category"] and body["items"][0]["reason"]["text"].startswith("Trending in ")
    body = ask(api, "/v1/users/first-visit/recommendations?n=5&id_type=anonymous&market=XX")
    assert body["sources"] == ["global"]  # no bestsellers for an unknown market: the global ones
    body = ask(api, "/v1/users/first-visit/recommendations?n=5&id_type=anonymous&market=NZ&referrer=" + quote(insta))
    assert body["sources"] == ["referrer"]  # the referrer's segment comes before the market's
    assert body["items"][0]["reason"]["text"] == "Popular with shoppers coming from instagram.com"
    assert sum(store.catalog[i]["category"].split(">")[0] in ("Beauty", "Apparel") for i in ids(body)) >= 3


def test_an_anonymous_visitor_who_consents_gets_their_session_category(
    stack: LocalStack, api: Api, store: StockedStore
) -> None:
    shoes = [i for i, row in store.catalog.items() if row["category"].startswith("Shoes>")][:3]
    who = {"anonymous_id": "browsing-visitor"}
    grant = {**event("consent", "x"), **who, "granted": ["personalisation"]}
    grant.pop("customer_id")
    views = [{**event("product_view", "x", item), **who} for item in shoes]
    for v in views:
        v.pop("customer_id")
    send(stack, api, grant, *views)
    body = ask(api, "/v1/users/browsing-visitor/recommendations?n=10&id_type=anonymous")
    assert body["sources"][0] == "realtime"
    codes = Counter(i["reason"]["code"] for i in body["items"])
    assert codes["because_viewed"] + codes["next_after_viewed"] + codes["session_category"] >= 5


def test_ab_variants_are_stable_the_holdout_is_not_personalised_and_impressions_reach_the_archive(
    stack: LocalStack, api: Api, store: StockedStore, tmp_path: Path
) -> None:
    assert stack.resources and stack.impressions
    experiment = [
        {
            "name": "blend-test",
            "salt": "s1",
            "holdout": 0.3,
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "params": {"realtime_weight": 2}}],
        }
    ]
    (tmp_path / "experiments.json").write_text(json.dumps(experiment))
    assert cli.main(["experiments", "set", str(tmp_path / "experiments.json")]) == 0
    stack.impressions.flush()
    before = stack.impressions.delivered
    try:
        arms = {}
        assert len(store.customers) >= 40
        for customer in store.customers:
            first = ask(api, f"/v1/users/{customer}/recommendations?n=5")
            again = ask(api, f"/v1/users/{customer}/recommendations?n=5")
            assert (first["experiment"], first["variant"]) == ("blend-test", again["variant"])
            arms[customer] = first
        share = Counter(body["variant"] for body in arms.values())
        assert set(share) == {"holdout", "a", "b"} and 0.1 <= share["holdout"] / len(arms) <= 0.5
        for body in arms.values():
            if body["variant"] == "holdout":
                assert not {"personalised", "realtime"} & set(body["sources"])
        assert any("personalised" in b["sources"] for b in arms.values() if b["variant"] != "holdout")
    finally:
        assert cli.main(["experiments", "clear"]) == 0
    assert ask(api, f"/v1/users/{store.customers[0]}/recommendations?n=5")["variant"] == "default"

    stack.impressions.flush()
    assert stack.impressions.delivered - before == 2 * len(arms) + 1
    s3 = client("s3")
    listing = s3.list_objects_v2(Bucket=stack.resources.archive_bucket, Prefix=config.ARCHIVE_EVENTS_PREFIX)
    keys = [o["Key"] for o in listing["Contents"] if "/impressions-" in o["Key"]]
    shown = {}
    assert keys and all(k.endswith(".parquet") for k in keys)
    for key in keys:
        for row in read_archive(stack.resources.archive_bucket, key):
            impression = parse_event(row)  # each row is a valid event of the archive
            assert isinstance(impression, Impression) and impression.pseudonymised
            shown[impression.recommendation_id] = impression
    for body in arms.values():
        record = shown[body["recommendation_id"]]
        assert (record.variant, record.items, record.model_version) == (
            body["variant"],
            ids(body),
            body["model_version"],
        )


def test_the_experiment_readout_joins_impressions_clicks_and_purchases_per_variant(
    stack: LocalStack, api: Api, store: StockedStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Impressions reach the archive through the log subscription, the storefront's clicks and purchases through
    the API and the stream; the report joins them by recommendation_id and shopper."""
    assert stack.impressions
    experiment = [{"name": "readout", "salt": "r1", "holdout": 0.2, "variants": [{"name": "a"}, {"name": "b"}]}]
    (tmp_path / "experiments.json").write_text(json.dumps(experiment))
    assert cli.main(["experiments", "set", str(tmp_path / "experiments.json")]) == 0
    try:
        answers = {c: ask(api, f"/v1/users/{c}/recommendations?n=5") for c in store.customers}
        arms = Counter(body["variant"] for body in answers.values())
        storefront: list[dict[str, Any]] = []
        expected_clicks = Counter[str]()
        bought = Counter[str]()
        in_arm = Counter[str]()
        for n, (customer, body) in enumerate(answers.items()):
            # arm b's shoppers all click the first item shown, arm a's every third of its own (counted in the arm:
            # the arms follow the stack's random pseudonym key, so every third of all shoppers put anywhere from
            # none to all of a small arm a's clicking, and the lift's interval at times below 0), the holdout's none
            rank_in_arm = in_arm[body["variant"]]
            in_arm[body["variant"]] += 1
            if body["variant"] == "b" or (body["variant"] == "a" and rank_in_arm % 3 == 0):
                item = ids(body)[0]
                storefront.append(event("click", customer, item, recommendation_id=body["recommendation_id"]))
                expected_clicks[body["variant"]] += 1
                if n % 2 == 0:
                    line = {"item_id": item, "quantity": 1, "unit_price": 10.0}
                    storefront.append(event("purchase", customer, order_id=f"o-{n}", items=[line]))
                    bought[body["variant"]] += 1
        for start in range(0, len(storefront), 100):
            send(stack, api, *storefront[start : start + 100])
        stack.impressions.flush()
        capsys.readouterr()
        code = cli.main(["report", "experiment", "readout", "--json", "--out", str(tmp_path / "reports")])
        report = json.loads(capsys.readouterr().out)
    finally:
        assert cli.main(["experiments", "clear"]) == 0
    assert code == 0 and report["sample_ratio_mismatch"] is False and report["srm_p"] > 0.001
    by_arm = {arm["name"]: arm for arm in report["arms"]}
    assert set(by_arm) == {"a", "b", "holdout"}
    for name, arm in by_arm.items():
        assert arm["shoppers"] == arms[name]
        assert arm["counts"]["impressions"] == arms[name] and arm["counts"]["clicks"] == expected_clicks[name]
        assert arm["counts"]["attributed_purchases"] == bought[name]
        assert arm["metrics"]["ctr"]["value"] == pytest.approx(expected_clicks[name] / arms[name])
    assert by_arm["holdout"]["expected_share"] == pytest.approx(0.2)
    lift = by_arm["b"]["versus_control"]["ctr"]
    assert lift["low"] > 0 and lift["lift"] > 0.5  # b clicks every list, a about one in three: a lift near 2
    assert (tmp_path / "reports" / "experiment-readout.png").stat().st_size > 10_000


def test_rank_orders_the_given_items_for_the_shopper_and_drops_none(
    stack: LocalStack, api: Api, store: StockedStore
) -> None:
    customer, personal = personal_shopper(api, store)
    assert stack.resources
    mine = ids(personal)[:3]
    others = [i for i in list(store.catalog)[:40] if i not in ids(personal)]
    api.admin("PUT", "/v1/items", {"items": [{"item_id": mine[2], "in_stock": False}]})
    try:
        given = [*others[:20], mine[0], "not-an-item", mine[1], mine[2]]
        status, body = api.post("/v1/rank", {"user_id": customer, "item_ids": given})
        assert status == 200
        order = ids(body)
        assert sorted(order) == sorted(given)
        unknown = [n for n, item in enumerate(body["items"]) if item["reason"]["code"] == "store_order"]
        assert unknown and max(order.index(mine[0]), order.index(mine[1])) < min(unknown)  # own picks first
        assert order[-1] == mine[2] and body["items"][-1]["in_stock"] is False  # out of stock last
    finally:
        api.admin("PUT", "/v1/items", {"items": [{"item_id": mine[2], "in_stock": True}]})


def test_a_product_newer_than_the_model_gets_its_categorys_bestsellers(
    stack: LocalStack, api: Api, store: StockedStore
) -> None:
    assert stack.resources
    new = {"item_id": "brand-new-kettle", "title": "Brand new kettle", "category": "Home>Kitchen"}
    assert api.admin("PUT", "/v1/items", {"items": [new]})[0] == 200
    body = ask(api, "/v1/items/brand-new-kettle/similar?n=5")
    assert body["sources"][0] == "category" and body["read_round_trips"] == 2
    assert all(store.catalog[i]["category"] == "Home>Kitchen" for i in ids(body) if i in store.catalog)
    assert body["items"][0]["reason"]["text"] == "Popular in Kitchen, like Brand new kettle"
    status, body = api.get("/v1/items/no-such-item/similar")
    assert status == 404 and "no-such-item" in body["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("GET", "/v1/users/u/recommendations?placement=checkout", None, "placement"),
        ("GET", "/v1/users/u/recommendations?market=N%20Z", None, "market"),
        ("GET", "/v1/users/u/recommendations?exclude=" + ",".join(map(str, range(101))), None, "exclude"),
        ("POST", "/v1/rank", {"user_id": "u", "item_ids": [str(i) for i in range(501)]}, "item_ids"),
        ("POST", "/v1/rank", {"user_id": "u", "item_ids": []}, "item_ids"),
        ("POST", "/v1/rank", {"item_ids": ["1"]}, "user_id"),
    ],
)
def test_bad_serving_input_gets_a_400_that_names_the_problem(
    api: Api, store: StockedStore, method: str, path: str, body: Any, needle: str
) -> None:
    status, answer = api.admin(method, server_path(path), body)
    assert status == 400 and needle in answer["message"], answer


def test_the_serve_module_imports_neither_pandas_numpy_nor_pynamodb() -> None:
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('serve', {str(LAMBDAS_DIR / 'serve' / 'handler.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pandas', 'pynamodb', 'scipy'}))\n"
    )
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(heavy.stdout.replace("'", '"')) == []


@pytest.fixture(scope="module")
def served_schema(api: Api, store: StockedStore) -> Any:
    """The serve API's own OpenAPI document, as the running stack serves it (the store is loaded first, so the
    fuzzer reaches the blend, not only the "nothing loaded yet" answer)."""
    return schemathesis.openapi.from_url(f"{api.url}/v1/openapi.json")


def send_generated(case: Any, token: str) -> Any:
    """A generated request as its caller would send it: IAM-signed on server and admin routes, with a shopper token
    on a browser's routes, as it is on the public ones."""
    import requests

    kwargs = case.as_transport_kwargs()
    headers = {k: str(v) for k, v in (kwargs.get("headers") or {}).items()}
    body = kwargs.get("data")
    if kwargs.get("json") is not None:
        body, headers["Content-Type"] = json.dumps(kwargs["json"]).encode(), "application/json"
    body = body.encode() if isinstance(body, str) else body
    prepared = requests.Request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params"), headers=headers, data=body
    )
    request = prepared.prepare()
    needs = credential(case.method.upper(), case.operation.path)
    if needs == SIGV4:
        current = {k: str(v) for k, v in request.headers.items()}
        request.headers.update(signed_headers(request.method or "GET", request.url or "", body or b"", current))
    elif needs == SHOPPER_TOKEN:
        request.headers["Authorization"] = f"Bearer {token}"
    with requests.Session() as session:
        return session.send(request, timeout=30)


def test_no_generated_request_makes_the_api_fail(served_schema: Any, store: StockedStore) -> None:
    """Property-based, per operation of the API document (every route: events, reads, rank, admin): generated
    requests, sent with the credential each route takes, never get a 5xx, and a 4xx is JSON with a message."""
    operations = [result.ok() for result in served_schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "GET /v1/users/{user_id}/recommendations",
        "POST /v1/rank",
        "GET /v1/popular",
        "GET /v1/items/{item_id}/similar",
        "POST /v1/events",
        "POST /v1/server/events",
        "PUT /v1/items",
        "GET /v1/campaigns/{name}/recipients",
        "DELETE /v1/users/{user_id}",
        "GET /v1/erasures",
        "GET /v1/erasures/{erasure_id}",
    }
    token = shopper_token(customer=store.customers[0], visitor="fuzzed-visitor")
    answered: Counter[int] = Counter()
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        if mode is schemathesis.GenerationMode.NEGATIVE and operation.path in ("/v1/health", "/v1/visitors"):
            continue  # no parameters: there is no invalid request to make

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: Any) -> None:
            response = send_generated(case, token)
            answered[response.status_code] += 1
            assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.text[:300])
            if 400 <= response.status_code < 500:
                assert "message" in response.json(), (response.status_code, case.method, case.formatted_path)

        call()
    print(f"fuzzed answers by status: {dict(answered)}")
    assert answered[200] > 0 and answered[400] > 0 and sum(answered.values()) >= 15 * 20


def test_a_worse_model_is_rejected_by_the_gate_and_the_active_one_keeps_serving(
    stack: LocalStack, api: Api, store: StockedStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.resources
    config_table = stack.resources.tables["config"]
    first = registry.active(config_table)
    assert first is not None and first.version == store.result.model_version and first.status == "active"
    assert first.data_window and first.hyperparameters and first.code_version and first.validation
    with pytest.raises(Rejected, match="below the active version") as rejected:
        run_pipeline(
            stack.resources.archive_bucket,
            stack.resources.artifacts_bucket,
            tmp_path,
            hyperparameters={"models": "popularity"},  # worse on purpose: bestsellers for everyone
            load_function=stack.functions["load"],
            registry_function=stack.functions["registry"],
            export_function=stack.functions["export_catalog"],
        )
    record = registry.get(config_table, rejected.value.record.version)
    assert (
        record is not None
        and record.status == "rejected"
        and "with its recipe refitted on the same validation split" in record.reason
    )
    assert registry.active(config_table) == first
    body = ask(api, f"/v1/users/{store.customers[0]}/recommendations?n=3")
    assert body["model_version"] == first.version
    assert cli.main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{first.version}" in listing and "rejected" in listing and "active" in listing


def test_drift_compares_the_store_with_the_active_models_snapshot_and_flags_new_items(
    stack: LocalStack, api: Api, store: StockedStore, capsys: pytest.CaptureFixture[str]
) -> None:
    def drift() -> dict[str, Any]:
        assert cli.main(["drift", "--hours", "0.5", "--json"]) == 0
        return dict(json.loads(capsys.readouterr().out))

    # shoppers active in the last 24 h on both sides (the replay's events may be older than that late in the day)
    send(stack, api, *[event("product_view", c, next(iter(store.catalog))) for c in store.customers[:30]])
    assert stack.impressions
    stack.impressions.flush()  # what earlier tests were answered is in the archive before the first report
    before = drift()
    assert before["model_version"] == store.result.model_version
    assert {"profile.orders", "profile.recent_viewed", "item.views_24h"} <= set(before["features"])
    assert all(v == v for v in before["features"].values())  # numbers, not NaN
    # a burst of shoppers on products the model has never seen
    burst = []
    for n in range(40):
        who = {"anonymous_id": f"newcomer-{n}"}
        burst.append({**event("consent", "x"), **who, "granted": ["personalisation"]})
        burst += [{**event("product_view", "x", f"fresh-{n}-{k}"), **who} for k in range(4)]
    for e in burst:
        e.pop("customer_id")
    for start in range(0, len(burst), 100):
        send(stack, api, *burst[start : start + 100])
    # and the serving side: answers to 10 known shoppers and 10 strangers, shipped as impressions
    assert stack.impressions
    answers = []
    for n, customer in enumerate(store.customers[:10]):
        answers.append(ask(api, f"/v1/users/{customer}/recommendations?n=5"))
        ask(api, f"/v1/users/stranger-{n}/recommendations?n=5")
    first = answers[0]  # and the first shopper clicks the first item of their answer
    send(stack, api, event("click", store.customers[0], ids(first)[0], recommendation_id=first["recommendation_id"]))
    stack.impressions.flush()
    after = drift()
    assert after["new_item_share"] > max(0.5, before["new_item_share"])
    assert after["unknown_shopper_share"] > before["unknown_shopper_share"]
    assert any(alarm.startswith("new items") for alarm in after["alarms"])
    serving = after["serving"]
    assert serving["impressions"] - before["serving"]["impressions"] == 20 and serving["sources"]["global"] > 0
    personal = sum(share for source, share in serving["sources"].items() if source in ("personalised", "realtime"))
    assert serving["personalised_share"] == pytest.approx(personal, abs=1e-3) and 0 < serving["coverage"] < 1
    performance = after["performance"]
    assert performance["answers"] - before["performance"]["answers"] == 20
    assert performance["clicks"] - before["performance"]["clicks"] == 1
    assert after["published"]["RecommendationCTR"] == pytest.approx(performance["ctr"])
    spread = serving["last_to_first_score"]
    assert 0 < spread["p10"] <= spread["p50"] <= spread["p90"] <= 1
    # what the monitor function published as CloudWatch metrics (EMF) is the job's figures
    assert after["published"]["DriftNewItemShare"] == pytest.approx(after["new_item_share"])
    assert after["published"]["ServedPersonalisedShare"] == pytest.approx(serving["personalised_share"])
