"""S3 buckets (event archive, artifacts, their access logs) and the DynamoDB tables, from shopwise.config."""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise.settings import environment_variables
from shopwise_cdk.nag import acknowledge, logical_id


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

    def archive_destination(
        self, errors: str, interval: Duration, processors: list[firehose.IDataProcessor] | None = None
    ) -> firehose.S3Bucket:
        """A Firehose destination writing events into the archive's dt=/hour= partitions, gzip JSON Lines (the
        stream's copy and the serve function's impressions alike); failures under ``errors``."""
        return firehose.S3Bucket(
            self.archive,
            data_output_prefix=f"{config.ARCHIVE_EVENTS_PREFIX}dt=!{{timestamp:yyyy-MM-dd}}/hour=!{{timestamp:HH}}/",
            error_output_prefix=f"{errors}!{{firehose:error-output-type}}/dt=!{{timestamp:yyyy-MM-dd}}/",
            compression=firehose.Compression.GZIP,
            buffering_interval=interval,
            buffering_size=Size.mebibytes(64),
            file_extension=".jsonl.gz",
            processors=processors,
        )

    def table_environment(self) -> dict[str, str]:
        return {spec.env_var: self.tables[spec.name].table_name for spec in config.TABLES}

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
