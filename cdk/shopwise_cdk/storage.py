"""S3 buckets (event archive, artifacts, their access logs) and the DynamoDB tables, from shopwise.config."""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from shopwise import archive, config
from shopwise.config import EnvironmentConfig
from shopwise.dal.recommendations import slot_tables
from shopwise.keys import HELD_ERASURES_KEY
from shopwise.settings import environment_variables
from shopwise_cdk.nag import acknowledge, logical_id

# what the Firehose L2 grants a delivery stream that converts records, beside glue:GetTable* on the archive table
CONVERSION_GRANT = {
    "AwsSolutions-IAM5[Resource::*]": "The Firehose L2 construct grants glue:GetSchemaVersion on * to every "
    "delivery stream with record-format conversion, for Glue Schema Registry schemas; the archive table has none, "
    "and the action reads schema definitions, never data (its table reads are scoped to the archive table)."
}
ATHENA_SCAN_LIMIT_BYTES = 200 * 1024**3  # a query that would scan more is cancelled (200 GiB: $1 at $5/TB)


def lifecycle_rules(env: EnvironmentConfig, bucket: str) -> list[s3.LifecycleRule]:
    """A bucket's lifecycle (``shopwise.config.lifecycle_rules``, which the local stack applies too)."""
    return [
        s3.LifecycleRule(
            prefix=rule.prefix or None,
            expiration=Duration.days(rule.expire_days) if rule.expire_days else None,
            noncurrent_version_expiration=Duration.days(rule.noncurrent_days) if rule.noncurrent_days else None,
            transitions=[
                s3.Transition(
                    storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                    transition_after=Duration.days(rule.intelligent_tiering_days),
                )
            ]
            if rule.intelligent_tiering_days
            else None,
        )
        for rule in config.lifecycle_rules(env, bucket)
    ]


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, env: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if env.retain_data else RemovalPolicy.DESTROY
        self.env_config, self.removal = env, removal
        auto_delete = not env.retain_data
        common = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            **common,  # type: ignore[arg-type]
        )
        self.archive = s3.Bucket(
            self,
            "Archive",
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="archive/",
            lifecycle_rules=lifecycle_rules(env, config.ARCHIVE_BUCKET),
            versioned=config.ARCHIVE_BUCKET in config.VERSIONED_BUCKETS,
            **common,  # type: ignore[arg-type]
        )
        self.artifacts = s3.Bucket(
            self,
            "Artifacts",
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=lifecycle_rules(env, config.ARTIFACTS_BUCKET),
            versioned=config.ARTIFACTS_BUCKET in config.VERSIONED_BUCKETS,
            **common,  # type: ignore[arg-type]
        )
        self._archive_catalog()
        self.tables: dict[str, dynamodb.Table] = {}
        for spec in config.TABLES:
            self.tables[spec.name] = dynamodb.Table(
                self,
                spec.name.title().replace("_", ""),
                table_name=env.physical_name(spec.name),
                partition_key=dynamodb.Attribute(name=spec.partition_key, type=dynamodb.AttributeType.STRING),
                sort_key=(
                    dynamodb.Attribute(name=spec.sort_key, type=dynamodb.AttributeType.STRING)
                    if spec.sort_key
                    else None
                ),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                # a restore (into a new table) could bring an erased shopper back: kept within the erasure bound
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True, recovery_period_in_days=env.backup_days
                ),
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                time_to_live_attribute=spec.ttl_attribute,
                removal_policy=removal,
            )
            for index in spec.indexes:
                self.tables[spec.name].add_global_secondary_index(
                    index_name=index.name,
                    partition_key=dynamodb.Attribute(name=index.partition_key, type=dynamodb.AttributeType.STRING),
                    projection_type=dynamodb.ProjectionType.KEYS_ONLY,
                )
            if spec.indexes:
                # a table grant covers its indexes too (CDK adds <table>/index/*): keys-only indexes, so reading one
                # gives a grantee nothing the table grant does not; only the campaigns function Queries one
                acknowledge(
                    Stack.of(self),
                    {
                        f"AwsSolutions-IAM5[Resource::<{logical_id(self.tables[spec.name])}.Arn>/index/*]": (
                            f"The {spec.name} table's indexes are keys-only "
                            f"({', '.join(i.name for i in spec.indexes)})."
                        )
                    },
                )
        self.drop_lists_on_delete()

        # The key that pseudonymises customer ids, emails and device ids before they reach the stream; nobody needs
        # to read it. The catalog API's bearer token (PUT /v1/items), which the store's back office reads.
        self.pseudonym_key = self._generated_secret(
            "PseudonymKey",
            config.PSEUDONYM_KEY_SECRET,
            "HMAC key for pseudonymising shopper ids (shopwise.privacy.pseudonyms); rotate with `shopwise keys rotate`",
            not_rotated_because="Rotated by the operator (`shopwise keys rotate`: a new current key beside the older "
            "ones, profiles moved to the new pseudonyms as shoppers return) — a Lambda rotator replacing the key "
            "would split every profile from its history.",
        )
        # The keys shopper tokens are signed with ({"current": "k1", "k1": <key>}, shopwise.access.tokens): the store's
        # backend reads it to mint tokens (ServerApiPolicy), collect and serve to verify them.
        self.token_key = self._generated_secret(
            "ShopperTokenKey",
            config.SHOPPER_TOKEN_SECRET,
            "Keys shopper tokens are signed with (shopwise.access.tokens); rotate by adding a key and making it current",
            not_rotated_because="Rotated by the operator without downtime: add a key, make it current, remove the "
            "old one once the tokens it signed (an hour; visitors' 30 days) have expired — no Lambda rotator needed.",
            template={"current": "k1"},
            key="k1",
        )

    def _generated_secret(
        self,
        construct_id: str,
        logical: str,
        description: str,
        *,
        not_rotated_because: str,
        template: dict[str, str] | None = None,
        key: str = "",
    ) -> secretsmanager.Secret:
        """A secret Secrets Manager generates at deploy time, kept (in prod) like the data it protects: a plain
        random string, or a JSON ``template`` with the random string under ``key``."""
        secret = secretsmanager.Secret(
            self,
            construct_id,
            secret_name=self.env_config.physical_name(logical),
            description=description,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48,
                exclude_punctuation=True,
                secret_string_template=json.dumps(template) if template is not None else None,
                generate_string_key=key or None,
            ),
            removal_policy=self.removal,
        )
        acknowledge(secret, {"AwsSolutions-SMG4": not_rotated_because})
        return secret

    def _archive_catalog(self) -> None:
        """The archive as a table Athena queries (and Firehose converts with): a Glue database and the ``events``
        table, its columns ``shopwise.archive.COLUMNS``, Parquet, partitioned by ``dt`` and ``hour`` with partition
        projection (no crawler, no partitions to add); and a workgroup whose results land, encrypted, in the
        artifacts bucket's ``athena/`` prefix and expire with it."""
        env = self.env_config
        stack = Stack.of(self)
        self.glue_database = glue.CfnDatabase(
            self,
            "ArchiveDatabase",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=env.physical_name("archive").replace("-", "_"),
                description="shopwise's event archive (shopwise.archive)",
            ),
        )
        location = f"s3://{self.archive.bucket_name}/{config.ARCHIVE_EVENTS_PREFIX}"
        self.archive_table = glue.CfnTable(
            self,
            "ArchiveTable",
            catalog_id=stack.account,
            database_name=env.physical_name("archive").replace("-", "_"),
            table_input=glue.CfnTable.TableInputProperty(
                name=archive.TABLE,
                table_type="EXTERNAL_TABLE",
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name="dt", type="string"),
                    glue.CfnTable.ColumnProperty(name="hour", type="string"),
                ],
                parameters={
                    "classification": "parquet",
                    "projection.enabled": "true",
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": "2020-01-01,NOW",
                    "projection.hour.type": "integer",
                    "projection.hour.range": "0,23",
                    "projection.hour.digits": "2",
                    "storage.location.template": location + "dt=${dt}/hour=${hour}/",
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[glue.CfnTable.ColumnProperty(name=c.name, type=c.type) for c in archive.COLUMNS],
                    location=location,
                    input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    ),
                ),
            ),
        )
        self.archive_table.node.add_dependency(self.glue_database)
        self.workgroup = athena.CfnWorkGroup(
            self,
            "Queries",
            name=env.physical_name("archive"),
            description="shopwise archive queries (shopwise archive query --stack)",
            recursive_delete_option=not env.retain_data,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=ATHENA_SCAN_LIMIT_BYTES,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.artifacts.bucket_name}/{config.ATHENA_RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )

    def archive_destination(
        self,
        errors: str,
        interval: Duration,
        processors: list[firehose.IDataProcessor] | None = None,
        renamed: dict[str, str] | None = None,
    ) -> firehose.S3Bucket:
        """A Firehose destination writing events into the archive's dt=/hour= partitions as Parquet: record-format
        conversion with the archive table's schema (the stream's copy and the serve function's impressions alike;
        ``renamed``: the events' fields stored under another column, ``shopwise.archive.RENAMED``); records that
        don't convert, and delivery failures, under ``errors``."""
        mappings = {column: field for field, column in (renamed or {}).items()}
        # a column whose field is stored elsewhere reads a key no record has: null, never the other shape
        mappings.update({field: f"{field}_stored_as_{column}" for field, column in (renamed or {}).items()})
        return firehose.S3Bucket(
            self.archive,
            data_output_prefix=f"{config.ARCHIVE_EVENTS_PREFIX}dt=!{{timestamp:yyyy-MM-dd}}/hour=!{{timestamp:HH}}/",
            error_output_prefix=f"{errors}!{{firehose:error-output-type}}/dt=!{{timestamp:yyyy-MM-dd}}/",
            buffering_interval=interval,
            buffering_size=Size.mebibytes(128),  # record-format conversion needs at least 64 MiB
            file_extension=archive.PARQUET,
            processors=processors,
            data_format_conversion=firehose.DataFormatConversionProps(
                schema_configuration=firehose.SchemaConfiguration.from_cfn_table(self.archive_table),
                input_format=firehose.OpenXJsonInputFormat(column_to_json_key_mappings=mappings or None),
                output_format=firehose.ParquetOutputFormat(
                    compression=firehose.ParquetCompression.GZIP,  # shopwise.archive.COMPRESSION
                    enable_dictionary_compression=False,
                ),
            ),
        )

    def table_environment(self) -> dict[str, str]:
        return {
            **{spec.env_var: self.tables[spec.name].table_name for spec in config.TABLES},
            config.LISTS_ENV: self.lists_stem,
        }

    def drop_lists_on_delete(self) -> None:
        """The slot tables the loads make are not the stack's resources: when the stack is deleted, a custom
        resource deletes them (a slot never loaded is no error), so ``cdk destroy`` leaves nothing behind. They hold
        only lists a retrain makes again, in prod too."""
        for table, arn in zip(slot_tables(self.lists_stem), self.lists_arns(), strict=True):
            cr.AwsCustomResource(
                self,
                f"Drop{table.rsplit('-', 1)[-1].upper()}",
                on_delete=cr.AwsSdkCall(
                    service="DynamoDB",
                    action="deleteTable",
                    parameters={"TableName": table},
                    physical_resource_id=cr.PhysicalResourceId.of(table),
                    ignore_error_codes_matching="ResourceNotFoundException",
                ),
                policy=cr.AwsCustomResourcePolicy.from_statements(
                    [iam.PolicyStatement(actions=["dynamodb:DeleteTable"], resources=[arn])]
                ),
                install_latest_aws_sdk=False,
            )
        # the provider's one function, which CDK makes once a stack for every AwsCustomResource
        provider = Stack.of(self).node.find_child("AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", ""))
        acknowledge(
            provider,
            {
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]": "The custom-resource provider CDK makes writes its own logs with the "
                "basic execution policy; its only other right is DeleteTable on the two slot tables.",
            },
        )

    @property
    def lists_stem(self) -> str:
        """The precomputed lists' slot tables are ``<stem>-a`` and ``<stem>-b``, made by the loads' imports, not by
        this stack (``shopwise.dal.recommendations``; ``drop_lists_on_delete`` deletes them with the stack)."""
        return self.env_config.physical_name(config.LISTS)

    def lists_arns(self, imports: bool = False) -> list[str]:
        """The two slot tables' ARNs (exactly those two names); with ``imports``, their imports' ARNs too."""
        stack = Stack.of(self)
        tables = [
            stack.format_arn(service="dynamodb", resource="table", resource_name=t)
            for t in slot_tables(self.lists_stem)
        ]
        return tables + ([f"{arn}/import/*" for arn in tables] if imports else [])

    def grant_held_erasures(self, grantee: iam.IGrantable) -> None:
        """UpdateItem of the config table's one row of erased shoppers' list keys held for a load in flight
        (``shopwise.dal.recommendations``), and no other row: the erasure adds, the load and the purge take away."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:UpdateItem"],
            resource_arns=[self.tables[config.CONFIG.name].table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [HELD_ERASURES_KEY]}},
        )

    def grant_lists(self, grantee: iam.IGrantable, *actions: str, imports: bool = False) -> None:
        """``actions`` on the two slot tables (and their imports), nothing else."""
        iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=self.lists_arns(imports))

    def function_environment(self) -> dict[str, str]:
        """Tables and the secrets' ARNs (a function that reads a secret is granted it one by one)."""
        return environment_variables(
            self.env_config,
            {
                **self.table_environment(),
                "PSEUDONYM_KEY_SECRET": self.pseudonym_key.secret_arn,
                "SHOPPER_TOKEN_SECRET": self.token_key.secret_arn,
            },
        )
