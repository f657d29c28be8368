"""One configuration per environment, read by the CDK app and the local runtime alike.

Everything that both the stack and the local stack must agree on lives here: table key schemas, the stream,
the buckets, and the per-environment settings (shards, provisioned concurrency, schedule). The CDK app builds
resources from these specs; ``shopwise_local.resources`` creates the same ones on the local endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SERVICE = "shopwise"
# the promotion gate: a candidate may be at most this much worse than the active version (and within the noise)
PROMOTION_MARGIN = 0.02


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index: its name and string partition key; it projects the table's keys only."""

    name: str
    partition_key: str


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table: its logical name, keys, TTL attribute and global secondary indexes."""

    name: str
    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    env_var: str = ""
    indexes: tuple[IndexSpec, ...] = ()


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    stream_shards: int
    provisioned_concurrency: int
    # EventBridge schedule expression for the retraining pipeline
    retrain_schedule: str
    recommendations_ttl_days: int
    retain_data: bool
    training_instance_type: str = "ml.m5.xlarge"
    transform_instance_type: str = "ml.m5.xlarge"
    # the batch transform's instances (each takes whole request objects: shopwise.lifecycle.transform), sized per
    # retrain from the version's users so the transform finishes within ``transform_budget_minutes`` at the measured
    # users a second a worker (one model-server worker per vCPU), between these bounds
    transform_min_instances: int = 1
    transform_max_instances: int = 1
    transform_budget_minutes: int = 30
    # load functions staging transform output objects for the standby slot's import at once (the Distributed Map's
    # MaxConcurrency): the same bytes staged at any count, so the same cost; tests/bench/bench_load.py sizes their time
    load_concurrency: int = 10
    # where the retrain builds its data set: "python" in the training job itself (a process of its own holding about
    # 2.5 KB an event: some 6 M events on ml.m5.xlarge's 16 GB, make scale), "spark" in the Glue job before it
    # (shopwise_jobs.spark_dataset), whose G.1X workers (4 vCPU, 16 GB each) and window of archive days follow
    dataset_engine: str = "python"
    dataset_workers: int = 2
    dataset_days: int = 180
    # X-Ray active tracing of the functions the traffic invokes — collect and serve once a request, the updater about
    # once a second a shard (its batching window): Lambda traces the first invocation a second and 5% of the rest, and
    # its sampling can't be set, so at 100 requests/s tracing costs ~$80 a month, and the updater's ~$13 a month at
    # any rate; off, they trace only invocations that arrive traced. The rest (steps, jobs' functions) always trace
    trace_requests: bool = True
    log_retention_days: int = 30
    api_throttle_rate: int = 500
    api_throttle_burst: int = 1000
    lambda_memory_mb: int = 1024
    # Kinesis -> update_features event source: at most this many records an invocation (what a shard gathers in the
    # 1 s batching window). A batch's calls and writer threads are paid once for all its events, and an entity is
    # written once a batch: bench_update.py --events 20000, 332 us of handler CPU, 0.22 calls and 1.75 write units an
    # event in batches of 100; 226 us, 0.16 and 1.67 in batches of 500. 500 records of ~270 bytes are ~180 KB of
    # payload; a shard at 1,000 records a second fills one in half a second
    stream_batch_size: int = 500
    stream_retry_attempts: int = 3
    stream_max_record_age_s: int = 6 * 3600
    promotion_margin: float = PROMOTION_MARGIN
    # how often each email campaign (shopwise.campaigns.rules) runs
    campaign_schedule: str = "rate(1 hour)"
    # how often the drift job compares the last 24 h with the serving model's training snapshot ("manual": never)
    drift_schedule: str = "rate(1 day)"
    # category paths whose items may be recommended again after a purchase (consumables: coffee, nappies ...)
    repeat_purchase_categories: tuple[str, ...] = ()
    # the storefront origins whose browsers may call the API (CORS, and the functions refuse any other Origin);
    # exact origins, or patterns with * (none: no browser may call it — set the store's origins before go-live)
    allowed_origins: tuple[str, ...] = ()
    # per-route throttles (requests/s, burst): browser and public reads, event ingestion, minting visitor ids,
    # the store's server routes, admin routes
    throttles: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "reads": (500, 1000),
            "events": (500, 1000),
            "visitors": (50, 100),
            "server": (500, 1000),
            "admin": (10, 20),
        }
    )
    tags: dict[str, str] = field(default_factory=dict)
    # privacy: the purge runs this often and takes the erasures at least PURGE_MIN_AGE_HOURS old, so an erasure
    # reaches every store within ERASURE_BOUND_HOURS (see erasure_bound_hours)
    purge_schedule: str = "rate(6 hours)"
    purge_instance_count: int = 1  # the purge job's instances (each rewrites 1/N of the objects)
    # retention: archived events, Firehose's delivery-failure records, the artifacts bucket's replaced versions,
    # the logs of the functions whose lines can name a shopper (the serve impressions, the updater's failures)
    archive_events_days: int = 400
    archive_errors_days: int = 1
    artifacts_noncurrent_days: int = 1
    shopper_log_days: int = 1
    # DynamoDB point-in-time recovery window: a restore into a new table can bring an erased row back for this long
    backup_days: int = 1
    # how old a serve execution environment's copy of the out-of-stock set may get before it reads the set again
    # (shopwise.dal.serving_read): a stock change reaches every answer within this many seconds
    stock_cache_seconds: float = 30.0

    def erasure_bound_hours(self) -> float:
        """How long after a DELETE the last store forgets the shopper: the purge's wait for the stream, its schedule
        interval and the job's own run (PURGE_RUN_HOURS), or the longest retention of a copy nobody rewrites
        (shopper logs, replaced versions, backups), whichever is later."""
        interval = rate_hours(self.purge_schedule)
        purged = PURGE_MIN_AGE_HOURS + interval + PURGE_RUN_HOURS
        # S3 lifecycle expiry runs once a day after the age is reached: up to a day late
        expired = 24.0 * max(self.shopper_log_days, self.backup_days, self.artifacts_noncurrent_days + 1)
        return max(purged, expired)

    def physical_name(self, logical: str) -> str:
        return f"{SERVICE}-{self.name}-{logical}"

    def transform_sizing(self) -> dict[str, int]:
        """The bounds the batch transform's plan sizes its instances within (``shopwise.lifecycle.transform
        .instances_for``'s keywords): what the retrain's plan step carries, the local pipeline and ``--remote`` too."""
        return {
            "min_instances": self.transform_min_instances,
            "max_instances": self.transform_max_instances,
            "budget_s": self.transform_budget_minutes * 60,
        }


PURGE_MIN_AGE_HOURS = 25.0  # the stream keeps records 24 hours; an hour more for Firehose's buffers
PURGE_RUN_HOURS = 2.0  # the purge job's time limit (MaxRuntime): a run that takes longer fails and is retried


def rate_hours(expression: str) -> float:
    """The interval of an EventBridge rate expression in hours ("rate(6 hours)" -> 6.0)."""
    number, unit = expression.removeprefix("rate(").removesuffix(")").split()
    return float(number) * {"minute": 1 / 60, "minutes": 1 / 60, "hour": 1, "hours": 1, "day": 24, "days": 24}[unit]


# Tables. `features` is the feature store: one document per profile, session, item, segment and alias (keys in
# shopwise.keys; sessions expire by TTL). `config` holds the active model version and the experiments. The
# precomputed lists (keyed "user#<id>", "item#<id>", "popular#global") are not a table of the stack's: each of the
# two slots is a table a load makes by an import from S3, ``<stem>-a`` and ``<stem>-b`` (shopwise.dal.recommendations),
# the stem named by LISTS_ENV.
# `by-activity`: a sparse index of live profiles by the day of their newest event (``active``, written with the
# profile: shopwise.keys.activity_key), so campaign runs read the shoppers active in their window, not the table
ACTIVITY_INDEX = IndexSpec("by-activity", partition_key="active")
# `by-reach`: the same, of the profiles a campaign may write to only (an email or customer id, marketing and
# personalisation granted: ``reach``, shopwise.keys.reach_key) — what campaign runs read: anonymous and
# unconsented shoppers, most of the active ones, cost a run nothing
REACH_INDEX = IndexSpec("by-reach", partition_key="reach")
ACTIVITY_SHARDS = 8  # each day's index partition split this many ways: a busy day is not one hot index partition
FEATURES = TableSpec(
    "features",
    partition_key="pk",
    ttl_attribute="expires_at",
    env_var="FEATURES_TABLE",
    indexes=(ACTIVITY_INDEX, REACH_INDEX),
)
ITEMS = TableSpec("items", partition_key="item_id", env_var="ITEMS_TABLE")
LISTS = "lists"  # the slot tables' stem (logical): <service>-<env>-lists-a and -b
LISTS_ENV = "LISTS_TABLE_STEM"
CONFIG = TableSpec("config", partition_key="pk", env_var="CONFIG_TABLE")
# `ledger`: one row per event a source sent, for DEDUP_HOURS (shopwise.dal.ledger): duplicates and held events
LEDGER = TableSpec("ledger", partition_key="pk", sort_key="sk", ttl_attribute="expires_at", env_var="LEDGER_TABLE")
TABLES: tuple[TableSpec, ...] = (FEATURES, ITEMS, CONFIG, LEDGER)
# How long a source's event id stays known: a client's retry of an event within this window is a duplicate. Twice
# the stream's retention (24 hours): a record the stream still holds is always recognised; within the erasure bound.
DEDUP_HOURS = 48

EVENTS_STREAM = "events"
ARCHIVE_BUCKET = "archive"
ARTIFACTS_BUCKET = "artifacts"
VERSIONED_BUCKETS = (ARTIFACTS_BUCKET,)  # a replaced model, export or snapshot can be recovered (for a day)
FAILED_EVENTS_QUEUE = "update-features-failures"
FAILURE_QUEUE_DAYS = 14  # what the failure queue keeps (SQS's maximum), and the ledger rows of failed events
# the key that pseudonymises customer ids, emails and device ids (Secrets Manager)
PSEUDONYM_KEY_SECRET = "pseudonym-key"
# the keys shopper tokens are signed with (Secrets Manager; the store's backend reads it to mint tokens)
SHOPPER_TOKEN_SECRET = "shopper-token-key"

# S3 layout, shared by the archive writer (Firehose or the local poller), the importer and the training job.
ARCHIVE_EVENTS_PREFIX = "events/"
ARCHIVE_ERRORS_PREFIX = "errors/"  # Firehose's records it could not deliver (processing and format failures)
CATALOG_KEY = "catalog/items.jsonl.gz"
IMPORTS_PREFIX = "imports/"  # bulk imports: imports/<id>/<file> uploaded, report.json and errors.jsonl beside it
# rows the import function takes; more go to the import job. The function has 15 minutes; the bulk code reads
# ~31,000 rows/s on one core (tests/bench/bench_import.py): 5 M rows is under 3 minutes, room for a slower vCPU
IMPORT_FUNCTION_MAX_ROWS = 5_000_000
MODELS_PREFIX = "models/"
MONITORING_PREFIX = "monitoring/"  # the drift jobs' outputs (drift.json in output.tar.gz)
DATASETS_PREFIX = "datasets/"  # the Spark-built training data sets (`shopwise dataset build`)
# each archive day's parse, kept for the next build (a day is parsed once while its objects stay the same); not a
# data set's name (those may not start with "_")
PARSED_DAYS_PREFIX = f"{DATASETS_PREFIX}_days/"
DATASET_RUN_HOURS = 2.0  # the data set job's time limit (a daily retrain's budget end to end is 2 hours)
# Athena's query results (`shopwise archive query --stack`): they may quote archived events, so they go in a day
ATHENA_RESULTS_PREFIX = "athena/"
ATHENA_RESULTS_DAYS = 1

# drift alarm thresholds (shopwise_jobs.drift's report and the CloudWatch alarms that start a retrain)
ITERATOR_AGE_ALARM_S = 300  # the updater this far behind the stream for 5 minutes: an alarm
PSI_ALARM = 0.2  # population stability index of a feature or of the event-type mix: over 0.2 it has shifted
NEW_ITEM_ALARM = 0.3  # share of recent interactions on items the serving model does not know
UNKNOWN_SHOPPER_ALARM = 0.6  # share of recently active shoppers it does not know
RECOMMENDATIONS_PREFIX = "recommendations/"
LIST_IMPORTS_PREFIX = "lists/"  # a load's staged DynamoDB JSON, one prefix per version and slot, imported from S3
LIST_IMPORTS_DAYS = 2
CAMPAIGNS_PREFIX = "campaigns/"  # campaign runs' exports
ERASURES_PREFIX = "privacy/erasures/"  # erasures not purged yet: what training, the load and the purge job skip
TRANSFORM_PREFIX = "transform/"  # each version's batch-transform request objects (shopwise.lifecycle.transform)

# What the stack tells an operator's CLI (``shopwise --stack NAME``), as CloudFormation outputs: output key -> the
# function environment variable it fills (the CLI runs the same data-access code the functions run); and the rest.
STACK_OUTPUTS = {
    "FeaturesTable": FEATURES.env_var,
    "ItemsTable": ITEMS.env_var,
    "ListsTableStem": LISTS_ENV,
    "ConfigTable": CONFIG.env_var,
    "LedgerTable": LEDGER.env_var,
    "EventsStream": "EVENTS_STREAM",
    "ArchiveBucket": "ARCHIVE_BUCKET",
    "ArtifactsBucket": "ARTIFACTS_BUCKET",
    "FailureQueueUrl": "FAILED_EVENTS_QUEUE_URL",
    "PseudonymKey": "PSEUDONYM_KEY_SECRET",
    "ShopperTokenKey": "SHOPPER_TOKEN_SECRET",
}
OTHER_OUTPUTS = (
    "ApiUrl",
    "RetrainStateMachine",
    "DriftStateMachine",
    "PurgeStateMachine",
    "ImportStateMachine",  # `shopwise import`: the import function or job, by the upload's size
    "SageMakerRole",  # `shopwise train --remote`: the job's role, image and source directory
    "SageMakerImage",
    "SageMakerSource",
    "ArchiveDatabase",  # `shopwise archive query`: the archive's Glue database and Athena workgroup
    "ArchiveWorkgroup",
    "DatasetJob",  # `shopwise dataset build`: the Glue job building the training data set on Spark
    "ArchiveConvertJob",  # `shopwise archive convert`: the Glue job rewriting gzip JSON objects as Parquet
)
ENVIRONMENT_TAG = "environment"  # the stack's tag naming its environment (its settings in ENVIRONMENTS)

# CORS: what a browser on an allowed origin may send (the stack's HTTP API and the local one agree)
CORS_METHODS = ("GET", "POST", "OPTIONS")
CORS_HEADERS = ("authorization", "content-type")
CORS_MAX_AGE = 7200  # seconds a browser may reuse a preflight answer (Chrome's cap)

ENVIRONMENTS: dict[str, EnvironmentConfig] = {
    "dev": EnvironmentConfig(
        name="dev",
        stream_shards=1,
        # none: a dev stack's first request after a quiet spell waits for a cold start (~0.4 s) rather than paying
        # $11 a month for one warm environment, its largest standing charge but the stream shard (`shopwise cost`)
        provisioned_concurrency=0,
        retrain_schedule="cron(0 3 * * ? *)",
        recommendations_ttl_days=7,
        retain_data=False,
        log_retention_days=14,
        api_throttle_rate=50,
        api_throttle_burst=100,
        allowed_origins=("http://localhost:3000", "http://localhost:8080"),
        throttles={
            "reads": (50, 100),
            "events": (50, 100),
            "visitors": (10, 20),
            "server": (50, 100),
            "admin": (5, 10),
        },
    ),
    "prod": EnvironmentConfig(
        name="prod",
        stream_shards=4,
        provisioned_concurrency=10,
        # the transform's share of the daily retrain's 2 hours: 10 M shoppers (the design envelope) need 17
        # ml.m5.xlarge within 15 minutes at the measured 170 users a second a worker (shopwise.lifecycle.transform),
        # the instance-hours of 9 for 30 minutes and a start each; a store of a million, 2
        transform_budget_minutes=15,
        transform_max_instances=32,
        # the envelope's 10 M lists and 2 M item rows staged for the import in 2.5 minutes at 20 (bench_load.py);
        # the import itself takes no write units and no functions
        load_concurrency=20,
        dataset_engine="spark",
        # 16 vCPU, 12 of them executors: at bench_dataset's rates (4,188 events/s a core read back) a window of ~30 M
        # events in ~10 minutes; `shopwise cost` sizes the count for a load (the envelope: 101 for half an hour)
        dataset_workers=4,
        # the dashboard's latency, error, iterator-age and failure metrics come from every request and batch, not traces
        trace_requests=False,
        retrain_schedule="cron(0 3 * * ? *)",
        recommendations_ttl_days=7,
        retain_data=True,
        log_retention_days=90,
        api_throttle_rate=1000,
        api_throttle_burst=2000,
        throttles={
            "reads": (1000, 2000),
            "events": (1500, 3000),
            "visitors": (100, 200),
            "server": (1000, 2000),
            "admin": (20, 40),
        },
    ),
    "local": EnvironmentConfig(
        name="local",
        stream_shards=2,  # two, so the local stack (and every test) has cross-shard merges and retries
        # two containers, so every local retrain spreads its requests as AWS does
        transform_min_instances=2,
        transform_max_instances=2,
        provisioned_concurrency=0,
        retrain_schedule="manual",
        drift_schedule="manual",
        recommendations_ttl_days=7,
        retain_data=False,
        # smaller than a deployed stack's: the demo's and the tests' events come in more batches, interleaving more
        stream_batch_size=100,
        allowed_origins=("http://127.0.0.1:*", "http://localhost:*"),
        # a stock change shows on the next answer: the demo and the end-to-end tests mark items out of stock and ask
        # at once (the cache itself is tested with its own reader)
        stock_cache_seconds=0.0,
    ),
}


@dataclass(frozen=True)
class Lifecycle:
    """One S3 lifecycle rule of a bucket (the stack's, and the local buckets' alike)."""

    prefix: str
    expire_days: int = 0  # current objects expire (0: never)
    noncurrent_days: int = 0  # replaced versions expire (versioned buckets)
    intelligent_tiering_days: int = 0  # objects move to Intelligent-Tiering


def lifecycle_rules(env: EnvironmentConfig, bucket: str) -> tuple[Lifecycle, ...]:
    """What each bucket keeps and for how long: archived events ``archive_events_days`` (Intelligent-Tiering after
    30 days), Firehose's failure records ``archive_errors_days`` (they hold whole events, and nothing rewrites
    them), the artifacts' replaced versions ``artifacts_noncurrent_days`` (the current ones live as long as the
    registry needs them), Athena's query results ``ATHENA_RESULTS_DAYS``, the data set's kept parses its window."""
    if bucket == ARCHIVE_BUCKET:
        return (
            Lifecycle(ARCHIVE_EVENTS_PREFIX, expire_days=env.archive_events_days, intelligent_tiering_days=30),
            Lifecycle(ARCHIVE_ERRORS_PREFIX, expire_days=env.archive_errors_days),
        )
    if bucket == ARTIFACTS_BUCKET:
        return (
            Lifecycle("", noncurrent_days=env.artifacts_noncurrent_days),
            Lifecycle(ATHENA_RESULTS_PREFIX, expire_days=ATHENA_RESULTS_DAYS),
            # a day's kept parse is written after the day ends: once older than the data set's window it is never
            # read again (and never outlives the archive it came from)
            Lifecycle(PARSED_DAYS_PREFIX, expire_days=min(env.dataset_days + 2, env.archive_events_days)),
            # a load's staged lists: deleted by the load that imported them; a failed load's within days
            Lifecycle(LIST_IMPORTS_PREFIX, expire_days=LIST_IMPORTS_DAYS),
        )
    raise ValueError(f"no lifecycle for bucket {bucket!r}")


def s3_lifecycle(rules: tuple[Lifecycle, ...]) -> dict[str, Any]:
    """The rules as PutBucketLifecycleConfiguration takes them (the local stack applies them this way)."""
    out = []
    for n, rule in enumerate(rules):
        doc: dict[str, Any] = {"ID": f"rule-{n}", "Status": "Enabled", "Filter": {"Prefix": rule.prefix}}
        if rule.expire_days:
            doc["Expiration"] = {"Days": rule.expire_days}
        if rule.noncurrent_days:
            doc["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule.noncurrent_days}
        if rule.intelligent_tiering_days:
            doc["Transitions"] = [{"Days": rule.intelligent_tiering_days, "StorageClass": "INTELLIGENT_TIERING"}]
        out.append(doc)
    return {"Rules": out}


def instance_vcpus(instance_type: str) -> int:
    """vCPUs of a SageMaker ml.* general-purpose or compute instance: large 2, xlarge 4, Nxlarge 4N."""
    size = instance_type.rsplit(".", 1)[-1]
    if size == "large":
        return 2
    if size == "xlarge":
        return 4
    if size.endswith("xlarge") and size.removesuffix("xlarge").isdigit():
        return int(size.removesuffix("xlarge")) * 4
    raise ValueError(f"cannot tell the vCPUs of instance type {instance_type!r}")


def environment(name: str) -> EnvironmentConfig:
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        known = ", ".join(sorted(ENVIRONMENTS))
        raise ValueError(f"unknown environment {name!r}: expected one of {known}") from None
