"""The feature snapshot of a training run: every profile's and item's features as of the newest training event,
folded by the feature store's own functions (``shopwise.features.definitions``: consent gate, decay, windows) from the same
events the model learns from. It is the baseline monitoring compares live features against, and the check that
training and serving see the same features: for the same events it equals what the feature store holds.

Every event is held until the end of the read, then each profile and each item is folded once with all its events:
profile folds need them all (consent is judged at event time), and an item folded once a chunk of events costs a
merge of its buckets per chunk it appears in — chunks x distinct items, which grows with the store squared (an item
fold was 44 s of a 100,000-shopper training, 7x its time at 30,000). The training instance's memory bounds the read;
past it the data set is built on Spark (``spark_dataset``, the same folds per profile and item). Profiles are keyed
by the event's profile id (no stitching here).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shopwise.events import Consent, Event, interaction_items
from shopwise.features.definitions import (
    Context,
    ItemFeatures,
    ProfileFeatures,
    apply_to_item,
    apply_to_profile,
)


def profile_row(profile_id: str, state: ProfileFeatures, now: float) -> dict[str, Any]:
    """A profile as one row of named features as of ``now``: the training snapshot's rows, and the live feature
    store's when monitoring compares the two (``shopwise_jobs.drift``)."""
    described = state.describe(now)
    top = next(iter(described["category_affinity"]), None)
    return {
        "profile_id": profile_id,
        "recent_viewed": len(described["recent_viewed"]),
        "recent_carted": len(described["recent_carted"]),
        "recent_purchased": len(described["recent_purchased"]),
        "top_category": top,
        "top_category_affinity": described["category_affinity"].get(top) if top else None,
        "cart_items": len(described["cart"]),
        "days_since_purchase": described["days_since_purchase"],
        "orders": described["orders"],
        "revenue": described["revenue"],
        "market": described["market"],
        "personalisation": described["personalisation"],
        "last_event_at": state.last_event_at or None,
    }


@dataclass
class FeatureSnapshot:
    context: Context
    profiles: dict[str, ProfileFeatures] = field(default_factory=dict)
    items: dict[str, ItemFeatures] = field(default_factory=dict)
    newest: float = 0.0
    _profile_events: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    _item_events: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))

    def _hold(self, event: Event) -> None:
        """Hold the event by profile and by item until ``finish``: consent is judged by event time against the
        consent history, and a grant may be read after the interactions it covers (the archive is in file order, not
        time order); an item's fold takes any order but costs a merge a call."""
        self._profile_events[event.profile_id].append(event)
        for item_id in dict.fromkeys(item for item, _kind in interaction_items(event)):
            self._item_events[item_id].append(event)
        self.newest = max(self.newest, event.occurred_at.timestamp())

    def finish(self) -> None:
        """Fold every item with all its events, and every profile that ever had a consent event with all its events
        in time order (what the stream updater builds when events arrive in order); profiles without one would stay
        empty, as in the store."""
        for item_id, batch in self._item_events.items():
            self.items[item_id] = apply_to_item(self.items.get(item_id) or ItemFeatures(), item_id, batch)
        self._item_events.clear()
        for profile_id, batch in self._profile_events.items():
            if any(isinstance(e, Consent) for e in batch):
                self.profiles[profile_id] = apply_to_profile(
                    self.profiles.get(profile_id) or ProfileFeatures(), batch, self.context
                )
        self._profile_events.clear()

    def folding(self, events: Iterable[Event]) -> Iterator[Event]:
        """Pass the events through, held for the folds on the way, and fold once they are all read."""
        for event in events:
            self._hold(event)
            yield event
        self.finish()

    def profile_table(self, now: float | None = None) -> pd.DataFrame:
        """One row per profile with a consent history (the feature store keeps no profile for anyone else): the named
        features of ``FEATURES`` as of ``now``."""
        now = self.newest if now is None else now
        rows = [profile_row(p, state, now) for p, state in sorted(self.profiles.items()) if state.consent]
        return pd.DataFrame(rows)

    def item_table(self, now: float | None = None) -> pd.DataFrame:
        now = self.newest if now is None else now
        return pd.DataFrame(
            [{"item_id": item_id, **state.windows(now)} for item_id, state in sorted(self.items.items())]
        )

    def write(self, directory: Path, now: float | None = None) -> dict[str, float]:
        directory.mkdir(parents=True, exist_ok=True)
        profiles, items = self.profile_table(now), self.item_table(now)
        profiles.to_parquet(directory / "profiles.parquet", index=False)
        items.to_parquet(directory / "items.parquet", index=False)
        return {"profiles": len(profiles), "items": len(items), "as_of": self.newest if now is None else now}
