"""The training data set built two ways from the same Parquet archive: the Python build the training job runs today
(``dataset.read_event_files``: one process, every event a Python object) and the Spark job
(``spark_dataset.build``: PySpark in local mode on this machine's cores, what runs under spark-submit in AWS).

    .venv/bin/python tests/bench/bench_dataset.py [--sizes 100000,300000,600000] [--cores 2]

The synthetic store's events (pseudonymised) are written as archive objects of 50,000 events over consecutive
days; each size is built by both (rows compared: they must be equal), wall time and the Python build's peak
allocations (tracemalloc) recorded, and the growth exponent of each fitted over the sizes. Spark's memory is its
executors' (a partition's rows at a time, spilled to disk past ``spark.executor.memory``), not the data's.

Then the daily build as a retrain runs it (with the feature snapshot, whose folds need the catalog's categories):
every day parsed (no kept parses), against the incremental build of the same days where all but the newest were
parsed by the day before's build (``parsed_days``) — outputs compared, they must be equal — and every day read
back, with the snapshot and without it (what of the read-back is the snapshot's folds).

Over the sizes, a line through each daily build's seconds (least squares: a fixed part and a per-event part) gives
the events a second a core past the fixed cost — the rates ``shopwise cost`` prices the Glue job with — checked by
predicting the one-new-day build from the other two; then the design envelope's data set (``bench_scale``'s 30-day
window of 1,000 events/s, one new day) is sized on G.1X workers with the cost model's own functions. The final
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))

from bench_models import CACHE, synthetic  # noqa: E402
from bench_scale import ENVELOPE_EVENTS, exponent  # noqa: E402

from shopwise import archive  # noqa: E402
from shopwise.events import to_record  # noqa: E402
from shopwise.ingestion.imports import BadRow, read_events  # noqa: E402
from shopwise.privacy.pseudonyms import Pseudonymiser  # noqa: E402
from shopwise_jobs.dataset import read_event_files  # noqa: E402
from shopwise_jobs.spark_dataset import build, read_dataset, spark_session  # noqa: E402
from shopwise_local.costs import Assumptions, dataset_core_seconds, dataset_workers  # noqa: E402

CATEGORIES = {f"p{n:05d}": f"Category>{n % 40}" for n in range(100_000)}  # the folds' categories (any will do)

PER_OBJECT = 50_000
KEY = ["user_id", "event_id", "item_id", "kind"]
TARGET_HOURS = (1.0, 0.5, 0.25)  # the envelope's data set sized to finish within each


def write_archive(records: list[dict[str, Any]], root: Path) -> None:
    for n in range(0, len(records), PER_OBJECT):
        folder = root / f"dt=2026-10-{1 + n // PER_OBJECT:02d}" / "hour=00"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"part-{n}.parquet").write_bytes(archive.encode_parquet(records[n : n + PER_OBJECT]))


def daily(spark: Any, root: Path) -> dict[str, float]:
    """The daily build of the archive under ``root``/events, with the feature snapshot: every day parsed (s), only
    the newest parsed and the rest read back (s), every day read back (s), the days, and the kept parses' bytes an
    event; the builds' rows and snapshots compared."""
    import shutil

    import pandas as pd

    days = sorted(p.name.removeprefix("dt=") for p in (root / "events").iterdir())
    started = time.perf_counter()
    full = build(spark, str(root / "events"), str(root / "full"), categories=CATEGORIES)
    full_s = time.perf_counter() - started
    # the day before's build: every day but the newest, its parses kept
    shutil.copytree(
        root / "events", root / "before", ignore=lambda d, names: [n for n in names if n == f"dt={days[-1]}"]
    )
    build(spark, str(root / "before"), str(root / "yesterday"), categories=CATEGORIES, parsed_days=str(root / "days"))
    started = time.perf_counter()
    today = build(
        spark, str(root / "events"), str(root / "today"), categories=CATEGORIES, parsed_days=str(root / "days")
    )
    incremental_s = time.perf_counter() - started
    started = time.perf_counter()
    again = build(
        spark, str(root / "events"), str(root / "again"), categories=CATEGORIES, parsed_days=str(root / "days")
    )
    reused_s = time.perf_counter() - started
    started = time.perf_counter()  # what of reading back is the snapshot's folds: the same build without them
    plain = build(spark, str(root / "events"), str(root / "plain"), parsed_days=str(root / "days"))
    plain_s = time.perf_counter() - started
    assert plain.days_parsed == [] and plain.interactions == full.interactions, plain
    assert today.days_parsed == days[-1:] and today.days_reused == len(days) - 1, today
    assert again.days_parsed == [] and again.days_reused == len(days), again
    for report, out in ((today, "today"), (again, "again")):
        assert (report.interactions, report.erased, report.snapshot) == (full.interactions, full.erased, full.snapshot)
        for name in ("profiles", "items"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(root / out / "features" / f"{name}.parquet"),
                pd.read_parquet(root / "full" / "features" / f"{name}.parquet"),
            )
    kept = sum(p.stat().st_size for p in (root / "days").rglob("*.parquet"))
    return {
        "days": len(days),
        "daily_full_s": round(full_s, 2),
        "daily_incremental_s": round(incremental_s, 2),
        "daily_reused_s": round(reused_s, 2),
        "daily_reused_without_snapshot_s": round(plain_s, 2),
        "incremental_speedup": round(full_s / incremental_s, 2),
        "kept_bytes_per_event": round(kept / full.records),
    }


def per_core(events: Sequence[int], seconds: Sequence[float], cores: int) -> tuple[float, float]:
    """A least-squares line seconds = fixed + events / (rate x cores) through the sizes: (fixed s, rate)."""
    mx, my = sum(events) / len(events), sum(seconds) / len(seconds)
    slope = sum((x - mx) * (y - my) for x, y in zip(events, seconds, strict=True)) / sum((x - mx) ** 2 for x in events)
    if slope <= 0:
        raise ValueError(f"no time grows with the events over these sizes: {list(zip(events, seconds, strict=True))}")
    return my - slope * mx, 1.0 / slope / cores


def rates(rows: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """The daily builds' rates a core past their fixed cost, the one-new-day build predicted from them (the cost
    model's own arithmetic, at the largest size), and the envelope's data set sized with them."""
    events = [r["events"] for r in rows]
    parse_fixed, parse_rate = per_core(events, [r["daily_full_s"] for r in rows], cores)
    reused_fixed, reused_rate = per_core(events, [r["daily_reused_s"] for r in rows], cores)
    assume = Assumptions(spark_events_per_core_s=round(parse_rate), spark_reused_events_per_core_s=round(reused_rate))
    last = rows[-1]
    new_day = last["events"] / last["days"]
    predicted = reused_fixed + dataset_core_seconds(last["events"], assume, new_day) / cores
    envelope_new = ENVELOPE_EVENTS / 30  # a day of the 30-day window
    within = {
        hours: dataset_workers(
            ENVELOPE_EVENTS, Assumptions(**{**assume.describe(), "dataset_target_hours": hours}), envelope_new
        )
        for hours in TARGET_HOURS
    }
    return {
        "spark_events_per_core_s": assume.spark_events_per_core_s,
        "spark_reused_events_per_core_s": assume.spark_reused_events_per_core_s,
        "parse_fixed_s": round(parse_fixed, 1),
        "reused_fixed_s": round(reused_fixed, 1),
        "incremental_predicted_s": round(predicted, 1),
        "incremental_measured_s": last["daily_incremental_s"],
        "envelope_window_events": ENVELOPE_EVENTS,
        "envelope_new_events": envelope_new,
        "envelope_workers_within_hours": within,
        "envelope_workers_1h_every_day_parsed": dataset_workers(ENVELOPE_EVENTS, assume),
        # of the envelope's daily build, the share that is reading the window back (not the new day's parse)
        "envelope_read_back_share": round(
            (ENVELOPE_EVENTS / assume.spark_reused_events_per_core_s)
            / dataset_core_seconds(ENVELOPE_EVENTS, assume, envelope_new),
            2,
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,300000,600000")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    synthetic(8000)
    pseudonymiser = Pseudonymiser(b"k" * 32)
    records: list[dict[str, Any]] = []
    for _line, event in read_events(CACHE / "synthetic-8000-seed7" / "events.csv"):
        if not isinstance(event, BadRow):
            records.append({**to_record(pseudonymiser.apply(event)), "origin": "import"})
        if len(records) >= max(sizes):
            break
    sizes = [s for s in sizes if s <= len(records)]
    spark = spark_session("shopwise-bench", cores=args.cores)
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            write_archive(records[:size], root / "events")
            tracemalloc.start()
            started = time.perf_counter()
            python = read_event_files(root / "events")
            python_s = time.perf_counter() - started
            python_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            started = time.perf_counter()
            report = build(spark, str(root / "events"), str(root / "out"))
            spark_s = time.perf_counter() - started
            interactions, _users, _items = read_dataset(root / "out")
            same = len(interactions) == len(python.interactions) and int(interactions["consented"].sum()) == int(
                python.interactions["consented"].sum()
            )
            assert same, (report, len(python.interactions))
            incremental = daily(spark, root)
        rows.append(
            {
                "events": size,
                "interactions": report.interactions,
                "python_s": round(python_s, 2),
                "python_peak_mb": round(python_peak / 1e6),
                "python_bytes_per_event": round(python_peak / size),
                "spark_s": round(spark_s, 2),
                "spark_events_per_s": round(size / spark_s),
                **incremental,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    spark.stop()
    figures = {
        "cores": args.cores,
        "sizes": rows,
        "python_time_exponent": round(exponent(sizes, [r["python_s"] for r in rows]), 2) if len(rows) > 1 else None,
        "python_memory_exponent": round(exponent(sizes, [r["python_peak_mb"] for r in rows]), 2)
        if len(rows) > 1
        else None,
        "spark_time_exponent": round(exponent(sizes, [r["spark_s"] for r in rows]), 2) if len(rows) > 1 else None,
        "daily": rates(rows, args.cores) if len(rows) > 1 else None,
    }
    print(
        f"{'events':>9} {'python s':>9} {'python peak MB':>15} {'spark s':>8} {'spark events/s':>15} {'days':>5} "
        f"{'daily: every day s':>19} {'one new day s':>14} {'none new s':>11} {'(no snapshot) s':>16} "
        f"{'kept B/event':>13}"
    )
    for r in rows:
        print(
            f"{r['events']:9,} {r['python_s']:9} {r['python_peak_mb']:15,} {r['spark_s']:8} {r['spark_events_per_s']:15,} "
            f"{r['days']:5} {r['daily_full_s']:19} {r['daily_incremental_s']:14} {r['daily_reused_s']:11} "
            f"{r['daily_reused_without_snapshot_s']:16} {r['kept_bytes_per_event']:13}"
        )
    fitted = figures["daily"]
    if fitted:
        print(
            f"past a fixed cost, a core builds {fitted['spark_events_per_core_s']:,} events/s parsing every day "
            f"(fixed {fitted['parse_fixed_s']} s) and reads {fitted['spark_reused_events_per_core_s']:,} back "
            f"(fixed {fitted['reused_fixed_s']} s): the one-new-day build at {rows[-1]['events']:,} events predicted "
            f"{fitted['incremental_predicted_s']} s, measured {fitted['incremental_measured_s']} s"
        )
        print(
            f"the envelope's data set ({ENVELOPE_EVENTS / 1e9:.1f} B events in the 30-day window, "
            f"{fitted['envelope_new_events'] / 1e6:.0f} M new), G.1X workers (3 minutes of start): "
            + ", ".join(f"{w} within {h:g} h" for h, w in fitted["envelope_workers_within_hours"].items())
            + f"; parsing every day, {fitted['envelope_workers_1h_every_day_parsed']} within 1 h; reading the window "
            f"back is {fitted['envelope_read_back_share']:.0%} of the daily build's work"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
