"""Assertions on the synthesized templates (cdk-nag's AwsSolutions checks run in the same synth and fail it on any
finding not acknowledged)."""

import json
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import custom_resources
from aws_cdk.assertions import Match, Template

from shopwise import archive, config
from shopwise.keys import HELD_ERASURES_KEY

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cdk"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "layers"))  # build.py
from app import add_stack

pytestmark = pytest.mark.infra


def synth(env_name: str) -> Template:
    from shopwise_cdk.constants import CORE_LAYER_DIR

    if not (CORE_LAYER_DIR / "python").is_dir():
        pytest.fail("layers are not built: run `make build` (make test does it)")
    app = cdk.App()
    stack = add_stack(app, env_name, nag=True)
    app.synth()  # raises if cdk-nag reports an unacknowledged finding
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def dev() -> Template:
    return synth("dev")


@pytest.fixture(scope="module")
def prod() -> Template:
    return synth("prod")


def resources(template: Template, kind: str) -> Any:
    return template.find_resources(kind)


def test_tables_come_from_the_shared_configuration(prod: Template) -> None:
    tables = resources(prod, "AWS::DynamoDB::Table")
    names = {t["Properties"]["TableName"] for t in tables.values()}
    assert names == {f"shopwise-prod-{spec.name}" for spec in config.TABLES}
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        # a restore can bring an erased shopper back: the window is the environment's, within the erasure bound
        assert props["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True,
            "RecoveryPeriodInDays": config.environment("prod").backup_days,
        }
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert table["DeletionPolicy"] == "Retain"
    # the precomputed lists are no table of the stack's: each slot's table is made by its load's import
    assert not any("lists" in name or "recommendations" in name for name in names)


def test_dev_data_is_disposable_and_prod_data_is_kept(dev: Template) -> None:
    assert all(t["DeletionPolicy"] == "Delete" for t in resources(dev, "AWS::DynamoDB::Table").values())


def test_buckets_are_private_encrypted_and_ssl_only(prod: Template) -> None:
    buckets = resources(prod, "AWS::S3::Bucket")
    assert len(buckets) == 3  # archive, artifacts, access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "AES256"
        }
    policies = resources(prod, "AWS::S3::BucketPolicy")
    ssl_denials = [
        s
        for p in policies.values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(ssl_denials) == 3


def test_stream_consumer_has_partial_failures_bisect_bounded_retries_and_a_destination(prod: Template) -> None:
    env = config.environment("prod")
    prod.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": env.stream_retry_attempts,
            "MaximumRecordAgeInSeconds": env.stream_max_record_age_s,
            "BatchSize": env.stream_batch_size,
            # one batch per shard at a time: the per-shard sequence high-water marks of the feature store need it
            "ParallelizationFactor": 1,
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
        },
    )
    prod.has_resource_properties("AWS::Kinesis::Stream", {"ShardCount": env.stream_shards})


def test_firehose_archives_the_stream_and_the_impressions_as_parquet_of_the_archive_table(prod: Template) -> None:
    (table,) = resources(prod, "AWS::Glue::Table").values()
    described = table["Properties"]["TableInput"]
    # the Glue table is shopwise.archive's: every column, the Parquet SerDe, dt/hour partitions projected
    assert [(c["Name"], c["Type"]) for c in described["StorageDescriptor"]["Columns"]] == [
        (c.name, c.type) for c in archive.COLUMNS
    ]
    assert described["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert [k["Name"] for k in described["PartitionKeys"]] == ["dt", "hour"]
    assert described["Parameters"]["projection.enabled"] == "true"
    streams = resources(prod, "AWS::KinesisFirehose::DeliveryStream")
    assert len(streams) == 2
    by_source = {s["Properties"].get("DeliveryStreamType", "DirectPut"): s["Properties"] for s in streams.values()}
    for kind, props in by_source.items():
        destination = props["ExtendedS3DestinationConfiguration"]
        conversion = destination["DataFormatConversionConfiguration"]
        assert destination["Prefix"].startswith("events/dt=!{timestamp:yyyy-MM-dd}/hour=")
        assert destination["FileExtension"] == ".parquet" and "CompressionFormat" not in destination
        parquet = conversion["OutputFormatConfiguration"]["Serializer"]["ParquetSerDe"]
        assert parquet["Compression"] == archive.COMPRESSION.upper() and parquet["EnableDictionaryCompression"] is False
        assert conversion["SchemaConfiguration"]["TableName"] == {
            "Ref": next(iter(resources(prod, "AWS::Glue::Table")))
        }
        mappings = conversion["InputFormatConfiguration"]["Deserializer"]["OpenXJsonSerDe"].get(
            "ColumnToJsonKeyMappings", {}
        )
        if kind == "KinesisStreamAsSource":  # the storefront's events: every field under its own name
            assert mappings == {}
        else:  # the serve function's impressions: their item ids in impression_items, never in a purchase's items
            assert mappings["impression_items"] == "items" and mappings["items"] != "items"
    # Athena's results land in the artifacts bucket's athena/ prefix, encrypted, and expire
    (workgroup,) = resources(prod, "AWS::Athena::WorkGroup").values()
    configuration = workgroup["Properties"]["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_S3"


def test_serve_alias_has_the_environments_provisioned_concurrency(dev: Template, prod: Template) -> None:
    prod.has_resource_properties(
        "AWS::Lambda::Alias",
        {"Name": "live", "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 10}},
    )
    # dev keeps no warm environment: the alias is there (the API routes to it), with no provisioned concurrency
    (alias,) = resources(dev, "AWS::Lambda::Alias").values()
    assert alias["Properties"]["Name"] == "live" and "ProvisionedConcurrencyConfig" not in alias["Properties"]


# every route, who may call it and with which credential (the README's threat model), and its throttle kind
ROUTES = {
    "POST /v1/events": ("NONE", "events"),  # a browser: its shopper token, verified in the function
    "GET /v1/{proxy+}": ("NONE", "reads"),  # a browser's own lists (token); bestsellers, similar items (public)
    "POST /v1/rank": ("NONE", "reads"),  # a browser, its own shopper (token)
    "POST /v1/visitors": ("NONE", "visitors"),  # anyone: a new anonymous visitor's id and token
    "POST /v1/server/events": ("AWS_IAM", "server"),  # the store's servers
    "GET /v1/server/{proxy+}": ("AWS_IAM", "server"),
    "POST /v1/server/rank": ("AWS_IAM", "server"),
    "PUT /v1/items": ("AWS_IAM", "admin"),  # the back office
    "GET /v1/campaigns/{name}/recipients": ("AWS_IAM", "admin"),  # marketing tools
    "DELETE /v1/users/{user_id}": ("AWS_IAM", "admin"),  # the back office: an erasure request
    "GET /v1/erasures": ("AWS_IAM", "admin"),  # ... and the receipts
    "GET /v1/erasures/{erasure_id}": ("AWS_IAM", "admin"),
}


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_route_says_who_may_call_it_and_is_throttled_by_its_kind(
    name: str, dev: Template, prod: Template
) -> None:
    template = {"dev": dev, "prod": prod}[name]
    env = config.environment(name)
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"] for r in resources(template, "AWS::ApiGatewayV2::Route").values()
    }
    assert {k: r.get("AuthorizationType", "NONE") for k, r in routes.items()} == {k: a for k, (a, _) in ROUTES.items()}
    (stage,) = resources(template, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["RouteSettings"]
    assert {k: (v["ThrottlingRateLimit"], v["ThrottlingBurstLimit"]) for k, v in settings.items()} == {
        k: env.throttles[kind] for k, (_, kind) in ROUTES.items()
    }
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": env.api_throttle_rate,
        "ThrottlingBurstLimit": env.api_throttle_burst,
    }
    (api,) = resources(template, "AWS::ApiGatewayV2::Api").values()
    cors = api["Properties"].get("CorsConfiguration")
    if env.allowed_origins:  # browsers of the store's own origins only, with the two headers they need
        assert cors["AllowOrigins"] == list(env.allowed_origins) and cors["AllowHeaders"] == list(config.CORS_HEADERS)
    else:  # no origin configured: no browser may call the API until the store sets its origins
        assert cors is None
    # the serve integration targets the alias (provisioned concurrency), not $LATEST
    integrations = resources(template, "AWS::ApiGatewayV2::Integration")
    uris = [str(i["Properties"]["IntegrationUri"]) for i in integrations.values()]
    assert any("ServingLive" in uri for uri in uris)


def test_functions_run_the_project_code_with_the_core_and_deps_layers_and_tracing(
    prod: Template, dev: Template
) -> None:
    functions = {
        k: f
        for k, f in resources(prod, "AWS::Lambda::Function").items()
        if f["Properties"].get("Runtime") == "python3.12"
    }
    assert len(functions) == 12  # collect, update_features, export_catalog, load, registry, drift, serve, catalog,
    # campaigns, privacy (erasures), purge, imports
    for function in functions.values():
        props = function["Properties"]
        assert props["Handler"] == "handler.lambda_handler"
        assert len(props["Layers"]) == (3 if props["Description"].startswith("bulk import") else 2)  # + pyarrow
        # prod traces every function but the three the traffic invokes: each API request (collect, serve), the
        # stream's every batch (the updater) — Lambda's sampling can't be lowered
        per_request = props["Description"].startswith(("POST /v1/events", "GET /v1/", "Kinesis -> "))
        assert props["TracingConfig"] == {"Mode": "PassThrough" if per_request else "Active"}
        assert "AWSLambdaBasicExecutionRole" not in str(prod.to_json()["Resources"][props["Role"]["Fn::GetAtt"][0]])
    assert per_request_modes(prod) == ["PassThrough"] * 3 and per_request_modes(dev) == ["Active"] * 3


def per_request_modes(template: Template) -> list[str]:
    """The tracing mode of collect, serve and the updater, the functions the traffic invokes (dev traces them; prod
    doesn't: ``trace_requests``)."""
    return [
        f["Properties"]["TracingConfig"]["Mode"]
        for f in resources(template, "AWS::Lambda::Function").values()
        if str(f["Properties"].get("Description", "")).startswith(("POST /v1/events", "GET /v1/", "Kinesis -> "))
    ]


def state_machine_definition(template: Template, logical_prefix: str = "TrainingRetrain") -> dict[str, Any]:
    """A state machine's ASL (by the start of its logical id), CloudFormation references replaced by placeholders."""
    machines = resources(template, "AWS::StepFunctions::StateMachine")
    assert len(machines) == 4  # retrain, drift, purge, import
    body = next(m for k, m in machines.items() if k.startswith(logical_prefix))["Properties"]["DefinitionString"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    return dict(json.loads("".join(p if isinstance(p, str) else "REF" for p in parts)))


def test_pipeline_trains_gates_transforms_loads_and_promotes_with_native_sagemaker_tasks(prod: Template) -> None:
    states = state_machine_definition(prod)["States"]

    def after(name: str) -> str:
        return str(states[name]["Next"])

    assert after("Name the run") == after("Name a manual run") == "Export catalog"
    assert after("Export catalog") == "Find the champion" and after("Find the champion") == "Name the data set"
    assert after("Name the data set") == "Build the data set" and after("Build the data set") == "A model serving?"
    choice = states["A model serving?"]
    assert choice["Choices"][0]["Next"] == "Train against the champion" and choice["Default"] == "Train the first model"
    for train in ("Train against the champion", "Train the first model"):
        assert states[train]["Resource"].endswith("createTrainingJob.sync") and after(train) == "Gate"
    channels = {
        t: [c["ChannelName"] for c in states[t]["Parameters"]["InputDataConfig"]]
        for t in ("Train against the champion", "Train the first model")
    }
    assert channels == {
        "Train against the champion": ["events", "catalog", "champion"],
        "Train the first model": ["events", "catalog"],
    }
    assert states["Gate"]["Parameters"]["action"] == "gate" and after("Gate") == "Passed?"
    passed = states["Passed?"]
    assert passed["Choices"][0] == {"Variable": "$.gate.passed", "BooleanEquals": True, "Next": "Register model"}
    assert states[passed["Default"]] == {"Type": "Fail", "Error": "Rejected", "CausePath": "$.gate.reason"}
    assert after("Register model") == "Plan batch transform" and after("Plan batch transform") == "Batch transform"
    assert after("Batch transform") == "Begin load" and after("Begin load") == "Stage each output object"
    # the load: a Distributed Map of one load function per output object, bounded in parallel, then the import
    each = states["Stage each output object"]
    assert each["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert each["ItemsPath"] == "$.load_begun.keys" and each["ItemSelector"]["key.$"] == "$$.Map.Item.Value"
    assert (
        each["ItemSelector"]["action"] == "object"
        and each["MaxConcurrency"] == config.environment("prod").load_concurrency
    )
    (inner,) = each["ItemProcessor"]["States"].values()
    # the function itself as the resource: the selected item is its event, its answer (a tally) the item's result
    assert inner["Type"] == "Task" and "Parameters" not in inner and inner["ResultPath"] == "$"
    assert each["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"  # an object may take minutes
    assert after("Stage each output object") == "Start import"
    start = states["Start import"]
    assert start["Parameters"]["action"] == "start" and start["Parameters"]["tallies.$"] == "$.load_tallies"
    # the slot's table from the load before may still be being deleted: tried again, minutes in all; nothing else is
    (retry,) = [r for r in start["Retry"] if "TableNotGone" in r["ErrorEquals"]]
    assert retry["ErrorEquals"] == ["TableNotGone"]
    assert sum(retry["IntervalSeconds"] * retry["BackoffRate"] ** n for n in range(retry["MaxAttempts"])) >= 300
    # the wait loop: wait, check, again while the import is in progress, else finish (which checks the import)
    assert after("Start import") == "Wait for import" and after("Wait for import") == "Check import"
    assert states["Check import"]["Parameters"] == {"action": "check", "import_arn.$": "$.load_import.import_arn"}
    assert after("Check import") == "Import done?"
    done = states["Import done?"]
    assert done["Choices"] == [
        {"Variable": "$.load_import_state.status", "StringEquals": "IN_PROGRESS", "Next": "Wait for import"}
    ]
    assert done["Default"] == "Finish load"
    finish = states["Finish load"]["Parameters"]
    assert finish["tallies.$"] == "$.load_tallies" and finish["import_arn.$"] == "$.load_import.import_arn"
    assert finish["began_at.$"] == "$.load_begun.began_at" and after("Finish load") == "Promote"
    # the registry writes the version's request objects; the transform reads them on every instance it has
    env = config.environment("prod")
    workers = config.instance_vcpus(env.transform_instance_type)
    planned = states["Plan batch transform"]["Parameters"]
    assert (planned["users.$"], planned["items.$"]) == ("$.gate.users", "$.gate.items")  # the gate read them
    assert planned["action"] == "plan_transform" and planned["workers"] == workers
    assert (planned["min_instances"], planned["max_instances"], planned["budget_s"]) == (1, 32, 900)
    transform = states["Batch transform"]["Parameters"]
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.plan.input_uri"
    # as many instances as the plan sized for the version's users: a path into the plan's answer, not a constant
    assert transform["TransformResources"]["InstanceCount.$"] == "$.plan.instances"
    assert "InstanceCount" not in transform["TransformResources"]
    assert transform["MaxConcurrentTransforms"] == workers
    assert transform["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == str(workers)
    registry_writes = [st for st in _statements(prod, "TrainingRegistry") if "s3:PutObject" in str(st["Action"])]
    assert len(registry_writes) == 1 and json.dumps(registry_writes[0]["Resource"]).endswith('/transform/*"]]}')
    assert after("Finish load") == "Promote" and states["Promote"]["End"] is True
    assert states["Promote"]["Parameters"]["action"] == "promote"
    rule = next(
        r["Properties"]
        for r in resources(prod, "AWS::Events::Rule").values()
        if r["Properties"].get("ScheduleExpression") == config.environment("prod").retrain_schedule
    )
    assert json.loads(rule["Targets"][0]["Input"]) == {"trigger": "schedule"}


def test_sagemaker_role_is_assumed_by_sagemaker_only_and_has_no_managed_policies(prod: Template) -> None:
    roles = [
        r
        for r in resources(prod, "AWS::IAM::Role").values()
        if "sagemaker.amazonaws.com" in str(r["Properties"]["AssumeRolePolicyDocument"])
    ]
    assert len(roles) == 4  # training and transform jobs; drift jobs; purge jobs; import jobs
    assert all("ManagedPolicyArns" not in r["Properties"] for r in roles)


def test_secrets_are_generated_and_each_is_readable_only_by_the_functions_that_need_it(prod: Template) -> None:
    secrets = resources(prod, "AWS::SecretsManager::Secret")
    names = {s["Properties"]["Name"]: key for key, s in secrets.items()}
    assert set(names) == {"shopwise-prod-pseudonym-key", "shopwise-prod-shopper-token-key"}
    assert all("GenerateSecretString" in s["Properties"] for s in secrets.values())
    assert all(s["DeletionPolicy"] == "Retain" for s in secrets.values())  # losing the key splits every profile
    token = secrets[names["shopwise-prod-shopper-token-key"]]["Properties"]["GenerateSecretString"]
    assert json.loads(token["SecretStringTemplate"]) == {"current": "k1"} and token["GenerateStringKey"] == "k1"

    def readers(secret_key: str, kind: str) -> set[str]:
        """The roles (for inline policies) or the managed policies whose statements may read the secret."""
        found: set[str] = set()
        for key, policy in resources(prod, kind).items():
            statements = policy["Properties"]["PolicyDocument"]["Statement"]
            if any(
                "secretsmanager:GetSecretValue" in s["Action"] and secret_key in str(s["Resource"]) for s in statements
            ):
                roles = policy["Properties"].get("Roles")
                found |= {r["Ref"] for r in roles} if roles else {key}
        return found

    key_readers = readers(names["shopwise-prod-pseudonym-key"], "AWS::IAM::Policy")
    # pseudonymising events, looking customers up, finding a shopper to erase, pseudonymising imported history
    assert len(key_readers) == 5 and all(
        any(name in r for name in ("Collect", "Serve", "Erase", "ImportFunctionRole", "ImportJobRole"))
        for r in key_readers
    ), key_readers
    token_readers = readers(names["shopwise-prod-shopper-token-key"], "AWS::IAM::Policy")
    assert len(token_readers) == 2 and all(("Collect" in r or "Serve" in r) for r in token_readers)
    # ... and the store's servers, which mint shopper tokens: the managed policy the store attaches to their role
    minting = readers(names["shopwise-prod-shopper-token-key"], "AWS::IAM::ManagedPolicy")
    assert len(minting) == 1 and "ServerApiPolicy" in next(iter(minting))


def test_server_and_admin_routes_need_iam_and_the_stack_offers_a_policy_for_each(prod: Template) -> None:
    policies = {
        k: p["Properties"]["PolicyDocument"]["Statement"] for k, p in resources(prod, "AWS::IAM::ManagedPolicy").items()
    }
    invoke = {
        k.split("Policy")[0]: json.dumps([s["Resource"] for s in statements if s["Action"] == "execute-api:Invoke"])
        for k, statements in policies.items()
    }
    server = next(v for k, v in invoke.items() if "ServerApi" in k)
    admin = next(v for k, v in invoke.items() if "AdminApi" in k)
    for route in ("/POST/v1/server/events", "/GET/v1/server/*", "/POST/v1/server/rank"):
        assert route in server and route not in admin
    for route in ("/PUT/v1/items", "/GET/v1/campaigns/*/recipients", "/DELETE/v1/users/*", "/GET/v1/erasures/*"):
        assert route in admin and route not in server
    outputs = prod.find_outputs("*")
    assert {"ServerApiPolicy", "AdminApiPolicy", "ShopperTokenKey"} <= set(outputs)
    # ... and everything `shopwise --stack` resolves the stack by
    assert set(config.STACK_OUTPUTS) | set(config.OTHER_OUTPUTS) <= set(outputs)


def test_each_campaign_runs_on_its_schedule_one_run_at_a_time_writing_only_its_cap_rows(prod: Template) -> None:
    from shopwise.campaigns.rules import CAMPAIGNS

    rules = [r["Properties"] for r in resources(prod, "AWS::Events::Rule").values()]
    inputs = [json.loads(t["Input"]) for r in rules for t in r.get("Targets", []) if "Input" in t]
    assert sorted(i["campaign"] for i in inputs if "campaign" in i) == sorted(c.name for c in CAMPAIGNS)
    function = next(
        f["Properties"]
        for k, f in resources(prod, "AWS::Lambda::Function").items()
        if k.startswith("CampaignsFunction") and "ReservedConcurrentExecutions" in f["Properties"]
    )
    assert function["ReservedConcurrentExecutions"] == 1
    statements = _statements(prod, "CampaignsFunctionRole")
    writes = [s for s in statements if "dynamodb:BatchWriteItem" in str(s["Action"])]
    assert len(writes) == 1 and writes[0]["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["sent#*"]}
    }
    assert not [s for s in statements if "dynamodb:PutItem" in str(s["Action"]) or "secretsmanager" in str(s["Action"])]
    # members come from the reach index (keys only: the profiles it may write to) and the profiles it names: the
    # function may not Scan, nor Query the index of every active shopper
    assert not [s for s in statements if "dynamodb:Scan" in str(s["Action"])]
    (query,) = [s for s in statements if "dynamodb:Query" in str(s["Action"])]
    assert query["Action"] == "dynamodb:Query"
    assert json.dumps(query["Resource"]).endswith(f'/index/{config.REACH_INDEX.name}"]]}}')
    (features,) = [
        t["Properties"]
        for t in resources(prod, "AWS::DynamoDB::Table").values()
        if t["Properties"]["TableName"].endswith("-features")
    ]
    assert features["GlobalSecondaryIndexes"] == [
        {
            "IndexName": index.name,
            "KeySchema": [{"AttributeName": index.partition_key, "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
        for index in (config.ACTIVITY_INDEX, config.REACH_INDEX)
    ]


def _statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if any(r["Ref"].startswith(role_prefix) for r in policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_catalog_function_may_update_items_and_the_out_of_stock_row_only(prod: Template) -> None:
    assert not [s for s in _statements(prod, "ServingCatalog") if "secretsmanager" in str(s["Action"])]
    statements = [s for s in _statements(prod, "ServingCatalog") if "dynamodb" in str(s["Action"])]
    assert [s["Action"] for s in statements] == ["dynamodb:UpdateItem", "dynamodb:UpdateItem"]
    items, features = sorted(statements, key=lambda s: "Condition" in s)
    assert "Condition" not in items and "StorageItems" in json.dumps(items["Resource"])
    # in the feature store: the one row serving reads stock from, by its partition key
    assert "StorageFeatures" in json.dumps(features["Resource"])
    assert features["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["catalog#unavailable"]}}


def test_the_serve_function_only_reads_three_tables_and_the_two_slot_tables_with_batch_gets(prod: Template) -> None:
    statements = [s for s in _statements(prod, "ServingServe") if "dynamodb" in str(s["Action"])]
    assert {str(s["Action"]) for s in statements} == {"dynamodb:BatchGetItem"}
    stack_tables = {json.dumps(s["Resource"]).split('"')[3] for s in statements if "Fn::GetAtt" in json.dumps(s)}
    assert {t.removeprefix("Storage").rstrip("0123456789ABCDEF") for t in stack_tables} == {
        "Features",
        "Config",
        "Items",
    }
    assert _slot_tables(statements) == {"shopwise-prod-lists-a", "shopwise-prod-lists-b"}


def _slot_tables(statements: list[dict[str, Any]]) -> set[str]:
    """The lists' slot tables these statements name (by their ARN's table name; no wildcard)."""
    found = set()
    for statement in statements:
        for resource in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
            text = json.dumps(resource)
            if ":table/shopwise-prod-lists" in text:
                found.add(text.split(":table/")[1].split('"')[0])
    assert not any("*" in t for t in found if "/import/" not in t), found
    return found


def test_deleting_the_stack_deletes_the_two_slot_tables_the_loads_made(prod: Template) -> None:
    """The slot tables are not the stack's (an import makes each): a custom resource per table deletes it when the
    stack goes (a table never made is no error), and its provider may delete those two tables and nothing else."""
    drops = {}
    for resource in resources(prod, "Custom::AWS").values():
        delete = json.loads(resource["Properties"]["Delete"])  # the SDK call, as the provider reads it
        drops[delete["parameters"]["TableName"]] = delete
    assert set(drops) == {"shopwise-prod-lists-a", "shopwise-prod-lists-b"}
    for delete in drops.values():
        assert delete["service"] == "DynamoDB" and delete["action"] == "deleteTable"
        assert delete["ignoreErrorCodesMatching"] == "ResourceNotFoundException"
    provider = "AWS" + custom_resources.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", "")
    statements = [s for s in _statements(prod, provider) if "dynamodb" in str(s["Action"])]
    assert {str(s["Action"]) for s in statements} == {"dynamodb:DeleteTable"}
    assert _slot_tables(statements) == {"shopwise-prod-lists-a", "shopwise-prod-lists-b"}


def test_the_load_drops_and_imports_only_the_two_slot_tables(prod: Template) -> None:
    """The load's role: the table actions an import needs, on the two slot tables by name (and their imports);
    nothing on the stack's tables but the pointer's get and put and the held erasures' one row."""
    statements = _statements(prod, "TrainingLoadRole")
    on_slots = [s for s in statements if ":table/shopwise-prod-lists" in json.dumps(s["Resource"])]
    (slots,) = on_slots
    assert set(slots["Action"]) == {
        "dynamodb:DescribeTable",
        "dynamodb:DeleteTable",
        "dynamodb:ImportTable",
        "dynamodb:DescribeImport",
        "dynamodb:BatchWriteItem",
    }
    assert _slot_tables(on_slots) == {
        "shopwise-prod-lists-a",
        "shopwise-prod-lists-b",
        "shopwise-prod-lists-a/import/*",
        "shopwise-prod-lists-b/import/*",
    }
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "dynamodb:CreateTable" not in actions and "dynamodb:BatchWriteItem" not in {
        a
        for s in statements
        if s is not slots
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    (held,) = [s for s in statements if s["Action"] == "dynamodb:UpdateItem"]
    assert held["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [HELD_ERASURES_KEY]}}


def test_impression_lines_of_the_serve_logs_reach_the_archive_through_firehose(prod: Template) -> None:
    prod.has_resource_properties(
        "AWS::Logs::SubscriptionFilter",
        {"FilterPattern": '{ $.event_type = "impression" }', "DestinationArn": Match.any_value()},
    )
    streams = resources(prod, "AWS::KinesisFirehose::DeliveryStream")
    impressions = next(s for k, s in streams.items() if k.startswith("ImpressionsDelivery"))
    destination = impressions["Properties"]["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"].startswith(config.ARCHIVE_EVENTS_PREFIX + "dt=")
    processors = [p["Type"] for p in destination["ProcessingConfiguration"]["Processors"]]
    assert processors == ["Decompression", "CloudWatchLogProcessing", "AppendDelimiterToRecord"]


def test_the_export_function_may_scan_items_and_write_the_catalog_snapshot_only(prod: Template) -> None:
    statements = _statements(prod, "TrainingExportCatalog")
    granted = {(str(s["Action"]), json.dumps(s["Resource"])) for s in statements if "logs" not in str(s["Action"])}
    actions = sorted(a for a, _ in granted if not a.startswith(("['xray", "xray")))
    assert actions == ["dynamodb:Scan", "s3:PutObject"]
    put = next(r for a, r in granted if a == "s3:PutObject")
    assert config.CATALOG_KEY in put


def test_an_upload_is_imported_by_the_function_up_to_its_size_and_by_the_job_above(prod: Template) -> None:
    definition = state_machine_definition(prod, "ImportStateMachine")
    choice = next(state for state in definition["States"].values() if state["Type"] == "Choice")
    forced_function, forced_job, by_size = choice["Choices"]
    assert forced_function["And"][1] == {"Variable": "$.route", "StringEquals": "function"}
    assert forced_job["And"][1] == {"Variable": "$.route", "StringEquals": "job"}
    assert forced_job["And"][0] == {"Variable": "$.route", "IsPresent": True}
    assert by_size["Variable"] == "$.rows" and by_size["NumericLessThanEquals"] == config.IMPORT_FUNCTION_MAX_ROWS
    assert by_size["Next"] == forced_function["Next"] and forced_job["Next"] == choice["Default"]
    job = definition["States"][choice["Default"]]
    assert job["Resource"].endswith("sagemaker:createTrainingJob.sync")
    assert job["Parameters"]["HyperParameters"]["sagemaker_program"] == "imports.py"
    assert job["Parameters"]["InputDataConfig"][0]["ChannelName"] == "upload"
    for role in ("ImportFunctionRole", "ImportJobRole"):
        statements = _statements(prod, role)
        dynamodb = sorted(str(s["Action"]) for s in statements if "dynamodb" in str(s["Action"]))
        assert dynamodb == ["dynamodb:BatchWriteItem", "dynamodb:UpdateItem"], (role, dynamodb)
        update = next(s for s in statements if s["Action"] == "dynamodb:UpdateItem")
        assert update["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"] == ["catalog#unavailable"]
        written = json.dumps([s["Resource"] for s in statements if "s3:PutObject" in str(s["Action"])])
        assert "/events/*" in written and "/imports/*" in written
        # nothing of the archive may be deleted (the job's own output folder under imports/ is the native task's)
        deletes = [s for s in statements if "s3:DeleteObject" in str(s["Action"])]
        assert all(
            "/imports" in json.dumps(s["Resource"]) and "Archive" not in json.dumps(s["Resource"]) for s in deletes
        )


def test_the_registry_mirrors_versions_into_its_own_model_package_group_only(prod: Template) -> None:
    groups = resources(prod, "AWS::SageMaker::ModelPackageGroup")
    ((group_id, group),) = groups.items()
    assert group["Properties"]["ModelPackageGroupName"] == "shopwise-prod-models"
    statements = _statements(prod, "TrainingRegistry")
    mirror = [s for s in statements if "sagemaker:CreateModelPackage" in str(s["Action"])]
    assert len(mirror) == 1 and sorted(mirror[0]["Action"]) == [
        "sagemaker:CreateModelPackage",
        "sagemaker:UpdateModelPackage",
    ]
    resources_named = json.dumps(mirror[0]["Resource"])
    assert group_id in resources_named and "model-package/shopwise-prod-models/*" in resources_named
    assert "*" not in [r for r in mirror[0]["Resource"] if isinstance(r, str)]
    (registry,) = [
        r
        for r in resources(prod, "AWS::Lambda::Function").values()
        if "model registry" in str(r["Properties"].get("Description", ""))
    ]
    variables = registry["Properties"]["Environment"]["Variables"]
    assert variables["MODEL_PACKAGE_GROUP"] == "shopwise-prod-models"
    assert "INFERENCE_IMAGE" in variables and "INFERENCE_SOURCE" in variables


def test_a_scheduled_drift_job_publishes_metrics_whose_alarms_start_a_retrain(prod: Template) -> None:
    states = state_machine_definition(prod, "DriftStateMachine")["States"]
    assert states["Find the champion"]["Parameters"] == {"action": "champion"}
    assert states["A model serving?"]["Choices"][0]["Next"] == "Drift job"
    job = states["Drift job"]
    assert job["Resource"].endswith("createTrainingJob.sync") and job["Next"] == "Publish the figures"
    assert job["Parameters"]["HyperParameters"]["sagemaker_program"] == "drift.py"
    assert [c["ChannelName"] for c in job["Parameters"]["InputDataConfig"]] == ["champion"]
    prod.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": config.environment("prod").drift_schedule})
    every = [a["Properties"] for a in resources(prod, "AWS::CloudWatch::Alarm").values()]
    alarms = {a["MetricName"]: a for a in every if a.get("MetricName", "").startswith("Drift")}
    assert {n: a["Threshold"] for n, a in alarms.items()} == {
        "DriftMaxFeaturePSI": config.PSI_ALARM,
        "DriftEventMixPSI": config.PSI_ALARM,
        "DriftNewItemShare": config.NEW_ITEM_ALARM,
        "DriftUnknownShopperShare": config.UNKNOWN_SHOPPER_ALARM,
    }
    assert all(a["Namespace"] == "shopwise" and a["TreatMissingData"] == "notBreaching" for a in alarms.values())
    # and performance: the personalised click-through below its anomaly band
    (band,) = [a for a in every if "MetricName" not in a]
    assert band["ComparisonOperator"] == "LessThanLowerThreshold"
    assert "PersonalisedCTR" in json.dumps(band["Metrics"]) and "ANOMALY_DETECTION_BAND" in json.dumps(band["Metrics"])
    rule = next(
        r["Properties"]
        for r in resources(prod, "AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"] and r["Properties"]["EventPattern"].get("source") == ["aws.cloudwatch"]
    )
    assert rule["EventPattern"]["detail"] == {"state": {"value": ["ALARM"]}}
    # the drift and performance alarms start a retrain; the ingestion alarms page (the alarms topic), they do not
    assert len(rule["EventPattern"]["resources"]) == len(alarms) + 1 == 5
    target = rule["Targets"][0]
    assert "TrainingRetrain" in str(target["Arn"])
    assert target["InputTransformer"]["InputTemplate"] == '{"trigger":"alarm: <detail-alarmName>"}'
    # the drift job's role: scan the feature store, read the archive and models, write monitoring/ — no more
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in resources(prod, "AWS::IAM::Policy").items()
        if k.startswith("DriftJobRole")
    ]
    actions = {
        a
        for statements in policies
        for st in statements
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }
    # the active rows through the activity index, then those rows: no Scan of the feature store
    assert {a for a in actions if a.startswith("dynamodb:")} == {"dynamodb:Query", "dynamodb:BatchGetItem"}
    (query,) = [st for statements in policies for st in statements if st["Action"] == "dynamodb:Query"]
    assert json.dumps(query["Resource"]).endswith(f'/index/{config.ACTIVITY_INDEX.name}"]]}}')
    writes = [
        st["Resource"]
        for statements in policies
        for st in statements
        if "s3:PutObject" in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    ]
    assert writes and all("/monitoring" in json.dumps(r) for r in writes)  # it writes under monitoring/ only


def test_the_dashboard_shows_the_stream_the_queue_latency_fallbacks_model_drift_and_experiments(prod: Template) -> None:
    dashboards = resources(prod, "AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    body = json.dumps(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    for needle in (
        "IteratorAge",
        "ApproximateNumberOfMessagesVisible",
        "Latency",
        "p99",
        "Served_personalised",
        "Served_global",
        "DriftMaxFeaturePSI",
        "ServedCatalogCoverage",
        "ServedLastToFirstScoreP50",
        "answers by bin(1h), model_version",
        "by experiment, variant, model_version",
    ):
        assert needle in body, needle


def emitted_metrics() -> set[str]:
    """Every metric the code publishes in the ``shopwise`` namespace: answers by first source (serve), the drift
    figures (the drift function), and each literal ``add_metric(name=...)`` of a handler."""
    import ast

    from shopwise.lifecycle.figures import DriftFigures
    from shopwise.picks import SOURCES, served_metric

    found = {served_metric(s) for s in SOURCES} | {f.metric for f in DriftFigures.FIGURES}
    found.add(DriftFigures.ALARMS_METRIC)
    for handler in (Path(__file__).resolve().parents[2] / "lambdas").glob("*/handler.py"):
        for node in ast.walk(ast.parse(handler.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_metric":
                found |= {
                    str(k.value.value) for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)
                }
    return found


def test_every_metric_the_dashboard_and_the_alarms_plot_is_one_the_code_emits(prod: Template) -> None:
    import re

    from shopwise.picks import SOURCES, served_metric

    body = json.dumps(next(iter(resources(prod, "AWS::CloudWatch::Dashboard").values()))["Properties"])
    plotted = set(re.findall(r'\[\\"shopwise\\",\\"([A-Za-z0-9_]+)\\"', body))
    alarmed = {
        a["Properties"]["MetricName"]
        for a in resources(prod, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "shopwise"
    }
    assert len(plotted) >= 15 and alarmed  # the patterns found what they look for
    assert plotted - emitted_metrics() == set()
    assert alarmed - emitted_metrics() == set()
    assert {served_metric(s) for s in SOURCES} <= plotted  # every answer source has its line in the fallback mix


def test_erasures_purge_on_a_schedule_plan_then_job_then_finish(prod: Template) -> None:
    env = config.environment("prod")
    machines = resources(prod, "AWS::StepFunctions::StateMachine")
    (purge,) = [m for k, m in machines.items() if k.startswith("Privacy")]
    definition = json.dumps(purge["Properties"]["DefinitionString"])
    for state in ("Plan", "Any erasure due?", "Purge job", "Finish", "Nothing to purge"):
        assert state in definition
    assert "purge.py" in definition and "createTrainingJob.sync" in definition
    rules = [r["Properties"] for r in resources(prod, "AWS::Events::Rule").values()]
    assert any(r.get("ScheduleExpression") == env.purge_schedule and "Privacy" in json.dumps(r) for r in rules)
    # the jobs that build lists skip the pending erasures
    training = json.dumps(state_machine_definition(prod))
    assert "SHOPWISE_ERASURES" in training and '"erasures"' in training


def test_the_erase_function_deletes_from_the_feature_store_and_the_slot_tables_and_writes_only_erasure_rows_of_the_config(
    prod: Template,
) -> None:
    statements = _statements(prod, "PrivacyEraseRole")
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "dynamodb:BatchWriteItem" in actions and "dynamodb:PutItem" in actions
    assert not {"dynamodb:DeleteTable", "s3:DeleteObject*", "s3:GetObject*"} & actions
    (put,) = [s for s in statements if s["Action"] == "dynamodb:PutItem"]
    assert put["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["erasure#*"]}}
    # its one update: the erased shopper's list keys, held for a load in flight, in the one row that holds them
    (update,) = [s for s in statements if s["Action"] == "dynamodb:UpdateItem"]
    assert update["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [HELD_ERASURES_KEY]}}
    writes = [s for s in statements if "dynamodb:BatchWriteItem" in s["Action"]]
    tables = json.dumps([s["Resource"] for s in writes])
    assert "StorageFeatures" in tables and "StorageConfig" not in tables
    assert _slot_tables(writes) == {"shopwise-prod-lists-a", "shopwise-prod-lists-b"}


def test_buckets_keep_data_as_long_as_the_environment_says_and_no_longer(prod: Template) -> None:
    env = config.environment("prod")
    buckets = {k: b["Properties"] for k, b in resources(prod, "AWS::S3::Bucket").items()}
    archive = next(b for k, b in buckets.items() if k.startswith("StorageArchive"))
    artifacts = next(b for k, b in buckets.items() if k.startswith("StorageArtifacts"))
    rules = {r.get("Prefix", ""): r for r in archive["LifecycleConfiguration"]["Rules"]}
    assert rules["events/"]["ExpirationInDays"] == env.archive_events_days
    assert rules["errors/"]["ExpirationInDays"] == env.archive_errors_days
    kept = {r.get("Prefix", ""): r for r in artifacts["LifecycleConfiguration"]["Rules"]}
    assert kept[""]["NoncurrentVersionExpiration"] == {"NoncurrentDays": env.artifacts_noncurrent_days}
    # Athena's results can quote archived events: a day, then gone
    assert kept[config.ATHENA_RESULTS_PREFIX]["ExpirationInDays"] == config.ATHENA_RESULTS_DAYS
    # the data set's kept parses: a little past its window (a day's parse is written after the day), never past
    # the archive they were parsed from
    # a load's staged lists are deleted by the load that imports them; a failed load's go within days
    assert kept[config.LIST_IMPORTS_PREFIX]["ExpirationInDays"] == config.LIST_IMPORTS_DAYS
    days = kept[config.PARSED_DAYS_PREFIX]["ExpirationInDays"]
    assert env.dataset_days < days <= min(env.dataset_days + 7, env.archive_events_days)
    assert artifacts["VersioningConfiguration"] == {"Status": "Enabled"}


def test_logs_that_can_name_a_shopper_are_kept_less_than_the_erasure_bound(prod: Template) -> None:
    env = config.environment("prod")
    groups = {k: g["Properties"].get("RetentionInDays") for k, g in resources(prod, "AWS::Logs::LogGroup").items()}
    for function in ("ServingServeLogs", "IngestionCollectLogs", "IngestionUpdateFeaturesLogs", "PrivacyEraseLogs"):
        (days,) = [d for k, d in groups.items() if k.startswith(function)]
        assert days == env.shopper_log_days and days * 24 <= env.erasure_bound_hours()
    # the API's access log names the route, never the path (shopper ids) or the caller's address
    (stage,) = resources(prod, "AWS::ApiGatewayV2::Stage").values()
    log_format = stage["Properties"]["AccessLogSettings"]["Format"]
    assert "$context.routeKey" in log_format
    assert "$context.path" not in log_format and "$context.identity.sourceIp" not in log_format


def test_late_and_lost_events_alarm_to_the_alarms_topic(prod: Template) -> None:
    every = [a["Properties"] for a in resources(prod, "AWS::CloudWatch::Alarm").values()]
    ingestion = {
        a["MetricName"]: a
        for a in every
        if a.get("MetricName") in ("IteratorAge", "ApproximateNumberOfMessagesVisible", "RecordsPoison")
    }
    assert set(ingestion) == {"IteratorAge", "ApproximateNumberOfMessagesVisible", "RecordsPoison"}
    assert ingestion["IteratorAge"]["Threshold"] == config.ITERATOR_AGE_ALARM_S * 1000
    assert ingestion["ApproximateNumberOfMessagesVisible"]["Threshold"] == 0
    assert ingestion["RecordsPoison"]["Namespace"] == "shopwise" and ingestion["RecordsPoison"]["Statistic"] == "Sum"
    (topic,) = resources(prod, "AWS::SNS::Topic")
    for alarm in ingestion.values():
        assert alarm["AlarmActions"] == [{"Ref": topic}]
    assert resources(prod, "AWS::SNS::Topic")[topic]["Properties"]["KmsMasterKeyId"]


def test_only_the_import_function_carries_pyarrow_and_it_fits_lambdas_size_limit(prod: Template) -> None:
    """The archive is Parquet: the import function writes it and has the columnar layer; the other functions (the
    request path above all) never load it. The import function's code and layers, unzipped, fit Lambda's 250 MB."""
    from build import LAMBDA_UNZIPPED_LIMIT, unzipped_size

    from shopwise_cdk.constants import COLUMNAR_LAYER_DIR, CORE_LAYER_DIR, DEPS_LAYER_DIR, LAMBDAS_DIR

    layers = {k: v["Properties"]["Description"] for k, v in resources(prod, "AWS::Lambda::LayerVersion").items()}
    (columnar,) = [k for k, description in layers.items() if description.startswith("pyarrow")]
    with_it = [
        f["Properties"]["Description"]
        for f in resources(prod, "AWS::Lambda::Function").values()
        if {"Ref": columnar} in f["Properties"].get("Layers", [])
    ]
    assert len(with_it) == 1 and with_it[0].startswith("bulk import")
    size = unzipped_size(COLUMNAR_LAYER_DIR, CORE_LAYER_DIR, DEPS_LAYER_DIR, LAMBDAS_DIR / "imports")
    assert 100 * 1024**2 < size < LAMBDA_UNZIPPED_LIMIT, size  # pyarrow is in it, and it fits


def test_the_data_set_job_runs_the_spark_build_on_glue_with_a_least_privilege_role(prod: Template) -> None:
    """`shopwise dataset build --stack`: a Glue 5.x job (Python 3.11, what the job code needs) whose script and
    packages are the build's assets, reading the archive's events and writing datasets/ only."""
    from shopwise_cdk.dataset import GLUE_VERSION

    jobs = {j["Properties"]["Name"]: j for j in resources(prod, "AWS::Glue::Job").values()}
    assert set(jobs) == {"shopwise-prod-dataset", "shopwise-prod-convert"}
    props = jobs["shopwise-prod-dataset"]["Properties"]
    assert props["GlueVersion"] == GLUE_VERSION and float(GLUE_VERSION) >= 5.0  # Python 3.11
    assert (
        props["Command"]["Name"] == "glueetl" and props["NumberOfWorkers"] == config.environment("prod").dataset_workers
    )
    arguments = props["DefaultArguments"]
    assert {
        "--extra-py-files",
        "--additional-python-modules",
        "--archive",
        "--out",
        "--days",
        "--categories",
        "--erasures",
        "--parsed-days",
    } <= set(arguments)
    assert "pydantic==" in arguments["--additional-python-modules"]
    # the kept parses under datasets/ (the job's own prefix; the purge rewrites them like every artifact)
    assert f"/{config.PARSED_DAYS_PREFIX}" in json.dumps(arguments["--parsed-days"])
    assert arguments["--days"] == str(config.environment("prod").dataset_days)
    role = props["Role"]["Fn::GetAtt"][0]
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(prod, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"].get("Roles", [])
    ]
    statements = json.dumps(policies)
    assert "events/*" in statements and "datasets/*" in statements and "privacy/erasures/*" in statements
    writes = [s for doc in policies for s in doc if "s3:PutObject" in json.dumps(s["Action"])]
    assert writes and all("datasets/*" in json.dumps(s["Resource"]) for s in writes)  # writes nothing else
    assert "dynamodb" not in statements and "kinesis" not in statements
    assert prod.find_outputs("DatasetJob") and prod.find_outputs("ArchiveConvertJob")
    # the conversion job: the archive's events/ read, written and deleted, failures put under errors/, nothing else
    convert = jobs["shopwise-prod-convert"]["Properties"]
    assert convert["GlueVersion"] == GLUE_VERSION and set(convert["DefaultArguments"]) >= {
        "--bucket",
        "--extra-py-files",
    }
    convert_role = convert["Role"]["Fn::GetAtt"][0]
    granted = json.dumps(
        [
            p["Properties"]["PolicyDocument"]["Statement"]
            for p in resources(prod, "AWS::IAM::Policy").values()
            if {"Ref": convert_role} in p["Properties"].get("Roles", [])
        ]
    )
    assert "events/*" in granted and "errors/format-conversion-failed/*" in granted and "Artifacts" not in granted


def test_prod_builds_its_data_set_on_spark_before_training_and_dev_in_the_training_job(
    dev: Template, prod: Template
) -> None:
    """The Spark engine (prod): the retrain runs the Glue job into datasets/<run>/, and the training job's events
    channel is that folder (it reads a built data set in place of events); dev trains on the archive's events."""
    assert config.environment("prod").dataset_engine == "spark" and config.environment("dev").dataset_engine == "python"
    states = state_machine_definition(prod)["States"]
    build = states["Build the data set"]
    assert build["Resource"].endswith(":states:::glue:startJobRun.sync")
    assert build["Parameters"]["Arguments"]["--out.$"] == "$.dataset.uri"
    assert states["Find the champion"]["Next"] == "Name the data set" and build["Next"] == "A model serving?"
    for name in ("Train the first model", "Train against the champion"):
        (events,) = [c for c in states[name]["Parameters"]["InputDataConfig"] if c["ChannelName"] == "events"]
        assert events["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.dataset.uri"
    dev_states = state_machine_definition(dev)["States"]
    assert "Build the data set" not in dev_states and dev_states["Find the champion"]["Next"] == "A model serving?"
    (events,) = [
        c for c in dev_states["Train the first model"]["Parameters"]["InputDataConfig"] if c["ChannelName"] == "events"
    ]
    assert "S3Uri.$" not in events["DataSource"]["S3DataSource"]  # the archive's events/ prefix
