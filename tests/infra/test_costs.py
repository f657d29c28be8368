"""`shopwise cost` on the synthesized templates: what it reads from a stack, how each line follows the load, the
sizing of shards and provisioned concurrency, Personalize's tiers, and the command line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from shopwise import config
from shopwise_local import cli, costs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cdk"))
from app import add_stack

pytestmark = pytest.mark.infra


def template(env_name: str) -> dict[str, Any]:
    from shopwise_cdk.constants import CORE_LAYER_DIR

    if not (CORE_LAYER_DIR / "python").is_dir():
        pytest.fail("layers are not built: run `make build` (make test does it)")
    app = cdk.App()
    stack = add_stack(app, env_name, nag=False)
    return dict(app.synth().get_stack_by_name(stack.stack_name).template)


@pytest.fixture(scope="module")
def prod_template() -> dict[str, Any]:
    return template("prod")


@pytest.fixture(scope="module")
def dev_template() -> dict[str, Any]:
    return template("dev")


@pytest.fixture(scope="module")
def shape(prod_template: dict[str, Any]) -> costs.StackShape:
    """The prod stack as the cost model reads it."""
    return costs.StackShape.from_template(prod_template, "shopwise-prod")


@pytest.fixture(scope="module")
def inputs() -> tuple[dict[str, Any], dict[str, Any]]:
    return costs.load_json(costs.HERE / "units.json"), costs.load_json(costs.latest_prices())


def lines(estimate: costs.Estimate, what: str) -> list[costs.Line]:
    found = [line for line in estimate.lines if what in line.what]
    assert found, what
    return found


def test_the_shape_read_from_the_template_is_what_the_environment_configures(shape: costs.StackShape) -> None:
    env = config.environment("prod")
    assert shape.provisioned_concurrency == env.provisioned_concurrency
    assert shape.stream_shards == env.stream_shards
    assert shape.training_instance == env.training_instance_type
    assert shape.transform_instance == env.transform_instance_type
    assert shape.transform_sizing == env.transform_sizing()
    assert shape.functions["serve"].memory_mb == env.lambda_memory_mb
    # prod doesn't actively trace the functions the traffic invokes (trace_requests): collect, serve, the updater
    assert not env.trace_requests
    assert not any(shape.functions[role].traced for role in ("serve", "collect", "update"))
    # the data set job alone (not the conversion job), in Glue's Flex class, over the configured window
    assert (shape.dataset_workers, shape.dataset_days, shape.dataset_flex) == (
        env.dataset_workers,
        env.dataset_days,
        True,
    )
    assert shape.tables == len(config.TABLES) and shape.pitr
    assert shape.retrains_per_month == pytest.approx(30.4, abs=0.1)  # cron(0 3 * * ? *): once a day
    assert shape.drift_runs_per_month == pytest.approx(30.4, abs=0.1)
    # three campaigns, each on the hourly schedule
    assert shape.campaign_runs_per_month == pytest.approx(3 * costs.HOURS_PER_MONTH)
    assert shape.archive_days == env.archive_events_days
    assert shape.log_retention_days == env.shopper_log_days
    assert (shape.stream_batch_size, shape.stream_batching_window_s) == (env.stream_batch_size, 1.0)


def test_a_quiet_stream_invokes_the_updater_for_a_few_events_at_a_time(
    shape: costs.StackShape, dev_template: dict[str, Any], inputs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """The updater gets what a shard gathers in the batching window, up to the batch size: at 2 events a second one
    invocation a second (and, where it is actively traced, one trace); in a sale, full batches."""
    units, prices = inputs
    quiet = costs.estimate(shape, costs.Load(2, 1, 1000, 100), units, prices)
    (calls,) = [x for x in quiet.lines if x.what.startswith("update: per batch")]
    assert calls.quantity == pytest.approx(costs.SECONDS_PER_MONTH)  # 2 events a batch, a batch a second
    assert not [x for x in quiet.lines if "update: traces" in x.what]  # prod: trace_requests off
    dev = costs.estimate(costs.StackShape.from_template(dev_template), costs.Load(2, 1, 1000, 100), units, prices)
    (traces,) = lines(dev, "update: traces")
    assert traces.quantity == pytest.approx(costs.SECONDS_PER_MONTH)  # within the first-invocation-a-second reservoir
    sale = costs.estimate(shape, costs.Load(10_000, 5_000, 1000, 100), units, prices)
    (calls,) = [x for x in sale.lines if x.what.startswith("update: per batch")]
    assert calls.quantity == pytest.approx(10_000 * costs.SECONDS_PER_MONTH / shape.stream_batch_size)
    # batches of 2 coalesce next to nothing: the write units an event measured at that size, not in full batches
    batches = units["per_event_by_batch"]["batches"]
    (quiet_writes,) = lines(quiet, "feature store + ledger writes")
    assert quiet_writes.quantity == pytest.approx(2 * costs.SECONDS_PER_MONTH * batches["2"]["write_units"])
    assert batches["2"]["write_units"] > batches["500"]["write_units"]


def test_the_updater_units_between_measured_batch_sizes_are_interpolated(
    inputs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    units, _prices = inputs
    batches = units["per_event_by_batch"]["batches"]
    for size, measured in batches.items():
        assert costs.updater_units(units, float(size)) == pytest.approx(measured)
    low, high = costs.updater_units(units, 20), costs.updater_units(units, 100)
    between = costs.updater_units(units, 50)
    assert high["write_units"] < between["write_units"] < low["write_units"]
    assert costs.updater_units(units, 1) == pytest.approx(batches["2"])  # held beyond the ends
    assert costs.updater_units(units, 10_000) == pytest.approx(batches["500"])


def test_traffic_lines_follow_the_load_and_standing_charges_do_not(
    shape: costs.StackShape, inputs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    units, prices = inputs
    # busy enough that every shard's batches are full at both rates: the units an event are the same
    one = costs.estimate(shape, costs.Load(1000, 50, 100_000, 5_000), units, prices)
    two = costs.estimate(shape, costs.Load(2000, 100, 100_000, 5_000), units, prices)
    (writes_1,), (writes_2,) = lines(one, "feature store + ledger writes"), lines(two, "feature store + ledger writes")
    assert writes_2.dollars == pytest.approx(2 * writes_1.dollars) and writes_1.dollars > 0
    # the write units an event measured in full batches, at the table's price
    full = units["per_event_by_batch"]["batches"][str(shape.stream_batch_size)]["write_units"]
    events = 1000 * costs.SECONDS_PER_MONTH
    expected = events * full / 1e6 * prices["dynamodb"]["write_unit_per_million"]
    assert writes_1.dollars == pytest.approx(expected)
    (reads_1,), (reads_2,) = lines(one, "profile and list reads"), lines(two, "profile and list reads")
    assert reads_2.dollars == pytest.approx(2 * reads_1.dollars)
    for fixed in ("dashboard", "alarms", "secrets", "training job"):
        assert sum(x.dollars for x in lines(one, fixed)) == sum(x.dollars for x in lines(two, fixed)) > 0
    # the load's writes follow the shoppers with lists, not the traffic
    bigger = costs.estimate(shape, costs.Load(1000, 50, 200_000, 5_000), units, prices)
    (load_1,), (load_2,) = lines(one, "load: precomputed lists"), lines(bigger, "load: precomputed lists")
    assert load_2.dollars > load_1.dollars and lines(bigger, "feature store + ledger")[0].dollars == writes_1.dollars
    # ... priced by what its import reads (a DynamoDB import from S3: $ a GB of DynamoDB JSON), not by write units
    per_shopper, per_item = units["per_shopper"], units["per_item"]
    staged = 100_000 * per_shopper["list_import_bytes"] + 5_000 * (
        per_item["neighbours_import_bytes"] + per_item["next_import_bytes"]
    )
    assert load_1.unit == "GB" and load_1.quantity == pytest.approx(shape.retrains_per_month * staged / costs.GB)
    assert load_1.dollars == pytest.approx(load_1.quantity * prices["dynamodb"]["import_gb"])


def test_shards_and_warm_environments_are_sized_for_the_load(
    shape: costs.StackShape, inputs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    units, prices = inputs
    quiet = costs.estimate(shape, costs.Load(2, 1, 1000, 100), units, prices)
    assert quiet.sized["stream_shards"][0] == 1 and quiet.sized["provisioned_concurrency"][0] == 1
    sale = costs.estimate(shape, costs.Load(10_000, 5_000, 1000, 100), units, prices)
    shards, configured = sale.sized["stream_shards"]
    assert configured == config.environment("prod").stream_shards
    assert shards >= 10_000 / 1000 * 1.25  # 1,000 records a second per shard, with the headroom
    serve_s = (units["per_request"]["serve_ms"] + costs.Assumptions().dynamodb_ms) / 1000
    assert sale.sized["provisioned_concurrency"][0] == math.ceil(5_000 * serve_s * 2)
    # as configured: the template's own counts are priced
    kept = costs.estimate(shape, costs.Load(2, 1, 1000, 100), units, prices, as_configured=True)
    (shard_line,) = [x for x in kept.lines if "provisioned shard" in x.what]
    assert shard_line.quantity == configured * costs.HOURS_PER_MONTH


def test_the_data_set_job_is_sized_to_finish_its_window_within_the_target_and_priced_at_flex(
    shape: costs.StackShape, inputs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """The Glue job reads the window back every retrain and parses only the days archived since the last one: its
    DPU-hours follow events/s x days, whatever the workers; the workers follow the target time; a build that parses
    every day (the first, or --reparse) costs more than the daily one; the kept parses are stored."""
    units, prices = inputs
    assume = costs.Assumptions()
    by_rate = {}
    for events_per_s in (2, 200):
        est = costs.estimate(shape, costs.Load(events_per_s, 1, 1000, 100), units, prices)
        workers, configured = est.sized["dataset_workers"]
        window = events_per_s * shape.dataset_days * 86400
        new = events_per_s * costs.SECONDS_PER_MONTH / shape.retrains_per_month  # a day's events, retrained daily
        assert costs.dataset_hours(window, workers, assume, new) <= assume.dataset_target_hours
        assert workers == 2 or costs.dataset_hours(window, workers - 1, assume, new) > assume.dataset_target_hours
        assert costs.dataset_hours(window, workers, assume) > costs.dataset_hours(window, workers, assume, new)
        (line,) = lines(est, "data set on Spark")
        assert line.dollars == pytest.approx(line.quantity * prices["glue"]["flex_dpu_hour"])
        (kept,) = lines(est, "the data set's kept parses")
        assert kept.quantity == pytest.approx(window * assume.kept_parse_bytes_per_event / costs.GB)
        by_rate[events_per_s] = (workers, line.quantity)
    assert by_rate[2][0] == 2 and by_rate[200][0] > configured  # 200 events/s x 180 days needs more than prod's 4
    # 100x the events: at most ~100x the DPU-hours (less: at 2 workers the driver is half the job)
    assert 40 < by_rate[200][1] / by_rate[2][1] <= 100


def test_the_transform_gets_the_instances_the_plan_sizes_for_the_shoppers(
    shape: costs.StackShape, inputs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """The retrain's plan sizes the transform for the version's users (shopwise.lifecycle.transform): the cost model
    prices the same count and its scoring time, so a store ten times the shoppers pays about ten times the scoring."""
    units, prices = inputs
    assume = costs.Assumptions()
    found = {}
    for shoppers in (1_000_000, 10_000_000):
        (line,) = lines(costs.estimate(shape, costs.Load(100, 10, shoppers, 100_000), units, prices), "batch transform")
        instances = int(line.what.split("(")[1].split(" instances")[0])
        found[shoppers] = (instances, line.quantity)
    # 17 x ml.m5.xlarge score 10 M within prod's 15 minutes at 170 users a second a worker; a million want 2
    assert found[1_000_000][0] == 2 and found[10_000_000][0] == 17
    retrains = shape.retrains_per_month
    scoring = [q / retrains - i * assume.transform_startup_hours for i, q in found.values()]
    assert scoring[1] == pytest.approx(10 * scoring[0])  # the instance-hours of scoring follow the shoppers
    assert scoring[1] / found[10_000_000][0] <= 0.25  # each instance within the 15-minute budget


def test_personalize_is_billed_for_its_minimum_tps_and_in_tiers(
    shape: costs.StackShape, inputs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    units, prices = inputs

    def tps_dollars(rps: float) -> float:
        est = costs.estimate(shape, costs.Load(2 * rps, rps, 1000, 100), units, prices)
        return next(x.dollars for x in est.personalize if x.unit == "TPS-hours")

    assert tps_dollars(0.1) == tps_dollars(1) == pytest.approx(730 * 0.20)  # the minimum provisioned TPS: 1
    # 100 TPS all month: 73,000 TPS-hours, 20,000 of them at the first tier's price and the rest at the second's
    assert tps_dollars(100) == pytest.approx(20_000 * 0.20 + 53_000 * 0.10)
    assert costs.tiered(500_000, prices["personalize"]["tps_hour_tiers"]) == pytest.approx(
        20_000 * 0.20 + 180_000 * 0.10 + 300_000 * 0.05
    )


def test_an_idle_dev_stack_pays_only_its_standing_charges(
    dev_template: dict[str, Any], inputs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    units, prices = inputs
    shape = costs.StackShape.from_template(dev_template)
    for as_configured in (False, True):  # dev keeps no warm environment, and no traffic needs one
        idle = costs.estimate(shape, costs.Load(0, 0, 0, 0, 0), units, prices, as_configured=as_configured)
        charged = {x.what for x in idle.lines if x.dollars > 0}
        assert charged == {
            "1 provisioned shard(s)",
            f"{shape.dashboards} dashboard(s)",
            f"{shape.alarms} alarms",
            f"{shape.secrets} secrets",
            f"drift job ({shape.drift_instance})",  # daily, once a model serves
            # every index Query pays the minimum read even when it finds nobody
            f"campaigns: reachable active profiles read per run ({shape.campaign_runs_per_month:.0f} runs)",
        }
        drift = costs.Assumptions().drift_hours * shape.drift_runs_per_month
        queries = shape.campaign_runs_per_month * costs.index_queries_per_run()
        assert costs.index_queries_per_run() == 8 * (8 + 4 + 9) / 3  # 8 shards; lookbacks of 7, 3 and 8 days, + 1
        assert idle.total == pytest.approx(
            costs.HOURS_PER_MONTH * prices["kinesis"]["shard_hour"]
            + shape.dashboards * prices["cloudwatch"]["dashboard_month"]
            + shape.alarms * prices["cloudwatch"]["alarm_month"]
            + shape.secrets * prices["secretsmanager"]["secret_month"]
            + drift * prices["sagemaker"]["instance_hour"][shape.drift_instance]
            + queries * 0.5 / 1e6 * prices["dynamodb"]["read_unit_per_million"]
        )


def test_schedules_are_counted_and_what_cannot_be_is_refused() -> None:
    assert costs.runs_per_month("rate(1 hour)") == pytest.approx(730)
    assert costs.runs_per_month("rate(6 hours)") == pytest.approx(730 / 6)
    assert costs.runs_per_month("cron(0 3 * * ? *)") == pytest.approx(730 / 24)
    assert costs.runs_per_month("cron(0/15 * * * ? *)") == pytest.approx(4 * 730)
    with pytest.raises(ValueError, match="only daily crons"):
        costs.runs_per_month("cron(0 3 ? * MON *)")
    with pytest.raises(ValueError, match="finite"):
        costs.Load(float("inf"), 1, 1, 1)


def test_the_command_prices_a_template_file_at_several_loads(
    prod_template: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "prod.template.json"
    path.write_text(json.dumps(prod_template))
    code = cli.main(["cost", "--template", str(path), "--requests-per-s", "1", "100", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [e["load"]["requests_per_s"] for e in out] == [1, 100]
    assert [e["load"]["events_per_s"] for e in out] == [2, 200]  # twice the request rate unless given
    assert out[0]["total"] < out[1]["total"] and out[0]["personalize_total"] < out[1]["personalize_total"]
    assert all(e["total"] == pytest.approx(sum(x["dollars"] for x in e["lines"]), abs=0.01) for e in out)

    assert cli.main(["cost", "--template", str(path), "--requests-per-s", "10", "--summary"]) == 0
    table = capsys.readouterr().out
    assert "| requests/s |" in table and "assumptions:" in table and "units.json" in table

    assert cli.main(["cost", "--template", str(path), "--assume", "bogus=1"]) == 1
    assert "--assume 'bogus=1'" in capsys.readouterr().err
    assert cli.main(["cost", "--template", str(tmp_path / "missing.json")]) == 1
