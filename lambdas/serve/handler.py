"""The storefront read API: recommendations per shopper, similar items, health, OpenAPI."""

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.http import json_response
from shopwise.observability import logger, metrics, tracer
from shopwise.privacy import load_pseudonymiser
from shopwise.serving.recommend import MAX_N, NotFound, Tables, recommend_for_user, similar_items
from shopwise.settings import get_settings

app = APIGatewayHttpResolver(enable_validation=True)
app.enable_swagger(path="/v1/docs", title="shopwise", version="1")  # a docs page, served from the package
Id = Annotated[str, Path(min_length=1, max_length=128)]
N = Annotated[int, Query(ge=1, le=MAX_N, description="how many items to return")]
IdType = Annotated[
    Literal["customer", "anonymous"],
    Query(description="customer: the store's account id (pseudonymised here); anonymous: the visitor cookie id"),
]


def _tables() -> Tables:
    settings = get_settings()
    return Tables(recommendations=settings.recommendations_table, features=settings.features_table)


@app.get("/v1/health")
def health() -> dict[str, Any]:
    return {"status": "ok"}


@app.get("/v1/users/<user_id>/recommendations")
@tracer.capture_method
def user_recommendations(user_id: Id, n: N = 10, id_type: IdType = "customer") -> dict[str, Any]:
    if id_type == "customer":
        profile_id = load_pseudonymiser(get_settings().pseudonym_key_secret).customer_profile(user_id)
    else:
        profile_id = f"a:{user_id}"
    return recommend_for_user(user_id, profile_id, n, _tables())


@app.get("/v1/items/<item_id>/similar")
@tracer.capture_method
def item_similar(item_id: Id, n: N = 10) -> dict[str, Any]:
    return similar_items(item_id, n, _tables())


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> Any:  # not `Response`: the validation middleware would try to build a schema for it
    return json_response(
        200,
        app.get_openapi_json_schema(title="shopwise", version="1", description=__doc__),
    )


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response:
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return json_response(
        400,
        {"message": "; ".join(problems), "errors": problems},
    )


@app.exception_handler(NotFound)
def not_found(exc: NotFound) -> Response:
    return json_response(404, {"message": str(exc)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
