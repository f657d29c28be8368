"""Ingestion and the feature updater: Kinesis stream, collect Lambda, Firehose to the archive, update_features
Lambda on the stream with partial batch failures and an SQS on-failure destination, and the alarms that say when
events are late or lost (to the alarms topic the store subscribes its on-call to)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise.dal.recommendations import ACTIVE_MODEL_KEY
from shopwise_cdk.functions import Layers, python_function, shopwise_metric
from shopwise_cdk.nag import acknowledge, s3_grant_actions
from shopwise_cdk.storage import CONVERSION_GRANT, Storage


class Ingestion(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, storage: Storage, layers: Layers
    ) -> None:
        super().__init__(scope, construct_id)
        self.stream = kinesis.Stream(
            self,
            "Events",
            stream_name=env.physical_name(config.EVENTS_STREAM),
            shard_count=env.stream_shards,
            encryption=kinesis.StreamEncryption.MANAGED,
            retention_period=Duration.hours(24),
        )
        function_env = {**storage.function_environment(), "EVENTS_STREAM": self.stream.stream_name}

        self.collect = python_function(
            self,
            "Collect",
            name="collect",
            env=env,
            layers=layers,
            environment=function_env,
            memory_mb=512,
            timeout=Duration.seconds(10),
            description="POST /v1/events: validate, stamp, publish to Kinesis",
            log_days=env.shopper_log_days,  # a rejected event's reason can quote its ids
            per_request=True,
        )
        self.stream.grant_write(self.collect)
        storage.pseudonym_key.grant_read(self.collect)
        storage.token_key.grant_read(self.collect)  # browsers' shopper tokens are verified with it

        # Firehose copies every record of the stream to the archive, partitioned by arrival date.
        self.archive_delivery = firehose.DeliveryStream(
            self,
            "Archive",
            source=firehose.KinesisStreamSource(self.stream),
            destination=storage.archive_destination(config.ARCHIVE_ERRORS_PREFIX, Duration.seconds(60)),
        )

        acknowledge(
            self.archive_delivery,
            {
                **s3_grant_actions("the archive bucket (Firehose's S3 destination role, made by the L2 construct)"),
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/*]": "Firehose writes objects anywhere "
                "under the archive bucket's prefixes it evaluates at run time (dt=/hour=, errors/).",
                **CONVERSION_GRANT,
                "AwsSolutions-KDF1": "A delivery stream whose source is a Kinesis stream takes its encryption from "
                "that stream (KMS-managed here); Firehose SSE applies only to direct PUT sources.",
            },
        )

        self.failures = sqs.Queue(
            self,
            "UpdateFeaturesFailures",
            queue_name=env.physical_name(config.FAILED_EVENTS_QUEUE),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(config.FAILURE_QUEUE_DAYS),
        )
        self.update_features = python_function(
            self,
            "UpdateFeatures",
            name="update_features",
            env=env,
            layers=layers,
            environment={**function_env, "FAILED_EVENTS_QUEUE_URL": self.failures.queue_url},
            timeout=Duration.seconds(60),
            description="Kinesis -> feature store: one write per entity a batch, items' shard parts 25 a call",
            log_days=env.shopper_log_days,  # a failed entity is logged by its key (profile#c:...)
            per_request=True,  # invoked about once a second a shard whatever the rate: traced as trace_requests says
        )
        storage.tables[config.FEATURES.name].grant_read_write_data(self.update_features)
        storage.tables[config.ITEMS.name].grant_read_data(self.update_features)  # item categories
        # the event ledger: which events each source sent (batched reads and writes), held events (a Query)
        storage.tables[config.LEDGER.name].grant(
            self.update_features, "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:Query"
        )
        # the rows a shopper's serving view is made of (shopwise.serving.view), read once per batch
        storage.grant_lists(self.update_features, "dynamodb:BatchGetItem")
        # ... of the serving slot: the active-model pointer, and nothing else of the config table
        self.update_features.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem"],
                resources=[storage.tables[config.CONFIG.name].table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [ACTIVE_MODEL_KEY]}},
            )
        )
        self.failures.grant_send_messages(self.update_features)  # poison records, sent with their reason
        self.update_features.add_event_source(
            sources.KinesisEventSource(
                self.stream,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=env.stream_batch_size,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
                bisect_batch_on_error=True,
                retry_attempts=env.stream_retry_attempts,
                max_record_age=Duration.seconds(env.stream_max_record_age_s),
                # one batch per shard at a time: the feature store's per-shard sequence high-water mark relies on it
                parallelization_factor=1,
                on_failure=sources.SqsDlq(self.failures),
            )
        )
        self.alarm_topic, self.alarms = self._build_alarms(env)

    def _build_alarms(self, env: EnvironmentConfig) -> tuple[sns.Topic, list[cloudwatch.Alarm]]:
        """Events late (the updater's iterator age), records given up on (the failure queue), records that can never
        apply (poison): each an alarm to the alarms topic."""
        topic = sns.Topic(
            self,
            "Alarms",
            topic_name=env.physical_name("alarms"),
            enforce_ssl=True,
            master_key=kms.Alias.from_alias_name(self, "AlarmsKey", "alias/aws/sns"),
        )
        five = Duration.minutes(5)
        late = self.update_features.metric("IteratorAge", statistic="Maximum", period=Duration.minutes(1))
        alarms = [
            self._alarm(
                env, "IteratorAge", "the feature updater is behind the stream: features and serving views are late",
                late, config.ITERATOR_AGE_ALARM_S * 1000, periods=5,
            ),
            self._alarm(
                env, "Failures", "records the feature updater gave up on: they wait in the failure queue",
                self.failures.metric_approximate_number_of_messages_visible(period=five, statistic="Maximum"), 0,
            ),
            self._alarm(
                env, "Poison", "records that can never apply (not JSON, not valid, not pseudonymised) reached the stream",
                shopwise_metric("RecordsPoison", "Sum", five), 0,
            ),
        ]  # fmt: skip
        for alarm in alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
        return topic, alarms

    def _alarm(
        self, env: EnvironmentConfig, name: str, means: str, metric: cloudwatch.Metric, above: float, periods: int = 1
    ) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            f"{name}Alarm",
            alarm_name=env.physical_name(f"ingestion-{name.lower()}"),
            alarm_description=means,
            metric=metric,
            threshold=above,
            evaluation_periods=periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
