"""SageMaker in the stack, in one place: the framework image the jobs run in (a region mapping), the role a job
assumes, File-mode channels, and the script-mode job as a Step Functions task waited on with .sync (the training
job, the batch transform's model and the drift job all use them)."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Aws, CfnMapping, Duration, Fn, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from shopwise_cdk.constants import SKLEARN_IMAGE_ACCOUNTS, SKLEARN_IMAGE_TAG, SKLEARN_REPOSITORY

JSON_LINES = "application/jsonlines"


def framework_image(scope: Construct) -> tuple[str, tasks.DockerImage]:
    """The scikit-learn framework image the jobs run in: its registry account in the stack's region, and the image."""
    account = sklearn_image_account(scope)
    return account, tasks.DockerImage.from_registry(framework_image_uri(account))


def framework_image_uri(account: str) -> str:
    """The image's URI (a token: the account comes from the region mapping)."""
    return Fn.join("", [account, ".dkr.ecr.", Aws.REGION, f".amazonaws.com/{SKLEARN_REPOSITORY}:{SKLEARN_IMAGE_TAG}"])


def sklearn_image_account(scope: Construct) -> str:
    """The registry account of the SageMaker scikit-learn image in the stack's region (a region mapping, so the
    stack stays environment-agnostic; a region not in the mapping fails at deploy time, by name)."""
    mapping = CfnMapping(
        scope,
        "SklearnImageAccount",
        mapping={region: {"account": account} for region, account in SKLEARN_IMAGE_ACCOUNTS.items()},
    )
    return mapping.find_in_map(Aws.REGION, "account")


def sagemaker_job_role(scope: Construct, construct_id: str, description: str, image_account: str) -> iam.Role:
    """A role SageMaker jobs assume: pull the scikit-learn image, write their logs and metrics; nothing else yet."""
    role = iam.Role(
        scope, construct_id, assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"), description=description
    )
    stack = Stack.of(scope)
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["ecr:GetAuthorizationToken"],
            resources=["*"],  # GetAuthorizationToken has no resource-level permissions
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            resources=[
                stack.format_arn(
                    service="ecr", account=image_account, resource="repository", resource_name=SKLEARN_REPOSITORY
                )
            ],
        )
    )
    grant_job_logs(role, "/aws/sagemaker/*", {"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}})
    return role


def grant_job_logs(role: iam.Role, log_groups: str, namespace: dict[str, Any]) -> None:
    """What a managed job service (SageMaker, Glue) needs to report a run: write to the log groups it names under
    ``log_groups``, and publish metrics in its namespace (``namespace``: the condition; PutMetricData has no
    resource-level permissions)."""
    stack = Stack.of(role)
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=log_groups,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )
    )
    role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"], conditions=namespace))


def channel(name: str, location: tasks.S3Location) -> tasks.Channel:
    """A File-mode input channel of a SageMaker job: every object under the location."""
    return tasks.Channel(
        channel_name=name,
        data_source=tasks.DataSource(
            s3_data_source=tasks.S3DataSource(s3_location=location, s3_data_type=tasks.S3DataType.S3_PREFIX)
        ),
    )


def script_job(
    scope: Construct,
    construct_id: str,
    *,
    job_name: str,
    image: tasks.DockerImage,
    role: iam.IRole,
    source: s3_assets.Asset,
    program: str,
    hyperparameters: dict[str, str],
    metrics: dict[str, str],
    channels: list[tasks.Channel],
    output: tasks.S3Location,
    instance_type: str,
    volume_gib: int,
    max_runtime: Duration,
    result_path: str,
    instance_count: int = 1,
) -> tasks.SageMakerCreateTrainingJob:
    """A script-mode SageMaker job in the scikit-learn image running ``program`` from the source asset, waited on
    (.sync): the training job, the drift job and the purge job."""
    return tasks.SageMakerCreateTrainingJob(
        scope,
        construct_id,
        training_job_name=job_name,
        role=role,
        algorithm_specification=tasks.AlgorithmSpecification(
            training_image=image,
            training_input_mode=tasks.InputMode.FILE,
            metric_definitions=[tasks.MetricDefinition(name=n, regex=r) for n, r in metrics.items()],
        ),
        hyperparameters={
            "sagemaker_program": program,
            "sagemaker_submit_directory": source.s3_object_url,
            **hyperparameters,
        },
        input_data_config=channels,
        output_data_config=tasks.OutputDataConfig(s3_output_location=output),
        resource_config=tasks.ResourceConfig(
            instance_count=instance_count,
            instance_type=ec2.InstanceType(instance_type.removeprefix("ml.")),
            volume_size=Size.gibibytes(volume_gib),
        ),
        stopping_condition=tasks.StoppingCondition(max_runtime=max_runtime),
        integration_pattern=sfn.IntegrationPattern.RUN_JOB,
        result_path=result_path,
    )
