"""Drift: the scheduled drift job, its figures as CloudWatch metrics, and the alarms that start a retrain.

Drift state machine (EventBridge schedule ``drift_schedule``): find the champion (registry function) -> the drift job
(a SageMaker job in the training image running ``drift.py`` against the champion's artefact, the feature store and
the archive's last 24 h) -> the drift function (drift.json -> EMF metrics in the ``shopwise`` namespace, named by
``shopwise.lifecycle.figures.DriftFigures``). Alarms on the drift metrics (thresholds from ``shopwise.config``) and a
performance alarm (the personalised answers' click-through falling below its anomaly-detection band) go to ALARM ->
an EventBridge rule starts the retrain state machine with the alarm's name as its trigger.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from shopwise import config
from shopwise.config import EnvironmentConfig
from shopwise.lifecycle.figures import DriftFigures
from shopwise_cdk.functions import Layers, python_function, shopwise_metric
from shopwise_cdk.nag import acknowledge, invokes_any_version
from shopwise_cdk.sagemaker import channel, sagemaker_job_role, script_job
from shopwise_cdk.storage import Storage
from shopwise_cdk.training import TrainingPipeline
from shopwise_cdk.workflows import lambda_step, state_machine


def drift_metric(name: str) -> cloudwatch.Metric:
    """A figure of the drift report, as the drift function publishes it."""
    figure = DriftFigures.figure(name)
    return shopwise_metric(figure.metric, figure.statistic)


class DriftMonitor(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        storage: Storage,
        layers: Layers,
        training: TrainingPipeline,
    ) -> None:
        super().__init__(scope, construct_id)
        self._build_job_and_function(env, storage, layers, training)
        self.state_machine = self._build_state_machine(env, storage, training)
        if env.drift_schedule != "manual":
            events.Rule(
                self,
                "Schedule",
                description="the drift job against the serving model",
                schedule=events.Schedule.expression(env.drift_schedule),
                targets=[targets.SfnStateMachine(self.state_machine)],
            )
        self.alarms = self._build_alarms(env, training)
        self._acknowledge(training)

    def _build_job_and_function(
        self, env: EnvironmentConfig, storage: Storage, layers: Layers, training: TrainingPipeline
    ) -> None:
        """The drift job's role (read the feature store's active rows, the archive and the models, write
        monitoring/) and the function that publishes its figures."""
        self.role = sagemaker_job_role(self, "JobRole", "shopwise drift jobs", training.image_account)
        storage.archive.grant_read(self.role, f"{config.ARCHIVE_EVENTS_PREFIX}*")
        storage.artifacts.grant_read(self.role, f"{config.MODELS_PREFIX}*")
        storage.artifacts.grant_write(self.role, f"{config.MONITORING_PREFIX}*")
        training.source.grant_read(self.role)
        # the active profiles and items: the feature store's activity index (keys only), then those rows; no Scan
        features = storage.tables[config.FEATURES.name]
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"], resources=[f"{features.table_arn}/index/{config.ACTIVITY_INDEX.name}"]
            )
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:BatchGetItem"], resources=[features.table_arn]))

        self.publisher = python_function(
            self,
            "Publish",
            name="drift",
            env=env,
            layers=layers,
            environment={},
            timeout=Duration.minutes(1),
            description="the drift job's figures -> CloudWatch metrics (EMF)",
        )
        self.publisher.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[storage.artifacts.arn_for_objects(f"{config.MONITORING_PREFIX}*/output/output.tar.gz")],
            )
        )

    def _build_state_machine(
        self, env: EnvironmentConfig, storage: Storage, training: TrainingPipeline
    ) -> sfn.StateMachine:
        champion = lambda_step(self, "Find the champion", training.registry, {"action": "champion"}, "$.champion")
        drift_job = script_job(
            self,
            "Drift job",
            job_name=sfn.JsonPath.format("shopwise-drift-{}", sfn.JsonPath.string_at("$$.Execution.Name")),
            image=training.image,
            role=self.role,
            source=training.source,
            program="drift.py",
            hyperparameters={
                "features_table": storage.tables[config.FEATURES.name].table_name,
                "archive_bucket": storage.archive.bucket_name,
                "hours": "24",
            },
            metrics=DriftFigures.logged(),
            channels=[channel("champion", tasks.S3Location.from_json_expression("$.champion.model_uri"))],
            output=tasks.S3Location.from_bucket(storage.artifacts, config.MONITORING_PREFIX.rstrip("/")),
            instance_type=env.training_instance_type,
            volume_gib=30,
            max_runtime=Duration.hours(2),
            result_path="$.drift",
        )
        publish = lambda_step(
            self,
            "Publish the figures",
            self.publisher,
            {"model_uri": sfn.JsonPath.string_at("$.drift.ModelArtifacts.S3ModelArtifacts")},
            "$.published",
        )
        definition = champion.next(
            sfn.Choice(self, "A model serving?")
            .when(sfn.Condition.boolean_equals("$.champion.present", True), drift_job.next(publish))
            .otherwise(sfn.Succeed(self, "No model serves yet"))
        )
        return state_machine(
            self,
            "StateMachine",
            comment="find the champion -> drift job -> publish its figures as CloudWatch metrics",
            definition=definition,
            timeout=Duration.hours(3),
            logs_id="StateMachineLogs",
        )

    def _build_alarms(self, env: EnvironmentConfig, training: TrainingPipeline) -> list[cloudwatch.Alarm]:
        """Alarms on the drift figures and on the personalised click-through; any in ALARM starts a retrain, its
        name as the trigger."""
        alarms: list[cloudwatch.Alarm] = [
            cloudwatch.Alarm(
                self,
                f"{figure.metric}Alarm",
                alarm_name=env.physical_name(f"drift-{figure.metric}"),
                alarm_description=f"{figure.means} above {figure.alarm}: retrain",
                metric=shopwise_metric(figure.metric),
                threshold=figure.alarm,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            for figure in DriftFigures.alarmed()
            if figure.alarm is not None
        ]
        # performance: the personalised answers' click-through below what its own history makes expected
        alarms.append(
            cloudwatch.AnomalyDetectionAlarm(
                self,
                "PersonalisedCTRAlarm",
                alarm_name=env.physical_name("performance-PersonalisedCTR"),
                alarm_description="the click-through of personalised answers fell below its expected band: retrain",
                metric=drift_metric("personalised_ctr"),
                std_devs=2,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_LOWER_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
        events.Rule(
            self,
            "RetrainOnDrift",
            description="a drift or performance alarm in ALARM starts the retrain state machine",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                resources=[a.alarm_arn for a in alarms],
                detail={"state": {"value": ["ALARM"]}},
            ),
            targets=[
                targets.SfnStateMachine(
                    training.state_machine,
                    input=events.RuleTargetInput.from_object(
                        {"trigger": f"alarm: {events.EventField.from_path('$.detail.alarmName')}"}
                    ),
                )
            ],
        )
        return alarms

    def _acknowledge(self, training: TrainingPipeline) -> None:
        acknowledge(
            self.role,
            {
                "AwsSolutions-IAM5[Action::s3:GetObject*]": "Read-only S3 grants (CDK's grant_read action group).",
                "AwsSolutions-IAM5[Action::s3:GetBucket*]": "Read-only S3 grants (CDK's grant_read action group).",
                "AwsSolutions-IAM5[Action::s3:List*]": "Read-only S3 grants (CDK's grant_read action group).",
                "AwsSolutions-IAM5[Action::s3:DeleteObject*]": "CDK's grant_write action group, limited to the "
                "monitoring/ prefix of the artifacts bucket.",
                "AwsSolutions-IAM5[Action::s3:Abort*]": "CDK's grant_write action group (multipart uploads), limited "
                "to the monitoring/ prefix.",
                "AwsSolutions-IAM5[Resource::<StorageArchiveEF4C9845.Arn>/events/*]": "The drift job reads the "
                "archive's newest day prefixes; keys are created by Firehose at run time.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/models/*]": "The champion's model.tar.gz, "
                "under the run-specific folder SageMaker names.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/monitoring/*]": "Each drift job writes "
                "its output under a run-specific folder.",
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/monitoring*]": "SageMaker writes each drift "
                "job's output under monitoring/<job>/ (grant added by the native SageMaker task).",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]": (
                    "Read access to the CDK asset object holding the job source directory."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*]": (
                    "SageMaker names the job log groups and streams (/aws/sagemaker/TrainingJobs, ...)."
                ),
                "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no "
                "resource-level permissions; PutMetricData is limited to the /aws/sagemaker/* namespaces.",
            },
        )
        assert self.publisher.role is not None
        acknowledge(
            self.publisher.role,
            {
                "AwsSolutions-IAM5[Resource::<StorageArtifacts08431D1F.Arn>/monitoring/*/output/output.tar.gz]": (
                    "The drift function reads each drift job's output.tar.gz; SageMaker names the run's folder."
                ),
            },
        )
        acknowledge(
            self.state_machine,
            {
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:training-job/*]": (
                    "Each run names its drift job after the execution; the names are not known at deploy time."
                ),
                **invokes_any_version(training.registry, self.publisher),
                "AwsSolutions-IAM5[Resource::*]": "X-Ray tracing and CloudWatch Logs delivery for the state machine "
                "have no resource-level permissions; EventBridge managed rules for .sync tasks are account-wide.",
            },
        )
