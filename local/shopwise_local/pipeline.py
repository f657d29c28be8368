"""The retraining pipeline run locally: export catalog -> train -> gate -> batch transform -> load -> promote,
the steps the Step Functions state machine runs in AWS, with the same entrypoints and the same S3 layout. Every
trained version is recorded in the model registry (``shopwise.lifecycle.registry``); a candidate the gate refuses stops the
run with its reasons and the active version keeps serving."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopwise import config
from shopwise.lifecycle import registry
from shopwise.lifecycle.loading import wait_for_import
from shopwise.settings import get_settings
from shopwise_local.lambda_runtime import LocalFunction
from shopwise_local.paths import code_version
from shopwise_local.sagemaker import run_training_job, run_transform_job

IMPORT_POLL_S = 0.5  # the local endpoint imports in a thread of its own; the deployed retrain waits 30 s a poll
IMPORT_TIMEOUT_S = 3600  # the local endpoint imports about 1,800 lists a second (bench_load.py)

Log = Callable[[str], None]


class Rejected(RuntimeError):
    """The gate refused the candidate: nothing was transformed or loaded; the record says why."""

    def __init__(self, record: registry.ModelRecord) -> None:
        super().__init__(f"model {record.version} rejected by the promotion gate: {record.reason}")
        self.record = record


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
    registry_function: LocalFunction | None = None,
    log: Log = lambda _line: None,
    stage: Callable[[str], None] = lambda _name: None,
    margin: float | None = None,
    trigger: str = "manual",
) -> PipelineResult:
    seconds: dict[str, float] = {}
    config_table = get_settings().config_table
    models = registry_function or LocalFunction("registry")
    job = f"shopwise-{time.strftime('%Y%m%d-%H%M%S')}"
    artifacts = f"s3://{artifacts_bucket}"

    stage("export catalog")
    started = time.time()
    exported = (export_function or LocalFunction("export_catalog")).invoke({})
    log(f"catalog: {exported['items']} items -> {exported['uri']}")
    seconds["export_catalog"] = time.time() - started

    stage("train")
    started = time.time()
    current = models.invoke({"action": "champion"})
    erasures = f"{artifacts}/{config.ERASURES_PREFIX}"  # training and the transform skip the pending erasures
    channels = {
        "events": f"s3://{archive_bucket}/{config.ARCHIVE_EVENTS_PREFIX}",
        "catalog": f"{artifacts}/{config.CATALOG_KEY.rsplit('/', 1)[0]}/",
    }
    if current["present"]:  # scored beside the candidate on what neither trained on, for the gate
        channels["champion"] = current["model_uri"]
    training = run_training_job(
        job,
        channels=channels,
        # locally one configuration per model family unless asked otherwise (SageMaker runs the full grid)
        hyperparameters={"budget": "quick", "erasures": erasures, **(hyperparameters or {})},
        output_uri=f"{artifacts}/{config.MODELS_PREFIX.rstrip('/')}",
        work_dir=work_dir,
        log=log,
    )
    seconds["train"] = time.time() - started

    stage("gate")
    verdict = models.invoke(
        {
            "action": "gate",
            "version": job,
            "model_uri": training.model_uri,
            "code_version": code_version(),
            "trigger": trigger,
            **({"margin": margin} if margin is not None else {}),
        }
    )
    if not verdict["passed"]:
        log(f"gate: {verdict['reason']}")
        record = registry.get(config_table, job)
        assert record is not None
        raise Rejected(record)
    log(f"gate: {verdict['reason']}")

    stage("batch transform")
    started = time.time()
    env = config.environment("local")
    plan = models.invoke(
        {
            "action": "plan_transform",
            "version": job,
            "users": verdict["users"],
            "items": verdict["items"],
            **env.transform_sizing(),
        }
    )
    instances = int(plan["instances"])
    log(
        f"transform plan: {instances} instances, {plan['requests']} requests in {plan['objects']} objects "
        f"-> {plan['input_uri']}"
    )
    output_uri = f"{artifacts}/{config.RECOMMENDATIONS_PREFIX}{job}/"
    run_transform_job(
        f"{job}-transform",
        training.model_uri,
        plan["input_uri"],
        output_uri,
        work_dir,
        environment={"SHOPWISE_ERASURES": erasures},
        instances=instances,
        log=log,
    )
    seconds["batch_transform"] = time.time() - started

    stage("load")
    started = time.time()
    function = load_function or LocalFunction("load")
    # the deployed retrain's load states: begin, one item of the Distributed Map per output object, start the
    # import, wait and check until it ends, finish
    begun = function.invoke({"action": "begin", "output_uri": output_uri, "model_version": job})
    common = {"bucket": begun["bucket"], "model_version": job, "slot": begun["slot"], "staging": begun["staging"]}
    tallies = [function.invoke({"action": "object", "key": key, **common}) for key in begun["keys"]]
    started_import = function.invoke({"action": "start", "tallies": tallies, **common})
    wait_for_import(
        lambda: str(function.invoke({"action": "check", **started_import})["status"]), IMPORT_TIMEOUT_S, IMPORT_POLL_S
    )
    loaded = function.invoke(
        {"action": "finish", "tallies": tallies, "began_at": begun["began_at"], **started_import, **common}
    )
    log(f"loaded {loaded['rows']} rows from {loaded['objects']} objects into slot {loaded['slot']}")
    seconds["load"] = time.time() - started
    stage("promote")
    models.invoke({"action": "promote", "version": job, "output_uri": output_uri})
    log(
        f"promoted {job} (slot {loaded['slot']})"
        + (f"; {current['version']} stays loaded for a rollback" if current["present"] else "")
    )
    return PipelineResult(
        model_version=job,
        model_uri=training.model_uri,
        metrics=training.metrics,
        rows_loaded=loaded["rows"],
        seconds=seconds,
    )
