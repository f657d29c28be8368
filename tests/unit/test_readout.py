"""The experiment and campaign readouts on data whose answer is known: the delta-method error against the spread of
many replications, attribution windows, sessions, the sample-ratio check and a campaign's lift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from shopwise.events import Event, parse_event
from shopwise_jobs.readout import Ratio, campaign_readout, experiment_readout, srm_p_value

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def ev(kind: str, who: str, minutes: float, **more: Any) -> Event:
    return parse_event(
        {
            "event_id": f"{kind}-{who}-{minutes}-{len(more)}-{more.get('item_id', '')}",
            "event_type": kind,
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "customer_id": who,
            **more,
        }
    )


def impression(who: str, minutes: float, variant: str, rec: str, experiment: str = "x") -> Event:
    return ev(
        "impression", who, minutes, recommendation_id=rec, items=["i1", "i2"], experiment=experiment, variant=variant
    )


def purchase(who: str, minutes: float, item: str, price: float) -> Event:
    return ev("purchase", who, minutes, order_id=f"o-{who}-{minutes}", items=[{"item_id": item, "unit_price": price}])


def test_the_delta_method_error_matches_the_spread_of_replications() -> None:
    """Clustered data (shoppers with varying impression counts and a shopper-level click propensity): the mean
    delta-method standard error is within 10% of the standard deviation of the ratio over 400 replications, while
    treating impressions as independent would understate it."""
    rng = np.random.default_rng(5)
    ratios, errors, naive = [], [], []
    for _ in range(400):
        shown = rng.integers(1, 30, size=300).astype(float)
        propensity = rng.beta(0.5, 5.0, size=300)  # some shoppers click a lot, most rarely
        clicks = rng.binomial(shown.astype(int), propensity).astype(float)
        r = Ratio.of(clicks, shown)
        ratios.append(r.value)
        errors.append(r.se)
        naive.append(np.sqrt(r.value * (1 - r.value) / shown.sum()))
    spread = float(np.std(ratios, ddof=1))
    assert float(np.mean(errors)) == pytest.approx(spread, rel=0.1)
    assert float(np.mean(naive)) < 0.7 * spread


def test_clicks_sessions_conversion_and_attribution_per_variant() -> None:
    events = [
        impression("u1", 0, "a", "r1"),
        impression("u1", 5, "a", "r2"),
        ev("click", "u1", 6, item_id="i1", recommendation_id="r2"),
        purchase("u1", 30, "i1", 20.0),  # attributed: clicked 24 min before
        purchase("u1", 120, "i9", 5.0),  # a new session (gap > 30 min), not attributed: never clicked
        impression("u2", 0, "b", "r3"),
        ev("click", "u2", 1, item_id="i2", recommendation_id="r3"),
        purchase("u2", 60 * 26, "i2", 8.0),  # 26 h after the click: outside the 24 h window
        ev("product_view", "u3", -10, item_id="i1"),  # before u3's exposure: not counted
        impression("u3", 0, "b", "r4"),
        ev("click", "u3", 2, item_id="i2", recommendation_id="not-ours"),  # another list's click
        ev("click", "u3", 3, item_id="i1", recommendation_id="r3"),  # u2's list, clicked by u3: not u3's click
        impression("u4", 0, "b", "r5", experiment="other"),  # another experiment
    ]
    readout = experiment_readout(events, "x", {"a": 0.5, "b": 0.5})
    a, b = readout.arms
    assert (a.name, a.shoppers, b.name, b.shoppers) == ("a", 1, "b", 2)
    assert a.counts == {"impressions": 2, "clicks": 1, "sessions": 2, "attributed_purchases": 1}
    assert a.metrics["ctr"].value == 0.5 and a.metrics["conversion_rate"].value == 1.0
    assert a.metrics["revenue_per_session"].value == pytest.approx(12.5)
    assert a.metrics["attributed_revenue_per_shopper"].value == pytest.approx(20.0)
    # u2: impression + click in one session, the purchase a day later in another; u3: exposure only
    assert b.counts == {"impressions": 2, "clicks": 1, "sessions": 3, "attributed_purchases": 0}
    assert b.metrics["conversion_rate"].value == pytest.approx(1 / 3)
    assert "ctr" in b.versus_control


def test_the_sample_ratio_check_flags_a_lost_share_of_one_arm() -> None:
    assert srm_p_value([5030, 4970], [0.5, 0.5]) > 0.5
    assert srm_p_value([5000, 4500], [0.5, 0.5]) < 0.001
    # a holdout of 10% and two equal variants
    assert srm_p_value([1010, 4480, 4510], [0.1, 0.45, 0.45]) > 0.1
    events = [impression(f"u{n}", 0, "a" if n % 2 else "b", f"r{n}") for n in range(2000)]
    kept = [e for n, e in enumerate(events) if n % 2 or n % 10]  # a tracking bug loses 10% of arm b
    readout = experiment_readout(kept, "x", {"a": 0.5, "b": 0.5})
    assert readout.sample_ratio_mismatch and readout.srm_p < 0.001


def test_a_campaign_lift_compares_recipients_with_the_holdout_within_the_window() -> None:
    sent = [{"profile_id": f"c:s{n}"} for n in range(100)]
    held = [{"profile_id": f"c:h{n}"} for n in range(100)]
    events = [purchase(f"s{n}", 60, "i", 10.0) for n in range(30)]  # 30% of recipients buy within the window
    events += [purchase(f"h{n}", 60, "i", 10.0) for n in range(10)]  # 10% of the holdout
    events += [purchase(f"h{n}", 60 * 24 * 9, "i", 10.0) for n in range(10, 60)]  # after the 7 days: not counted
    readout = campaign_readout(events, sent, held, since=T0.timestamp(), days=7)
    holdout, recipients = readout.arms
    assert holdout.name == "holdout" and holdout.metrics["purchase_rate"].value == pytest.approx(0.1)
    assert recipients.metrics["purchase_rate"].value == pytest.approx(0.3)
    lift = recipients.versus_control["purchase_rate"]
    assert lift.difference == pytest.approx(0.2) and lift.significant and lift.lift == pytest.approx(2.0)
    assert recipients.metrics["revenue_per_member"].value == pytest.approx(3.0)
