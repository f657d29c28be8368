"""Update features: fold a batch of events into the feature store, one write per touched entity."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from shopwise.events import Event, interaction_items
from shopwise.features import Interaction, ProfileFeatures


class Store(Protocol):
    def apply_to_profile(self, profile_id: str, interactions: list[Interaction]) -> ProfileFeatures: ...

    def add_item_counts(self, interactions: list[Interaction]) -> int: ...


@dataclass
class UpdateOutcome:
    writes: int = 0
    failed_profiles: dict[str, str] = field(default_factory=dict)  # profile id -> reason


def interactions_of(event: Event) -> list[Interaction]:
    at = event.occurred_at.timestamp()
    return [Interaction(event.event_id, item, kind, at) for item, kind in interaction_items(event)]


def update_features(events: list[Event], store: Store) -> UpdateOutcome:
    """Coalesce the batch per profile and per item; a failing profile does not stop the others."""
    outcome = UpdateOutcome()
    per_profile: dict[str, list[Interaction]] = defaultdict(list)
    applied: list[Interaction] = []
    for event in events:
        per_profile[event.profile_id].extend(interactions_of(event))
    for profile_id, interactions in per_profile.items():
        if not interactions:
            continue
        try:
            store.apply_to_profile(profile_id, interactions)
        except Exception as exc:  # reported per record by the handler; the batch goes on
            outcome.failed_profiles[profile_id] = f"{type(exc).__name__}: {exc}"
            continue
        outcome.writes += 1
        applied.extend(interactions)
    if applied:
        outcome.writes += store.add_item_counts(applied)
    return outcome
