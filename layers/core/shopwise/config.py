"""One configuration per environment, read by the CDK app and the local runtime alike.

Everything that both the stack and the local stack must agree on lives here: table key schemas, the stream,
the buckets, and the per-environment settings (shards, provisioned concurrency, schedule). The CDK app builds
resources from these specs; ``shopwise_local.resources`` creates the same ones on the local endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SERVICE = "shopwise"
# the promotion gate: a candidate may be at most this much worse than the active version (and within the noise)
PROMOTION_MARGIN = 0.02


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table: its logical name, keys and TTL attribute."""

    name: str
    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    env_var: str = ""


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
    log_retention_days: int = 30
    api_throttle_rate: int = 500
    api_throttle_burst: int = 1000
    lambda_memory_mb: int = 1024
    # Kinesis -> update_features event source
    stream_batch_size: int = 100
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

    def physical_name(self, logical: str) -> str:
        return f"{SERVICE}-{self.name}-{logical}"


# Tables. `features` is the feature store: one document per profile, session, item, segment and alias (keys in
# shopwise.keys; sessions expire by TTL). `recommendations` holds precomputed lists keyed "user#<id>", "item#<id>",
# "popular#global"; `config` holds the active model version and the experiments.
FEATURES = TableSpec("features", partition_key="pk", ttl_attribute="expires_at", env_var="FEATURES_TABLE")
ITEMS = TableSpec("items", partition_key="item_id", env_var="ITEMS_TABLE")
RECOMMENDATIONS = TableSpec(
    "recommendations", partition_key="pk", ttl_attribute="expires_at", env_var="RECOMMENDATIONS_TABLE"
)
CONFIG = TableSpec("config", partition_key="pk", env_var="CONFIG_TABLE")
TABLES: tuple[TableSpec, ...] = (FEATURES, ITEMS, RECOMMENDATIONS, CONFIG)

EVENTS_STREAM = "events"
ARCHIVE_BUCKET = "archive"
ARTIFACTS_BUCKET = "artifacts"
FAILED_EVENTS_QUEUE = "update-features-failures"
# the key that pseudonymises customer ids, emails and device ids (Secrets Manager)
PSEUDONYM_KEY_SECRET = "pseudonym-key"
# the keys shopper tokens are signed with (Secrets Manager; the store's backend reads it to mint tokens)
SHOPPER_TOKEN_SECRET = "shopper-token-key"

# S3 layout, shared by the archive writer (Firehose or the local poller), the importer and the training job.
ARCHIVE_EVENTS_PREFIX = "events/"
CATALOG_KEY = "catalog/items.jsonl.gz"
MODELS_PREFIX = "models/"
MONITORING_PREFIX = "monitoring/"  # the drift jobs' outputs (drift.json in output.tar.gz)

# drift alarm thresholds (shopwise_jobs.drift's report and the CloudWatch alarms that start a retrain)
PSI_ALARM = 0.2  # population stability index of a feature or of the event-type mix: over 0.2 it has shifted
NEW_ITEM_ALARM = 0.3  # share of recent interactions on items the serving model does not know
UNKNOWN_SHOPPER_ALARM = 0.6  # share of recently active shoppers it does not know
RECOMMENDATIONS_PREFIX = "recommendations/"
TRANSFORM_REQUESTS_KEY = "transform/requests.jsonl"

# CORS: what a browser on an allowed origin may send (the stack's HTTP API and the local one agree)
CORS_METHODS = ("GET", "POST", "OPTIONS")
CORS_HEADERS = ("authorization", "content-type")
CORS_MAX_AGE = 7200  # seconds a browser may reuse a preflight answer (Chrome's cap)

ENVIRONMENTS: dict[str, EnvironmentConfig] = {
    "dev": EnvironmentConfig(
        name="dev",
        stream_shards=1,
        provisioned_concurrency=1,
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
        stream_shards=1,
        provisioned_concurrency=0,
        retrain_schedule="manual",
        drift_schedule="manual",
        recommendations_ttl_days=7,
        retain_data=False,
        stream_batch_size=100,
        allowed_origins=("http://127.0.0.1:*", "http://localhost:*"),
    ),
}


def environment(name: str) -> EnvironmentConfig:
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        known = ", ".join(sorted(ENVIRONMENTS))
        raise ValueError(f"unknown environment {name!r}: expected one of {known}") from None
