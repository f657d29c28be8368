"""Step Functions in the stack, in one place: a Lambda step (its response as the state's result, service errors
retried) and a traced state machine that logs every state (the retrain, drift and purge state machines)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct


def lambda_step(
    scope: Construct, construct_id: str, function: lambda_.IFunction, payload: dict[str, Any] | None, result_path: str
) -> tasks.LambdaInvoke:
    """Invoke a function with ``payload`` (the state's input when None); its response goes to ``result_path``."""
    return tasks.LambdaInvoke(
        scope,
        construct_id,
        lambda_function=function,
        payload=sfn.TaskInput.from_object(payload) if payload is not None else None,
        payload_response_only=True,
        retry_on_service_exceptions=True,
        result_path=result_path,
    )


def state_machine(
    scope: Construct,
    construct_id: str,
    *,
    comment: str,
    definition: sfn.IChainable,
    timeout: Duration,
    logs_id: str,
) -> sfn.StateMachine:
    """A state machine with X-Ray tracing and every state logged (a month) to its own log group ``logs_id``."""
    return sfn.StateMachine(
        scope,
        construct_id,
        comment=comment,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        timeout=timeout,
        tracing_enabled=True,
        logs=sfn.LogOptions(
            destination=logs.LogGroup(scope, logs_id, retention=logs.RetentionDays.ONE_MONTH),
            level=sfn.LogLevel.ALL,
        ),
    )
