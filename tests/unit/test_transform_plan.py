"""The batch transform's plan: every user and item shard exactly once, the popular lists once, at least one object
per instance and at most one line per worker in an object (an object's output is one load item), no request over
the size bound, and at least a request per worker; its instances sized for the users within the time budget."""

from __future__ import annotations

import math

import pytest

from shopwise import config
from shopwise.lifecycle.transform import (
    ITEMS_PER_REQUEST,
    USERS_PER_REQUEST,
    USERS_PER_WORKER_S,
    instances_for,
    plan,
    plan_seconds,
)


@pytest.mark.parametrize(
    ("users", "items", "instances", "workers"),
    [(0, 0, 1, 1), (2_000, 1_500, 2, 1), (10_000_000, 1_000_000, 4, 4), (45_000, 10, 3, 4)],
)
def test_every_shard_is_requested_once_and_no_request_is_too_big(
    users: int, items: int, instances: int, workers: int
) -> None:
    objects = plan(users, items, instances, workers)
    assert len(objects) >= instances and all(objects)  # every instance gets an object with work in it
    assert max(map(len, objects)) <= workers  # an object's output is bounded: workers x USERS_PER_REQUEST rows
    lines = [line for obj in objects for line in obj]
    assert [line["kind"] for line in lines].count("popular") == 1
    for kind, count, bound in (("users", users, USERS_PER_REQUEST), ("items", items, ITEMS_PER_REQUEST)):
        shards = [line for line in lines if line["kind"] == kind]
        total = shards[0]["shards"]
        assert sorted(line["shard"] for line in shards) == list(range(total))  # each exactly once
        assert all(line["shards"] == total for line in shards)
        assert math.ceil(count / total) <= bound  # scoring.py deals item/user n to shard n % shards
    users_lines = [line for line in lines if line["kind"] == "users"]
    assert len(users_lines) >= instances * workers
    # 10 M shoppers: 500 requests of 20,000 in 138 objects of 4 (the last of 3), at most 80,000 rows a load item
    if users == 10_000_000:
        assert len(users_lines) == 500 and len(objects) == math.ceil(551 / 4)
        assert max(map(len, objects)) - min(map(len, objects)) <= 1


def test_a_plan_needs_an_instance_and_a_worker() -> None:
    with pytest.raises(ValueError, match="instances"):
        plan(10, 10, 0)


def test_vcpus_of_the_instance_types_the_environments_use() -> None:
    assert config.instance_vcpus("ml.m5.large") == 2
    assert config.instance_vcpus("ml.m5.xlarge") == 4
    assert config.instance_vcpus("ml.c5.4xlarge") == 16
    assert config.instance_vcpus(config.environment("prod").transform_instance_type) == 4
    with pytest.raises(ValueError, match="vCPUs"):
        config.instance_vcpus("ml.p3.medium")


def test_instances_are_sized_for_the_users_within_the_budget_and_bounds() -> None:
    prod = config.environment("prod")
    workers = config.instance_vcpus(prod.transform_instance_type)
    sizing = prod.transform_sizing()
    assert sizing == {"min_instances": 1, "max_instances": 32, "budget_s": 900}
    # the envelope's 10 M shoppers: 10 M / (170 users/s x 4 workers x 900 s) = 16.3 -> 17 instances, within budget
    at_envelope = instances_for(10_000_000, workers, **sizing)
    assert at_envelope == 17 and plan_seconds(10_000_000, workers, at_envelope) <= 900
    assert plan_seconds(10_000_000, workers, at_envelope - 1) > 900  # one fewer would not finish in time
    # a million shoppers fit two instances; no shoppers still get the fewest the environment allows
    assert instances_for(1_000_000, workers, **sizing) == 2
    assert instances_for(0, workers, **config.environment("local").transform_sizing()) == 2
    # past the most instances, the most (the plan then expects to run over its budget, and says so)
    assert instances_for(100_000_000, workers, **sizing) == 32
    assert plan_seconds(100_000_000, workers, 32) == pytest.approx(100_000_000 / (USERS_PER_WORKER_S * 128))
    # a shorter budget needs more instances for the same users
    assert instances_for(10_000_000, workers, min_instances=1, max_instances=100, budget_s=600) == 25


@pytest.mark.parametrize(
    ("users", "workers", "least", "most", "budget"),
    [(1, 0, 1, 1, 60.0), (1, 1, 0, 1, 60.0), (1, 1, 3, 2, 60.0), (1, 1, 1, 1, 0.0), (-1, 1, 1, 1, 60.0)],
)
def test_sizing_refuses_what_cannot_be_sized(users: int, workers: int, least: int, most: int, budget: float) -> None:
    with pytest.raises(ValueError, match="instances need"):
        instances_for(users, workers, min_instances=least, max_instances=most, budget_s=budget)
