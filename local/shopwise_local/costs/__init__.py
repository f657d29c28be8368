"""What a deployed shopwise costs a month, beside Amazon Personalize for the same load (``shopwise cost``).

Three inputs, each printed with the estimate so a reader can check it:

- **the stack**: a template ``cdk synth`` wrote (functions with their memory, architecture and tracing, provisioned
  concurrency, the stream, the delivery streams, tables, alarms, dashboards, secrets, the SageMaker instance types
  and every schedule), read by ``StackShape.from_template``;
- **measured units** (``units.json``): write and read units per event and per request, bytes per event, the size of
  a shopper's precomputed list and of an item's rows, Lambda milliseconds, each with the benchmark command that
  reproduces it;
- **prices** (``prices-<region>-<yyyy-mm>.json``): a versioned table of AWS list prices, Personalize's among them.

Quantities that depend on the load are sized for it (stream shards, provisioned concurrency) and shown beside what
the template configures; what is neither measured nor in the template is an ``Assumptions`` field with its reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from shopwise.config import ACTIVITY_SHARDS, ARCHIVE_EVENTS_PREFIX, instance_vcpus, rate_hours
from shopwise.dal.capacity import read_units_of_size
from shopwise.lifecycle import transform

HERE = Path(__file__).resolve().parent
HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1e9
KIB = 1024


def latest_prices(region: str = "us-east-1") -> Path:
    found = sorted(HERE.glob(f"prices-{region}-*.json"))
    if not found:
        known = sorted({p.name.split("-", 1)[1].rsplit("-", 2)[0] for p in HERE.glob("prices-*.json")})
        raise ValueError(f"no price table for region {region!r} (tables: {', '.join(known) or 'none'})")
    return found[-1]


def load_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


@dataclass(frozen=True)
class Load:
    """What the store sends and asks, and how big it is."""

    events_per_s: float
    requests_per_s: float
    shoppers: int  # shoppers with a profile and a precomputed list
    items: int
    retrains_per_month: float | None = None  # None: as the stack's schedule says

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True)
class Assumptions:
    """What neither the template nor a benchmark says; every field is printed with the estimate."""

    events_per_collect_request: float = 1.0  # a storefront beacon per event; batching cuts API and collect cost
    collect_ms: float = 20.0  # collect's billed time per request: validation + one PutRecords (not benchmarked)
    dynamodb_ms: float = 4.0  # an in-region DynamoDB round trip, added to the serve time measured locally
    log_bytes_per_invocation: int = 300  # Lambda's START/END/REPORT lines
    impression_log_bytes: int = 600  # the serve function's impression line per request
    training_hours: float = 1.0  # per retrain, on the template's training instance (until `make scale` fits it)
    # per retrain, each transform instance's start before it scores (not measured in AWS); the scoring follows the
    # shoppers at the plan's measured users a second a worker (shopwise.lifecycle.transform)
    transform_startup_hours: float = 0.1
    # the Glue data set job's wall time: its start, then on every executor core (G.1X: 4 vCPU; one worker is the
    # driver) the events since the last run parsed and the window's read back (each archive day is parsed once and
    # its parse kept), at the rates measured in PySpark's local mode with the feature snapshot past its fixed cost
    # (bench_dataset.py: a line through 100 k, 300 k and 600 k events on 2 cores; fixed 3.8 s and 4.9 s): every day
    # parsed 170.7 s at 600 k, every day read back 76.7 s (the newest day parsed and 11 read back: 77.5 s, where
    # these rates say 84.3)
    dataset_startup_hours: float = 0.05
    spark_events_per_core_s: float = 1822.0  # a build that parses every event of its window
    spark_reused_events_per_core_s: float = 4188.0  # one that reads every day's kept parse back
    kept_parse_bytes_per_event: float = 91.0  # the kept parses in S3 (datasets/_days/), the window's days
    dataset_target_hours: float = 1.0  # workers are sized so the data set job finishes within this
    drift_hours: float = 0.1  # per drift run
    kinesis_headroom: float = 1.25  # shards sized for the rate times this
    concurrency_headroom: float = 2.0  # provisioned concurrency: Little's law (rate x duration) times this
    xray_reservoir_per_s: float = 1.0  # Lambda active tracing: the first request each second ...
    xray_rate: float = 0.05  # ... and 5% of the rest are traced
    active_share_window: float = 0.2  # shoppers active within a campaign's window (about a week)
    active_share_daily: float = 0.05  # shoppers active on a given day
    # of the active shoppers, those a campaign may write to (an email or customer id, marketing and personalisation
    # granted): the reach index holds only them. 40-60% of shoppers are anonymous; the simulator's 60% of consenting
    # shoppers grant marketing
    reachable_share: float = 0.25
    personalize_training_hours: float | None = None  # None: the same compute as shopwise's training (4 vCPU units)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Function:
    logical_id: str
    memory_mb: int
    architecture: str
    traced: bool


@dataclass
class StackShape:
    """What the cost depends on in a synthesized template."""

    name: str
    functions: dict[str, Function]  # role -> function
    provisioned_concurrency: int
    stream_shards: int
    tables: int
    pitr: bool
    alarms: int
    dashboards: int
    secrets: int
    training_instance: str
    transform_instance: str
    # the plan step's bounds on the batch transform's instances and its time budget (EnvironmentConfig
    # .transform_sizing): how many instances a retrain gets follows the shoppers (transform.instances_for)
    transform_sizing: dict[str, int]
    drift_instance: str
    retrains_per_month: float
    drift_runs_per_month: float
    campaign_runs_per_month: float
    log_retention_days: int = 90
    archive_days: int = 400
    dataset_workers: int = 0  # the Glue data set job's G.1X workers, when the retrain runs it (the Spark engine)
    dataset_days: int = 180  # the window of archive days it reads
    dataset_flex: bool = False  # the job runs in Glue's Flex execution class (spare capacity, a lower DPU price)
    # the updater's Kinesis event source: the most records an invocation gets, and how long Lambda gathers them
    stream_batch_size: int = 100
    stream_batching_window_s: float = 0.0

    # a function's role from its logical id (the CDK construct path, hash-suffixed)
    ROLES = {
        "serve": "ServingServe",
        "collect": "IngestionCollect",
        "update": "IngestionUpdateFeatures",
        "catalog": "ServingCatalog",
        "campaigns": "CampaignsFunction",
        "load": "TrainingLoad",
        "export": "TrainingExportCatalog",
    }

    @classmethod
    def from_template(cls, template: dict[str, Any], name: str = "") -> StackShape:
        resources = template.get("Resources", {})

        def of(kind: str) -> dict[str, dict[str, Any]]:
            return {k: r.get("Properties", {}) for k, r in resources.items() if r.get("Type") == kind}

        functions: dict[str, Function] = {}
        for role, prefix in cls.ROLES.items():
            match = [(k, p) for k, p in of("AWS::Lambda::Function").items() if k.startswith(prefix) and "Logs" not in k]
            if len(match) != 1:
                raise ValueError(f"the template has {len(match)} functions for {role!r} (logical id {prefix}*)")
            logical, props = match[0]
            functions[role] = Function(
                logical_id=logical,
                memory_mb=int(props.get("MemorySize", 128)),
                architecture=(props.get("Architectures") or ["x86_64"])[0],
                traced=props.get("TracingConfig", {}).get("Mode") == "Active",
            )
        aliases = of("AWS::Lambda::Alias").values()
        concurrency = sum(
            int(a.get("ProvisionedConcurrencyConfig", {}).get("ProvisionedConcurrentExecutions", 0)) for a in aliases
        )
        streams = list(of("AWS::Kinesis::Stream").values())
        if len(streams) != 1:
            raise ValueError(f"the template has {len(streams)} Kinesis streams, expected the one events stream")
        if streams[0].get("StreamModeDetails", {}).get("StreamMode") == "ON_DEMAND":
            raise ValueError("the events stream is ON_DEMAND: this model prices provisioned shards")
        # the stream's event source (a Kinesis mapping names a starting position; the failure queue's does not)
        sources = [m for m in of("AWS::Lambda::EventSourceMapping").values() if "StartingPosition" in m]
        if len(sources) != 1:
            raise ValueError(f"the template has {len(sources)} stream event sources, expected the updater's one")
        tables = of("AWS::DynamoDB::Table")
        if any(t.get("BillingMode") != "PAY_PER_REQUEST" for t in tables.values()):
            raise ValueError("a table is not on-demand (PAY_PER_REQUEST): this model prices on-demand units")
        machines = {
            k: json.dumps(p.get("DefinitionString", "")) for k, p in of("AWS::StepFunctions::StateMachine").items()
        }
        retrain = next((d for k, d in machines.items() if k.startswith("TrainingRetrain")), "")
        drift = next((d for k, d in machines.items() if k.startswith("DriftStateMachine")), "")
        retrain_types = re.findall(r"ml\.[a-z0-9]+\.[a-z0-9]+", retrain)
        if not retrain_types:
            raise ValueError("no SageMaker instance type in the retrain state machine")
        drift_types = re.findall(r"ml\.[a-z0-9]+\.[a-z0-9]+", drift) or retrain_types[:1]
        rules = of("AWS::Events::Rule")
        # the data set job (the conversion job is run by hand, once): the one reading a window of days
        dataset = next((j for j in of("AWS::Glue::Job").values() if "--days" in j.get("DefaultArguments", {})), None)

        def runs(prefix: str, target: str) -> float:
            total = 0.0
            for key, rule in rules.items():
                expression = rule.get("ScheduleExpression")
                if not expression or not key.startswith(prefix):
                    continue
                if target and not any(target in json.dumps(t.get("Arn")) for t in rule.get("Targets", [])):
                    continue
                total += runs_per_month(expression)
            return total

        # the log groups of the functions that log per event or request (named after the function's logical id)
        retention = [
            int(p.get("RetentionInDays", 0))
            for k, p in of("AWS::Logs::LogGroup").items()
            if any(k.startswith(cls.ROLES[role]) for role in ("serve", "collect", "update"))
        ]
        expiry = [
            int(rule.get("ExpirationInDays", 0))
            for bucket in of("AWS::S3::Bucket").values()
            for rule in bucket.get("LifecycleConfiguration", {}).get("Rules", [])
            if rule.get("Prefix") == ARCHIVE_EVENTS_PREFIX and rule.get("ExpirationInDays")
        ]
        return cls(
            name=name,
            functions=functions,
            provisioned_concurrency=concurrency,
            stream_shards=int(streams[0].get("ShardCount", 1)),
            tables=len(tables),
            pitr=any(
                t.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") for t in tables.values()
            ),
            alarms=len(of("AWS::CloudWatch::Alarm")),
            dashboards=len(of("AWS::CloudWatch::Dashboard")),
            secrets=len(of("AWS::SecretsManager::Secret")),
            training_instance=retrain_types[0],
            transform_instance=retrain_types[-1],
            transform_sizing=transform_sizing(retrain),
            drift_instance=drift_types[0],
            retrains_per_month=runs("TrainingSchedule", ""),
            drift_runs_per_month=runs("DriftSchedule", ""),
            campaign_runs_per_month=runs("Campaigns", functions["campaigns"].logical_id),
            dataset_workers=int(dataset.get("NumberOfWorkers", 0)) if dataset and "glue:startJobRun" in retrain else 0,
            dataset_days=int((dataset or {}).get("DefaultArguments", {}).get("--days", 180)),
            dataset_flex=(dataset or {}).get("ExecutionClass") == "FLEX",
            stream_batch_size=int(sources[0].get("BatchSize", 100)),
            stream_batching_window_s=float(sources[0].get("MaximumBatchingWindowInSeconds", 0)),
            log_retention_days=max(retention or [90]),
            archive_days=max(expiry or [400]),
        )


def transform_sizing(retrain: str) -> dict[str, int]:
    """The plan step's sizing bounds, read from the retrain state machine's definition."""
    found = {
        key: re.findall(rf"{key}[^0-9a-z]{{0,8}}(\d+)", retrain)
        for key in ("min_instances", "max_instances", "budget_s")
    }
    if not all(found.values()):
        raise ValueError(
            f"the retrain's plan step carries no transform sizing ({sorted(k for k, v in found.items() if not v)})"
        )
    return {key: int(values[-1]) for key, values in found.items()}


def runs_per_month(expression: str) -> float:
    """How often an EventBridge schedule fires in a month: rate(N unit), or a cron whose day fields are every day
    (its minute and hour fields say how often a day)."""
    if expression.startswith("rate("):
        return HOURS_PER_MONTH / rate_hours(expression)
    if expression.startswith("cron("):
        minute, hour, day, month, weekday, *_ = expression[5:-1].split()
        if month != "*" or day not in ("*", "?") or weekday not in ("*", "?"):
            raise ValueError(f"cannot count the runs of {expression!r}: only daily crons are modelled")
        per_day = _cron_count(minute, 60) * _cron_count(hour, 24)
        return per_day * HOURS_PER_MONTH / 24
    raise ValueError(f"unknown schedule expression {expression!r}")


def _cron_count(part: str, span: int) -> int:
    if part == "*":
        return span
    if "/" in part:
        start, step = part.split("/")
        return len(range(0 if start in ("*", "0") else int(start), span, int(step)))
    return len(part.split(","))


@dataclass(frozen=True)
class Line:
    part: str  # ingest, features, serve, train, operate
    service: str
    what: str
    quantity: float
    unit: str
    dollars: float


@dataclass
class Estimate:
    load: Load
    lines: list[Line]
    sized: dict[str, tuple[int, int]]  # knob -> (sized for the load, what the template configures)
    personalize: list[Line]

    @property
    def total(self) -> float:
        return sum(line.dollars for line in self.lines)

    @property
    def personalize_total(self) -> float:
        return sum(line.dollars for line in self.personalize)

    def by_part(self) -> dict[str, float]:
        parts: dict[str, float] = {}
        for line in self.lines:
            parts[line.part] = parts.get(line.part, 0.0) + line.dollars
        return parts


def lists_bytes(load: Load, per_shopper: dict[str, Any], per_item: dict[str, Any], measure: str) -> float:
    """The bytes of a version's lists by ``measure`` (``bytes`` as stored, ``import_bytes`` as an import reads
    them): a list a shopper, a neighbours and a next-items row a product."""
    return load.shoppers * float(per_shopper[f"list_{measure}"]) + load.items * (
        float(per_item[f"neighbours_{measure}"]) + float(per_item[f"next_{measure}"])
    )


def estimate(
    shape: StackShape,
    load: Load,
    units: dict[str, Any],
    prices: dict[str, Any],
    assume: Assumptions = Assumptions(),
    as_configured: bool = False,
) -> Estimate:
    """Monthly dollars of the stack under the load, line by line, and Personalize's for the same load."""
    lines: list[Line] = []

    def add(part: str, service: str, what: str, quantity: float, unit: str, dollars: float) -> None:
        lines.append(Line(part, service, what, quantity, unit, dollars))

    ev, rps = load.events_per_s, load.requests_per_s
    events = ev * SECONDS_PER_MONTH
    requests = rps * SECONDS_PER_MONTH
    per_event, per_request = units["per_event"], units["per_request"]
    per_shopper, per_item = units["per_shopper"], units["per_item"]
    ddb, lam, fh, s3 = prices["dynamodb"], prices["lambda"], prices["firehose"], prices["s3"]
    cw = prices["cloudwatch"]
    retrains = shape.retrains_per_month if load.retrains_per_month is None else load.retrains_per_month

    def lambda_cost(part: str, role: str, invocations: float, ms_each: float, what: str) -> None:
        fn = shape.functions[role]
        price = lam[fn.architecture]
        gb_s = invocations * ms_each / 1000 * fn.memory_mb / 1024
        add(
            part,
            "Lambda",
            f"{role}: {what}",
            invocations,
            "invocations",
            invocations / 1e6 * price["request_per_million"],
        )
        add(
            part,
            "Lambda",
            f"{role}: duration ({fn.memory_mb} MB, {fn.architecture})",
            gb_s,
            "GB-s",
            gb_s * price["gb_second"],
        )
        if fn.traced:
            traced = traces_per_month(invocations, assume)
            add(
                part,
                "X-Ray",
                f"{role}: traces (active tracing)",
                traced,
                "traces",
                traced / 1e6 * prices["xray"]["trace_per_million"],
            )
        log_gb = invocations * assume.log_bytes_per_invocation / GB
        add(part, "CloudWatch Logs", f"{role}: platform log lines", log_gb, "GB", log_gb * cw["logs_ingested_gb"])

    # --- ingest: API -> collect -> Kinesis -> archive (Firehose -> S3)
    collect_requests = events / assume.events_per_collect_request if ev else 0.0
    api = prices["apigateway"]["http_request_per_million"]
    add(
        "ingest",
        "API Gateway",
        "POST /v1/events (HTTP API)",
        collect_requests,
        "requests",
        collect_requests / 1e6 * api,
    )
    lambda_cost("ingest", "collect", collect_requests, assume.collect_ms, "per request")
    record_bytes = float(per_event["record_bytes"])
    kin = prices["kinesis"]
    shards_needed = stream_shards(ev, record_bytes, assume.kinesis_headroom)
    shards = shape.stream_shards if as_configured else shards_needed
    add(
        "ingest",
        "Kinesis",
        f"{shards} provisioned shard(s)",
        shards * HOURS_PER_MONTH,
        "shard-hours",
        shards * HOURS_PER_MONTH * kin["shard_hour"],
    )
    payload_units = events * max(1, math.ceil(record_bytes / (kin["payload_unit_kb"] * KIB)))
    add(
        "ingest",
        "Kinesis",
        "PUT payload units",
        payload_units,
        "units",
        payload_units / 1e6 * kin["put_payload_unit_per_million"],
    )
    billed_kb = max(
        fh["record_rounding_kb"], math.ceil(record_bytes / KIB / fh["record_rounding_kb"]) * fh["record_rounding_kb"]
    )
    archive_in = events * billed_kb * KIB / GB
    add(
        "ingest",
        "Firehose",
        f"archive: records billed at {billed_kb} KB each",
        archive_in,
        "GB",
        archive_in * fh["ingested_gb"],
    )
    add(
        "ingest",
        "Firehose",
        "archive: record-format conversion to Parquet",
        archive_in,
        "GB",
        archive_in * fh["format_conversion_gb"],
    )
    kept_months = shape.archive_days / 30.4
    archive_gb = events * float(per_event["archive_bytes"]) * kept_months / GB
    add(
        "ingest",
        "S3",
        f"archive held ({shape.archive_days} days of Parquet)",
        archive_gb,
        "GB-month",
        archive_gb * s3["standard_gb_month"],
    )

    # --- features: the updater's writes and reads, at the batches a shard gathers (coalescing follows their size)
    batch = update_batch(ev / shards, shape.stream_batch_size, shape.stream_batching_window_s)
    updater = updater_units(units, batch)
    lambda_cost(
        "features",
        "update",
        events / batch if ev else 0.0,
        updater["update_ms"] * batch,
        f"per batch ({batch:,.0f} events a batch)",
    )
    wru = events * updater["write_units"]
    add(
        "features",
        "DynamoDB",
        "feature store + ledger writes",
        wru,
        "write units",
        wru / 1e6 * ddb["write_unit_per_million"],
    )
    rru = events * updater["read_units"]
    add("features", "DynamoDB", "updater reads", rru, "read units", rru / 1e6 * ddb["read_unit_per_million"])

    # --- serve
    serve_ms = float(per_request["serve_ms"]) + assume.dynamodb_ms
    add("serve", "API Gateway", "recommendation requests (HTTP API)", requests, "requests", requests / 1e6 * api)
    needed = provisioned_concurrency(rps, serve_ms, assume.concurrency_headroom)
    concurrency = shape.provisioned_concurrency if as_configured else needed
    fn = shape.functions["serve"]
    price = lam[fn.architecture]
    gb = fn.memory_mb / 1024
    held = concurrency * gb * SECONDS_PER_MONTH
    add(
        "serve",
        "Lambda",
        f"serve: provisioned concurrency {concurrency}",
        held,
        "GB-s",
        held * price["provisioned_gb_second"],
    )
    busy = requests * serve_ms / 1000 * gb
    add(
        "serve",
        "Lambda",
        f"serve: requests on provisioned concurrency ({fn.memory_mb} MB)",
        busy,
        "GB-s",
        busy * price["provisioned_duration_gb_second"],
    )
    add("serve", "Lambda", "serve: requests", requests, "invocations", requests / 1e6 * price["request_per_million"])
    if fn.traced:
        traced = traces_per_month(requests, assume)
        add(
            "serve",
            "X-Ray",
            "serve: traces (active tracing)",
            traced,
            "traces",
            traced / 1e6 * prices["xray"]["trace_per_million"],
        )
    log_gb = requests * (assume.log_bytes_per_invocation + assume.impression_log_bytes) / GB
    add(
        "serve",
        "CloudWatch Logs",
        "serve: platform and impression lines",
        log_gb,
        "GB",
        log_gb * cw["logs_ingested_gb"],
    )
    reads = requests * float(per_request["read_units"])
    add("serve", "DynamoDB", "profile and list reads", reads, "read units", reads / 1e6 * ddb["read_unit_per_million"])
    # impression lines reach Firehose through the serve log group's subscription: batched, so no per-line rounding
    impressions = requests * assume.impression_log_bytes / GB
    add(
        "serve",
        "Firehose",
        "impressions (log subscription, converted to Parquet)",
        impressions,
        "GB",
        impressions * (fh["ingested_gb"] + fh["format_conversion_gb"]),
    )

    # --- train: the scheduled retrain, its load, the drift job, the catalog export
    sm = prices["sagemaker"]["instance_hour"]
    per_instance = instance_vcpus(shape.transform_instance)  # model-server workers
    instances = transform.instances_for(load.shoppers, per_instance, **shape.transform_sizing)
    scoring_s = transform.plan_seconds(load.shoppers, per_instance, instances)
    transform_hours = assume.transform_startup_hours + scoring_s / 3600
    for what, instance, hours in (
        ("training job", shape.training_instance, assume.training_hours * retrains),
        (
            f"batch transform ({instances} instances, {transform_hours * 60:.0f} min a run)",
            shape.transform_instance,
            transform_hours * instances * retrains,
        ),
        ("drift job", shape.drift_instance, assume.drift_hours * shape.drift_runs_per_month),
    ):
        if instance not in sm:
            raise ValueError(f"no price for {instance} in the price table")
        add("train", "SageMaker", f"{what} ({instance})", hours, "instance-hours", hours * sm[instance])
    workers_needed = 0
    if shape.dataset_workers:
        window = ev * shape.dataset_days * 86400
        new = min(window, events / max(retrains, 1.0))  # the events archived since the last run: parsed once
        workers_needed = dataset_workers(window, assume, new)
        workers = shape.dataset_workers if as_configured else workers_needed
        hours = dataset_hours(window, workers, assume, new)
        dpu_hours = hours * workers * retrains  # a G.1X worker is one DPU
        add(
            "train",
            "Glue",
            f"data set on Spark ({workers} G.1X{', Flex' if shape.dataset_flex else ''}, "
            f"{new / window * shape.dataset_days:.3g} of {shape.dataset_days} days new: {hours * 60:.0f} min)",
            dpu_hours,
            "DPU-hours",
            dpu_hours * prices["glue"]["flex_dpu_hour" if shape.dataset_flex else "dpu_hour"],
        )
        kept_gb = window * assume.kept_parse_bytes_per_event / GB
        add(
            "train",
            "S3",
            f"the data set's kept parses ({shape.dataset_days} days)",
            kept_gb,
            "GB-month",
            kept_gb * s3["standard_gb_month"],
        )
    # the load imports each version's lists from S3 into a new table (shopwise.dal.recommendations): billed by the
    # gigabytes of DynamoDB JSON it reads, no write units
    import_gb = retrains * lists_bytes(load, per_shopper, per_item, "import_bytes") / GB
    add(
        "train",
        "DynamoDB",
        "load: precomputed lists imported from S3, every retrain",
        import_gb,
        "GB",
        import_gb * ddb["import_gb"],
    )
    export_units = retrains * read_units_of_size(load.items * float(per_item["catalog_bytes"]))
    add(
        "train",
        "DynamoDB",
        "catalog export: a Scan of the items table",
        export_units,
        "read units",
        export_units / 1e6 * ddb["read_unit_per_million"],
    )

    # --- operate: campaigns, storage, standing charges
    features_bytes = load.shoppers * float(per_shopper["profile_bytes"]) + load.items * float(
        per_item["features_bytes"]
    )
    # campaign runs read the reachable profiles active in their window: the reach index (keys only), those documents
    # (a stream with no events has no active shopper: the runs find their index days empty)
    window_profiles = load.shoppers * assume.active_share_window * assume.reachable_share if ev else 0.0
    # the index's entries, packed into 4 KB units, but each Query pays at least the minimum, found or not
    index_reads = max(
        index_queries_per_run() * read_units_of_size(0), read_units_of_size(window_profiles * ACTIVITY_ENTRY_BYTES)
    )
    per_run = index_reads + window_profiles * read_units_of_size(float(per_shopper["profile_bytes"]))
    campaign_units = shape.campaign_runs_per_month * per_run
    add(
        "operate",
        "DynamoDB",
        f"campaigns: reachable active profiles read per run ({shape.campaign_runs_per_month:.0f} runs)",
        campaign_units,
        "read units",
        campaign_units / 1e6 * ddb["read_unit_per_million"],
    )
    # an entry moves when its document's newest event changes day: a delete and a put, once per active day (profiles
    # active that day; items: every item, at most)
    # (the reach index too, for the reachable share of the profiles)
    index_units = (
        2 * 30.4 * (load.shoppers * assume.active_share_daily * (1 + assume.reachable_share) + load.items)
        if ev
        else 0.0
    )
    add(
        "features",
        "DynamoDB",
        "activity and reach indexes: an entry moves once per active day",
        index_units,
        "write units",
        index_units / 1e6 * ddb["write_unit_per_million"],
    )
    # the stack's tables (point-in-time recovery on), and the two slot tables the loads make (a version each, none)
    stored = (features_bytes + load.items * float(per_item["catalog_bytes"])) / GB
    lists_stored = 2 * lists_bytes(load, per_shopper, per_item, "bytes") / GB
    add(
        "operate",
        "DynamoDB",
        "table storage (the lists: two slot tables)",
        stored + lists_stored,
        "GB-month",
        (stored + lists_stored) * ddb["storage_gb_month"],
    )
    if shape.pitr:
        add("operate", "DynamoDB", "point-in-time recovery", stored, "GB-month", stored * ddb["pitr_gb_month"])
    add(
        "operate",
        "CloudWatch",
        f"{shape.dashboards} dashboard(s)",
        shape.dashboards,
        "dashboards",
        shape.dashboards * cw["dashboard_month"],
    )
    add("operate", "CloudWatch", f"{shape.alarms} alarms", shape.alarms, "alarms", shape.alarms * cw["alarm_month"])
    sec = prices["secretsmanager"]
    add(
        "operate",
        "Secrets Manager",
        f"{shape.secrets} secrets",
        shape.secrets,
        "secrets",
        shape.secrets * sec["secret_month"],
    )
    logs_gb = sum(line.quantity for line in lines if line.service == "CloudWatch Logs")
    months_kept = shape.log_retention_days / 30.4
    add(
        "operate",
        "CloudWatch Logs",
        f"log storage ({shape.log_retention_days} days kept)",
        logs_gb * months_kept,
        "GB-month",
        logs_gb * months_kept * cw["logs_stored_gb_month"],
    )

    sized = {
        "stream_shards": (shards_needed, shape.stream_shards),
        "provisioned_concurrency": (needed, shape.provisioned_concurrency),
        **({"dataset_workers": (workers_needed, shape.dataset_workers)} if shape.dataset_workers else {}),
    }
    return Estimate(load, lines, sized, personalize(load, units, prices, assume, shape, retrains))


def personalize(
    load: Load, units: dict[str, Any], prices: dict[str, Any], assume: Assumptions, shape: StackShape, retrains: float
) -> list[Line]:
    """Amazon Personalize's charges for the same load: real-time recommendations in TPS-hours (the larger of the
    campaign's minimum provisioned TPS and the actual rate, every hour), training hours, and the events ingested.
    Not included, in Personalize's favour: the collection endpoint a store still runs to forward events, automatic
    updates of User-Personalization (billed as training hours), batch recommendations for emails."""
    p = prices["personalize"]
    tps = max(float(p["min_provisioned_tps"]), load.requests_per_s)
    tps_hours = tps * HOURS_PER_MONTH
    lines = [
        Line(
            "serve",
            "Personalize",
            f"real-time recommendations at {tps:g} TPS",
            tps_hours,
            "TPS-hours",
            tiered(tps_hours, p["tps_hour_tiers"]),
        )
    ]
    if assume.personalize_training_hours is not None:
        hours = assume.personalize_training_hours * retrains
    else:
        vcpus = instance_vcpus(shape.training_instance)
        hours = assume.training_hours * retrains * vcpus / 4
    lines.append(
        Line(
            "train",
            "Personalize",
            "training (4 vCPU / 8 GiB hours)",
            hours,
            "training hours",
            hours * p["training_hour"],
        )
    )
    ingested = load.events_per_s * SECONDS_PER_MONTH * float(units["per_event"]["record_bytes"]) / GB
    lines.append(
        Line("ingest", "Personalize", "events ingested (PutEvents)", ingested, "GB", ingested * p["ingestion_gb"])
    )
    return lines


def tiered(quantity: float, tiers: list[list[Any]]) -> float:
    """Dollars for a quantity under [[up to, price], ..., [None, price]] tiers (each tier's size, in order)."""
    left, dollars = quantity, 0.0
    for size, price in tiers:
        take = left if size is None else min(left, float(size))
        dollars += take * float(price)
        left -= take
        if left <= 0:
            break
    return dollars


def dataset_core_seconds(window_events: float, assume: Assumptions, new_events: float | None = None) -> float:
    """Executor core-seconds of a data set build: the window read back from the kept parses, and the parse of the
    ``new_events`` (None: every event of the window, a first build or ``--reparse``) — the parse's own cost is
    what a full build costs a core beyond one that reads every day back."""
    reused = window_events / assume.spark_reused_events_per_core_s
    parse = 1.0 / assume.spark_events_per_core_s - 1.0 / assume.spark_reused_events_per_core_s
    return reused + max(parse, 0.0) * (window_events if new_events is None else new_events)


def dataset_hours(window_events: float, workers: int, assume: Assumptions, new_events: float | None = None) -> float:
    """The Glue data set job's wall time for a window of events (``new_events`` of them parsed, the rest read back):
    its start, then its core-seconds over every executor core (a G.1X worker has 4; one worker runs the driver)."""
    cores = 4 * max(workers - 1, 1)
    return assume.dataset_startup_hours + dataset_core_seconds(window_events, assume, new_events) / cores / 3600.0


def dataset_workers(window_events: float, assume: Assumptions, new_events: float | None = None) -> int:
    """G.1X workers (2 at least: Glue's minimum) that build the window within ``dataset_target_hours``: the
    executor cores its work needs in the time left after the start, 4 a worker, plus the driver's."""
    seconds = (assume.dataset_target_hours - assume.dataset_startup_hours) * 3600.0
    if seconds <= 0:
        raise ValueError("dataset_target_hours must be longer than dataset_startup_hours")
    cores = dataset_core_seconds(window_events, assume, new_events) / seconds
    return max(2, math.ceil(cores / 4) + 1)


def traces_per_month(invocations: float, assume: Assumptions) -> float:
    rate = invocations / SECONDS_PER_MONTH
    per_s = min(rate, assume.xray_reservoir_per_s) + assume.xray_rate * max(0.0, rate - assume.xray_reservoir_per_s)
    return per_s * SECONDS_PER_MONTH


ACTIVITY_ENTRY_BYTES = 60  # an activity-index entry: the profile key and the index key


def index_queries_per_run() -> float:
    """Activity-index Queries a campaign run makes, on average over the campaigns: a shard of each day it looks
    back over (``shopwise.dal.feature_store.active_docs``)."""
    from shopwise.campaigns.rules import CAMPAIGNS

    days = [math.ceil(spec.lookback_days()) + 1 for spec in CAMPAIGNS]
    return ACTIVITY_SHARDS * sum(days) / len(days)


def updater_units(units: dict[str, Any], batch: float) -> dict[str, float]:
    """The updater's write units, read units and milliseconds per event in batches of ``batch`` events: measured at
    a few batch sizes (``units.json``'s ``per_event_by_batch``: an entity touched twice in a batch is written once, so
    small batches cost more an event), interpolated in the logarithm of the size, the ends held beyond them."""
    table = units.get("per_event_by_batch", {}).get("batches") or {}
    if not table:
        raise ValueError("the units file has no per_event_by_batch.batches: the updater's units by batch size")
    sizes = sorted(float(size) for size in table)
    at = min(max(batch, sizes[0]), sizes[-1])
    upper = next(size for size in sizes if size >= at)
    lower = max(size for size in sizes if size <= at)
    share = 0.0 if upper == lower else math.log(at / lower) / math.log(upper / lower)

    def of(size: float) -> dict[str, Any]:
        return dict(table[f"{size:g}"])

    return {
        k: float(of(lower)[k]) + share * (float(of(upper)[k]) - float(of(lower)[k]))
        for k in ("write_units", "read_units", "update_ms")
    }


def update_batch(events_per_shard_s: float, batch_size: int, window_s: float) -> float:
    """How many records an updater invocation gets: what a shard gathers in the batching window (Lambda polls a
    shard about once a second without one), at most the batch size, at least one: a quiet stream is invoked for a
    few events at a time — each invocation a request, and a trace where tracing is on."""
    return max(1.0, min(float(batch_size), events_per_shard_s * max(window_s, 1.0)))


def stream_shards(events_per_s: float, record_bytes: float, headroom: float) -> int:
    """Provisioned shards for the rate: a shard takes 1,000 records or 1 MiB a second in, and gives 2 MiB a second out
    shared by its readers (the updater and the archive's Firehose)."""
    readers = 2
    need = max(
        events_per_s / 1000,
        events_per_s * record_bytes / (1024 * KIB),
        readers * events_per_s * record_bytes / (2 * 1024 * KIB),
    )
    return max(1, math.ceil(need * headroom))


def provisioned_concurrency(requests_per_s: float, serve_ms: float, headroom: float) -> int:
    """Environments to keep warm: requests in flight (rate x duration, Little's law) times the headroom, at least
    one so no request waits for a cold start; none with no traffic at all."""
    if requests_per_s <= 0:
        return 0
    return max(1, math.ceil(requests_per_s * serve_ms / 1000 * headroom))


def render(
    estimates: Iterable[Estimate],
    shape: StackShape,
    units_path: Path,
    prices_path: Path,
    units: dict[str, Any],
    prices: dict[str, Any],
    assume: Assumptions,
    detail: bool,
) -> str:
    """The estimates as text: inputs and assumptions, a line-by-line table per load (``detail``), and a summary."""
    estimates = list(estimates)
    out = [
        f"stack: {shape.name} — functions {', '.join(f'{r} {f.memory_mb} MB {f.architecture}' for r, f in shape.functions.items())}; "
        f"{shape.retrains_per_month:.0f} retrains, {shape.drift_runs_per_month:.0f} drift runs and "
        f"{shape.campaign_runs_per_month:.0f} campaign runs a month; training on {shape.training_instance}",
        f"prices: {prices_path.name} ({prices['region']}, list prices as of {prices['as_of']}; no free tier)",
        f"measured units: {units_path.name} (measured {units['measured']} at {units['commit']}): "
        + "; ".join(f"{k}: {v}" for k, v in units["sources"].items()),
        "assumptions: " + ", ".join(f"{k}={v}" for k, v in assume.describe().items()),
        "",
    ]
    if detail:
        for est in estimates:
            out.append(
                f"== {est.load.events_per_s:g} events/s, {est.load.requests_per_s:g} requests/s, "
                f"{est.load.shoppers:,} shoppers, {est.load.items:,} items"
            )
            for knob, (sized, configured) in est.sized.items():
                note = "" if sized == configured else f" (the template configures {configured})"
                out.append(f"   {knob}: {sized} for this load{note}")
            out.append(f"   {'part':<9}{'service':<17}{'what':<66}{'quantity':>16} {'unit':<15}{'$/month':>10}")
            for line in sorted(est.lines, key=lambda x: -x.dollars):
                if line.dollars < 0.005 and line.quantity == 0:
                    continue
                out.append(
                    f"   {line.part:<9}{line.service:<17}{line.what[:65]:<66}{line.quantity:>16,.1f} {line.unit:<15}{line.dollars:>10,.2f}"
                )
            out.append(f"   {'shopwise total':<108}{est.total:>10,.2f}")
            for line in est.personalize:
                out.append(
                    f"   {line.part:<9}{line.service:<17}{line.what[:65]:<66}{line.quantity:>16,.1f} {line.unit:<15}{line.dollars:>10,.2f}"
                )
            out.append(f"   {'Amazon Personalize total (same load)':<108}{est.personalize_total:>10,.2f}")
            out.append("")
    out.append(
        "| requests/s | events/s | shoppers | items | shopwise $/month | largest parts | Amazon Personalize $/month | ratio |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for est in estimates:
        parts = sorted(est.by_part().items(), key=lambda kv: -kv[1])[:3]
        out.append(
            f"| {est.load.requests_per_s:g} | {est.load.events_per_s:g} | {est.load.shoppers:,} | {est.load.items:,} | "
            f"{est.total:,.0f} | {', '.join(f'{k} {v:,.0f}' for k, v in parts)} | {est.personalize_total:,.0f} | "
            f"{est.total / est.personalize_total:.2f} |"
        )
    return "\n".join(out)


def as_json(est: Estimate) -> dict[str, Any]:
    return {
        "load": asdict(est.load),
        "sized": {k: {"for_load": a, "configured": b} for k, (a, b) in est.sized.items()},
        "total": round(est.total, 2),
        "by_part": {k: round(v, 2) for k, v in est.by_part().items()},
        "lines": [asdict(line) for line in est.lines],
        "personalize_total": round(est.personalize_total, 2),
        "personalize": [asdict(line) for line in est.personalize],
        "ratio": round(est.total / est.personalize_total, 4) if est.personalize_total else None,
    }
