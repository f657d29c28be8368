"""Which stack the CLI operates: the running local stack (the default), or a deployed one named with ``--stack``.

A deployed stack is resolved from its CloudFormation outputs (``shopwise.config.STACK_OUTPUTS``: tables, stream,
buckets, failure queue, secrets; the API URL; the state machines) and its ``environment`` tag, with the operator's
own credentials (``--profile``, ``--region`` or the usual AWS settings). The CLI then runs the same data-access
code the functions run, against that stack. The local stack registers the same outputs in the local endpoint's
CloudFormation when it starts, so ``--stack shopwise-local`` (with ``AWS_ENDPOINT_URL`` pointing at the local
endpoint) goes through exactly this path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopwise import config
from shopwise.dal.stacks import StackMissing, put_stack, stack_outputs
from shopwise.settings import get_settings
from shopwise_local.endpoint import reconnect


class StackNotFound(RuntimeError):
    pass


RUNTIME_OUTPUT = "Runtime"  # "local" on the local stack's registration: its jobs run in this machine's processes
# the local stack's SageMaker: the endpoint records the SDK's requests, the local runner executes them with the
# repository's own entrypoints (no image, no role is used; these only fill the request as the stack's outputs do)
LOCAL_SAGEMAKER = {
    "role": "arn:aws:iam::123456789012:role/shopwise-local-sagemaker",
    "image": "local/sagemaker-scikit-learn:1.2-1-cpu-py3",
    "source": "file://sagemaker_jobs",
}


@dataclass(frozen=True)
class Target:
    name: str  # "local" (the running local stack) or the CloudFormation stack's name
    environment: str  # its settings in shopwise.config.ENVIRONMENTS
    api_url: str
    function_environment: dict[str, str]
    state_machines: dict[str, str] = field(default_factory=dict)  # retrain, drift, purge, import -> ARN (deployed)
    deployed: bool = False
    # what a SageMaker job launched from the CLI runs with: role, image, source (``shopwise_local.remote``)
    sagemaker: dict[str, str] = field(default_factory=lambda: dict(LOCAL_SAGEMAKER))
    # the archive's Glue database and Athena workgroup (deployed); the local archive is queried with DuckDB
    archive: dict[str, str] = field(default_factory=dict)
    dataset_job: str = ""  # the Glue job that builds the training data set (deployed)
    convert_job: str = ""  # the Glue job that converts the archive's gzip JSON objects (deployed)

    def activate(self) -> Target:
        """Point this process at the target: the functions' environment, fresh clients and settings."""
        os.environ.update(self.function_environment)
        os.environ["SHOPWISE_ENV"] = self.environment
        reconnect()  # clients made before hold the old settings
        get_settings.cache_clear()
        return self


def stack_template(outputs: dict[str, str]) -> dict[str, Any]:
    """A CloudFormation template whose only content is the outputs (what the local stack registers)."""
    return {
        "Description": "shopwise local stack: its resources live in the local endpoint; these are its coordinates",
        "Resources": {"Coordinates": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items() if value},
    }


def register_local(name: str, environment: str, function_environment: dict[str, str], api_url: str) -> None:
    """Record the local stack's coordinates as a CloudFormation stack in the local endpoint (replacing an older
    registration of the same name)."""
    by_variable = {variable: output for output, variable in config.STACK_OUTPUTS.items()}
    outputs = {by_variable[k]: v for k, v in function_environment.items() if k in by_variable}
    outputs["ApiUrl"] = api_url
    # its jobs and functions run in this machine's processes (no state machines here): a target resolved from these
    # outputs runs them as the local target does
    outputs[RUNTIME_OUTPUT] = "local"
    outputs.update({f"SageMaker{kind.title()}": value for kind, value in LOCAL_SAGEMAKER.items()})
    put_stack(name, stack_template(outputs), {config.ENVIRONMENT_TAG: environment})


def resolve_stack(name: str) -> Target:
    """A deployed stack's coordinates from CloudFormation (the operator's credentials and region)."""
    try:
        outputs, tags = stack_outputs(name)
    except StackMissing as exc:
        raise StackNotFound(f"no stack {name!r} in this account and region: {exc}") from None
    missing = sorted(set(config.STACK_OUTPUTS) - set(outputs))
    if missing:
        raise StackNotFound(
            f"stack {name!r} lacks the outputs {', '.join(missing)}: is it a shopwise stack, deployed by this version?"
        )
    environment = tags.get(config.ENVIRONMENT_TAG) or name.removeprefix(f"{config.SERVICE}-")
    env = config.environment(environment)
    names = {variable: outputs[output] for output, variable in config.STACK_OUTPUTS.items()}
    from shopwise.settings import environment_variables

    runs_here = outputs.get(RUNTIME_OUTPUT) == "local"  # the local stack, registered by itself
    return Target(
        name=name,
        environment=env.name,
        api_url=outputs.get("ApiUrl", "").rstrip("/"),
        function_environment=environment_variables(env, names),
        state_machines={
            kind: outputs[f"{kind.title()}StateMachine"]
            for kind in ("retrain", "drift", "purge", "import")
            if f"{kind.title()}StateMachine" in outputs
        },
        deployed=not runs_here,
        sagemaker={
            "role": outputs.get("SageMakerRole", ""),
            "image": outputs.get("SageMakerImage", ""),
            "source": outputs.get("SageMakerSource", ""),
        },
        archive={"database": outputs.get("ArchiveDatabase", ""), "workgroup": outputs.get("ArchiveWorkgroup", "")},
        dataset_job=outputs.get("DatasetJob", ""),
        convert_job=outputs.get("ArchiveConvertJob", ""),
    )


def attach(stack: str | None, state: Path) -> Target:
    """The target the CLI's operations commands act on."""
    if stack:
        return resolve_stack(stack).activate()
    from shopwise_local.stack import StackInfo

    info = StackInfo.attach(state)
    return Target("local", "local", info.api_url.rstrip("/"), dict(info.function_environment))
