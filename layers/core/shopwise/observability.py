"""One place for the logger, tracer and metrics every function uses."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

# A request that records no business metric (health, OpenAPI) is normal here, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service="shopwise")
tracer = Tracer(service="shopwise")
metrics = Metrics(namespace="shopwise", service="shopwise")
