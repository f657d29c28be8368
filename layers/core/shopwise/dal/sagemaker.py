"""SageMaker calls the operations code makes itself (the pipeline's jobs are Step Functions' native tasks)."""

from __future__ import annotations

from shopwise.dal.aws import client


def create_model(name: str, role: str, image: str, model_uri: str, environment: dict[str, str]) -> None:
    """A model for a batch transform: the framework image, the version's model.tar.gz, the entrypoint's environment."""
    client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=role,
        PrimaryContainer={"Image": image, "ModelDataUrl": model_uri, "Environment": environment},
    )
