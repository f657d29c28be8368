"""One CLI, two targets: with ``--stack NAME`` the operations commands resolve a deployed stack from its
CloudFormation outputs and act on it with the operator's credentials. The local stack registers its own
coordinates in the local endpoint's CloudFormation, so the deployed path runs here end to end: resolved from
CloudFormation, acting on the same tables, buckets and API as the local target."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from shopwise import config
from shopwise.dal.aws import client
from shopwise.dal.catalog import item_facts
from shopwise_local import cli
from shopwise_local.stack import LocalStack
from shopwise_local.target import StackNotFound, resolve_stack, stack_template

pytestmark = pytest.mark.e2e

STACK = "shopwise-local"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def test_the_local_stack_is_resolved_from_cloudformation_as_a_deployed_one_is(stack: LocalStack) -> None:
    assert stack.resources and stack.api
    target = resolve_stack(STACK)
    # resolved as a deployed stack is; its jobs and functions run in this machine's processes (no state machines)
    assert not target.deployed and target.environment == "local"
    assert target.sagemaker["role"].endswith("shopwise-local-sagemaker")
    assert target.api_url == stack.api.url.rstrip("/")
    expected = stack.resources.function_environment()
    for variable in config.STACK_OUTPUTS.values():
        assert target.function_environment[variable] == expected[variable], variable


def test_operations_commands_act_on_the_resolved_stack(stack: LocalStack, tmp_path: Path) -> None:
    experiments = tmp_path / "experiments.json"
    experiments.write_text(json.dumps([{"name": "blend", "variants": [{"name": "a", "weight": 1.0}]}]))
    code, out = run("experiments", "set", str(experiments))  # the local target writes ...
    assert code == 0, out
    code, shown = run("--stack", STACK, "experiments", "show")  # ... the CloudFormation-resolved one reads it
    assert code == 0 and json.loads(shown)[0]["name"] == "blend"
    code, out = run("--stack", STACK, "experiments", "clear")
    assert code == 0
    code, shown = run("experiments", "show")
    assert json.loads(shown) == []

    # an erasure through the resolved stack's API, signed with this process's credentials; its receipt listed
    code, out = run("--stack", STACK, "erase", "nobody-at-all", "--quiet")
    assert code == 0, out
    erasure_id = out.strip()
    code, listed = run("--stack", STACK, "erasures", "list")
    assert code == 0 and erasure_id in [e["erasure_id"] for e in json.loads(listed)["erasures"]]
    code, models = run("--stack", STACK, "models", "list", "--json")
    assert code == 0 and json.loads(models) == []

    # a bulk import through the resolved stack: uploaded to its artifacts bucket, imported by its import function
    items = tmp_path / "catalog.csv"
    items.write_text("item_id,title,category,price,in_stock\nt1,Kettle,Home>Kitchen,30,true\nt2,Mug,Home,12,no\n,,,,\n")
    code, out = run("--stack", STACK, "import", "items", str(items), "--no-progress")
    assert code == 0 and "catalog.csv: 2 rows imported, 1 rejected" in out and "by the function" in out, out
    assert stack.resources
    facts = item_facts(stack.resources.tables["items"], ["t1", "t2"])
    assert facts["t1"]["title"] == "Kettle" and facts["t2"]["in_stock"] is False


def test_a_stack_that_is_not_there_or_not_shopwise_is_named_in_the_error(stack: LocalStack) -> None:
    with pytest.raises(StackNotFound, match="no stack 'shopwise-nowhere'"):
        resolve_stack("shopwise-nowhere")
    client("cloudformation").create_stack(
        StackName="someone-else", TemplateBody=json.dumps(stack_template({"Other": "x"}))
    )
    with pytest.raises(StackNotFound, match=r"lacks the outputs .*FeaturesTable"):
        resolve_stack("someone-else")
    code, _ = run("--stack", "shopwise-nowhere", "models", "list")
    assert code == 1


@pytest.mark.parametrize(
    "command",
    [
        ("models", "list", "--json"),
        ("experiments", "show"),
        ("campaigns", "list"),
        ("failures", "list", "--json"),
        ("keys", "show"),
        ("erasures", "list"),
    ],
)
def test_each_read_only_command_answers_the_same_directly_and_through_cloudformation(
    stack: LocalStack, command: tuple[str, ...]
) -> None:
    direct_code, direct = run(*command)
    resolved_code, resolved = run("--stack", STACK, *command)
    assert direct_code == resolved_code == 0
    assert json.loads(direct) == json.loads(resolved)
