"""Bulk import into a stack: catalog rows into the items table (and their stock into the out-of-stock set), history
rows into the event archive the training job reads, pseudonymised as the collector does it. One code path for the
CLI on this machine, the import function and the import job in the account (``shopwise.ingestion.import_job``):
rows stream from a ``Source`` (a file, or an S3 object as it is read) and are written in chunks, so a file of any
size is never held in memory; bad rows are counted, the first ``KEEP_BAD`` kept in the report with line number and
reason, and every one handed to ``on_bad`` (the job writes them to its error report object)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from shopwise import archive, config
from shopwise.dal.catalog import put_items, set_availability
from shopwise.dal.objects import put_bytes
from shopwise.events import to_record
from shopwise.ingestion.imports import BadRow, Source, read_events, read_items
from shopwise.privacy.pseudonyms import Pseudonymiser

ARCHIVE_CHUNK = 50_000  # events per archive object
ITEMS_CHUNK = 1_000  # catalog rows per batch write
KEEP_BAD = 1_000  # bad rows the report keeps (all of them reach ``on_bad``)
T = TypeVar("T")
Rows = Callable[[int], None]  # told the number of rows read so far, every PROGRESS_EVERY rows and at the end
PROGRESS_EVERY = 10_000


@dataclass
class ImportReport:
    path: str
    imported: int = 0
    rejected: int = 0
    bad: list[BadRow] = field(default_factory=list)  # the first KEEP_BAD
    keys: list[str] = field(default_factory=list)  # the archive objects written (events)

    def reject(self, row: BadRow) -> None:
        self.rejected += 1
        if len(self.bad) < KEEP_BAD:
            self.bad.append(row)

    def summary(self, limit: int = 10) -> str:
        lines = [f"{self.path}: {self.imported} rows imported, {self.rejected} rejected"]
        lines += [f"  line {row.line}: {row.reason}" for row in self.bad[:limit]]
        if self.rejected > limit:
            lines.append(f"  ... and {self.rejected - limit} more")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "imported": self.imported,
            "rejected": self.rejected,
            "bad": [{"line": b.line, "reason": b.reason} for b in self.bad],
            "keys": self.keys,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ImportReport:
        return cls(
            str(doc["path"]),
            int(doc["imported"]),
            int(doc["rejected"]),
            [BadRow(int(b["line"]), str(b["reason"])) for b in doc.get("bad", [])],
            list(doc.get("keys", [])),
        )


def _good_rows(
    rows: Iterable[tuple[int, T | BadRow]],
    report: ImportReport,
    on_rows: Rows,
    on_bad: Callable[[BadRow], None],
) -> Iterator[T]:
    read = 0
    for _line, row in rows:
        read += 1
        if read % PROGRESS_EVERY == 0:
            on_rows(read)
        if isinstance(row, BadRow):
            report.reject(row)
            on_bad(row)
        else:
            report.imported += 1
            yield row
    on_rows(read)


def _chunks(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_items(
    source: Source,
    items_table: str,
    features_table: str,
    on_rows: Rows = lambda _n: None,
    on_bad: Callable[[BadRow], None] = lambda _row: None,
) -> ImportReport:
    """Catalog rows into the items table (the pipeline exports the table for training before each run), and their
    stock into the out-of-stock set serving reads, ``ITEMS_CHUNK`` rows at a time."""
    report = ImportReport(source.name)
    for chunk in _chunks(_good_rows(read_items(source), report, on_rows, on_bad), ITEMS_CHUNK):
        put_items(items_table, chunk)
        set_availability(features_table, {item.item_id: item.in_stock for item in chunk})
    return report


def archive_key(stem: str, batch_id: str, part: int, at: datetime) -> str:
    """Where an import's part lands: the archive partition of the day it was imported, as Firehose would put it,
    named by the file's content (the same file imported again the same day writes the same objects)."""
    return f"{config.ARCHIVE_EVENTS_PREFIX}dt={at:%Y-%m-%d}/hour={at:%H}/import-{stem}-{batch_id}-{part:05d}{archive.PARQUET}"


def import_events(
    source: Source,
    archive_bucket: str,
    pseudonymiser: Pseudonymiser,
    batch_id: str,
    on_rows: Rows = lambda _n: None,
    on_bad: Callable[[BadRow], None] = lambda _row: None,
) -> ImportReport:
    """History into the archive, ``ARCHIVE_CHUNK`` events an object, ids pseudonymised as the collector does it.
    ``batch_id`` names the file's content (a digest): importing the same file again the same day replaces its
    objects (on another day it adds a copy: training de-duplicates events by source and id, the backfill's ledger
    within 48 hours)."""
    report = ImportReport(source.name)
    today = datetime.now(UTC)
    for part, chunk in enumerate(_chunks(_good_rows(read_events(source), report, on_rows, on_bad), ARCHIVE_CHUNK)):
        key = archive_key(source.stem, batch_id, part, today)
        put_bytes(archive_bucket, key, archive.encode_parquet(to_record(pseudonymiser.apply(event)) for event in chunk))
        report.keys.append(key)
    return report
