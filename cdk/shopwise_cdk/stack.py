"""One stack per environment: the constructs, composed; tags; the cdk-nag acknowledgements, each with a reason."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, CfnOutput, Stack, Tags, Validations
from aws_cdk import aws_apigatewayv2 as apigwv2
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise_cdk.campaigns import Campaigns
from shopwise_cdk.dashboard import Dashboard
from shopwise_cdk.drift import DriftMonitor
from shopwise_cdk.functions import Layers
from shopwise_cdk.imports import BulkImport
from shopwise_cdk.impressions import Impressions
from shopwise_cdk.ingestion import Ingestion
from shopwise_cdk.nag import acknowledge
from shopwise_cdk.privacy import Privacy
from shopwise_cdk.sagemaker import framework_image_uri
from shopwise_cdk.serving import ServingApi
from shopwise_cdk.storage import Storage
from shopwise_cdk.training import TrainingPipeline


class ShopwiseStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_config: EnvironmentConfig,
        code_version: str = "unknown",
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.env_config = env_config
        Tags.of(self).add("service", config.SERVICE)
        Tags.of(self).add("environment", env_config.name)

        self.storage = Storage(self, "Storage", env=env_config)
        layers = Layers(self, "Layers")
        self.ingestion = Ingestion(self, "Ingestion", env=env_config, storage=self.storage, layers=layers)
        self.training = TrainingPipeline(
            self, "Training", env=env_config, storage=self.storage, layers=layers, code_version=code_version
        )
        self.serving = ServingApi(self, "Serving", env=env_config, storage=self.storage, layers=layers)
        self.serving.add_route("/v1/events", apigwv2.HttpMethod.POST, self.ingestion.collect, "Collect")
        self.serving.add_route("/v1/server/events", apigwv2.HttpMethod.POST, self.ingestion.collect, "ServerCollect")
        self.impressions = Impressions(self, "Impressions", storage=self.storage, serve=self.serving.serve)
        self.campaigns = Campaigns(
            self, "Campaigns", env=env_config, storage=self.storage, layers=layers, api=self.serving
        )
        self.privacy = Privacy(
            self,
            "Privacy",
            env=env_config,
            storage=self.storage,
            layers=layers,
            api=self.serving,
            training=self.training,
            failure_queue=self.ingestion.failures,
        )
        self.imports = BulkImport(
            self, "Import", env=env_config, storage=self.storage, layers=layers, training=self.training
        )
        self.drift = DriftMonitor(
            self, "Drift", env=env_config, storage=self.storage, layers=layers, training=self.training
        )
        self.dashboard = Dashboard(self, "Operations", env=env_config, ingestion=self.ingestion, serving=self.serving)

        CfnOutput(self, "ApiUrl", value=self.serving.url)
        CfnOutput(self, "AdminApiPolicy", value=self.serving.admin_policy.managed_policy_arn)
        CfnOutput(self, "ServerApiPolicy", value=self.serving.server_policy.managed_policy_arn)
        # what `shopwise --stack NAME` resolves the stack by (shopwise.config.STACK_OUTPUTS)
        resolved = {
            **self.storage.function_environment(),
            "EVENTS_STREAM": self.ingestion.stream.stream_name,
            "ARCHIVE_BUCKET": self.storage.archive.bucket_name,
            "ARTIFACTS_BUCKET": self.storage.artifacts.bucket_name,
            "FAILED_EVENTS_QUEUE_URL": self.ingestion.failures.queue_url,
        }
        for output, variable in config.STACK_OUTPUTS.items():
            CfnOutput(self, output, value=resolved[variable])
        CfnOutput(self, "RetrainStateMachine", value=self.training.state_machine.state_machine_arn)
        CfnOutput(self, "DriftStateMachine", value=self.drift.state_machine.state_machine_arn)
        CfnOutput(self, "PurgeStateMachine", value=self.privacy.state_machine.state_machine_arn)
        CfnOutput(self, "ImportStateMachine", value=self.imports.state_machine.state_machine_arn)
        CfnOutput(self, "ArchiveDatabase", value=self.storage.glue_database.ref)
        CfnOutput(self, "ArchiveWorkgroup", value=self.storage.workgroup.ref)
        CfnOutput(self, "DatasetJob", value=self.training.dataset.job.ref)
        CfnOutput(self, "ArchiveConvertJob", value=self.training.dataset.convert_job.ref)
        # what `shopwise train --remote` launches its SageMaker job with, through the SDK
        CfnOutput(self, "SageMakerRole", value=self.training.role.role_arn)
        CfnOutput(self, "SageMakerImage", value=framework_image_uri(self.training.image_account))
        CfnOutput(self, "SageMakerSource", value=self.training.source.s3_object_url)
        self._acknowledge()

    def _acknowledge(self) -> None:
        """Stack-wide findings accepted on purpose; resource-specific ones sit beside their resource."""
        acknowledge(
            self,
            {
                "AwsSolutions-L1": "Functions run Python 3.12 to match the dependency layer built with "
                "--python-version 3.12; moving the runtime is one setting plus a layer rebuild.",
                "AwsSolutions-APIG4": "Browser routes (POST /v1/events, GET /v1/users/..., POST /v1/rank) are "
                "authorised in the function: a shopper token HMAC-signed by the store's key, verified with no network "
                "call, acting only for its own shopper; the public routes (visitor ids, bestsellers, similar items, "
                "health, the API document) return nothing personal. Every route is throttled by kind; server and "
                "admin routes have the IAM authoriser.",
                "AwsSolutions-SQS3": "This queue is itself the on-failure destination of the stream consumer.",
                "AwsSolutions-S1": "The access-log bucket receives the other buckets' server access logs; logging it "
                "into itself would loop.",
            },
        )
        Validations.of(self).acknowledge(
            Acknowledgment(
                id="CloudFormation-Validate::W7001",
                reason="The Firehose L2 construct adds a CIDR-block mapping it only uses for Redshift/OpenSearch "
                "destinations; unused here.",
            )
        )
