"""A local stack stocked with a simulated store: catalog and history imported, the newest events replayed through
the API with consent, then the pipeline run (export -> train -> transform -> load). What the serving tests and the
serving benchmark start from (``make demo`` does the same with progress printed)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise_local.importer import import_events, import_items
from shopwise_local.pipeline import PipelineResult, run_pipeline
from shopwise_local.replay import replay
from shopwise_local.simulate import demo_dataset
from shopwise_local.stack import LocalStack


@dataclass(frozen=True)
class StockedStore:
    result: PipelineResult
    customers: list[str]  # logged-in shoppers of the replay (they granted personalisation consent)
    catalog: dict[str, dict[str, str]]  # item id -> its catalog row


def stock(stack: LocalStack, work: Path, shoppers: int = 500, items: int = 300, replay_max: int = 600) -> StockedStore:
    assert stack.resources and stack.poller and stack.api, "start the stack's functions first"
    data = demo_dataset(work / "data", shoppers=shoppers, days=30, replay_max=replay_max, progress=False, items=items)
    tables = stack.resources.tables
    import_items(data.items, tables["items"], tables["features"], False)
    pseudonymiser = load_pseudonymiser(stack.resources.pseudonym_key_secret)
    import_events(data.history, stack.resources.archive_bucket, pseudonymiser, False)
    sent = replay(stack.api.url, data.replay, progress=False, grant_consent=True)
    if sent.rejected:
        raise RuntimeError(f"{sent.rejected} replayed events were rejected: {sent.reasons[:3]}")
    if not stack.poller.wait_idle(120):
        raise RuntimeError("the stream poller did not catch up within 120 s")
    result = run_pipeline(
        stack.resources.archive_bucket,
        stack.resources.artifacts_bucket,
        work / "jobs",
        hyperparameters={"budget": "quick"},
        load_function=stack.functions["load"],
        registry_function=stack.functions["registry"],
        export_function=stack.functions["export_catalog"],
    )
    with data.replay.open(newline="") as handle:
        customers = list(dict.fromkeys(r["user_id"] for r in csv.DictReader(handle) if r["id_type"] == "customer"))
    with data.items.open(newline="") as handle:
        catalog = {r["item_id"]: r for r in csv.DictReader(handle)}
    return StockedStore(result, customers, catalog)
