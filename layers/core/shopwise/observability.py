"""One place for the logger, tracer and metrics every function uses."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="shopwise")
tracer = Tracer(service="shopwise")
metrics = Metrics(namespace="shopwise", service="shopwise")
