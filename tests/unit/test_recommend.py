"""The serving decisions and the blend over a fake reader: no endpoint, no DynamoDB — what serving does with what
it read (consent, stitching, experiments, exclusions, the fallback chain, the response)."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field

import pytest

from shopwise.dal.feature_store import Doc
from shopwise.dal.recommendations import Pointer, RecommendationRow
from shopwise.dal.serving_read import ItemRead, ListsRead, ShopperRead
from shopwise.events import parse_event
from shopwise.features.definitions import Context, ProfileFeatures, apply_to_profile
from shopwise.keys import POPULAR_KEY, item_key, next_key, popular_key, profile_key, user_key
from shopwise.picks import StoredPick, ViewPick
from shopwise.serving.blend import PLACEMENT_PARAMS
from shopwise.serving.experiments import bucket
from shopwise.serving.recommend import NotFound, Request, impression_line, popular, rank, recommend, similar

NOW = time.time()
POINTER = Pointer(version="m1", slot="a")


def stored(*items: str, category: str = "Home>Kitchen", because: str = "") -> list[StoredPick]:
    return [
        StoredPick(i, 10.0 - n, because, category, f"Title {because}" if because else "") for n, i in enumerate(items)
    ]


def row(key: str, picks: list[StoredPick], version: str = "m1") -> RecommendationRow:
    return RecommendationRow(key, picks, version)


@dataclass
class FakeReader:
    """What the serving reads would return, from dictionaries; counts what it was asked."""

    rows: dict[str, RecommendationRow] = field(default_factory=dict)
    profiles: dict[str, dict[str, object]] = field(default_factory=dict)  # profile id -> document data
    aliases: dict[str, str] = field(default_factory=dict)  # profile id -> the profile it was stitched into
    unavailable: frozenset[str] = frozenset()
    experiments: str = ""
    catalog: dict[str, dict[str, str]] = field(default_factory=dict)
    asked: list[tuple[str, list[str]]] = field(default_factory=list)

    def _rows(self, keys: list[str]) -> dict[str, RecommendationRow]:
        return {k: self.rows[k] for k in keys if k in self.rows}

    def shopper(self, profile_id: str, keys: list[str]) -> ShopperRead:
        self.asked.append((profile_id, keys))
        target = self.aliases.get(profile_id, profile_id)
        data = self.profiles.get(target)
        return ShopperRead(
            rows=self._rows([user_key(profile_id), user_key(target), *keys]),
            unavailable=self.unavailable,
            experiments=self.experiments,
            pointer=POINTER,
            trips=1 if target == profile_id else 2,
            target=target,
            profile=Doc(profile_key(target), dict(data), 3) if data is not None else None,
        )

    def lists(self, keys: list[str], experiments: bool = False) -> ListsRead:
        return ListsRead(self._rows(keys), self.unavailable, self.experiments if experiments else "", POINTER, 1)

    def item(self, item_id: str, n: int, keys: list[str]) -> ItemRead:
        entry = self.catalog.get(item_id, {})
        category = entry.get("category", "")
        return ItemRead(
            self._rows([*keys, popular_key(f"category:{category}")]),
            self.unavailable,
            "",
            POINTER,
            1,
            known=bool(entry),
            title=entry.get("title", ""),
            category=category,
        )


def profile(*events: dict[str, object], consent: bool = True) -> dict[str, object]:
    """A profile document folded from events by the feature store's own rule (consent first if asked)."""
    base = {"occurred_at": "2026-11-01T10:00:00Z", "customer_id": "x", "pseudonymised": True}
    folded = [parse_event({**base, "event_id": "c0", "event_type": "consent", "granted": ["personalisation"]})]
    folded = folded if consent else []
    folded += [parse_event({**base, "event_id": f"e{n}", **e}) for n, e in enumerate(events)]
    return {"features": apply_to_profile(ProfileFeatures(), folded, Context()).to_json()}


def store() -> FakeReader:
    home = ["h1", "h2", "h3", "h4", "h5", "h6"]
    return FakeReader(
        rows={
            POPULAR_KEY: row(POPULAR_KEY, stored(*home, "s1", "s2")),
            popular_key("market:NZ"): row(popular_key("market:NZ"), stored("nz1", "nz2", category="Shoes>Running")),
            user_key("c:alice"): row(user_key("c:alice"), stored("p1", "p2", "p3", because="v1")),
        }
    )


def test_a_stranger_gets_the_market_then_the_global_bestsellers() -> None:
    reader = store()
    answer = recommend(Request("nobody", "a:nobody", n=5, market="NZ"), reader).response
    assert [i["item_id"] for i in answer["items"]] == ["nz1", "nz2", "h1", "h2", "h3"]
    assert answer["sources"] == ["market", "global"] and answer["source"] == "market"
    assert answer["items"][0]["reason"] == {"code": "popular_market", "text": "Popular in NZ"}
    assert answer["model_version"] == "m1" and answer["read_round_trips"] == 1
    # the one read asked for the shopper's keys, the market's list and the global list
    assert reader.asked == [("a:nobody", [popular_key("market:NZ"), POPULAR_KEY])]


def test_a_consenting_shopper_gets_their_list_blended_with_what_they_just_did_minus_cart_and_purchases() -> None:
    reader = store()
    reader.profiles["c:alice"] = {
        **profile(
            {"event_type": "add_to_cart", "item_id": "p2"},
            {"event_type": "purchase", "order_id": "o", "items": [{"item_id": "h1"}]},
        ),
        "serving": {"at": NOW, "items": [ViewPick("r1", 0.9, "because_viewed", "v9", "Red lamp", "Home").encode()]},
    }
    reader.unavailable = frozenset({"p3"})
    answer = recommend(Request("alice", "c:alice", placement="product", n=4), reader).response
    items = [i["item_id"] for i in answer["items"]]
    assert items[:2] == ["r1", "p1"]  # product page: real-time weight 2.0 against the personal list's 0.5
    assert "p2" not in items and "h1" not in items and "p3" not in items  # in cart, bought, out of stock
    assert answer["sources"] == ["realtime", "personalised", "global"]
    assert answer["items"][0]["reason"]["text"] == "Because you viewed Red lamp"
    assert answer["items"][1]["reason"]["text"] == "Because you viewed Title v1"


def test_without_a_personalisation_grant_now_the_list_is_a_strangers() -> None:
    reader = store()
    reader.profiles["c:alice"] = profile({"event_type": "product_view", "item_id": "h2"}, consent=False)
    served = recommend(Request("alice", "c:alice", n=3), reader)
    assert served.response["sources"] == ["global"] and served.profile_id == "c:alice"


def test_a_stitched_id_is_answered_from_the_profile_it_belongs_to() -> None:
    reader = store()
    reader.aliases["a:cookie"] = "c:alice"
    reader.profiles["c:alice"] = profile()
    served = recommend(Request("cookie", "a:cookie", n=2), reader)
    assert served.profile_id == "c:alice" and served.response["read_round_trips"] == 2
    assert [i["item_id"] for i in served.response["items"]] == ["p1", "p2"]
    assert "c:alice" not in json.dumps(served.response)  # no profile key, no pseudonym leaves the API


def test_the_holdout_of_an_experiment_is_never_personalised() -> None:
    reader = store()
    reader.profiles["c:alice"] = profile()
    salt = next(f"s{n}" for n in range(1000) if bucket(f"s{n}", "c:alice") < 0.5)  # alice lands in the holdout
    reader.experiments = json.dumps([{"name": "e", "salt": salt, "holdout": 0.5, "variants": [{"name": "a"}]}])
    answer = recommend(Request("alice", "c:alice", n=3), reader).response
    assert (answer["experiment"], answer["variant"]) == ("e", "holdout")
    assert answer["sources"] == ["global"]


def context_store() -> FakeReader:
    reader = store()
    for item, neighbours in (("k1", ("n1", "n2", "h2")), ("k0", ("m1", "n1"))):
        reader.rows[item_key(item)] = row(item_key(item), stored(*neighbours, because=item))
    reader.rows[next_key("k1")] = row(next_key("k1"), stored("x1", "n2", because="k1"))
    return reader


def test_the_pages_context_makes_a_strangers_list_in_the_same_read_before_any_event_arrives() -> None:
    reader = context_store()
    req = Request("nobody", "a:nobody", placement="product", n=4, exclude=frozenset({"k1"}), context=("k1", "k0"))
    answer = recommend(req, reader).response
    items = [i["item_id"] for i in answer["items"]]
    # as the stream's view weighs views: k1 (newest, 1.0) gives n1 .25, n2 .225 + .18 as a next click, h2 .2, x1 .2;
    # k0 (second, 0.7) adds .1575 to n1. k1 itself never (the product on screen is excluded)
    assert items == ["n1", "n2", "h2", "x1"] and "k1" not in items
    assert answer["sources"] == ["realtime"] and answer["read_round_trips"] == 1
    assert answer["items"][0]["reason"]["text"] == "Because you viewed Title k1"
    assert answer["items"][3]["reason"]["code"] == "next_after_viewed"
    # one BatchGetItem: the context's rows (at most the newest 3 items, 2 rows each) beside the fallback lists
    ((_, keys),) = reader.asked
    assert keys == [POPULAR_KEY, item_key("k1"), next_key("k1"), item_key("k0"), next_key("k0")]
    assert (
        recommend(Request("x", "a:x", context=tuple(f"i{n}" for n in range(5))), reader)
        and len(reader.asked[-1][1]) == 1 + 2 * 3
    )


def test_the_context_replaces_the_stream_s_view_of_the_same_item_and_the_holdout_ignores_it() -> None:
    reader = context_store()
    # the stream has applied the view of k1 hours ago; the page says k1 is on screen now
    old = NOW - 12 * 3600
    view = [ViewPick("n1", 1.0, "because_viewed", "k1", "Title k1", "Home").encode()]
    view += [ViewPick("r9", 0.9, "because_viewed", "v9", "Red lamp", "Home").encode()]
    reader.profiles["c:alice"] = {**profile(), "serving": {"at": old, "items": view}}
    answer = recommend(Request("alice", "c:alice", placement="product", n=10, context=("k1",)), reader).response
    scores = {i["item_id"]: i["score"] for i in answer["items"]}
    # n1 counts once: from the context at the product page's full real-time weight, 2.0 (.25 of the context's best,
    # n2's .405), not again from the stream's 12-hour-old view of the same k1 (that would add 2.0 x 0.25)
    realtime = PLACEMENT_PARAMS["product"].realtime_weight
    assert scores["n1"] == pytest.approx(realtime * 0.25 / 0.405, abs=1e-6)
    assert scores["r9"] == pytest.approx(realtime * 0.25)  # the view's other candidates stay, decayed by their age
    salt = next(f"s{n}" for n in range(1000) if bucket(f"s{n}", "c:alice") < 0.5)
    reader.experiments = json.dumps([{"name": "e", "salt": salt, "holdout": 0.5, "variants": [{"name": "a"}]}])
    held = recommend(Request("alice", "c:alice", placement="product", n=3, context=("k1",)), reader).response
    assert held["variant"] == "holdout" and held["sources"] == ["global"]


def test_nothing_loaded_is_a_not_found_that_says_what_to_do() -> None:
    with pytest.raises(NotFound, match="shopwise retrain"):
        recommend(Request("nobody", "a:nobody"), FakeReader())


def test_rank_returns_every_given_item_once_out_of_stock_last() -> None:
    reader = store()
    reader.unavailable = frozenset({"h1"})
    answer = rank(Request("nobody", "a:nobody"), ["zz", "h1", "h3", "h2", "h3"], reader).response
    assert [i["item_id"] for i in answer["items"]] == ["h2", "h3", "zz", "h1"]
    assert [i["in_stock"] for i in answer["items"]] == [True, True, True, False]
    assert answer["sources"] == ["global", "store_order"]


def test_popular_and_similar_items() -> None:
    reader = store()
    reader.rows[item_key("h1")] = row(item_key("h1"), stored("h2", "h1", "s1", because="h1"))
    reader.catalog = {"new": {"category": "Shoes>Running", "title": "New shoe"}}
    reader.rows[popular_key("category:Shoes>Running")] = row(
        popular_key("category:Shoes>Running"), stored("s1", "s2", category="Shoes>Running")
    )
    assert [i["item_id"] for i in popular(2, "NZ", "", reader)["items"]] == ["nz1", "nz2"]
    near = similar("h1", 2, reader)
    assert [i["item_id"] for i in near["items"]] == ["h2", "s1"]  # never itself
    fresh = similar("new", 2, reader)  # newer than the model: its category's bestsellers
    assert fresh["items"][0]["reason"]["text"] == "Popular in Running, like New shoe"
    with pytest.raises(NotFound):
        similar("unknown", 2, reader)


def test_a_shoppers_answer_is_logged_as_an_impression_event() -> None:
    served = recommend(Request("nobody", "a:nobody", n=2, market="NZ"), store())
    line = io.StringIO()
    impression_line(served, line, now=NOW)
    event = parse_event(json.loads(line.getvalue()))
    assert event.event_type == "impression" and event.anonymous_id == "nobody" and event.origin == "serve"
    assert event.items == ["nz1", "nz2"] and event.recommendation_id == served.response["recommendation_id"]
