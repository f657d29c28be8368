"""Bulk import in the account (``shopwise import events|items FILE --stack NAME``): the CLI uploads the file to
``imports/<id>/`` in the artifacts bucket and starts the import state machine, which sends an upload of up to
``IMPORT_FUNCTION_MAX_ROWS`` lines to the import function (the object read as it streams) and a larger one to the import
job (a SageMaker script-mode job, ``imports.py``, on the object's copy on its disk). Both run
``shopwise.ingestion.import_job``: rows pseudonymised, checked and written in chunks, progress in
``imports/<id>/report.json``, every bad row in ``imports/<id>/errors.jsonl``. Each may read the uploads and the
pseudonymisation key, write its reports, the archive's events and the items table, and the out-of-stock row.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise.keys import UNAVAILABLE_KEY
from shopwise_cdk.functions import Layers, python_function
from shopwise_cdk.nag import acknowledge, invokes_any_version, s3_grant_actions
from shopwise_cdk.sagemaker import channel, sagemaker_job_role, script_job
from shopwise_cdk.storage import Storage
from shopwise_cdk.training import TrainingPipeline
from shopwise_cdk.workflows import lambda_step, state_machine

JOB_HOURS = 4  # the import job's limit: ~20,000 rows/s on one core is ~290 M rows


class BulkImport(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        storage: Storage,
        layers: Layers,
        training: TrainingPipeline,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            name="imports",
            env=env,
            layers=layers,
            environment={
                **storage.function_environment(),
                "ARCHIVE_BUCKET": storage.archive.bucket_name,
                "ARTIFACTS_BUCKET": storage.artifacts.bucket_name,
            },
            timeout=Duration.minutes(15),
            memory_mb=1769,  # a full vCPU: the import is CPU-bound (validation, HMAC pseudonyms, Parquet)
            description="bulk import of an uploaded file (imports/<id>/) into the archive or the items table",
            columnar=True,  # it writes the archive's Parquet
        )
        self.role = sagemaker_job_role(self, "JobRole", "shopwise import jobs", training.image_account)
        for grantee in (self.function, self.role):
            self._grant_import(grantee, storage)
        training.source.grant_read(self.role)
        self.state_machine = self._build_state_machine(env, storage, training)
        self._acknowledge()

    @staticmethod
    def _grant_import(grantee: iam.IGrantable, storage: Storage) -> None:
        storage.artifacts.grant_read(grantee, f"{config.IMPORTS_PREFIX}*")
        storage.artifacts.grant_put(grantee, f"{config.IMPORTS_PREFIX}*")  # report.json, errors.jsonl
        storage.archive.grant_put(grantee, f"{config.ARCHIVE_EVENTS_PREFIX}*")
        storage.tables[config.ITEMS.name].grant(grantee, "dynamodb:BatchWriteItem")
        # the out-of-stock set only (one row of the feature store)
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem"],
                resources=[storage.tables[config.FEATURES.name].table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [UNAVAILABLE_KEY]}},
            )
        )
        storage.pseudonym_key.grant_read(grantee)

    def _build_state_machine(
        self, env: EnvironmentConfig, storage: Storage, training: TrainingPipeline
    ) -> sfn.StateMachine:
        function = lambda_step(self, "Import function", self.function, None, "$.result")
        names = {
            "features_table": storage.tables[config.FEATURES.name].table_name,
            "items_table": storage.tables[config.ITEMS.name].table_name,
            "lists_stem": storage.lists_stem,
            "config_table": storage.tables[config.CONFIG.name].table_name,
            "archive_bucket": storage.archive.bucket_name,
            "artifacts_bucket": storage.artifacts.bucket_name,
            "pseudonym_key_secret": storage.pseudonym_key.secret_arn,
        }
        request = {
            name: sfn.JsonPath.string_at(f"$.{name}")
            for name in ("import_id", "kind", "bucket", "key", "batch_id", "lines")
        }
        job = script_job(
            self,
            "Import job",
            job_name=sfn.JsonPath.format("shopwise-import-{}", sfn.JsonPath.string_at("$.import_id")),
            image=training.image,
            role=self.role,
            source=training.source,
            program="imports.py",
            hyperparameters={**request, **names},
            metrics={},
            channels=[channel("upload", tasks.S3Location.from_json_expression("$.upload_uri"))],
            output=tasks.S3Location.from_bucket(storage.artifacts, config.IMPORTS_PREFIX.rstrip("/")),
            instance_type=env.training_instance_type,
            volume_gib=100,
            max_runtime=Duration.hours(JOB_HOURS),
            result_path="$.result",
        )

        # the operator may force a route (`shopwise import --via function|job`); else the upload's size decides
        def forced(route: str) -> sfn.Condition:
            return sfn.Condition.and_(
                sfn.Condition.is_present("$.route"), sfn.Condition.string_equals("$.route", route)
            )

        definition = (
            sfn.Choice(self, "Small enough for the function?")
            .when(forced("function"), function)
            .when(forced("job"), job)
            .when(sfn.Condition.number_less_than_equals("$.rows", config.IMPORT_FUNCTION_MAX_ROWS), function)
            .otherwise(job)
        )
        machine = state_machine(
            self,
            "StateMachine",
            comment="an upload of up to 5 M lines -> the import function; more -> the import job",
            definition=definition,
            timeout=Duration.hours(JOB_HOURS + 1),
            logs_id="StateMachineLogs",
        )
        acknowledge(
            machine,
            {
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:training-job/*]": (
                    "Each import names its job after the import's id; the names are not known at deploy time."
                ),
                **invokes_any_version(self.function),
                "AwsSolutions-IAM5[Resource::*]": "X-Ray tracing and CloudWatch Logs delivery for the state machine "
                "have no resource-level permissions; EventBridge managed rules for .sync tasks are account-wide.",
            },
        )
        return machine

    def _acknowledge(self) -> None:
        uploads = {
            **s3_grant_actions("the imports/ prefix of the artifacts bucket and the archive's events/ prefix"),
            "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/imports/*]": "Each import's upload, report "
            "and error rows live under imports/<id>/, named at run time.",
            "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/events/*]": "Imported history lands in the "
            "archive partition of the day, named by the file's content.",
        }
        assert self.function.role is not None
        acknowledge(self.function.role, uploads)
        acknowledge(
            self.role,
            {
                **uploads,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]": (
                    "Read access to the job source directory asset, granted by the asset."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*]": (
                    "SageMaker names the job log groups and streams (/aws/sagemaker/TrainingJobs)."
                ),
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/imports*]": "SageMaker writes the import "
                "job's (empty) model and output under imports/ (grant added by the native task).",
                "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no "
                "resource-level permissions; PutMetricData is limited to the /aws/sagemaker/* namespaces.",
            },
        )
