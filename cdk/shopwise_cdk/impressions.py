"""Impressions into the event archive: the serve function prints one impression event per answer; a subscription
filter on its log group hands those lines to a Firehose delivery stream, which unwraps CloudWatch Logs' envelope and
writes the events into the archive beside the storefront's, converted to Parquet with the archive table — what was shown reaches training and the experiment
readout with no network call on the request path."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as destinations
from constructs import Construct

from shopwise import archive, config
from shopwise_cdk.nag import acknowledge, s3_grant_actions
from shopwise_cdk.storage import CONVERSION_GRANT, Storage


class Impressions(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, storage: Storage, serve: lambda_.Function) -> None:
        super().__init__(scope, construct_id)
        log_group = serve.log_group
        self.delivery = firehose.DeliveryStream(
            self,
            "Delivery",
            destination=storage.archive_destination(
                f"{config.ARCHIVE_ERRORS_PREFIX}impressions/",
                Duration.seconds(300),
                processors=[
                    firehose.DecompressionProcessor(),
                    firehose.CloudWatchLogProcessor(data_message_extraction=True),
                    firehose.AppendDelimiterToRecordProcessor(),
                ],
                renamed=archive.RENAMED["impression"],  # an impression's item ids: impression_items
            ),
            encryption=firehose.StreamEncryption.aws_owned_key(),
        )
        logs.SubscriptionFilter(
            self,
            "Lines",
            log_group=log_group,
            destination=destinations.FirehoseDestination(self.delivery),
            filter_pattern=logs.FilterPattern.string_value("$.event_type", "=", "impression"),
            filter_name="impressions",
        )
        acknowledge(
            self.delivery,
            {
                **s3_grant_actions("the archive bucket (Firehose's S3 destination role, made by the L2 construct)"),
                **CONVERSION_GRANT,
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/*]": "Firehose writes impression objects "
                "under the archive's dt=/hour= prefixes it evaluates at run time.",
            },
        )
