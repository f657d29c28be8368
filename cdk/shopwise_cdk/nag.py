"""cdk-nag acknowledgements, attached to the construct whose resource raised the finding, each with its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
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
