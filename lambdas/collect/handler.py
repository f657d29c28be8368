"""POST /v1/events (a browser, with its shopper token) and POST /v1/server/events (the store's servers, IAM-signed):
validate each event against what its caller may send, stamp received_at and origin, publish to Kinesis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.access.callers import Forbidden, Unauthorized
from shopwise.dal.stream import KinesisPublisher
from shopwise.http import json_response, refused, request_caller
from shopwise.ingestion.collect import BadBatch, collect, parse_batch
from shopwise.observability import logger, metrics, tracer
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise.settings import get_settings

app = APIGatewayHttpResolver()


@app.post("/v1/events")
@app.post("/v1/server/events")
@tracer.capture_method
def post_events() -> Response:
    caller = request_caller(app.current_event)
    caller.need("events")
    raw = parse_batch(app.current_event.decoded_body)
    settings = get_settings()
    pseudonymiser = load_pseudonymiser(settings.pseudonym_key_secret)
    result = collect(raw, datetime.now(UTC), KinesisPublisher(settings.events_stream), pseudonymiser, caller)
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=result.accepted)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=result.rejected)
    return json_response(200 if result.accepted else 400, result.to_json())


@app.exception_handler(BadBatch)
def bad_batch(exc: BadBatch) -> Response:
    return json_response(exc.status, {"message": str(exc)})


@app.exception_handler(Unauthorized)
@app.exception_handler(Forbidden)
def not_allowed(exc: Unauthorized | Forbidden) -> Response:
    return refused(exc)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
