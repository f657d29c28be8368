"""Drift: the live feature store and the recent events against what the active model was trained on.

The baseline is the training job's feature snapshot (``features/profiles.parquet``, ``features/items.parquet`` in
the model folder, folded by the feature store's own code) and the model's users and items. The current side is
the feature store now (the same row builder, ``feature_snapshot.profile_row``) and the archive's newest events.

Like is compared with like: the shoppers active in the ``ACTIVE_HOURS`` before each side's time (the snapshot's
as-of time, now) and the items with views in the 7 days before it — time-dependent features (days since purchase,
windowed counts) are each as of their own side's time.

Figures: the population stability index (PSI) per numeric feature — quantile bins of the baseline, a small floor
for empty bins; under 0.1 stable, 0.1 to 0.2 moving, over 0.2 shifted — the PSI of the event-type mix (against
the mix the training job recorded, ``features/event_mix.json``), the share of recent interactions on items the
model does not know, and the share of recently active shoppers it does not know. The serving side, from the
impressions the serve API wrote to the archive: the share of answers per first source (personalised, real-time,
each fallback level) and the share of the model's items shown at all (catalog coverage).

``drift_for_model`` is the whole computation, run by ``shopwise drift`` locally and by the scheduled drift job
(``shopwise_jobs.drift_job``, a SageMaker job) in AWS, whose figures the monitor function publishes as CloudWatch
metrics with alarms that start a retrain.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopwise.config import NEW_ITEM_ALARM, PSI_ALARM, UNKNOWN_SHOPPER_ALARM
from shopwise.dal.feature_store import active_docs, merged_items
from shopwise.events import Click, Event, Impression
from shopwise.features.definitions import ProfileFeatures
from shopwise.keys import key_id
from shopwise.picks import PERSONAL_SOURCES
from shopwise_jobs.dataset import interactions_from_events
from shopwise_jobs.feature_snapshot import profile_row

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
FLOOR = 1e-4
ACTIVE_HOURS = 24.0
# live documents read per kind: PSI over 10 deciles from 50,000 values moves by well under the 0.02 the alarms could
# notice (the sampling noise of PSI is about bins / n), and the read is 50,000 half units whatever the store's size
LIVE_SAMPLE = 50_000


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
    return share_psi(expected.value_counts(normalize=True).to_dict(), actual.value_counts(normalize=True).to_dict())


def share_psi(expected: dict[Any, float], actual: dict[Any, float]) -> float:
    """PSI of two categorical distributions given as shares (a category missing on one side counts as FLOOR)."""
    if not expected or not actual:
        return float("nan")
    keys = sorted(set(expected) | set(actual), key=str)
    e = np.maximum(np.array([expected.get(k, 0.0) for k in keys], dtype=float), FLOOR)
    a = np.maximum(np.array([actual.get(k, 0.0) for k in keys], dtype=float), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def event_mix(kinds: pd.Series) -> dict[str, float]:
    return {str(k): round(float(v), 4) for k, v in kinds.value_counts(normalize=True).items()}


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
    serving: dict[str, Any] = field(default_factory=dict)  # impressions, sources (shares), coverage
    performance: dict[str, Any] = field(default_factory=dict)  # click-through of the answers, overall and personal

    @property
    def max_feature_psi(self) -> float:
        finite = [v for v in self.features.values() if np.isfinite(v)]
        return max(finite) if finite else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "serving": self.serving,
            "performance": self.performance,
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
    training_mix: dict[str, float],
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
    recent_mix = event_mix(recent_interactions["kind"]) if len(recent_interactions) else {}
    mix_psi = share_psi(training_mix, recent_mix)
    recent = len(recent_interactions)
    new_items = float((~recent_interactions["item_id"].isin(model_items)).mean()) if recent else 0.0
    shoppers = recent_interactions["user_id"].unique() if recent else np.array([])
    unknown = float(np.mean([s not in model_users for s in shoppers])) if len(shoppers) else 0.0
    report = DriftReport(
        model_version,
        features,
        mix_psi,
        {"training": training_mix, "recent": recent_mix},
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


def live_tables(features_table: str, now: float, sample: int = LIVE_SAMPLE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature store's profiles and items as the snapshot's rows, as of ``now``: those the activity index has
    active in the days the comparison looks at (profiles: ``ACTIVE_HOURS``; items: the 7 days of ``views_7d``), not
    a Scan of every document ever written — and of those at most ``sample`` of each kind (a fixed pseudo-random
    subset), so the job's reads and memory stop growing with the store."""
    profiles = []
    found = merged_items(active_docs(features_table, "item", now - 7 * 86400, now, sample))  # parts merged
    items = [{"item_id": item, **features.windows(now)} for item, features in found.items()]
    for doc in active_docs(features_table, "profile", now - ACTIVE_HOURS * 3600, now, sample):
        if not doc.merged_into and doc.data.get("features"):
            state = ProfileFeatures.from_json(doc.data["features"])
            if state.consent:
                profiles.append(profile_row(key_id(doc.key), state, now))
    return pd.DataFrame(profiles), pd.DataFrame(items)


def serving_side(impressions: list[Impression], model_items: set[str]) -> dict[str, Any]:
    """What the serve API answered: the share of answers per first source, the share of the model's items shown at
    all, and the score distribution of personalised answers. Scores are scaled to the answer's best, so the
    figure is the score of the last item shown relative to the first (quantiles): lists that flatten (near 1)
    mean the model no longer tells items apart for these shoppers; lists that fall off fast mean one strong pick."""
    sources = Counter(i.source or "unknown" for i in impressions)
    shown = {item for i in impressions for item in i.items}
    total = max(sum(sources.values()), 1)
    personal = sum(n for source, n in sources.items() if source in PERSONAL_SOURCES)
    tails = np.array(
        [
            i.scores[-1] / i.scores[0]
            for i in impressions
            if i.source in PERSONAL_SOURCES and i.scores and len(i.scores) > 1 and i.scores[0] > 0
        ]
    )
    quantiles = np.quantile(tails, [0.1, 0.5, 0.9]).round(4).tolist() if len(tails) else None
    return {
        "impressions": len(impressions),
        "sources": {k: round(v / total, 4) for k, v in sources.most_common()},
        "personalised_share": round(personal / total, 4) if impressions else None,
        "coverage": round(len(shown & model_items) / max(len(model_items), 1), 4) if impressions else None,
        "last_to_first_score": dict(zip(("p10", "p50", "p90"), quantiles, strict=True)) if quantiles else None,
    }


def performance(impressions: list[Impression], clicks: list[Click]) -> dict[str, Any]:
    """Online performance of the answers in the window: clicks carrying an answer's recommendation_id per answer,
    overall and for personalised answers (a falling personalised CTR is what the performance alarm watches). A
    click counts only from the shopper the answer was served to (a click is the browser's word)."""
    personal = {i.recommendation_id for i in impressions if i.source in PERSONAL_SOURCES}
    shown = {i.recommendation_id: i.profile_id for i in impressions}
    clicked = [
        c.recommendation_id
        for c in clicks
        if c.recommendation_id in shown and shown[c.recommendation_id] == c.profile_id
    ]
    return {
        "answers": len(shown),
        "clicks": len(clicked),
        "ctr": round(len(clicked) / len(shown), 6) if shown else None,
        "personalised_ctr": round(sum(1 for r in clicked if r in personal) / len(personal), 6) if personal else None,
    }


def drift_for_model(
    model_dir: Path,
    version: str,
    data_end: float,
    features_table: str,
    events: Iterable[Event],
    now: float,
    hours: float,
) -> DriftReport:
    """The drift report of the model in ``model_dir`` (its feature snapshot, users, items, training event mix)
    against the feature store now and the ``events`` of the last ``hours`` (older ones are skipped)."""
    needed = [model_dir / "features" / n for n in ("profiles.parquet", "items.parquet", "event_mix.json")]
    missing = [str(p.relative_to(model_dir)) for p in needed if not p.exists()]
    if missing:
        raise FileNotFoundError(f"model {version} has no {', '.join(missing)} (trained before drift baselines)")
    since = now - hours * 3600
    recent = [e for e in events if since <= e.occurred_at.timestamp() <= now]
    impressions = [e for e in recent if isinstance(e, Impression)]
    model_items = set(json.loads((model_dir / "items.json").read_text()))
    current_profiles, current_items = live_tables(features_table, now)
    report = drift_report(
        version,
        active_profiles(pd.read_parquet(needed[0]), data_end),
        active_items(pd.read_parquet(needed[1])),
        active_profiles(current_profiles, now),
        active_items(current_items),
        json.loads(needed[2].read_text()),
        interactions_from_events(e for e in recent if not isinstance(e, Impression)),
        set(json.loads((model_dir / "users.json").read_text())),
        model_items,
    )
    report.serving = serving_side(impressions, model_items)
    report.performance = performance(impressions, [e for e in recent if isinstance(e, Click)])
    return report
