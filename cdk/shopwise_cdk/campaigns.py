"""Email campaigns (``shopwise.campaigns``): one function runs each campaign on its EventBridge schedule (one run at
a time) and answers marketing tools paging through the latest run on an IAM-authorised route of the HTTP API."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from shopwise import config
from shopwise.campaigns.rules import CAMPAIGNS
from shopwise.config import CAMPAIGNS_PREFIX, EnvironmentConfig
from shopwise.keys import SENT_PREFIX
from shopwise_cdk.functions import Layers, python_function
from shopwise_cdk.nag import acknowledge, s3_grant_actions
from shopwise_cdk.serving import ServingApi
from shopwise_cdk.storage import Storage


class Campaigns(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        storage: Storage,
        layers: Layers,
        api: ServingApi,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            name="campaigns",
            env=env,
            layers=layers,
            environment=storage.function_environment(),
            timeout=Duration.minutes(15),
            description="email campaign runs (scheduled) and GET /v1/campaigns/{name}/recipients",
        )
        # runs of a campaign must not overlap: the frequency cap rows are written after the export
        function = self.function.node.default_child
        assert isinstance(function, lambda_.CfnFunction)
        function.reserved_concurrent_executions = 1
        features = storage.tables[config.FEATURES.name]
        # members come from the reach index (Query, keys only: reachable profiles) and the profiles it names
        # (BatchGetItem): no Scan
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"], resources=[f"{features.table_arn}/index/{config.REACH_INDEX.name}"]
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:BatchGetItem"], resources=[features.table_arn])
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:BatchWriteItem"],
                resources=[features.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{SENT_PREFIX}*"]}},
            )
        )
        for table in (config.CONFIG, config.ITEMS):
            storage.tables[table.name].grant(self.function, "dynamodb:BatchGetItem")
        storage.grant_lists(self.function, "dynamodb:BatchGetItem")
        storage.artifacts.grant_read_write(self.function, f"{CAMPAIGNS_PREFIX}*")
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[Stack.of(self).format_arn(service="events", resource="event-bus", resource_name="default")],
            )
        )
        assert self.function.role is not None
        acknowledge(
            self.function.role,
            {
                **s3_grant_actions("the campaigns/ prefix of the artifacts bucket"),
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/campaigns/*]": "Each run writes its "
                "files under campaigns/<name>/<run id>/.",
            },
        )
        for spec in CAMPAIGNS:
            events.Rule(
                self,
                f"Campaign{''.join(part.title() for part in spec.name.split('-'))}",
                schedule=events.Schedule.expression(env.campaign_schedule),
                description=f"run the {spec.name} campaign",
                targets=[
                    targets.LambdaFunction(
                        self.function, event=events.RuleTargetInput.from_object({"campaign": spec.name})
                    )
                ],
            )
        api.add_route("/v1/campaigns/{name}/recipients", apigwv2.HttpMethod.GET, self.function, "Campaigns")
