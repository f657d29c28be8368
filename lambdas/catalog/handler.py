"""PUT /v1/items: catalog updates in place (shopwise.catalog.api). API Gateway's IAM authoriser lets only signed
requests by principals allowed ``execute-api:Invoke`` on the route reach this function; the caller is logged."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from shopwise.catalog.api import MAX_BODY_BYTES, MAX_ITEMS_PER_REQUEST, update_catalog
from shopwise.heap import freeze_imports
from shopwise.http import invalid_request, json_response, too_deep, unreadable_body
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings

app = APIGatewayHttpResolver(enable_validation=True)


class CatalogPatch(BaseModel):
    """Each item is validated on its own (``shopwise.catalog.api.ItemPatch``): a bad one is rejected alone."""

    items: Annotated[
        list[Any],
        Field(
            min_length=1,
            max_length=MAX_ITEMS_PER_REQUEST,
            description="{item_id, and any of title, category, price, in_stock, brand, market}: only the fields "
            "given change; an unknown item is created",
        ),
    ]


@app.put(
    "/v1/items",
    summary="Update catalog items in place",
    description="The back office's price, stock, category and title changes (IAM-signed, AdminApiPolicy); a stock "
    "change reaches serving on the next request.",
    tags=["admin"],
    responses={200: {"description": "at least one item changed"}, 400: {"description": "none changed"}},
)
@tracer.capture_method
def put_items(body: Annotated[CatalogPatch, Body(description=f"at most {MAX_ITEMS_PER_REQUEST} items")]) -> Any:
    settings = get_settings()
    caller = app.current_event.request_context.authorizer.iam  # who changed the catalog: kept in the logs
    logger.info("catalog update", extra={"caller": caller.user_arn, "items": len(body.items)})
    result = update_catalog(body.items, settings.items_table, settings.features_table).to_json()
    metrics.add_metric(name="CatalogItemsChanged", unit=MetricUnit.Count, value=result["created"] + result["updated"])
    return json_response(200 if result["created"] + result["updated"] else 400, result)


@app.exception_handler(RequestValidationError)
def bad_input(exc: RequestValidationError) -> Response:
    return invalid_request(list(exc.errors()))


@app.exception_handler(RecursionError)
def nested(exc: RecursionError) -> Response:
    return too_deep(exc)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return unreadable_body(event, MAX_BODY_BYTES) or app.resolve(event, context)


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
