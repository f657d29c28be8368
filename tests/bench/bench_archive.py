"""The event archive as Parquet against the gzip JSON Lines it was: bytes per event, write and read rates, a query,
and the conversion's rate — on the synthetic store's events, pseudonymised as the collector does it.

    .venv/bin/python tests/bench/bench_archive.py [--events 300000] [--per-object 50000]

Both formats hold the same records in objects of ``--per-object`` events (the importer's size; Firehose's are what
its buffer holds in 60 s, up to 128 MB). Reading is the readers' path (``shopwise.archive.read_records``: Python
dicts, what training and the drift job get); the query is one aggregate over the event type and the item, with
DuckDB over the Parquet folder and, as the baseline in the same process, DuckDB over the gzip JSON folder. The
conversion is ``shopwise.archive.convert`` per object (what ``shopwise archive convert`` does between its S3 read
and write). Medians of ``--repeat`` runs. The final line is JSON.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))

from bench_models import CACHE, synthetic  # noqa: E402

from shopwise import archive  # noqa: E402
from shopwise.events import to_record  # noqa: E402
from shopwise.ingestion.imports import BadRow, read_events  # noqa: E402
from shopwise.privacy.pseudonyms import Pseudonymiser  # noqa: E402

QUERY = "select event_type, count(*) as n, count(distinct item_id) as items from {source} group by 1 order by 1"


def snappy(records: list[dict[str, Any]]) -> bytes:
    """The same rows with Snappy pages and dictionaries (Firehose's default conversion), for the comparison."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    table = pa.Table.from_pylist([archive.to_row(r) for r in records], schema=archive.arrow_schema())
    pq.write_table(table, out, compression="snappy")
    return out.getvalue()


def median_s(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--per-object", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import duckdb

    synthetic(8000)  # the cached store
    pseudonymiser = Pseudonymiser(base64.b64decode(base64.b64encode(b"k" * 32)))
    records: list[dict[str, Any]] = []
    for _line, event in read_events(CACHE / "synthetic-8000-seed7" / "events.csv"):
        if not isinstance(event, BadRow):
            records.append({**to_record(pseudonymiser.apply(event)), "origin": "import"})
        if len(records) >= args.events:
            break
    chunks = [records[i : i + args.per_object] for i in range(0, len(records), args.per_object)]
    lines = [b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in chunk) for chunk in chunks]
    n = len(records)

    write_json_s, json_objects = median_s(lambda: [gzip.compress(body, mtime=0) for body in lines], args.repeat)
    write_parquet_s, parquet_objects = median_s(lambda: [archive.encode_parquet(c) for c in chunks], args.repeat)
    read_json_s, _ = median_s(
        lambda: sum(1 for o in json_objects for _ in archive.read_records(".jsonl.gz", io.BytesIO(o))), args.repeat
    )
    read_parquet_s, _ = median_s(
        lambda: sum(1 for o in parquet_objects for _ in archive.read_records(".parquet", io.BytesIO(o))), args.repeat
    )
    convert_s, _ = median_s(lambda: [archive.convert(body.splitlines()) for body in lines], args.repeat)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for k, (j, p) in enumerate(zip(json_objects, parquet_objects, strict=True)):
            (root / "json").mkdir(exist_ok=True)
            (root / "parquet").mkdir(exist_ok=True)
            (root / "json" / f"part-{k}.jsonl.gz").write_bytes(j)
            (root / "parquet" / f"part-{k}.parquet").write_bytes(p)
        connection = duckdb.connect(config={"autoinstall_known_extensions": False, "threads": 2})
        parquet_source = f"read_parquet('{root}/parquet/*.parquet')"
        json_source = f"read_json('{root}/json/*.jsonl.gz', format='newline_delimited', union_by_name=true)"
        query_parquet_s, answer = median_s(
            lambda: connection.execute(QUERY.format(source=parquet_source)).fetchall(), args.repeat
        )
        query_json_s, baseline = median_s(
            lambda: connection.execute(QUERY.format(source=json_source)).fetchall(), args.repeat
        )
        assert answer == baseline, (answer, baseline)  # the same events either way

    json_bytes = sum(len(o) for o in json_objects)
    parquet_bytes = sum(len(o) for o in parquet_objects)
    snappy_bytes = sum(len(snappy(c)) for c in chunks)  # Firehose's other choice of page compression
    figures = {
        "events": n,
        "objects": len(chunks),
        "record_bytes_per_event": round(sum(len(b) for b in lines) / n, 1),
        "gzip_json_bytes_per_event": round(json_bytes / n, 1),
        "parquet_bytes_per_event": round(parquet_bytes / n, 1),
        "parquet_over_gzip_json_bytes": round(parquet_bytes / json_bytes, 3),
        "parquet_snappy_bytes_per_event": round(snappy_bytes / n, 1),
        "write_gzip_json_events_per_s": round(n / write_json_s),
        "write_parquet_events_per_s": round(n / write_parquet_s),
        "read_gzip_json_events_per_s": round(n / read_json_s),
        "read_parquet_events_per_s": round(n / read_parquet_s),
        "convert_events_per_s": round(n / convert_s),
        "query_parquet_ms": round(query_parquet_s * 1000, 1),
        "query_gzip_json_ms": round(query_json_s * 1000, 1),
        "query_speedup": round(query_json_s / query_parquet_s, 1),
    }
    print(f"{n:,} events in {len(chunks)} objects of {args.per_object:,} (median of {args.repeat})")
    print(f"{'':28} {'gzip JSON Lines':>16} {'Parquet':>12}")
    print(f"{'bytes per event':28} {figures['gzip_json_bytes_per_event']:16} {figures['parquet_bytes_per_event']:12}")
    print(f"{'  (Parquet, Snappy pages)':28} {'':16} {figures['parquet_snappy_bytes_per_event']:12}")
    for what in ("write", "read"):
        j, p = figures[f"{what}_gzip_json_events_per_s"], figures[f"{what}_parquet_events_per_s"]
        print(f"{what + ' (events/s, one core)':28} {j:16,} {p:12,}")
    print(f"{'query (DuckDB, ms)':28} {figures['query_gzip_json_ms']:16} {figures['query_parquet_ms']:12}")
    print(f"convert: {figures['convert_events_per_s']:,} events/s (JSON lines -> Parquet, one core)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
