"""``shopwise erasures purge``: the purge state machine's steps, locally — plan (purge function) -> the purge job
(the SageMaker entrypoint ``purge.py`` under the container contract, over the archive and the artifacts bucket) ->
finish (purge function: the failure queue, the receipts).

The local stack's log files stand in for CloudWatch Logs: in AWS the log groups that can hold a shopper key keep
them for less than the purge bound (``shopwise.config``); here the run also removes the lines that name a target
from the log files, which the stack would otherwise keep for ever.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shopwise.privacy.purge import MIN_AGE_HOURS, PURGES_PREFIX, load_plan, plan_targets, scrub_lines
from shopwise.privacy.tombstones import Targets
from shopwise.settings import get_settings
from shopwise_local.lambda_runtime import LocalFunction
from shopwise_local.sagemaker import Log, run_training_job


def scrub_log_files(directory: Path, targets: Targets) -> int:
    """Remove the lines that name a target from every file under ``directory``; how many went."""
    removed = 0
    for path in sorted(p for p in directory.rglob("*.log") if p.is_file()):
        new, lines = scrub_lines(path.read_bytes(), targets)
        if new is not None:
            path.write_bytes(new)
            removed += lines
    return removed


def run_purge(
    work_dir: Path,
    log_dirs: list[Path],
    min_age_hours: float = MIN_AGE_HOURS,
    function: LocalFunction | None = None,
    log: Log = lambda _line: None,
) -> dict[str, Any]:
    settings = get_settings()
    purge = function or LocalFunction("purge")
    started = time.perf_counter()
    planned = purge.invoke({"action": "plan", "min_age_hours": min_age_hours})
    if not planned["erasures"]:
        return {**planned, "seconds": round(time.perf_counter() - started, 3)}
    doc = load_plan(settings.artifacts_bucket, planned["plan_key"])
    run_training_job(
        f"shopwise-purge-{planned['run']}",
        channels={},
        hyperparameters={
            "plan_bucket": settings.artifacts_bucket,
            "plan_key": planned["plan_key"],
            "buckets": f"{settings.archive_bucket},{settings.artifacts_bucket}",
        },
        output_uri=f"s3://{settings.artifacts_bucket}/{PURGES_PREFIX}{planned['run']}",
        work_dir=work_dir,
        entry="purge.py",
        log=log,
    )
    done = purge.invoke({"action": "finish", "plan_key": planned["plan_key"]})
    targets = plan_targets(doc)
    done["log_lines_removed"] = sum(scrub_log_files(d, targets) for d in log_dirs if d.is_dir())
    return {**done, "seconds": round(time.perf_counter() - started, 3)}
