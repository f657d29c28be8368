"""Lambda functions packaged without Docker: the handler folder as code, the core package and the third-party
dependencies as two layers built by ``make build`` (pip --platform ... --only-binary=:all: --target ...)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from shopwise.config import EnvironmentConfig
from shopwise_cdk.constants import COLUMNAR_LAYER_DIR, CORE_LAYER_DIR, DEPS_LAYER_DIR, LAMBDAS_DIR
from shopwise_cdk.nag import XRAY, acknowledge

# what the functions' Powertools metrics are published under (namespace, and the service as their one dimension)
NAMESPACE = "shopwise"
SERVICE = "shopwise"


def shopwise_metric(name: str, statistic: str = "Maximum", period: Duration | None = None) -> cloudwatch.Metric:
    """A metric the functions (or the drift function) publish, as CloudWatch names it."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic=statistic,
        period=period or Duration.days(1),
    )


def _require_build() -> None:
    missing = [str(p) for p in (CORE_LAYER_DIR, DEPS_LAYER_DIR, COLUMNAR_LAYER_DIR) if not (p / "python").is_dir()]
    if missing:
        raise FileNotFoundError(f"layer build output missing ({', '.join(missing)}): run `make build` first")


class Layers(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        _require_build()
        self.core = lambda_.LayerVersion(
            self,
            "Core",
            code=lambda_.Code.from_asset(str(CORE_LAYER_DIR)),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            description="shopwise core package: domain, features, serving logic, data access",
        )
        self.dependencies = self._wheels(
            "Dependencies", DEPS_LAYER_DIR, "aws-lambda-powertools, pynamodb, pydantic (manylinux2014_x86_64 wheels)"
        )
        # only for the functions that write the archive's Parquet (shopwise.archive): the request path never has it
        self.columnar = self._wheels(
            "Columnar", COLUMNAR_LAYER_DIR, "pyarrow (manylinux_2_28_x86_64 wheel, without headers and tests)"
        )

    def _wheels(self, construct_id: str, folder: Path, description: str) -> lambda_.LayerVersion:
        """A layer of third-party wheels built for the functions' runtime and architecture (``make build``)."""
        return lambda_.LayerVersion(
            self,
            construct_id,
            code=lambda_.Code.from_asset(str(folder)),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description=description,
        )


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    env: EnvironmentConfig,
    layers: Layers,
    environment: dict[str, str],
    timeout: Duration | None = None,
    memory_mb: int | None = None,
    description: str = "",
    log_days: int | None = None,
    columnar: bool = False,
    per_request: bool = False,
) -> lambda_.Function:
    """A function whose code is ``lambdas/<name>/``, with its own log group and X-Ray tracing. ``log_days``: for a
    function whose log lines can name a shopper, kept shorter than the erasure bound (``shopper_log_days``).
    ``columnar``: with the pyarrow layer too (a function that writes the archive's Parquet). ``per_request``: a
    function the traffic invokes (each API request, or each of the stream's batches), actively traced only where the
    environment's ``trace_requests`` says."""
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=log_retention(log_days or env.log_retention_days),
        removal_policy=RemovalPolicy.RETAIN if env.retain_data else RemovalPolicy.DESTROY,
    )
    # An explicit role instead of AWSLambdaBasicExecutionRole: it may write to this function's log group only.
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"shopwise {name} function",
    )
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        construct_id,
        role=role,
        runtime=lambda_.Runtime.PYTHON_3_12,
        architecture=lambda_.Architecture.X86_64,
        handler="handler.lambda_handler",
        code=lambda_.Code.from_asset(str(LAMBDAS_DIR / name), exclude=["__pycache__", "*.pyc"]),
        layers=[layers.core, layers.dependencies, *([layers.columnar] if columnar else [])],
        timeout=timeout or Duration.seconds(30),
        memory_size=memory_mb or env.lambda_memory_mb,
        tracing=lambda_.Tracing.PASS_THROUGH if per_request and not env.trace_requests else lambda_.Tracing.ACTIVE,
        log_group=log_group,
        description=description,
        environment={
            "POWERTOOLS_SERVICE_NAME": SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "SHOPWISE_ENV": env.name,
            **environment,
        },
    )
    acknowledge(role, {"AwsSolutions-IAM5[Resource::*]": XRAY})
    return function


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def log_retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch retention that keeps logs at least ``days`` days."""
    return _RETENTION[min((d for d in _RETENTION if d >= days), default=365)]
