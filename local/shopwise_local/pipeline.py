"""The retraining pipeline run locally: export catalog -> train -> gate -> batch transform -> load -> promote,
the steps the Step Functions state machine runs in AWS, with the same entrypoints and the same S3 layout. Every
trained version is recorded in the model registry (``shopwise.registry``); a candidate the gate refuses stops the
run with its reasons and the active version keeps serving."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopwise import config, registry
from shopwise.dal.aws import client
from shopwise.settings import get_settings
from shopwise_local.lambda_runtime import LocalFunction
from shopwise_local.paths import REPO_ROOT, SAGEMAKER_DIR
from shopwise_local.sagemaker import run_training_job, run_transform_job

Log = Callable[[str], None]


class Rejected(RuntimeError):
    """The gate refused the candidate: nothing was transformed or loaded; the record says why."""

    def __init__(self, record: registry.ModelRecord) -> None:
        super().__init__(f"model {record.version} rejected by the promotion gate: {record.reason}")
        self.record = record


def code_version() -> str:
    """The commit the job ran from (what the registry records), or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


@dataclass(frozen=True)
class PipelineResult:
    model_version: str
    model_uri: str
    metrics: dict[str, Any]
    rows_loaded: int
    seconds: dict[str, float]


def run_pipeline(
    archive_bucket: str,
    artifacts_bucket: str,
    work_dir: Path,
    hyperparameters: dict[str, Any] | None = None,
    load_function: LocalFunction | None = None,
    export_function: LocalFunction | None = None,
    log: Log = lambda _line: None,
    stage: Callable[[str], None] = lambda _name: None,
    margin: float | None = None,
) -> PipelineResult:
    seconds: dict[str, float] = {}
    config_table = get_settings().config_table
    margin = config.environment("local").promotion_margin if margin is None else margin
    job = f"shopwise-{time.strftime('%Y%m%d-%H%M%S')}"
    artifacts = f"s3://{artifacts_bucket}"

    stage("export catalog")
    started = time.time()
    exported = (export_function or LocalFunction("export_catalog")).invoke({})
    log(f"catalog: {exported['items']} items -> {exported['uri']}")
    seconds["export_catalog"] = time.time() - started

    stage("train")
    started = time.time()
    training = run_training_job(
        job,
        channels={
            "events": f"s3://{archive_bucket}/{config.ARCHIVE_EVENTS_PREFIX}",
            "catalog": f"{artifacts}/{config.CATALOG_KEY.rsplit('/', 1)[0]}/",
        },
        # locally one configuration per model family unless asked otherwise (SageMaker runs the full grid)
        hyperparameters={"budget": "quick", **(hyperparameters or {})},
        output_uri=f"{artifacts}/{config.MODELS_PREFIX.rstrip('/')}",
        work_dir=work_dir,
        log=log,
    )
    seconds["train"] = time.time() - started

    current = registry.active(config_table)
    candidate = registry.ModelRecord.from_metrics(job, training.metrics, training.model_uri, code_version())
    verdict = registry.gate(candidate, current, margin)
    if not verdict.passed:
        candidate.status, candidate.reason = "rejected", "; ".join(verdict.reasons)
        registry.save(config_table, candidate)
        log(f"gate: rejected ({candidate.reason})")
        raise Rejected(candidate)
    registry.save(config_table, candidate)
    log(f"gate: passed{f' against {verdict.compared_with}' if verdict.compared_with else ' (no active model yet)'}")

    stage("batch transform")
    started = time.time()
    client("s3").upload_file(
        str(SAGEMAKER_DIR / "transform_requests.jsonl"), artifacts_bucket, config.TRANSFORM_REQUESTS_KEY
    )
    output_uri = f"{artifacts}/{config.RECOMMENDATIONS_PREFIX}{job}/"
    run_transform_job(
        f"{job}-transform",
        training.model_uri,
        f"{artifacts}/{config.TRANSFORM_REQUESTS_KEY}",
        output_uri,
        work_dir,
        log=log,
    )
    seconds["batch_transform"] = time.time() - started

    stage("load")
    started = time.time()
    function = load_function or LocalFunction("load")
    loaded = function.invoke({"output_uri": output_uri, "model_version": job})
    seconds["load"] = time.time() - started
    # promote: the load made the version active; the registry says so, and retires the one before
    candidate.status, candidate.output_uri = "active", output_uri
    registry.save(config_table, candidate)
    if current is not None and current.version != job:
        current.status = "retired"
        registry.save(config_table, current)
    return PipelineResult(
        model_version=job,
        model_uri=training.model_uri,
        metrics=training.metrics,
        rows_loaded=loaded["rows"],
        seconds=seconds,
    )
