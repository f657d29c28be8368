"""The drift figures on data where the answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopwise_jobs.drift import categorical_psi, drift_report, psi


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 20000)
    assert psi(base, rng.normal(0, 1, 20000)) < 0.01
    assert psi(base, rng.normal(1.0, 1, 20000)) > 0.5
    assert 0.02 < psi(base, rng.normal(0.3, 1, 20000)) < 0.2
    assert psi(np.zeros(100), np.zeros(50)) < 0.01  # a constant baseline, unchanged
    assert psi(np.zeros(100), np.ones(50)) > 1.0
    assert np.isnan(psi(np.array([np.nan]), np.ones(3)))


def test_categorical_psi_and_the_report_raise_the_alarms_that_apply() -> None:
    train = pd.Series(["view"] * 80 + ["cart"] * 15 + ["purchase"] * 5)
    assert categorical_psi(train, train) == pytest.approx(0.0)
    assert categorical_psi(train, pd.Series(["purchase"] * 50 + ["view"] * 50)) > 0.2

    def frame(users: list[str], items: list[str], kinds: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"user_id": users, "item_id": items, "kind": kinds, "ts": range(len(users))})

    training = {"view": 1.0}
    recent = frame(["a", "z", "y", "x"], ["i1", "new1", "new2", "new3"], ["view"] * 4)
    profiles = pd.DataFrame({"orders": [1, 2, 3] * 10})
    report = drift_report(
        "v1", profiles, pd.DataFrame(), profiles, pd.DataFrame(), training, recent, {"a", "b"}, {"i1", "i2"}
    )
    assert report.features == {"profile.orders": pytest.approx(0.0, abs=1e-6)}
    assert report.new_item_share == 0.75 and report.unknown_shopper_share == 0.75
    assert any(a.startswith("new items") for a in report.alarms)
    assert any(a.startswith("unknown shoppers") for a in report.alarms)
    assert not any(a.startswith("profile.") or a.startswith("event mix") for a in report.alarms)
