"""POST /v1/events (a browser, with its shopper token) and POST /v1/server/events (the store's servers, IAM-signed):
validate each event against what its caller may send, stamp received_at and origin, publish to Kinesis."""

from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from shopwise.access.callers import Forbidden, Unauthorized
from shopwise.dal.stream import KinesisPublisher
from shopwise.heap import freeze_imports
from shopwise.http import invalid_request, json_response, refused, request_caller, too_deep, unreadable_body
from shopwise.ingestion.collect import MAX_BATCH_BYTES, MAX_EVENTS_PER_BATCH, collect
from shopwise.observability import logger, metrics, tracer
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise.settings import get_settings

app = APIGatewayHttpResolver(enable_validation=True)


class EventBatch(BaseModel):
    """Each event is validated on its own (``shopwise.events``): a bad one is rejected alone, with the field named."""

    events: Annotated[
        list[Any],
        Field(
            min_length=1,
            max_length=MAX_EVENTS_PER_BATCH,
            description="storefront events: product_view, add_to_cart, remove_from_cart, purchase, search, click, "
            "identify, consent (schemas: shopwise.events)",
        ),
    ]


class EventResult(BaseModel):
    index: int
    event_id: Any = None
    status: str = Field(description="accepted or rejected")
    field: str | None = Field(default=None, description="the field at fault, for a rejected event")
    reason: str | None = None


class CollectAnswer(BaseModel):
    accepted: int
    rejected: int
    results: list[EventResult]


ANSWERS: dict[int, Any] = {
    200: {"description": "at least one event accepted", "content": {"application/json": {"model": CollectAnswer}}},
    400: {"description": "none accepted (each result says why), or the body is not a batch"},
    401: {"description": "no usable credential"},
    403: {"description": "a credential that does not cover this call (an origin not allowed, say)"},
}
BATCH = Annotated[EventBatch, Body(description=f"at most {MAX_EVENTS_PER_BATCH} events and {MAX_BATCH_BYTES} bytes")]


@app.post(
    "/v1/events",
    summary="Send a browser's events",
    description="For the visitor and the customer the shopper token names (Authorization: Bearer <token>). Links "
    "to emails and devices, and a guest's purchases, come from the store's servers; impressions from nobody.",
    tags=["events"],
    responses=ANSWERS,
)
@tracer.capture_method
def post_events(body: BATCH) -> Any:
    return _collect(body)


@app.post(
    "/v1/server/events",
    summary="Send the store's servers' events",
    description="IAM-signed (SigV4): any shopper, identity links with emails and devices, consent, purchases.",
    tags=["events", "server"],
    responses=ANSWERS,
)
@tracer.capture_method
def post_server_events(body: BATCH) -> Any:
    return _collect(body)


def _collect(body: EventBatch) -> Response:
    caller = request_caller(app.current_event)
    caller.need("events")
    settings = get_settings()
    pseudonymiser = load_pseudonymiser(settings.pseudonym_key_secret)
    result = collect(body.events, datetime.now(UTC), KinesisPublisher(settings.events_stream), pseudonymiser, caller)
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=result.accepted)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=result.rejected)
    return json_response(200 if result.accepted else 400, result.to_json())


@app.exception_handler(RequestValidationError)
def bad_input(exc: RequestValidationError) -> Response:
    return invalid_request(list(exc.errors()))


@app.exception_handler(RecursionError)
def nested(exc: RecursionError) -> Response:
    return too_deep(exc)


@app.exception_handler(Unauthorized)
@app.exception_handler(Forbidden)
def not_allowed(exc: Unauthorized | Forbidden) -> Response:
    return refused(exc)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return unreadable_body(event, MAX_BATCH_BYTES) or app.resolve(event, context)


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
