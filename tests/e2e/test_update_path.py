"""Fault injection on the update path, compared with the fault-free run of the same events (10,080 of them, on two
shards): duplicate delivery, shuffled order within and across batches, poison records mid-batch, throttled writes
mid-batch, the handler dying after part of its writes, consents arriving after the events they cover, a client's
whole request re-sent after 10,000 other events. Identity stitching rides along (identify events shuffled in with
the rest, linking aliases on different shards). Then the failure queue replayed, imported history backfilled, and a
throttled PutRecords at the collector.
Everything goes through the real stream, poller (Lambda's retry and bisect semantics), handler and feature store;
the fault sources wrap the real FeatureStore.write and .put_unconditional (items' parts), the handler's parse and
Kinesis's PutRecords answer."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shopwise.catalog.items import CatalogItem
from shopwise.dal import stream as stream_module
from shopwise.dal.aws import client
from shopwise.dal.catalog import put_items
from shopwise.dal.feature_store import Doc, FeatureStore
from shopwise.dal.stream import shard_ids
from shopwise.events import EventRejected
from shopwise.ingestion import update_features as update_module
from shopwise.ingestion import updater as updater_module
from shopwise.ingestion.backfill import imported_objects
from shopwise.keys import entity_key, entity_of
from shopwise_local import cli
from shopwise_local.stack import LocalStack
from tests.compare import merge_item_parts, normalised

from .conftest import Api, drain

pytestmark = pytest.mark.e2e

CUSTOMERS, VISITORS, ITEMS, EVENTS = 6, 6, 15, 240  # at scale 1
# the fault run's scale: 8 (1,920 events) in `make test`; `make test-faults` runs it at 42 (10,080 events)
FAULT_SCALE = int(os.environ.get("SHOPWISE_FAULT_SCALE", "8"))
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)  # both runs share their times


class Died(BaseException):
    """What a Lambda process killed mid-invocation looks like to the caller: nothing handled it."""


def make_events(prefix: str, scale: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(consents, the rest): every shopper grants personalisation first; then views, cart adds and removes,
    purchases, searches in sessions and two markets, and identify events that stitch visitors to customers (whose
    partition keys, and so shards, differ)."""
    rng = random.Random(11)
    items = ITEMS * scale

    def base(n: int | str, kind: str, who: dict[str, str], seconds: int) -> dict[str, Any]:
        return {
            "event_id": f"{prefix}-{n}",
            "event_type": kind,
            "occurred_at": (START + timedelta(seconds=seconds)).isoformat(),
            "pseudonymised": True,  # these records stand for what the collector published
            **who,
        }

    people = [{"customer_id": f"{prefix}-cust-{i}"} for i in range(CUSTOMERS * scale)]
    people += [{"anonymous_id": f"{prefix}-visitor-{i}"} for i in range(VISITORS * scale)]
    consents = [{**base(f"c{i}", "consent", who, 0), "granted": ["personalisation"]} for i, who in enumerate(people)]
    rest: list[dict[str, Any]] = []
    for n in range(EVENTS * scale):
        who = people[rng.randrange(len(people))]
        item = f"{prefix}-item-{rng.randrange(items)}"
        kind = rng.choice(["product_view"] * 4 + ["add_to_cart", "remove_from_cart", "purchase", "search"])
        event = base(n, kind, who, 10 + rng.randrange(10_000))
        event["session_id"] = f"{prefix}-s-{sorted(who.values())[0]}-{int(event['occurred_at'][11:13]) // 2}"
        event["market"] = rng.choice([f"{prefix}-m1", f"{prefix}-m2"])
        if n % 9 == 0:
            event["referrer"] = "https://search.example/"
        if kind == "purchase":
            event.update(order_id=f"{prefix}-o{n}", items=[{"item_id": item, "quantity": 2, "unit_price": 5.0}])
        elif kind == "search":
            event.update(query="red shoes", results=[item])
        else:
            event["item_id"] = item
        rest.append(event)
    # visitor i is customer i (and visitor 5 shares a device with customer 0, and so joins visitor 0 and customer 0)
    for i in (i for i in range(3 * scale) if i != 5):
        link = {"anonymous_id": f"{prefix}-visitor-{i}", "customer_id": f"{prefix}-cust-{i}"}
        rest.append({**base(f"l{i}", "identify", link, 5000 + i), "device_id": f"{prefix}-device-{i}"})
    rest.append(
        {**base("l-5", "identify", {"anonymous_id": f"{prefix}-visitor-5"}, 6000), "device_id": f"{prefix}-device-0"}
    )
    return consents, rest


def clean_run(stack: LocalStack, prefix: str, other: str, scale: int = 1, wait: float = 120) -> dict[str, Any]:
    """The catalog of two runs' items, and the fault-free run of ``prefix``'s events (each once, in order): its
    snapshot, which the faulty run of ``other`` must end equal to."""
    assert stack.resources and stack.poller
    for run in (prefix, other):
        put_items(
            stack.resources.tables["items"],
            [CatalogItem(item_id=f"{run}-item-{i}", category=f"{run}-cat-{i % 4}") for i in range(ITEMS * scale)],
        )
    consents, rest = make_events(prefix, scale)
    put(stack, as_records(consents + sorted(rest, key=lambda e: e["occurred_at"])))
    assert stack.poller.wait_idle(wait)
    return snapshot(stack, prefix)


def put(stack: LocalStack, records: list[tuple[str, bytes]]) -> None:
    assert stack.resources
    for start in range(0, len(records), 50):
        client("kinesis").put_records(
            StreamName=stack.resources.stream,
            Records=[{"PartitionKey": key, "Data": data} for key, data in records[start : start + 50]],
        )


def as_records(events: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    return [(e.get("customer_id") or e["anonymous_id"], json.dumps(e).encode()) for e in events]


def snapshot(stack: LocalStack, prefix: str) -> dict[str, Any]:
    """Every feature document of one run (profiles, sessions, items, segments, aliases), with the run's prefix
    taken out so two runs compare. High-water marks, release marks and versions are book-keeping, not features."""
    assert stack.resources
    table = stack.resources.tables["features"]
    state: dict[str, Any] = {}
    items: dict[str, dict[str, Any]] = {}
    pages = client("dynamodb").get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    for row in (row for page in pages for row in page["Items"]):
        key = row["pk"]["S"]
        if f"{prefix}-" not in key:
            continue
        doc = json.loads(row["doc"]["S"].replace(f"{prefix}-", ""))
        if entity_of(key) == "item":  # an item is its parts merged: which part took an event is book-keeping
            items[key.replace(f"{prefix}-", "")] = doc
            continue
        doc.pop("released", None)  # book-keeping: digests of the run's own consent ids
        merged_into = row.get("merged_into", {}).get("S", "").replace(f"{prefix}-", "")
        if merged_into:  # a tombstone: where it points; the aliases it had gathered depend on the merges' order
            doc.pop("aliases", None)
        state[key.replace(f"{prefix}-", "")] = normalised({"doc": doc, "merged_into": merged_into})
    state.update({k: normalised({"doc": doc, "merged_into": ""}) for k, doc in merge_item_parts(items).items()})
    return state


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Wraps the real writes: the conditional one, and the batch write of items' parts (one document at a time
    counts as a write). Once armed: the first invocation's 3rd write is throttled (its records are handed back for a
    retry); a later one dies at its 6th write, after part of its writes landed."""
    real_write, real_put = FeatureStore.write, FeatureStore.put_unconditional
    count = {"armed": 0, "throttled": 0, "died": 0, "stores": 0}

    def fault(store: FeatureStore) -> None:
        if count["armed"]:
            if not hasattr(store, "test_nth"):  # one FeatureStore per invocation: number them
                count["stores"] += 1
                store.test_nth, store.test_writes = count["stores"], 0  # type: ignore[attr-defined]
            store.test_writes += 1  # type: ignore[attr-defined]
            nth, writes = store.test_nth, store.test_writes  # type: ignore[attr-defined]
            if nth == 1 and writes == 3:
                count["throttled"] += 1
                raise RuntimeError("ProvisionedThroughputExceededException (injected)")
            if nth >= 2 and writes == 6 and not count["died"]:
                count["died"] += 1
                raise Died("killed after part of its writes (injected)")

    def faulty_write(self: FeatureStore, doc: Any) -> None:
        fault(self)
        real_write(self, doc)

    def faulty_put(self: FeatureStore, docs: list[Doc]) -> dict[str, str]:
        throttled: dict[str, str] = {}
        for n, doc in enumerate(docs):
            try:
                fault(self)
            except RuntimeError as exc:
                throttled[doc.key] = str(exc)  # left unprocessed, as a throttled batch write leaves items
            except Died:
                real_put(self, [d for d in docs[:n] if d.key not in throttled])  # what landed before it died
                raise
        return {**throttled, **real_put(self, [d for d in docs if d.key not in throttled])}

    monkeypatch.setattr(FeatureStore, "write", faulty_write)
    monkeypatch.setattr(FeatureStore, "put_unconditional", faulty_put)
    yield count


@pytest.fixture
def outcomes(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, set[str]]]:
    """What became of each event over every invocation: the handler's real update_features, recorded."""
    real = update_module.update_features
    seen: dict[str, set[str]] = {}

    def recording(*args: Any, **kwargs: Any) -> update_module.UpdateOutcome:
        outcome = real(*args, **kwargs)
        for event_id, status in outcome.by_event.items():
            seen.setdefault(status, set()).add(event_id)
        return outcome

    monkeypatch.setattr(updater_module, "update_features", recording)
    yield seen


def test_faults_leave_the_same_features_as_a_clean_run(
    stack: LocalStack, faults: dict[str, int], outcomes: dict[str, set[str]]
) -> None:
    assert stack.resources and stack.poller
    queue = stack.resources.failure_queue_url
    drain(queue)
    clean = clean_run(stack, "clean", "noisy", FAULT_SCALE, wait=600)  # each event once, in order, no faults

    # the faulty run: the same events, a third delivered twice, shuffled, two poison records, and the faults; a
    # third of the consents arrive after the events they cover (a throttled PutRecords retried behind them), and
    # a client re-sends a whole request of 200 events after all the others (same ids, new sequence numbers)
    consents, rest = make_events("noisy", FAULT_SCALE)
    rng = random.Random(5)
    records = as_records(rest + rng.sample(rest, len(rest) // 3))
    rng.shuffle(records)
    records.insert(50, ("x", b"not json at all"))
    records.insert(120, ("y", json.dumps({"event_id": "bad", "event_type": "product_view"}).encode()))
    late = consents[::3]
    put(stack, as_records([c for c in consents if c not in late]))
    assert stack.poller.wait_idle(60)
    invocations_before = stack.poller.stats.invocations
    faults["armed"] = 1
    put(stack, records)
    assert stack.poller.wait_idle(600)
    faults["armed"] = 0
    put(stack, as_records(late + rest[:200]))
    assert stack.poller.wait_idle(120)

    assert faults["throttled"] == 1 and faults["died"] == 1  # both faults really happened
    assert stack.poller.stats.invocations > invocations_before + len(records) // 100 + 1  # and were retried
    noisy = snapshot(stack, "noisy")
    assert len(clean) > 50 * FAULT_SCALE  # profiles, sessions, items and aliases: a real comparison
    assert {k.split("#")[0] for k in clean} == {"profile", "session", "item", "alias"}
    assert noisy == clean

    # stitching: visitor 1's history is on customer 1's profile; visitor 5 joined customer 0 through a device
    assert noisy["profile#a:visitor-1"]["merged_into"] == "c:cust-1"
    assert noisy["profile#a:visitor-5"]["merged_into"] == "c:cust-0"
    assert noisy["alias#d:device-0"]["doc"] == {"profile": "c:cust-0"}

    # the counts close: every record is applied or rejected with a reason
    poison = {body["sequenceNumber"]: body for body in drain(queue)}  # at least once: keyed by record
    assert sorted(p["data"] for p in poison.values()) == sorted(
        ["not json at all", '{"event_id": "bad", "event_type": "product_view"}']
    )
    assert all(p["reason"] and p["condition"] == "PoisonRecord" for p in poison.values())
    sent = {event_key(e) for e in consents + rest}
    settled = set().union(*(outcomes.get(k, set()) for k in ("applied", "duplicate", "unrouted", "released")))
    waited = outcomes.get("held", set()) & sent
    assert waited and waited <= outcomes["released"]  # what waited for a late consent was released when it came
    # every good event settled: applied, or found applied already (a re-delivery, or a retry of a batch whose
    # invocation died after writing it), or feeding no entity (a search); none was left waiting for a retry
    assert sent <= settled
    assert outcomes["retry"] & sent  # the throttled write's records were retried ...
    assert outcomes["retry"] <= settled  # ... and settled
    assert len(outcomes["duplicate"] & sent) >= len(rest) // 3 - 5  # the re-deliveries were recognised
    searches = {event_key(e) for e in rest if e["event_type"] == "search"}
    # a search feeds no entity unless it has a referrer (then the session: at once, or once a late consent came)
    assert {event_key(e) for e in rest if e["event_type"] == "search" and "referrer" not in e} <= outcomes["unrouted"]
    assert outcomes["unrouted"] & sent <= searches


def event_key(raw: dict[str, Any]) -> str:
    """How the updater's outcome names an event: its source (the profile id it was sent under) and its id."""
    source = f"c:{raw['customer_id']}" if raw.get("customer_id") else f"a:{raw['anonymous_id']}"
    return f"{source} {raw['event_id']}"


def test_same_ids_client_retries_and_a_late_consent_through_the_stream(
    stack: LocalStack, outcomes: dict[str, set[str]]
) -> None:
    """Through the real stream (two shards), poller and handler: two shoppers who both send "e1"; a client that
    re-sends its whole request after 5,200 other shoppers' events of the same market and item; a consent that
    PutRecords retried behind the events it covers."""
    assert stack.resources and stack.poller
    features = FeatureStore(stack.resources.tables["features"])
    assert shard_ids(stack.resources.stream) == ["0", "1"]
    start = START + timedelta(hours=1)

    def raw(event_id: str, kind: str, who: str, minutes: float, **extra: Any) -> dict[str, Any]:
        body = {
            "event_id": event_id,
            "event_type": kind,
            "occurred_at": (start + timedelta(minutes=minutes)).isoformat(),
            "pseudonymised": True,
            "anonymous_id": who,
            "market": "retry-m",
            **extra,
        }
        if kind == "consent":
            body["granted"] = ["personalisation"]
        return body

    def profile(who: str) -> dict[str, Any]:
        doc = features.read([f"profile#a:{who}"])[f"profile#a:{who}"]
        return dict(doc.data.get("features", {}))

    def views(item: str) -> int:  # the item's parts (one per shard: both took views), merged
        assert stack.resources
        found = features.item_features([item], shard_ids(stack.resources.stream)).get(item)
        return sum(c[0] for c in found.buckets.values()) if found else 0

    twins = []
    for who in ("retry-ann", "retry-bob"):  # the same event ids
        twins += [raw("e0", "consent", who, 0), raw("e1", "product_view", who, 1, item_id="retry-i1")]
    request = [
        raw("c", "consent", "retry-cat", 0),
        raw("v", "product_view", "retry-cat", 1, item_id="retry-i2"),
        raw("p", "purchase", "retry-cat", 2, order_id="o1", items=[{"item_id": "retry-i2", "unit_price": 7.5}]),
    ]
    late = [raw(f"l{n}", "product_view", "retry-newcomer", 5 + n, item_id=f"retry-n{n}") for n in range(3)]
    put(stack, as_records(twins + request + late))
    assert stack.poller.wait_idle(60)
    put(stack, as_records([raw("lc", "consent", "retry-newcomer", 1)]))  # granted at minute 1, arrives last
    others = [raw(f"o{n}", "product_view", f"retry-o{n % 400}", 3, item_id="retry-i2") for n in range(5200)]
    put(stack, as_records(others))
    assert stack.poller.wait_idle(180)
    put(stack, as_records(request))  # the client's retry: same ids, new sequence numbers, 5,200 events later
    assert stack.poller.wait_idle(60)

    assert profile("retry-ann")["recent"]["view"][0][0] == "retry-i1"  # both "e1"s are events
    assert profile("retry-bob")["recent"]["view"][0][0] == "retry-i1" and views("retry-i1") == 2
    cat = profile("retry-cat")
    assert (cat["orders"], cat["revenue"], cat["counts"]["view"]) == (1, 7.5, 1)  # the retry counted once
    assert views("retry-i2") == 5201
    newcomer = profile("retry-newcomer")
    assert {i for i, _at in newcomer["recent"]["view"]} == {"retry-n0", "retry-n1", "retry-n2"}
    duplicates = {f"a:retry-cat {e['event_id']}" for e in request}
    assert duplicates <= outcomes["duplicate"]  # the retry was recognised, event by event
    assert not outcomes.get("retry", set()) & duplicates


@pytest.fixture
def broken(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """While set: writes of the ``keys`` documents fail (a partition throttled for longer than the stream retries),
    and the handler rejects events of ``bad_type`` (a validation bug, fixed before the replay). Both wrap the real
    code: the store's conditional write, the handler's parse."""
    state: dict[str, Any] = {"keys": set(), "bad_type": ""}
    real_write = FeatureStore.write

    def write(self: FeatureStore, doc: Any) -> None:
        if entity_key(doc.key) in state["keys"]:  # an item: every part of it
            raise RuntimeError(f"ProvisionedThroughputExceededException on {doc.key} (injected)")
        real_write(self, doc)

    handler = stack.functions["update_features"].module
    real_parse = handler.event_of

    def parse(data: Any) -> Any:
        event = real_parse(data)
        if event.event_type == state["bad_type"]:
            raise EventRejected("event_type", "rejected by a validation bug (injected)")
        return event

    real_put = FeatureStore.put_unconditional

    def put(self: FeatureStore, docs: list[Doc]) -> dict[str, str]:  # items' parts: left unprocessed
        failing = {d.key: "unprocessed (injected)" for d in docs if entity_key(d.key) in state["keys"]}
        return {**failing, **real_put(self, [d for d in docs if d.key not in failing])}

    monkeypatch.setattr(FeatureStore, "write", write)
    monkeypatch.setattr(FeatureStore, "put_unconditional", put)
    monkeypatch.setattr(handler, "event_of", parse)
    yield state


def test_what_the_stream_gave_up_on_is_replayed_from_the_cli_once_and_completely(
    stack: LocalStack, broken: dict[str, Any]
) -> None:
    """An item and a customer's profile whose writes fail through every retry, and a validation bug that sends every
    cart removal to the failure queue as poison; the stream moves on, and later records raise the entities' marks
    past the failed ones. ``shopwise failures replay`` (through the CloudFormation-resolved target) then leaves the
    features a clean run has, a second replay changes nothing, and only a record that is still poison stays queued."""
    assert stack.resources and stack.poller
    queue = stack.resources.failure_queue_url
    drain(queue)
    clean = clean_run(stack, "calm", "lost")

    consents, rest = make_events("lost")
    rest.sort(key=lambda e: e["occurred_at"])
    put(stack, as_records(consents))
    assert stack.poller.wait_idle(60)
    given_up = stack.poller.stats.records_failed_to_destination
    broken.update(keys={"item#lost-item-3", "profile#c:lost-cust-2"}, bad_type="remove_from_cart")
    put(stack, as_records(rest[: len(rest) // 2]))
    assert stack.poller.wait_idle(180)
    broken.update(keys=set(), bad_type="")
    put(stack, [*as_records(rest[len(rest) // 2 :]), ("x", b"not json at all")])  # the stream moved on
    assert stack.poller.wait_idle(120)
    assert stack.poller.stats.records_failed_to_destination > given_up  # the stream really gave up on records
    before = snapshot(stack, "lost")
    assert before != clean and before["item#item-3"] != clean["item#item-3"]

    code, listed = run_cli("failures", "list", "--json")
    rows = json.loads(listed)
    kinds = Counter(r["kind"] for r in rows)
    assert code == 0 and kinds["batch"] >= 1 and kinds["poison"] >= 2
    assert {r["reason"] for r in rows if r["kind"] == "batch"} == {"RetryAttemptsExhausted"}
    assert "lost-" not in listed  # coordinates and reasons: no record's data, no shopper's id

    code, out = run_cli("--stack", "shopwise-local", "failures", "replay", "--no-progress")
    assert code == 1 and "still poison" in out  # the record that is not JSON stays
    assert snapshot(stack, "lost") == clean
    code, out = run_cli("failures", "replay", "--no-progress")
    assert "0 events applied" in out and snapshot(stack, "lost") == clean  # a second replay: nothing twice
    left = drain(queue)
    assert [m.get("data") for m in left] == ["not json at all"]


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def test_records_the_stream_no_longer_holds_are_replayed_from_the_archive(
    stack: LocalStack, broken: dict[str, Any]
) -> None:
    """A batch given up on whose records have left the stream (its shard is gone: past retention, or resharded):
    the replay reads the archive's copies of the hours the batch arrived in; only the events whose ledger rows say
    they failed act, so the thousands of other archived events change nothing."""
    assert stack.resources and stack.poller
    queue = stack.resources.failure_queue_url
    drain(queue)
    clean = clean_run(stack, "still", "aged")

    consents, rest = make_events("aged")
    put(stack, as_records(consents))
    assert stack.poller.wait_idle(60)
    broken.update(keys={"item#aged-item-5"})
    put(stack, as_records(rest))
    assert stack.poller.wait_idle(180)
    broken.update(keys=set())
    assert snapshot(stack, "aged") != clean
    sqs = client("sqs")
    for body in drain(queue):  # the same messages, as if their shard had expired
        body["KinesisBatchInfo"]["shardId"] = "shardId-000000000099"
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))

    code, out = run_cli("failures", "replay", "--no-progress")
    assert code == 0 and "0 records re-read from the stream" in out
    assert int(out.split(" records re-read from the stream, ")[1].split(" ")[0]) > len(rest)  # archive copies
    assert snapshot(stack, "aged") == clean and not drain(queue)


def test_imported_history_reaches_the_feature_store_once(stack: LocalStack, tmp_path: Path) -> None:
    """`shopwise import events` archives the history and backfills it into the feature store; a second backfill
    skips what is done, and importing the same file again (same event ids) applies nothing twice."""
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    lines = ["user_id,item_id,timestamp,event_type,granted,price,quantity,session_id"]
    for u in range(4):
        at = day + timedelta(hours=u)
        lines.append(f"hist-u{u},,{at.isoformat()},consent,personalisation,,,")
        for n in range(3):
            lines.append(
                f"hist-u{u},hist-item-{u % 2},{(at + timedelta(minutes=n + 1)).isoformat()},product_view,,,,s{u}"
            )
        lines.append(f"hist-u{u},hist-item-0,{(at + timedelta(minutes=9)).isoformat()},purchase,,12.5,2,s{u}")
    history = tmp_path / "history.csv"
    history.write_text("\n".join(lines) + "\n")

    code, out = run_cli("import", "events", str(history), "--no-progress")
    assert code == 0 and "20 rows imported" in out and "backfill: 1 archive objects applied" in out
    code, shown = run_cli("features", "profile", "hist-u1")
    profile = json.loads(shown)
    assert code == 0 and (profile["orders"], profile["revenue"]) == (1, 25.0)
    assert profile["recent_viewed"] == ["hist-item-1"] and profile["recent_purchased"] == ["hist-item-0"]
    assert stack.resources
    code, shown = run_cli("features", "item", "hist-item-0")  # (the backfill folds the item's shared part)
    item = json.loads(shown)
    assert code == 0 and (item["views_7d"], item["purchases_7d"]) == (6, 8)  # 2 shoppers x 3 views; 4 x 2 units

    code, out = run_cli("backfill", "--no-progress")
    assert code == 0 and "0 archive objects applied" in out and "done before" in out
    code, out = run_cli("import", "events", str(history), "--no-progress")  # the same file again, the same day
    assert code == 0 and "backfill: 0 archive objects applied, 1 done before" in out
    assert len([k for k in imported_objects(stack.resources.archive_bucket) if "/import-history-" in k]) == 1
    history.write_text(history.read_text() + "\n")  # another file (another day's objects) with the same events
    code, out = run_cli("import", "events", str(history), "--no-progress")
    assert code == 0 and "backfill: 1 archive objects applied" in out and " 0 applied" in out
    again = json.loads(run_cli("features", "profile", "hist-u1")[1])
    assert (again["orders"], again["revenue"], again["recent_viewed"]) == (1, 25.0, ["hist-item-1"])
    assert json.loads(run_cli("features", "item", "hist-item-0")[1]) == item


@pytest.mark.parametrize("via", ["function", "job"])
def test_a_file_larger_than_a_chunk_with_bad_rows_is_imported_in_the_stack_by_the_function_or_the_job(
    stack: LocalStack, tmp_path: Path, via: str
) -> None:
    """`shopwise import` uploads the file and the stack imports it — the import function reading the object as it
    streams, or the import job on its copy (a SageMaker script-mode job) — through the same bulk code: 60,012 rows,
    12 of them bad, make two archive objects of pseudonymised events, the bad rows' lines and reasons in the report
    and all of them in errors.jsonl; the same file again writes the same objects."""
    from shopwise.dal.objects import get_bytes, list_keys, read_archive

    assert stack.resources
    history = tmp_path / f"bulk-{via}.csv.gz"
    bad_lines = set()
    with gzip.open(history, "wt") as handle:
        handle.write("user_id,item_id,timestamp,event_type,price,quantity\n")
        for n in range(60_012):
            line = n + 2  # the header is line 1
            if n % 5_001 == 17:
                bad_lines.add(line)
                handle.write(f'bulk-u{n % 900},bulk-i{n % 300},2026-11-0{1 + n % 9}T10:00:00Z,purchase,"12,50",two\n')
            else:
                handle.write(f"bulk-u{n % 900},bulk-i{n % 300},2026-11-0{1 + n % 9}T10:00:00Z,product_view,,\n")
    code, out = run_cli("import", "events", str(history), "--via", via, "--no-backfill", "--no-progress")
    assert code == 0, out
    assert f"{history.name}: 60000 rows imported, 12 rejected" in out and f"by the {via}" in out
    assert f"line {min(bad_lines)}: " in out
    import_id = out.split("import ", 2)[-1].split(" ", 1)[0]
    artifacts, archive = stack.resources.artifacts_bucket, stack.resources.archive_bucket
    errors = [
        json.loads(line) for line in (get_bytes(artifacts, f"imports/{import_id}/errors.jsonl") or b"").splitlines()
    ]
    assert {e["line"] for e in errors} == bad_lines and all("is not a number" in e["reason"] for e in errors), errors[
        :2
    ]
    report = json.loads(get_bytes(artifacts, f"imports/{import_id}/report.json") or b"{}")
    assert report["state"] == "done" and report["rows"] == 60_012 and len(report["keys"]) == 2
    written = [k for k in list_keys(archive, "events/") if f"/import-bulk-{via}." in k or f"/import-bulk-{via}-" in k]
    assert sorted(written) == sorted(report["keys"])
    assert all(k.endswith(".parquet") for k in written)  # the archive's table, as Firehose converts the stream
    first = list(read_archive(archive, written[0]))
    assert len(first) == 50_000 and not any(r.get("customer_id") == "bulk-u1" for r in first if r)  # pseudonyms
    assert all(r and r["pseudonymised"] and r["origin"] == "import" for r in first)
    code, out = run_cli("import", "events", str(history), "--via", via, "--no-backfill", "--no-progress")
    again = json.loads(
        get_bytes(artifacts, f"imports/{out.split('import ', 2)[-1].split(' ', 1)[0]}/report.json") or b"{}"
    )
    assert code == 0 and again["keys"] == report["keys"]  # named by content: the same objects, not a copy


def test_a_consent_putrecords_refused_reaches_the_updater_after_the_events_and_still_covers_them(
    stack: LocalStack, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kinesis refuses the consent's record in the collector's PutRecords (a throttled shard) and takes the views;
    the collector retries the consent, which reaches the stream — and the updater, in a later batch — after the
    events it covers. The views still reach the shopper's profile. The fault is in Kinesis's answer on the wire
    (botocore's events, on the client the collector publishes with): the collector's retry is the real one."""
    assert stack.poller
    state: dict[str, Any] = {"held_back": [], "refused": 0}

    def hold_back_consents(params: dict[str, Any], **_: Any) -> None:
        records = params["Records"]
        consents = [n for n, r in enumerate(records) if b'"consent"' in r["Data"]]
        if consents and not state["refused"] and len(consents) < len(records):
            state["held_back"] = consents
            params["Records"] = [r for n, r in enumerate(records) if n not in consents]

    def answer_throttled(parsed: dict[str, Any], **_: Any) -> None:
        held = state["held_back"]
        if not held:
            return
        state["held_back"], state["refused"] = [], len(held)
        results = list(parsed["Records"])
        for n in held:  # the refused entries in their places, as Kinesis answers a partial failure
            results.insert(n, {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "(injected)"})
        parsed.update(Records=results, FailedRecordCount=len(held))
        assert stack.poller and stack.poller.wait_idle(30)  # the views are applied before the consent is retried

    hooked: list[Any] = []

    def publishers_client(service: str) -> Any:
        made = client(service)  # whichever client the process holds now (a reconnect makes new ones)
        if service == "kinesis" and made not in hooked:
            made.meta.events.register("provide-client-params.kinesis.PutRecords", hold_back_consents)
            made.meta.events.register("after-call.kinesis.PutRecords", answer_throttled)
            hooked.append(made)
        return made

    monkeypatch.setattr(stream_module, "client", publishers_client)
    try:
        status, body = api.post(
            "/v1/events",
            {
                "events": [
                    {
                        "event_id": "late-consent",
                        "event_type": "consent",
                        "occurred_at": (START + timedelta(minutes=1)).isoformat(),
                        "anonymous_id": "throttled-visitor",
                        "granted": ["personalisation"],
                    },
                    *(
                        {
                            "event_id": f"late-view-{n}",
                            "event_type": "product_view",
                            "occurred_at": (START + timedelta(minutes=2 + n)).isoformat(),
                            "anonymous_id": "throttled-visitor",
                            "item_id": f"throttled-item-{n}",
                        }
                        for n in range(3)
                    ),
                ]
            },
        )
    finally:
        for made in hooked:
            made.meta.events.unregister("provide-client-params.kinesis.PutRecords", hold_back_consents)
            made.meta.events.unregister("after-call.kinesis.PutRecords", answer_throttled)
    assert status == 200 and body["accepted"] == 4 and state["refused"] == 1  # refused once, then retried
    assert stack.poller.wait_idle(60)
    code, shown = run_cli("features", "profile", "throttled-visitor", "--anonymous")
    assert code == 0 and set(json.loads(shown)["recent_viewed"]) == {f"throttled-item-{n}" for n in range(3)}
