"""Step Functions task of the drift state machine: the drift job's drift.json (in its output.tar.gz) published as
CloudWatch metrics (EMF, namespace ``shopwise``; ``shopwise.lifecycle.figures.DriftFigures`` names them). Alarms on
them start the retrain state machine."""

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.dal.objects import read_job_output
from shopwise.heap import freeze_imports
from shopwise.lifecycle.figures import DriftFigures
from shopwise.observability import logger, metrics, tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    model_uri = str(event.get("model_uri") or "")
    if not model_uri:
        raise ValueError(f"monitor: the input needs 'model_uri' (the drift job's artefact); got keys {sorted(event)}")
    report = json.loads(read_job_output(model_uri, "drift.json"))
    published = DriftFigures.from_report(report).metrics()
    for name, value in published.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.add_metric(name=DriftFigures.ALARMS_METRIC, unit=MetricUnit.Count, value=len(report.get("alarms", [])))
    metrics.add_metadata(key="model_version", value=str(report.get("model_version", "")))
    logger.info("drift", extra={"figures": published, "alarms": report.get("alarms", [])})
    return {"model_version": report.get("model_version", ""), "metrics": published, "alarms": report.get("alarms", [])}


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
