"""The scheduled drift job (SageMaker, script mode, the training image): the drift report of the serving model.

Channel ``champion``: the active model's model.tar.gz (the monitor state machine's "Find the champion" step names
it). Hyperparameters: ``features_table``, ``archive_bucket``, ``hours`` (24). The recent events are read straight
from the archive's day prefixes (``events/dt=YYYY-MM-DD/``) that the window touches, not the whole archive; the
training event mix comes from the model folder. Writes ``drift.json`` to the job's output (output.tar.gz), where
the monitor function reads it and publishes the figures as CloudWatch metrics; logs ``metric name=value`` lines
for the job's metric definitions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from shopwise import config
from shopwise.dal.objects import list_keys, read_archive
from shopwise.events import Event, parse_event, trusted
from shopwise.lifecycle.figures import DriftFigures
from shopwise_jobs.contract import TrainingContract, run_job
from shopwise_jobs.drift import DriftReport, drift_for_model
from shopwise_jobs.training import unpack_champion


def recent_archive_events(bucket: str, hours: float, now: float) -> Iterator[Event]:
    """The archive's events of the day prefixes the last ``hours`` touch (the caller filters by time)."""
    day = datetime.fromtimestamp(now - hours * 3600, UTC).date()
    last = datetime.fromtimestamp(now, UTC).date()
    while day <= last:
        for key in list_keys(bucket, f"{config.ARCHIVE_EVENTS_PREFIX}dt={day:%Y-%m-%d}/"):
            for raw in read_archive(bucket, key):
                try:
                    event = parse_event(raw)
                except (ValidationError, ValueError):
                    continue
                if trusted(event):  # impressions the serve API recorded, purchases the store vouched for
                    yield event
        day += timedelta(days=1)


def run(contract: TrainingContract, now: float | None = None) -> DriftReport:
    hp = contract.hyperparameters
    for name in ("features_table", "archive_bucket"):
        if not hp.get(name):
            raise ValueError(f"drift job: hyperparameter {name!r} is required")
    model = unpack_champion(contract.optional_channel("champion"), contract.model_dir.parent / "champion")
    if model is None:
        raise ValueError("drift job: the champion channel holds no model.tar.gz")
    meta = json.loads((model / "model.json").read_text())
    now = time.time() if now is None else now
    hours = float(hp.get("hours", 24))
    report = drift_for_model(
        model,
        str(meta.get("model_version", "")),
        float(meta.get("data_window", [now, now])[1]),
        hp["features_table"],
        recent_archive_events(hp["archive_bucket"], hours, now),
        now,
        hours,
    )
    document = {**report.to_json(), "max_feature_psi": report.max_feature_psi, "hours": hours}
    for target in (contract.output_data_dir, contract.model_dir):
        target.mkdir(parents=True, exist_ok=True)
        (target / "drift.json").write_text(json.dumps(document))
    for line in DriftFigures.from_report(document).log_lines():
        print(line, flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    return run_job(run, argv)
