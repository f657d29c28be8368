"""The HTTP API: storefront routes, throttled, with access logs; the serve Lambda behind an alias with
provisioned concurrency (per environment)."""

from __future__ import annotations

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
from shopwise.config import EnvironmentConfig
from shopwise.keys import UNAVAILABLE_KEY
from shopwise_cdk.functions import Layers, python_function
from shopwise_cdk.nag import acknowledge
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


class ServingApi(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, storage: Storage, layers: Layers
    ) -> None:
        super().__init__(scope, construct_id)
        self.serve = python_function(
            self,
            "Serve",
            name="serve",
            env=env,
            layers=layers,
            environment=storage.function_environment(),
            timeout=Duration.seconds(5),
            description="GET /v1/..., POST /v1/rank: recommendations, similar, popular, re-ranking, OpenAPI",
        )
        # one BatchGetItem across tables per request: read only, nothing else
        for table in (config.RECOMMENDATIONS, config.FEATURES, config.CONFIG, config.ITEMS):
            storage.tables[table.name].grant(self.serve, "dynamodb:BatchGetItem")
        storage.pseudonym_key.grant_read(self.serve)  # customer ids are looked up by their pseudonym
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name="live",
            version=self.serve.current_version,
            provisioned_concurrent_executions=env.provisioned_concurrency or None,
        )

        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=env.physical_name("api"),
            description="shopwise storefront API",
            create_default_stage=False,
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
            access_log_settings=AccessLogSettings(
                apigwv2.LogGroupLogDestination(access_logs),
                apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        self.add_route("/v1/{proxy+}", apigwv2.HttpMethod.GET, self.alias, "Serve")
        self.add_route("/v1/rank", apigwv2.HttpMethod.POST, self.alias, "Rank")

        # the back office's catalog updates: their own function, allowed to write the items table and nothing else
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
        # admin routes: API Gateway's IAM authoriser, so only signed requests by principals allowed to invoke them
        # get through (the store attaches AdminApiPolicy to its back office's role)
        self.add_route("/v1/items", apigwv2.HttpMethod.PUT, self.catalog, "Catalog", authorizer=HttpIamAuthorizer())
        self.admin_policy = iam.ManagedPolicy(
            self,
            "AdminApiPolicy",
            description="Invoke shopwise's admin routes (PUT /v1/items, GET /v1/campaigns/{name}/recipients)",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[
                        self.api.arn_for_execute_api("PUT", "/v1/items", "$default"),
                        self.api.arn_for_execute_api("GET", "/v1/campaigns/*/recipients", "$default"),
                    ],
                )
            ],
        )
        acknowledge(
            self.admin_policy,
            {
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:"
                "<ServingApi486100ED>/$default/GET/v1/campaigns/*/recipients]": "Any campaign's recipients: the "
                "campaign name is a path parameter.",
            },
        )

    def add_route(
        self,
        path: str,
        method: apigwv2.HttpMethod,
        target: lambda_.IFunction,
        name: str,
        authorizer: apigwv2.IHttpRouteAuthorizer | None = None,
    ) -> None:
        self.api.add_routes(
            path=path,
            methods=[method],
            integration=integrations.HttpLambdaIntegration(f"{name}Integration", target),
            authorizer=authorizer,
        )

    @property
    def url(self) -> str:
        return self.stage.url
