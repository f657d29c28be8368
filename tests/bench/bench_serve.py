"""Serving benchmark: the serve handler's latency beside a bare read of the same keys, its cold import beside
boto3 + Powertools' resolver alone, and the whole HTTP path under a fixed request rate.

    .venv/bin/python tests/bench/bench_serve.py [--requests 10000] [--rate 200] [--seconds 20]

1. A local stack stocked with the demo-sized simulated store (2,000 shoppers, 1,500 products; trained and loaded).
2. Handler: ``--requests`` warm requests through the real serve handler in this process (the local Lambda runtime's
   invoke, API Gateway payload v2 events), a mix of logged-in shoppers with precomputed lists (home and product
   placements) and strangers with a market; after each, the bare BatchGetItem of the very keys that request's
   first round trip reads (``first_read``), through the client the handler reads with (``shopwise.dal.wire``): the
   floor any handler pays; and the same read through boto3's client (``bare_boto3_read_*``: what that floor was
   before the wire client). DynamoDB calls are counted on the wire (the clients' before-call event) to give round
   trips per request, and the read units
   of what each read returned by DynamoDB's rules (``shopwise.dal.capacity.ReadMeter``) to give read units per
   request.
3. Cold import: a fresh interpreter importing the serve handler module, beside one importing boto3 and
   ``APIGatewayHttpResolver`` only (median of 5 each, alternating).
4. End to end: an open-loop load generator sends ``--rate`` requests/s for ``--seconds`` to the local HTTP API (each
   latency counted from the request's scheduled time, so a stall is not hidden), the same mix.

Every request carries the shopper's token, as a browser sends it (the store's backend minted it for a logged-in
shopper; ``POST /v1/visitors`` would for a stranger): authentication is on in every figure. ``auth_verify_us`` is
the median time of telling the caller from the request (the token's HMAC and claims), measured alone in-process.

5. Storage: the stocked tables scanned (of the lists, the serving slot's table), average bytes and write units of a
   row per kind (a shopper's precomputed list, an item's neighbours, a profile document, an item document), and a
   list's line in the load's import (DynamoDB JSON, what an import is billed on): what the load imports per shopper
   and item on every retrain and what the tables hold (``shopwise cost`` prices both).

Ends with one JSON line: handler_p50_ms, handler_p99_ms, bare_read_p50_ms, bare_read_p99_ms, p99_ratio,
round_trips_per_request, read_units_per_request, storage (per kind: rows, bytes, write_units, import_bytes), record_bytes_per_event
and archive_bytes_per_event (an event as Kinesis carries it, and as the archive's Parquet holds it;
gzip_json_bytes_per_event: as gzip JSON Lines, the archive's format before), auth_verify_us, cold_import_ms,
baseline_import_ms, import_ratio, http_* figures, http_errors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def figures(values: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(values, [50, 99], method="nearest")
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


def auth_verify_us(keys: object, token: str, runs: int = 20_000) -> float:
    """The median microseconds of telling the caller from a browser request's headers (what every browser request
    pays on top of the read), in batches of 100."""
    from shopwise.access.callers import caller_of
    from shopwise.access.keys import FixedKeys

    source = FixedKeys(keys)  # type: ignore[arg-type]
    headers = {"authorization": f"Bearer {token}", "origin": "http://127.0.0.1:8080"}
    allowed = ("http://127.0.0.1:*",)
    batches = []
    for _ in range(runs // 100):
        t = time.perf_counter()
        for _ in range(100):
            caller_of({}, headers, "/v1/users/x/recommendations", source, allowed)
        batches.append((time.perf_counter() - t) / 100 * 1e6)
    return round(statistics.median(batches), 1)


def table_rows(table: str, label: str) -> dict[str, dict[str, float]]:
    """Rows per kind (the key's prefix: user, item, popular, profile ...) with their average bytes and write units,
    by DynamoDB's size rules, and the bytes of their line in a load's import (DynamoDB JSON: what an import of the
    lists is billed on), from a scan of the whole table."""
    from shopwise.dal.aws import client
    from shopwise.dal.capacity import item_bytes, write_units
    from shopwise.dal.recommendations import import_json

    kinds: dict[str, list[tuple[int, int, int]]] = {}
    for page in client("dynamodb").get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            key = item["pk"]["S"] if "pk" in item else "item"  # the items table: one kind, keyed by item_id
            kind = f"{label}:{key.split('#', 1)[0].split('/')[-1]}"  # without the serving slot (a/, b/)
            kinds.setdefault(kind, []).append((item_bytes(item), write_units(item), len(import_json(item))))
    return {
        kind: {
            "rows": len(sizes),
            "bytes": round(statistics.mean(b for b, _, _ in sizes)),
            "write_units": round(statistics.mean(w for _, w, _ in sizes), 2),
            "import_bytes": round(statistics.mean(i for _, _, i in sizes)),
        }
        for kind, sizes in kinds.items()
    }


def serving_table(resources: Any) -> str:
    """The serving slot's table (the lists the demo's model made)."""
    from shopwise.dal.recommendations import get_pointer, slot_table

    return slot_table(resources.lists_stem, get_pointer(resources.tables["config"]).slot)


def archive_bytes(bucket: str) -> dict[str, float]:
    """What an event weighs once collected (pseudonymised ids, the collector's fields): as Kinesis and Firehose
    carry it (its JSON record), and in the archive as S3 holds it — Parquet of the archive table, all the archived
    events in one object as Firehose writes a buffer's worth (the local writer's objects are one poll batch each,
    whose fixed footer would overstate it), beside the gzip JSON Lines it was before."""
    import gzip

    from shopwise import archive, config
    from shopwise.dal.objects import list_keys, read_archive

    records = [r for key in list_keys(bucket, config.ARCHIVE_EVENTS_PREFIX) for r in read_archive(bucket, key) if r]
    if not records:
        raise RuntimeError("the archive holds no events")
    lines = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
    return {
        "archived_events": len(records),
        "record_bytes_per_event": round(len(lines) / len(records), 1),
        "archive_bytes_per_event": round(len(archive.encode_parquet(records)) / len(records), 1),
        "gzip_json_bytes_per_event": round(len(gzip.compress(lines)) / len(records), 1),
    }


def cold_imports(runs: int = 7) -> tuple[float, float]:
    handler = ROOT / "lambdas" / "serve" / "handler.py"
    serve = (
        "import time; t = time.perf_counter()\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('serve', {str(handler)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print((time.perf_counter() - t) * 1000)\n"
    )
    baseline = (
        "import time; t = time.perf_counter()\n"
        "import boto3\n"
        "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver\n"
        "print((time.perf_counter() - t) * 1000)\n"
    )
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    serve_ms: list[float] = []
    base_ms: list[float] = []
    for _ in range(runs):
        for code, sink in ((serve, serve_ms), (baseline, base_ms)):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
            sink.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(serve_ms), statistics.median(base_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="HTTP requests per second (open loop)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--shoppers", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1500)
    args = parser.parse_args()

    from tqdm import tqdm

    from shopwise.access.tokens import mint
    from shopwise.dal.aws import dynamodb_clients
    from shopwise.dal.capacity import ReadMeter
    from shopwise.dal.serving_read import ServingReader, Tables
    from shopwise.keys import POPULAR_KEY, popular_key
    from shopwise.privacy.pseudonyms import load_pseudonymiser
    from shopwise.settings import get_settings
    from shopwise_local.endpoint import free_port
    from shopwise_local.lambda_runtime import http_api_event
    from shopwise_local.stack import LocalStack
    from shopwise_local.store import stock
    from shopwise_local.store_backend import token_keys

    import_ms, base_ms = cold_imports()
    print(f"cold import: serve handler {import_ms:.0f} ms, boto3 + resolver {base_ms:.0f} ms", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["SHOPWISE_HOME"] = tmp
        stack = LocalStack(Path(tmp), free_port(), free_port())
        try:
            stack.start_endpoint()
            resources = stack.create_resources()
            stack.start_functions()
            started = time.time()
            store = stock(stack, Path(tmp), shoppers=args.shoppers, items=args.items, replay_max=1500)
            print(f"store stocked and trained in {time.time() - started:.0f} s", flush=True)
            reader = ServingReader(Tables.from_settings(get_settings()))
            pseudonymiser = load_pseudonymiser(resources.pseudonym_key_secret)
            markets = ["NZ", "AU", "US", "GB"]

            keys = token_keys()
            tokens: dict[tuple[str, str], str] = {}

            def token(customer: str = "", visitor: str = "") -> str:
                if (customer, visitor) not in tokens:
                    tokens[(customer, visitor)] = mint(keys, customer=customer, visitor=visitor)
                return tokens[(customer, visitor)]

            def request(n: int) -> tuple[str, str, str, list[str], dict[str, str]]:
                """path, query, profile id, row keys of the first read, the browser's headers"""
                if n % 2:
                    customer = store.customers[n // 2 % len(store.customers)]
                    placement = "product" if n % 4 == 1 else "home"
                    query = urlencode({"n": 10, "placement": placement})
                    return (
                        f"/v1/users/{customer}/recommendations",
                        query,
                        pseudonymiser.customer_profile(customer),
                        [POPULAR_KEY],
                        {"Authorization": f"Bearer {token(customer=customer)}"},
                    )
                market = markets[n % len(markets)]
                visitor = f"visitor-{n % 997}"
                query = urlencode({"n": 10, "id_type": "anonymous", "market": market})
                row_keys = [popular_key(f"market:{market}"), POPULAR_KEY]
                headers = {"Authorization": f"Bearer {token(visitor=visitor)}"}
                return f"/v1/users/{visitor}/recommendations", query, f"a:{visitor}", row_keys, headers

            serve = stack.functions["serve"]
            ddbs = dynamodb_clients()
            calls: list[str] = []
            for ddb in ddbs:
                ddb.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
            meter = ReadMeter().attach(*ddbs)
            for n in range(200):  # warm: clients, caches, the secrets
                path, query, _profile, _rows, headers = request(n)
                serve.invoke(http_api_event("GET", path, query, headers))
            calls.clear()
            handler_ms, bare_ms, boto_ms, statuses = [], [], [], []
            boto, wire = ddbs  # the same read through boto3's client, and through the wire client the handler uses
            handler_calls = 0
            handler_units = 0.0
            for n in tqdm(range(args.requests), desc="handler vs bare read", unit="req", disable=None):
                path, query, profile_id, row_keys, headers = request(n)
                event = http_api_event("GET", path, query, headers)
                before, units_before = len(calls), meter.units
                t = time.perf_counter()
                response = serve.invoke(event)
                handler_ms.append((time.perf_counter() - t) * 1000)
                handler_calls += len(calls) - before
                handler_units += meter.units - units_before
                statuses.append(response["statusCode"])
                items = reader.shopper_request(profile_id, row_keys)
                t = time.perf_counter()
                wire.batch_get_item(RequestItems=items)
                bare_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                boto.batch_get_item(RequestItems=items)
                boto_ms.append((time.perf_counter() - t) * 1000)
            bad = sum(1 for s in statuses if s != 200)
            if bad:
                raise RuntimeError(f"{bad} handler requests did not answer 200")
            auth_us = auth_verify_us(keys, token(customer=store.customers[0]))
            meter.detach(*ddbs)
            archive = archive_bytes(resources.archive_bucket)
            storage = (
                table_rows(serving_table(resources), "recommendations")
                | table_rows(resources.tables["features"], "features")
                | table_rows(resources.tables["items"], "items")
            )

            # end to end through HTTP at a fixed rate
            assert stack.api
            url = stack.api.url
            total = int(args.rate * args.seconds)
            latencies: list[float] = []
            errors: list[str] = []  # every failed request, with why
            lock = threading.Lock()
            t0 = time.perf_counter() + 0.5

            def fire(n: int) -> None:
                scheduled = t0 + n / args.rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                path, query, _p, _r, headers = request(n)
                problem = ""
                try:
                    asked = urllib.request.Request(f"{url}{path}?{query}", headers=headers)
                    with urllib.request.urlopen(asked, timeout=10) as answer:
                        answer.read()
                        if answer.status != 200:
                            problem = f"{path}: {answer.status}"
                except (urllib.error.URLError, OSError) as exc:
                    problem = f"{path}: {exc}"
                elapsed = (time.perf_counter() - scheduled) * 1000
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        errors.append(problem)

            print(f"HTTP: {total} requests at {args.rate:.0f}/s ...", flush=True)
            with ThreadPoolExecutor(max_workers=64) as pool:
                list(pool.map(fire, range(total)))
        finally:
            stack.close()

    handler, bare, boto, http = figures(handler_ms), figures(bare_ms), figures(boto_ms), figures(latencies)
    result = {
        "requests": args.requests,
        "handler_p50_ms": handler["p50"],
        "handler_p99_ms": handler["p99"],
        "bare_read_p50_ms": bare["p50"],
        "bare_read_p99_ms": bare["p99"],
        "p99_ratio": round(handler["p99"] / bare["p99"], 3),
        "p50_ratio": round(handler["p50"] / bare["p50"], 3),
        "bare_boto3_read_p50_ms": boto["p50"],
        "bare_boto3_read_p99_ms": boto["p99"],
        "round_trips_per_request": round(handler_calls / args.requests, 4),
        "read_units_per_request": round(handler_units / args.requests, 3),
        "storage": storage,
        **archive,
        "auth_verify_us": auth_us,
        "cold_import_ms": round(import_ms, 1),
        "baseline_import_ms": round(base_ms, 1),
        "import_ratio": round(import_ms / base_ms, 3),
        "http_rate_per_s": args.rate,
        "http_requests": total,
        "http_p50_ms": http["p50"],
        "http_p99_ms": http["p99"],
        "http_errors": len(errors),
    }
    print(f"handler p50/p99 {handler['p50']}/{handler['p99']} ms vs bare read {bare['p50']}/{bare['p99']} ms")
    print(f"read units per request {result['read_units_per_request']}; rows by kind: {storage}")
    for problem in errors[:5]:
        print(f"HTTP error: {problem}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
