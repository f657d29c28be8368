"""The model registry and the promotion gate.

Every trained version is recorded in the config table (row ``model#<version>``) with its data window, metrics
(validation and test), hyperparameters, code version, artefact locations, status and the reason for it:
``candidate`` → ``rejected`` (by the gate, with why) or ``active`` → ``retired`` when a newer one is promoted.
A DynamoDB manifest rather than SageMaker Model Registry: the serve path already reads this table, the local stack
runs the same code, and a version's record sits next to the ``active_model`` pointer that serving follows.

The gate compares a candidate's validation metric with the active version's and refuses one worse by more than a
margin, or one that fails a sanity check (a metric that is not a number, a catalog coverage below a floor, no test
users).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from shopwise.dal.aws import client
from shopwise.dal.recommendations import get_active_model

PREFIX = "model#"
DEFAULT_MARGIN = 0.02  # a candidate may be at most 2% worse than the active version on the validation metric
MIN_COVERAGE = 0.01  # of the catalog in someone's top 10, on the test split


@dataclass
class ModelRecord:
    version: str
    status: str = "candidate"  # candidate | rejected | active | retired
    reason: str = ""
    trained_at: float = 0.0
    data_window: list[float] = field(default_factory=list)
    metric: str = "ndcg@10"
    validation: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    selected: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    model_uri: str = ""
    output_uri: str = ""

    @classmethod
    def from_metrics(cls, version: str, metrics: dict[str, Any], model_uri: str, code_version: str) -> ModelRecord:
        """A candidate from the training job's metrics.json."""
        metric = str(metrics.get("metric", "ndcg@10"))
        chosen = metrics.get("models", {}).get(metrics.get("selected", ""), {})
        return cls(
            version=version,
            trained_at=time.time(),
            data_window=[float(x) for x in metrics.get("data_window", [])],
            metric=metric,
            validation={k: float(v) for k, v in (metrics.get("validation") or {}).items() if v is not None},
            test={k: float(v) for k, v in (chosen.get("test") or {}).items() if isinstance(v, int | float)},
            selected=str(metrics.get("summary") or metrics.get("selected", "")),
            hyperparameters=dict(metrics.get("hyperparameters") or {}),
            code_version=code_version,
            model_uri=model_uri,
        )


def save(config_table: str, record: ModelRecord) -> None:
    client("dynamodb").put_item(
        TableName=config_table,
        Item={"pk": {"S": PREFIX + record.version}, "record": {"S": json.dumps(asdict(record), sort_keys=True)}},
    )


def get(config_table: str, version: str) -> ModelRecord | None:
    row = client("dynamodb").get_item(TableName=config_table, Key={"pk": {"S": PREFIX + version}}).get("Item")
    return ModelRecord(**json.loads(row["record"]["S"])) if row else None


def records(config_table: str) -> list[ModelRecord]:
    """Every registered version, newest first."""
    found: list[ModelRecord] = []
    for page in (
        client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=config_table,
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": PREFIX}},
        )
    ):
        found += [ModelRecord(**json.loads(item["record"]["S"])) for item in page.get("Items", [])]
    return sorted(found, key=lambda r: (-r.trained_at, r.version))


def active(config_table: str) -> ModelRecord | None:
    version = get_active_model(config_table)
    return get(config_table, version) if version else None


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]
    compared_with: str = ""


def gate(candidate: ModelRecord, current: ModelRecord | None, margin: float = DEFAULT_MARGIN) -> GateResult:
    """Whether the candidate may replace the active version, and every reason it may not."""
    reasons: list[str] = []
    value = candidate.validation.get(candidate.metric)
    if value is None or not math.isfinite(value):
        reasons.append(f"validation {candidate.metric} is {value!r}: not a number")
    bad = sorted(k for k, v in candidate.test.items() if not math.isfinite(v))
    if bad:
        reasons.append(f"test metrics that are not numbers: {', '.join(bad)}")
    coverage = candidate.test.get("coverage@10")
    if coverage is not None and coverage < MIN_COVERAGE:
        reasons.append(f"coverage@10 {coverage:.4f} is below the floor {MIN_COVERAGE}")
    if current is not None and value is not None and math.isfinite(value):
        theirs = current.validation.get(candidate.metric)
        if theirs is not None and value < theirs * (1.0 - margin):
            reasons.append(
                f"validation {candidate.metric} {value:.4f} is more than {margin:.0%} below the active version "
                f"{current.version}'s {theirs:.4f}"
            )
    return GateResult(not reasons, reasons, current.version if current else "")
