"""Benchmark: what anonymous visitors are *served*, click by click, beside session baselines in the same run.

A simulated store (``shopwise simulate``: category tastes, brand liking, price sensitivity, view → cart → purchase
funnels, 40-60% anonymous sessions) is replayed by ``shopwise_local.session_replay`` — what ``shopwise evaluate
--replay`` runs on a store's own events: the last ``--test-days`` held out, the rest imported and trained on with the
retrain pipeline, up to ``--sessions`` held-out sessions replayed through the running local stack as consenting
anonymous visitors (a signed product view, ``--think`` seconds, the product-page list), next-click HR@20 and MRR@20
of what is served beside popularity, first-order transitions and a V-SKNN session kNN from the same training clicks.

    .venv/bin/python tests/bench/bench_sessions.py [--shoppers 1500] [--items 600] [--days 30] [--test-days 2]
        [--sessions 200] [--think 1.0] [--visitors 8] [--variants max_per_category=20 ...] [--context]

``--variants``: blend knobs (an A/B experiment's params, one arm at a time on the product placement) replayed on the
same sessions beside the defaults, so the knobs are chosen by what the replay measures. ``--context``: the same
sessions once more with the page's context in every request (``item`` = the product on screen, ``recent`` = the
session's earlier views, newest first) and no think time and no wait: what is served when the stream has applied
nothing yet.

Prints a table, then one JSON line with served_hr20, served_mrr20, transitions_hr20, transitions_mrr20, sknn_hr20,
sknn_mrr20, popularity_hr20, popularity_mrr20, predictions, sessions, next_click_seen_share (next clicks back on an
item the session viewed already) and each list's HR@20 on the other next clicks (``*_hr20_unseen``), served_sources
(what answered), serve_p50_ms, seconds.
The OTTO sample in ../shared/data holds 20 sessions: too few to train a store on, so the simulator makes the store.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from shopwise_local.session_replay import ReplayOptions, format_table, replay_store
from shopwise_local.simulate import SimulationOptions, simulate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoppers", type=int, default=1500)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--test-days", type=float, default=2.0, help="the newest days, held out for the replay")
    parser.add_argument("--sessions", type=int, default=200, help="held-out sessions replayed (2+ views each)")
    parser.add_argument("--think", type=float, default=1.0, help="seconds between a view and the request (0: applied)")
    parser.add_argument("--visitors", type=int, default=8, help="sessions replayed at once")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[],
        metavar="KNOB=VALUE[,KNOB=VALUE]",
        help="blend knobs for the product placement (shopwise.serving.experiments PARAMS), each replayed on its own "
        "beside the defaults: e.g. max_per_category=20 realtime_weight=2,personal_weight=0",
    )
    parser.add_argument(
        "--context",
        action="store_true",
        help="also replay with the page's context in each request (item on screen, recent views) and no wait",
    )
    parser.add_argument(
        "--known",
        action="store_true",
        help="replay the sessions of known customers instead (their precomputed lists in play), with context",
    )
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="shopwise-sessions-")) / "store"
    simulate(SimulationOptions(shoppers=args.shoppers, days=args.days, items=args.items, seed=args.seed), store, False)
    options = ReplayOptions(
        test_days=args.test_days,
        sessions=args.sessions,
        think=args.think,
        visitors=args.visitors,
        variants=tuple(args.variants),
        context=args.context,
        known=args.known,
    )
    figures = replay_store(
        store / "events.csv", store / "items.csv", options, log=lambda line: print(line, file=sys.stderr)
    )
    print("\n" + format_table(figures))
    print(json.dumps({k: v for k, v in figures.items() if k != "table"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
