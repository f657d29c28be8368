"""The training data set built on Spark: the archive's Parquet (a bounded window of days) -> interactions, integer
coded, with their id maps — the same rows the Python build (``shopwise_jobs.dataset.read_event_files``) makes,
by the same rules, on as many machines as the archive needs.

One definition: each executor parses the archive's rows with ``shopwise.archive.from_row`` and
``shopwise.events.EVENT_ADAPTER``, keeps the events the jobs may count (``trusted``; not a pending erasure's),
turns each into its rows with ``dataset.event_rows`` and each consent into its log entries with
``dataset.consent_entries``; duplicates (the archive is at-least-once) are dropped by (user, event, item, kind); each
profile's rows and consent log meet in a cogroup and ``dataset.consent_mask`` marks the consented ones, as the
Python build does per profile.

Output (``out``): ``interactions/`` (Parquet: ``INTERACTION_COLUMNS``, ``consented``, and ``user_idx``/``item_idx``:
positions in the id maps), ``users/`` and ``items/`` (Parquet: ``idx``, the id; sorted by id, so the codes are the
same whichever engine or partitioning made them) and ``dataset.json`` (counts, the window). The trainer reads them
with ``read_dataset`` (pyarrow, memory-mapped).

Where it runs: locally, PySpark in local mode (``spark_session()``, every core of this machine:
``shopwise dataset build``); in AWS, the same module under ``spark-submit`` (SageMaker Processing's Spark image or
EMR Serverless: ``python -m shopwise_jobs.spark_dataset --archive s3://... --out s3://...``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopwise import archive
from shopwise.privacy.tombstones import Targets
from shopwise_jobs.dataset import INTERACTION_COLUMNS, consent_entries, consent_mask, event_rows

# one schema for both kinds of row the parse emits: an interaction, or a consent log entry (kind "consent")
PARSED = (
    "event_id string, user_id string, item_id string, kind string, ts double, price double, session_id string, "
    "market string, referrer string, scope string, granted boolean"
)
OUT_COLUMNS = [*INTERACTION_COLUMNS, "consented"]
CONSENT = "consent"
SKIPPED = "skipped"  # not a valid event, or one the jobs may not count: counted, never a row of the data set
ERASED = "erased"


@dataclass(frozen=True)
class DatasetReport:
    records: int
    interactions: int
    consented: int
    users: int
    items: int
    skipped: int
    erased: int
    since: str  # the first archive day read ("" : all of them)


def spark_session(app: str = "shopwise-dataset", cores: int | None = None) -> Any:
    """PySpark in local mode on this machine's cores, its Python workers this interpreter (they import shopwise as
    the driver does); no UI, no network listener beyond loopback."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (
        SparkSession.builder.appName(app)
        .master(f"local[{cores or '*'}]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(max(2, (cores or os.cpu_count() or 2) * 2)))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def _parse(erased: dict[str, float]) -> Any:
    """The executors' parse (a ``mapInArrow`` function): archive rows -> interaction rows and consent entries."""

    def parse(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pydantic import ValidationError

        from shopwise.events import EVENT_ADAPTER, Consent, trusted

        targets = Targets(erased)
        schema = _arrow(PARSED)
        for batch in batches:
            out: list[dict[str, Any]] = []
            for row in batch.to_pylist():
                record = archive.from_row({k: v for k, v in row.items() if k not in ("dt", "hour")})
                if targets and targets.event(record):
                    out.append(_marker(ERASED))
                    continue
                try:
                    event = EVENT_ADAPTER.validate_python(record)
                except ValidationError:
                    out.append(_marker(SKIPPED))
                    continue
                if not trusted(event):
                    out.append(_marker(SKIPPED))
                elif isinstance(event, Consent):
                    for at, event_id, scope, granted in consent_entries(event):
                        out.append({"event_id": event_id, "user_id": event.profile_id, "kind": CONSENT, "ts": at,
                                    "scope": scope, "granted": granted})  # fmt: skip
                else:
                    out.extend(dict(zip(INTERACTION_COLUMNS, values, strict=True)) for values in event_rows(event))
            yield pa.RecordBatch.from_pylist(out, schema=schema)

    return parse


def _marker(kind: str) -> dict[str, Any]:
    return {"kind": kind, "user_id": "", "event_id": ""}


def _consented(end: float) -> Any:
    """The per-profile function: one profile's interactions and consent entries (kind "consent") -> its
    interactions marked ``consented``."""

    def mark(rows: pd.DataFrame) -> pd.DataFrame:
        is_log = (rows["kind"] == CONSENT).to_numpy()
        log = rows[is_log]
        entries = [
            [float(t), str(e), str(s), bool(g)]
            for t, e, s, g in zip(log["ts"], log["event_id"], log["scope"], log["granted"], strict=True)
        ]
        kept = rows.loc[~is_log, INTERACTION_COLUMNS].copy()
        kept["consented"] = consent_mask(kept["ts"].to_numpy(dtype=np.float64), entries, end)
        return kept

    return mark


def build(
    spark: Any,
    archive_path: str,
    out: str,
    days: int | None = None,
    now: datetime | None = None,
    erased: Targets | None = None,
) -> DatasetReport:
    """The data set of the archive at ``archive_path`` (its ``events/`` folder, or any folder of ``dt=`` partitions)
    into ``out``; ``days``: only the newest days' partitions are read (the window training sees)."""
    from pyspark.sql import functions as F

    since = ((now or datetime.now(UTC)) - timedelta(days=days)).strftime("%Y-%m-%d") if days else ""
    events = spark.read.option("basePath", archive_path).parquet(_glob(archive_path))
    if since:
        events = events.where(F.col("dt") >= since)  # partition pruning: the days before are never listed or read
    records = events.count()  # the Parquet footers' row counts
    parsed = events.mapInArrow(_parse(dict(erased.erased_at) if erased else {}), PARSED).cache()
    counts = {r["kind"]: r["n"] for r in parsed.groupBy("kind").agg(F.count("*").alias("n")).collect()}
    interactions = parsed.where(~F.col("kind").isin(CONSENT, SKIPPED, ERASED)).dropDuplicates(
        ["user_id", "event_id", "item_id", "kind"]
    )
    end = interactions.agg(F.max("ts")).first()[0] or 0.0
    # each profile's rows and consent log together, one group a profile
    marked = (
        interactions.unionByName(parsed.where(F.col("kind") == CONSENT))
        .groupBy("user_id")
        .applyInPandas(_consented(float(end)), _ddl(OUT_COLUMNS))
        .cache()
    )
    parsed.unpersist()
    users = _id_map(marked, "user_id")
    items = _id_map(marked, "item_id")
    users.write.mode("overwrite").parquet(f"{out}/users")
    items.write.mode("overwrite").parquet(f"{out}/items")
    users, items = spark.read.parquet(f"{out}/users"), spark.read.parquet(f"{out}/items")
    coded = (
        marked.join(users, "user_id")
        .withColumnRenamed("idx", "user_idx")
        .join(items, "item_id")
        .withColumnRenamed("idx", "item_idx")
        .select(*OUT_COLUMNS, "user_idx", "item_idx")
    )
    coded.write.mode("overwrite").parquet(f"{out}/interactions")
    totals = (
        spark.read.parquet(f"{out}/interactions")
        .agg(F.count("*").alias("n"), F.sum(F.col("consented").cast("long")).alias("consented"))
        .first()
    )
    report = DatasetReport(
        records=records,
        interactions=int(totals["n"]),
        consented=int(totals["consented"] or 0),
        users=users.count(),
        items=items.count(),
        skipped=int(counts.get(SKIPPED, 0)),
        erased=int(counts.get(ERASED, 0)),
        since=since,
    )
    marked.unpersist()
    _write_text(f"{out}/dataset.json", json.dumps(asdict(report)))
    return report


def _glob(path: str) -> str:
    """Every Parquet object under the archive's partitions (the gzip JSON of before is left to convert first)."""
    return path.rstrip("/") + "/dt=*/hour=*/*" + archive.PARQUET


def _id_map(frame: Any, column: str) -> Any:
    """Distinct ids, sorted, numbered from 0 (``zipWithIndex`` over the sorted ids: distributed, and the same codes
    whatever the partitioning)."""
    ids = frame.select(column).distinct().orderBy(column)
    return ids.rdd.zipWithIndex().map(lambda pair: (pair[0][0], pair[1])).toDF(f"{column} string, idx long")


def _ddl(columns: list[str]) -> str:
    types = {"ts": "double", "price": "double", "consented": "boolean"}
    return ", ".join(f"{c} {types.get(c, 'string')}" for c in columns)


def _arrow(ddl: str) -> Any:
    import pyarrow as pa

    kinds = {"string": pa.string(), "double": pa.float64(), "boolean": pa.bool_()}
    return pa.schema([pa.field(name, kinds[kind]) for name, kind in (part.split() for part in ddl.split(", "))])


def _write_text(uri: str, text: str) -> None:
    if uri.startswith("s3://"):
        from shopwise.dal.objects import parse_s3_uri, put_bytes

        put_bytes(*parse_s3_uri(uri), text.encode())
    else:
        Path(uri).write_text(text)


def read_dataset(folder: Path) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """(interactions, user ids by code, item ids by code) of a built data set, memory-mapped from its Parquet."""
    import pyarrow.parquet as pq

    def table(name: str) -> pd.DataFrame:
        files = sorted((folder / name).glob("*.parquet"))
        frames = [pq.read_table(f, memory_map=True).to_pandas() for f in files]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    interactions = table("interactions")
    users = table("users").sort_values("idx")["user_id"].reset_index(drop=True)
    items = table("items").sort_values("idx")["item_id"].reset_index(drop=True)
    return interactions, users, items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the training data set from the archive, on Spark")
    parser.add_argument("--archive", required=True, help="the archive's events/ folder (a path or s3://.../events/)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--days", type=int, default=0, help="only the newest N days (0: the whole archive)")
    parser.add_argument("--local", action="store_true", help="PySpark in local mode (else the cluster's session)")
    args = parser.parse_args(argv)
    if args.local:
        spark = spark_session()
    else:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.appName("shopwise-dataset").getOrCreate()
    report = build(spark, args.archive, args.out, args.days or None)
    print(json.dumps(asdict(report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
