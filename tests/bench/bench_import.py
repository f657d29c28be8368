"""Benchmark: a bulk import through the stack's import path — uploaded, then imported by the import function (the
object read as it streams) and by the import job (a SageMaker script-mode job on its copy) — at a size well past
the bulk code's chunks, with bad rows in it: rows per second and the memory each holds.

    .venv/bin/python tests/bench/bench_import.py [--rows 1000000] [--bad-every 1000] [--via function job]

Memory is each run's process high-water mark as the import reports it (``peak_rss_mb`` in report.json): the job's
own process; the function's, this process (the local endpoint's client and the stack included). Both stay flat as
--rows grows: the file is never held, a chunk of 50,000 events is. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from shopwise.dal.objects import get_bytes
from shopwise.ingestion.import_job import report_key
from shopwise_local.endpoint import free_port
from shopwise_local.imports import import_to_stack, local_runner
from shopwise_local.stack import LocalStack


def write_history(path: Path, rows: int, bad_every: int) -> int:
    """``rows`` event rows (a bad quantity every ``bad_every``) over 50,000 shoppers and 20,000 items."""
    bad = 0
    with gzip.open(path, "wt", compresslevel=1) as handle:
        handle.write("user_id,item_id,timestamp,event_type,price,quantity,session_id\n")
        for n in range(rows):
            day, hour = 1 + n % 28, n % 24
            if bad_every and n % bad_every == bad_every - 1:
                bad += 1
                handle.write(f"u{n % 50_000},i{n % 20_000},2026-11-{day:02d}T{hour:02d}:00:00Z,purchase,9.5,two,s{n}\n")
            else:
                handle.write(f"u{n % 50_000},i{n % 20_000},2026-11-{day:02d}T{hour:02d}:00:00Z,product_view,,,s{n}\n")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-every", type=int, default=1000)
    parser.add_argument("--via", nargs="+", default=["function", "job"], choices=["function", "job"])
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="shopwise-import-bench-"))
    os.environ["SHOPWISE_HOME"] = str(work / "home")
    (work / "home").mkdir()
    history = work / "history.csv.gz"
    started = time.perf_counter()
    bad = write_history(history, args.rows, args.bad_every)
    print(
        f"{args.rows:,} rows ({bad:,} bad), {history.stat().st_size / 1e6:.1f} MB gzipped, "
        f"written in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    stack = LocalStack(work / "home", free_port(), free_port())
    figures: dict[str, dict[str, float]] = {}
    try:
        stack.start_endpoint()
        stack.create_resources()
        for via in args.via:
            started = time.perf_counter()
            done = import_to_stack("events", history, lambda route: local_runner(route, work / "jobs"), via, False)
            seconds = time.perf_counter() - started
            assert done.report.imported == args.rows - bad and done.report.rejected == bad, done.report.summary()
            report = json.loads(get_bytes(stack.resources.artifacts_bucket, report_key(done.import_id)) or b"{}")  # type: ignore[union-attr]
            figures[via] = {
                "seconds": round(seconds, 1),
                "rows_per_s": round(args.rows / seconds),
                "objects": len(done.report.keys),
                "peak_mb": float(report["peak_rss_mb"]),
            }
    finally:
        stack.close()
    print(f"\n{'via':10} {'seconds':>8} {'rows/s':>9} {'objects':>8} {'peak MB':>8}")
    for via, f in figures.items():
        print(f"{via:10} {f['seconds']:8.1f} {f['rows_per_s']:9,.0f} {f['objects']:8.0f} {f['peak_mb']:8.1f}")
    print(json.dumps({"rows": args.rows, "bad": bad, "gzipped_mb": round(history.stat().st_size / 1e6, 1), **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
