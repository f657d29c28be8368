"""One place for the logger, tracer and metrics every function uses."""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics

# A request that records no business metric (health, OpenAPI) is normal here, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service="shopwise")


def __getattr__(name: str) -> Any:
    """``tracer`` is made on first use: the X-Ray SDK it loads costs about 200 ms of import, which the serve
    function (latency-bound, traced by Lambda's active tracing alone) does not pay."""
    if name == "tracer":
        from aws_lambda_powertools import Tracer

        globals()["tracer"] = Tracer(service="shopwise")
        return globals()["tracer"]
    raise AttributeError(name)


metrics = Metrics(namespace="shopwise", service="shopwise")
