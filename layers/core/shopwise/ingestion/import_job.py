"""A bulk import run in the account: the uploaded file (``imports/<id>/<file>`` in the artifacts bucket) through the
bulk code (``shopwise.ingestion.bulk``), its progress and result in ``imports/<id>/report.json`` (rewritten every
``PROGRESS_EVERY`` rows, so the CLI can show a progress bar), every bad row in ``imports/<id>/errors.jsonl``.

The import function runs it on the object as it streams from S3 (files up to ``IMPORT_FUNCTION_MAX_ROWS`` lines); the
import job (a SageMaker script-mode job, for larger files) on its channel's copy on the instance's disk. Either way
nothing holds the file: rows are read, checked and written in chunks, bad rows spooled to a temporary file.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopwise import config
from shopwise.dal.objects import open_object, put_bytes, upload_file
from shopwise.ingestion import bulk
from shopwise.ingestion.imports import BadRow, Source
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise.settings import Settings

KINDS = ("events", "items")


@dataclass(frozen=True)
class ImportRequest:
    """What the CLI asks for: the import's id, the kind of rows, the uploaded object, its content digest."""

    import_id: str
    kind: str
    bucket: str
    key: str
    batch_id: str
    lines: int = 0  # the file's line count, for the progress bar

    @classmethod
    def parse(cls, event: dict[str, Any]) -> ImportRequest:
        missing = [n for n in ("import_id", "kind", "bucket", "key", "batch_id") if not event.get(n)]
        if missing:
            raise ValueError(f"import: the request needs {missing}; got {sorted(event)}")
        if event["kind"] not in KINDS:
            raise ValueError(f"import: kind must be one of {KINDS}, not {event['kind']!r}")
        if not str(event["key"]).startswith(prefix(str(event["import_id"]))):
            raise ValueError(f"import: the upload must be under {prefix(str(event['import_id']))}")
        return cls(
            str(event["import_id"]),
            str(event["kind"]),
            str(event["bucket"]),
            str(event["key"]),
            str(event["batch_id"]),
            int(event.get("lines") or 0),
        )

    @property
    def file_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def prefix(import_id: str) -> str:
    return f"{config.IMPORTS_PREFIX}{import_id}/"


def report_key(import_id: str) -> str:
    return f"{prefix(import_id)}report.json"


def errors_key(import_id: str) -> str:
    return f"{prefix(import_id)}errors.jsonl"


def peak_rss_mb() -> float:
    """This process's resident high-water mark (Linux's VmHWM, which starts again at exec — ``ru_maxrss`` would
    count the parent a job's process was forked from)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_import(request: ImportRequest, settings: Settings, local_copy: Path | None = None) -> dict[str, Any]:
    """The import: from ``local_copy`` (the job's channel) or the object as it streams. Returns the final report."""
    started = time.time()
    if local_copy is not None:
        path = local_copy
        source = Source(request.file_name, lambda: path.open("rb"))
    else:
        source = Source(request.file_name, lambda: open_object(request.bucket, request.key))
    state: dict[str, Any] = {"import_id": request.import_id, "kind": request.kind, "lines": request.lines}

    def write(doc: dict[str, Any]) -> None:
        put_bytes(request.bucket, report_key(request.import_id), json.dumps(doc).encode())

    def on_rows(read: int) -> None:
        write({**state, "state": "running", "rows": read, "seconds": round(time.time() - started, 1)})

    write({**state, "state": "running", "rows": 0})
    with tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=True) as spool:

        def on_bad(row: BadRow) -> None:
            spool.write(json.dumps({"line": row.line, "reason": row.reason}) + "\n")

        try:
            if request.kind == "items":
                report = bulk.import_items(source, settings.items_table, settings.features_table, on_rows, on_bad)
            else:
                pseudonymiser = load_pseudonymiser(settings.pseudonym_key_secret)
                report = bulk.import_events(
                    source, settings.archive_bucket, pseudonymiser, request.batch_id, on_rows, on_bad
                )
        except Exception as exc:  # the CLI is following the report: say why it stopped, then fail the run
            write({**state, "state": "failed", "error": f"{type(exc).__name__}: {exc}"})
            raise
        spool.flush()
        upload_file(Path(spool.name), request.bucket, errors_key(request.import_id))
    done = {
        **state,
        **report.to_json(),
        "state": "done",
        "rows": report.imported + report.rejected,
        "errors_uri": f"s3://{request.bucket}/{errors_key(request.import_id)}",
        "seconds": round(time.time() - started, 1),
        # the process's high-water mark: flat in the file's size (its chunks are what it holds)
        "peak_rss_mb": peak_rss_mb(),
    }
    write(done)
    return done
