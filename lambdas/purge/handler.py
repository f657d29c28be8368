"""The purge state machine's two Lambda steps (shopwise.privacy.purge): {"action": "plan"} names the erasures due
and writes the run's plan; {"action": "finish", "plan_key": ...} scrubs the failure queue, completes the receipts
and drops the pending erasures. The purge job between them rewrites the buckets."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.heap import freeze_imports
from shopwise.observability import logger, metrics, tracer
from shopwise.privacy.purge import MIN_AGE_HOURS, finish, plan
from shopwise.settings import get_settings


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    action = event.get("action")
    if action == "plan":
        planned = plan(settings.artifacts_bucket, min_age_hours=float(event.get("min_age_hours", MIN_AGE_HOURS)))
        logger.info("purge planned", extra=planned)
        return planned
    if action == "finish":
        done = finish(
            settings.artifacts_bucket,
            str(event["plan_key"]),
            settings.config_table,
            settings.failed_events_queue_url,
        )
        logger.info("purge finished", extra=done)
        metrics.add_metric(name="ErasuresPurged", unit=MetricUnit.Count, value=int(done["erasures"]))
        metrics.add_metric(name="PurgeLinesRemoved", unit=MetricUnit.Count, value=int(done.get("lines_removed", 0)))
        return done
    raise ValueError(f"unknown purge action {action!r}: plan or finish")


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
