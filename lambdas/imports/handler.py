"""The import function: a bulk import of an uploaded file of up to ``IMPORT_FUNCTION_MAX_ROWS`` lines, streamed from S3
(``shopwise.ingestion.import_job``); the import state machine sends larger ones to the import job. Its progress and
result are in ``imports/<id>/report.json``, its bad rows in ``imports/<id>/errors.jsonl``."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.heap import freeze_imports
from shopwise.ingestion.import_job import ImportRequest, run_import
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ImportRequest.parse(event)
    done = run_import(request, get_settings())
    logger.info(
        "import done",
        extra={k: done[k] for k in ("import_id", "kind", "imported", "rejected", "seconds")},
    )
    metrics.add_metric(name="ImportedRows", unit=MetricUnit.Count, value=int(done["imported"]))
    metrics.add_metric(name="RejectedImportRows", unit=MetricUnit.Count, value=int(done["rejected"]))
    return {k: v for k, v in done.items() if k not in ("bad", "keys")} | {"objects": len(done["keys"])}


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
