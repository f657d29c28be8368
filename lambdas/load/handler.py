"""Step Functions task: load a batch-transform output into the recommendations table's standby slot (the promote
step serves it), without the lists of shoppers erased since the model was trained."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.config import ERASURES_PREFIX
from shopwise.dal.erasures import pending_targets
from shopwise.lifecycle.loading import load
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    for name in ("output_uri", "model_version"):
        if not event.get(name):
            raise ValueError(f"load: the input needs {name!r}; got keys {sorted(event)}")
    settings = get_settings()
    result = load(
        event["output_uri"],
        event["model_version"],
        settings.recommendations_table,
        settings.config_table,
        settings.recommendations_ttl_days,
        pending_targets(f"s3://{settings.artifacts_bucket}/{ERASURES_PREFIX}"),
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
