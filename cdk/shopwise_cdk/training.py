"""The retraining pipeline: Step Functions runs export catalog -> champion -> SageMaker training -> gate -> model ->
batch transform (native tasks, waited on with .sync) -> load -> promote; EventBridge starts it on the environment's
schedule (and the drift alarms, ``shopwise_cdk.drift``, start it too)."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig, instance_vcpus
from shopwise.dal.model_packages import MODEL_PACKAGE_GROUP_DESCRIPTION
from shopwise.dal.recommendations import TableNotGone, slot_tables
from shopwise.lifecycle.figures import TrainingMetrics, metric_pattern
from shopwise.settings import model_package_group
from shopwise_cdk.constants import SAGEMAKER_SOURCE_TARBALL
from shopwise_cdk.dataset import DatasetBuild
from shopwise_cdk.functions import Layers, python_function
from shopwise_cdk.nag import acknowledge, invokes_any_version, s3_grant_actions
from shopwise_cdk.sagemaker import (
    JSON_LINES,
    channel,
    framework_image,
    framework_image_uri,
    sagemaker_job_role,
    script_job,
)
from shopwise_cdk.storage import Storage
from shopwise_cdk.workflows import lambda_step, state_machine

IMPORT_POLL_S = 30  # the retrain asks how the lists' import is doing this often


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
        self.image_account, self.image = framework_image(self)
        self.source = s3_assets.Asset(self, "SourceDir", path=str(SAGEMAKER_SOURCE_TARBALL))
        # the registry's mirror in SageMaker Model Registry (shopwise.dal.model_packages)
        self.package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=model_package_group(env),
            model_package_group_description=MODEL_PACKAGE_GROUP_DESCRIPTION,
        )
        self._build_job_role(storage)
        self._build_functions(env, storage, layers)
        self.dataset = DatasetBuild(self, "Dataset", env=env, storage=storage)
        self.state_machine = self._build_state_machine(env, storage, code_version)
        self._acknowledge(storage)
        if env.retrain_schedule != "manual":
            self._build_schedule(env)

    def _build_job_role(self, storage: Storage) -> None:
        """The role the training and transform jobs assume: read the archive's events, read and write artifacts."""
        self.role = sagemaker_job_role(
            self, "SageMakerExecution", "shopwise training and batch-transform jobs", self.image_account
        )
        # the pending erasures: training and the transform leave their shoppers out (the role reads the bucket)
        self.erasures_uri = storage.artifacts.s3_url_for_object(config.ERASURES_PREFIX)
        storage.archive.grant_read(self.role, f"{config.ARCHIVE_EVENTS_PREFIX}*")
        storage.artifacts.grant_read_write(self.role)
        self.source.grant_read(self.role)

    def _build_functions(self, env: EnvironmentConfig, storage: Storage, layers: Layers) -> None:
        """The pipeline's Lambda steps, each with exactly the access it uses: export the catalog, load a version's
        rows, the registry's steps (champion, gate, promote)."""
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
            description="batch-transform output -> the standby slot's table, by a DynamoDB import from S3",
        )
        storage.artifacts.grant_read(self.load, f"{config.RECOMMENDATIONS_PREFIX}*")
        storage.artifacts.grant_read(self.load, f"{config.ERASURES_PREFIX}*")  # the lists of erased shoppers stay out
        # the staged DynamoDB JSON: written, read by the import (with this role's credentials), deleted after it
        storage.artifacts.grant_read_write(self.load, f"{config.LIST_IMPORTS_PREFIX}*")
        storage.artifacts.grant_delete(self.load, f"{config.LIST_IMPORTS_PREFIX}*")
        # the two slot tables: dropped and imported anew by a load, the erased shoppers' rows deleted after
        storage.grant_lists(
            self.load,
            "dynamodb:DescribeTable",
            "dynamodb:DeleteTable",
            "dynamodb:ImportTable",
            "dynamodb:DescribeImport",
            "dynamodb:BatchWriteItem",
            imports=True,
        )
        # what an import logs about the rows it could not import (DynamoDB's own log group)
        self.load.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogGroups",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                    "logs:PutRetentionPolicy",
                ],
                resources=[
                    Stack.of(self).format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws-dynamodb/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        # the active-model pointer: which slot serves, and what each slot holds; and the erased shoppers' list keys
        # held for the import in flight
        config_table = storage.tables[config.CONFIG.name]
        config_table.grant(self.load, "dynamodb:GetItem", "dynamodb:PutItem")
        storage.grant_held_erasures(self.load)

        self.registry = python_function(
            self,
            "Registry",
            name="registry",
            env=env,
            layers=layers,
            environment={
                **storage.table_environment(),
                "ARTIFACTS_BUCKET": storage.artifacts.bucket_name,
                # the registry's mirror: a model package per version, naming the image and source to transform with
                "MODEL_PACKAGE_GROUP": self.package_group.model_package_group_name,
                "INFERENCE_IMAGE": framework_image_uri(self.image_account),
                "INFERENCE_SOURCE": self.source.s3_object_url,
            },
            timeout=Duration.minutes(1),
            description="the model registry's pipeline steps: champion, gate, plan the transform, promote",
        )
        self.registry.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage"],
                resources=[
                    self.package_group.attr_model_package_group_arn,
                    Stack.of(self).format_arn(
                        service="sagemaker",
                        resource="model-package",
                        resource_name=f"{self.package_group.model_package_group_name}/*",
                    ),
                ],
            )
        )
        # the registry rows and the pointer in the config table; the training job's output.tar.gz (metrics.json)
        storage.tables[config.CONFIG.name].grant(
            self.registry, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"
        )
        self.registry.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[storage.artifacts.arn_for_objects(f"{config.MODELS_PREFIX}*/output/output.tar.gz")],
            )
        )
        # the batch transform's request objects of each version (shopwise.lifecycle.transform)
        self.registry.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[storage.artifacts.arn_for_objects(f"{config.TRANSFORM_PREFIX}*")]
            )
        )

    def _build_state_machine(self, env: EnvironmentConfig, storage: Storage, code_version: str) -> sfn.StateMachine:
        """Name the run (and its trigger) -> export the catalog -> find the champion -> train (against it, when one
        serves) -> gate -> register the model -> batch transform -> load into the standby slot -> promote."""
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
        export = lambda_step(self, "Export catalog", self.export_catalog, None, "$.catalog")
        champion = lambda_step(self, "Find the champion", self.registry, {"action": "champion"}, "$.champion")
        spark = env.dataset_engine == "spark"
        if spark:  # the data set built on Spark first (the Glue job), into datasets/<run>/: the training job's events
            locate = sfn.Pass(
                self,
                "Name the data set",
                parameters={
                    "uri": sfn.JsonPath.format(
                        f"s3://{storage.artifacts.bucket_name}/{config.DATASETS_PREFIX}{{}}/",
                        sfn.JsonPath.string_at("$.job_name"),
                    )
                },
                result_path="$.dataset",
            )
            build = tasks.GlueStartJobRun(
                self,
                "Build the data set",
                glue_job_name=self.dataset.job.ref,
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                arguments=sfn.TaskInput.from_object({"--out": sfn.JsonPath.string_at("$.dataset.uri")}),
                result_path="$.dataset_run",
            )
        # the active model, scored beside the candidate on what neither trained on (the gate's comparison)
        train_against = self._training_job(
            "Train against the champion",
            env,
            storage,
            [channel("champion", tasks.S3Location.from_json_expression("$.champion.model_uri"))],
        )
        train_first = self._training_job("Train the first model", env, storage, [])
        gate = lambda_step(
            self,
            "Gate",
            self.registry,
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
        promote = lambda_step(
            self,
            "Promote",
            self.registry,
            {"action": "promote", "version": sfn.JsonPath.string_at("$.job_name"), "output_uri": output_uri},
            "$.promote",
        )
        named.next(export)
        named_manual.next(export)
        serving = (
            sfn.Choice(self, "A model serving?")
            .when(sfn.Condition.boolean_equals("$.champion.present", True), train_against)
            .otherwise(train_first)
        )
        if spark:
            export.next(champion).next(locate).next(build).next(serving)
        else:
            export.next(champion).next(serving)
        train_against.next(gate)
        train_first.next(gate)
        gate.next(
            sfn.Choice(self, "Passed?")
            .when(
                sfn.Condition.boolean_equals("$.gate.passed", True),
                self._transform_and_load(env, output_uri).next(promote),
            )
            .otherwise(rejected)
        )
        return state_machine(
            self,
            "Retrain",
            comment="export -> champion -> [the data set on Spark] -> train -> gate -> model -> batch transform -> load "
            "(standby slot) -> promote",
            definition=prepare,
            timeout=Duration.hours(8),
            logs_id="RetrainLogs",
        )

    def _training_job(
        self, construct_id: str, env: EnvironmentConfig, storage: Storage, more: list[tasks.Channel]
    ) -> tasks.SageMakerCreateTrainingJob:
        """The training job on the archive's events — or, with the Spark engine, the data set the Glue job built
        (``$.dataset.uri``: ``shopwise_jobs.spark_dataset``'s folder, which the job reads in place of events) — and
        the catalog snapshot (and ``more`` channels)."""
        events = (
            tasks.S3Location.from_json_expression("$.dataset.uri")
            if env.dataset_engine == "spark"
            else tasks.S3Location.from_bucket(storage.archive, config.ARCHIVE_EVENTS_PREFIX)
        )
        channels = [
            channel("events", events),
            channel(
                "catalog",
                tasks.S3Location.from_bucket(storage.artifacts, config.CATALOG_KEY.rsplit("/", 1)[0] + "/"),
            ),
        ]
        return script_job(
            self,
            construct_id,
            job_name=sfn.JsonPath.string_at("$.job_name"),
            image=self.image,
            role=self.role,
            source=self.source,
            program="train.py",
            hyperparameters={"top_k": "50", "erasures": self.erasures_uri},
            metrics={name: metric_pattern(name) for name in TrainingMetrics.LOGGED},
            channels=[*channels, *more],
            output=tasks.S3Location.from_bucket(storage.artifacts, config.MODELS_PREFIX.rstrip("/")),
            instance_type=env.training_instance_type,
            volume_gib=50,
            max_runtime=Duration.hours(4),
            result_path="$.training",
        )

    def _transform_and_load(self, env: EnvironmentConfig, output_uri: str) -> sfn.Chain:
        """Register the model, plan the batch transform's requests, the transform (over the version's request
        objects, on as many instances as the plan sized for its users), the load into the standby slot."""
        create_model = tasks.SageMakerCreateModel(
            self,
            "Register model",
            model_name=sfn.JsonPath.string_at("$.job_name"),
            role=self.role,
            primary_container=tasks.ContainerDefinition(
                image=self.image,
                mode=tasks.Mode.SINGLE_MODEL,
                model_s3_location=tasks.S3Location.from_json_expression("$.training.ModelArtifacts.S3ModelArtifacts"),
                environment_variables=sfn.TaskInput.from_object(
                    {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": self.source.s3_object_url}
                ),
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        # the request objects for this version's users and items, one per instance (shopwise.lifecycle.transform)
        workers = instance_vcpus(env.transform_instance_type)
        plan = lambda_step(
            self,
            "Plan batch transform",
            self.registry,
            {
                "action": "plan_transform",
                "version": sfn.JsonPath.string_at("$.job_name"),
                "users": sfn.JsonPath.number_at("$.gate.users"),
                "items": sfn.JsonPath.number_at("$.gate.items"),
                **env.transform_sizing(),
                "workers": workers,
            },
            "$.plan",
        )
        transform = tasks.SageMakerCreateTransformJob(
            self,
            "Batch transform",
            transform_job_name=sfn.JsonPath.string_at("$.job_name"),
            model_name=sfn.JsonPath.string_at("$.job_name"),
            batch_strategy=tasks.BatchStrategy.SINGLE_RECORD,
            max_concurrent_transforms=workers,  # requests in flight per instance: one per model-server worker
            transform_input=tasks.TransformInput(
                transform_data_source=tasks.TransformDataSource(
                    s3_data_source=tasks.TransformS3DataSource(
                        s3_uri=sfn.JsonPath.string_at("$.plan.input_uri"), s3_data_type=tasks.S3DataType.S3_PREFIX
                    )
                ),
                content_type=JSON_LINES,
                split_type=tasks.SplitType.LINE,
            ),
            transform_output=tasks.TransformOutput(
                s3_output_path=output_uri, assemble_with=tasks.AssembleWith.LINE, accept=JSON_LINES
            ),
            transform_resources=tasks.TransformResources(
                instance_count=sfn.JsonPath.number_at("$.plan.instances"),  # sized by the plan for the users
                instance_type=ec2.InstanceType(env.transform_instance_type.removeprefix("ml.")),
            ),
            environment={
                "SHOPWISE_TOP_K": "50",
                "SHOPWISE_ERASURES": self.erasures_uri,
                "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
            },
            role=self.role,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=sfn.JsonPath.DISCARD,
        )
        # the load (shopwise.lifecycle.loading): begin, a Distributed Map of one load function per output object
        # (each stages at most workers x USERS_PER_REQUEST rows as DynamoDB JSON in S3), the import of what they
        # staged into the standby slot's new table, a wait loop around it, finish
        version = sfn.JsonPath.string_at("$.job_name")
        staged = {
            "bucket": sfn.JsonPath.string_at("$.load_begun.bucket"),
            "staging": sfn.JsonPath.string_at("$.load_begun.staging"),
            "model_version": version,
            "slot": sfn.JsonPath.string_at("$.load_begun.slot"),
        }
        begin = lambda_step(
            self,
            "Begin load",
            self.load,
            {"action": "begin", "output_uri": output_uri, "model_version": version},
            "$.load_begun",
        )
        each = sfn.DistributedMap(
            self,
            "Stage each output object",
            items_path="$.load_begun.keys",
            item_selector={"action": "object", "key": sfn.JsonPath.string_at("$$.Map.Item.Value"), **staged},
            max_concurrency=env.load_concurrency,
            result_path="$.load_tallies",
        )
        each.item_processor(lambda_step(self, "Stage one object", self.load, None, "$"))
        start_import = lambda_step(
            self,
            "Start import",
            self.load,
            {"action": "start", "tallies": sfn.JsonPath.list_at("$.load_tallies"), **staged},
            "$.load_import",
        )
        # the slot's table from its load before is still being deleted (begin dropped it): minutes at most
        start_import.add_retry(
            errors=[TableNotGone.__name__], interval=Duration.seconds(30), backoff_rate=1.5, max_attempts=6
        )
        wait = sfn.Wait(self, "Wait for import", time=sfn.WaitTime.duration(Duration.seconds(IMPORT_POLL_S)))
        check = lambda_step(
            self,
            "Check import",
            self.load,
            {"action": "check", "import_arn": sfn.JsonPath.string_at("$.load_import.import_arn")},
            "$.load_import_state",
        )
        finish = lambda_step(
            self,
            "Finish load",
            self.load,
            {
                "action": "finish",
                "tallies": sfn.JsonPath.list_at("$.load_tallies"),
                "import_arn": sfn.JsonPath.string_at("$.load_import.import_arn"),
                "began_at": sfn.JsonPath.number_at("$.load_begun.began_at"),
                **staged,
            },
            "$.load",
        )
        # anything but IN_PROGRESS ends the wait: finish checks the import and fails the run with its reason
        imported = (
            sfn.Choice(self, "Import done?")
            .when(sfn.Condition.string_equals("$.load_import_state.status", "IN_PROGRESS"), wait)
            .otherwise(finish)
        )
        wait.next(check).next(imported)
        create_model.next(plan).next(transform).next(begin).next(each).next(start_import).next(wait)
        return sfn.Chain.custom(create_model, [finish], finish)  # what follows the load follows its finish

    def _build_schedule(self, env: EnvironmentConfig) -> None:
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

    def _acknowledge(self, storage: Storage) -> None:
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
                    "Read access to the CDK asset object (the job source directory) granted by the assets themselves."
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
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/privacy/erasures/*]": "The load reads the "
                "pending erasures (one object per erasure, named at run time) to leave their shoppers' lists out.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/lists/*]": "The load stages each version's "
                "lists under lists/<version>/<slot>/ (named at run time), the import reads them, the load deletes them.",
                **{
                    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:dynamodb:<AWS::Region>:<AWS::AccountId>:table/"
                    f"{table}/import/*]": "DynamoDB names each import of a slot table at run time (DescribeImport "
                    "of the load's own import)."
                    for table in slot_tables(storage.lists_stem)
                },
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                "/aws-dynamodb/*]": "An import logs the rows it could not import to DynamoDB's own log group, which "
                "DynamoDB names.",
            },
        )
        assert self.registry.role is not None
        acknowledge(
            self.registry.role,
            {
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/models/*/output/output.tar.gz]": (
                    "The gate reads each run's metrics from its output.tar.gz; SageMaker names the run's folder."
                ),
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/transform/*]": (
                    "The transform plan writes each version's request objects under transform/<version>/."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"model-package/{self.package_group.model_package_group_name}/*]": (
                    "The registry mirrors each version as a package of the environment's own group; SageMaker "
                    "numbers the packages when they are created."
                ),
            },
        )
        acknowledge(
            self.state_machine,
            {
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:training-job/*]": (
                    "Each run names its training job after the execution; the names are not known at deploy time."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model/*]": (
                    "Each run registers a model named after the execution."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:transform-job/*]": (
                    "Each run names its transform job after the execution."
                ),
                **{
                    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
                    f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"TrainingRetrain36ECAF15"}}]}}]}}{tail}]': (
                        "The load's Distributed Map starts, describes and stops its own child executions, named by "
                        "Step Functions at run time under this state machine."
                    )
                    for tail in (":*", "/*:*")
                },
                **invokes_any_version(self.registry, self.load, self.export_catalog),
                "AwsSolutions-IAM5[Resource::*]": "X-Ray tracing and CloudWatch Logs delivery for the state machine "
                "have no resource-level permissions; EventBridge managed rules for .sync tasks are account-wide.",
            },
        )
