"""The registry's mirror in SageMaker Model Registry: one model package per registered version, in the
environment's model package group, so a store's ML team sees shopwise's versions where they see their own models.

The config table stays the source of truth (serving reads the pointer there); a package follows its version's
status: candidate -> PendingManualApproval, active and retired -> Approved, rejected and rolled_back -> Rejected,
with the shopwise status, why, the metric and the data window as the package's metadata. Creation is idempotent by
version (the version is the request's client token), so a retried step never makes a second package.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shopwise.dal.aws import client

APPROVAL = {
    "candidate": "PendingManualApproval",
    "active": "Approved",
    "retired": "Approved",
    "rejected": "Rejected",
    "rolled_back": "Rejected",
}
MODEL_PACKAGE_GROUP_DESCRIPTION = "shopwise model versions: the registry in the config table, mirrored"
MAX_VALUE = 256  # CustomerMetadataProperties: values of at most 256 characters
MAX_DESCRIPTION = 1024


def _clip(text: str, limit: int = MAX_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def metadata(record: dict[str, Any]) -> dict[str, str]:
    """What the package says about its version, as string properties."""
    metric = str(record.get("metric", ""))
    found = {
        "shopwise_version": str(record["version"]),
        "shopwise_status": str(record.get("status", "")),
        "selected": str(record.get("selected", "")),
        "trigger": str(record.get("trigger", "")),
        "code_version": str(record.get("code_version", "")),
        "gate": str(record.get("gate", "")),
        "data_window": ",".join(f"{float(t):.0f}" for t in record.get("data_window") or []),
    }
    for split in ("validation", "test"):
        value = (record.get(split) or {}).get(metric)
        if value is not None:
            found[f"{split}_{metric}"] = f"{float(value):.6f}"
    return {key: _clip(value) for key, value in found.items() if value}


def create_package(
    group: str, record: dict[str, Any], image: str = "", environment: dict[str, str] | None = None
) -> str:
    """The version's model package (created once: the version is the client token); its ARN."""
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": _clip(f"{record['version']}: {record.get('selected', '')}", MAX_DESCRIPTION),
        "ModelApprovalStatus": APPROVAL.get(str(record.get("status")), "PendingManualApproval"),
        "CustomerMetadataProperties": metadata(record),
        "ClientToken": _token(record),  # idempotent: a retried step gets the same package
    }
    if image and record.get("model_uri"):
        container: dict[str, Any] = {"Image": image, "ModelDataUrl": record["model_uri"]}
        if environment:
            container["Environment"] = environment
        request["InferenceSpecification"] = {
            "Containers": [container],
            "SupportedContentTypes": ["application/jsonlines"],
            "SupportedResponseMIMETypes": ["application/jsonlines"],
            "SupportedTransformInstanceTypes": ["ml.m5.xlarge", "ml.m5.2xlarge", "ml.c5.xlarge"],
        }
    return str(client("sagemaker").create_model_package(**request)["ModelPackageArn"])


def _token(record: dict[str, Any]) -> str:
    return hashlib.sha256(str(record["version"]).encode()).hexdigest()[:36]


def update_package(arn: str, record: dict[str, Any]) -> None:
    """The package's approval status and metadata follow the version's status."""
    client("sagemaker").update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus=APPROVAL.get(str(record.get("status")), "PendingManualApproval"),
        ApprovalDescription=_clip(str(record.get("reason") or record.get("gate") or ""), MAX_DESCRIPTION),
        CustomerMetadataProperties=metadata(record),
    )


def describe_package(arn: str) -> dict[str, Any]:
    return dict(client("sagemaker").describe_model_package(ModelPackageName=arn))


def list_packages(group: str) -> list[dict[str, Any]]:
    """The group's packages, newest first (what the store's ML team sees)."""
    found: list[dict[str, Any]] = []
    for page in client("sagemaker").get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
        found += page.get("ModelPackageSummaryList", [])
    return sorted(found, key=lambda p: p.get("CreationTime", 0), reverse=True)


def ensure_group(group: str, description: str) -> None:
    """The environment's model package group (the stack creates it in AWS; the local stack here)."""
    sagemaker = client("sagemaker")
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except sagemaker.exceptions.ClientError:
        sagemaker.create_model_package_group(ModelPackageGroupName=group, ModelPackageGroupDescription=description)
