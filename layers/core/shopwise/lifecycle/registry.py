"""The model registry: every trained version recorded in the config table (``shopwise.dal.registry``, row
``model#<version>``) with its data window, metrics (validation and test), hyperparameters, code version, artefact
locations, status and the reason for it: ``candidate`` → ``rejected`` (by the gate, ``shopwise.lifecycle.gate``,
with why) or ``active`` → ``retired`` when a newer one is promoted, or ``rolled_back`` when a rollback restores the
one before.

A DynamoDB manifest is the truth: the serve path already reads this table, the local stack runs the same code, and
a version's record sits next to the ``active_model`` pointer that serving follows. Each version is mirrored into
the environment's SageMaker model package group (``mirror``), its approval status following the record, so the
store's ML team sees shopwise's versions in SageMaker Model Registry beside their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shopwise.dal import model_packages as packages
from shopwise.dal import registry as rows
from shopwise.dal.errors import AWS_ERRORS
from shopwise.dal.recommendations import activate, get_active_model, get_pointer
from shopwise.lifecycle.figures import TrainingMetrics
from shopwise.lifecycle.gate import GateResult, gate
from shopwise.lifecycle.records import ModelRecord
from shopwise.settings import get_settings

log = logging.getLogger(__name__)


def save(config_table: str, record: ModelRecord) -> None:
    """Register a new version (or overwrite its record), mirrored as a model package."""
    mirror(record)
    rows.put_record(config_table, record.version, record.to_json())


def update(config_table: str, record: ModelRecord) -> None:
    """A registered version's status changed: its record, and its package's approval status."""
    mirror(record)
    rows.update_record(config_table, record.version, record.to_json())


def mirror(record: ModelRecord) -> None:
    """The version's model package in the environment's group (``shopwise.dal.model_packages``): created with the
    first record, its approval status following every change. The config table stays the truth serving reads, so
    SageMaker refusing is logged, not raised: the version's next change (or ``shopwise models sync``) mirrors it
    again, and a record without ``package_arn`` says it is not mirrored yet."""
    settings = get_settings()
    if not settings.model_package_group:
        return
    try:
        if record.package_arn:
            packages.update_package(record.package_arn, record.to_json())
        else:
            source = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": settings.inference_source}
            record.package_arn = packages.create_package(
                settings.model_package_group,
                record.to_json(),
                settings.inference_image,
                source if settings.inference_source else None,
            )
    except AWS_ERRORS as exc:
        log.warning("model package of %s not mirrored: %s", record.version, exc)


def get(config_table: str, version: str) -> ModelRecord | None:
    found = rows.get_record(config_table, version)
    return ModelRecord.from_json(found) if found else None


def records(config_table: str) -> list[ModelRecord]:
    """Every registered version, newest first."""
    found = [ModelRecord.from_json(r) for r in rows.scan_records(config_table)]
    return sorted(found, key=lambda r: (-r.trained_at, r.version))


def active(config_table: str) -> ModelRecord | None:
    version = get_active_model(config_table)
    return get(config_table, version) if version else None


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
    candidate = ModelRecord.from_metrics(version, TrainingMetrics.from_json(metrics), model_uri, code_version, trigger)
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
    update(config_table, record)
    replaced = get(config_table, before) if before else None
    if replaced is not None:
        replaced.status, replaced.reason = replaced_status, f"replaced by {version}: {reason or 'promoted'}"
        update(config_table, replaced)
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
