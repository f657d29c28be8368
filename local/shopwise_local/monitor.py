"""``shopwise drift``: the drift report (``shopwise_jobs.drift``) for the running local stack's active model.

Baseline: the active model's artefact (its feature snapshot, users and items) from the registry's model URI.
Current: the feature store now (one Scan) and the archive's newest events.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from pathlib import Path

import pandas as pd

from shopwise import config, registry
from shopwise.dal.aws import client
from shopwise.dal.feature_store import scan_docs
from shopwise.dal.objects import parse_s3_uri
from shopwise.features import ItemFeatures, ProfileFeatures
from shopwise.keys import entity_of, key_id
from shopwise.settings import get_settings
from shopwise_jobs.dataset import read_event_files
from shopwise_jobs.drift import DriftReport, active_items, active_profiles, drift_report
from shopwise_jobs.feature_snapshot import profile_row
from shopwise_local.sagemaker import download_prefix


def live_tables(features_table: str, now: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature store's profiles and items as the snapshot's rows, as of ``now``."""
    profiles, items = [], []
    for doc in scan_docs(features_table, "profile#", "item#"):
        if entity_of(doc.key) == "item":
            items.append({"item_id": key_id(doc.key), **ItemFeatures.from_json(doc.data).windows(now)})
        elif not doc.merged_into and doc.data.get("features"):
            state = ProfileFeatures.from_json(doc.data["features"])
            if state.consent:
                profiles.append(profile_row(key_id(doc.key), state, now))
    return pd.DataFrame(profiles), pd.DataFrame(items)


def drift_now(hours: float = 24.0, now: float | None = None) -> DriftReport:
    settings = get_settings()
    active = registry.active(settings.config_table)
    if active is None or not active.model_uri:
        raise RuntimeError("no active model in the registry: run `shopwise retrain` (or `make demo`) first")
    now = time.time() if now is None else now
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bucket, key = parse_s3_uri(active.model_uri)
        client("s3").download_file(bucket, key, str(work / "model.tar.gz"))
        with tarfile.open(work / "model.tar.gz") as tar:
            tar.extractall(work / "model", filter="data")
        model = work / "model"
        if not (model / "features" / "profiles.parquet").exists():
            raise FileNotFoundError(f"model {active.version} has no feature snapshot (trained before snapshots?)")
        baseline_profiles = pd.read_parquet(model / "features" / "profiles.parquet")
        baseline_items = pd.read_parquet(model / "features" / "items.parquet")
        users = set(json.loads((model / "users.json").read_text()))
        items = set(json.loads((model / "items.json").read_text()))
        download_prefix(f"s3://{settings.archive_bucket}/{config.ARCHIVE_EVENTS_PREFIX}", work / "events")
        interactions = read_event_files(work / "events").interactions
    current_profiles, current_items = live_tables(settings.features_table, now)
    end = active.data_window[1] if active.data_window else now  # the snapshot is as of the newest training event
    return drift_report(
        active.version,
        active_profiles(baseline_profiles, end),
        active_items(baseline_items),
        active_profiles(current_profiles, now),
        active_items(current_items),
        interactions[interactions["ts"] <= end],
        interactions[interactions["ts"] >= now - hours * 3600],
        users,
        items,
    )
