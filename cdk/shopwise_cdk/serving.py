"""The HTTP API: the serve Lambda behind an alias with provisioned concurrency (per environment), the catalog
function, the routes with who may call each (``shopwise.access``), CORS for the store's origins, throttles per kind of
route, access logs, and the managed policies a store attaches to its servers' and back office's roles.

Who may call what (the README's threat model):
- browser routes (``POST /v1/events``, ``GET /v1/users/...``, ``POST /v1/rank``): no API Gateway authoriser; the
  function verifies the shopper token (HMAC, no network call) and lets a browser act only for its own shopper;
- public routes (``POST /v1/visitors``, ``GET /v1/popular``, ``GET /v1/items/{id}/similar``, health, the API
  document): no credential, nothing personal;
- server routes (``/v1/server/...``) and admin routes (``PUT /v1/items``, ``GET /v1/campaigns/...``): API Gateway's
  IAM authoriser — only requests signed by principals allowed ``execute-api:Invoke`` on them (``ServerApiPolicy``,
  ``AdminApiPolicy``).
"""

from __future__ import annotations

import json
import re

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_authorizers import HttpIamAuthorizer
from constructs import Construct

from shopwise import config
from shopwise.access.routes import ADMIN, ROUTES, SERVER
from shopwise.config import CORS_HEADERS, CORS_MAX_AGE, EnvironmentConfig
from shopwise.keys import UNAVAILABLE_KEY
from shopwise_cdk.functions import Layers, python_function
from shopwise_cdk.nag import acknowledge, logical_id
from shopwise_cdk.storage import Storage


@jsii.implements(apigwv2.IAccessLogSettings)
class AccessLogSettings:
    """IAccessLogSettings is an interface in jsii, so Python passes an object that implements it, not a dict."""

    def __init__(self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


# API Gateway access-log fields ($context variables of HTTP APIs)
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "authorizerError": "$context.authorizer.error",
}


class ServingApi(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, storage: Storage, layers: Layers
    ) -> None:
        super().__init__(scope, construct_id)
        self.env_config = env
        self.routes: dict[str, str] = {}  # route key -> kind (the throttles, the policies and the tests read it)
        self._build_serve(env, storage, layers)
        self._build_api(env)
        self.add_route("/v1/{proxy+}", apigwv2.HttpMethod.GET, self.alias, "Serve")
        self.add_route("/v1/rank", apigwv2.HttpMethod.POST, self.alias, "Rank")
        self.add_route("/v1/visitors", apigwv2.HttpMethod.POST, self.alias, "Visitors")
        self.add_route("/v1/server/{proxy+}", apigwv2.HttpMethod.GET, self.alias, "ServerServe")
        self.add_route("/v1/server/rank", apigwv2.HttpMethod.POST, self.alias, "ServerRank")
        self._build_catalog(env, storage, layers)
        self._build_policies(storage)

    def _build_serve(self, env: EnvironmentConfig, storage: Storage, layers: Layers) -> None:
        self.serve = python_function(
            self,
            "Serve",
            name="serve",
            env=env,
            layers=layers,
            environment=storage.function_environment(),
            timeout=Duration.seconds(5),
            description="GET /v1/..., POST /v1/rank, POST /v1/visitors: recommendations, similar, popular, re-ranking",
            log_days=env.shopper_log_days,  # its impression lines name the shopper (the archive keeps them)
            per_request=True,
        )
        # one BatchGetItem across tables per request: read only, nothing else
        for table in (config.FEATURES, config.CONFIG, config.ITEMS):
            storage.tables[table.name].grant(self.serve, "dynamodb:BatchGetItem")
        storage.grant_lists(self.serve, "dynamodb:BatchGetItem")
        storage.pseudonym_key.grant_read(self.serve)  # customer ids are looked up by their pseudonym
        storage.token_key.grant_read(self.serve)  # shopper tokens are verified (and visitor tokens minted) with it
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name="live",
            version=self.serve.current_version,
            provisioned_concurrent_executions=env.provisioned_concurrency or None,
        )

    def _build_api(self, env: EnvironmentConfig) -> None:
        """The HTTP API, CORS for the environment's storefront origins, the stage with its default throttle (each
        route also gets its kind's throttle) and access logs."""
        cors = (
            apigwv2.CorsPreflightOptions(
                allow_origins=list(env.allowed_origins),
                allow_methods=[apigwv2.CorsHttpMethod.GET, apigwv2.CorsHttpMethod.POST, apigwv2.CorsHttpMethod.OPTIONS],
                allow_headers=list(CORS_HEADERS),
                max_age=Duration.seconds(CORS_MAX_AGE),
            )
            if env.allowed_origins
            else None
        )
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=env.physical_name("api"),
            description="shopwise storefront API",
            create_default_stage=False,
            cors_preflight=cors,
        )
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.RETAIN if env.retain_data else RemovalPolicy.DESTROY,
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=env.api_throttle_rate, burst_limit=env.api_throttle_burst),
            # the route template, never the path (it holds shopper ids) nor the caller's IP: no shopper key in logs
            access_log_settings=AccessLogSettings(
                apigwv2.LogGroupLogDestination(access_logs),
                apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))),
            ),
        )

    def _build_catalog(self, env: EnvironmentConfig, storage: Storage, layers: Layers) -> None:
        """The back office's catalog updates: their own function, allowed to write the items table and nothing
        else; an admin route."""
        self.catalog = python_function(
            self,
            "Catalog",
            name="catalog",
            env=env,
            layers=layers,
            environment=storage.function_environment(),
            memory_mb=512,
            timeout=Duration.seconds(10),
            description="PUT /v1/items: catalog updates in place (IAM-authorised at API Gateway)",
        )
        storage.tables[config.ITEMS.name].grant(self.catalog, "dynamodb:UpdateItem")
        # ... and the out-of-stock set serving reads: that one row of the feature store, nothing else in it
        self.catalog.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem"],
                resources=[storage.tables[config.FEATURES.name].table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [UNAVAILABLE_KEY]}},
            )
        )
        self.add_route("/v1/items", apigwv2.HttpMethod.PUT, self.catalog, "Catalog")

    def _build_policies(self, storage: Storage) -> None:
        """What a store attaches to its own roles: its servers may invoke the server routes and read the token key
        (to mint shopper tokens); its back office may invoke the admin routes."""

        def invoke(kind: str) -> list[str]:
            """The execute-api ARNs of every route of a kind in the route table (a path parameter: any value)."""
            return [
                self.api.arn_for_execute_api(r.method, re.sub(r"\{[^}]+\}", "*", r.path), "$default")
                for r in ROUTES
                if r.kind == kind
            ]

        self.server_policy = iam.ManagedPolicy(
            self,
            "ServerApiPolicy",
            description="The store's servers: shopwise's /v1/server/ routes, and the key shopper tokens are minted with",
            statements=[
                iam.PolicyStatement(actions=["execute-api:Invoke"], resources=invoke(SERVER)),
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    resources=[storage.token_key.secret_arn],
                ),
            ],
        )
        self.admin_policy = iam.ManagedPolicy(
            self,
            "AdminApiPolicy",
            description="The store's back office: shopwise's admin routes (catalog updates, campaign recipients, "
            "erasures and their receipts)",
            statements=[iam.PolicyStatement(actions=["execute-api:Invoke"], resources=invoke(ADMIN))],
        )
        api = logical_id(self.api)
        arn = f"arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<{api}>/$default"
        for policy, kind in ((self.server_policy, SERVER), (self.admin_policy, ADMIN)):
            acknowledge(
                policy,
                {
                    f"AwsSolutions-IAM5[Resource::{arn}/{r.method}{re.sub(r'{[^}]+}', '*', r.path)}]": f"{r.key}: "
                    "any value of its path parameter (a campaign, a shopper, an erasure, a server read route)."
                    for r in ROUTES
                    if r.kind == kind and "{" in r.path
                },
            )

    def add_route(self, path: str, method: apigwv2.HttpMethod, target: lambda_.IFunction, name: str) -> None:
        """A route of the route table (``shopwise.access.routes``): IAM-authorised if it is a server or admin route,
        throttled as its kind."""
        key = f"{method.value} {path}"
        route = next((r for r in ROUTES if r.key == key), None)
        if route is None:
            raise ValueError(f"{key} is not in the route table (shopwise.access.routes.ROUTES)")
        created = self.api.add_routes(
            path=path,
            methods=[method],
            integration=integrations.HttpLambdaIntegration(f"{name}Integration", target),
            authorizer=HttpIamAuthorizer() if route.iam else None,
        )
        self.routes[key] = route.kind
        rate, burst = self.env_config.throttles[route.kind]
        stage = self.stage.node.default_child
        assert isinstance(stage, apigwv2.CfnStage)
        stage.add_property_override(
            f"RouteSettings.{key}", {"ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}
        )
        for http_route in created:
            stage.node.add_dependency(http_route)  # a stage's route settings name routes that must exist first

    @property
    def url(self) -> str:
        return self.stage.url
