"""``shopwise import events|items FILE``: the file goes to the stack and is imported there.

The CLI uploads the file to ``imports/<id>/<file>`` in the artifacts bucket (boto3's multipart upload: streamed
from disk), then asks the stack to import it — on a deployed stack its import state machine, which sends an upload
of up to ``IMPORT_FUNCTION_MAX_ROWS`` lines to the import function (the object read as it streams from S3) and a larger
one to the import job (a SageMaker script-mode job on the object's copy on its disk); on the local stack the same
function or the same job entrypoint, chosen by the same rule. Both run ``shopwise.ingestion.import_job``: they
pseudonymise and validate every row, write the archive or the items table in chunks, rewrite
``imports/<id>/report.json`` every 10,000 rows — the CLI follows it with a progress bar — and put every bad row in
``imports/<id>/errors.jsonl``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shopwise import config
from shopwise.dal.objects import get_bytes, upload_file
from shopwise.ingestion.bulk import ImportReport
from shopwise.ingestion.import_job import prefix, report_key
from shopwise.settings import get_settings
from shopwise_local.importer import scan

ROUTES = ("auto", "function", "job")
Runner = Callable[[dict[str, Any]], Any]


class ImportFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class StackImport:
    import_id: str
    route: str  # function | job
    report: ImportReport
    errors_uri: str
    seconds: float


def route_for(lines: int, asked: str = "auto") -> str:
    """The import state machine's choice: the function for an upload it reads within its 15 minutes, else the job."""
    if asked not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}")
    if asked != "auto":
        return asked
    return "function" if lines <= config.IMPORT_FUNCTION_MAX_ROWS else "job"


def job_hyperparameters(request: dict[str, Any]) -> dict[str, str]:
    """The import job's hyperparameters: the request, and the stack's names a Lambda would get as its environment."""
    settings = get_settings()
    return {
        **{k: str(request[k]) for k in ("import_id", "kind", "bucket", "key", "batch_id", "lines")},  # as the stack
        "features_table": settings.features_table,
        "items_table": settings.items_table,
        "lists_stem": settings.lists_stem,
        "config_table": settings.config_table,
        "archive_bucket": settings.archive_bucket,
        "artifacts_bucket": settings.artifacts_bucket,
        "pseudonym_key_secret": settings.pseudonym_key_secret,
    }


def local_runner(route: str, work_dir: Path) -> Runner:
    """The local stack's function or job, as the import state machine would run them."""
    if route == "function":
        from shopwise_local.lambda_runtime import LocalFunction

        function = LocalFunction("imports")
        return function.invoke

    def job(request: dict[str, Any]) -> Any:
        from shopwise_local.sagemaker import run_training_job

        return run_training_job(
            f"shopwise-import-{request['import_id']}",
            channels={"upload": str(request["upload_uri"])},
            hyperparameters=job_hyperparameters(request),
            output_uri=f"s3://{request['bucket']}/{prefix(str(request['import_id'])).rstrip('/')}",
            work_dir=work_dir,
            entry="imports.py",
        )

    return job


def deployed_runner(state_machine: str, log: Callable[[str], None]) -> Runner:
    from shopwise.dal.stacks import run_state_machine

    def run(request: dict[str, Any]) -> Any:
        status, output = run_state_machine(state_machine, request, log)
        if status != "SUCCEEDED":
            raise ImportFailed(f"the import state machine ended {status}: {output}")
        return output

    return run


def import_to_stack(
    kind: str,
    path: Path,
    runner_for: Callable[[str], Runner],
    route: str = "auto",
    progress: bool = True,
    poll_s: float = 0.5,
) -> StackImport:
    """Upload, run where the rule says, follow ``report.json`` with a progress bar; the final report."""
    started = time.time()
    settings = get_settings()
    lines, batch_id = scan(path)
    import_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    key = f"{prefix(import_id)}{path.name}"
    upload_file(path, settings.artifacts_bucket, key)
    chosen = route_for(lines, route)
    request = {
        "import_id": import_id,
        "kind": kind,
        "bucket": settings.artifacts_bucket,
        "key": key,
        "batch_id": batch_id,
        "lines": str(lines),  # a job hyperparameter: a string
        "rows": lines,  # what the import state machine chooses by ...
        "route": route,  # ... unless the operator forced a route (auto, function, job)
        "upload_uri": f"s3://{settings.artifacts_bucket}/{key}",  # the import job's channel
    }
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner_for(chosen)(request)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"import-{import_id}", daemon=True)
    worker.start()
    with tqdm(total=lines, desc=f"import {kind} {path.name} ({chosen})", unit="row", disable=not progress) as bar:
        while worker.is_alive():
            worker.join(poll_s)
            _follow(bar, settings.artifacts_bucket, import_id)
        doc = _follow(bar, settings.artifacts_bucket, import_id)
    if failure or doc.get("state") != "done":
        why = doc.get("error") or (f"{type(failure[0]).__name__}: {failure[0]}" if failure else "no report")
        raise ImportFailed(f"import {import_id} of {path.name} failed: {why}")
    return StackImport(import_id, chosen, ImportReport.from_json(doc), str(doc["errors_uri"]), time.time() - started)


def _follow(bar: tqdm[Any], bucket: str, import_id: str) -> dict[str, Any]:
    raw = get_bytes(bucket, report_key(import_id))
    doc: dict[str, Any] = json.loads(raw) if raw else {}
    rows = int(doc.get("rows") or 0)
    if rows > bar.n:
        bar.update(rows - bar.n)
    return doc
