import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shopwise.events import Event, parse_event
from shopwise.features.definitions import (
    FEATURES,
    ITEM_HOURLY_HOURS,
    RECENT_LIMIT,
    VIEW_LOG_LIMIT,
    Context,
    ItemFeatures,
    ProfileFeatures,
    SessionFeatures,
    apply_to_item,
    apply_to_profile,
    apply_to_session,
    merge_profiles,
)
from shopwise.picks import StoredPick
from tests.compare import normalised

T0 = datetime(2026, 11, 20, tzinfo=UTC)
CONTEXT = Context({f"sku-{n}": f"cat-{n % 3}" for n in range(40)})


def ev(n: int, kind: str, minutes: float, **extra: Any) -> Event:
    body: dict[str, Any] = {
        "event_id": f"e{n}",
        "event_type": kind,
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "anonymous_id": "v",
        "session_id": "s1",
        **extra,
    }
    if kind == "purchase":
        body.setdefault("order_id", f"o{n}")
        body.setdefault("items", [{"item_id": extra.pop("item_id", "sku-1"), "quantity": 2, "unit_price": 5.0}])
        body.pop("item_id", None)
    if kind == "consent":
        body.setdefault("granted", ["personalisation"])
    return parse_event(body)


def history() -> list[Event]:
    rng = random.Random(3)
    events = [ev(0, "consent", 0)]
    for n in range(1, 80):
        kind = rng.choice(["product_view", "product_view", "add_to_cart", "remove_from_cart", "purchase"])
        events.append(ev(n, kind, 1 + rng.random() * 5000, item_id=f"sku-{rng.randrange(30)}", market="DE"))
    return events


def test_every_feature_is_declared_once() -> None:
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names))
    assert {f.entity for f in FEATURES} == {"profile", "session", "item", "segment"}


def test_profile_features_do_not_depend_on_arrival_order_or_batching() -> None:
    events = history()
    once = apply_to_profile(ProfileFeatures(), events, CONTEXT).to_json()
    shuffled = events[:]
    random.Random(9).shuffle(shuffled)
    state = ProfileFeatures()
    for start in range(1, len(shuffled), 7):  # consent first (a grant arriving later does not reach back)
        state = apply_to_profile(state, [events[0], *shuffled[start : start + 7]], CONTEXT)
    state = apply_to_profile(state, [e for e in shuffled[:1] if e.event_id != "e0"], CONTEXT)
    assert normalised(state.to_json()) == normalised(once)
    assert once["counts"]["view"] > 0 and once["orders"] > 0 and once["affinity"]


def test_recent_lists_are_newest_first_deduplicated_and_bounded() -> None:
    events = [ev(0, "consent", 0)] + [ev(n, "product_view", n, item_id=f"sku-{n}") for n in range(1, 30)]
    events.append(ev(99, "product_view", 100, item_id="sku-2"))
    state = apply_to_profile(ProfileFeatures(), events, CONTEXT)
    viewed = state.recent_items("view")
    assert len(viewed) == RECENT_LIMIT
    assert viewed[0] == "sku-2" and viewed.count("sku-2") == 1
    assert viewed[1:4] == ["sku-29", "sku-28", "sku-27"]
    # the view log keeps repeats, newest VIEW_LOG_LIMIT views: sku-2's first view (minute 2) has fallen out
    assert len(state.view_log) == VIEW_LOG_LIMIT and state.view_log[-1][1] == "sku-2"
    assert state.view_counts(T0.timestamp())["sku-2"] == 1
    again = apply_to_profile(state, [ev(100 + n, "product_view", 200 + n, item_id="sku-5") for n in range(3)], CONTEXT)
    assert again.view_counts((T0 + timedelta(minutes=150)).timestamp()) == {"sku-5": 3}


def test_without_consent_nothing_reaches_the_profile_and_a_revoke_stops_updates() -> None:
    view = ev(1, "product_view", 10, item_id="sku-1")
    assert apply_to_profile(ProfileFeatures(), [view], CONTEXT).counts["view"] == 0
    revoke = parse_event({**ev(5, "consent", 20).model_dump(), "granted": [], "revoked": ["personalisation"]})
    later = ev(2, "product_view", 30, item_id="sku-2")
    state = apply_to_profile(ProfileFeatures(), [ev(0, "consent", 0), view, revoke, later], CONTEXT)
    assert state.recent_items("view") == ["sku-1"]
    assert state.consented((T0 + timedelta(minutes=15)).timestamp())
    assert not state.consented((T0 + timedelta(minutes=25)).timestamp())


def test_the_cart_follows_adds_removes_and_purchases_in_time_order() -> None:
    events = [
        ev(0, "consent", 0),
        ev(1, "add_to_cart", 1, item_id="sku-1", quantity=2),
        ev(2, "add_to_cart", 2, item_id="sku-2"),
        ev(3, "remove_from_cart", 3, item_id="sku-1"),
        ev(4, "purchase", 4, item_id="sku-2"),
        ev(5, "add_to_cart", 5, item_id="sku-3"),
    ]
    state = apply_to_profile(ProfileFeatures(), list(reversed(events)), CONTEXT)
    assert state.current_cart() == {"sku-1": 1, "sku-3": 1}
    assert state.orders == 1 and state.revenue == pytest.approx(10.0)
    assert state.last_purchase_at == (T0 + timedelta(minutes=4)).timestamp()


def test_merging_profiles_commutes_and_equals_one_profile_with_all_events() -> None:
    events = history()
    a = apply_to_profile(ProfileFeatures(), [events[0], *events[1:40]], CONTEXT)
    b = apply_to_profile(ProfileFeatures(), [events[0], *events[40:]], CONTEXT)
    ab, ba = merge_profiles(a, b).to_json(), merge_profiles(b, a).to_json()
    assert normalised(ab) == normalised(ba)
    whole = apply_to_profile(ProfileFeatures(), events, CONTEXT).to_json()
    assert normalised(ab) == normalised(whole)


def test_session_features() -> None:
    events = [
        ev(1, "product_view", 5, item_id="sku-1", referrer="https://search.example/?q=x"),
        ev(2, "product_view", 1, item_id="sku-4"),
        ev(3, "add_to_cart", 7, item_id="sku-1"),
        ev(4, "product_view", 9, item_id="sku-5", referrer="https://later.example/"),
        ev(5, "product_view", 11, item_id="sku-6"),
    ]
    state = apply_to_session(SessionFeatures(), events, CONTEXT)
    again = apply_to_session(SessionFeatures(), events[::-1], CONTEXT)
    assert state.to_json() == again.to_json()
    assert state.referrer[1] == "https://search.example/?q=x"
    assert [item for _at, item in state.first_views] == ["sku-4", "sku-1", "sku-5"]
    assert state.page_views == 4 and state.categories == {"cat-1": 3, "cat-2": 1, "cat-0": 1}


def test_item_windows_and_trend() -> None:
    now = T0 + timedelta(days=8)
    old = [ev(n, "product_view", -60 * 24 * 3 + 8 * 60 * 24 + n, item_id="sku-1") for n in range(10)]  # 3 days ago
    fresh = [ev(100 + n, "product_view", 8 * 60 * 24 - 30, item_id="sku-1") for n in range(5)]  # 30 min ago
    bought = ev(200, "purchase", 8 * 60 * 24 - 10, item_id="sku-1")
    state = apply_to_item(ItemFeatures(), "sku-1", old + fresh + [bought])
    windows = state.windows(now.timestamp())
    assert (windows["views_1h"], windows["views_24h"], windows["views_7d"]) == (5, 5, 15)
    assert windows["purchases_1h"] == 2  # units
    assert windows["trending"] > 1.0  # the last day is busier than the week's mean
    # buckets older than the window are dropped as newer ones arrive
    ancient = apply_to_item(state, "sku-1", [ev(300, "product_view", -60 * 24 * 30, item_id="sku-1")])
    assert len(ancient.buckets) == len(state.buckets)


def test_item_buckets_fold_into_days_in_any_order_and_stay_small() -> None:
    """A week of hourly activity: the hours older than a day are days, the document is under 1 KB, and the same
    events folded in another order and other batches give the same buckets."""
    events = [ev(n, "product_view", n * 37, item_id="sku-1") for n in range(7 * 24 * 60 // 37)]
    one = apply_to_item(ItemFeatures(), "sku-1", events)
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    other = ItemFeatures()
    for start in range(0, len(shuffled), 17):
        other = apply_to_item(other, "sku-1", shuffled[start : start + 17])
    assert other.buckets == one.buckets
    assert len(one.buckets) <= ITEM_HOURLY_HOURS + 7  # two days of hours and the days before them
    assert len(json.dumps(one.to_json(), separators=(",", ":"))) < 1024
    assert ItemFeatures.from_json(one.to_json()).buckets == one.buckets
    newest = max(e.occurred_at.timestamp() for e in events)
    for now in (newest, newest + 6 * 3600):  # the 24 h window is exact: hours whose end is inside it
        hours = {int(e.occurred_at.timestamp() // 3600 * 3600) for e in events}
        inside = {h for h in hours if h + 3600 > now - 86400 and h <= now}
        expected = sum(1 for e in events if int(e.occurred_at.timestamp() // 3600 * 3600) in inside)
        assert one.windows(now)["views_24h"] == expected
    assert one.windows(newest)["views_7d"] == len(events)


def test_an_items_parts_merged_equal_one_document_that_took_every_event() -> None:
    """Ten days of views, carts and purchases dealt at random to three parts (the shards' and the shared one), each
    part folded in its own batches: merged, they hold the buckets one document folding everything holds — hours
    rolled into days and old days dropped by the newest event of any part — and the same windows."""
    rng = random.Random(11)
    kinds = ["product_view"] * 6 + ["add_to_cart", "purchase"]
    events = [ev(n, rng.choice(kinds), rng.uniform(0, 10 * 24 * 60), item_id="sku-1") for n in range(600)]
    dealt: list[list[Event]] = [[], [], []]
    for event in events:
        dealt[rng.randrange(3)].append(event)
    dealt[2] = [e for e in dealt[2] if e.occurred_at < T0 + timedelta(days=4)]  # a part whose newest is old
    events = dealt[0] + dealt[1] + dealt[2]
    one = apply_to_item(ItemFeatures(), "sku-1", events)
    parts = []
    for mine in dealt:
        part = ItemFeatures()
        for start in range(0, len(mine), 23):
            part = apply_to_item(part, "sku-1", mine[start : start + 23])
        parts.append(ItemFeatures.from_json(part.to_json()))  # as stored
    merged = ItemFeatures.merged(parts)
    assert len(parts[2].buckets) > 0 and parts[2].buckets != one.buckets
    assert merged.buckets == one.buckets
    newest = max(e.occurred_at.timestamp() for e in events)
    for now in (newest, newest + 3 * 3600, newest + 2 * 86400):
        assert merged.windows(now) == one.windows(now)
    assert ItemFeatures.merged([]).buckets == {} and ItemFeatures.merged([one]).buckets == one.buckets


def test_a_failed_read_of_the_serving_rows_leaves_the_views_and_lands_the_features() -> None:
    from shopwise.ingestion.update_features import Delivery, update_features
    from tests.fakes import MemoryLedger, MemoryStore

    def broken(keys: list[str]) -> dict[str, list[StoredPick]]:
        raise TimeoutError("recommendations table throttled")

    store = MemoryStore()
    events = [ev(0, "consent", 0), ev(1, "product_view", 1, item_id="i1")]
    outcome = update_features([Delivery(e) for e in events], store, MemoryLedger(), lambda items: {}, rows=broken)
    assert outcome.views_skipped.startswith("TimeoutError") and not outcome.failed
    profile = next(d for k, d in store.docs.items() if k.startswith("profile#"))
    assert profile.data["features"]["recent"]["view"][0][0] == "i1" and "serving" not in profile.data


def test_the_stored_forms_are_asdicts_and_share_no_container_with_the_features() -> None:
    """``to_json`` is written out field by field for speed: it must stay ``dataclasses.asdict``'s result (every field,
    revenue rounded) and, like asdict, copy the containers, so changing the stored form leaves the features alone."""
    import dataclasses

    profile = apply_to_profile(ProfileFeatures(), history(), CONTEXT)
    referred = ev(900, "product_view", 2, item_id="sku-2", referrer="https://search.example/")
    session = apply_to_session(SessionFeatures(profile_id="p1"), [*history(), referred], CONTEXT)
    assert all(getattr(profile, f.name) for f in dataclasses.fields(profile))  # every field filled: all compared
    assert all(getattr(session, f.name) for f in dataclasses.fields(session))
    for features, expected in (
        (profile, {**dataclasses.asdict(profile), "revenue": round(profile.revenue, 6)}),
        (session, dataclasses.asdict(session)),
    ):
        stored = features.to_json()
        assert stored == expected and list(stored) == list(expected)
        for name, value in stored.items():
            if isinstance(value, list | dict):
                before = json.dumps(getattr(features, name))
                value.clear()
                assert json.dumps(getattr(features, name)) == before, name
        for name in ("recent", "affinity") if features is profile else ("items",):
            inner = features.to_json()[name]
            first = next(iter(inner.values())) if isinstance(inner, dict) else inner
            first[0].append("changed") if isinstance(first[0], list) else first.append("changed")
            assert "changed" not in json.dumps(getattr(features, name)), name
