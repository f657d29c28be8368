from shopwise.features import RECENT_LIMIT, Interaction, ProfileFeatures, apply_interactions


def test_recent_lists_are_newest_first_deduplicated_and_bounded() -> None:
    # Given more distinct viewed items than the bound, one of them seen twice
    views = [Interaction(f"e{i}", f"item-{i}", "view", float(i)) for i in range(RECENT_LIMIT + 5)]
    views.append(Interaction("again", "item-0", "view", 1000.0))

    state = apply_interactions(ProfileFeatures(), views)

    recent = state.recent_items("view")
    assert len(recent) == RECENT_LIMIT
    assert recent[0] == "item-0"  # re-viewed last, so first
    assert len(set(recent)) == len(recent)
    assert state.counts["view"] == RECENT_LIMIT + 6
    assert state.last_event_at == 1000.0


def test_order_of_arrival_does_not_change_the_result() -> None:
    interactions = [
        Interaction("a", "x", "cart", 5.0),
        Interaction("b", "y", "purchase", 3.0),
        Interaction("c", "x", "view", 9.0),
        Interaction("d", "z", "view", 1.0),
    ]
    forward = apply_interactions(ProfileFeatures(), interactions)
    backward = apply_interactions(ProfileFeatures(), list(reversed(interactions)))
    assert forward.to_json() == backward.to_json()


def test_features_survive_their_json_form() -> None:
    state = apply_interactions(ProfileFeatures(), [Interaction("a", "x", "purchase", 7.0)])
    assert ProfileFeatures.from_json(state.to_json()).to_json() == state.to_json()
    assert ProfileFeatures.from_json(None).counts == {"view": 0, "cart": 0, "purchase": 0}
