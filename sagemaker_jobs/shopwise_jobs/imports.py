"""The import job: ``shopwise.ingestion.import_job.run_import`` on the ``upload`` channel (File mode: the object on
the instance's disk, read as a file), with the stack's tables, buckets and pseudonymisation key named in its
hyperparameters (a SageMaker job gets no Lambda environment)."""

from __future__ import annotations

import os
from typing import Any

from shopwise import config
from shopwise.ingestion.import_job import ImportRequest, run_import
from shopwise.settings import Settings
from shopwise_jobs.contract import TrainingContract, run_job

# hyperparameter -> the function environment variable it stands for
SETTINGS = {
    "features_table": config.FEATURES.env_var,
    "items_table": config.ITEMS.env_var,
    "lists_stem": config.LISTS_ENV,
    "config_table": config.CONFIG.env_var,
    "archive_bucket": "ARCHIVE_BUCKET",
    "artifacts_bucket": "ARTIFACTS_BUCKET",
    "pseudonym_key_secret": "PSEUDONYM_KEY_SECRET",
}


def settings_of(hyperparameters: dict[str, Any]) -> Settings:
    return Settings.from_env(
        {**os.environ, **{variable: str(hyperparameters.get(name, "")) for name, variable in SETTINGS.items()}}
    )


def run(contract: TrainingContract) -> dict[str, Any]:
    hp = contract.hyperparameters
    request = ImportRequest.parse(hp)
    upload = contract.channel("upload")
    copies = [p for p in upload.rglob("*") if p.is_file()]
    if len(copies) != 1:
        raise ValueError(f"import job: the upload channel holds {len(copies)} files, not 1")
    done = run_import(request, settings_of(hp), local_copy=copies[0])
    print(f"imported {done['imported']} rows, rejected {done['rejected']} in {done['seconds']} s", flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    return run_job(run, argv)
