"""The training data set on Spark, in the account: an AWS Glue job (Glue 5.1: Spark 3.5, Python 3.11) running
``shopwise_jobs.spark_dataset`` — the code ``shopwise dataset build`` runs in PySpark's local mode — over the
archive's Parquet, writing ``datasets/<name>/`` in the artifacts bucket. ``shopwise dataset build --stack NAME``
starts it and follows it.

No Docker image: the entry script and a zip of the shopwise packages are assets (``make build``: ``.build/glue/``),
pydantic comes from ``--additional-python-modules``. The role reads the archive's events, the catalog export and
the pending erasures, and writes the data sets; its logs go to Glue's own log groups.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise_cdk.constants import GLUE_DIR
from shopwise_cdk.nag import acknowledge, s3_grant_actions
from shopwise_cdk.storage import Storage

GLUE_VERSION = "5.1"  # Spark 3.5.6, Python 3.11: the job's code needs 3.11+
# the packages' imports Glue's image may lack (the rest — boto3, numpy, pandas, pyarrow — it has); pip installs them
# as the run starts (a comma separates modules, so each is one pin)
PYTHON_MODULES = "pydantic==2.14.4,pynamodb==6.1.0,scipy>=1.11"


class DatasetBuild(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        script = s3_assets.Asset(self, "Script", path=str(GLUE_DIR / "dataset.py"))
        packages = s3_assets.Asset(self, "Packages", path=str(GLUE_DIR / "shopwise.zip"))
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description="shopwise data set job (Glue)",
        )
        script.grant_read(self.role)
        packages.grant_read(self.role)
        storage.archive.grant_read(self.role, f"{config.ARCHIVE_EVENTS_PREFIX}*")
        storage.artifacts.grant_read(self.role, config.CATALOG_KEY)
        storage.artifacts.grant_read(self.role, f"{config.ERASURES_PREFIX}*")
        storage.artifacts.grant_read_write(self.role, f"{config.DATASETS_PREFIX}*")
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws-glue/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "Glue"}},
            )
        )
        self.job = glue.CfnJob(
            self,
            "Job",
            name=env.physical_name("dataset"),
            description="the training data set from the archive's Parquet, on Spark (shopwise_jobs.spark_dataset)",
            role=self.role.role_arn,
            glue_version=GLUE_VERSION,
            command=glue.CfnJob.JobCommandProperty(
                name="glueetl", python_version="3", script_location=script.s3_object_url
            ),
            worker_type="G.1X",
            number_of_workers=env.dataset_workers,
            timeout=int(config.DATASET_RUN_HOURS * 60),
            max_retries=0,
            execution_property=glue.CfnJob.ExecutionPropertyProperty(max_concurrent_runs=1),
            default_arguments={
                "--extra-py-files": packages.s3_object_url,
                "--additional-python-modules": PYTHON_MODULES,
                "--archive": storage.archive.s3_url_for_object(config.ARCHIVE_EVENTS_PREFIX),
                "--out": storage.artifacts.s3_url_for_object(f"{config.DATASETS_PREFIX}latest/"),
                "--days": str(env.dataset_days),
                "--categories": storage.artifacts.s3_url_for_object(config.CATALOG_KEY),
                "--erasures": storage.artifacts.s3_url_for_object(config.ERASURES_PREFIX),
                "--enable-metrics": "true",
                "--job-language": "python",
            },
        )
        acknowledge(
            self.role,
            {
                "AwsSolutions-IAM5[Resource::*]": "cloudwatch:PutMetricData has no resource type; the condition limits "
                "it to Glue's namespace.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                "/aws-glue/*]": "Glue writes a run's logs to log groups it names under /aws-glue/.",
                **s3_grant_actions("the archive's events, the catalog export, the pending erasures and datasets/"),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-"
                "<AWS::Region>/*]": "The job's script and packages are CDK file assets in the bootstrap bucket "
                "(read only).",
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/events/*]": "Spark reads every archived "
                "event object of the window (the prefix's partitions).",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/privacy/erasures/*]": "The pending "
                "erasures, whose shoppers' events the data set leaves out.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/datasets/*]": "The data sets the job "
                "writes (Spark's part files under each one's folder).",
            },
        )
        acknowledge(
            self.job,
            {
                "AwsSolutions-GL1": "The job's logs are Spark's, in Glue's log groups, encrypted at rest by CloudWatch "
                "Logs; they name no shopper (the archive's ids are pseudonyms, and the job logs counts). A "
                "customer-managed key would add $1 a month to the idle floor.",
                "AwsSolutions-GL3": "The job uses no bookmarks (each run reads its window of days whole).",
            },
        )
