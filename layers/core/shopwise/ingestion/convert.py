"""``shopwise archive convert``: the archive's gzip JSON Lines objects (what Firehose and the importer wrote before
the archive became Parquet) rewritten as Parquet of the archive table, in the same partition under the same name.

Nothing is lost on failure: an object's Parquet is written (and read back: as many rows as the object had
convertible lines) before the JSON object is deleted; a run that stops between the two finds the Parquet on the
next run, checks it and deletes the JSON. Lines that don't fit the table (not JSON, or a field without a column)
go where Firehose puts what it cannot convert: ``errors/format-conversion-failed/dt=.../<name>.jsonl.gz``. Until
an object is converted, every reader reads it as it is (``shopwise.archive.read_records``); while a run is under
way a reader may meet an object in both forms for a moment (training de-duplicates events by source and id).

Past one process, the stack's conversion job hands this function the keys a Spark task at a time
(``shopwise_jobs.spark_convert``). Memory: one object at a time (Firehose's are at most its 128 MB buffer, the
importer's 50,000 events).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from tqdm import tqdm

from shopwise import archive, config
from shopwise.dal.objects import delete_key, get_bytes, list_keys, put_bytes


@dataclass
class ConvertReport:
    objects: int = 0  # JSON objects converted (and deleted) in this run
    resumed: int = 0  # their Parquet was written by an earlier run: checked, then the JSON deleted
    events: int = 0
    failed_lines: int = 0  # lines Firehose's conversion would refuse: kept under errors/
    bytes_json: int = 0
    bytes_parquet: int = 0
    remaining: list[str] = field(default_factory=list)  # "<key>: <reason>"

    def summary(self) -> str:
        ratio = f", {self.bytes_parquet / self.bytes_json:.2f}x the gzip JSON's bytes" if self.bytes_json else ""
        lines = [
            f"convert: {self.objects} archive objects rewritten as Parquet ({self.resumed} finished from an earlier "
            f"run), {self.events} events, {self.failed_lines} lines kept under "
            f"{config.ARCHIVE_ERRORS_PREFIX}format-conversion-failed/{ratio}"
        ]
        return "\n".join(lines + [f"  not converted: {why}" for why in self.remaining[:10]])


def json_objects(bucket: str) -> list[str]:
    """The archive's JSON Lines objects (from before it was Parquet)."""
    return [key for key in list_keys(bucket, config.ARCHIVE_EVENTS_PREFIX) if key.endswith(archive.JSON_LINES)]


def parquet_key(key: str) -> str:
    for suffix in archive.JSON_LINES:
        if key.endswith(suffix):
            return key[: -len(suffix)] + archive.PARQUET
    raise ValueError(f"{key}: not a JSON Lines archive object")


def errors_key(key: str) -> str:
    """Where an object's unconvertible lines go: Firehose's error prefix, by the object's day."""
    day = next((part for part in key.split("/") if part.startswith("dt=")), "dt=unknown")
    name = key.rsplit("/", 1)[-1]
    return f"{config.ARCHIVE_ERRORS_PREFIX}format-conversion-failed/{day}/{name.removesuffix('.gz')}.gz"


def convert_archive(bucket: str, keys: Iterable[str] | None = None, progress: bool = True) -> ConvertReport:
    """Rewrite these JSON Lines objects (default: all of them) as Parquet; each JSON object deleted once its
    Parquet is in place and complete."""
    report = ConvertReport()
    todo = list(json_objects(bucket) if keys is None else keys)
    for key in tqdm(todo, desc="convert", unit="object", disable=not progress):
        body = get_bytes(bucket, key)
        if body is None:
            continue  # converted by another worker meanwhile
        lines = [line for line in _lines(key, body) if line.strip()]
        target = parquet_key(key)
        rows, failed = archive.split(lines)
        expected = len(rows)
        parquet = get_bytes(bucket, target)  # a run that stopped before the delete wrote it: checked, not rewritten
        resumed = parquet is not None
        if parquet is None and rows:
            parquet = archive.encode_rows(rows)
            put_bytes(bucket, target, parquet)
        written = _rows(parquet)
        if written != expected:
            report.remaining.append(f"{key}: its Parquet holds {written} rows, the object {expected} events")
            continue
        if failed:
            put_bytes(bucket, errors_key(key), gzip.compress(b"\n".join(failed) + b"\n", mtime=0))
        delete_key(bucket, key)
        report.objects += 1
        report.resumed += resumed
        report.events += expected
        report.failed_lines += len(failed)
        report.bytes_json += len(body)
        report.bytes_parquet += len(parquet or b"")
    return report


def _lines(key: str, body: bytes) -> list[bytes]:
    text = gzip.decompress(body) if key.endswith(".gz") or body[:2] == b"\x1f\x8b" else body
    return text.splitlines()


def _rows(parquet: bytes | None) -> int:
    if parquet is None:
        return 0
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(io.BytesIO(parquet)).metadata.num_rows)
