"""``shopwise drift``: the drift report (``shopwise_jobs.drift``) for the running local stack's active model.

Baseline: the active model's artefact (its feature snapshot, event mix, users and items) from the registry's
model URI. Current: the feature store now (its active profiles and items, from the activity index) and the archive's newest events and impressions.
``run_drift`` runs what the drift state machine runs in AWS: the drift job's entrypoint and the drift function
that publishes its figures.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from shopwise import config
from shopwise.dal.objects import read_job_output
from shopwise.settings import get_settings
from shopwise_local.lambda_runtime import LocalFunction
from shopwise_local.sagemaker import run_training_job


def run_drift(
    hours: float = 24.0,
    work_dir: Path | None = None,
    registry: LocalFunction | None = None,
    publisher: LocalFunction | None = None,
) -> dict[str, Any]:
    """The drift state machine's steps, locally: find the champion (registry function) -> the drift job (the
    SageMaker entrypoint ``drift.py`` under the container contract) -> publish (drift function: EMF metrics).
    Returns the job's drift.json with what was published."""
    settings = get_settings()
    champion = (registry or LocalFunction("registry")).invoke({"action": "champion"})
    if not champion["present"]:
        raise RuntimeError("no active model in the registry: run `shopwise retrain` (or `make demo`) first")
    job = f"shopwise-drift-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    with tempfile.TemporaryDirectory() as tmp:
        result = run_training_job(
            job,
            channels={"champion": champion["model_uri"]},
            hyperparameters={
                "features_table": settings.features_table,
                "archive_bucket": settings.archive_bucket,
                "hours": hours,
            },
            output_uri=f"s3://{settings.artifacts_bucket}/{config.MONITORING_PREFIX.rstrip('/')}",
            work_dir=work_dir or Path(tmp),
            entry="drift.py",
        )
        published = (publisher or LocalFunction("drift")).invoke({"model_uri": result.model_uri})
        report = json.loads(read_job_output(result.model_uri, "drift.json"))
    return {**report, "published": published["metrics"]}
