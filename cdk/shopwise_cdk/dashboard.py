"""The operations dashboard (CloudWatch): the stream and its failure queue, serving latency, the fallback mix (answers
by first source), the drift job's figures, click-through, the model version serving and the experiments' arms."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise.lifecycle.figures import DriftFigures
from shopwise.picks import SOURCES, served_metric
from shopwise_cdk.drift import drift_metric
from shopwise_cdk.functions import shopwise_metric
from shopwise_cdk.ingestion import Ingestion
from shopwise_cdk.serving import ServingApi


class Dashboard(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, ingestion: Ingestion, serving: ServingApi
    ) -> None:
        super().__init__(scope, construct_id)
        minute = Duration.minutes(5)
        lambda_metric = lambda name, fn, stat: cloudwatch.Metric(  # noqa: E731
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map={"FunctionName": fn.function_name},
            statistic=stat,
            period=minute,
        )
        api_latency = lambda stat: cloudwatch.Metric(  # noqa: E731
            namespace="AWS/ApiGateway",
            metric_name="Latency",
            dimensions_map={"ApiId": serving.api.api_id, "Stage": "$default"},
            statistic=stat,
            period=minute,
            label=f"API {stat}",
        )
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=env.physical_name("operations"))
        self.dashboard = dashboard
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Stream: update_features iterator age (ms)",
                left=[lambda_metric("IteratorAge", ingestion.update_features, "Maximum")],
            ),
            cloudwatch.GraphWidget(
                title="On-failure queue depth",
                left=[ingestion.failures.metric_approximate_number_of_messages_visible(period=minute)],
            ),
            cloudwatch.GraphWidget(
                title="Serve latency (ms)",
                left=[
                    api_latency("p50"),
                    api_latency("p99"),
                    lambda_metric("Duration", serving.serve, "p50"),
                    lambda_metric("Duration", serving.serve, "p99"),
                ],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Fallback mix: answers by first source",
                stacked=True,
                left=[shopwise_metric(served_metric(s), "Sum", Duration.hours(1)) for s in SOURCES],
            ),
            cloudwatch.GraphWidget(
                title="Drift (daily job)",
                left=[shopwise_metric(f.metric) for f in DriftFigures.alarmed()],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=config.PSI_ALARM, label="PSI alarm"),
                    cloudwatch.HorizontalAnnotation(value=config.NEW_ITEM_ALARM, label="new-item alarm"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Serving side (daily job)",
                left=[
                    drift_metric("personalised_share"),
                    drift_metric("coverage"),
                    drift_metric("last_to_first_score_p50"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Click-through of answers (daily job)",
                left=[drift_metric("ctr"), drift_metric("personalised_ctr")],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.LogQueryWidget(
                title="Model version serving (answers per hour: promotions and rollbacks show as a switch)",
                log_group_names=[serving.serve.log_group.log_group_name],
                query_lines=[
                    'filter event_type = "impression"',
                    "stats count(*) as answers by bin(1h), model_version",
                ],
                width=12,
            ),
            cloudwatch.LogQueryWidget(
                title="Experiments: answers and shoppers per variant (CTR etc.: shopwise report experiment)",
                log_group_names=[serving.serve.log_group.log_group_name],
                query_lines=[
                    'filter event_type = "impression"',
                    "stats count(*) as answers, count_distinct(coalesce(customer_id, anonymous_id)) as shoppers"
                    " by experiment, variant, model_version",
                ],
                width=12,
            ),
        )
