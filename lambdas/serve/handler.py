"""The storefront read API: recommendations per shopper and placement, similar items, re-ranking, bestsellers,
health, OpenAPI.

Latency-bound: it imports no event schemas and no X-Ray SDK (the function is traced by Lambda's active tracing,
without subsegments), so a cold start costs little more than boto3 and the resolver."""

import sys
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

import shopwise
from shopwise.access.callers import BROWSER, Caller, Forbidden, Unauthorized
from shopwise.access.keys import key_source
from shopwise.access.tokens import VISITOR_TTL_SECONDS, mint, new_visitor_id
from shopwise.dal.serving_read import ServingReader, Tables
from shopwise.heap import freeze_imports
from shopwise.http import invalid_request, json_response, refused, request_caller, too_deep, unreadable_body
from shopwise.keys import anonymous_alias, referrer_source
from shopwise.observability import logger, metrics
from shopwise.picks import served_metric
from shopwise.serving import recommend as serving
from shopwise.serving.recommend import (
    MAX_CONTEXT,
    MAX_EXCLUDE,
    MAX_N,
    MAX_RANK_ITEMS,
    NotFound,
    Request,
    Served,
    impression_line,
)
from shopwise.serving.view import CONTEXT_LIMIT
from shopwise.settings import get_settings

# impressions go where the function's logs go (stdout at import: CloudWatch Logs in Lambda, the function's log
# file locally); a subscription filter ships them to the archive
IMPRESSIONS = sys.stdout
READ_ERRORS: dict[int, Any] = {
    400: {"description": "a parameter out of range: the message names it"},
    401: {"description": "no usable credential (a browser route needs a shopper token)"},
    403: {"description": "the credential does not act for this shopper (or an origin not allowed)"},
    404: {"description": "no model loaded yet"},
}
MAX_BODY_BYTES = 1_000_000
app = APIGatewayHttpResolver(enable_validation=True)
Id = Annotated[str, Path(min_length=1, max_length=128)]
N = Annotated[int, Query(ge=1, le=MAX_N, description="how many items to return")]
IdType = Annotated[
    Literal["customer", "anonymous"],
    Query(description="customer: the store's account id (pseudonymised here); anonymous: the visitor cookie id"),
]
Placement = Literal["home", "product", "cart", "email"]
Market = Annotated[str, Query(max_length=8, pattern=r"^([A-Za-z0-9_-]{2,8})?$", description="market, e.g. NZ")]
Category = Annotated[
    str, Query(max_length=512, description='category path, most general first ("Shoes>Running"): only items in it')
]


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(min_length=1, max_length=128)]
    id_type: Literal["customer", "anonymous"] = "customer"
    item_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]], Field(min_length=1, max_length=MAX_RANK_ITEMS)
    ]
    placement: Placement = "home"
    market: Annotated[str, Field(max_length=8)] = ""


def _reader() -> ServingReader:
    settings = get_settings()
    return ServingReader(Tables.from_settings(settings), settings.stock_cache_seconds)


def _profile_id(user_id: str, id_type: str) -> str:
    if id_type == "anonymous":
        return anonymous_alias(user_id)
    from shopwise.privacy.pseudonyms import load_pseudonymiser  # only customer ids need the key

    return load_pseudonymiser(get_settings().pseudonym_key_secret).customer_profile(user_id)


def _served(answer: dict[str, Any] | Served) -> dict[str, Any]:
    """Count the answer by its first source (the fallback mix); a shopper's list is also an impression."""
    response = answer.response if isinstance(answer, Served) else answer
    metrics.add_metric(name=served_metric(response["source"]), unit=MetricUnit.Count, value=1)
    if isinstance(answer, Served):
        impression_line(answer, IMPRESSIONS)
    return response


def _caller() -> Caller:
    return request_caller(app.current_event)


@app.get("/v1/health", summary="Is the API up", tags=["public"])
def health() -> dict[str, Any]:
    return {"status": "ok"}


@app.get(
    "/v1/users/<user_id>/recommendations",
    summary="A shopper's recommendations, for their browser",
    description="Only for the customer (id_type=customer) or visitor (id_type=anonymous) the shopper token names: "
    "another id is a 403. The precomputed list blended with what the shopper just did, then the fallback chain; "
    "every item with a reason.",
    tags=["recommendations"],
    responses=READ_ERRORS,
)
@app.get(
    "/v1/server/users/<user_id>/recommendations",
    summary="A shopper's recommendations, for the store's servers",
    description="IAM-signed (SigV4): any shopper, e.g. for server-side rendering.",
    tags=["recommendations", "server"],
    responses=READ_ERRORS,
)
def user_recommendations(
    user_id: Id,
    n: N = 10,
    id_type: IdType = "customer",
    placement: Annotated[Placement, Query(description="where the list is shown")] = "home",
    category: Category = "",
    market: Market = "",
    exclude: Annotated[
        str, Query(max_length=4096, description=f"comma-separated item ids to leave out (at most {MAX_EXCLUDE})")
    ] = "",
    referrer: Annotated[
        str, Query(max_length=2048, description="where the visit came from (document.referrer or a source name)")
    ] = "",
    item: Annotated[
        str,
        Query(
            max_length=128,
            description="the product on screen: its neighbours and what shoppers went on to, at once (never in the "
            "list); no event needs to have reached the stream",
        ),
    ] = "",
    recent: Annotated[
        str,
        Query(
            max_length=MAX_CONTEXT * 129,
            description=f"comma-separated ids of the session's recent items, newest first (at most {MAX_CONTEXT}; "
            f"the newest {CONTEXT_LIMIT} with the product on screen are used)",
        ),
    ] = "",
) -> Any:
    _caller().may_read(user_id, id_type)
    left_out = frozenset(i.strip() for i in exclude.split(",") if i.strip())
    if len(left_out) > MAX_EXCLUDE:
        return json_response(400, {"message": f"exclude: {len(left_out)} ids; the limit is {MAX_EXCLUDE}"})
    seen = [i.strip() for i in recent.split(",") if i.strip()]
    if len(seen) > MAX_CONTEXT or any(len(i) > 128 for i in seen):
        return json_response(400, {"message": f"recent: at most {MAX_CONTEXT} ids of at most 128 characters"})
    on_screen = item.strip()
    request = Request(
        user_id,
        _profile_id(user_id, id_type),
        placement,
        n,
        category.strip(),
        market,
        left_out | {on_screen} if on_screen else left_out,
        referrer_source(referrer),
        tuple(dict.fromkeys([on_screen, *seen] if on_screen else seen)),
    )
    return _served(serving.recommend(request, _reader(), get_settings().repeat_purchase_categories))


@app.post(
    "/v1/rank",
    summary="Re-rank given items for a shopper, from their browser",
    description="A category page's sort order: every given item back once, by the shopper's blend; out of stock last.",
    tags=["recommendations"],
    responses=READ_ERRORS,
)
@app.post(
    "/v1/server/rank",
    summary="Re-rank given items for a shopper, for the store's servers",
    tags=["recommendations", "server"],
    responses=READ_ERRORS,
)
def rank(body: Annotated[RankRequest, Body(description="a shopper and up to 500 item ids to order")]) -> Any:
    _caller().may_read(body.user_id, body.id_type)
    request = Request(body.user_id, _profile_id(body.user_id, body.id_type), body.placement, market=body.market)
    return _served(serving.rank(request, body.item_ids, _reader()))


@app.post(
    "/v1/visitors",
    summary="A new anonymous visitor's id and token",
    description="For a browser that has no shopper token from the store: keep both (30 days); with a visitor token, "
    "the same visitor's token renewed.",
    tags=["public"],
)
def visitors() -> Any:
    """A new visitor's id and token (a browser with no shopper token of the store's calls it once and keeps both);
    with a visitor token, the same visitor's token renewed."""
    caller = _caller()
    visitor = caller.visitor if caller.kind == BROWSER and caller.visitor and not caller.customer else new_visitor_id()
    keys = key_source(get_settings().shopper_token_secret).keys()
    token = mint(keys, visitor=visitor, ttl=VISITOR_TTL_SECONDS)
    return {"visitor_id": visitor, "token": token, "expires_in": VISITOR_TTL_SECONDS}


@app.get("/v1/popular", summary="Bestsellers of a category and/or market, then global ones", tags=["public"])
def popular(n: N = 10, market: Market = "", category: Category = "") -> Any:
    return _served(serving.popular(n, market, category.strip(), _reader()))


@app.get(
    "/v1/items/<item_id>/similar",
    summary="Items like this one",
    description="Its precomputed neighbours; a product newer than the model gets its category's bestsellers.",
    tags=["public"],
    responses={404: {"description": "an id neither the catalog nor the model knows"}},
)
def item_similar(item_id: Id, n: N = 10) -> Any:
    return _served(serving.similar(item_id, n, _reader()))


def _openapi() -> str:
    """The API document of every route (``make openapi`` makes it from the HTTP functions' resolvers)."""
    from pathlib import Path

    return (Path(shopwise.__file__).parent / "openapi.json").read_text(encoding="utf-8")


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> Any:  # not `Response`: the validation middleware would try to build a schema for it
    return Response(status_code=200, content_type="application/json", body=_openapi())


@app.get("/v1/docs", include_in_schema=False)
def docs() -> Any:
    """A Swagger UI page from the files Powertools ships (no CDN), built on request: Powertools' enable_swagger
    would import the OpenAPI models (about 100 ms) at cold start."""
    from pathlib import Path

    from aws_lambda_powertools.event_handler.openapi.swagger_ui import html

    folder = Path(html.__file__).parent
    page = html.generate_swagger_html(
        _openapi().replace("</", "<\\/"),
        (folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (folder / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
        False,
    )
    return Response(status_code=200, content_type="text/html", body=page)


@app.exception_handler(RequestValidationError)
def bad_input(exc: RequestValidationError) -> Response:
    return invalid_request(list(exc.errors()))


@app.exception_handler(RecursionError)
def nested(exc: RecursionError) -> Response:
    return too_deep(exc)


@app.exception_handler(NotFound)
def not_found(exc: NotFound) -> Response:
    return json_response(404, {"message": str(exc)})


@app.exception_handler(Unauthorized)
@app.exception_handler(Forbidden)
def not_allowed(exc: Unauthorized | Forbidden) -> Response:
    return refused(exc)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return unreadable_body(event, MAX_BODY_BYTES) or app.resolve(event, context)


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
