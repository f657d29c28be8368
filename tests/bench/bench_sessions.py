"""Benchmark: what anonymous visitors are *served*, click by click, beside session baselines in the same run.

A simulated store (``shopwise simulate``: category tastes, brand liking, price sensitivity, view → cart → purchase
funnels, 40-60% anonymous sessions) is cut by time: the last ``--test-days`` are held out, the rest imported as
history and trained on with the retrain pipeline (export → train → transform → load, one configuration per family).
Then up to ``--sessions`` held-out sessions with two or more product views are replayed through the running local
stack as consenting anonymous visitors — the real collect → stream → update → serve path: a consent, then per click
a signed ``POST /v1/server/events`` (product_view), ``--think`` seconds of reading the page (0: until the stream
poller has applied the view), and ``GET /v1/server/users/{visitor}/recommendations?id_type=anonymous&placement=
product&n=20``. A hit is the visitor's next click in the list (HR@20; MRR@20 the reciprocal rank, 0 when missed).

Baselines from the same training clicks, scored on the same predictions: popularity (the 20 most clicked items),
first-order transitions (the next-click counts of the last item, popularity fill) and session kNN in the V-SKNN style
(Ludewig & Jannach 2018: the current session's items weighted by recency, the 500 most recent sessions sharing an
item as candidates, the 100 most similar as neighbours, an item scored by the similarity of the neighbours holding
it).

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
import csv
import itertools
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tqdm import tqdm

from shopwise.dal.experiments import put_experiments
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise_local.endpoint import free_port
from shopwise_local.importer import import_events, import_items
from shopwise_local.pipeline import run_pipeline
from shopwise_local.simulate import SimulationOptions, simulate
from shopwise_local.stack import LocalStack
from shopwise_local.store_backend import call

N = 20
Click = tuple[float, str]  # (epoch seconds, item id)


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def at(row: dict[str, str]) -> float:
    return datetime.fromisoformat(row["timestamp"]).timestamp()


def sessions_of(rows: Iterable[dict[str, str]]) -> dict[str, list[str]]:
    """Session id -> its product views' items, in time order."""
    clicks: dict[str, list[Click]] = defaultdict(list)
    for row in rows:
        if row["event_type"] == "product_view" and row.get("session_id"):
            clicks[row["session_id"]].append((at(row), row["item_id"]))
    return {s: [item for _at, item in sorted(c)] for s, c in clicks.items()}


def knobs(text: str) -> dict[str, float]:
    """ "max_per_category=20,realtime_weight=2" -> {"max_per_category": 20.0, "realtime_weight": 2.0}"""
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--variants: expected KNOB=VALUE[,KNOB=VALUE], got {text!r}")
    return {k.strip(): float(v) for k, v in pairs}


# -- baselines -----------------------------------------------------------------------------------------------------
class Popularity:
    def __init__(self, sessions: dict[str, list[str]]) -> None:
        counts = Counter(item for items in sessions.values() for item in items)
        self.top = [item for item, _n in counts.most_common(N)]

    def predict(self, prefix: list[str]) -> list[str]:
        return self.top


class Transitions:
    """First-order: how often each item followed the last one, popularity after."""

    def __init__(self, sessions: dict[str, list[str]], fill: Popularity) -> None:
        self.next: dict[str, Counter[str]] = defaultdict(Counter)
        for items in sessions.values():
            for a, b in itertools.pairwise(items):
                if a != b:
                    self.next[a][b] += 1
        self.fill = fill

    def predict(self, prefix: list[str]) -> list[str]:
        ranked = [item for item, _n in self.next.get(prefix[-1], Counter()).most_common(N)]
        return (ranked + [i for i in self.fill.top if i not in ranked])[:N]


class SessionKnn:
    """V-SKNN: neighbours among the most recent sessions sharing an item, the current session weighted by recency."""

    def __init__(self, sessions: dict[str, list[str]], ends: dict[str, float], k: int = 100, sample: int = 500):
        self.items = {s: set(items) for s, items in sessions.items()}
        self.by_item: dict[str, list[str]] = defaultdict(list)
        for s in sorted(sessions, key=lambda s: ends[s], reverse=True):  # newest first
            for item in self.items[s]:
                self.by_item[item].append(s)
        self.k, self.sample = k, sample

    def predict(self, prefix: list[str]) -> list[str]:
        weights: dict[str, float] = {}
        for position, item in enumerate(prefix, start=1):
            weights[item] = position / len(prefix)  # linear decay: the newest view weighs 1
        candidates: list[str] = []
        for item in dict.fromkeys(reversed(prefix)):
            candidates += self.by_item.get(item, [])[: self.sample]
        similarity: dict[str, float] = {}
        for s in set(candidates):
            shared = sum(w for item, w in weights.items() if item in self.items[s])
            similarity[s] = shared / math.sqrt(len(prefix) * len(self.items[s]))  # cosine on the item sets
        neighbours = sorted(similarity.items(), key=lambda kv: -kv[1])[: self.k]
        scores: dict[str, float] = defaultdict(float)
        for s, sim in neighbours:
            for item in self.items[s]:
                scores[item] += sim
        return sorted(scores, key=lambda item: -scores[item])[:N]


# -- the replay ----------------------------------------------------------------------------------------------------
@dataclass
class Scores:
    hits: int = 0
    reciprocal: float = 0.0
    count: int = 0

    def add(self, ranked: list[str], target: str) -> None:
        self.count += 1
        if target in ranked[:N]:
            self.hits += 1
            self.reciprocal += 1.0 / (ranked.index(target) + 1)

    @property
    def hr(self) -> float:
        return self.hits / self.count if self.count else 0.0

    @property
    def mrr(self) -> float:
        return self.reciprocal / self.count if self.count else 0.0


@dataclass
class Replay:
    served: Scores = field(default_factory=Scores)
    unseen: Scores = field(default_factory=Scores)  # on next clicks the session had not viewed yet
    departments: list[int] = field(default_factory=list)  # distinct top-level categories per served list
    sources: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def replay_session(
    api_url: str,
    stack: LocalStack,
    session: str,
    items: list[str],
    think: float,
    out: Replay,
    arm: str = "",
    department: dict[str, str] | None = None,
    context: bool = False,
) -> list[tuple[list[str], list[str], str]]:
    """One held-out session as a consenting visitor: (prefix, served list, next click) per prediction. ``context``:
    each request carries the page's context (the product on screen, the session's earlier views newest first), as
    a storefront can; with ``think`` 0 it is asked at once, whatever the stream has applied."""
    visitor = f"replay-{arm}-{session}" if arm else f"replay-{session}"
    now = datetime.now(UTC)

    def post(event: dict[str, Any]) -> None:
        status, body = call(api_url, "POST", "/v1/server/events", {"events": [event]}, signed=True)
        if status != 200 or body.get("rejected"):
            raise RuntimeError(f"POST /v1/server/events answered {status}: {body}")

    post(
        {
            "event_id": f"{visitor}-consent",
            "event_type": "consent",
            "occurred_at": (now - timedelta(seconds=1)).isoformat(),
            "anonymous_id": visitor,
            "granted": ["personalisation"],
        }
    )
    predictions = []
    for t, item in enumerate(items[:-1]):
        post(
            {
                "event_id": f"{visitor}-{t}",
                "event_type": "product_view",
                "occurred_at": datetime.now(UTC).isoformat(),
                "anonymous_id": visitor,
                "session_id": visitor,
                "item_id": item,
            }
        )
        if think > 0:
            time.sleep(think)
        elif not context:
            assert stack.poller
            stack.poller.wait_idle(30)
        path = f"/v1/server/users/{quote(visitor)}/recommendations?id_type=anonymous&placement=product&n={N}"
        if context:
            earlier = list(dict.fromkeys(reversed(items[:t])))[:5]
            path += f"&item={quote(item)}" + (f"&recent={quote(','.join(earlier))}" if earlier else "")
        started = time.perf_counter()
        status, body = call(api_url, "GET", path, signed=True)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body}")
        served = [entry["item_id"] for entry in body.get("items", [])]
        with out.lock:
            out.latencies_ms.append(elapsed)
            out.sources.update({str(body.get("source", "?")): 1})
            out.served.add(served, items[t + 1])
            if items[t + 1] not in items[: t + 1]:
                out.unseen.add(served, items[t + 1])
            out.departments.append(len({(department or {}).get(i, "") for i in served}))
        predictions.append((items[: t + 1], served, items[t + 1]))
    return predictions


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
    args = parser.parse_args()
    variants = {"default": {}, **{v: knobs(v) for v in args.variants}}
    if args.context:
        variants["context"] = {}
    started = time.time()

    work = Path(tempfile.mkdtemp(prefix="shopwise-sessions-"))
    os.environ["SHOPWISE_HOME"] = str(work / "home")
    (work / "home").mkdir()
    simulate(
        SimulationOptions(shoppers=args.shoppers, days=args.days, items=args.items, seed=args.seed),
        work / "store",
        progress=False,
    )
    header, rows = read_rows(work / "store" / "events.csv")
    department = {r["item_id"]: r["category"].split(">")[0] for r in read_rows(work / "store" / "items.csv")[1]}
    cutoff = max(at(r) for r in rows) - args.test_days * 86400
    train_rows = [r for r in rows if at(r) < cutoff]
    held_out = {s: items for s, items in sessions_of(r for r in rows if at(r) >= cutoff).items() if len(items) >= 2}
    train_sessions = sessions_of(train_rows)
    history = work / "history.csv"
    with history.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(train_rows)
    replayed = dict(sorted(held_out.items())[: args.sessions])
    print(
        f"store: {len(rows)} events; training {len(train_rows)} events, {len(train_sessions)} sessions; "
        f"held out {len(held_out)} sessions with 2+ views, replaying {len(replayed)}",
        file=sys.stderr,
    )

    stack = LocalStack(work / "home", free_port(), free_port())
    try:
        stack.start_endpoint()
        resources = stack.create_resources()
        api_url = stack.start_functions()
        import_items(work / "store" / "items.csv", resources.tables["items"], resources.tables["features"], False)
        import_events(history, resources.archive_bucket, load_pseudonymiser(resources.pseudonym_key_secret), False)
        result = run_pipeline(
            resources.archive_bucket,
            resources.artifacts_bucket,
            work / "jobs",
            hyperparameters={"budget": "quick"},
            load_function=stack.functions["load"],
            registry_function=stack.functions["registry"],
            export_function=stack.functions["export_catalog"],
        )
        print(f"trained and loaded {result.model_version}", file=sys.stderr)

        arms: dict[str, Replay] = {}
        predictions: list[tuple[list[str], list[str], str]] = []
        for n, (name, params) in enumerate(variants.items()):
            # every visitor in one arm: an experiment of one variant on the product placement, no holdout
            experiment = {"name": "replay", "salt": "replay", "holdout": 0, "placements": ["product"]}
            put_experiments(
                resources.tables["config"],
                json.dumps([{**experiment, "variants": [{"name": f"v{n}", "weight": 1, "params": params}]}]),
            )
            arms[name] = out = Replay()
            with ThreadPoolExecutor(max_workers=args.visitors) as pool:
                in_request = name == "context"  # the page's context, asked at once: no think time, no wait
                think = 0.0 if in_request else args.think
                jobs = [
                    pool.submit(replay_session, api_url, stack, s, items, think, out, f"v{n}", department, in_request)
                    for s, items in replayed.items()
                ]
                for job in tqdm(jobs, desc=f"replay {name}", unit="session"):
                    done = job.result()
                    if n == 0:
                        predictions += done
    finally:
        stack.close()
    out = arms["default"]

    ends = {s: 0.0 for s in train_sessions}
    for row in train_rows:
        if row.get("session_id") in ends:
            ends[row["session_id"]] = max(ends[row["session_id"]], at(row))
    popularity = Popularity(train_sessions)
    baselines: dict[str, Popularity | Transitions | SessionKnn] = {
        "popularity": popularity,
        "transitions": Transitions(train_sessions, popularity),
        "sknn": SessionKnn(train_sessions, ends),
    }
    scores = {name: Scores() for name in baselines}
    fresh = {name: Scores() for name in ["served", *baselines]}  # next clicks on items the session had not viewed
    for prefix, served, target in predictions:
        if target not in prefix:
            fresh["served"].add(served, target)
        for name, model in baselines.items():
            ranked = model.predict(prefix)
            scores[name].add(ranked, target)
            if target not in prefix:
                fresh[name].add(ranked, target)

    table = [
        ("shopwise as served", out.served),
        *((f"  served, {name}", arm.served) for name, arm in arms.items() if name != "default"),
        *((name, s) for name, s in scores.items()),
    ]
    unseen = {"shopwise as served": out.unseen, **{f"  served, {n}": a.unseen for n, a in arms.items()}}
    unseen.update({name: fresh[name] for name in baselines})
    print(
        f"\n{'what is served':30} {'HR@20':>7} {'MRR@20':>7}   {'on clicks not viewed yet':>24}"
        f"   ({out.served.count} predictions, {out.unseen.count} not viewed yet)"
    )
    for name, s in table:
        other = unseen.get(name)
        tail = f"   {other.hr:11.3f} {other.mrr:11.3f}" if other else ""
        print(f"{name:30} {s.hr:7.3f} {s.mrr:7.3f}{tail}")
    latencies = sorted(out.latencies_ms)
    figures = {
        "served_hr20": round(out.served.hr, 4),
        "served_mrr20": round(out.served.mrr, 4),
        **{f"{name}_{m}20": round(getattr(s, m), 4) for name, s in scores.items() for m in ("hr", "mrr")},
        "served_over_transitions_hr": round(out.served.hr / scores["transitions"].hr, 3)
        if scores["transitions"].hr
        else None,
        "predictions": out.served.count,
        # how often the next click goes back to an item the session viewed already, and HR@20 on the others
        "next_click_seen_share": round(1 - fresh["served"].count / out.served.count, 4) if out.served.count else None,
        **{f"{name}_hr20_unseen": round(s.hr, 4) for name, s in fresh.items()},
        "sessions": len(replayed),
        "served_sources": dict(out.sources),
        # relevance and diversity of each arm: a diversity that costs relevance must earn it
        "variants": {
            name: {
                "hr20": round(a.served.hr, 4),
                "mrr20": round(a.served.mrr, 4),
                "hr20_unseen": round(a.unseen.hr, 4),
                "mrr20_unseen": round(a.unseen.mrr, 4),
                "departments_per_list": round(sum(a.departments) / max(len(a.departments), 1), 2),
            }
            for name, a in arms.items()
        },
        "serve_p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
        "think_s": args.think,
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
