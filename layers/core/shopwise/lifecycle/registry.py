"""The model registry and the promotion gate.

Every trained version is recorded in the config table (row ``model#<version>``) with its data window, metrics
(validation and test), hyperparameters, code version, artefact locations, status and the reason for it:
``candidate`` → ``rejected`` (by the gate, with why) or ``active`` → ``retired`` when a newer one is promoted, or
``rolled_back`` when a rollback restores the one before.
A DynamoDB manifest rather than SageMaker Model Registry: the serve path already reads this table, the local stack
runs the same code, and a version's record sits next to the ``active_model`` pointer that serving follows.

The gate compares the candidate with the active version without the active one's advantage of having trained on
the data it is judged on: the training job (the active model as its champion channel) refits the active model's
recipe on the candidate's validation split, and scores the active artefact beside the candidate on the test
interactions after the active model's data window. A candidate worse by more than a margin, and by more than two
standard errors, in either comparison is refused; so is one that fails a sanity check (a metric that is not a
number, a catalog coverage below a floor).
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shopwise.dal.aws import client
from shopwise.dal.recommendations import activate, get_active_model, get_pointer

PREFIX = "model#"
DEFAULT_MARGIN = 0.02  # a candidate may be at most 2% worse than the active version (and within the noise)
MIN_COVERAGE = 0.01  # of the catalog in someone's top 10, on the test split


@dataclass
class ModelRecord:
    version: str
    status: str = "candidate"  # candidate | rejected | active | retired | rolled_back
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
    trigger: str = ""  # what started the run: schedule | drift: <alarms> | manual
    gate: str = ""  # the promotion gate's verdict and how it compared
    # the training job's comparison with the model serving then: {"version", "kind", "recipe": {...},
    # "candidate": {...}, "champion": {...}, "test_users", "skipped"} (shopwise_jobs.training.champion_comparison)
    champion: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metrics(
        cls, version: str, metrics: dict[str, Any], model_uri: str, code_version: str, trigger: str = ""
    ) -> ModelRecord:
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
            trigger=trigger,
            champion=dict(metrics.get("champion") or {}),
        )


def code_version(root: Path) -> str:
    """The commit a checkout is at (what the registry records as a version's code), or "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


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
    basis: str = ""  # how the comparison with the active version was made (or why it was not)


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
    basis = "no active model"
    if current is not None and value is not None and math.isfinite(value):
        comparisons = _comparisons(candidate, current)
        basis = "; ".join(c[0] for c in comparisons)
        for where, mine, theirs, noise in comparisons:
            if mine is not None and theirs is not None and mine < theirs * (1.0 - margin) and theirs - mine > noise:
                reasons.append(
                    f"{candidate.metric} {mine:.4f} is more than {margin:.0%} below the active version "
                    f"{current.version}'s {theirs:.4f} {where}"
                    + (f", beyond two standard errors of the difference ({noise:.4f})" if noise else "")
                )
    return GateResult(not reasons, reasons, current.version if current else "", basis)


def _noise(mine: dict[str, Any], theirs: dict[str, Any], metric: str) -> float:
    errors = [float(side.get(f"se/{metric}", 0.0) or 0.0) for side in (mine, theirs)]
    return 2.0 * math.sqrt(errors[0] ** 2 + errors[1] ** 2)


def _comparisons(candidate: ModelRecord, current: ModelRecord) -> list[tuple[str, float | None, float | None, float]]:
    """Each way the candidate is compared with the active model: (where, its figure, the active one's, the noise a
    shortfall must exceed). When the training job had the active model as its champion: its recipe refitted on
    the candidate's validation split (same data, no leak), and the artefact itself on the test shoppers who acted
    after its data window (skipped when fewer than 20). Without a champion comparison (no channel, an older
    record): the two validation metrics, each on its own window, margin only."""
    champion, metric = candidate.champion, candidate.metric
    if champion.get("version") != current.version:
        return [
            (
                "on validation windows of their own",
                candidate.validation.get(metric),
                current.validation.get(metric),
                0.0,
            )
        ]
    found = []
    recipe = champion.get("recipe") or {}
    if metric in recipe:
        found.append(
            (
                "with its recipe refitted on the same validation split",
                candidate.validation.get(metric),
                recipe.get(metric),
                _noise(candidate.validation, recipe, metric),
            )
        )
    if champion.get("skipped"):
        found.append((f"(its artefact not compared: {champion['skipped']})", None, None, 0.0))
    else:
        mine, theirs = champion.get("candidate") or {}, champion.get("champion") or {}
        found.append(
            (
                f"on the {champion.get('test_users', 0)} test shoppers after its data window",
                mine.get(metric),
                theirs.get(metric),
                _noise(mine, theirs, metric),
            )
        )
    return found


def gate_candidate(
    config_table: str,
    version: str,
    metrics: dict[str, Any],
    model_uri: str,
    code_version: str,
    trigger: str,
    margin: float,
) -> tuple[ModelRecord, GateResult]:
    """Register a trained version and gate it against the active one: the record is saved as a candidate, or as
    rejected with the reasons. The pipeline's gate step, in AWS and locally."""
    current = active(config_table)
    candidate = ModelRecord.from_metrics(version, metrics, model_uri, code_version, trigger)
    verdict = gate(candidate, current, margin)
    if not verdict.passed:
        candidate.status, candidate.reason = "rejected", "; ".join(verdict.reasons)
        candidate.gate = f"rejected: {candidate.reason}"
    else:
        candidate.gate = (
            f"passed against {verdict.compared_with} {verdict.basis}" if current else "passed (no model served)"
        )
    save(config_table, candidate)
    return candidate, verdict


class PromotionError(RuntimeError):
    pass


def promote(
    config_table: str,
    version: str,
    reload: Callable[[ModelRecord], None] | None = None,
    replaced_status: str = "retired",
    reason: str = "",
) -> ModelRecord:
    """Serve ``version`` from the next request on. A version in either slot is a pointer flip; an older one is
    loaded again from its batch-transform output by ``reload`` first (no retraining, no transform). The registry
    records the change: the version becomes active, the one it replaces ``replaced_status``."""
    record = get(config_table, version)
    if record is None:
        raise PromotionError(f"no version {version!r} in the registry (shopwise models list)")
    if record.status == "rejected":
        raise PromotionError(f"version {version} was rejected by the gate ({record.reason}): it has no output to serve")
    pointer = get_pointer(config_table)
    if pointer.version == version:
        return record
    if not pointer.slot_of(version):
        if reload is None or not record.output_uri:
            raise PromotionError(f"version {version} is in neither slot and has no output to load again")
        reload(record)
    before = pointer.version
    activate(config_table, version)
    record.status, record.reason = "active", reason
    save(config_table, record)
    replaced = get(config_table, before) if before else None
    if replaced is not None:
        replaced.status, replaced.reason = replaced_status, f"replaced by {version}: {reason or 'promoted'}"
        save(config_table, replaced)
    return record


def rollback(config_table: str, reason: str = "rollback") -> ModelRecord:
    """Serve the version before the active one again, from the standby slot: takes effect on the next request."""
    pointer = get_pointer(config_table)
    if not pointer.version:
        raise PromotionError("no model is serving: nothing to roll back")
    target = pointer.slots.get(pointer.standby, {})
    if target.get("state") != "ready" or not target.get("version") or target["version"] == pointer.version:
        raise PromotionError(
            f"the standby slot holds no earlier version ready to serve ({target or 'empty'}): "
            "shopwise promote VERSION loads one again from its output"
        )
    held = get(config_table, str(target["version"]))
    if held is not None and held.status == "rolled_back":
        raise PromotionError(
            f"the standby slot holds {held.version}, which was rolled back itself ({held.reason}): "
            f"`shopwise promote {held.version}` serves it again on purpose"
        )
    return promote(config_table, str(target["version"]), replaced_status="rolled_back", reason=reason)
