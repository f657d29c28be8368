from datetime import UTC, datetime

from shopwise.events import parse_event
from shopwise.features import Interaction, ProfileFeatures, apply_interactions
from shopwise.ingestion.update_features import update_features


class FakeStore:
    """In-memory feature store that counts writes and can be told to fail for one profile."""

    def __init__(self, failing: str = "") -> None:
        self.profiles: dict[str, ProfileFeatures] = {}
        self.item_writes = 0
        self.profile_writes = 0
        self.failing = failing

    def apply_to_profile(self, profile_id: str, interactions: list[Interaction]) -> ProfileFeatures:
        if profile_id == self.failing:
            raise RuntimeError("throttled")
        self.profile_writes += 1
        self.profiles[profile_id] = apply_interactions(self.profiles.get(profile_id, ProfileFeatures()), interactions)
        return self.profiles[profile_id]

    def add_item_counts(self, interactions: list[Interaction]) -> int:
        items = {i.item_id for i in interactions}
        self.item_writes += len(items)
        return len(items)


def events(spec: list[tuple[str, str]]) -> list:
    at = datetime(2026, 11, 23, tzinfo=UTC).isoformat()
    return [
        parse_event(
            {"event_id": f"e{n}", "event_type": "product_view", "occurred_at": at, "anonymous_id": who, "item_id": item}
        )
        for n, (who, item) in enumerate(spec)
    ]


def test_one_write_per_touched_profile_and_item() -> None:
    store = FakeStore()
    batch = events([("a", "x"), ("a", "y"), ("b", "x"), ("a", "x"), ("b", "z")])
    outcome = update_features(batch, store)
    assert store.profile_writes == 2  # a, b
    assert store.item_writes == 3  # x, y, z
    assert outcome.writes == 5
    assert store.profiles["a"].counts["view"] == 3


def test_a_failing_profile_is_reported_and_the_others_are_applied() -> None:
    store = FakeStore(failing="a")
    outcome = update_features(events([("a", "x"), ("b", "y")]), store)
    assert set(outcome.failed_profiles) == {"a"}
    assert "throttled" in outcome.failed_profiles["a"]
    assert "b" in store.profiles
    assert store.item_writes == 1  # only b's item: a's interactions were not applied
