"""The updater's exactly-once rules, each against the in-memory store and ledger: an event is its source and its id;
a client's repeat is caught however many other events came between; marks survive merges; long alias chains; a
consent that arrives after the events it covers still applies to them; documents are bounded in bytes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shopwise.dal.capacity import ITEM_LIMIT_BYTES, item_bytes, write_units
from shopwise.dal.feature_store import Doc
from shopwise.events import parse_event
from shopwise.features.definitions import (
    CART_LOG_LIMIT,
    CONSENT_LOG_LIMIT,
    RECENT_LIMIT,
    SESSION_LOG_LIMIT,
    VIEW_LOG_LIMIT,
    ProfileFeatures,
)
from shopwise.features.identity import link, resolve
from shopwise.ingestion.update_features import Delivery, UpdateOutcome, update_features
from shopwise.keys import alias_key, entity_key, item_key, profile_key
from tests.compare import merge_item_parts, normalised
from tests.fakes import MemoryLedger, MemoryStore

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
SHARD = "shardId-000000000000"


class Stream:
    """Records as a shard hands them out: increasing sequence numbers; ``send`` is one PutRecords."""

    def __init__(self) -> None:
        self.next = 10**20
        self.store, self.ledger = MemoryStore(), MemoryLedger()

    def send(self, raws: list[dict[str, Any]]) -> list[Delivery]:
        out = []
        for raw in raws:
            self.next += 1
            out.append(Delivery(parse_event(raw), str(self.next), SHARD))
        return out

    def apply(self, deliveries: list[Delivery]) -> UpdateOutcome:
        return update_features(deliveries, self.store, self.ledger, lambda items: {i: "shoes" for i in items})

    def profile(self, alias: str) -> ProfileFeatures:
        target, docs = resolve(self.store, [alias])
        return ProfileFeatures.from_json(docs[profile_key(target[alias])].data.get("features"))

    def item_views(self, item: str) -> int:
        """The item's views, its parts merged (the stream's shard part, the replays' shared part)."""
        merged = merge_item_parts({k: d.data for k, d in self.store.docs.items()})
        return sum(c[0] for c in merged[item_key(item)]["buckets"].values())


def ev(event_id: str, kind: str, minutes: float, who: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id,
        "event_type": kind,
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "pseudonymised": True,
        "session_id": f"s-{who}",
        **({"customer_id": who[2:]} if who.startswith("c:") else {"anonymous_id": who[2:]}),
        **extra,
    }
    if kind == "consent":
        body.setdefault("granted", ["personalisation"])
        body.pop("session_id")
    if kind == "purchase":
        body.update(order_id=f"o-{event_id}", items=[{"item_id": extra.pop("item_id", "i1"), "unit_price": 10.0}])
        body.pop("item_id", None)
    return body


def test_two_shoppers_with_the_same_event_ids_are_two_shoppers_events() -> None:
    s = Stream()
    for who in ("a:ann", "a:bob"):
        s.apply(s.send([ev("consent-1", "consent", 0, who), ev("e1", "product_view", 1, who, item_id="i1")]))
    assert s.profile("a:ann").recent_items("view") == ["i1"] and s.profile("a:bob").recent_items("view") == ["i1"]
    assert s.item_views("i1") == 2


def test_a_clients_retry_after_thousands_of_other_events_is_a_duplicate() -> None:
    s = Stream()
    mine = [ev("c", "consent", 0, "c:ann"), ev("v", "product_view", 1, "c:ann", item_id="i1")]
    mine.append(ev("p", "purchase", 2, "c:ann", item_id="i1", market="DE"))
    s.apply(s.send(mine))
    # 5,200 other shoppers' views of the same market and item: no count of them pushes ann's events out
    others = [ev(f"x{n}", "product_view", 3, f"a:v{n}", item_id="i1", market="DE") for n in range(5200)]
    for start in range(0, len(others), 500):
        s.apply(s.send(others[start : start + 500]))
    retried = s.apply(s.send(mine))  # the whole request again: same ids, new sequence numbers
    assert retried.duplicates == 3 and retried.applied == 0 and retried.entity_writes == 0
    profile = s.profile("c:ann")
    assert (profile.orders, profile.revenue, profile.counts["view"]) == (1, 10.0, 1)
    assert s.item_views("i1") == 5201


def test_the_streams_retry_of_a_record_is_not_a_duplicate_and_applies_once() -> None:
    s = Stream()
    batch = s.send([ev("c", "consent", 0, "a:ann"), ev("v", "product_view", 1, "a:ann", item_id="i1")])
    s.apply(batch)
    again = s.apply(batch)  # the same records (same sequence numbers): the entities' marks say they are applied
    assert again.duplicates == 2 and again.entity_writes == 0
    assert s.item_views("i1") == 1 and s.profile("a:ann").counts["view"] == 1


def test_a_consent_that_arrives_after_the_events_it_covers_still_applies_to_them() -> None:
    """PutRecords throttled the consent and retried it behind the shopper's first events (a later batch)."""
    s = Stream()
    who = "a:newcomer"
    views = [ev(f"v{n}", "product_view", 5 + n, who, item_id=f"i{n}") for n in range(3)]
    cart = ev("cart", "add_to_cart", 9, who, item_id="i1")
    first = s.apply(s.send([*views, cart]))
    assert first.held == 4 and profile_key(who) not in s.store.docs  # waiting, not in a profile
    assert s.item_views("i0") == 1  # the item aggregates took them at once

    late = s.apply(s.send([ev("consent", "consent", 1, who)]))  # granted at minute 1, covers minutes 5-9
    assert late.released == 4
    profile = s.profile(who)
    assert set(profile.recent_items("view")) == {"i0", "i1", "i2"} and profile.current_cart() == {"i1": 1}
    assert s.store.docs[f"session#s-{who}"].data["page_views"] == 3
    assert s.item_views("i0") == 1  # not counted twice

    s.apply(s.send([ev("consent", "consent", 1, who)]))  # the client re-sends the consent: nothing more
    again = s.profile(who)
    assert again.counts == profile.counts and s.store.docs[f"session#s-{who}"].data["page_views"] == 3


def test_a_consent_reordered_inside_a_batch_or_granted_after_the_events_does_not_cover_them() -> None:
    s = Stream()
    who = "a:later"
    # granted at minute 10: the views at minutes 1-2 happened without consent and stay out of the profile
    s.apply(s.send([ev("v1", "product_view", 1, who, item_id="i1"), ev("v2", "product_view", 2, who, item_id="i2")]))
    s.apply(s.send([ev("c", "consent", 10, who), ev("v3", "product_view", 11, who, item_id="i3")]))
    assert s.profile(who).recent_items("view") == ["i3"]


def test_same_result_whatever_the_batches_and_order() -> None:
    """Consents, views, carts, purchases of 30 shoppers, each event twice, shuffled into batches: the features equal
    those of one clean pass."""
    raws = []
    for n in range(30):
        who = f"a:s{n}"
        raws.append(ev(f"c{n}", "consent", 0, who))
        raws += [ev(f"v{n}-{k}", "product_view", 1 + k, who, item_id=f"i{k % 7}") for k in range(6)]
        raws.append(ev(f"p{n}", "purchase", 9, who, item_id=f"i{n % 7}"))
    clean = Stream()
    clean.apply(clean.send(raws))
    noisy = Stream()
    twice = raws + raws
    random.Random(4).shuffle(twice)
    for start in range(0, len(twice), 37):
        noisy.apply(noisy.send(twice[start : start + 37]))

    def features(stream: Stream) -> dict[str, Any]:
        return normalised({k: d.data for k, d in stream.store.docs.items()})

    assert features(noisy) == features(clean) and len(clean.store.docs) > 60


def test_marks_survive_a_merge_so_a_rerouted_retry_is_neither_lost_nor_counted_twice() -> None:
    s = Stream()
    visitor, customer = "a:cookie", "c:acct"
    batch = s.send([ev("cv", "consent", 0, visitor), ev("v1", "product_view", 1, visitor, item_id="i1")])
    s.apply(batch)
    s.apply(s.send([ev("cc", "consent", 0, customer), ev("v2", "product_view", 2, customer, item_id="i2")]))
    s.apply(s.send([ev("login", "identify", 3, customer, anonymous_id="cookie")]))
    assert s.store.docs[profile_key(visitor)].merged_into == customer
    s.apply(batch)  # the stream retries the visitor's batch: re-routed to the customer, already applied there
    profile = s.profile(customer)
    assert profile.counts["view"] == 2 and set(profile.recent_items("view")) == {"i1", "i2"}
    # and a record of the visitor's that had not landed before the merge lands after it, on the customer
    s.apply(s.send([ev("v3", "product_view", 4, visitor, item_id="i3")]))
    assert s.profile(customer).counts["view"] == 3


def test_alias_chains_are_compressed_and_a_long_one_fails_only_its_own_events() -> None:
    store = MemoryStore()
    aliases = [f"a:hop{n}" for n in range(12)]
    for n in range(len(aliases) - 1):  # each cookie logs in beside the next: profile 0 ends on the last survivor
        link(store, [aliases[n], aliases[n + 1]])
    target, _ = resolve(store, [aliases[-1]])
    survivor = target[aliases[-1]]
    rows = [store.docs[alias_key(a)].data.get("profile") for a in aliases if alias_key(a) in store.docs]
    assert rows and all(r == survivor for r in rows)  # every alias row points at the survivor: one hop

    # a chain written by an older version (tombstones 70 deep, no alias rows): that alias alone is unresolved
    for n in range(70):
        store.write(Doc(profile_key(f"a:old{n}"), {"aliases": []}, merged_into=f"a:old{n + 1}"))
    target, _ = resolve(store, ["a:old0", "a:fine"])
    assert target == {"a:old0": "", "a:fine": "a:fine"}
    s = Stream()
    s.store = store
    outcome = s.apply(s.send([ev("x", "consent", 0, "a:old0"), ev("y", "consent", 0, "a:fine")]))
    assert set(outcome.failed) == {"alias#a:old0"} and profile_key("a:fine") in store.docs


def test_a_profile_at_every_bound_with_long_non_ascii_ids_fits_an_item() -> None:
    """Every list at its limit, every id 128 characters of a 3-byte script: the document and its marks stay far
    below DynamoDB's 400 KB, and the store refuses a document over it before writing."""
    at = T0.timestamp()
    item = "商" * 128
    profile = ProfileFeatures(
        recent={k: [[f"{item}{n}", at + n] for n in range(RECENT_LIMIT)] for k in ("view", "cart", "purchase")},
        affinity={f"{item}{n}": [1.5, at] for n in range(30)},
        cart_log=[[at + n, f"{item}{n}", f"{item}{n}", 1] for n in range(CART_LOG_LIMIT)],
        view_log=[[at + n, f"{item}{n}"] for n in range(VIEW_LOG_LIMIT)],
        consent=[[at + n, f"{item}{n}", "personalisation", True] for n in range(CONSENT_LOG_LIMIT)],
        sessions=[[f"{item}{n}", at + n] for n in range(SESSION_LOG_LIMIT)],
        market=["DE", at],
    )
    marks = {f"{n}/c:{'p' * 43}{n}": "4" * 56 for n in range(64)}
    aliases = [f"a:{item}{n}" for n in range(32)]
    doc = Doc(profile_key("c:" + "p" * 43), {"features": profile.to_json(), "aliases": aliases}, hwm=marks)
    size = item_bytes(doc.to_item())
    print(f"worst-case profile: {size / 1024:.0f} KB")
    assert 100 * 1024 < size < ITEM_LIMIT_BYTES / 2  # a real worst case, and half the limit to spare
    stored = doc.to_item()["doc"]["S"]
    assert "商" in stored and "\\u5546" not in stored  # UTF-8 (3 bytes a character), not 6-byte escapes

    from shopwise.dal.feature_store import FeatureStore, TooLarge

    huge = Doc("profile#c:x", {"features": {"blob": "x" * ITEM_LIMIT_BYTES}})
    with pytest.raises(TooLarge):
        FeatureStore("unused")._item(huge)
    # an item's part over the limit is refused alone, with why, before any call (no endpoint here: none is made)
    part = Doc("item@0#sku", {"buckets": {"1": ["x" * ITEM_LIMIT_BYTES]}})
    refused = FeatureStore("unused").put_unconditional([part])
    assert (
        list(refused) == ["item@0#sku"]
        and refused["item@0#sku"].startswith("TooLarge: item@0#sku")
        and not part.version
    )


def test_write_units_follow_dynamodbs_size_rules() -> None:
    assert item_bytes({"pk": {"S": "abc"}}) == 5
    assert item_bytes({"n": {"N": "12345"}}) == 1 + 4  # 5 significant digits: 3 + 1 bytes
    assert item_bytes({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + 1 + 1 + 2
    # UTF-8 bytes, not characters, in names and strings; the other types through the general rules
    assert item_bytes({"größe": {"S": "naïve €"}}) == 7 + 10
    assert item_bytes({"b": {"B": b"\x00\x01"}, "t": {"BOOL": True}, "l": {"L": [{"N": "1"}, {"S": "é"}]}}) == (
        1 + 2 + 1 + 1 + 1 + 3 + (1 + 2) + (1 + 2)
    )
    assert write_units({"pk": {"S": "x" * 1000}}) == 1 and write_units({"pk": {"S": "x" * 1030}}) == 2
    assert write_units({"pk": {"S": "x"}}, transactional=True) == 2


class Broken(MemoryStore):
    """A store whose writes of some documents fail (a throttled or broken partition) until mended."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: set[str] = set()

    def write(self, doc: Doc) -> None:
        if entity_key(doc.key) in self.broken:  # an item: every part of it
            raise RuntimeError(f"ProvisionedThroughputExceededException on {doc.key} (injected)")
        super().write(doc)


def shoppers_events(n: int) -> list[dict[str, Any]]:
    raws = []
    for k in range(n):
        who = f"a:r{k}"
        raws += [ev(f"c{k}", "consent", 0, who), ev(f"v{k}", "product_view", 1 + k, who, item_id="hot")]
        raws.append(ev(f"p{k}", "purchase", 2 + k, who, item_id="cold" if k == 0 else "hot"))
    return raws


def test_a_failed_record_replayed_after_the_stream_moved_on_lands_once_everywhere() -> None:
    """The stream gives up on a batch whose ``item#cold`` write keeps failing and goes on: later records raise the
    marks of the other entities past it. The replay (the same records, via "failed") applies the failed event to
    the entity that missed it and to nothing twice; a second replay, or the archive's copy, applies nothing."""
    raws = shoppers_events(4)
    clean = Stream()
    clean.apply(clean.send(raws))

    s = Stream()
    s.store = Broken()
    s.store.broken.add("item#cold")
    first = s.send(raws[:3])  # shopper 0: consent, a view of "hot", a purchase of "cold"
    for _attempt in range(3):  # the stream's retries, all failing on the cold item
        outcome = s.apply(first)
        # (the document that failed: the shard's part of the item)
        assert set(outcome.failed) == {"item@0#cold"} and outcome.failed_records == {first[2].record_id}
    purchase = s.ledger.rows[first[2].claim_key]
    assert purchase.done == frozenset({"profile", "session#s-a:r0"})  # what has it: not the cold item
    assert s.ledger.rows[first[1].claim_key].done is None  # a clean event's row carries no account
    s.apply(s.send(raws[3:]))  # the stream moved on: later records of the shard
    s.store.broken.clear()

    replay = s.apply([replace(d, via="failed") for d in first])
    assert replay.applied == 1 and not replay.failed  # only the purchase, only on the cold item
    assert s.ledger.rows[first[2].claim_key].done == frozenset({"profile", "session#s-a:r0", "item#cold"})
    again = s.apply([replace(d, via="failed") for d in first])
    archived = s.apply([Delivery(d.event, via="archive") for d in s.send(raws)])  # copies: no shard, no sequence
    assert again.entity_writes == 0 and archived.entity_writes == 0 and archived.duplicates == len(raws)

    def features(stream: Stream) -> dict[str, Any]:
        return normalised(merge_item_parts({k: d.data for k, d in stream.store.docs.items()}))

    assert "item#cold" in s.store.docs and "item#cold" not in clean.store.docs  # the replay took the shared part
    assert features(s) == features(clean)


def test_a_poison_record_replayed_after_a_fix_is_applied_everywhere_though_the_marks_are_past_it() -> None:
    raws = shoppers_events(3)
    clean = Stream()
    clean.apply(clean.send(raws))
    s = Stream()
    deliveries = s.send(raws)
    poisoned = deliveries[4]  # shopper 1's view of "hot": never parsed, so never claimed
    s.apply([d for d in deliveries if d is not poisoned])
    assert s.item_views("hot") == 2 and s.profile("a:r1").counts.get("view", 0) == 0
    s.apply([replace(poisoned, via="failed")])  # "hot" and the profile hold marks beyond its sequence number
    assert s.item_views("hot") == 3 and s.profile("a:r1").counts["view"] == 1
    s.apply([replace(poisoned, via="failed")])
    assert normalised(merge_item_parts({k: d.data for k, d in s.store.docs.items()})) == normalised(
        merge_item_parts({k: d.data for k, d in clean.store.docs.items()})
    )


def test_an_archive_copy_of_a_failed_event_replays_it_when_the_stream_no_longer_holds_the_record() -> None:
    raws = shoppers_events(2)
    s = Stream()
    s.store = Broken()
    s.store.broken.add("profile#a:r1")
    batch = s.send(raws)
    s.apply(batch)
    failed = {k for k, c in s.ledger.rows.items() if c.done is not None}
    assert failed == {d.claim_key for d in batch[3:]}  # shopper 1's consent, view and purchase
    s.store.broken.clear()
    copies = [Delivery(parse_event(r), via="archive") for r in raws]  # from the archive: no coordinates
    outcome = s.apply(copies)
    assert outcome.duplicates == 3 and outcome.applied == 3  # shopper 0's clean events are left alone
    profile = s.profile("a:r1")
    assert (profile.orders, profile.counts["view"]) == (1, 1) and s.item_views("hot") == 2


def test_a_replay_after_the_shopper_merged_does_not_fold_the_event_into_the_profile_again() -> None:
    """The failed purchase had reached the visitor's profile; the visitor then logged in, and the profile was merged
    into the customer's. The replay routes it to the customer's profile, which holds it already (by the merge)."""
    s = Stream()
    s.store = Broken()
    s.store.broken.add("item#cold")
    first = s.send([ev("cv", "consent", 0, "a:v"), ev("pv", "purchase", 1, "a:v", item_id="cold")])
    s.apply(first)
    s.store.broken.clear()
    s.apply(s.send([ev("cc", "consent", 0, "c:acct"), ev("login", "identify", 3, "c:acct", anonymous_id="v")]))
    assert s.store.docs[profile_key("a:v")].merged_into == "c:acct" and s.profile("c:acct").orders == 1
    s.apply([replace(d, via="failed") for d in first])
    assert s.profile("c:acct").orders == 1 and s.item_views("cold") == 0  # the profile did not take it again ...
    assert s.store.docs["item#cold"].data["buckets"]  # ... the item did, on its shared part (the replays')


def test_events_held_for_a_consent_are_released_by_a_merge_that_brings_one() -> None:
    """The customer's consent is late; meanwhile the customer logs in beside a cookie whose visitor had consented.
    The merged profile's consent covers the customer's held events: they are folded in then (once), not lost."""
    s = Stream()
    s.apply(s.send([ev("cv", "consent", 0, "a:cookie"), ev("vv", "product_view", 1, "a:cookie", item_id="i1")]))
    held = s.apply(s.send([ev("vc", "product_view", 2, "c:acct", item_id="i2"), ev("pc", "purchase", 3, "c:acct")]))
    assert held.held == 2 and held.by_event["c:acct vc"] == "held"
    merged = s.apply(s.send([ev("login", "identify", 4, "c:acct", anonymous_id="cookie")]))  # the login carries them
    assert merged.by_event["c:acct pc"] == "released" and merged.by_event["c:acct vc"] == "released"
    s.apply(s.send([ev("later", "product_view", 5, "c:acct", item_id="i3")]))
    profile = s.profile("c:acct")
    assert profile.orders == 1 and set(profile.recent_items("view")) == {"i1", "i2", "i3"}
    s.apply(s.send([ev("cc", "consent", 0, "c:acct"), ev("more", "product_view", 6, "c:acct", item_id="i4")]))
    again = s.profile("c:acct")  # the customer's own late consent releases nothing twice
    assert again.orders == 1 and again.counts["view"] == 4


def test_live_profiles_and_items_carry_their_activity_index_entry_and_nothing_else_does() -> None:
    from shopwise.dal.feature_store import Doc
    from shopwise.keys import activity_key, activity_keys

    at = datetime(2026, 12, 1, 15, 30, tzinfo=UTC).timestamp()
    profile = Doc("profile#c:x", {"features": {"last_event_at": at}}).to_item()
    assert profile["active"]["S"] == activity_key("profile#c:x", at) and profile["active"]["S"].startswith(
        "profile#2026-12-01#"
    )
    item = Doc("item#i1", {"buckets": {str(int(at // 3600)): [1]}}).to_item()  # its newest hourly bucket
    assert item["active"]["S"].startswith("item#2026-12-01#")
    assert item["active"]["S"] in activity_keys("item", at - 86400, at)
    assert profile["active"]["S"] not in activity_keys("profile", at + 86400, at + 2 * 86400)
    merged = Doc("profile#a:y", {"features": {"last_event_at": at}}, merged_into="c:x").to_item()
    session = Doc("session#s", {"last_event_at": at}).to_item()
    assert "active" not in merged and "active" not in session  # a merged profile leaves the index
