"""Step Functions task of the monitor state machine: the drift job's drift.json (in its output.tar.gz) published as
CloudWatch metrics (EMF, namespace ``shopwise``). Alarms on them start the retrain state machine."""

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.dal.objects import parse_s3_uri, read_tar_member
from shopwise.observability import logger, metrics, tracer

# metric name -> the drift.json figure (shopwise_jobs.drift.DriftReport.to_json); the CDK alarms use these names
DRIFT_METRICS = {
    "DriftMaxFeaturePSI": ("max_feature_psi",),
    "DriftEventMixPSI": ("event_mix_psi",),
    "DriftNewItemShare": ("new_item_share",),
    "DriftUnknownShopperShare": ("unknown_shopper_share",),
    "ServedPersonalisedShare": ("serving", "personalised_share"),
    "ServedCatalogCoverage": ("serving", "coverage"),
    "ServedLastToFirstScoreP50": ("serving", "last_to_first_score", "p50"),
    "RecommendationCTR": ("performance", "ctr"),
    "PersonalisedCTR": ("performance", "personalised_ctr"),
}


def figure(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = report
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) and value == value else None


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    model_uri = str(event.get("model_uri") or "")
    if not model_uri:
        raise ValueError(f"monitor: the input needs 'model_uri' (the drift job's artefact); got keys {sorted(event)}")
    bucket, key = parse_s3_uri(model_uri)
    report = json.loads(read_tar_member(bucket, key.rsplit("/", 1)[0] + "/output.tar.gz", "drift.json"))
    published: dict[str, float] = {}
    for name, path in DRIFT_METRICS.items():
        value = figure(report, path)
        if value is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            published[name] = value
    metrics.add_metric(name="DriftAlarms", unit=MetricUnit.Count, value=len(report.get("alarms", [])))
    metrics.add_metadata(key="model_version", value=str(report.get("model_version", "")))
    logger.info("drift", extra={"figures": published, "alarms": report.get("alarms", [])})
    return {"model_version": report.get("model_version", ""), "metrics": published, "alarms": report.get("alarms", [])}
