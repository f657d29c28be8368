"""Email campaigns: the scheduled run (EventBridge: {"campaign": NAME}) and GET /v1/campaigns/{name}/recipients
(IAM-authorised at API Gateway: marketing tools page through the latest run with a cursor)."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.campaigns.rules import CampaignError, campaign
from shopwise.campaigns.runs import BadCursor, recipients_page, run_campaign
from shopwise.dal.serving_read import Tables
from shopwise.heap import freeze_imports
from shopwise.http import invalid_request, json_response
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings

app = APIGatewayHttpResolver(enable_validation=True)


@app.get(
    "/v1/campaigns/<name>/recipients",
    summary="A page of the latest run's recipients of an email campaign",
    description="IAM-signed (AdminApiPolicy). Pass `next` back as `cursor` until it is empty; a cursor stays on its run.",
    tags=["admin"],
    responses={404: {"description": "an unknown campaign, or one that has not run"}},
)
@tracer.capture_method
def recipients(
    name: Annotated[str, Path(min_length=1, max_length=64)],
    cursor: Annotated[str, Query(max_length=128, description="the `next` of the page before")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    spec = campaign(name)
    return recipients_page(get_settings().artifacts_bucket, spec.name, cursor, limit)


@app.exception_handler(RequestValidationError)
def bad_input(exc: RequestValidationError) -> Response:
    return invalid_request(list(exc.errors()))


@app.exception_handler(CampaignError)
def unknown_campaign(exc: CampaignError) -> Response:
    return json_response(404, {"message": str(exc)})


@app.exception_handler(LookupError)
def no_run(exc: LookupError) -> Response:  # the campaign has not run yet, or the cursor's run is gone
    return json_response(404, {"message": str(exc)})


@app.exception_handler(BadCursor)
def bad_cursor(exc: BadCursor) -> Response:
    return json_response(400, {"message": str(exc)})


def scheduled_run(name: str) -> dict[str, Any]:
    settings = get_settings()
    tables = Tables.from_settings(settings)
    report = run_campaign(campaign(name), tables, settings.artifacts_bucket, None, settings.repeat_purchase_categories)
    metrics.add_dimension(name="campaign", value=name)
    metrics.add_metric(name="CampaignRecipients", unit=MetricUnit.Count, value=report.recipients)
    metrics.add_metric(name="CampaignHeldOut", unit=MetricUnit.Count, value=report.held_out)
    metrics.add_metric(name="CampaignCapped", unit=MetricUnit.Count, value=report.capped)
    logger.info("campaign run", extra=report.to_json())
    return report.to_json()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "campaign" in event:  # the schedule's constant input
        return scheduled_run(str(event["campaign"]))
    return app.resolve(event, context)


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
