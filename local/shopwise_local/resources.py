"""Create on the local endpoint the tables, stream, buckets and queue the CDK stack defines, from the same
configuration (``shopwise.config``)."""

from __future__ import annotations

from dataclasses import dataclass

from shopwise import config
from shopwise.access.tokens import TokenKeys
from shopwise.dal.aws import client
from shopwise.dal.model_packages import MODEL_PACKAGE_GROUP_DESCRIPTION, ensure_group
from shopwise.privacy.pseudonyms import new_key
from shopwise.settings import environment_variables, model_package_group


@dataclass(frozen=True)
class LocalResources:
    env: config.EnvironmentConfig
    tables: dict[str, str]  # logical -> physical
    stream: str
    archive_bucket: str
    artifacts_bucket: str
    failure_queue_url: str
    pseudonym_key_secret: str
    shopper_token_secret: str

    @property
    def lists_stem(self) -> str:
        """The stem of the precomputed lists' two slot tables (made by the loads, not here)."""
        return self.env.physical_name(config.LISTS)

    def function_environment(self) -> dict[str, str]:
        """The same variables the CDK app gives the Lambda functions."""
        names = {spec.env_var: self.tables[spec.name] for spec in config.TABLES}
        names.update(
            EVENTS_STREAM=self.stream,
            ARCHIVE_BUCKET=self.archive_bucket,
            ARTIFACTS_BUCKET=self.artifacts_bucket,
            FAILED_EVENTS_QUEUE_URL=self.failure_queue_url,
            PSEUDONYM_KEY_SECRET=self.pseudonym_key_secret,
            SHOPPER_TOKEN_SECRET=self.shopper_token_secret,
        )
        return environment_variables(self.env, names)


def create_resources(env_name: str = "local") -> LocalResources:
    env = config.environment(env_name)
    ddb = client("dynamodb")
    tables: dict[str, str] = {}
    existing = set(ddb.list_tables().get("TableNames", []))
    for spec in config.TABLES:
        name = env.physical_name(spec.name)
        tables[spec.name] = name
        if name in existing:
            continue
        keys = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
        attributes = [{"AttributeName": spec.partition_key, "AttributeType": "S"}]
        if spec.sort_key:
            keys.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
            attributes.append({"AttributeName": spec.sort_key, "AttributeType": "S"})
        indexes = [
            {
                "IndexName": index.name,
                "KeySchema": [{"AttributeName": index.partition_key, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
            for index in spec.indexes
        ]
        attributes += [{"AttributeName": index.partition_key, "AttributeType": "S"} for index in spec.indexes]
        ddb.create_table(
            TableName=name,
            KeySchema=keys,
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
        )
        ddb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
        if spec.ttl_attribute:
            ddb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
            )

    stream = env.physical_name(config.EVENTS_STREAM)
    kinesis = client("kinesis")
    if stream not in kinesis.list_streams().get("StreamNames", []):
        kinesis.create_stream(StreamName=stream, ShardCount=env.stream_shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})

    s3 = client("s3")
    buckets = {}
    for logical in (config.ARCHIVE_BUCKET, config.ARTIFACTS_BUCKET):
        name = env.physical_name(logical)
        s3.create_bucket(Bucket=name)
        if logical in config.VERSIONED_BUCKETS:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        # kept as the stack keeps them (the local endpoint stores the rules; it does not expire objects)
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration=config.s3_lifecycle(config.lifecycle_rules(env, logical))
        )
        buckets[logical] = name
    # the registry's mirror in SageMaker Model Registry, as the stack's ModelPackageGroup
    ensure_group(model_package_group(env), MODEL_PACKAGE_GROUP_DESCRIPTION)
    queue_url = client("sqs").create_queue(QueueName=env.physical_name(config.FAILED_EVENTS_QUEUE))["QueueUrl"]
    # the pseudonymisation key: generated here once per local stack, as the CDK stack has Secrets Manager generate it
    pseudonym_key = _secret(env.physical_name(config.PSEUDONYM_KEY_SECRET), new_key())
    # the keys shopper tokens are signed with, likewise
    token_key = _secret(env.physical_name(config.SHOPPER_TOKEN_SECRET), TokenKeys.generate())
    return LocalResources(
        env=env,
        tables=tables,
        stream=stream,
        archive_bucket=buckets[config.ARCHIVE_BUCKET],
        artifacts_bucket=buckets[config.ARTIFACTS_BUCKET],
        failure_queue_url=queue_url,
        pseudonym_key_secret=pseudonym_key,
        shopper_token_secret=token_key,
    )


def _secret(name: str, value: str) -> str:
    secrets = client("secretsmanager")
    try:
        return str(secrets.describe_secret(SecretId=name)["ARN"])
    except secrets.exceptions.ResourceNotFoundException:
        return str(secrets.create_secret(Name=name, SecretString=value)["ARN"])
