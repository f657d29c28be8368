"""Step Functions task: the items table -> the catalog snapshot the training job reads."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise import config
from shopwise.catalog.export import export_catalog
from shopwise.heap import freeze_imports
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    if not settings.artifacts_bucket:
        raise ValueError("export_catalog: ARTIFACTS_BUCKET is not set")
    items = export_catalog(settings.items_table, settings.artifacts_bucket, config.CATALOG_KEY)
    logger.info("catalog exported", extra={"items": items, "key": config.CATALOG_KEY})
    return {"items": items, "uri": f"s3://{settings.artifacts_bucket}/{config.CATALOG_KEY}"}


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
