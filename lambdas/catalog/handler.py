"""PUT /v1/items: catalog updates in place, authorised by the catalog token (shopwise.catalog_api)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.catalog_api import BadCatalogRequest, Unauthorised, check_token, parse_items, update_catalog
from shopwise.http import json_response
from shopwise.observability import logger, metrics, tracer
from shopwise.secrets import read_secret
from shopwise.settings import get_settings

app = APIGatewayHttpResolver()


@app.put("/v1/items")
@tracer.capture_method
def put_items() -> Response:
    settings = get_settings()
    check_token(app.current_event.headers.get("authorization"), read_secret(settings.catalog_token_secret))
    result = update_catalog(
        parse_items(app.current_event.decoded_body), settings.items_table, settings.features_table
    ).to_json()
    metrics.add_metric(name="CatalogItemsChanged", unit=MetricUnit.Count, value=result["created"] + result["updated"])
    return json_response(200 if result["created"] + result["updated"] else 400, result)


@app.exception_handler(Unauthorised)
def unauthorised(exc: Unauthorised) -> Response:
    return json_response(exc.status, {"message": str(exc)})


@app.exception_handler(BadCatalogRequest)
def bad_request(exc: BadCatalogRequest) -> Response:
    return json_response(exc.status, {"message": str(exc)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
