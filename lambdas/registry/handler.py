"""Step Functions tasks of the model registry (``shopwise.lifecycle.registry``): ``champion`` (the active model's
artefact, for the training job's champion channel), ``gate`` (register the trained version and gate it),
``plan_transform`` (the batch transform's instance count and request objects, sized and cut for the version's users
and items: ``shopwise.lifecycle.transform``), ``promote`` (serve the loaded version from the next request on). The local
pipeline invokes the same tasks."""

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

import shopwise.lifecycle.registry as registry
from shopwise.dal.objects import read_job_output
from shopwise.heap import freeze_imports
from shopwise.lifecycle import transform
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings


def _need(event: dict[str, Any], *names: str) -> list[str]:
    missing = [n for n in names if not event.get(n)]
    if missing:
        raise ValueError(f"models/{event.get('action')}: the input needs {missing}; got keys {sorted(event)}")
    return [str(event[n]) for n in names]


def champion(event: dict[str, Any]) -> dict[str, Any]:
    current = registry.active(get_settings().config_table)
    uri = current.model_uri if current else ""
    return {"version": current.version if current else "", "model_uri": uri, "present": bool(uri)}


def gate(event: dict[str, Any]) -> dict[str, Any]:
    """The training job's metrics.json is in its output.tar.gz, beside model.tar.gz."""
    version, model_uri = _need(event, "version", "model_uri")
    metrics_doc = json.loads(read_job_output(model_uri, "metrics.json"))
    settings = get_settings()
    record, verdict = registry.gate_candidate(
        settings.config_table,
        version,
        metrics_doc,
        model_uri,
        str(event.get("code_version") or "unknown"),
        str(event.get("trigger") or "manual"),
        float(event.get("margin", settings.promotion_margin)),
    )
    logger.info("gate", extra={"version": version, "passed": verdict.passed, "reasons": verdict.reasons})
    # what the transform's plan is cut from (None for a model trained before the job reported them)
    users, items = metrics_doc.get("users"), metrics_doc.get("items")
    return {
        "version": version,
        "passed": verdict.passed,
        "reason": record.gate,
        "basis": verdict.basis,
        "users": users,
        "items": items,
    }


def plan_transform(event: dict[str, Any]) -> dict[str, Any]:
    """The version's request objects, cut from the user and item counts the gate read from its metrics."""
    (version,) = _need(event, "version")
    if event.get("users") is None or event.get("items") is None:
        raise ValueError(f"models/plan_transform: {version} needs users and items (the gate's answer carries them)")
    missing = [k for k in ("min_instances", "max_instances", "budget_s") if event.get(k) is None]
    if missing:
        raise ValueError(f"models/plan_transform: {version} needs the sizing bounds {missing} (the environment's)")
    users, workers = int(event["users"]), int(event.get("workers") or 1)
    instances = transform.instances_for(
        users,
        workers,
        min_instances=int(event["min_instances"]),
        max_instances=int(event["max_instances"]),
        budget_s=float(event["budget_s"]),
    )
    objects = transform.plan(users, int(event["items"]), instances, workers)
    uri = transform.write_plan(get_settings().artifacts_bucket, version, objects)
    requests = sum(len(lines) for lines in objects)
    expected = round(transform.plan_seconds(users, workers, instances))
    logger.info(
        "transform planned",
        extra={
            "version": version,
            "instances": instances,
            "objects": len(objects),
            "requests": requests,
            "expected_seconds": expected,
        },
    )
    return {
        "input_uri": uri,
        "instances": instances,
        "objects": len(objects),
        "requests": requests,
        "expected_seconds": expected,
    }


def promote(event: dict[str, Any]) -> dict[str, Any]:
    version, output_uri = _need(event, "version", "output_uri")
    table = get_settings().config_table
    record = registry.get(table, version)
    if record is None:
        raise registry.PromotionError(f"no version {version!r} in the registry")
    record.output_uri = output_uri
    registry.update(table, record)
    promoted = registry.promote(table, version, reason=str(event.get("reason") or "promoted by the pipeline"))
    logger.info("promoted", extra={"version": promoted.version, "output_uri": output_uri})
    return {"version": promoted.version, "status": promoted.status}


ACTIONS = {"champion": champion, "gate": gate, "plan_transform": plan_transform, "promote": promote}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = ACTIONS.get(str(event.get("action")))
    if action is None:
        raise ValueError(f"models: action must be one of {sorted(ACTIONS)}, got {event.get('action')!r}")
    return action(event)


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
