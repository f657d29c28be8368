"""Privacy: erasure requests on the API, and the purge that finishes them (``shopwise.privacy``).

- The privacy function answers DELETE /v1/users/{user_id}, GET /v1/erasures and GET /v1/erasures/{erasure_id}
  (admin routes, IAM-authorised): it deletes the shopper's rows from the feature store and the recommendations
  table, writes blinded tombstones and the pending erasure, and reads receipts. It may delete, and read keys, of
  those two tables only, and write the config table's erasure rows.
- The purge state machine (EventBridge, ``purge_schedule``): plan (purge function) -> the purge job (SageMaker,
  ``purge.py``, ``purge_instance_count`` instances) rewriting every object version in the archive and the artifacts
  bucket that names an erased shopper -> finish (purge function: scrub the failure queue, complete the receipts).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from shopwise import config
from shopwise.config import ERASURES_PREFIX, EnvironmentConfig
from shopwise.keys import ERASURE_PREFIX
from shopwise.privacy.purge import PURGES_PREFIX
from shopwise_cdk.functions import Layers, python_function
from shopwise_cdk.nag import acknowledge, invokes_any_version, s3_grant_actions
from shopwise_cdk.sagemaker import sagemaker_job_role, script_job
from shopwise_cdk.serving import ServingApi
from shopwise_cdk.storage import Storage
from shopwise_cdk.training import TrainingPipeline
from shopwise_cdk.workflows import lambda_step, state_machine


class Privacy(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        storage: Storage,
        layers: Layers,
        api: ServingApi,
        training: TrainingPipeline,
        failure_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self._build_erase(env, storage, layers, api)
        self._build_purge(env, storage, layers, training, failure_queue)
        self.state_machine = self._build_state_machine(env, storage, training)
        events.Rule(
            self,
            "Schedule",
            description="purge the erased shoppers from S3 and the failure queue",
            schedule=events.Schedule.expression(env.purge_schedule),
            targets=[targets.SfnStateMachine(self.state_machine)],
        )

    def _build_erase(self, env: EnvironmentConfig, storage: Storage, layers: Layers, api: ServingApi) -> None:
        self.erase = python_function(
            self,
            "Erase",
            name="privacy",
            env=env,
            layers=layers,
            environment=storage.function_environment(),
            timeout=Duration.seconds(30),
            description="DELETE /v1/users/{user_id}, GET /v1/erasures[/{erasure_id}]: erasures and their receipts",
            log_days=env.shopper_log_days,
        )
        # find the rows, delete them (and write tombstones): the feature store and both slots' lists
        storage.tables[config.FEATURES.name].grant(self.erase, "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem")
        storage.grant_lists(self.erase, "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem")
        # the person's rows in the event ledger: found by source (a Query), deleted in batches
        storage.tables[config.LEDGER.name].grant(self.erase, "dynamodb:Query", "dynamodb:BatchWriteItem")
        config_table = storage.tables[config.CONFIG.name]
        config_table.grant(self.erase, "dynamodb:GetItem", "dynamodb:Scan")
        self.erase.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem"],
                resources=[config_table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{ERASURE_PREFIX}*"]}},
            )
        )
        storage.grant_held_erasures(self.erase)  # the shopper's list keys, held for a load whose import is in flight
        storage.artifacts.grant_put(self.erase, f"{ERASURES_PREFIX}*")
        storage.pseudonym_key.grant_read(self.erase)  # a store's ids are found by their pseudonyms
        for path, method, name in (
            ("/v1/users/{user_id}", apigwv2.HttpMethod.DELETE, "Erase"),
            ("/v1/erasures", apigwv2.HttpMethod.GET, "Erasures"),
            ("/v1/erasures/{erasure_id}", apigwv2.HttpMethod.GET, "Erasure"),
        ):
            api.add_route(path, method, self.erase, name)
        assert self.erase.role is not None
        acknowledge(
            self.erase.role,
            {
                **s3_grant_actions("the privacy/erasures/ prefix of the artifacts bucket"),
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/privacy/erasures/*]": "One pending "
                "erasure object per erasure, named by its id at run time.",
            },
        )

    def _build_purge(
        self,
        env: EnvironmentConfig,
        storage: Storage,
        layers: Layers,
        training: TrainingPipeline,
        failure_queue: sqs.IQueue,
    ) -> None:
        """The plan/finish function and the purge job's role: every object version of both buckets, read, replaced
        and deleted; nothing else."""
        self.purge = python_function(
            self,
            "Purge",
            name="purge",
            env=env,
            layers=layers,
            environment={**storage.function_environment(), "FAILED_EVENTS_QUEUE_URL": failure_queue.queue_url},
            timeout=Duration.minutes(15),
            description="the purge's plan and finish steps (shopwise.privacy.purge)",
        )
        storage.artifacts.grant_read_write(self.purge, f"{ERASURES_PREFIX}*")
        storage.artifacts.grant_delete(self.purge, f"{ERASURES_PREFIX}*")
        config_table = storage.tables[config.CONFIG.name]
        config_table.grant(self.purge, "dynamodb:GetItem")
        storage.grant_held_erasures(self.purge)  # the purged erasures' held list keys are dropped
        self.purge.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem"],
                resources=[config_table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{ERASURE_PREFIX}*"]}},
            )
        )
        failure_queue.grant(
            self.purge,
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        )
        self.role = sagemaker_job_role(self, "JobRole", "shopwise purge jobs", training.image_account)
        for bucket in (storage.archive, storage.artifacts):
            bucket.grant_read(self.role)
            bucket.grant_put(self.role)
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucketVersions", "s3:GetObjectVersion", "s3:DeleteObjectVersion"],
                    resources=[bucket.bucket_arn, bucket.arn_for_objects("*")],
                )
            )
        training.source.grant_read(self.role)
        assert self.purge.role is not None
        acknowledge(
            self.purge.role,
            {
                **s3_grant_actions("the privacy/erasures/ prefix of the artifacts bucket"),
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/privacy/erasures/*]": "The pending "
                "erasures, the purge runs' plans and the job's tallies, named at run time.",
            },
        )
        acknowledge(
            self.role,
            {
                **s3_grant_actions("the archive and the artifacts bucket, which the purge rewrites"),
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/*]": "The purge reads every archived object "
                "and rewrites those that name an erased shopper.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/*]": "The purge reads every artifact "
                "version (models, exports, transform outputs) and replaces or deletes those that name an erased "
                "shopper.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]": (
                    "Read access to the job source directory asset, granted by the asset."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*]": (
                    "SageMaker names the job log groups and streams (/aws/sagemaker/TrainingJobs)."
                ),
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/privacy/erasures/purges*]": "SageMaker "
                "writes the purge job's (empty) outputs under the run's folder (grant added by the native task).",
                "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no "
                "resource-level permissions; PutMetricData is limited to the /aws/sagemaker/* namespaces.",
            },
        )

    def _build_state_machine(
        self, env: EnvironmentConfig, storage: Storage, training: TrainingPipeline
    ) -> sfn.StateMachine:
        plan = lambda_step(self, "Plan", self.purge, {"action": "plan"}, "$.plan")
        job = script_job(
            self,
            "Purge job",
            job_name=sfn.JsonPath.format("shopwise-purge-{}", sfn.JsonPath.string_at("$.plan.run")),
            image=training.image,
            role=self.role,
            source=training.source,
            program="purge.py",
            hyperparameters={
                "plan_bucket": storage.artifacts.bucket_name,
                "plan_key": sfn.JsonPath.string_at("$.plan.plan_key"),
                "buckets": f"{storage.archive.bucket_name},{storage.artifacts.bucket_name}",
            },
            metrics={"lines_removed": r"purge lines_removed=([0-9]+)", "objects_read": r"purge objects_read=([0-9]+)"},
            channels=[],
            output=tasks.S3Location.from_bucket(storage.artifacts, PURGES_PREFIX.rstrip("/")),
            instance_type=env.training_instance_type,
            instance_count=env.purge_instance_count,
            volume_gib=50,
            max_runtime=Duration.hours(config.PURGE_RUN_HOURS),
            result_path=sfn.JsonPath.DISCARD,
        )
        job.add_retry(errors=["States.TaskFailed"], max_attempts=1, interval=Duration.minutes(5))
        finish = lambda_step(
            self,
            "Finish",
            self.purge,
            {"action": "finish", "plan_key": sfn.JsonPath.string_at("$.plan.plan_key")},
            "$.done",
        )
        definition = plan.next(
            sfn.Choice(self, "Any erasure due?")
            .when(sfn.Condition.number_greater_than("$.plan.erasures", 0), job.next(finish))
            .otherwise(sfn.Succeed(self, "Nothing to purge"))
        )
        machine = state_machine(
            self,
            "StateMachine",
            comment="plan -> purge job (rewrite S3) -> finish (failure queue, receipts)",
            definition=definition,
            timeout=Duration.hours(config.PURGE_RUN_HOURS * 2 + 1),
            logs_id="StateMachineLogs",
        )
        acknowledge(
            machine,
            {
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:training-job/*]": (
                    "Each run names its purge job after its plan; the names are not known at deploy time."
                ),
                **invokes_any_version(self.purge),
                "AwsSolutions-IAM5[Resource::*]": "X-Ray tracing and CloudWatch Logs delivery for the state machine "
                "have no resource-level permissions; EventBridge managed rules for .sync tasks are account-wide.",
            },
        )
        return machine
