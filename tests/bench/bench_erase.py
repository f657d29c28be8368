"""Benchmark: erasure, in-process against the local endpoint (moto server), with the real code.

Online: shoppers with a profile, four aliases (visitor, customer, email, device), sessions and a list in both slots
are built through the real stream updater, then erased one by one (``shopwise.privacy.erasure.erase``, what the
DELETE route runs): wall time per erasure, DynamoDB requests, and the rows it read and deleted.

Purge: archives of three sizes (gzip JSON Lines objects of ``--per-object`` events, as Firehose writes them) hold
the events of ``--erased`` erased shoppers among everybody else's; the purge job's code (``shopwise_jobs.purge.run``,
one instance) rewrites them. Figures per size: seconds, archived events read per second, objects rewritten. The
baseline in the same process is reading the same archive without purging (list, get, gunzip, split lines): what
the purge's checking and rewriting add on top of reading.

    .venv/bin/python tests/bench/bench_erase.py [--shoppers 30] [--sizes 20000,80000,320000] [--erased 10]

Prints a table, then one JSON line with erase_online_ms (median), erase_online_p99_ms, erase_requests,
purge_events_per_s (largest archive), read_only_events_per_s, and erasure_bound_hours (what the README promises).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shopwise import config
from shopwise.dal import erasures as records
from shopwise.dal.aws import client, dynamodb_clients
from shopwise.dal.feature_store import FeatureStore
from shopwise.dal.ledger import EventLedger
from shopwise.dal.objects import get_bytes, list_keys, put_bytes
from shopwise.dal.recommendations import RecommendationRow, activate
from shopwise.dal.serving_read import Tables
from shopwise.events import parse_event
from shopwise.ingestion.update_features import Delivery, update_features
from shopwise.keys import POPULAR_KEY, user_key
from shopwise.lifecycle.loading import load_rows
from shopwise.picks import StoredPick
from shopwise.privacy.erasure import erase
from shopwise.privacy.purge import plan
from shopwise.privacy.tombstones import blind
from shopwise_jobs.contract import TrainingContract
from shopwise_jobs.purge import run as purge_run
from shopwise_local.endpoint import free_port
from shopwise_local.stack import LocalStack

NOW = datetime.now(UTC)


@contextmanager
def aws_calls() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(model: Any, **_kwargs: Any) -> None:
        seen.append(f"{model.service_model.service_name}:{model.name}")

    handlers = [c.meta.events for c in (*dynamodb_clients(), client("s3"))]
    for events in handlers:
        events.register("before-call", count)
    try:
        yield seen
    finally:
        for events in handlers:
            events.unregister("before-call", count)


def shopper_events(n: int) -> list[dict[str, Any]]:
    tag = f"{n:05d}"
    customer, visitor = f"{n:032x}", f"visitor-{tag}"
    base: dict[str, Any] = {"pseudonymised": True}
    out: list[dict[str, Any]] = [
        {"event_type": "consent", "anonymous_id": visitor, "granted": ["personalisation", "marketing"]},
        {
            "event_type": "identify",
            "anonymous_id": visitor,
            "customer_id": customer,
            "email_hash": f"e{n:031x}",
            "device_id": f"d{n:031x}",
        },
    ]
    for s in range(3):
        for k in range(4):
            out.append(
                {
                    "event_type": "product_view",
                    "customer_id": customer,
                    "item_id": f"i{(n * 7 + k) % 500}",
                    "session_id": f"s-{tag}-{s}",
                }
            )
        out.append(
            {
                "event_type": "add_to_cart",
                "customer_id": customer,
                "item_id": f"i{n % 500}",
                "session_id": f"s-{tag}-{s}",
            }
        )
    return [
        {
            **base,
            **e,
            "event_id": f"b-{tag}-{i}",
            "occurred_at": (NOW - timedelta(hours=3, minutes=len(out) - i)).isoformat(),
        }
        for i, e in enumerate(out)
    ]


def online(tables: Tables, bucket: str, shoppers: int) -> dict[str, Any]:
    """Build shoppers through the updater, give each a list in both slots, then erase them one by one."""
    store, ledger = FeatureStore(tables.features), EventLedger(tables.ledger)
    deliveries = [Delivery(parse_event(e)) for n in range(shoppers) for e in shopper_events(n)]
    for start in range(0, len(deliveries), 100):
        update_features(deliveries[start : start + 100], store, ledger, lambda items: {})
    for version in ("bench-erase-1", "bench-erase-2"):  # a version in each slot: the serving and the standby one
        rows = [RecommendationRow(POPULAR_KEY, [StoredPick("i1", 1.0)], version)]
        rows += [RecommendationRow(user_key(f"c:{n:032x}"), [StoredPick("i1", 1.0)], version) for n in range(shoppers)]
        load_rows(rows, version, tables.lists, tables.config, 7, bucket)
        activate(tables.config, version)
    times, requests, deleted = [], [], []
    for n in range(shoppers):
        with aws_calls() as calls:
            started = time.perf_counter()
            receipt = erase([f"c:{n:032x}"], tables, bucket, "bench")
            times.append((time.perf_counter() - started) * 1000)
        requests.append(len(calls))
        deleted.append(sum(receipt.rows_deleted.values()))
    times.sort()
    return {
        "erase_online_ms": round(statistics.median(times), 2),
        "erase_online_p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "erase_requests": statistics.median(requests),
        "rows_deleted_per_erasure": statistics.median(deleted),
        "aliases_per_erasure": receipt.aliases,
    }


def build_archive(bucket: str, total: int, per_object: int, erased: list[str], erased_share: float) -> None:
    """``total`` events in objects of ``per_object``; the erased shoppers' events spread over the archive."""
    for key in list_keys(bucket, config.ARCHIVE_EVENTS_PREFIX):
        client("s3").delete_object(Bucket=bucket, Key=key)
    every = max(1, int(1 / erased_share))
    n = 0
    for obj in range((total + per_object - 1) // per_object):
        day = (NOW - timedelta(days=1 + obj % 30)).strftime("%Y-%m-%d")
        lines = []
        for _ in range(min(per_object, total - n)):
            who = erased[n % len(erased)] if n % every == 0 else f"{(n % 50_000) + 10**6:032x}"
            lines.append(
                json.dumps(
                    {
                        "event_id": f"a-{n}",
                        "event_type": "product_view",
                        "customer_id": who,
                        "item_id": f"i{n % 500}",
                        "occurred_at": (NOW - timedelta(days=1 + obj % 30)).isoformat(),
                        "pseudonymised": True,
                        "origin": "server",
                    },
                    separators=(",", ":"),
                )
            )
            n += 1
        body = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
        put_bytes(bucket, f"{config.ARCHIVE_EVENTS_PREFIX}dt={day}/hour=00/bench-{obj:05d}.jsonl.gz", body)


def read_only(bucket: str) -> tuple[float, int]:
    started = time.perf_counter()
    lines = 0
    for key in list_keys(bucket, config.ARCHIVE_EVENTS_PREFIX):
        body = get_bytes(bucket, key)
        assert body is not None
        lines += len(gzip.decompress(body).splitlines())
    return time.perf_counter() - started, lines


def purge_once(archive: str, artifacts: str, work: Path) -> dict[str, Any]:
    planned = plan(artifacts, min_age_hours=0)
    contract = TrainingContract(
        hyperparameters={"plan_bucket": artifacts, "plan_key": planned["plan_key"], "buckets": archive},
        model_dir=work / "model",
        output_data_dir=work / "output/data",
        output_dir=work / "output",
        channels={},
        job_name=f"bench-purge-{uuid.uuid4().hex[:6]}",
    )
    started = time.perf_counter()
    with aws_calls() as calls:
        tally = purge_run(contract)
    seconds = time.perf_counter() - started
    for erasure in records.pending(artifacts):  # as finish does: the next size starts from new erasures
        records.done(artifacts, str(erasure["erasure_id"]))
    return {"seconds": seconds, "requests": len(calls), **tally.__dict__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=30, help="shoppers built and erased online")
    parser.add_argument("--sizes", default="20000,80000,320000", help="archive sizes in events")
    parser.add_argument("--per-object", type=int, default=5000, help="events per archive object")
    parser.add_argument("--erased", type=int, default=10, help="shoppers erased in each purge")
    parser.add_argument("--erased-share", type=float, default=0.001, help="share of archived events that are theirs")
    args = parser.parse_args()
    os.environ.setdefault("SHOPWISE_HOME", tempfile.mkdtemp(prefix="shopwise-bench-"))
    state = Path(os.environ["SHOPWISE_HOME"])
    stack = LocalStack(state, free_port(), free_port())
    try:
        stack.start_endpoint()
        res = stack.create_resources()
        tables = Tables(
            res.lists_stem,
            res.tables["features"],
            res.tables["config"],
            res.tables["items"],
            res.tables["ledger"],
        )
        figures = online(tables, res.artifacts_bucket, args.shoppers)
        for erasure in records.pending(res.artifacts_bucket):
            records.done(res.artifacts_bucket, str(erasure["erasure_id"]))
        print(
            f"online erasure of a shopper with {figures['aliases_per_erasure']} aliases: median "
            f"{figures['erase_online_ms']} ms, p99 {figures['erase_online_p99_ms']} ms, "
            f"{figures['erase_requests']:.0f} requests, {figures['rows_deleted_per_erasure']:.0f} rows deleted"
        )
        print(
            f"\n{'events':>9} {'objects':>8} {'read s':>8} {'purge s':>8} {'events/s':>10} {'x read':>7} {'rewritten':>9}"
        )
        sizes = [int(s) for s in args.sizes.split(",")]
        runs = []
        for size in sizes:
            erased = [f"{uuid.uuid4().int % 16**32:032x}" for _ in range(args.erased)]
            build_archive(res.archive_bucket, size, args.per_object, erased, args.erased_share)
            # the erasures, as the erase function records them (the bench's shoppers are not in the feature store)
            for who in erased:
                eid = f"bench-{uuid.uuid4().hex[:8]}"
                records.put_pending(
                    res.artifacts_bucket,
                    eid,
                    {"erasure_id": eid, "erased_at": time.time(), "since": 0.0, "targets": [blind(f"c:{who}")]},
                )
            baseline, lines = read_only(res.archive_bucket)
            with tempfile.TemporaryDirectory() as work:
                result = purge_once(res.archive_bucket, res.artifacts_bucket, Path(work))
            rate = lines / result["seconds"]
            runs.append(
                {
                    "events": lines,
                    "read_s": round(baseline, 3),
                    "events_per_s": round(rate),
                    "seconds": round(float(result["seconds"]), 3),
                    "objects_read": result["objects_read"],
                    "objects_rewritten": result["objects_rewritten"],
                    "lines_removed": result["lines_removed"],
                    "requests": result["requests"],
                }
            )
            print(
                f"{lines:>9,} {result['objects_read']:>8} {baseline:>8.2f} {result['seconds']:>8.2f} {rate:>10,.0f} "
                f"{result['seconds'] / baseline:>7.2f} {result['objects_rewritten']:>9}"
            )
        bound = config.environment("prod").erasure_bound_hours()
        largest = runs[-1]
        print(f"\nerasure bound (prod configuration): {bound:.0f} hours")
        print(
            json.dumps(
                {
                    **figures,
                    "purge_events_per_s": largest["events_per_s"],
                    "read_only_events_per_s": round(largest["events"] / largest["read_s"]),
                    "purge_runs": runs,
                    "erasure_bound_hours": bound,
                }
            )
        )
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
