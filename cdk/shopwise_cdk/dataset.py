"""The offline path's Spark jobs, in the account, as AWS Glue jobs (Glue 5.1: Spark 3.5, Python 3.11 — EMR
Serverless's and SageMaker Processing's Spark images run Python 3.9, too old for this code):

- **the data set job**: ``shopwise_jobs.spark_dataset`` — the code ``shopwise dataset build`` runs in PySpark's
  local mode — over the archive's Parquet, writing ``datasets/<name>/`` in the artifacts bucket (prod's retrain
  runs it before training; ``shopwise dataset build --stack NAME`` starts it);
- **the conversion job**: ``shopwise_jobs.spark_convert``, the archive's gzip JSON objects rewritten as Parquet by
  ``shopwise.ingestion.convert`` — the code ``shopwise archive convert`` runs in one process — spread over the
  workers (``shopwise archive convert --stack NAME`` starts it).

No Docker image: the entry scripts and a zip of the shopwise packages are assets (``make build``: ``.build/glue/``),
pydantic, PynamoDB and SciPy come from ``--additional-python-modules``. Each job has its own role with what it
reads and writes; their logs go to Glue's own log groups.
"""

from __future__ import annotations

from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise_cdk.constants import GLUE_DIR
from shopwise_cdk.nag import acknowledge, s3_grant_actions
from shopwise_cdk.sagemaker import grant_job_logs
from shopwise_cdk.storage import Storage

GLUE_VERSION = "5.1"  # Spark 3.5.6, Python 3.11: the job's code needs 3.11+
# the packages' imports Glue's image may lack (the rest — boto3, numpy, pandas, pyarrow — it has); pip installs them
# as the run starts (a comma separates modules, so each is one pin)
PYTHON_MODULES = "pydantic==2.14.4,pynamodb==6.1.0,scipy>=1.11,tqdm>=4.66"
ASSETS = "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]"


class DatasetBuild(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        self.packages = s3_assets.Asset(self, "Packages", path=str(GLUE_DIR / "shopwise.zip"))
        self.role, self.job = self._job(
            env,
            "",
            "dataset",
            "the training data set from the archive's Parquet, on Spark (shopwise_jobs.spark_dataset)",
            env.dataset_workers,
            {
                "--archive": storage.archive.s3_url_for_object(config.ARCHIVE_EVENTS_PREFIX),
                "--out": storage.artifacts.s3_url_for_object(f"{config.DATASETS_PREFIX}latest/"),
                "--days": str(env.dataset_days),
                "--categories": storage.artifacts.s3_url_for_object(config.CATALOG_KEY),
                "--erasures": storage.artifacts.s3_url_for_object(config.ERASURES_PREFIX),
                # each archive day parsed once: a daily build parses the new day and reads the others back
                "--parsed-days": storage.artifacts.s3_url_for_object(config.PARSED_DAYS_PREFIX),
            },
        )
        storage.archive.grant_read(self.role, f"{config.ARCHIVE_EVENTS_PREFIX}*")
        storage.artifacts.grant_read(self.role, config.CATALOG_KEY)
        storage.artifacts.grant_read(self.role, f"{config.ERASURES_PREFIX}*")
        storage.artifacts.grant_read_write(self.role, f"{config.DATASETS_PREFIX}*")
        acknowledge(
            self.role,
            {
                **s3_grant_actions("the archive's events, the catalog export, the pending erasures and datasets/"),
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/events/*]": "Spark reads every archived "
                "event object of the window (the prefix's partitions).",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/privacy/erasures/*]": "The pending "
                "erasures, whose shoppers' events the data set leaves out.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/datasets/*]": "The data sets the job "
                "writes (Spark's part files under each one's folder).",
            },
        )
        self.convert_role, self.convert_job = self._job(
            env,
            "Convert",
            "convert",
            "the archive's gzip JSON objects rewritten as Parquet (shopwise_jobs.spark_convert)",
            env.dataset_workers,
            {"--bucket": storage.archive.bucket_name},
        )
        # read each JSON object, write its Parquet beside it and delete it; lines that don't convert to errors/
        storage.archive.grant_read_write(self.convert_role, f"{config.ARCHIVE_EVENTS_PREFIX}*")
        storage.archive.grant_delete(self.convert_role, f"{config.ARCHIVE_EVENTS_PREFIX}*")
        storage.archive.grant_put(self.convert_role, f"{config.ARCHIVE_ERRORS_PREFIX}format-conversion-failed/*")
        acknowledge(
            self.convert_role,
            {
                **s3_grant_actions("the archive's events/ and its conversion-failure prefix"),
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/events/*]": "The conversion reads, "
                "rewrites and deletes the archive's objects in every partition.",
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/errors/format-conversion-failed/*]": "Lines "
                "that don't fit the table go where Firehose puts its conversion failures.",
            },
        )

    def _job(
        self,
        env: EnvironmentConfig,
        prefix: str,
        name: str,
        description: str,
        workers: int,
        arguments: dict[str, str],
    ) -> tuple[iam.Role, glue.CfnJob]:
        """A Glue Spark job running ``.build/glue/<name>.py`` with the packages, and its role (the assets, Glue's log
        groups and metrics; the caller grants the data)."""
        script = s3_assets.Asset(self, f"{prefix}Script", path=str(GLUE_DIR / f"{name}.py"))
        role = iam.Role(
            self,
            f"{prefix}Role",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"shopwise {name} job (Glue)",
        )
        script.grant_read(role)
        self.packages.grant_read(role)
        grant_job_logs(role, "/aws-glue/*", {"StringEquals": {"cloudwatch:namespace": "Glue"}})
        job = glue.CfnJob(
            self,
            f"{prefix}Job",
            name=env.physical_name(name),
            description=description,
            role=role.role_arn,
            glue_version=GLUE_VERSION,
            command=glue.CfnJob.JobCommandProperty(
                name="glueetl", python_version="3", script_location=script.s3_object_url
            ),
            worker_type="G.1X",
            # spare capacity at two thirds of the price: a nightly data set, and a one-off backfill, can wait to start
            execution_class="FLEX",
            number_of_workers=workers,
            timeout=int(config.DATASET_RUN_HOURS * 60),
            max_retries=0,
            execution_property=glue.CfnJob.ExecutionPropertyProperty(max_concurrent_runs=1),
            default_arguments={
                "--extra-py-files": self.packages.s3_object_url,
                "--additional-python-modules": PYTHON_MODULES,
                "--enable-metrics": "true",
                "--job-language": "python",
                **arguments,
            },
        )
        acknowledge(
            role,
            {
                "AwsSolutions-IAM5[Resource::*]": "cloudwatch:PutMetricData has no resource type; the condition limits "
                "it to Glue's namespace.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                "/aws-glue/*]": "Glue writes a run's logs to log groups it names under /aws-glue/.",
                ASSETS: "The job's script and packages are CDK file assets in the bootstrap bucket (read only).",
            },
        )
        acknowledge(
            job,
            {
                "AwsSolutions-GL1": "The job's logs are Spark's, in Glue's log groups, encrypted at rest by CloudWatch "
                "Logs; they name no shopper (the archive's ids are pseudonyms, and the job logs counts). A "
                "customer-managed key would add $1 a month to the idle floor.",
                "AwsSolutions-GL3": "The job uses no bookmarks (each run reads what it was given whole).",
            },
        )
        return role, job
