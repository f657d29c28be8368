"""Benchmark: the load — one batch-transform output object staged for the import into the standby slot's table by
the real step (``shopwise.lifecycle.loading.stage_object``, what each of the retrain's Distributed Map iterations
runs), then imported, in-process against the local endpoint (moto server, its own process).

    .venv/bin/python tests/bench/bench_load.py [--lists 20000,80000] [--picks 50] [--concurrency 10 20 30]

An object is written as the transform writes one (a JSON line a shopper: the key and its picks, each
[item, score, because, category, because title]), then staged. For each size: wall time, this process's CPU
(the step's own: parsing the lines, coding the rows as DynamoDB JSON, gzip), the staged bytes a list (what the
import is billed on) and compressed, and the write units the same list would cost written instead. Then the design
envelope's load (``bench_scale``: 10 M shoppers' lists and two rows a product for 1 M products) at prod's
``load_concurrency`` and twice and three times it: the staging's CPU and wall time (the function's share of a
vCPU), and the import's price against writing the rows (DynamoDB on-demand list prices, the cost model's table).
The import's own time is DynamoDB's: AWS publishes no rate and the local endpoint's (moto, one thread) is not it,
so it is printed for this size only. The final line is JSON.
"""

from __future__ import annotations

import argparse
import json
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
from shopwise.dal.capacity import write_units  # noqa: E402
from shopwise.dal.objects import list_objects, put_bytes  # noqa: E402
from shopwise.dal.recommendations import RecommendationRow, encode_row  # noqa: E402
from shopwise.keys import POPULAR_KEY, customer_alias, user_key  # noqa: E402
from shopwise.lifecycle import loading  # noqa: E402
from shopwise.picks import StoredPick  # noqa: E402
from shopwise_local.stack import scratch_stack  # noqa: E402

ITEM_ROWS_PER_PRODUCT = 2  # a product's neighbours and its next-item rules
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives a function a whole vCPU at 1,769 MB, a share of one below
UNITS = REPO_ROOT / "local" / "shopwise_local" / "costs" / "units.json"
PRICES = REPO_ROOT / "local" / "shopwise_local" / "costs" / "prices-us-east-1-2025-06.json"


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
    # the store's bestsellers first, as every output has them (a load without them is refused)
    lines = [json.dumps({"key": POPULAR_KEY, "items": [[i, 1.0, "", categories[i], ""] for i in ids[:50]]})]
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
    config_table, stem = resources.tables["config"], resources.lists_stem
    begun = loading.begin(f"s3://{bucket}/recommendations/{version}/", version, config_table, stem)
    wall, cpu = time.perf_counter(), time.process_time()
    tally = loading.stage_object(bucket, begun["keys"][0], version, begun["slot"], begun["staging"], config_table, 7)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert tally.rows == lists + 1 and tally.users == lists, tally
    staged = sum(size for _key, size, _etag in list_objects(bucket, begun["staging"]))
    # the local endpoint's import (moto: one thread, its own process): not DynamoDB's time, shown for the record
    imported = time.perf_counter()
    arn = loading.start(bucket, begun["staging"], stem, begun["slot"], version, [tally])
    loading.wait_for_import(lambda: loading.check(arn).status, timeout_s=3600)
    imported = time.perf_counter() - imported
    loading.finish(
        config_table, stem, begun["slot"], version, [tally], arn, begun["began_at"], bucket, begun["staging"]
    )
    units = [
        write_units(
            encode_row(RecommendationRow(line["key"], [StoredPick.decode(e) for e in line["items"]], version), "a", 7)
        )
        for line in map(json.loads, body.splitlines()[1:2001])
    ]
    return {
        "lists": lists,
        "object_mb": round(len(body) / 1e6, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_list": round(cpu / lists * 1e6, 1),
        "import_bytes_per_list": round(tally.bytes / lists),
        "staged_bytes_per_list": round(staged / lists),
        "local_import_s": round(imported, 1),
        "write_units_per_list": round(statistics.mean(units), 2),
    }


def envelope(cpu_us: float, concurrency: int, memory_mb: int) -> dict[str, Any]:
    """The envelope's load at ``concurrency`` functions of ``memory_mb``: the staging's CPU hours (this machine's
    core) and wall minutes (slowed to the function's share of a vCPU; S3's puts, one an object, are not counted),
    and the import's price against writing the same rows, at the cost model's measured row sizes
    (``units.json``: the demo's real lists and item rows) and list prices."""
    measured, prices = json.loads(UNITS.read_text()), json.loads(PRICES.read_text())["dynamodb"]
    per_shopper, per_item = measured["per_shopper"], measured["per_item"]
    units = ENVELOPE_SHOPPERS * per_shopper["list_write_units"] + ENVELOPE_ITEMS * (
        per_item["neighbours_write_units"] + per_item["next_write_units"]
    )
    import_gb = (
        ENVELOPE_SHOPPERS * per_shopper["list_import_bytes"]
        + ENVELOPE_ITEMS * (per_item["neighbours_import_bytes"] + per_item["next_import_bytes"])
    ) / 1e9
    rows = ENVELOPE_SHOPPERS + ITEM_ROWS_PER_PRODUCT * ENVELOPE_ITEMS
    cpu_s = rows * cpu_us / 1e6
    function_cpu_s = cpu_s * max(1.0, LAMBDA_MB_PER_VCPU / memory_mb)
    return {
        "rows": rows,
        "concurrency": concurrency,
        "memory_mb": memory_mb,
        "cpu_hours": round(cpu_s / 3600, 2),
        "staging_minutes": round(function_cpu_s / concurrency / 60, 1),
        "import_gb": round(import_gb, 1),
        "import_dollars": round(import_gb * prices["import_gb"], 2),
        "write_units": units,
        "writes_dollars": round(units / 1e6 * prices["write_unit_per_million"], 2),
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
    print(
        f"{'lists':>8} {'object MB':>10} {'wall s':>7} {'CPU s':>6} {'CPU µs/list':>12} {'import B/list':>14} "
        f"{'gzip B/list':>12} {'WRU/list':>9} {'local import s':>15}"
    )
    for r in rows:
        print(
            f"{r['lists']:8,} {r['object_mb']:10} {r['wall_s']:7} {r['cpu_s']:6} {r['cpu_us_per_list']:12} "
            f"{r['import_bytes_per_list']:14,} {r['staged_bytes_per_list']:12,} {r['write_units_per_list']:9} "
            f"{r['local_import_s']:15}"
        )
    e0 = at[0]
    print(
        f"the envelope's load: {e0['rows'] / 1e6:.0f} M rows, staged with {e0['cpu_hours']} CPU hours here; the "
        f"import reads {e0['import_gb']} GB: ${e0['import_dollars']} a load, against ${e0['writes_dollars']} to "
        f"write the rows ({e0['write_units'] / 1e6:.1f} M write units)"
    )
    for e in at:
        print(
            f"  {e['concurrency']} functions of {e['memory_mb']:,} MB at a time"
            + (" (prod's load_concurrency)" if e["concurrency"] == prod.load_concurrency else "")
            + f": staged in {e['staging_minutes']} min, then DynamoDB's import (its time: not published)"
        )
    print(json.dumps({"sizes": rows, "cpu_us_per_list": cpu_us, "envelope": at}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
