"""Benchmark: what each Lambda function's imports leave for Python's cyclic garbage collector, and what one full
collection costs it with them frozen (``shopwise.heap``, the last line of every handler module) and without.

    .venv/bin/python tests/bench/bench_heap.py [--collections 5]

Each function's handler is loaded in a fresh interpreter as the local runtime (and Lambda) loads it. Then, in that
interpreter: the objects frozen by its import, the objects left to the collector, and the median time of
``--collections`` full collections (``gc.collect()``: what a busy function pays whenever the collector's thresholds
call for one) — first as the handler left the heap, then after ``gc.unfreeze()``, which is the heap as it was
before the freeze: the baseline in the same process.

Prints a table, then one JSON line: per function, frozen, collectable, full_ms (frozen), unfrozen_full_ms and their
ratio; and the medians over the functions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json, statistics, time
from shopwise_local.lambda_runtime import load_handler_module

load_handler_module({name!r})
frozen, collectable = gc.get_freeze_count(), len(gc.get_objects())


def full_ms():
    times = []
    for _ in range({collections}):
        t = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


frozen_ms = full_ms()
gc.unfreeze()
print(json.dumps({{"frozen": frozen, "collectable": collectable, "full_ms": frozen_ms, "unfrozen_full_ms": full_ms()}}))
"""


def probe(name: str, collections: int) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(name=name, collections=collections)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=300,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collections", type=int, default=5)
    args = parser.parse_args()
    names = sorted(p.parent.name for p in (REPO_ROOT / "lambdas").glob("*/handler.py"))
    rows: dict[str, dict[str, float]] = {}
    print(f"{'function':16} {'frozen':>9} {'collectable':>12} {'full ms':>8} {'unfrozen ms':>12} {'ratio':>7}")
    for name in names:
        row = probe(name, args.collections)
        row["ratio"] = round(row["full_ms"] / row["unfrozen_full_ms"], 4)
        row["full_ms"], row["unfrozen_full_ms"] = round(row["full_ms"], 3), round(row["unfrozen_full_ms"], 2)
        rows[name] = row
        print(
            f"{name:16} {row['frozen']:>9,.0f} {row['collectable']:>12,.0f} {row['full_ms']:>8.3f}"
            f" {row['unfrozen_full_ms']:>12.2f} {row['ratio']:>7.4f}",
            flush=True,
        )
    medians = {
        key: round(statistics.median(row[key] for row in rows.values()), 4)
        for key in ("frozen", "collectable", "full_ms", "unfrozen_full_ms", "ratio")
    }
    print(json.dumps({"functions": rows, "median": medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
