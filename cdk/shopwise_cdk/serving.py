"""The HTTP API: storefront routes, throttled, with access logs; the serve Lambda behind an alias with
provisioned concurrency (per environment)."""

from __future__ import annotations

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise_cdk.functions import Layers, python_function
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
            description="GET /v1/...: recommendations, similar items, health, OpenAPI",
        )
        storage.tables[config.RECOMMENDATIONS.name].grant_read_data(self.serve)
        storage.tables[config.FEATURES.name].grant_read_data(self.serve)
        storage.pseudonym_key.grant_read(self.serve)  # customer ids are looked up by their pseudonym
        storage.tables[config.CONFIG.name].grant_read_data(self.serve)
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
            description="PUT /v1/items: catalog updates in place, bearer-token authorised",
        )
        storage.tables[config.ITEMS.name].grant(self.catalog, "dynamodb:UpdateItem")
        storage.catalog_token.grant_read(self.catalog)
        self.add_route("/v1/items", apigwv2.HttpMethod.PUT, self.catalog, "Catalog")

    def add_route(self, path: str, method: apigwv2.HttpMethod, target: lambda_.IFunction, name: str) -> None:
        self.api.add_routes(
            path=path, methods=[method], integration=integrations.HttpLambdaIntegration(f"{name}Integration", target)
        )

    @property
    def url(self) -> str:
        return self.stage.url
