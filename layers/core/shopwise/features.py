"""Feature definitions: each feature's name, update rule and bound, defined once.

The update rules are pure functions over plain data so that the stream updater, the training data set builder and
the tests all apply exactly the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Bounded recent-item lists per interaction kind, newest first.
RECENT_LIMIT = 20
INTERACTION_KINDS = ("view", "cart", "purchase")
# Weight of each interaction kind in training and in real-time blending: purchase > cart > view.
KIND_WEIGHTS: dict[str, float] = {"view": 1.0, "cart": 2.0, "purchase": 4.0}


@dataclass(frozen=True)
class Interaction:
    """One (profile, item, kind, time) fact extracted from an event."""

    event_id: str
    item_id: str
    kind: str
    at: float  # epoch seconds


@dataclass
class ProfileFeatures:
    recent: dict[str, list[list[Any]]] = field(default_factory=lambda: {k: [] for k in INTERACTION_KINDS})
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in INTERACTION_KINDS})
    last_event_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"recent": self.recent, "counts": self.counts, "last_event_at": self.last_event_at}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ProfileFeatures:
        if not data:
            return cls()
        recent = {k: [list(p) for p in data.get("recent", {}).get(k, [])] for k in INTERACTION_KINDS}
        counts = {k: int(data.get("counts", {}).get(k, 0)) for k in INTERACTION_KINDS}
        return cls(recent=recent, counts=counts, last_event_at=float(data.get("last_event_at", 0.0)))

    def recent_items(self, kind: str) -> list[str]:
        return [str(pair[0]) for pair in self.recent.get(kind, [])]


def apply_interactions(state: ProfileFeatures, interactions: Iterable[Interaction]) -> ProfileFeatures:
    """Fold interactions into a profile: applied in time order, recent lists de-duplicated and bounded."""
    recent = {k: {str(p[0]): float(p[1]) for p in state.recent.get(k, [])} for k in INTERACTION_KINDS}
    counts = dict(state.counts)
    last = state.last_event_at
    for it in sorted(interactions, key=lambda i: (i.at, i.event_id)):
        if it.kind not in recent:
            continue
        seen = recent[it.kind]
        seen[it.item_id] = max(it.at, seen.get(it.item_id, 0.0))
        counts[it.kind] = counts.get(it.kind, 0) + 1
        last = max(last, it.at)
    bounded = {
        kind: [[item, at] for item, at in sorted(seen.items(), key=lambda p: (-p[1], p[0]))[:RECENT_LIMIT]]
        for kind, seen in recent.items()
    }
    return ProfileFeatures(recent=bounded, counts=counts, last_event_at=last)
