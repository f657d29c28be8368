"""Drift: the live feature store and the recent events against what the active model was trained on.

The baseline is the training job's feature snapshot (``features/profiles.parquet``, ``features/items.parquet`` in
the model folder, folded by the feature store's own code) and the model's users and items. The current side is
the feature store now (the same row builder, ``feature_snapshot.profile_row``) and the archive's newest events.

Like is compared with like: the shoppers active in the ``ACTIVE_HOURS`` before each side's time (the snapshot's
as-of time, now) and the items with views in the 7 days before it — time-dependent features (days since purchase,
windowed counts) are each as of their own side's time.

Figures: the population stability index (PSI) per numeric feature — quantile bins of the baseline, a small floor
for empty bins; under 0.1 stable, 0.1 to 0.2 moving, over 0.2 shifted — the PSI of the event-type mix, the share of
recent interactions on items the model does not know, and the share of recently active shoppers it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PROFILE_FEATURES = (
    "recent_viewed",
    "recent_carted",
    "recent_purchased",
    "cart_items",
    "orders",
    "revenue",
    "days_since_purchase",
    "top_category_affinity",
)
ITEM_FEATURES = ("views_24h", "carts_24h", "purchases_24h", "views_7d", "trending")
PSI_ALARM = 0.2
NEW_ITEM_ALARM = 0.3
UNKNOWN_SHOPPER_ALARM = 0.6
FLOOR = 1e-4
ACTIVE_HOURS = 24.0


def active_profiles(frame: pd.DataFrame, as_of: float, hours: float = ACTIVE_HOURS) -> pd.DataFrame:
    """The profiles with an interaction in the ``hours`` before ``as_of`` (all of them for a snapshot written
    before snapshots recorded it)."""
    if "last_event_at" not in frame or frame.empty:
        return frame
    when = pd.to_numeric(frame["last_event_at"], errors="coerce")
    return frame[(when >= as_of - hours * 3600) & (when <= as_of)]


def active_items(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[pd.to_numeric(frame["views_7d"], errors="coerce") > 0] if "views_7d" in frame else frame


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (NaNs dropped). A baseline with at most
    ``bins`` distinct values (counts, flags, a constant) is compared value by value, with one more category for
    values it never had; otherwise by its quantile bins, open at both ends."""
    expected = expected[np.isfinite(expected)]
    actual = actual[np.isfinite(actual)]
    if not len(expected) or not len(actual):
        return float("nan")
    values = np.unique(expected)
    if len(values) <= bins:
        seen = np.isin(actual, values)
        return categorical_psi(pd.Series(expected.astype(str)), pd.Series(np.where(seen, actual.astype(str), "unseen")))
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.maximum(e, FLOOR), np.maximum(a, FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def categorical_psi(expected: pd.Series, actual: pd.Series) -> float:
    shares = pd.concat([expected.value_counts(normalize=True), actual.value_counts(normalize=True)], axis=1)
    shares = shares.fillna(0.0).clip(lower=FLOOR)
    e, a = shares.iloc[:, 0].to_numpy(), shares.iloc[:, 1].to_numpy()
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class DriftReport:
    model_version: str
    features: dict[str, float]  # "profile.orders" -> PSI
    event_mix_psi: float
    event_mix: dict[str, dict[str, float]]  # "training" / "recent" -> kind -> share
    new_item_share: float
    unknown_shopper_share: float
    recent_interactions: int
    alarms: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "features": {k: round(v, 4) for k, v in self.features.items()},
            "event_mix_psi": round(self.event_mix_psi, 4),
            "event_mix": self.event_mix,
            "new_item_share": round(self.new_item_share, 4),
            "unknown_shopper_share": round(self.unknown_shopper_share, 4),
            "recent_interactions": self.recent_interactions,
            "alarms": self.alarms,
        }


def drift_report(
    model_version: str,
    baseline_profiles: pd.DataFrame,
    baseline_items: pd.DataFrame,
    current_profiles: pd.DataFrame,
    current_items: pd.DataFrame,
    training_interactions: pd.DataFrame,
    recent_interactions: pd.DataFrame,
    model_users: set[str],
    model_items: set[str],
) -> DriftReport:
    features: dict[str, float] = {}
    for prefix, base, now, names in (
        ("profile", baseline_profiles, current_profiles, PROFILE_FEATURES),
        ("item", baseline_items, current_items, ITEM_FEATURES),
    ):
        for name in names:
            if name in base and name in now:
                features[f"{prefix}.{name}"] = psi(
                    pd.to_numeric(base[name], errors="coerce").to_numpy(float),
                    pd.to_numeric(now[name], errors="coerce").to_numpy(float),
                )
    training_mix = training_interactions["kind"].value_counts(normalize=True)
    recent_mix = recent_interactions["kind"].value_counts(normalize=True)
    mix_psi = (
        categorical_psi(training_interactions["kind"], recent_interactions["kind"])
        if len(recent_interactions)
        else float("nan")
    )
    recent = len(recent_interactions)
    new_items = float((~recent_interactions["item_id"].isin(model_items)).mean()) if recent else 0.0
    shoppers = recent_interactions["user_id"].unique() if recent else np.array([])
    unknown = float(np.mean([s not in model_users for s in shoppers])) if len(shoppers) else 0.0
    report = DriftReport(
        model_version,
        features,
        mix_psi,
        {
            "training": {str(k): float(v) for k, v in training_mix.round(4).items()},
            "recent": {str(k): float(v) for k, v in recent_mix.round(4).items()},
        },
        new_items,
        unknown,
        recent,
    )
    report.alarms = [f"{name}: PSI {value:.3f} > {PSI_ALARM}" for name, value in features.items() if value > PSI_ALARM]
    if np.isfinite(mix_psi) and mix_psi > PSI_ALARM:
        report.alarms.append(f"event mix: PSI {mix_psi:.3f} > {PSI_ALARM}")
    if new_items > NEW_ITEM_ALARM:
        report.alarms.append(f"new items: {new_items:.0%} of recent interactions > {NEW_ITEM_ALARM:.0%}")
    if unknown > UNKNOWN_SHOPPER_ALARM:
        report.alarms.append(f"unknown shoppers: {unknown:.0%} of recent shoppers > {UNKNOWN_SHOPPER_ALARM:.0%}")
    return report
