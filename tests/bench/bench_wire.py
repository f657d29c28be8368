"""Benchmark: the CPU of one DynamoDB call through boto3's client and through ``shopwise.dal.wire``, in this
process, against the local endpoint (moto server, its own process): what the update path's and the serve path's
calls cost before any of shopwise's work.

    .venv/bin/python tests/bench/bench_wire.py [--rounds 200]

Each call is made ``--rounds`` times by each client, the two alternating round by round (so that the machine's
drift tells on both alike); the figure is the median thread CPU time of a call, in µs. Calls: BatchGetItem of 1 key
and of 65 keys (feature-store rows of 3 KB: a batch's catalog or document read), BatchWriteItem of 25 such rows (a
chunk of item parts), a conditional PutItem (a profile). Then the parts of a call measured alone: signing (the wire
client's SigV4 against botocore's ``SigV4Auth``, the same request) and the catalog lookup of a batch's 65 ids
(``shopwise.dal.catalog.categories`` against the same read through PynamoDB's model, which it used to be).

Prints a table, then one JSON line: per call, ``before_us`` (boto3's client, botocore's signer, PynamoDB),
``now_us`` (the wire client, its signer, ``categories``) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from shopwise.catalog.items import CatalogItem
from shopwise.dal.aws import client, dynamodb
from shopwise.dal.catalog import ItemRow, categories, put_items
from shopwise.dal.pynamo import bound
from shopwise_local.stack import scratch_stack


def cpu_us(call: Callable[[], Any]) -> float:
    started = time.thread_time()
    call()
    return (time.thread_time() - started) * 1e6


def compare(rounds: int, pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]]) -> dict[str, dict[str, float]]:
    """Median CPU per call of each pair (before, after), the two alternating round by round after one warm call."""
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in pairs}
    for before, after in pairs.values():
        before(), after()
    for _round in range(rounds):
        for name, (before, after) in pairs.items():
            samples[name][0].append(cpu_us(before))
            samples[name][1].append(cpu_us(after))
    out = {}
    for name, (before_us, after_us) in samples.items():
        b, a = statistics.median(before_us), statistics.median(after_us)
        out[name] = {"before_us": round(b, 1), "now_us": round(a, 1), "ratio": round(a / b, 3)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    with scratch_stack() as resources:
        table, items_table = resources.tables["features"], resources.tables["items"]
        boto, wire = client("dynamodb"), dynamodb()
        doc = json.dumps({"views": [[20000 + d, d % 7] for d in range(300)]})[:3000]
        rows = [{"pk": {"S": f"item@0#p{n:05d}"}, "v": {"N": "1"}, "doc": {"S": doc}} for n in range(65)]
        puts = [{"PutRequest": {"Item": row}} for row in rows[:25]]
        for start in range(0, len(rows), 25):
            boto.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": r}} for r in rows[start : start + 25]]})
        one = {table: {"Keys": [{"pk": rows[0]["pk"]}], "ConsistentRead": True}}
        many = {table: {"Keys": [{"pk": r["pk"]} for r in rows], "ConsistentRead": True}}
        profile = {"pk": {"S": "profile#c:bench"}, "v": {"N": "1"}, "doc": {"S": doc}}
        boto.put_item(TableName=table, Item=profile)
        condition = {"ConditionExpression": "v = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}}
        ids = [f"p{n:05d}" for n in range(65)]
        put_items(items_table, [CatalogItem(item_id=i, category=f"cat-{n % 40}") for n, i in enumerate(ids)])
        body = json.dumps({"RequestItems": many}).encode()
        credentials = boto._request_signer._credentials

        def botocore_signs() -> None:
            request = AWSRequest(
                method="POST",
                url=wire.meta.endpoint_url + "/",
                data=body,
                headers={
                    "Content-Type": "application/x-amz-json-1.0",
                    "X-Amz-Target": "DynamoDB_20120810.BatchGetItem",
                },
            )
            SigV4Auth(credentials, "dynamodb", wire.meta.region_name).add_auth(request)

        def pynamodb_categories() -> None:
            model = bound(ItemRow, items_table)
            {r.item_id: r.category for r in model.batch_get(ids, attributes_to_get=["item_id", "category"])}

        calls = compare(
            args.rounds,
            {
                "BatchGetItem, 1 key": (
                    lambda: boto.batch_get_item(RequestItems=one),
                    lambda: wire.batch_get_item(RequestItems=one),
                ),
                "BatchGetItem, 65 keys of 3 KB": (
                    lambda: boto.batch_get_item(RequestItems=many),
                    lambda: wire.batch_get_item(RequestItems=many),
                ),
                "BatchWriteItem, 25 items of 3 KB": (
                    lambda: boto.batch_write_item(RequestItems={table: puts}),
                    lambda: wire.batch_write_item(RequestItems={table: puts}),
                ),
                "PutItem, conditional": (
                    lambda: boto.put_item(TableName=table, Item=profile, **condition),
                    lambda: wire.put_item(TableName=table, Item=profile, **condition),
                ),
                "signing alone (botocore's SigV4Auth | the wire's)": (
                    botocore_signs,
                    lambda: wire._signed("BatchGetItem", body),
                ),
                "catalog lookup of 65 ids (PynamoDB | categories())": (
                    pynamodb_categories,
                    lambda: categories(items_table, ids),
                ),
            },
        )
    width = max(len(name) for name in calls)
    print(f"{'median CPU per call, µs':<{width}}  {'before':>8}  {'now':>8}  ratio", file=sys.stderr)
    for name, figures in calls.items():
        print(
            f"{name:<{width}}  {figures['before_us']:>8}  {figures['now_us']:>8}  {figures['ratio']}",
            file=sys.stderr,
        )
    print(json.dumps({"rounds": args.rounds, "calls": calls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
