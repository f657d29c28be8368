"""The serving logic that needs no I/O: the blend, the selection rules, the serving view, experiments."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from shopwise.catalog.categories import contains
from shopwise.features.definitions import ProfileFeatures
from shopwise.keys import item_key, next_key, popular_key, referrer_source
from shopwise.picks import StoredPick, ViewPick
from shopwise.serving.blend import (
    Pick,
    Selection,
    combine,
    params_for,
    personal_picks,
    realtime_factor,
    reason,
)
from shopwise.serving.experiments import ExperimentError, assign, bucket, parse_experiments
from shopwise.serving.view import serving_view, view_keys


def picks(*items: tuple[str, float, str]) -> list[Pick]:
    return [Pick(i, s, "popular", category=c, source="global") for i, s, c in items]


def test_combine_scales_each_source_sums_them_and_keeps_the_strongest_reason() -> None:
    personal = [Pick("a", 10.0, "because_viewed", source="personalised"), Pick("b", 5.0, "personalised")]
    realtime = [Pick("b", 0.2, "because_carted", source="realtime"), Pick("c", 0.1, "complements")]
    out = list(combine([(personal, 1.0), (realtime, 2.0)]))
    scores = {p.item_id: p.score for p in out}
    # a: 1.0 x 10/10; b: 1.0 x 5/10 + 2.0 x 0.2/0.2; c: 2.0 x 0.1/0.2
    assert scores == {"a": 1.0, "b": 2.5, "c": 1.0}
    assert [p.item_id for p in out] == ["b", "a", "c"]  # ties keep the first source's order
    assert out[0].code == "because_carted"  # b's larger share came from the cart
    assert list(combine([(personal, 0.0)])) == []


def test_selection_excludes_filters_and_caps_a_department_unless_nothing_else_is_left() -> None:
    candidates = picks(*[(f"s{i}", 10 - i, "Shoes>Running") for i in range(6)], ("h1", 1, "Home>Kitchen"))
    selection = Selection(6, excluded={"s1"}, max_per_category=2)
    selection.offer(candidates)
    # s0, s2 (s1 excluded), then Shoes is capped: h1 next; the waiting shoes fill the rest in order
    assert [p.item_id for p in selection.finish()] == ["s0", "s2", "h1", "s3", "s4", "s5"]
    only_shoes = Selection(3, excluded=set(), category="shoes", max_per_category=1)
    only_shoes.offer(candidates)
    assert [p.item_id for p in only_shoes.finish()] == ["s0", "s1", "s2"]  # a category filter lifts the cap


def test_a_purchased_item_comes_back_only_in_a_repeat_purchase_category() -> None:
    candidates = picks(("coffee", 3, "Grocery>Coffee"), ("tv", 2, "Electronics>TV"), ("tea", 1, "Grocery>Tea"))
    selection = Selection(3, set(), ("Grocery>Coffee",), frozenset({"coffee", "tv"}))
    selection.offer(candidates)
    assert [p.item_id for p in selection.finish()] == ["coffee", "tea"]


def test_category_paths_match_at_separators_only() -> None:
    assert contains("Shoes>Running>Trail", "shoes > running")
    assert not contains("Shoes>Runningwear", "Shoes>Running")
    assert not contains("Shoestrings", "Shoes")


def test_reasons_name_the_item_the_category_or_the_market() -> None:
    assert reason(Pick("x", 1, "because_viewed", "p1", "Red Shoe"))["text"] == "Because you viewed Red Shoe"
    assert reason(Pick("x", 1, "because_viewed", "p1"))["text"] == "Because you viewed item p1"
    assert reason(Pick("x", 1, "popular_category", category="Shoes>Running"))["text"] == "Trending in Running"
    assert reason(Pick("x", 1, "popular_market"), "NZ")["text"] == "Popular in NZ"


def test_a_personal_pick_says_whether_it_follows_a_purchase_a_cart_or_a_view() -> None:
    profile = ProfileFeatures()
    profile.recent = {"view": [["v", 1.0]], "cart": [["c", 2.0]], "purchase": [["b", 3.0]]}
    stored = [["1", 3.0, "b", "A", "Boots"], ["2", 2.0, "c", "A", "Cap"], ["3", 1.0, "v", "A", "Vest"], ["4", 0.5]]
    entries = [StoredPick.decode(e) for e in stored]
    codes = [p.code for p in personal_picks(entries, profile)]
    assert codes == ["because_purchased", "because_carted", "because_viewed", "personalised"]


def test_real_time_weight_halves_with_the_age_of_the_newest_action_down_to_a_floor() -> None:
    assert realtime_factor(1000.0, 1000.0) == 1.0
    assert realtime_factor(0.0, 6 * 3600.0) == pytest.approx(0.25)
    assert realtime_factor(1.0, 1.0 + 6 * 3600.0) == pytest.approx(0.5)
    assert realtime_factor(1.0, 1.0 + 60 * 3600.0) == 0.25


def test_the_serving_view_blends_the_rows_of_what_the_shopper_just_did() -> None:
    profile = ProfileFeatures()
    profile.recent = {"view": [["v1", 100.0], ["v0", 50.0]], "cart": [["c1", 90.0]], "purchase": [["b1", 80.0]]}
    profile.affinity = {"Shoes>Running": [3.0, 100.0]}
    keys = view_keys(profile)
    assert keys == [
        item_key("v1"),
        next_key("v1"),
        item_key("v0"),
        next_key("v0"),
        item_key("c1"),
        next_key("b1"),
        popular_key("category:Shoes>Running"),
    ]
    stored = {
        item_key("v1"): [["x", 0.9, "v1", "Shoes>Running", "Red shoe"], ["y", 0.3, "v1", "Home", "Red shoe"]],
        item_key("c1"): [["y", 2.0, "c1", "Home", "Lamp"]],
        next_key("b1"): [["z", 5.0, "b1", "Home", "Sofa"]],
        popular_key("category:Shoes>Running"): [["w", 7.0, "", "Shoes>Running", ""]],
    }
    rows = {key: [StoredPick.decode(e) for e in entries] for key, entries in stored.items()}
    view = serving_view(profile, rows)
    assert view["at"] == 100.0
    items = {e[0]: e for e in view["items"]}
    # x: the newest view's best neighbour (0.25 x 1); y: its second (0.25 x 1/3) + the cart's best (0.5 x 1)
    assert items["x"][1] == pytest.approx(0.25) and items["x"][2:5] == ["because_viewed", "v1", "Red shoe"]
    assert items["y"][1] == pytest.approx(0.25 / 3 + 0.5) and items["y"][2] == "because_carted"
    assert items["z"][2] == "complements" and items["z"][1] == pytest.approx(1.0)
    assert items["w"][2] == "session_category" and items["w"][1] == pytest.approx(0.3)
    assert [e[0] for e in view["items"]] == ["z", "y", "w", "x"]
    assert ViewPick.decode(items["x"]) == ViewPick("x", 0.25, "because_viewed", "v1", "Red shoe", "Shoes>Running")
    assert serving_view(ProfileFeatures(), rows) == {"at": 0.0, "items": []}


EXPERIMENT = {
    "name": "e1",
    "salt": "s",
    "holdout": 0.1,
    "placements": ["home"],
    "variants": [{"name": "a", "weight": 3}, {"name": "b", "weight": 1, "params": {"realtime_weight": 2}}],
}


def test_assignment_is_stable_and_splits_by_weight_after_the_holdout() -> None:
    experiments = parse_experiments(json.dumps([EXPERIMENT]))
    arms = Counter(assign(experiments, "home", f"a:{n}").variant for n in range(20000))
    assert arms["holdout"] / 20000 == pytest.approx(0.1, abs=0.01)
    assert arms["a"] / (arms["a"] + arms["b"]) == pytest.approx(0.75, abs=0.015)
    assert assign(experiments, "home", "c:42") == assign(experiments, "home", "c:42")
    assert assign(experiments, "email", "c:42").experiment == ""  # not a placement of the experiment
    b = next(
        assign(experiments, "home", f"a:{n}")
        for n in range(100)
        if assign(experiments, "home", f"a:{n}").variant == "b"
    )
    assert params_for("home", b.params).realtime_weight == 2.0
    # another salt, another split: experiments are independent
    assert bucket("s", "a:1") != bucket("t", "a:1")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"holdout": 1.5}, "holdout"),
        ({"variants": []}, "variants"),
        ({"variants": [{"name": "a", "params": {"speed": 1}}]}, "unknown params"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "distinct"),
        ({"placements": ["checkout"]}, "placements"),
        ({"variants": [{"name": "a", "weight": 0}]}, "weight"),
    ],
)
def test_a_bad_experiment_is_refused_with_what_is_wrong(change: dict[str, object], needle: str) -> None:
    with pytest.raises(ExperimentError, match=needle):
        parse_experiments(json.dumps([{**EXPERIMENT, **change}]))
    with pytest.raises(ExperimentError, match="JSON"):
        parse_experiments("{not json")


@pytest.mark.parametrize(
    ("given", "source"),
    [
        ("https://www.instagram.com/p/Cx9?utm=1", "instagram.com"),
        ("http://news.example.org:8080/a", "news.example.org"),
        ("Newsletter", "newsletter"),
        ("", ""),
    ],
)
def test_a_referrer_becomes_a_segment_name(given: str, source: str) -> None:
    assert referrer_source(given) == source


def test_campaign_rules_refuse_bad_settings_prefer_an_email_and_hold_out_a_stable_share() -> None:
    from shopwise.campaigns.rules import CampaignError, CampaignSpec, held_out
    from shopwise.keys import contact_id

    with pytest.raises(CampaignError, match="kind"):
        CampaignSpec("x", "newsletter")
    with pytest.raises(CampaignError, match="holdout"):
        CampaignSpec("x", "abandoned_cart", holdout=1.0)
    assert contact_id(["a:cookie", "c:cust", "e:mail"]) == "e:mail"
    assert contact_id(["a:cookie", "c:cust"]) == "c:cust"
    assert contact_id(["a:cookie"]) == ""
    spec = CampaignSpec("x", "abandoned_cart", holdout=0.2)
    share = sum(held_out(spec, f"c:{n}") for n in range(10000)) / 10000
    assert share == pytest.approx(0.2, abs=0.015)
    assert held_out(spec, "c:1") == held_out(spec, "c:1")


def test_the_promotion_gate_refuses_a_worse_or_broken_candidate_and_says_why() -> None:
    from shopwise.lifecycle.registry import ModelRecord, gate

    active = ModelRecord("v1", status="active", validation={"ndcg@10": 0.100})
    good = ModelRecord("v2", validation={"ndcg@10": 0.099}, test={"ndcg@10": 0.1, "coverage@10": 0.4})
    assert gate(good, active).passed and gate(good, None).passed  # within 2%; or nothing to beat
    worse = ModelRecord("v3", validation={"ndcg@10": 0.090}, test={"coverage@10": 0.4})
    verdict = gate(worse, active)
    assert not verdict.passed and "more than 2% below the active version v1's 0.1000" in verdict.reasons[0]
    assert gate(worse, active, margin=0.15).passed
    broken = ModelRecord(
        "v4", validation={"ndcg@10": float("nan")}, test={"recall@20": float("inf"), "coverage@10": 0.001}
    )
    reasons = gate(broken, active).reasons
    assert len(reasons) == 3 and "not a number" in reasons[0] and "recall@20" in reasons[1] and "coverage" in reasons[2]


def test_the_gate_compares_like_for_like_when_the_job_scored_the_champion_and_ignores_noise() -> None:
    from shopwise.lifecycle.registry import ModelRecord, gate

    active = ModelRecord("v1", status="active", validation={"ndcg@10": 0.300})  # its own (easier) window

    def candidate(mine: float, theirs: float, se: float, recipe: float = 0.1, **champion: object) -> ModelRecord:
        return ModelRecord(
            "v2",
            validation={"ndcg@10": 0.100, "se/ndcg@10": 0.005},  # far below v1's own figure: not what counts
            test={"coverage@10": 0.3},
            champion={
                "version": "v1",
                "recipe": {"ndcg@10": recipe, "se/ndcg@10": 0.005},
                "test_users": 150,
                "candidate": {"ndcg@10": mine, "se/ndcg@10": se},
                "champion": {"ndcg@10": theirs, "se/ndcg@10": se},
                **champion,
            },
        )

    passed = gate(candidate(0.118, 0.124, 0.01), active)
    assert passed.passed  # 5% worse on the unseen shoppers, but within two standard errors; the recipe ties
    assert "recipe refitted on the same validation split" in passed.basis and "150 test shoppers" in passed.basis
    verdict = gate(candidate(0.080, 0.124, 0.005), active)
    assert not verdict.passed and len(verdict.reasons) == 1
    assert "on the 150 test shoppers after its data window" in verdict.reasons[0]
    assert "beyond two standard errors" in verdict.reasons[0]
    # a worse recipe is refused on the validation split even when no shopper is unseen by the champion yet
    skipped = "3 test shoppers acted after the active model's data window"
    worse_recipe = gate(candidate(0.0, 0.0, 0.0, recipe=0.2, skipped=skipped), active)
    assert (
        not worse_recipe.passed and "with its recipe refitted on the same validation split" in worse_recipe.reasons[0]
    )
    assert skipped in worse_recipe.basis
    assert gate(candidate(0.0, 0.0, 0.0, recipe=0.101, skipped=skipped), active).passed
    # a comparison with another version than the active one does not count: each model's own window, margin only
    other = candidate(0.2, 0.1, 0.0, version="v0")
    assert "on validation windows of their own" in gate(other, active).basis and not gate(other, active).passed


def test_a_stored_list_is_compressed_to_a_quarter() -> None:
    """50 picks with categories and reasons: about 3.6 KB of JSON, one write unit once compressed (what a read of the
    list pays; the load imports a list per shopper on every retrain, billed by its bytes)."""
    from shopwise.dal.capacity import item_bytes, write_units
    from shopwise.dal.recommendations import RecommendationRow, decode_row, encode_row

    picks = [
        StoredPick(f"p{n:05d}", round(1 / (n + 1), 6), f"p{n * 7 % 997:05d}", f"Toys>Outdoor>Kind {n % 4}", "Kite 42")
        for n in range(50)
    ]
    row = RecommendationRow("user#c:abc", picks, "v1")
    stored = encode_row(row, "a", ttl_days=7, now=1_000.0)
    assert decode_row(stored, now=1_000.0) == row
    as_json = json.dumps([p.encode() for p in picks], separators=(",", ":"))
    plain = {**{k: v for k, v in stored.items() if k != "z"}, "items": {"S": as_json}}  # the picks as a JSON string
    assert item_bytes(stored) * 3 < item_bytes(plain) and write_units(stored) == 1 < write_units(plain)
    assert decode_row(stored, now=1_000.0 + 8 * 86400) is None  # past its TTL
