"""Bulk import into a stack: catalog rows into the items table (and a catalog snapshot for training), history
rows into the event archive the training job reads. Bad rows are reported with line number and reason."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from shopwise import config
from shopwise.catalog.items import CatalogItem
from shopwise.dal.catalog import put_items, set_availability
from shopwise.dal.objects import put_bytes
from shopwise.events import to_record
from shopwise.ingestion.imports import BadRow, read_events, read_items
from shopwise.privacy.pseudonyms import Pseudonymiser

ARCHIVE_CHUNK = 50_000
T = TypeVar("T")


@dataclass
class ImportReport:
    path: str
    imported: int = 0
    bad: list[BadRow] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # the archive objects written (events)

    def summary(self, limit: int = 10) -> str:
        lines = [f"{self.path}: {self.imported} rows imported, {len(self.bad)} rejected"]
        lines += [f"  line {row.line}: {row.reason}" for row in self.bad[:limit]]
        if len(self.bad) > limit:
            lines.append(f"  ... and {len(self.bad) - limit} more")
        return "\n".join(lines)


def _good_rows(rows: Iterable[tuple[int, T | BadRow]], report: ImportReport, bar: tqdm[Any]) -> Iterator[T]:
    for _line, row in rows:
        bar.update(1)
        if isinstance(row, BadRow):
            report.bad.append(row)
        else:
            report.imported += 1
            yield row


def _count_lines(path: Path) -> int:
    return _scan(path)[0]


def _scan(path: Path) -> tuple[int, str]:
    """The file's line count (for the progress bar) and a digest of its content, in one streaming pass."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.blake2b(digest_size=6)
    lines = 0
    with opener(path, "rb") as handle:
        for line in handle:
            digest.update(line)
            lines += 1
    return lines, digest.hexdigest()


def import_items(path: Path, items_table: str, features_table: str, progress: bool = True) -> ImportReport:
    """Catalog rows into the items table (the pipeline exports the table for training before each run), and their
    stock into the out-of-stock set serving reads."""
    report = ImportReport(str(path))
    with tqdm(total=_count_lines(path), desc=f"import items {path.name}", unit="row", disable=not progress) as bar:
        items: list[CatalogItem] = list(_good_rows(read_items(path), report, bar))
        put_items(items_table, items)
        set_availability(features_table, {item.item_id: item.in_stock for item in items})
    return report


def import_events(path: Path, archive_bucket: str, pseudonymiser: Pseudonymiser, progress: bool = True) -> ImportReport:
    """History lands in the archive partition of the day it was imported, as Firehose would have put it, with its
    ids pseudonymised as the collector does it. Objects are named by the file's content: importing the same file
    again the same day replaces them (on another day it adds a copy: training de-duplicates events by source and
    id, and the backfill's ledger within 48 hours)."""
    report = ImportReport(str(path))
    today = datetime.now(UTC)
    # named by the file's content: the same file imported again the same day writes the same objects (no duplicate
    # in the archive), which the backfill finds done
    lines, batch_id = _scan(path)
    chunk: list[bytes] = []
    part = 0

    def flush() -> None:
        nonlocal part, chunk
        if not chunk:
            return
        key = (
            f"{config.ARCHIVE_EVENTS_PREFIX}dt={today:%Y-%m-%d}/hour={today:%H}/"
            f"import-{path.stem}-{batch_id}-{part:05d}.jsonl.gz"
        )
        put_bytes(archive_bucket, key, gzip.compress(b"".join(chunk), mtime=0))
        report.keys.append(key)
        part += 1
        chunk = []

    with tqdm(total=lines, desc=f"import events {path.name}", unit="row", disable=not progress) as bar:
        for event in _good_rows(read_events(path), report, bar):
            record = to_record(pseudonymiser.apply(event))
            chunk.append(json.dumps(record, separators=(",", ":")).encode() + b"\n")
            if len(chunk) >= ARCHIVE_CHUNK:
                flush()
        flush()
    return report
