"""SageMaker played locally: training and batch-transform jobs run the real entrypoints under the container
contract, with inputs and outputs in (local) S3.

Training: channels are copied from S3 into ``<job>/input/data/<channel>/``, hyperparameters written to
``input/config/hyperparameters.json`` and passed as ``--name value``, SM_* variables set, then
``sagemaker_jobs/train.py`` runs in a child process; ``model/`` is tarred to ``<output>/<job>/output/model.tar.gz``.
Transform: the model is untarred; the input objects are dealt to ``instances`` by key, as SageMaker distributes a
transform's S3 objects over its instances (each object whole to one); one ``shopwise_local.transform_container``
per instance (the inference toolkit's role), all running at once, feeds its objects' lines to
``sagemaker_jobs/inference.py`` and writes ``<input-name>.out``, which go back to S3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopwise.dal.aws import client
from shopwise.dal.objects import download_prefix, parse_s3_uri
from shopwise_local.paths import SAGEMAKER_DIR

Log = Callable[[str], None]


class JobFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainingResult:
    job_name: str
    model_uri: str
    metrics: dict[str, Any]
    seconds: float


def _upload_tar(source: Path, uri: str) -> None:
    bucket, key = parse_s3_uri(uri)
    archive = source.parent / Path(key).name
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(source)), recursive=False)
    client("s3").upload_file(str(archive), bucket, key)


def _discard_instance_disk(root: Path) -> None:
    """What a finished job leaves on its instance goes with the instance, as in SageMaker: the data it read and
    wrote are in S3 (where the purge reaches them), only its log stays here."""
    for path in root.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif not path.name.endswith(".log"):
            path.unlink(missing_ok=True)


def _run(command: list[str], env: dict[str, str], cwd: Path, log_path: Path, log: Log) -> int:
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout
        for line in process.stdout:
            log_file.write(line)
            log(line.rstrip())
        return process.wait()


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    # the job sees the repository's packages the way the container sees its source directory
    pythonpath = os.pathsep.join([str(SAGEMAKER_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", **extra}


def run_training_job(
    job_name: str,
    channels: dict[str, str],
    hyperparameters: dict[str, Any],
    output_uri: str,
    work_dir: Path,
    log: Log = lambda _line: None,
    entry: str = "train.py",
) -> TrainingResult:
    started = time.time()
    root = work_dir / job_name
    config_dir, data_dir = root / "input/config", root / "input/data"
    model_dir, output_dir = root / "model", root / "output"
    for path in (config_dir, data_dir, model_dir, output_dir / "data"):
        path.mkdir(parents=True, exist_ok=True)
    hps = {k: str(v) for k, v in hyperparameters.items()}
    (config_dir / "hyperparameters.json").write_text(json.dumps(hps))
    (config_dir / "inputdataconfig.json").write_text(
        json.dumps({name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"} for name in channels})
    )
    (config_dir / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    env = {
        "SM_OPT_ML": str(root),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DIR": str(output_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
        "SM_HPS": json.dumps(hps),
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "TRAINING_JOB_NAME": job_name,
    }
    for name, uri in channels.items():
        target = data_dir / name
        target.mkdir(parents=True, exist_ok=True)
        count = download_prefix(uri, target)
        log(f"channel {name}: {count} objects from {uri}")
        env[f"SM_CHANNEL_{name.upper()}"] = str(target)
    for name, value in hps.items():
        env[f"SM_HP_{name.upper()}"] = value
    args = [a for name, value in hps.items() for a in (f"--{name}", value)]
    code = _run(
        [sys.executable, str(SAGEMAKER_DIR / entry), *args],
        _child_env(env),
        SAGEMAKER_DIR,
        root / "train.log",
        log,
    )
    if code != 0:
        failure = output_dir / "failure"
        reason = failure.read_text() if failure.exists() else f"exit code {code}"
        raise JobFailed(f"training job {job_name} failed: {reason.splitlines()[0]} (log: {root / 'train.log'})")
    model_uri = f"{output_uri.rstrip('/')}/{job_name}/output/model.tar.gz"
    _upload_tar(model_dir, model_uri)
    _upload_tar(output_dir / "data", f"{output_uri.rstrip('/')}/{job_name}/output/output.tar.gz")
    metrics_file = model_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    _discard_instance_disk(root)
    return TrainingResult(job_name=job_name, model_uri=model_uri, metrics=metrics, seconds=time.time() - started)


def run_recorded_training(job_name: str, work_dir: Path, log: Log = lambda _line: None) -> TrainingResult:
    """Execute a training job as the local endpoint recorded it (CreateTrainingJob from the SageMaker SDK or any
    other client): its channels, hyperparameters (less the script-mode ones, which name the entrypoint this runner
    runs from the repository) and output path, under the container contract."""
    described = client("sagemaker").describe_training_job(TrainingJobName=job_name)
    hyperparameters = {k: v for k, v in described.get("HyperParameters", {}).items() if not k.startswith("sagemaker_")}
    program = described.get("HyperParameters", {}).get("sagemaker_program", "train.py")
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in described.get("InputDataConfig", [])
    }
    return run_training_job(
        job_name,
        channels=channels,
        hyperparameters=hyperparameters,
        output_uri=described["OutputDataConfig"]["S3OutputPath"],
        work_dir=work_dir,
        log=log,
        entry=program,
    )


def run_recorded_transform(job_name: str, work_dir: Path, log: Log = lambda _line: None) -> list[str]:
    """Execute a batch transform as the local endpoint recorded it (CreateModel and CreateTransformJob from the
    SageMaker SDK or any other client): the model's artefact and environment, the input prefix, the output path,
    the instance count, the job's environment."""
    sagemaker = client("sagemaker")
    described = sagemaker.describe_transform_job(TransformJobName=job_name)
    container = sagemaker.describe_model(ModelName=described["ModelName"])["PrimaryContainer"]
    environment = {
        k: v
        for k, v in {**container.get("Environment", {}), **described.get("Environment", {})}.items()
        if k != "SAGEMAKER_SUBMIT_DIRECTORY"  # this runner runs the repository's inference.py
    }
    return run_transform_job(
        job_name,
        container["ModelDataUrl"],
        described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"],
        described["TransformOutput"]["S3OutputPath"],
        work_dir,
        environment=environment,
        max_payload_mb=int(described.get("MaxPayloadInMB") or 6),
        instances=int(described["TransformResources"]["InstanceCount"]),
        log=log,
    )


def run_transform_job(
    job_name: str,
    model_uri: str,
    input_uri: str,
    output_uri: str,
    work_dir: Path,
    environment: dict[str, str] | None = None,
    max_payload_mb: int = 6,
    instances: int = 1,
    log: Log = lambda _line: None,
) -> list[str]:
    """Returns the S3 keys of the .out objects written."""
    root = work_dir / job_name
    model_dir, input_dir, output_dir = root / "model", root / "input", root / "output"
    for path in (model_dir, input_dir, output_dir):
        path.mkdir(parents=True, exist_ok=True)
    bucket, key = parse_s3_uri(model_uri)
    archive = root / "model.tar.gz"
    client("s3").download_file(bucket, key, str(archive))
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    count = download_prefix(input_uri, input_dir)
    objects = sorted(p for p in input_dir.rglob("*") if p.is_file())
    groups = [objects[n::instances] for n in range(instances)]
    log(f"transform input: {count} objects from {input_uri} over {instances} instance(s)")
    env = {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(max_payload_mb),
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_PROGRAM": "inference.py",
        **(environment or {}),
    }
    running = []
    for n, group in enumerate(g for g in groups if g):
        instance_input = root / f"instance-{n}"
        for path in group:  # this instance's objects, at their paths below the prefix
            target = instance_input / path.relative_to(input_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
        command = [
            sys.executable,
            "-m",
            "shopwise_local.transform_container",
            "--model-dir",
            str(model_dir),
            "--input-dir",
            str(instance_input),
            "--output-dir",
            str(output_dir),
            "--program",
            str(SAGEMAKER_DIR / "inference.py"),
        ]
        log_path = root / f"transform-{n}.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                command, cwd=SAGEMAKER_DIR, env=_child_env(env), stdout=log_file, stderr=subprocess.STDOUT
            )
        running.append((n, process, log_path))
    failed = [(n, path) for n, process, path in running if process.wait() != 0]
    for _n, _process, path in running:
        for line in path.read_text().splitlines():
            log(line)
    if failed:
        n, path = failed[0]
        raise JobFailed(f"transform job {job_name} failed on instance {n} (log: {path})")
    out_bucket, out_prefix = parse_s3_uri(output_uri)
    written = []
    for path in sorted(output_dir.rglob("*.out")):
        out_key = f"{out_prefix.rstrip('/')}/{path.relative_to(output_dir)}"
        client("s3").upload_file(str(path), out_bucket, out_key)
        written.append(out_key)
    _discard_instance_disk(root)
    return written
