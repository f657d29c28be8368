"""Step Functions tasks: load a batch-transform output into the standby slot's table by a DynamoDB import from S3
(the promote step serves it), without the lists of shoppers erased since the model was trained.

The retrain's load states (``shopwise.lifecycle.loading``): ``begin`` lists the output objects, marks the standby
slot loading and drops its table; ``object`` stages one of them as DynamoDB JSON (the Distributed Map's item, one
per output object); ``start`` starts the import of what was staged; ``check`` answers how it is doing (the state
machine waits and asks again); ``finish`` checks the import and marks the slot ready. No action: all of them in one
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
    "object": ("bucket", "key", "model_version", "slot", "staging"),
    "start": ("bucket", "staging", "model_version", "slot", "tallies"),
    "check": ("import_arn",),
    "finish": ("bucket", "staging", "model_version", "slot", "tallies", "import_arn", "began_at"),
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
        begun = loading.begin(event["output_uri"], event["model_version"], settings.config_table, settings.lists_stem)
        logger.info("load begun", extra={"objects": len(begun["keys"]), "slot": begun["slot"]})
        return begun
    if action == "check":
        state = loading.check(event["import_arn"])
        logger.info("import", extra={"status": state.status, "imported": state.imported, "errors": state.errors})
        return {"status": state.status, "imported": state.imported, "errors": state.errors, "failure": state.failure}
    tallies = [loading.Tally.from_dict(t) for t in event.get("tallies") or []]
    if action == "start":
        arn = loading.start(
            event["bucket"], event["staging"], settings.lists_stem, event["slot"], event["model_version"], tallies
        )
        logger.info("import started", extra={"import_arn": arn, "rows": sum(t.rows for t in tallies)})
        return {"import_arn": arn}
    erased = pending_targets(f"s3://{settings.artifacts_bucket}/{ERASURES_PREFIX}") if action != "finish" else None
    if action == "object":
        tally = loading.stage_object(
            event["bucket"],
            event["key"],
            event["model_version"],
            event["slot"],
            event["staging"],
            settings.config_table,
            settings.recommendations_ttl_days,
            erased,
        )
        logger.info("object staged", extra={"key": event["key"], **tally.to_dict()})
        return tally.to_dict()
    if action == "finish":
        result = loading.finish(
            settings.config_table,
            settings.lists_stem,
            event["slot"],
            event["model_version"],
            tallies,
            event["import_arn"],
            float(event["began_at"]),
            event["bucket"],
            event["staging"],
        )
    else:
        result = loading.load(
            event["output_uri"],
            event["model_version"],
            settings.lists_stem,
            settings.config_table,
            settings.recommendations_ttl_days,
            erased,
            timeout_s=max(60.0, context.get_remaining_time_in_millis() / 1000 - 30) if context else 600.0,
        )
    loaded = {
        "model_version": result.model_version,
        "rows": result.rows,
        "objects": result.objects,
        "slot": result.slot,
        "erased": result.erased,
        "erased_late": result.erased_late,
        "imported_bytes": result.imported_bytes,
    }
    logger.info("loaded", extra=loaded)
    return loaded


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
