"""Bulk import from this machine's process, with a progress bar: the core's bulk code (``shopwise.ingestion.bulk``)
on a local file. The demo and the tests import this way; ``shopwise import`` sends the file to the stack's import
path instead (``shopwise_local.imports``), which runs the same code in the import function or the import job."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shopwise.ingestion import bulk
from shopwise.ingestion.bulk import ImportReport
from shopwise.ingestion.imports import Source
from shopwise.privacy.pseudonyms import Pseudonymiser

__all__ = ["ImportReport", "import_events", "import_items", "scan"]


def scan(path: Path) -> tuple[int, str]:
    """The file's line count (for the progress bar) and a digest of its content, in one streaming pass."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.blake2b(digest_size=6)
    lines = 0
    with opener(path, "rb") as handle:
        for line in handle:
            digest.update(line)
            lines += 1
    return lines, digest.hexdigest()


def _bar(total: int, desc: str, progress: bool) -> tuple[tqdm[Any], Callable[[int], None]]:
    bar = tqdm(total=total, desc=desc, unit="row", disable=not progress)

    def on_rows(read: int) -> None:
        bar.update(read - bar.n)

    return bar, on_rows


def import_items(path: Path, items_table: str, features_table: str, progress: bool = True) -> ImportReport:
    bar, on_rows = _bar(scan(path)[0], f"import items {path.name}", progress)
    with bar:
        return bulk.import_items(Source.of(path), items_table, features_table, on_rows)


def import_events(path: Path, archive_bucket: str, pseudonymiser: Pseudonymiser, progress: bool = True) -> ImportReport:
    lines, batch_id = scan(path)
    bar, on_rows = _bar(lines, f"import events {path.name}", progress)
    with bar:
        return bulk.import_events(Source.of(path), archive_bucket, pseudonymiser, batch_id, on_rows)
