"""Erasure requests and their receipts (IAM-signed at API Gateway, AdminApiPolicy: the store's back office):
DELETE /v1/users/{user_id} erases a shopper from the online stores at once and records the erasure for the jobs and
the purge; GET /v1/erasures and GET /v1/erasures/{erasure_id} read the receipts. The caller is logged; the id is not."""

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.dal import erasures
from shopwise.dal.serving_read import Tables
from shopwise.heap import freeze_imports
from shopwise.http import invalid_request, json_response
from shopwise.observability import logger, metrics, tracer
from shopwise.privacy.erasure import aliases_of, erase
from shopwise.privacy.pseudonyms import load_pseudonymisers
from shopwise.settings import get_settings

app = APIGatewayHttpResolver(enable_validation=True)
IdType = Annotated[
    Literal["customer", "anonymous", "email", "device"],
    Query(description="what the id is: the store's account id, a visitor cookie id, an email address, a device id"),
]


@app.delete(
    "/v1/users/<user_id>",
    summary="Erase a shopper everywhere",
    description="IAM-signed (AdminApiPolicy). Every alias of the person is found through identity stitching; the "
    "profile, aliases, sessions, precomputed lists (both slots) and campaign caps are deleted now, training, the "
    "transform, the load and campaign exports skip the person from now on, and the purge job removes them from "
    "the event archive and every derived object within the bound the README states. Returns the receipt "
    "(no identity in it). Erasing someone already erased finds nothing and says so.",
    tags=["admin"],
    responses={200: {"description": "the receipt"}, 400: {"description": "an empty id or an unknown id type"}},
)
@tracer.capture_method
def erase_user(user_id: Annotated[str, Path(min_length=1, max_length=320)], id_type: IdType = "customer") -> Any:
    settings = get_settings()
    caller = app.current_event.request_context.authorizer.iam
    aliases = aliases_of(id_type, user_id, load_pseudonymisers(settings.pseudonym_key_secret))
    receipt = erase(aliases, Tables.from_settings(settings), settings.artifacts_bucket, caller.user_arn or "iam")
    logger.info("erasure", extra={"caller": caller.user_arn, "erasure_id": receipt.erasure_id})
    metrics.add_metric(name="Erasures", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ErasedProfiles", unit=MetricUnit.Count, value=receipt.profiles)
    return json_response(200, receipt.to_json())


@app.get(
    "/v1/erasures",
    summary="The erasure receipts",
    description="IAM-signed (AdminApiPolicy): every erasure, newest first, with what was removed where and when "
    "each store finished.",
    tags=["admin"],
)
@tracer.capture_method
def list_erasures(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
    found = sorted(erasures.scan(get_settings().config_table), key=lambda r: -float(r["requested_at"]))
    return json_response(200, {"erasures": found[:limit], "total": len(found)})


@app.get(
    "/v1/erasures/<erasure_id>",
    summary="One erasure receipt",
    description="IAM-signed (AdminApiPolicy).",
    tags=["admin"],
    responses={404: {"description": "no such erasure"}},
)
@tracer.capture_method
def show_erasure(erasure_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z-]+$")]) -> Any:
    found = erasures.get(get_settings().config_table, erasure_id)
    return json_response(200, found) if found else json_response(404, {"message": f"no erasure {erasure_id}"})


@app.exception_handler(RequestValidationError)
def bad_input(exc: RequestValidationError) -> Response:
    return invalid_request(list(exc.errors()))


@app.exception_handler(ValueError)
def bad_id(exc: ValueError) -> Response:
    return json_response(400, {"message": str(exc)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
