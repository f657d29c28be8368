"""The batch transform's requests, planned for the model trained: how its users and items are cut into request lines
and the lines into request objects.

SageMaker spreads a transform's input objects over its instances by S3 key (each object goes whole to one
instance) and sends each line of an object as one request (SplitType Line, SingleRecord), up to
MaxConcurrentTransforms at a time per instance. So the plan cuts the users into shards of at most
``USERS_PER_REQUEST`` (a request must finish within the invocation timeout, and its answer is held in memory) and at
least one per worker of every instance, the items alike, and deals the lines round-robin into objects of at most
one line per worker (so an instance keeps its workers busy within an object) and at least one object per instance.
Each object's output is then one item of the load's Distributed Map: at most ``workers`` x ``USERS_PER_REQUEST``
rows (80,000 on a 4-vCPU instance: about 12 s of one load function staging them for the import at the measured
145 µs a list, ``tests/bench/bench_load.py``), however large the store. The popular and segment lists are one
request. How many instances is arithmetic too (``instances_for``): the version's users over what a worker scores in
the environment's time budget, between its bounds. The registry function sizes and writes the plan after the gate
(``write_plan``); the local pipeline calls the same function and runs one container per instance.
"""

from __future__ import annotations

import math
from typing import Any

from shopwise import config
from shopwise.dal.objects import write_json_lines

USERS_PER_REQUEST = 20_000  # users a request scores: ~3 s of one core at the measured 7,600 users/s (bench_transform)
ITEMS_PER_REQUEST = 20_000  # items whose neighbour and next-item rows a request writes
# users one transform worker scores a second at the envelope: make scale's "transform at the envelope's histories"
# (the transform's own path over candidates on the model trained as at the envelope, a blend of six parts, each
# shopper's history as long as the envelope's 260 events, 164 items), grown in items to a million. 108 until the
# scoring at candidates stopped sorting its products (743a19c): the same path 1.69-1.71x faster in one process
# (bench_transform.py --histories --baseline), and that stage alone at 217 a second (4.6 ms a user at a million
# items; bench_scale.py --stages "transform at the envelope's histories") where its runs before read 75-108. Taken
# at the old rate's best times 1.55, under the speed-up measured, for the machine's spread. Until 2026-12-04 it was
# 400, from random single-part models with 20 items a shopper (bench_transform.py --catalogs), which the blend and
# the envelope's histories outgrow
USERS_PER_WORKER_S = 170.0


def instances_for(users: int, workers: int, *, min_instances: int, max_instances: int, budget_s: float) -> int:
    """Instances of ``workers`` each that score ``users`` within ``budget_s`` at ``USERS_PER_WORKER_S``, between
    ``min_instances`` and ``max_instances`` (past the most, the transform takes longer than the budget:
    ``plan_seconds`` says how long). The bounds: ``EnvironmentConfig.transform_sizing``."""
    if workers < 1 or min_instances < 1 or max_instances < min_instances or budget_s <= 0 or users < 0:
        raise ValueError(
            f"instances need workers, min_instances >= 1, max_instances >= min_instances, a budget > 0 and "
            f"users >= 0: {workers}, {min_instances}, {max_instances}, {budget_s}, {users}"
        )
    needed = math.ceil(users / (USERS_PER_WORKER_S * workers * budget_s))
    return min(max_instances, max(min_instances, needed))


def plan_seconds(users: int, workers: int, instances: int) -> float:
    """The scoring time the plan expects of each instance (no start-up): what the budget is compared with."""
    return users / (USERS_PER_WORKER_S * workers * instances)


def plan(users: int, items: int, instances: int, workers: int = 1) -> list[list[dict[str, Any]]]:
    """The request lines of each object: the popular lists once, every user shard and every item shard exactly
    once, at most ``workers`` lines an object and at least one object per instance."""
    if instances < 1 or workers < 1 or users < 0 or items < 0:
        raise ValueError(f"a transform plan needs instances, workers >= 1 and counts >= 0: {instances}, {workers}")
    user_shards = max(instances * workers, math.ceil(users / USERS_PER_REQUEST))
    item_shards = max(1, math.ceil(items / ITEMS_PER_REQUEST))
    lines: list[dict[str, Any]] = [{"kind": "popular"}]
    lines += [{"kind": "users", "shard": s, "shards": user_shards} for s in range(user_shards)]
    lines += [{"kind": "items", "shard": s, "shards": item_shards} for s in range(item_shards)]
    objects = max(instances, math.ceil(len(lines) / workers))
    return [lines[n::objects] for n in range(objects)]


def prefix(version: str) -> str:
    return f"{config.TRANSFORM_PREFIX}{version}/"


def write_plan(bucket: str, version: str, objects: list[list[dict[str, Any]]]) -> str:
    """The plan's objects under ``transform/<version>/`` in the artifacts bucket; returns that prefix's URI (the
    transform job's S3Prefix input)."""
    for n, lines in enumerate(objects):
        write_json_lines(bucket, f"{prefix(version)}part-{n:04d}.jsonl", lines)
    return f"s3://{bucket}/{prefix(version)}"
