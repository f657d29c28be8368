"""`shopwise evaluate --replay`: a store's own events cut by time, the history trained on in a fresh local stack of
the command's own, the held-out sessions replayed click by click through it, what is served scored beside the
session baselines; the process's settings as they were afterwards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shopwise_local import cli
from shopwise_local.session_replay import ARRIVAL_SHAPES, arrivals_of, load_events, sessions_of
from shopwise_local.simulate import SimulationOptions, simulate

pytestmark = pytest.mark.e2e


def test_evaluate_replay_scores_every_held_out_click_of_a_stores_own_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    simulate(SimulationOptions(shoppers=300, days=12, items=150, seed=3), store, progress=False)
    rows = load_events(store / "events.csv")
    cutoff = max(r["_at"] for r in rows) - 86400
    held = {s: v for s, v in sessions_of(r for r in rows if r["_at"] >= cutoff).items() if len(v) >= 2}
    replayed = dict(sorted(held.items())[:12])
    environment = dict(os.environ)

    code = cli.main(
        [
            "evaluate", "--replay", "--events", str(store / "events.csv"), "--items", str(store / "items.csv"),
            "--test-days", "1", "--sessions", "12", "--think", "0", "--out", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    figures = json.loads((tmp_path / "out" / "replay.json").read_text())
    # one prediction per held-out click that has a next one, each asked of the stack's serve API
    assert figures["predictions"] == sum(len(v) - 1 for v in replayed.values()) and figures["sessions"] == 12
    assert sum(figures["served_sources"].values()) == figures["predictions"]
    assert figures["served_sources"].get("realtime", 0) >= figures["predictions"] * 0.9  # the views arrived in time
    for name in ("served", "popularity", "transitions", "sknn"):
        assert 0.0 <= figures[f"{name}_hr20"] <= 1.0 and figures[f"{name}_mrr20"] <= figures[f"{name}_hr20"]
    assert "shopwise as served" in out and "transitions" in out
    # the fallback order: each replayed session's first click against a stranger's list in each shape of the chain
    first = figures["first_click"]
    referred = sum(1 for s in replayed if arrivals_of(rows).get(s, ("", ""))[1])
    assert first["sessions"] == 12 and first["referred"] == referred > 0
    assert first["global bestsellers"]["sources"] == {"global": 12}
    assert first["market"]["sources"] == {"market": 12}  # every simulated session has a market
    assert first["referrer"]["sources"] == {"referrer": referred, "global": 12 - referred}
    for shape in ARRIVAL_SHAPES:
        assert 0.0 <= first[shape]["mrr20"] <= first[shape]["hr20"] <= 1.0
    assert dict(os.environ) == environment  # the replay's own stack came and went


def test_sessions_are_the_events_session_ids_else_a_shoppers_views_30_minutes_apart() -> None:
    rows = [
        {"user_id": "a", "item_id": "i1", "event_type": "product_view", "_at": 0.0},
        {"user_id": "a", "item_id": "i2", "event_type": "product_view", "_at": 600.0},
        {"user_id": "a", "item_id": "i3", "event_type": "product_view", "_at": 600.0 + 31 * 60},
        {"user_id": "a", "item_id": "i4", "event_type": "add_to_cart", "_at": 700.0},
        {"user_id": "b", "item_id": "i9", "event_type": "product_view", "_at": 5.0, "session_id": "s1"},
        {"user_id": "c", "item_id": "i8", "event_type": "product_view", "_at": 1.0, "session_id": "s1"},
    ]
    assert sessions_of(rows) == {"s1": ["i8", "i9"], "a#0": ["i1", "i2"], "a#1": ["i3"]}


def test_known_shoppers_are_replayed_as_themselves_with_their_precomputed_lists_in_play(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--known: the held-out sessions of customers, asked as the customer with the page's context and no event,
    so the blend's personal weight has something to weigh."""
    from shopwise_local.session_replay import customers_of

    store = tmp_path / "store"
    simulate(SimulationOptions(shoppers=300, days=12, items=150, seed=3), store, progress=False)
    rows = load_events(store / "events.csv")
    recent = [r for r in rows if r["_at"] >= max(r["_at"] for r in rows) - 86400]
    owners = customers_of(recent)
    known = {s: v for s, v in sessions_of(recent).items() if len(v) >= 2 and s in owners}
    replayed = dict(sorted(known.items())[:10])
    code = cli.main(
        [
            "evaluate", "--replay", "--known", "--events", str(store / "events.csv"), "--items",
            str(store / "items.csv"), "--test-days", "1", "--sessions", "10", "--out", str(tmp_path / "out"), "--json",
        ]
    )  # fmt: skip
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["predictions"] == sum(len(v) - 1 for v in replayed.values())
    # realtime first (the product on screen), and the customer's own precomputed list in the answers
    assert figures["served_sources"].get("realtime", 0) == figures["predictions"]
    assert figures["served_all_sources"].get("personalised", 0) >= figures["predictions"] // 2, figures
