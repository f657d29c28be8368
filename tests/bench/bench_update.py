"""Benchmark: the feature updater, in-process against the local endpoint (moto server).

The event mix is real: the OTTO sample's shopping sessions (clicks, cart adds, orders; ../shared/data/otto-sample,
CC BY 4.0), each replayed by many shoppers, with a personalisation consent per shopper (90% of them), sessions,
two markets, and a catalog that gives every item one of 40 categories. The events are cut into Kinesis batches of
the deployed stacks' size (``stream_batch_size``, 500) and sent through the real update_features Lambda handler. In
the same run, on a fresh table, the same events go through a naive updater — one read-modify-write per event and
entity, the same fold functions — as the baseline. First of all (``--no-baseline`` skips it), the same mix on other ids goes through the handler as
it was before this issue's CPU work: every item document shared (a conditional PutItem each) and every call through
botocore (``before_*``, ``cpu_ratio_vs_before``); ``--client boto3`` sends the measured pass's calls through
botocore too, to tell the two changes apart.

    .venv/bin/python tests/bench/bench_update.py [--events 5000] [--batch 500] [--client wire|boto3] [--profile]
        [--unfreeze]

Prints a table, then one JSON line with events_per_s, writes_per_1000_events, wru_per_event (write units by
DynamoDB's size rules, per entity kind beside it), rru_per_event (read units of what the handler's reads returned,
counted on the wire), max_doc_kb, hot_row_writes_per_batch (the most writes one row got
in one invocation), handler_cpu_us_per_event (this process's CPU time, less the read meter's own: the local endpoint
runs in its own process),
distinct_entities_per_1000_events, naive_writes_per_1000_events (and more).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from tqdm import tqdm

from shopwise import config
from shopwise.catalog.items import CatalogItem
from shopwise.dal.aws import client, dynamodb_clients
from shopwise.dal.capacity import ReadMeter
from shopwise.dal.catalog import categories, put_items
from shopwise.dal.feature_store import FeatureStore
from shopwise.dal.ledger import EventLedger
from shopwise.events import parse_event
from shopwise.ingestion import update_features as update_module
from shopwise.ingestion import updater as updater_module
from shopwise.ingestion.update_features import Delivery, update_features
from shopwise_local.lambda_runtime import kinesis_event
from shopwise_local.paths import SHARED_DATA
from shopwise_local.stack import scratch_stack

OTTO = SHARED_DATA / "otto-sample" / "train.jsonl"
KINDS = {"clicks": "product_view", "carts": "add_to_cart", "orders": "purchase"}


def otto_sessions() -> list[list[dict[str, Any]]]:
    with OTTO.open() as handle:
        return [json.loads(line)["events"] for line in handle if line.strip()]


def make_events(total: int, prefix: str = "") -> list[dict[str, Any]]:
    """OTTO sessions replayed by shopper after shopper until ``total`` events, squeezed into the last 6 days.
    ``prefix`` on every shopper, item, session, order and event id: the same mix as other documents."""
    sessions = otto_sessions()
    now = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    shopper = 0
    while len(out) < total:
        for n, session in enumerate(sessions):
            shopper += 1
            who = (
                {"customer_id": f"{prefix}cust-{shopper}"}
                if shopper % 3 == 0
                else {"anonymous_id": f"{prefix}visitor-{shopper}"}
            )
            first = session[0]["ts"]
            start = now - timedelta(days=6) + timedelta(seconds=(shopper * 379) % (5 * 86400))
            market = "DE" if shopper % 4 else "AT"
            if shopper % 10:
                at = start - timedelta(seconds=1)
                out.append(consent(f"{prefix}consent-{shopper}", at, who))
            for k, raw in enumerate(session):
                # long OTTO sessions span weeks: keep their order, squeeze them into hours
                at = start + timedelta(seconds=(raw["ts"] - first) / 1000 / 200)
                ids = (f"{prefix}ev-{shopper}-{k}", f"{prefix}s-{shopper}-{n}", f"{prefix}o-{shopper}")
                out.append(otto_event(raw, at, *ids, f"{prefix}{raw['aid']}", who, market=market))
                if len(out) >= total:
                    return out
    return out


def otto_event(
    raw: dict[str, Any],
    at: datetime,
    event_id: str,
    session_id: str,
    order_id: str,
    item: str,
    who: dict[str, str],
    **extra: str,
) -> dict[str, Any]:
    """One OTTO sample event as a storefront event (already pseudonymised) at ``at``: a click a product view, a cart
    an add to cart, an order a purchase of the one item (``order_id``)."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "event_type": KINDS[raw["type"]],
        "occurred_at": at.isoformat(),
        "session_id": session_id,
        **extra,
        "pseudonymised": True,
        **who,
    }
    if raw["type"] == "orders":
        event.update(order_id=order_id, items=[{"item_id": item, "unit_price": 20.0}])
    else:
        event["item_id"] = item
    return event


def consent(
    event_id: str, at: datetime, who: dict[str, str], granted: tuple[str, ...] = ("personalisation",)
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "consent",
        "occurred_at": at.isoformat(),
        "granted": list(granted),
        "pseudonymised": True,
        **who,
    }


def kinesis_records(events: list[dict[str, Any]], first_sequence: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "PartitionKey": e.get("customer_id") or e["anonymous_id"],
            "SequenceNumber": str(first_sequence + n),
            "Data": json.dumps(e).encode(),
            "ApproximateArrivalTimestamp": now,
        }
        for n, e in enumerate(events)
    ]


class Counting:
    """Reads what each invocation's real FeatureStore counted (writes, write units by DynamoDB's size rules, the
    largest document, writes per row) and the entities each batch touched (no behaviour change: the real
    update_features runs)."""

    def __init__(self) -> None:
        self.writes = 0
        self.units = 0
        self.units_by_entity: dict[str, int] = {}
        self.largest = 0
        self.hot_row_writes = 0  # the most writes one row got in one invocation
        self.entities = 0
        self._update = update_module.update_features

    def count(self, store: FeatureStore) -> None:
        self.writes += store.write_requests
        self.units += store.write_units
        self.largest = max(self.largest, store.largest_item)
        self.hot_row_writes = max([self.hot_row_writes, *store.writes_by_key.values()])
        for kind, units in store.units_by_entity.items():
            self.units_by_entity[kind] = self.units_by_entity.get(kind, 0) + units

    def install(self, updater_module: Any) -> None:
        """Wrap update_features where the handler's Updater calls it (``shopwise.ingestion.updater``)."""
        counter = self

        def update(deliveries: Any, store: FeatureStore, ledger: EventLedger, *args: Any, **kwargs: Any) -> Any:
            outcome = counter._update(deliveries, store, ledger, *args, **kwargs)
            counter.entities += outcome.entities
            counter.count(store)
            counter.units += ledger.write_units
            counter.units_by_entity["ledger"] = counter.units_by_entity.get("ledger", 0) + ledger.write_units
            return outcome

        updater_module.update_features = update


class Boto3Calls:
    """boto3's client where the data-access modules call ``shopwise.dal.wire``'s: its ``query_items`` through
    boto3's paginator, everything else boto3's own."""

    def __getattr__(self, name: str) -> Any:
        return getattr(client("dynamodb"), name)

    def query_items(self, **params: Any) -> Iterator[dict[str, Any]]:
        for page in client("dynamodb").get_paginator("query").paginate(**params):
            yield from page.get("Items", [])


@contextmanager
def on_botocore() -> Iterator[None]:
    """The hot calls (BatchGetItem, BatchWriteItem, PutItem, GetItem, Query) through boto3's client, as before
    ``shopwise.dal.wire``: a benchmark-only switch, for a same-run comparison."""
    import shopwise.dal.batch as batch_module
    import shopwise.dal.feature_store as store_module
    import shopwise.dal.ledger as ledger_module
    import shopwise.dal.recommendations as recommendations_module

    name = "dynamodb"  # the name each module imported shopwise.dal.aws.dynamodb under
    saved = [(m, getattr(m, name)) for m in (batch_module, store_module, ledger_module, recommendations_module)]
    for module, _wire in saved:
        setattr(module, name, Boto3Calls)
    try:
        yield
    finally:
        for module, wire in saved:
            setattr(module, name, wire)


def print_profile(stats: Any) -> None:
    """The handler's CPU (its own time per function, summed per package) as shares: where a goal per event goes.
    The profiler slows what it measures (several times): the shares, not the seconds, are the figure."""
    by: dict[str, float] = {}
    for stat in stats:
        path = str(stat.module)
        if "site-packages/" in path:
            package = path.split("site-packages/")[1].split("/")[0]
        elif "/layers/core/shopwise/" in path:
            package = "shopwise"
        elif "/lib/python3" in path:
            package = "stdlib: " + path.split("/lib/python3")[1].split("/")[1].removesuffix(".py")
        else:
            package = "other"
        by[package] = by.get(package, 0.0) + float(stat.tsub)
    total = sum(by.values()) or 1.0
    print("handler CPU by package (yappi, every thread):", file=sys.stderr)
    for package, seconds in sorted(by.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {package:32} {100 * seconds / total:5.1f}%", file=sys.stderr)
    print("the functions with the most own CPU:", file=sys.stderr)
    for stat in sorted(stats, key=lambda st: -float(st.tsub))[:15]:
        where = str(stat.module).split("site-packages/")[-1].split("/layers/core/")[-1]
        print(f"  {100 * float(stat.tsub) / total:5.1f}%  {stat.name}  ({where}:{stat.lineno})", file=sys.stderr)


def handler_pass(
    handler: Any, events: list[dict[str, Any]], arn: str, batch: int, label: str
) -> tuple[dict[str, Any], Counting]:
    """The events through the real handler in Kinesis batches of one shard: latencies, this process's CPU, the wall
    time, the read meter (every DynamoDB call, reads in units), and the store's counts."""
    counting = Counting()
    counting.install(updater_module)
    meter = ReadMeter().attach(*dynamodb_clients())  # the handler's own clients: what it reads, in read units
    latencies: list[float] = []
    cpu = 0.0
    started = time.perf_counter()
    for start in tqdm(range(0, len(events), batch), desc=label, unit="batch"):
        records = kinesis_records(events[start : start + batch], 10**20 + start)
        t0, c0 = time.perf_counter(), time.process_time()
        answer = handler.invoke(kinesis_event(records, arn, "shardId-000000000000"))
        latencies.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0
        if answer["batchItemFailures"]:
            raise RuntimeError(f"batch at {start} had failures: {answer['batchItemFailures'][:3]}")
    elapsed = time.perf_counter() - started
    meter.detach(*dynamodb_clients())
    cpu -= meter.cpu_seconds  # the meter's own work in the handler's threads is the benchmark's, not the handler's
    return {"latencies": latencies, "cpu": cpu, "elapsed": elapsed, "meter": meter}, counting


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument(
        "--batch",
        type=int,
        default=config.environment("prod").stream_batch_size,
        help="records a batch (default: the deployed stacks' stream_batch_size)",
    )
    parser.add_argument("--naive-events", type=int, default=1000, help="the naive baseline is slow: a prefix")
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first run the same mix (other ids) as the design before: every item write conditional, one a call, "
        "and every call through botocore",
    )
    parser.add_argument(
        "--client",
        choices=("wire", "boto3"),
        default="wire",
        help="how the measured pass sends the hot calls: shopwise.dal.wire (as deployed) or boto3's client",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print the handler's CPU per package, over every thread (yappi)"
    )
    parser.add_argument(
        "--unfreeze",
        action="store_true",
        help="unfreeze what the handler's imports made (shopwise.heap) once it has loaded: the handler as it was",
    )
    args = parser.parse_args()
    if args.profile:
        import yappi

        yappi.set_clock_type("cpu")

    with scratch_stack() as resources:
        from shopwise_local.lambda_runtime import LocalFunction

        handler = LocalFunction("update_features")
        if args.unfreeze:
            gc.unfreeze()  # every collection walks the imports' objects again, as before the handler froze them
        events = make_events(args.events)
        before_events = make_events(args.events, prefix="before-") if args.baseline else []
        items = sorted(
            {
                e.get("item_id") or e["items"][0]["item_id"]
                for e in events + before_events
                if e["event_type"] != "consent"
            }
        )
        put_items(
            resources.tables["items"],
            [CatalogItem(item_id=i, category=f"cat-{zlib.crc32(i.encode()) % 40}") for i in items],
        )
        arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{resources.stream}"
        if args.baseline:  # first, so that the tables' growth in the endpoint tells against today's design
            real_writer_key = update_module._writer_key
            update_module._writer_key = lambda key, d: key  # every item document shared: conditional single writes
            try:
                with on_botocore():
                    before, _counting = handler_pass(handler, before_events, arn, args.batch, "before: items shared")
            finally:
                update_module._writer_key = real_writer_key
        if args.profile:
            yappi.start()
        with on_botocore() if args.client == "boto3" else nullcontext():
            now, counting = handler_pass(handler, events, arn, args.batch, f"update_features handler ({args.client})")
        if args.profile:
            yappi.stop()
            print_profile(yappi.get_func_stats())
        latencies, cpu, elapsed, meter = now["latencies"], now["cpu"], now["elapsed"], now["meter"]
        coalesced_writes = counting.writes

        # the naive baseline on a fresh table: one event at a time (one write per event and entity)
        naive_table = resources.tables["features"] + "-naive"
        ddb = client("dynamodb")
        ddb.create_table(
            TableName=naive_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        naive_ledger = resources.tables["ledger"] + "-naive"
        ddb.create_table(
            TableName=naive_ledger,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        naive_events = events[: args.naive_events]
        store, ledger = FeatureStore(naive_table), EventLedger(naive_ledger)
        lookup = lambda ids: categories(resources.tables["items"], ids)  # noqa: E731
        t0 = time.perf_counter()
        for n, raw in enumerate(tqdm(naive_events, desc="naive updater", unit="event")):
            one = [Delivery(parse_event(raw), str(10**20 + n), "shardId-000000000000")]
            update_features(one, store, ledger, lookup)
        naive_elapsed = time.perf_counter() - t0
        naive_writes, naive_units = store.write_requests, store.write_units + ledger.write_units

    per_k = 1000 / len(events)
    result = {
        "events": len(events),
        "batch_size": args.batch,
        "events_per_s": round(len(events) / elapsed, 1),
        "batch_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "batch_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "writes_per_1000_events": round(coalesced_writes * per_k, 1),
        "wru_per_event": round(counting.units / len(events), 2),
        "wru_per_event_by_entity": {k: round(v / len(events), 2) for k, v in sorted(counting.units_by_entity.items())},
        "rru_per_event": round(meter.units / len(events), 3),
        "read_calls_per_event": round(meter.calls / len(events), 3),
        "max_doc_kb": round(counting.largest / 1024, 1),
        "hot_row_writes_per_batch": counting.hot_row_writes,
        "handler_cpu_us_per_event": round(cpu / len(events) * 1e6, 1),
        "ddb_calls_per_event": round(meter.requests / len(events), 3),
        "ddb_calls_per_event_by_operation": {
            op: round(n / len(events), 3) for op, n in sorted(meter.by_operation.items(), key=lambda kv: -kv[1])
        },
        "distinct_entities_per_1000_events": round(counting.entities * per_k, 1),
        "naive_events": len(naive_events),
        "naive_events_per_s": round(len(naive_events) / naive_elapsed, 1),
        "naive_writes_per_1000_events": round(naive_writes * 1000 / len(naive_events), 1),
        "naive_wru_per_event": round(naive_units / len(naive_events), 2),
    }
    result["write_reduction_vs_naive"] = round(
        result["naive_writes_per_1000_events"] / max(result["writes_per_1000_events"], 1e-9), 2
    )
    result["speedup_vs_naive"] = round(result["events_per_s"] / max(result["naive_events_per_s"], 1e-9), 2)
    result["client"] = args.client
    if args.baseline:  # the same handler, every item document shared (conditional single writes), botocore
        n = len(before_events)
        result["before_handler_cpu_us_per_event"] = round(before["cpu"] / n * 1e6, 1)
        result["before_ddb_calls_per_event"] = round(before["meter"].requests / n, 3)
        result["before_wru_per_event"] = round(_counting.units / n, 2)
        result["before_events_per_s"] = round(n / before["elapsed"], 1)
        result["cpu_ratio_vs_before"] = round(
            result["handler_cpu_us_per_event"] / max(result["before_handler_cpu_us_per_event"], 1e-9), 3
        )
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
