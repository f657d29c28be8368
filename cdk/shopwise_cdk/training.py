"""The retraining pipeline: Step Functions runs SageMaker training -> model -> batch transform (native tasks,
waited on with .sync) -> the load Lambda; EventBridge starts it on the environment's schedule."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Aws, CfnMapping, Duration, Fn, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise.lifecycle.figures import TrainingMetrics, metric_pattern
from shopwise_cdk.constants import (
    SAGEMAKER_SOURCE_TARBALL,
    SKLEARN_IMAGE_ACCOUNTS,
    SKLEARN_IMAGE_TAG,
    SKLEARN_REPOSITORY,
    TRANSFORM_REQUESTS,
)
from shopwise_cdk.functions import Layers, python_function
from shopwise_cdk.nag import acknowledge, s3_grant_actions
from shopwise_cdk.storage import Storage

JSON_LINES = "application/jsonlines"


def sklearn_image_account(scope: Construct) -> str:
    """The registry account of the SageMaker scikit-learn image in the stack's region (a region mapping, so the
    stack stays environment-agnostic; a region not in the mapping fails at deploy time, by name)."""
    mapping = CfnMapping(
        scope,
        "SklearnImageAccount",
        mapping={region: {"account": account} for region, account in SKLEARN_IMAGE_ACCOUNTS.items()},
    )
    return mapping.find_in_map(Aws.REGION, "account")


def sagemaker_job_role(scope: Construct, construct_id: str, description: str, image_account: str) -> iam.Role:
    """A role SageMaker jobs assume: pull the scikit-learn image, write their logs and metrics; nothing else yet."""
    role = iam.Role(
        scope, construct_id, assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"), description=description
    )
    stack = Stack.of(scope)
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["ecr:GetAuthorizationToken"],
            resources=["*"],  # GetAuthorizationToken has no resource-level permissions
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            resources=[
                stack.format_arn(
                    service="ecr", account=image_account, resource="repository", resource_name=SKLEARN_REPOSITORY
                )
            ],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name="/aws/sagemaker/*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],  # PutMetricData has no resource-level permissions; limited by namespace below
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}},
        )
    )
    return role


def channel(name: str, location: tasks.S3Location) -> tasks.Channel:
    """A File-mode input channel of a SageMaker job: every object under the location."""
    return tasks.Channel(
        channel_name=name,
        data_source=tasks.DataSource(
            s3_data_source=tasks.S3DataSource(s3_location=location, s3_data_type=tasks.S3DataType.S3_PREFIX)
        ),
    )


def script_job(
    scope: Construct,
    construct_id: str,
    *,
    job_name: str,
    image: tasks.DockerImage,
    role: iam.IRole,
    source: s3_assets.Asset,
    program: str,
    hyperparameters: dict[str, str],
    metrics: dict[str, str],
    channels: list[tasks.Channel],
    output: tasks.S3Location,
    instance_type: str,
    volume_gib: int,
    max_runtime: Duration,
    result_path: str,
) -> tasks.SageMakerCreateTrainingJob:
    """A script-mode SageMaker job in the scikit-learn image running ``program`` from the source asset, waited on
    (.sync): the training job and the drift job."""
    return tasks.SageMakerCreateTrainingJob(
        scope,
        construct_id,
        training_job_name=job_name,
        role=role,
        algorithm_specification=tasks.AlgorithmSpecification(
            training_image=image,
            training_input_mode=tasks.InputMode.FILE,
            metric_definitions=[tasks.MetricDefinition(name=n, regex=r) for n, r in metrics.items()],
        ),
        hyperparameters={
            "sagemaker_program": program,
            "sagemaker_submit_directory": source.s3_object_url,
            **hyperparameters,
        },
        input_data_config=channels,
        output_data_config=tasks.OutputDataConfig(s3_output_location=output),
        resource_config=tasks.ResourceConfig(
            instance_count=1,
            instance_type=ec2.InstanceType(instance_type.removeprefix("ml.")),
            volume_size=Size.gibibytes(volume_gib),
        ),
        stopping_condition=tasks.StoppingCondition(max_runtime=max_runtime),
        integration_pattern=sfn.IntegrationPattern.RUN_JOB,
        result_path=result_path,
    )


class TrainingPipeline(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        storage: Storage,
        layers: Layers,
        code_version: str,
    ) -> None:
        super().__init__(scope, construct_id)
        image_account = sklearn_image_account(self)
        image = tasks.DockerImage.from_registry(
            Fn.join(
                "", [image_account, ".dkr.ecr.", Aws.REGION, f".amazonaws.com/{SKLEARN_REPOSITORY}:{SKLEARN_IMAGE_TAG}"]
            )
        )

        source = s3_assets.Asset(self, "SourceDir", path=str(SAGEMAKER_SOURCE_TARBALL))
        self.image, self.source = image, source
        requests = s3_assets.Asset(self, "TransformRequests", path=str(TRANSFORM_REQUESTS))

        self.image_account = image_account
        self.role = sagemaker_job_role(
            self, "SageMakerExecution", "shopwise training and batch-transform jobs", image_account
        )
        storage.archive.grant_read(self.role, f"{config.ARCHIVE_EVENTS_PREFIX}*")
        storage.artifacts.grant_read_write(self.role)
        source.grant_read(self.role)
        requests.grant_read(self.role)

        self.export_catalog = python_function(
            self,
            "ExportCatalog",
            name="export_catalog",
            env=env,
            layers=layers,
            environment={**storage.table_environment(), "ARTIFACTS_BUCKET": storage.artifacts.bucket_name},
            timeout=Duration.minutes(15),
            description="items table -> the catalog snapshot the training job reads",
        )
        # a Scan of the items table and one object write: nothing else
        self.export_catalog.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:Scan"], resources=[storage.tables[config.ITEMS.name].table_arn])
        )
        self.export_catalog.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[storage.artifacts.arn_for_objects(config.CATALOG_KEY)]
            )
        )

        self.load = python_function(
            self,
            "Load",
            name="load",
            env=env,
            layers=layers,
            environment={
                **storage.table_environment(),
                "ARTIFACTS_BUCKET": storage.artifacts.bucket_name,
                "RECOMMENDATIONS_TTL_DAYS": str(env.recommendations_ttl_days),
            },
            timeout=Duration.minutes(15),
            description="batch-transform output -> the recommendations table's standby slot",
        )
        storage.artifacts.grant_read(self.load, f"{config.RECOMMENDATIONS_PREFIX}*")
        storage.tables[config.RECOMMENDATIONS.name].grant_write_data(self.load)
        # the active-model pointer only: which slot serves, and what each slot holds
        storage.tables[config.CONFIG.name].grant(self.load, "dynamodb:GetItem", "dynamodb:PutItem")

        self.models = python_function(
            self,
            "Models",
            name="registry",
            env=env,
            layers=layers,
            environment=storage.table_environment(),
            timeout=Duration.minutes(1),
            description="the model registry's pipeline steps: champion, gate, promote",
        )
        # the registry rows and the pointer in the config table; the training job's output.tar.gz (metrics.json)
        storage.tables[config.CONFIG.name].grant(self.models, "dynamodb:GetItem", "dynamodb:PutItem")
        self.models.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[storage.artifacts.arn_for_objects(f"{config.MODELS_PREFIX}*/output/output.tar.gz")],
            )
        )

        job_name = sfn.JsonPath.format("shopwise-{}", sfn.JsonPath.string_at("$$.Execution.Name"))
        output_uri = sfn.JsonPath.format(
            f"s3://{storage.artifacts.bucket_name}/{config.RECOMMENDATIONS_PREFIX}{{}}/",
            sfn.JsonPath.string_at("$.job_name"),
        )
        # the run's trigger: what started it (the schedule and the drift alarms say; a manual start may)
        named = sfn.Pass(
            self, "Name the run", parameters={"job_name": job_name, "trigger": sfn.JsonPath.string_at("$.trigger")}
        )
        named_manual = sfn.Pass(self, "Name a manual run", parameters={"job_name": job_name, "trigger": "manual"})
        prepare = (
            sfn.Choice(self, "Trigger given?")
            .when(sfn.Condition.is_present("$.trigger"), named)
            .otherwise(named_manual)
        )

        channels = [
            channel("events", tasks.S3Location.from_bucket(storage.archive, config.ARCHIVE_EVENTS_PREFIX)),
            channel(
                "catalog",
                tasks.S3Location.from_bucket(storage.artifacts, config.CATALOG_KEY.rsplit("/", 1)[0] + "/"),
            ),
        ]

        def training(construct_id: str, more: list[tasks.Channel]) -> tasks.SageMakerCreateTrainingJob:
            return script_job(
                self,
                construct_id,
                job_name=sfn.JsonPath.string_at("$.job_name"),
                image=image,
                role=self.role,
                source=source,
                program="train.py",
                hyperparameters={"top_k": "50"},
                metrics={name: metric_pattern(name) for name in TrainingMetrics.LOGGED},
                channels=[*channels, *more],
                output=tasks.S3Location.from_bucket(storage.artifacts, config.MODELS_PREFIX.rstrip("/")),
                instance_type=env.training_instance_type,
                volume_gib=50,
                max_runtime=Duration.hours(4),
                result_path="$.training",
            )

        def registry_step(construct_id: str, payload: dict[str, Any], result_path: str) -> tasks.LambdaInvoke:
            return tasks.LambdaInvoke(
                self,
                construct_id,
                lambda_function=self.models,
                payload=sfn.TaskInput.from_object(payload),
                payload_response_only=True,
                retry_on_service_exceptions=True,
                result_path=result_path,
            )

        champion = registry_step("Find the champion", {"action": "champion"}, "$.champion")
        # the active model, scored beside the candidate on what neither trained on (the gate's comparison)
        train_against = training(
            "Train against the champion",
            [channel("champion", tasks.S3Location.from_json_expression("$.champion.model_uri"))],
        )
        train_first = training("Train the first model", [])
        gate = registry_step(
            "Gate",
            {
                "action": "gate",
                "version": sfn.JsonPath.string_at("$.job_name"),
                "model_uri": sfn.JsonPath.string_at("$.training.ModelArtifacts.S3ModelArtifacts"),
                "code_version": code_version,
                "trigger": sfn.JsonPath.string_at("$.trigger"),
            },
            "$.gate",
        )
        rejected = sfn.Fail(self, "Rejected by the gate", error="Rejected", cause_path="$.gate.reason")
        create_model = tasks.SageMakerCreateModel(
            self,
            "Register model",
            model_name=sfn.JsonPath.string_at("$.job_name"),
            role=self.role,
            primary_container=tasks.ContainerDefinition(
                image=image,
                mode=tasks.Mode.SINGLE_MODEL,
                model_s3_location=tasks.S3Location.from_json_expression("$.training.ModelArtifacts.S3ModelArtifacts"),
                environment_variables=sfn.TaskInput.from_object(
                    {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": source.s3_object_url}
                ),
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        transform = tasks.SageMakerCreateTransformJob(
            self,
            "Batch transform",
            transform_job_name=sfn.JsonPath.string_at("$.job_name"),
            model_name=sfn.JsonPath.string_at("$.job_name"),
            batch_strategy=tasks.BatchStrategy.SINGLE_RECORD,
            transform_input=tasks.TransformInput(
                transform_data_source=tasks.TransformDataSource(
                    s3_data_source=tasks.TransformS3DataSource(
                        s3_uri=requests.s3_object_url, s3_data_type=tasks.S3DataType.S3_PREFIX
                    )
                ),
                content_type=JSON_LINES,
                split_type=tasks.SplitType.LINE,
            ),
            transform_output=tasks.TransformOutput(
                s3_output_path=output_uri, assemble_with=tasks.AssembleWith.LINE, accept=JSON_LINES
            ),
            transform_resources=tasks.TransformResources(
                instance_count=1,
                instance_type=ec2.InstanceType(env.transform_instance_type.removeprefix("ml.")),
            ),
            environment={"SHOPWISE_TOP_K": "50"},
            role=self.role,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=sfn.JsonPath.DISCARD,
        )
        load = tasks.LambdaInvoke(
            self,
            "Load recommendations",
            lambda_function=self.load,
            payload=sfn.TaskInput.from_object(
                {"output_uri": output_uri, "model_version": sfn.JsonPath.string_at("$.job_name")}
            ),
            payload_response_only=True,
            retry_on_service_exceptions=True,
            result_path="$.load",
        )
        export = tasks.LambdaInvoke(
            self,
            "Export catalog",
            lambda_function=self.export_catalog,
            payload_response_only=True,
            retry_on_service_exceptions=True,
            result_path="$.catalog",
        )
        promote = registry_step(
            "Promote",
            {"action": "promote", "version": sfn.JsonPath.string_at("$.job_name"), "output_uri": output_uri},
            "$.promote",
        )
        named.next(export)
        named_manual.next(export)
        export.next(champion).next(
            sfn.Choice(self, "A model serving?")
            .when(sfn.Condition.boolean_equals("$.champion.present", True), train_against)
            .otherwise(train_first)
        )
        train_against.next(gate)
        train_first.next(gate)
        gate.next(
            sfn.Choice(self, "Passed?")
            .when(
                sfn.Condition.boolean_equals("$.gate.passed", True),
                create_model.next(transform).next(load).next(promote),
            )
            .otherwise(rejected)
        )
        definition = prepare
        self.state_machine = sfn.StateMachine(
            self,
            "Retrain",
            comment="export -> champion -> train -> gate -> model -> batch transform -> load (standby slot) -> promote",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.hours(8),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(self, "RetrainLogs", retention=logs.RetentionDays.ONE_MONTH),
                level=sfn.LogLevel.ALL,
            ),
        )
        self._acknowledge()
        if env.retrain_schedule != "manual":
            events.Rule(
                self,
                "Schedule",
                description="retrain, batch-transform and load on a schedule",
                schedule=events.Schedule.expression(env.retrain_schedule),
                targets=[
                    targets.SfnStateMachine(
                        self.state_machine, input=events.RuleTargetInput.from_object({"trigger": "schedule"})
                    )
                ],
            )

    def _acknowledge(self) -> None:
        acknowledge(
            self.role,
            {
                **s3_grant_actions("the archive's events/ prefix (read) and the artifacts bucket (read/write)"),
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/events/*]": "Training reads every "
                "archived event object; keys are created by Firehose at run time.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/*]": "Jobs write models, outputs and "
                "recommendations under run-specific keys in the artifacts bucket.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/catalog/*]": "The training channel reads "
                "the catalog snapshots (grant added by the native SageMaker task).",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/models*]": "SageMaker writes each run's "
                "model.tar.gz under models/<job>/ (grant added by the native SageMaker task).",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]": (
                    "Read access to the CDK asset objects (job source directory, transform requests) granted by the "
                    "assets themselves."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*]": (
                    "SageMaker names the job log groups and streams (/aws/sagemaker/TrainingJobs, ...)."
                ),
                "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no "
                "resource-level permissions; PutMetricData is limited to the /aws/sagemaker/* namespaces.",
            },
        )
        assert self.load.role is not None
        acknowledge(
            self.load.role,
            {
                **s3_grant_actions("the artifacts bucket's recommendations/ prefix (read)"),
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/recommendations/*]": "The load step reads "
                "the run's batch-transform output, whose keys SageMaker creates.",
            },
        )
        assert self.models.role is not None
        acknowledge(
            self.models.role,
            {
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/models/*/output/output.tar.gz]": (
                    "The gate reads each run's metrics from its output.tar.gz; SageMaker names the run's folder."
                ),
            },
        )
        acknowledge(
            self.state_machine,
            {
                "AwsSolutions-IAM5[Resource::<TrainingModels11524ABC.Arn>:*]": "Invoke any version of the models "
                "function (LambdaInvoke's standard grant).",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:training-job/*]": (
                    "Each run names its training job after the execution; the names are not known at deploy time."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model/*]": (
                    "Each run registers a model named after the execution."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:transform-job/*]": (
                    "Each run names its transform job after the execution."
                ),
                "AwsSolutions-IAM5[Resource::<TrainingLoad67E51E18.Arn>:*]": "Invoke any version of the load function "
                "(LambdaInvoke's standard grant).",
                "AwsSolutions-IAM5[Resource::<TrainingExportCatalog57C75C6C.Arn>:*]": "Invoke any version of the "
                "export function (LambdaInvoke's standard grant).",
                "AwsSolutions-IAM5[Resource::*]": "X-Ray tracing and CloudWatch Logs delivery for the state machine "
                "have no resource-level permissions; EventBridge managed rules for .sync tasks are account-wide.",
            },
        )
