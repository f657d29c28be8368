"""CloudFormation and Step Functions, as an operator's CLI uses them: a stack's outputs and tags, registering the
local stack's coordinates, starting a state machine and following its execution."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from shopwise.dal.aws import client


class StackMissing(LookupError):
    pass


def stack_outputs(name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(outputs, tags) of a CloudFormation stack; StackMissing if there is none by that name."""
    cloudformation = client("cloudformation")
    try:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except cloudformation.exceptions.ClientError as exc:
        raise StackMissing(str(exc)) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs, {t["Key"]: t["Value"] for t in stack.get("Tags", [])}


def put_stack(name: str, template: dict[str, Any], tags: dict[str, str]) -> None:
    """Create the stack, replacing one of the same name."""
    cloudformation = client("cloudformation")
    live = {
        s["StackName"]
        for s in cloudformation.list_stacks().get("StackSummaries", [])
        if s["StackStatus"] != "DELETE_COMPLETE"
    }
    if name in live:
        cloudformation.delete_stack(StackName=name)
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def run_state_machine(
    arn: str, payload: dict[str, Any], log: Callable[[str], None], poll_s: float = 5.0
) -> tuple[str, Any]:
    """Start an execution and follow it: each state entered as it happens; its final status and output."""
    sfn = client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
    log(f"started {execution}")
    seen = 0
    while True:
        described = sfn.describe_execution(executionArn=execution)
        events = sfn.get_execution_history(executionArn=execution, maxResults=1000).get("events", [])
        for event in events[seen:]:
            entered = event.get("stateEnteredEventDetails")
            if entered:
                log(f"== {entered['name']}")
        seen = len(events)
        if described["status"] != "RUNNING":
            output = described.get("output")
            return str(described["status"]), json.loads(output) if output else described.get("cause", "")
        time.sleep(poll_s)
