"""The training data set built on Spark: the archive's Parquet (a bounded window of days) -> interactions, integer
coded, with their id maps — the same rows the Python build (``shopwise_jobs.dataset.read_event_files``) makes,
by the same rules, on as many machines as the archive needs.

One definition: each executor parses the archive's rows with ``shopwise.archive.from_row`` and
``shopwise.events.EVENT_ADAPTER``, keeps the events the jobs may count (``trusted``; not a pending erasure's),
turns each into its rows with ``dataset.event_rows`` and each consent into its log entries with
``dataset.consent_entries``; duplicates (the archive is at-least-once) are dropped by (user, event, item, kind); each
profile's rows and consent log meet in a cogroup and ``dataset.consent_mask`` marks the consented ones, as the
Python build does per profile.

Incremental (``parsed_days``: a folder or s3:// prefix, ``config.PARSED_DAYS_PREFIX`` in the artifacts bucket):
the parse is more than half of a build's work (55% of a build with the snapshot at 600,000 events,
``bench_dataset.py``), and a daily retrain's window is the days before plus one new day. Each archive day's parse
is kept there (``dt=<day>/``, Parquet, with a manifest of the day's objects — names, sizes and ETags or content
hashes — and of its part files);
a later build parses only the days whose objects changed (a new day, late deliveries, a
conversion, a purge's rewrite) and reads the others back. A cached day is held to the erasures pending at each
build, not only to those of when it was parsed: every row keeps the aliases and time of its event, and a row of a
shopper erased since is left out as the parse would have left it (the event counted erased). The purge job rewrites
the cached days without its targets' rows, by the same rule (``shopwise_jobs.purge.scrub_parsed``).

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
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopwise import archive
from shopwise.privacy.tombstones import Targets
from shopwise_jobs.dataset import INTERACTION_COLUMNS, consent_entries, consent_mask, event_rows

# one schema for every kind of row the parse emits: an interaction, a consent log entry (kind "consent"), the
# snapshot's inputs, a marker; each with its event's aliases and time (the erasure rule) and its archive day
PARSED = (
    "event_id string, user_id string, item_id string, kind string, ts double, price double, session_id string, "
    "market string, referrer string, scope string, granted boolean, record string, aliases array<string>, "
    "at double, dt string"
)
OUT_COLUMNS = [*INTERACTION_COLUMNS, "consented"]
CONSENT = "consent"
# the feature snapshot's inputs: every kept event once for its profile's fold, and once per item it touches for
# that item's fold (``record``: the event's JSON, parsed again by the fold)
PROFILE_EVENT = "profile_event"
ITEM_EVENT = "item_event"
INPUTS = (CONSENT, PROFILE_EVENT, ITEM_EVENT)
SKIPPED = "skipped"  # not a valid event, or one the jobs may not count: counted, never a row of the data set
ERASED = "erased"
KEPT = "kept"  # one marker per event the jobs count: a cached day's events of a shopper erased since count erased
MARKERS = (SKIPPED, ERASED, KEPT)
PARSE_VERSION = 1  # the parse's rules and columns: a day cached by other rules is parsed again
MANIFEST = "_manifest.json"  # beside a cached day's Parquet (Spark's readers skip names starting with "_")
_OBJECT = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hour=[^/]+/[^/]+" + re.escape(archive.PARQUET) + "$")


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
    snapshot: dict[str, float] | None = None  # the feature snapshot's counts, as FeatureSnapshot.write returns them
    days_parsed: list[str] = field(default_factory=list)  # with parsed_days: the days parsed (and cached) this build
    days_reused: int = 0  # ... and the days read back from the cache


def spark_session(app: str = "shopwise-dataset", cores: int | None = None) -> Any:
    """PySpark in local mode on this machine's cores, its Python workers this interpreter (they import shopwise as
    the driver does); no UI, no network listener beyond loopback."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    # the AWS settings as they are now (the local endpoint, its region and credentials), handed to the Python
    # workers with each task: the JVM spawns them with its own environment, fixed when a first session started it
    for name, value in sorted(os.environ.items()):
        if name.startswith("AWS_"):
            builder = builder.config(f"spark.executorEnv.{name}", value)
    session = (
        builder.appName(app)
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


def _parse(erased: dict[str, float], snapshot: bool) -> Any:
    """The executors' parse (a ``mapInArrow`` function): archive rows -> interaction rows and consent entries (and,
    with ``snapshot``, the events again for the feature folds)."""

    def parse(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pydantic import ValidationError

        from shopwise.events import EVENT_ADAPTER, Consent, interaction_items, trusted
        from shopwise.privacy.tombstones import event_aliases, event_time

        targets = Targets(erased)
        schema = _arrow(PARSED)
        for batch in batches:
            out: list[dict[str, Any]] = []
            for row in batch.to_pylist():
                day = str(row.get("dt") or "")
                record = archive.from_row({k: v for k, v in row.items() if k not in ("dt", "hour")})
                if targets and targets.event(record):
                    out.append(_marker(ERASED, day))
                    continue
                # whose record, and when: what a later build holds a kept row to, against the erasures of its day
                whose = {"aliases": event_aliases(record), "at": event_time(record), "dt": day}
                try:
                    event = EVENT_ADAPTER.validate_python(record)
                except ValidationError:
                    out.append({**_marker(SKIPPED, day), **whose})
                    continue
                if not trusted(event):
                    out.append({**_marker(SKIPPED, day), **whose})
                    continue
                out.append({**_marker(KEPT, day), **whose})
                if snapshot:
                    text = json.dumps(record, separators=(",", ":"))
                    common = {"event_id": event.event_id, "ts": event.occurred_at.timestamp(), "record": text, **whose}
                    out.append({**common, "kind": PROFILE_EVENT, "user_id": event.profile_id})
                    touched = dict.fromkeys(item for item, _kind in interaction_items(event))
                    out.extend({**common, "kind": ITEM_EVENT, "user_id": "", "item_id": item} for item in touched)
                if isinstance(event, Consent):
                    for at, event_id, scope, granted in consent_entries(event):
                        out.append({"event_id": event_id, "user_id": event.profile_id, "kind": CONSENT, "ts": at,
                                    "scope": scope, "granted": granted, **whose})  # fmt: skip
                else:
                    out.extend(
                        {**dict(zip(INTERACTION_COLUMNS, values, strict=True)), **whose} for values in event_rows(event)
                    )
            yield pa.RecordBatch.from_pylist(out, schema=schema)

    return parse


def job_session(app: str, local: bool) -> Any:
    """The session of a job entry point: PySpark's local mode here (``--local``), else the cluster's (Glue,
    spark-submit)."""
    if local:
        return spark_session(app)
    from pyspark.sql import SparkSession

    return SparkSession.builder.appName(app).getOrCreate()


def _feature_snapshot(parsed: Any, out: str, categories: dict[str, str]) -> dict[str, float]:
    """Every profile's and item's features as of the newest event, folded per profile and per item on the executors
    by the feature store's own functions (``FeatureSnapshot``'s rules: a profile only with a consent event among its
    events, all of them in time order; an item from every event touching it); written as ``FeatureSnapshot.write``
    writes them (the rows gathered to the driver: one row of named features per profile and item)."""
    from pyspark.sql import functions as F

    newest = parsed.where(F.col("kind") == PROFILE_EVENT).agg(F.max("ts")).first()[0] or 0.0
    profiles = (
        parsed.where(F.col("kind") == PROFILE_EVENT)
        .select("user_id", "record")
        .groupBy("user_id")
        .applyInPandas(_fold_profiles(categories, float(newest)), "row string")
    )
    items = (
        parsed.where(F.col("kind") == ITEM_EVENT)
        .select("item_id", "record")
        .groupBy("item_id")
        .applyInPandas(_fold_items(float(newest)), "row string")
    )
    counts: dict[str, float] = {}
    for name, frame, key in (("profiles", profiles, "profile_id"), ("items", items, "item_id")):
        rows: list[dict[str, Any]] = [json.loads(r["row"]) for r in frame.collect()]
        rows.sort(key=lambda row: str(row[key]))
        table = pd.DataFrame(rows)
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        _write_bytes(f"{out}/features/{name}.parquet", buffer.getvalue())
        counts[name] = len(table)
    return {**counts, "as_of": float(newest)}


def _fold_profiles(categories: dict[str, str], now: float) -> Any:
    def fold(rows: pd.DataFrame) -> pd.DataFrame:
        from shopwise.events import EVENT_ADAPTER, Consent
        from shopwise.features.definitions import Context, ProfileFeatures, apply_to_profile
        from shopwise_jobs.feature_snapshot import profile_row

        events = [EVENT_ADAPTER.validate_json(text) for text in rows["record"]]
        if not any(isinstance(e, Consent) for e in events):
            return _rows([])
        state = apply_to_profile(ProfileFeatures(), events, Context(categories=categories))
        if not state.consent:
            return _rows([])
        return _rows([json.dumps(profile_row(str(rows["user_id"].iloc[0]), state, now))])

    return fold


def _fold_items(now: float) -> Any:
    def fold(rows: pd.DataFrame) -> pd.DataFrame:
        from shopwise.events import EVENT_ADAPTER
        from shopwise.features.definitions import ItemFeatures, apply_to_item

        item_id = str(rows["item_id"].iloc[0])
        state = apply_to_item(ItemFeatures(), item_id, [EVENT_ADAPTER.validate_json(t) for t in rows["record"]])
        return _rows([json.dumps({"item_id": item_id, **state.windows(now)})])

    return fold


def _rows(texts: list[str]) -> pd.DataFrame:
    """A fold's output: object dtype, as PySpark's Arrow conversion takes it (pandas 3's own string dtype it
    does not)."""
    return pd.DataFrame({"row": pd.Series(texts, dtype=object)})


def _marker(kind: str, day: str) -> dict[str, Any]:
    return {"kind": kind, "user_id": "", "event_id": "", "dt": day}


def _forget(erased: dict[str, float]) -> Any:
    """The erasure rule over cached rows (a ``mapInArrow`` function): a row whose event names a shopper erased
    after it happened is left out, as the parse leaves it out (``Targets.event``), its record's marker (kept or
    skipped) counted erased — as the parse, which tests the erasures first, counts it."""

    def forget(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        targets = Targets(erased)
        schema = _arrow(PARSED)
        for batch in batches:
            out: list[dict[str, Any]] = []
            for row in batch.to_pylist():
                if row["aliases"] and targets.named(row["aliases"], row["at"]):
                    if row["kind"] in (KEPT, SKIPPED):
                        out.append(_marker(ERASED, row["dt"]))
                    continue
                out.append(row)
            yield pa.RecordBatch.from_pylist(out, schema=schema)

    return forget


def day_fingerprints(archive_path: str, since: str = "") -> dict[str, str]:
    """Each archive day (from ``since``) and a digest of its Parquet objects — their names, sizes and S3 ETags (or,
    in a folder, content hashes): what changes when an object is added (a late delivery, a conversion), rewritten
    (a purge) or deleted."""
    lines: dict[str, list[str]] = {}
    if archive_path.startswith("s3://"):
        from shopwise.dal.objects import list_objects, parse_s3_uri

        bucket, prefix = parse_s3_uri(archive_path.rstrip("/") + "/")
        found = [(key[len(prefix) :], f"{size} {etag}") for key, size, etag in
                 list_objects(bucket, prefix, f"{prefix}dt={since}" if since else "")]  # fmt: skip
    else:
        root = Path(archive_path)
        found = [
            (p.relative_to(root).as_posix(), f"{p.stat().st_size} {hashlib.blake2b(p.read_bytes()).hexdigest()}")
            for p in root.glob("dt=*/hour=*/*" + archive.PARQUET)
        ]
    for name, tag in found:
        match = _OBJECT.match(name)
        if match and match.group(1) >= since:
            lines.setdefault(match.group(1), []).append(f"{name} {tag}")
    return {day: hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest() for day, v in sorted(lines.items())}


def _parsed_days(
    spark: Any, events: Any, archive_path: str, cache: str, since: str, erased: dict[str, float], snapshot: bool,
    reparse: bool,
) -> tuple[Any, list[str], list[str]]:  # fmt: skip
    """The window's parsed rows through the cache of parsed days: (rows, days parsed now, days read back)."""
    from pyspark.sql import functions as F

    cache = cache.rstrip("/")
    fingerprints = day_fingerprints(archive_path, since)
    fresh: list[str] = []
    reused: list[str] = []
    for day, digest in fingerprints.items():
        manifest = None if reparse else _read_json(f"{cache}/dt={day}/{MANIFEST}")
        same = (
            manifest is not None
            and manifest.get("version") == PARSE_VERSION
            and manifest.get("objects") == digest
            and (bool(manifest.get("snapshot")) or not snapshot)
            # every part it wrote still there, and nothing beside them (an expiry or a deletion stopped halfway)
            and sorted(manifest.get("parts", [])) == _parts(f"{cache}/dt={day}")
        )
        (reused if same else fresh).append(day)
    if fresh:
        parsed = events.where(F.col("dt").cast("string").isin(fresh)).mapInArrow(_parse(erased, snapshot), PARSED)
        # only the fresh days' folders are replaced (the others, cached, stay)
        writer = parsed.write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy("dt")
        writer.parquet(cache)
        for day in fresh:  # after the day's rows: a manifest always describes rows that are there
            parts = _parts(f"{cache}/dt={day}")
            body = {"version": PARSE_VERSION, "objects": fingerprints[day], "snapshot": snapshot, "parts": parts}
            _write_bytes(f"{cache}/dt={day}/{MANIFEST}", json.dumps(body).encode())

    def read(days: list[str]) -> Any:
        return spark.read.schema(PARSED).option("basePath", cache).parquet(*[f"{cache}/dt={d}" for d in days])

    frames = [read(fresh)] if fresh else []
    if reused:
        frames.append(read(reused).mapInArrow(_forget(erased), PARSED) if erased else read(reused))
    if not frames:
        return spark.createDataFrame([], PARSED), fresh, reused
    rows = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    return rows, fresh, reused


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
    categories: dict[str, str] | None = None,
    parsed_days: str | None = None,
    reparse: bool = False,
) -> DatasetReport:
    """The data set of the archive at ``archive_path`` (its ``events/`` folder, or any folder of ``dt=`` partitions)
    into ``out``; ``days``: only the newest days' partitions are read (the window training sees). ``categories``
    (item -> catalog category path; may be empty): the feature snapshot too, ``features/profiles.parquet`` and
    ``features/items.parquet`` as ``FeatureSnapshot`` writes them. ``parsed_days`` (a folder or s3:// prefix): each
    day's parse kept there and read back while the day's objects stay the same (``reparse``: every day parsed
    again)."""
    from pyspark.sql import functions as F

    since = ((now or datetime.now(UTC)) - timedelta(days=days)).strftime("%Y-%m-%d") if days else ""
    events = spark.read.option("basePath", archive_path).parquet(_glob(archive_path))
    if since:
        events = events.where(F.col("dt") >= since)  # partition pruning: the days before are never listed or read
    records = events.count()  # the Parquet footers' row counts
    snapshot = categories is not None
    targets = dict(erased.erased_at) if erased else {}
    fresh: list[str] = []
    reused: list[str] = []
    if parsed_days:
        parsed, fresh, reused = _parsed_days(
            spark, events, archive_path, parsed_days, since, targets, snapshot, reparse
        )
    else:
        parsed = events.mapInArrow(_parse(targets, snapshot), PARSED)
    parsed = parsed.cache()
    counts = {r["kind"]: r["n"] for r in parsed.groupBy("kind").agg(F.count("*").alias("n")).collect()}
    interactions = parsed.where(~F.col("kind").isin(*INPUTS, *MARKERS)).dropDuplicates(
        ["user_id", "event_id", "item_id", "kind"]
    )
    end = interactions.agg(F.max("ts")).first()[0] or 0.0
    folded = _feature_snapshot(parsed, out, categories or {}) if snapshot else None
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
        snapshot=folded,
        days_parsed=fresh,
        days_reused=len(reused),
    )
    marked.unpersist()
    _write_bytes(f"{out}/dataset.json", json.dumps(asdict(report)).encode())
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

    kinds = {
        "string": pa.string(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "array<string>": pa.list_(pa.string()),
    }
    return pa.schema([pa.field(name, kinds[kind]) for name, kind in (part.split() for part in ddl.split(", "))])


def _parts(folder: str) -> list[str]:
    """The Parquet part files in a folder (a path or s3://), by name, sorted."""
    if folder.startswith("s3://"):
        from shopwise.dal.objects import list_keys, parse_s3_uri

        bucket, prefix = parse_s3_uri(folder.rstrip("/") + "/")
        return sorted(
            k[len(prefix) :]
            for k in list_keys(bucket, prefix)
            if k.endswith(".parquet") and "/" not in k[len(prefix) :]
        )
    return sorted(p.name for p in Path(folder).glob("*.parquet"))


def _read_json(uri: str) -> dict[str, Any] | None:
    """A JSON file beside Spark's output (a path or s3://), or None when there is none."""
    if uri.startswith("s3://"):
        from shopwise.dal.objects import get_bytes, parse_s3_uri

        body = get_bytes(*parse_s3_uri(uri))
    else:
        body = Path(uri).read_bytes() if Path(uri).is_file() else None
    return json.loads(body) if body else None


def _write_bytes(uri: str, body: bytes) -> None:
    """A file the driver writes beside Spark's output (a path, or s3:// in AWS)."""
    if uri.startswith("s3://"):
        from shopwise.dal.objects import parse_s3_uri, put_bytes

        put_bytes(*parse_s3_uri(uri), body)
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_bytes(body)


def is_built(folder: Path) -> bool:
    """Whether a folder is a data set this job built (the training job then reads it instead of events)."""
    return (folder / "dataset.json").is_file() and (folder / "interactions").is_dir()


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


def read_built(folder: Path) -> Any:
    """A built data set as the training job's ``EventData`` (interactions with the Python build's columns, and the
    build's counts). Erasures pending when it was built were left out then; the purge removes them since."""
    from shopwise_jobs.dataset import EventData

    report = json.loads((folder / "dataset.json").read_text())
    interactions, _users, _items = read_dataset(folder)
    frame = interactions[OUT_COLUMNS].reset_index(drop=True)
    return EventData(frame, int(report["records"]), int(report["skipped"]), int(report["erased"]))


def copy_snapshot(folder: Path, target: Path) -> dict[str, float]:
    """The build's feature snapshot into the model folder (what ``FeatureSnapshot.write`` would have written)."""
    import shutil

    report = json.loads((folder / "dataset.json").read_text())
    if not report.get("snapshot"):
        raise ValueError(f"{folder}: built without the feature snapshot (build it with the catalog's categories)")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("profiles.parquet", "items.parquet"):
        shutil.copyfile(folder / "features" / name, target / name)
    return dict(report["snapshot"])


def catalog_categories(uri: str) -> dict[str, str]:
    """Item -> category path from the catalog's export (``catalog/items.jsonl.gz``: a path or s3://)."""
    import tempfile

    from shopwise_jobs.dataset import read_catalog

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if uri.startswith("s3://"):
            from shopwise.dal.objects import get_bytes, parse_s3_uri

            body = get_bytes(*parse_s3_uri(uri))
            if body is None:
                return {}
            (folder / "items.jsonl.gz").write_bytes(body)
        else:
            if not Path(uri).is_file():
                return {}
            (folder / "items.jsonl.gz").write_bytes(Path(uri).read_bytes())
        frame = read_catalog(folder)
    if "category" not in frame:
        return {}
    return {
        str(k): str(v) for k, v in zip(frame["item_id"], frame["category"], strict=True) if isinstance(v, str) and v
    }


def main(argv: list[str] | None = None, glue: bool = False) -> int:
    """``spark-submit`` / Glue entry: ``--archive`` (the events/ prefix), ``--out``, ``--days``, ``--categories``
    (the catalog export: the feature snapshot's folds need it), ``--erasures`` (the pending erasures' prefix: their
    shoppers' events are left out, as training leaves them out), ``--parsed-days`` (the cache of parsed days)."""
    parser = argparse.ArgumentParser(description="the training data set from the archive, on Spark")
    parser.add_argument("--archive", required=True, help="the archive's events/ folder (a path or s3://.../events/)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--days", type=int, default=0, help="only the newest N days (0: the whole archive)")
    parser.add_argument("--categories", default="", help="the catalog export (catalog/items.jsonl.gz)")
    parser.add_argument("--erasures", default="", help="s3:// prefix of the pending erasures")
    parser.add_argument("--parsed-days", default="", help="where each archive day's parse is kept for the next build")
    parser.add_argument("--reparse", action="store_true", help="parse every day again (the kept parses replaced)")
    parser.add_argument("--local", action="store_true", help="PySpark in local mode (else the cluster's session)")
    # Glue adds its own arguments (--JOB_NAME, --TempDir, ...): only ours are read
    args, _glue_args = parser.parse_known_args(argv) if glue else (parser.parse_args(argv), [])
    spark = job_session("shopwise-dataset", args.local)
    erased = None
    if args.erasures:
        from shopwise.dal.erasures import pending_targets

        erased = pending_targets(args.erasures)
    categories = catalog_categories(args.categories) if args.categories else None
    report = build(
        spark,
        args.archive,
        args.out,
        args.days or None,
        erased=erased,
        categories=categories,
        parsed_days=args.parsed_days or None,
        reparse=args.reparse,
    )
    print(json.dumps(asdict(report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
