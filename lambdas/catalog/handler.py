"""PUT /v1/items: catalog updates in place (shopwise.catalog.api). API Gateway's IAM authoriser lets only signed
requests by principals allowed ``execute-api:Invoke`` on the route reach this function; the caller is logged."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.catalog.api import BadCatalogRequest, parse_items, update_catalog
from shopwise.http import json_response
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings

app = APIGatewayHttpResolver()


@app.put("/v1/items")
@tracer.capture_method
def put_items() -> Response:
    settings = get_settings()
    caller = app.current_event.request_context.authorizer.iam  # who changed the catalog: kept in the logs
    logger.info(
        "catalog update",
        extra={"caller": caller.user_arn, "bytes": len(app.current_event.body or "")},
    )
    result = update_catalog(
        parse_items(app.current_event.decoded_body), settings.items_table, settings.features_table
    ).to_json()
    metrics.add_metric(name="CatalogItemsChanged", unit=MetricUnit.Count, value=result["created"] + result["updated"])
    return json_response(200 if result["created"] + result["updated"] else 400, result)


@app.exception_handler(BadCatalogRequest)
def bad_request(exc: BadCatalogRequest) -> Response:
    return json_response(exc.status, {"message": str(exc)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
