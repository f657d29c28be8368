"""cdk-nag acknowledgements, attached to the construct whose resource raised the finding, each with its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

XRAY = "X-Ray's PutTraceSegments/PutTelemetryRecords have no resource-level permissions (active tracing)."


def acknowledge(scope: IConstruct, findings: dict[str, str]) -> None:
    """``findings`` maps a finding id (e.g. "AwsSolutions-IAM5[Resource::*]") to the reason it is accepted."""
    Validations.of(scope).acknowledge(
        *[Acknowledgment(id=f"AwsSolutions::{finding}", reason=reason) for finding, reason in findings.items()]
    )


def s3_grant_actions(what: str) -> dict[str, str]:
    """The action wildcards CDK's bucket grants use (s3:GetObject*, s3:List* ...), scoped to one bucket/prefix."""
    actions = ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*")
    return {f"AwsSolutions-IAM5[Action::{a}]": f"CDK grant action group, limited to {what}." for a in actions}


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of a construct's resource, as cdk-nag's finding ids name it."""
    stack = Stack.of(construct)
    resource = construct.node.default_child or construct
    return str(stack.resolve(stack.get_logical_id(resource)))  # type: ignore[arg-type]


def invokes_any_version(*functions: lambda_.IFunction) -> dict[str, str]:
    """LambdaInvoke's standard grant: any version of each function (``<function arn>:*``)."""
    return {
        f"AwsSolutions-IAM5[Resource::<{logical_id(f)}.Arn>:*]": "Invoke any version of the function "
        f"({f.node.id}; LambdaInvoke's standard grant)."
        for f in functions
    }
