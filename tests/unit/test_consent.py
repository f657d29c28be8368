"""Consent everywhere: training learns only from what shoppers did while they had granted personalisation (and still
have), by the feature store's own rule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from shopwise.events import Event, parse_event
from shopwise.features.definitions import ProfileFeatures, apply_consent
from shopwise_jobs.dataset import interactions_from_events
from shopwise_jobs.training import Hyperparameters, personal_interactions

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ev(n: int, who: str, minute: int, kind: str = "product_view", **more: Any) -> Event:
    body: dict[str, Any] = {"event_id": f"e{n}", "event_type": kind, "occurred_at": T0 + timedelta(minutes=minute)}
    body["customer_id"] = who
    if kind == "product_view":
        body["item_id"] = f"i{n}"
    return parse_event({**body, **more})


def test_only_interactions_while_consenting_and_of_shoppers_consenting_now_train_the_personal_models() -> None:
    events = [
        ev(1, "a", 10, "consent", granted=["personalisation"]),
        ev(2, "a", 5),  # before the grant: not used
        ev(3, "a", 15),
        ev(4, "b", 15),  # never granted
        ev(5, "c", 1, "consent", granted=["personalisation"]),
        ev(6, "c", 5),
        ev(7, "c", 20, "consent", revoked=["personalisation"]),  # revoked since: not modelled at all
        ev(8, "d", 1, "consent", granted=["personalisation", "marketing"]),
        ev(9, "d", 10, "consent", revoked=["personalisation"]),
        ev(10, "d", 20, "consent", granted=["personalisation"]),
        ev(11, "d", 5),
        ev(12, "d", 15),  # while revoked
        ev(13, "d", 25),
        ev(14, "e", 3, "consent", granted=["marketing"]),  # marketing alone does not allow personalisation
        ev(15, "e", 5),
    ]
    random.Random(3).shuffle(events)  # the archive is in file order, not time order
    frame = interactions_from_events(events)
    used = personal_interactions(frame, Hyperparameters())
    assert sorted(used["event_id"]) == ["e11", "e13", "e3"]
    assert len(personal_interactions(frame, Hyperparameters(consent="assumed"))) == 8  # for data without consent
    # the vectorised rule agrees with the feature store's, row by row, for the shoppers consenting at the end
    for user in ("c:a", "c:d"):
        state = apply_consent(ProfileFeatures(), [e for e in events if e.profile_id == user])
        rows: pd.DataFrame = frame[frame["user_id"] == user]
        assert list(rows["consented"]) == [state.consented(t) for t in rows["ts"]]


def test_the_fit_holds_one_frame_whose_first_rows_are_the_consented_ones() -> None:
    """``fit_frame``: the columns the fit never reads go, the consented rows come first in their order (the others
    after, in theirs), and the personal models' rows are then a slice of it — the same rows as from the data set's
    own order, without a second copy of them."""
    import numpy as np

    from shopwise_jobs.training import fit_frame

    events = [ev(1, "a", 1, "consent", granted=["personalisation"]), ev(2, "b", 2)]
    events += [ev(n, "ab"[n % 2], n) for n in range(3, 40)]
    random.Random(5).shuffle(events)
    frame = interactions_from_events(events)
    assert not frame["consented"].is_monotonic_decreasing  # interleaved, as the archive's order leaves them
    held = fit_frame(frame)
    assert "event_id" not in held and "price" not in held
    consented = frame[frame["consented"]]
    assert list(held["ts"][: len(consented)]) == list(consented["ts"])  # first, in their order
    assert list(held["ts"][len(consented) :]) == list(frame[~frame["consented"]]["ts"])
    personal = personal_interactions(held, Hyperparameters())
    pd.testing.assert_frame_equal(
        personal, personal_interactions(frame, Hyperparameters()).drop(columns=["event_id", "price"])
    )
    assert np.shares_memory(personal["ts"].to_numpy(), held["ts"].to_numpy())  # a slice, not a copy
