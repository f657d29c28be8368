"""The feature store: per-profile and per-item features in DynamoDB, written with conditional updates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import boto3
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from shopwise.dal.aws import backoff
from shopwise.dal.models import item_model, profile_model
from shopwise.features import Interaction, ProfileFeatures, apply_interactions

MAX_CONFLICT_RETRIES = 8


class FeatureStore:
    def __init__(self, profiles_table: str, items_table: str) -> None:
        region = boto3.session.Session().region_name
        self.Profile = profile_model(profiles_table, region)
        self.Item = item_model(items_table, region)

    def get_profile(self, profile_id: str) -> ProfileFeatures | None:
        try:
            row = self.Profile.get(profile_id, consistent_read=True)
        except self.Profile.DoesNotExist:
            return None
        return ProfileFeatures.from_json(row.features)

    def apply_to_profile(self, profile_id: str, interactions: list[Interaction]) -> ProfileFeatures:
        """One conditional write per profile per batch: read, fold, write if nobody wrote in between."""
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                row = self.Profile.get(profile_id, consistent_read=True)
            except self.Profile.DoesNotExist:
                row = self.Profile(profile_id)
            state = ProfileFeatures.from_json(getattr(row, "features", None))
            merged = apply_interactions(state, interactions)
            try:
                # update() on a model with a VersionAttribute is conditional on the version read above.
                row.update(actions=[self.Profile.features.set(merged.to_json())])
                return merged
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
                backoff(attempt)
        raise RuntimeError(f"profile {profile_id}: gave up after {MAX_CONFLICT_RETRIES} write conflicts")

    def add_item_counts(self, interactions: Iterable[Interaction]) -> int:
        """Coalesce item counters per item and apply each as one atomic ADD. Returns the number of writes."""
        per_item: dict[str, Counter[str]] = {}
        for it in interactions:
            per_item.setdefault(it.item_id, Counter())[it.kind] += 1
        for item_id, counts in per_item.items():
            actions: list[Action] = []
            if counts["view"]:
                actions.append(self.Item.views.add(counts["view"]))
            if counts["cart"]:
                actions.append(self.Item.carts.add(counts["cart"]))
            if counts["purchase"]:
                actions.append(self.Item.purchases.add(counts["purchase"]))
            self.Item(item_id).update(actions=actions)
        return len(per_item)
