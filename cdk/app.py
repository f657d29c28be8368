"""The CDK app: `cdk synth -c env=dev` / `-c env=prod`. One stack per environment; cdk-nag's AwsSolutions checks
run at synth and fail it on any finding not acknowledged with a reason."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from shopwise.config import environment
from shopwise_cdk.stack import ShopwiseStack


def add_stack(app: cdk.App, env_name: str, nag: bool = True, code_version: str = "unknown") -> ShopwiseStack:
    # Environment-agnostic on purpose: the same template deploys to any account and region the deployer's
    # credentials point at (region-specific values, such as the SageMaker image registry, are mappings).
    env_config = environment(env_name)
    stack = ShopwiseStack(
        app,
        f"shopwise-{env_config.name}",
        env_config=env_config,
        code_version=code_version,
        description=f"shopwise recommendation backend ({env_config.name})",
    )
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack


def main() -> None:
    app = cdk.App()
    # the commit the stack is synthesized from, recorded with every model version it trains (make synth passes it)
    add_stack(
        app,
        app.node.try_get_context("env") or "dev",
        code_version=app.node.try_get_context("code_version") or "unknown",
    )
    app.synth()


if __name__ == "__main__":
    main()
