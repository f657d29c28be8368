"""Training data set: events (archive or import files) -> weighted user-item interactions, split in time.

Interactions come from ``shopwise.events.interaction_items``, the same rule the feature updater applies, so
training sees exactly the signals serving sees.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from scipy import sparse

from shopwise.events import EVENT_ADAPTER, interaction_items
from shopwise.features import KIND_WEIGHTS

INTERACTION_COLUMNS = ["event_id", "user_id", "item_id", "kind", "ts"]


def _json_lines(path: Path) -> Iterator[Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield None  # counted as skipped by the reader


@dataclass(frozen=True)
class EventData:
    interactions: pd.DataFrame
    records: int
    skipped: int  # archive records that are not valid events (the archive copies the stream as it is)


def read_event_files(directory: Path) -> EventData:
    """Every *.jsonl / *.jsonl.gz under a directory (archive layout events/dt=YYYY-MM-DD/...) as interactions."""
    rows: list[tuple[str, str, str, str, float]] = []
    records = skipped = 0
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
    for path in files:
        for raw in _json_lines(path):
            records += 1
            try:
                event = EVENT_ADAPTER.validate_python(raw)
            except ValidationError:
                skipped += 1
                continue
            at = event.occurred_at.timestamp()
            rows.extend((event.event_id, event.profile_id, item, kind, at) for item, kind in interaction_items(event))
    frame = pd.DataFrame(rows, columns=INTERACTION_COLUMNS)
    # the archive is at-least-once: the same event may arrive twice
    frame = frame.drop_duplicates(subset=["event_id", "item_id", "kind"]).reset_index(drop=True)
    return EventData(interactions=frame, records=records, skipped=skipped)


def read_catalog(directory: Path) -> pd.DataFrame:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
    rows = [row for path in files for row in _json_lines(path) if isinstance(row, dict)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["item_id", "title", "category"])
    frame["item_id"] = frame["item_id"].astype(str)
    return frame


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: float


def temporal_split(interactions: pd.DataFrame, test_fraction: float) -> Split:
    """Train on everything before the cutoff time, test on what came after (for users and items seen before)."""
    if interactions.empty:
        raise ValueError("no interactions to train on")
    cutoff = float(interactions["ts"].quantile(1.0 - test_fraction))
    train = interactions[interactions["ts"] < cutoff]
    later = interactions[interactions["ts"] >= cutoff]
    test = later[later["user_id"].isin(train["user_id"]) & later["item_id"].isin(train["item_id"])]
    return Split(train=train, test=test, cutoff=cutoff)


@dataclass
class Matrix:
    """A users x items matrix of interaction strength, with the id <-> index maps."""

    matrix: sparse.csr_matrix
    users: np.ndarray
    items: np.ndarray

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.users)}

    def item_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.items)}


def interaction_matrix(
    interactions: pd.DataFrame,
    weights: dict[str, float] | None = None,
    half_life_days: float = 0.0,
    now: float | None = None,
) -> Matrix:
    """Strength = sum over interactions of kind weight x time decay (purchase > cart > view by default)."""
    weights = weights or KIND_WEIGHTS
    frame = interactions.copy()
    frame["w"] = frame["kind"].map(weights).fillna(0.0)
    if half_life_days > 0:
        ref = now if now is not None else float(frame["ts"].max())
        frame["w"] *= np.power(0.5, (ref - frame["ts"]) / (half_life_days * 86400.0))
    grouped = frame.groupby(["user_id", "item_id"], sort=True)["w"].sum().reset_index()
    grouped = grouped[grouped["w"] > 0]
    users, user_codes = np.unique(grouped["user_id"].to_numpy(dtype=str), return_inverse=True)
    items, item_codes = np.unique(grouped["item_id"].to_numpy(dtype=str), return_inverse=True)
    matrix = sparse.csr_matrix(
        (grouped["w"].to_numpy(dtype=np.float32), (user_codes, item_codes)), shape=(len(users), len(items))
    )
    return Matrix(matrix=matrix, users=users, items=items)
