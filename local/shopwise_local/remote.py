"""``shopwise train --remote``: the training job launched with the SageMaker SDK, as a store's ML team launches its
own, on the stack's channels — the event archive, the catalog snapshot — with the pipeline's entrypoint
(``train.py``), image, role and source directory (the stack's outputs ``SageMakerRole``, ``SageMakerImage``,
``SageMakerSource``).

The SDK used is ``sagemaker-core`` (``sagemaker.core.resources.TrainingJob``): the SDK's typed resource layer, with
``wait(logs=True)``. ``ModelTrainer`` (``sagemaker-train``) would add mlflow and a gigabyte of dependencies to do the
same CreateTrainingJob. Against a deployed stack the job runs in the account and the CLI follows its status and
logs; against the local stack the local endpoint records the SDK's request and the local SageMaker runner executes
exactly what was recorded (``shopwise_local.sagemaker.run_recorded_training``). Either way the model and its
metrics land where the pipeline's would: ``models/<job>/output/``. The job trains; it does not gate, transform or
promote (``shopwise retrain`` does the whole pipeline): its model can be looked at, compared, registered later.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopwise import config
from shopwise.dal.objects import parse_s3_uri, read_job_output
from shopwise.settings import get_settings

Log = Callable[[str], None]
MAX_RUNTIME_S = 4 * 3600  # the pipeline's training job's limit
VOLUME_GIB = 50
METRIC_LINES = ("ndcg@10", "recall@20", "hitrate@10", "coverage@10")


@dataclass(frozen=True)
class RemoteTraining:
    job_name: str
    status: str
    model_uri: str
    metrics: dict[str, Any]
    seconds: float


def training_request(
    job_name: str, sagemaker: dict[str, str], hyperparameters: dict[str, str], instance_type: str
) -> dict[str, Any]:
    """The SDK's arguments: what the retrain state machine's training step sends (``shopwise_cdk.training``)."""
    from sagemaker.core.shapes import (
        AlgorithmSpecification,
        Channel,
        DataSource,
        MetricDefinition,
        OutputDataConfig,
        ResourceConfig,
        S3DataSource,
        StoppingCondition,
    )

    from shopwise.lifecycle.figures import TrainingMetrics, metric_pattern

    settings = get_settings()
    artifacts = f"s3://{settings.artifacts_bucket}"
    channels = {
        "events": f"s3://{settings.archive_bucket}/{config.ARCHIVE_EVENTS_PREFIX}",
        "catalog": f"{artifacts}/{config.CATALOG_KEY.rsplit('/', 1)[0]}/",
    }
    return {
        "training_job_name": job_name,
        "role_arn": sagemaker["role"],
        "algorithm_specification": AlgorithmSpecification(
            training_image=sagemaker["image"],
            training_input_mode="File",
            metric_definitions=[
                MetricDefinition(name=name, regex=metric_pattern(name)) for name in TrainingMetrics.LOGGED
            ],
        ),
        "hyper_parameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": sagemaker["source"],
            "top_k": "50",
            "erasures": f"{artifacts}/{config.ERASURES_PREFIX}",  # the pending erasures: their shoppers stay out
            **hyperparameters,
        },
        "input_data_config": [
            Channel(
                channel_name=name,
                data_source=DataSource(
                    s3_data_source=S3DataSource(
                        s3_data_type="S3Prefix", s3_uri=uri, s3_data_distribution_type="FullyReplicated"
                    )
                ),
            )
            for name, uri in channels.items()
        ],
        "output_data_config": OutputDataConfig(s3_output_path=f"{artifacts}/{config.MODELS_PREFIX.rstrip('/')}"),
        "resource_config": ResourceConfig(instance_type=instance_type, instance_count=1, volume_size_in_gb=VOLUME_GIB),
        "stopping_condition": StoppingCondition(max_runtime_in_seconds=MAX_RUNTIME_S),
    }


def _ready(sagemaker: dict[str, str]) -> None:
    """The stack names what a job runs with; the SDK is told not to simulate the role's policy (the local endpoint
    has no IAM simulation, and in AWS the job's own start says it better)."""
    missing = [k for k in ("role", "image", "source") if not sagemaker.get(k)]
    if missing:
        raise RuntimeError(f"the stack has no SageMaker {', '.join(missing)} output: deployed by an older version?")
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")


def _follow(
    job: Any,
    kind: str,
    job_name: str,
    run_recorded: Callable[[str, Path, Log], Any],
    deployed: bool,
    work_dir: Path | None,
    log: Log,
) -> str:
    """Follow a created job to its end: in AWS with its logs; locally the endpoint only records it, so the local
    runner executes the recorded request first. Its final status, or why it failed."""
    if not deployed:
        with tempfile.TemporaryDirectory() as tmp:
            run_recorded(job_name, work_dir or Path(tmp), log)
    job.wait(poll=10, logs=deployed)
    job.refresh()
    status = str(getattr(job, f"{kind}_job_status"))
    if status != "Completed":
        raise RuntimeError(f"{kind} job {job_name} ended {status}: {job.failure_reason}")
    return status


def train_remote(
    sagemaker: dict[str, str],
    deployed: bool,
    hyperparameters: dict[str, str],
    instance_type: str,
    log: Log = print,
    work_dir: Path | None = None,
) -> RemoteTraining:
    """Launch the training job with the SDK, follow it to the end, fetch its metrics."""
    _ready(sagemaker)
    from sagemaker.core.resources import TrainingJob

    from shopwise_local.sagemaker import run_recorded_training

    started = time.time()
    job_name = f"shopwise-remote-{time.strftime('%Y%m%d-%H%M%S')}"
    job = TrainingJob.create(**training_request(job_name, sagemaker, hyperparameters, instance_type))
    log(f"created training job {job_name} ({instance_type}) with the SageMaker SDK")
    status = _follow(job, "training", job_name, run_recorded_training, deployed, work_dir, log)
    model_uri = str(job.model_artifacts.s3_model_artifacts)  # type: ignore[union-attr]
    metrics = json.loads(read_job_output(model_uri, "metrics.json"))
    return RemoteTraining(job_name, status, model_uri, metrics, time.time() - started)


@dataclass(frozen=True)
class RemoteTransform:
    job_name: str
    status: str
    version: str
    output_uri: str
    objects: list[str]
    rows: int
    seconds: float


def transform_remote(
    sagemaker: dict[str, str],
    deployed: bool,
    version: str,
    instance_type: str,
    instance_count: int,
    sizing: dict[str, int],
    log: Log = print,
    work_dir: Path | None = None,
) -> RemoteTransform:
    """A registered version's batch transform launched with the SDK: its model (the pipeline's container: image,
    model.tar.gz, ``inference.py`` from the source directory), the plan's request objects cut for its users and items
    (``shopwise.lifecycle.transform``), a worker per vCPU; followed to the end. The output is not loaded.
    ``instance_count`` 0: as many as the plan sizes for the users within ``sizing`` (the environment's
    ``transform_sizing``), as the retrain does."""
    _ready(sagemaker)
    from sagemaker.core.resources import TransformJob
    from sagemaker.core.shapes import (
        TransformDataSource,
        TransformInput,
        TransformOutput,
        TransformResources,
        TransformS3DataSource,
    )

    from shopwise.dal.objects import list_keys, read_lines
    from shopwise.dal.sagemaker import create_model
    from shopwise.lifecycle import registry, transform
    from shopwise_local.sagemaker import run_recorded_transform

    settings = get_settings()
    record = registry.get(settings.config_table, version)
    if record is None or not record.model_uri:
        raise RuntimeError(f"no registered version {version!r} with a model (shopwise models list)")
    if record.status == "rejected":
        raise RuntimeError(f"version {version} was rejected by the gate: {record.reason}")
    started = time.time()
    counts = json.loads(read_job_output(record.model_uri, "metrics.json"))
    job_name = f"{version}-remote-{time.strftime('%H%M%S')}"[:63]
    workers = config.instance_vcpus(instance_type)
    users = int(counts["users"])
    instance_count = instance_count or transform.instances_for(users, workers, **sizing)
    objects = transform.plan(users, int(counts["items"]), instance_count, workers)
    input_uri = transform.write_plan(settings.artifacts_bucket, job_name, objects)
    erasures = f"s3://{settings.artifacts_bucket}/{config.ERASURES_PREFIX}"
    # CreateModel with boto3: the SDK's Model.create reads the model back, and its parser refuses the empty
    # VpcConfig the local endpoint describes a model with
    create_model(
        job_name,
        sagemaker["role"],
        sagemaker["image"],
        record.model_uri,
        {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": sagemaker["source"]},
    )
    output_uri = f"s3://{settings.artifacts_bucket}/{config.RECOMMENDATIONS_PREFIX}{job_name}/"
    job = TransformJob.create(
        transform_job_name=job_name,
        model_name=job_name,
        batch_strategy="SingleRecord",
        max_concurrent_transforms=workers,
        transform_input=TransformInput(
            data_source=TransformDataSource(
                s3_data_source=TransformS3DataSource(s3_data_type="S3Prefix", s3_uri=input_uri)
            ),
            content_type="application/jsonlines",
            split_type="Line",
        ),
        transform_output=TransformOutput(
            s3_output_path=output_uri, accept="application/jsonlines", assemble_with="Line"
        ),
        transform_resources=TransformResources(instance_type=instance_type, instance_count=instance_count),
        environment={
            "SHOPWISE_TOP_K": "50",
            "SHOPWISE_ERASURES": erasures,
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        },
    )
    log(
        f"created transform job {job_name} ({instance_count} x {instance_type}, {workers} workers each) for "
        f"{version}: {sum(len(o) for o in objects)} requests in {len(objects)} objects, with the SageMaker SDK"
    )
    status = _follow(job, "transform", job_name, run_recorded_transform, deployed, work_dir, log)
    out_bucket, out_prefix = parse_s3_uri(output_uri)
    written = sorted(k for k in list_keys(out_bucket, out_prefix) if k.endswith(".out"))
    rows = sum(1 for k in written for _line in read_lines(out_bucket, k))
    return RemoteTransform(job_name, status, version, output_uri, written, rows, time.time() - started)
