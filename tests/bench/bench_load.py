"""Benchmark: the load — one batch-transform output object written into the recommendations table's standby slot by
the real step (``shopwise.lifecycle.loading.load_object``, what each of the retrain's Distributed Map iterations
runs), in-process against the local endpoint (moto server, its own process).

    .venv/bin/python tests/bench/bench_load.py [--lists 20000,80000] [--picks 50] [--concurrency 10 20 30]

An object is written as the transform writes one (a JSON line a shopper: the key and its picks, each
[item, score, because, category, because title]), then loaded. For each size: wall time, this process's CPU
(the step's own: parsing the lines, coding the rows, the BatchWriteItem calls), the calls made, and the write
units a list by DynamoDB's size rules (these lines' own; the cost model's come from the demo's real lists). Then
the design envelope's load (``bench_scale``: 10 M shoppers' lists and two rows a product for 1 M products) at
prod's ``load_concurrency`` and twice and three times it: its CPU, and its wall time for a range of
BatchWriteItem round trips in AWS (not measurable here: the local endpoint's are not AWS's) with the function's
share of a vCPU, against the table's write throughput (an on-demand table's default quota: 40,000 write units a
second). The final line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))

from bench_scale import ENVELOPE_ITEMS, ENVELOPE_SHOPPERS  # noqa: E402

from shopwise import config  # noqa: E402
from shopwise.dal.batch import WRITE_CHUNK  # noqa: E402
from shopwise.dal.capacity import write_units  # noqa: E402
from shopwise.dal.objects import put_bytes  # noqa: E402
from shopwise.dal.recommendations import RecommendationRow, encode_row  # noqa: E402
from shopwise.keys import customer_alias, user_key  # noqa: E402
from shopwise.lifecycle import loading  # noqa: E402
from shopwise.picks import StoredPick  # noqa: E402
from shopwise_local.stack import scratch_stack  # noqa: E402

ROUND_TRIPS_MS = (10.0, 25.0, 50.0)  # a 25-item BatchWriteItem in AWS: assumed, each shown
TABLE_WRITE_UNITS_PER_S = 40_000  # an on-demand table's default quota (Service Quotas: per table, adjustable)
ITEM_ROWS_PER_PRODUCT = 2  # a product's neighbours and its next-item rules
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives a function a whole vCPU at 1,769 MB, a share of one below
UNITS = REPO_ROOT / "local" / "shopwise_local" / "costs" / "units.json"


def output_lines(lists: int, picks: int, seed: int = 7) -> bytes:
    """``lists`` shoppers' lines as the transform writes them, over the simulated store's catalog (its ids, titles
    and categories): scores rounded to 6 places as the transform's, nine picks in ten explained by one of the
    shopper's own items (its title stored beside it)."""
    catalog = synthetic_catalog()
    ids, titles, categories = (
        catalog["item_id"].tolist(),
        dict(catalog[["item_id", "title"]].values),
        dict(catalog[["item_id", "category"]].values),
    )
    rng = random.Random(seed)
    lines = []
    for _ in range(lists):
        owned = rng.sample(ids, 5)
        items = []
        scores = sorted((round(rng.random(), 6) for _ in range(picks)), reverse=True)
        for rank, item in enumerate(rng.sample(ids, picks)):
            because = owned[rank % len(owned)] if rank % 10 else ""
            items.append([item, scores[rank], because, categories[item], titles[because] if because else ""])
        lines.append(
            json.dumps(
                {"key": user_key(customer_alias(f"{rng.getrandbits(128):032x}")), "items": items}, separators=(",", ":")
            )
        )
    return ("\n".join(lines) + "\n").encode()


def synthetic_catalog() -> Any:
    from bench_models import CACHE, synthetic

    synthetic(8000)
    import pandas as pd

    return pd.read_csv(CACHE / "synthetic-8000-seed7" / "items.csv", dtype=str)


def measure(resources: Any, lists: int, picks: int) -> dict[str, Any]:
    bucket, version = resources.artifacts_bucket, f"shopwise-20261203-{lists:06d}"  # as a version is named
    body = output_lines(lists, picks)
    put_bytes(bucket, f"recommendations/{version}/part-0.jsonl.out", body)
    started = loading.begin(f"s3://{bucket}/recommendations/{version}/", version, resources.tables["config"])
    wall, cpu = time.perf_counter(), time.process_time()
    tally = loading.load_object(
        bucket,
        started["keys"][0],
        version,
        started["slot"],
        resources.tables["recommendations"],
        resources.tables["config"],
        7,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert tally.rows == lists, tally
    units = [
        write_units(
            encode_row(RecommendationRow(line["key"], [StoredPick.decode(e) for e in line["items"]], version), "a", 7)
        )
        for line in map(json.loads, body.splitlines()[:2000])
    ]
    return {
        "lists": lists,
        "object_mb": round(len(body) / 1e6, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_list": round(cpu / lists * 1e6, 1),
        "calls": math.ceil(lists / WRITE_CHUNK),
        "write_units_per_list": round(statistics.mean(units), 2),
    }


def envelope(cpu_us: float, concurrency: int, memory_mb: int) -> dict[str, Any]:
    """The envelope's load at ``concurrency`` functions of ``memory_mb``: CPU hours (this machine's core), and wall
    minutes per assumed round trip (a function's calls are sequential: its CPU, slowed to the function's share of a
    vCPU, plus its round trips), capped below by the table's write quota at the write units the cost model's
    measured rows take (``units.json``: the demo's real lists and item rows)."""
    measured = json.loads(UNITS.read_text())
    units = ENVELOPE_SHOPPERS * measured["per_shopper"]["list_write_units"] + ENVELOPE_ITEMS * (
        measured["per_item"]["neighbours_write_units"] + measured["per_item"]["next_write_units"]
    )
    rows = ENVELOPE_SHOPPERS + ITEM_ROWS_PER_PRODUCT * ENVELOPE_ITEMS
    cpu_s = rows * cpu_us / 1e6
    function_cpu_s = cpu_s * max(1.0, LAMBDA_MB_PER_VCPU / memory_mb)
    floor_s = units / TABLE_WRITE_UNITS_PER_S  # the table's quota, however many functions write
    minutes = {
        f"{ms:g} ms": round(max((function_cpu_s + rows / WRITE_CHUNK * ms / 1e3) / concurrency, floor_s) / 60, 1)
        for ms in ROUND_TRIPS_MS
    }
    return {
        "rows": rows,
        "concurrency": concurrency,
        "memory_mb": memory_mb,
        "write_units": units,
        "cpu_hours": round(cpu_s / 3600, 2),
        "quota_floor_minutes": round(floor_s / 60, 1),
        "wall_minutes_by_round_trip": minutes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lists", default="20000,80000", help="lists an object, one size after another")
    parser.add_argument("--picks", type=int, default=50, help="picks a list (the transform's default: 50)")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        help="functions at a time for the envelope's load (default: prod's load_concurrency, twice and three times it)",
    )
    args = parser.parse_args()
    rows = []
    with scratch_stack() as resources:
        for lists in (int(n) for n in args.lists.split(",")):
            rows.append(measure(resources, lists, args.picks))
            print(json.dumps(rows[-1]), flush=True)
    cpu_us = statistics.median(r["cpu_us_per_list"] for r in rows)
    prod = config.environment("prod")
    concurrency = args.concurrency or [prod.load_concurrency * k for k in (1, 2, 3)]
    at = [envelope(cpu_us, c, prod.lambda_memory_mb) for c in concurrency]
    print(f"{'lists':>8} {'object MB':>10} {'wall s':>7} {'CPU s':>6} {'CPU µs/list':>12} {'calls':>6} {'WRU/list':>9}")
    for r in rows:
        print(
            f"{r['lists']:8,} {r['object_mb']:10} {r['wall_s']:7} {r['cpu_s']:6} {r['cpu_us_per_list']:12} "
            f"{r['calls']:6,} {r['write_units_per_list']:9}"
        )
    print(
        f"the envelope's load: {at[0]['rows'] / 1e6:.0f} M rows, {at[0]['cpu_hours']} CPU hours here; the table's "
        f"{TABLE_WRITE_UNITS_PER_S:,} write units a second allow no less than {at[0]['quota_floor_minutes']} min"
    )
    for e in at:
        print(
            f"  {e['concurrency']} functions of {e['memory_mb']:,} MB at a time"
            + (" (prod's load_concurrency)" if e["concurrency"] == prod.load_concurrency else "")
            + ": "
            + ", ".join(f"{m} min at {rt} a call" for rt, m in e["wall_minutes_by_round_trip"].items())
        )
    print(json.dumps({"sizes": rows, "cpu_us_per_list": cpu_us, "envelope": at}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
