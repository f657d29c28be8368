"""Step Functions tasks: load a batch-transform output into the recommendations table's standby slot (the promote
step serves it), without the lists of shoppers erased since the model was trained.

Three actions, the retrain's three load states (``shopwise.lifecycle.loading``): ``begin`` lists the output
objects and marks the standby slot loading; ``object`` writes one of them (the Distributed Map's item, one per
output object); ``finish`` sums the objects' tallies and marks the slot ready. No action: all three in one
invocation (a small store's reload)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.config import ERASURES_PREFIX
from shopwise.dal.erasures import pending_targets
from shopwise.heap import freeze_imports
from shopwise.lifecycle import loading
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings

NEEDS = {
    "begin": ("output_uri", "model_version"),
    "object": ("bucket", "key", "model_version", "slot"),
    "finish": ("model_version", "slot", "tallies"),
    "": ("output_uri", "model_version"),
}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = str(event.get("action", ""))
    if action not in NEEDS:
        raise ValueError(f"load: unknown action {action!r}: expected begin, object or finish")
    for name in NEEDS[action]:
        if event.get(name) in (None, ""):
            raise ValueError(f"load {action or 'all'}: the input needs {name!r}; got keys {sorted(event)}")
    settings = get_settings()
    if action == "begin":
        started = loading.begin(event["output_uri"], event["model_version"], settings.config_table)
        logger.info("load begun", extra={"objects": len(started["keys"]), "slot": started["slot"]})
        return started
    erased = pending_targets(f"s3://{settings.artifacts_bucket}/{ERASURES_PREFIX}") if action != "finish" else None
    if action == "object":
        tally = loading.load_object(
            event["bucket"],
            event["key"],
            event["model_version"],
            event["slot"],
            settings.recommendations_table,
            settings.config_table,
            settings.recommendations_ttl_days,
            erased,
        )
        logger.info("object loaded", extra={"key": event["key"], **tally.to_dict()})
        return tally.to_dict()
    if action == "finish":
        result = loading.finish(
            settings.config_table,
            event["slot"],
            event["model_version"],
            [loading.Tally.from_dict(t) for t in event["tallies"]],
        )
    else:
        result = loading.load(
            event["output_uri"],
            event["model_version"],
            settings.recommendations_table,
            settings.config_table,
            settings.recommendations_ttl_days,
            erased,
        )
    logger.info(
        "loaded",
        extra={
            "rows": result.rows,
            "model_version": result.model_version,
            "slot": result.slot,
            "erased": result.erased,
        },
    )
    return {
        "model_version": result.model_version,
        "rows": result.rows,
        "objects": result.objects,
        "slot": result.slot,
        "erased": result.erased,
    }


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
