"""Served-list replay: what anonymous visitors are *served*, click by click, beside session baselines computed from the
same training clicks (``shopwise evaluate --replay`` on a store's own events; ``tests/bench/bench_sessions.py`` on a
simulated store).

The events are cut by time: the last ``test_days`` are held out, the rest imported as history into a fresh local
stack and trained on with the retrain pipeline (export → train → transform → load, one configuration per family
unless asked otherwise). Then up to ``sessions`` held-out sessions with two or more product views are replayed
through the stack as consenting anonymous visitors — the real collect → stream → update → serve path: a consent,
then per click a signed ``POST /v1/server/events`` (product_view), ``think`` seconds of reading the page (0: until
the stream poller has applied the view), and ``GET /v1/server/users/{visitor}/recommendations?id_type=anonymous&
placement=product&n=20``. A hit is the visitor's next click in the list (HR@20; MRR@20 the reciprocal rank).

Baselines from the same training clicks, scored on the same predictions: popularity (the 20 most clicked items),
first-order transitions (the next-click counts of the last item, popularity fill) and session kNN in the V-SKNN style
(Ludewig & Jannach 2018: the current session's items weighted by recency, the 500 most recent sessions sharing an
item as candidates, the 100 most similar as neighbours, an item scored by the similarity of the neighbours holding
it). Sessions are the events' ``session_id``, else a shopper's views with less than 30 minutes between them.

The events are held in memory (a store's sample: a few million rows); the replay asks one request per held-out click.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
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
from shopwise.ingestion.imports import BadRow, parse_timestamp, read_rows
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise.settings import get_settings
from shopwise_local.endpoint import free_port, reconnect
from shopwise_local.importer import import_events, import_items
from shopwise_local.pipeline import run_pipeline
from shopwise_local.stack import LocalStack
from shopwise_local.store_backend import call

N = 20
Click = tuple[float, str]  # (epoch seconds, item id)


SESSION_GAP_S = 30 * 60  # a shopper's views further apart than this start a new session (no session_id)


def load_events(path: Path) -> list[dict[str, Any]]:
    """The file's rows (the import formats: CSV or JSON Lines, optionally gzipped), each with ``_at`` (epoch s);
    rows without a readable timestamp are left out."""
    rows = []
    for _line, row in read_rows(path):
        if isinstance(row, BadRow):
            continue
        try:
            row["_at"] = parse_timestamp(row.get("timestamp")).timestamp()
        except (ValueError, TypeError, OverflowError):
            continue
        rows.append(row)
    return rows


def session_clicks(rows: Iterable[dict[str, Any]]) -> dict[str, list[Click]]:
    """Session -> its product views (time, item) in time order: the rows' session_id, else a shopper's views with
    less than SESSION_GAP_S between them."""
    clicks: dict[str, list[Click]] = defaultdict(list)
    by_shopper: dict[str, list[Click]] = defaultdict(list)
    for row in rows:
        if row.get("event_type") != "product_view" or not row.get("item_id"):
            continue
        if row.get("session_id"):
            clicks[str(row["session_id"])].append((float(row["_at"]), str(row["item_id"])))
        else:
            by_shopper[str(row.get("user_id", ""))].append((float(row["_at"]), str(row["item_id"])))
    for shopper, views in by_shopper.items():
        number, last = 0, None
        for when, item in sorted(views):
            if last is not None and when - last > SESSION_GAP_S:
                number += 1
            clicks[f"{shopper}#{number}"].append((when, item))
            last = when
    return {s: sorted(c) for s, c in clicks.items()}


def sessions_of(rows: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Session -> its product views' items, in time order (``session_clicks``)."""
    return {s: [item for _at, item in c] for s, c in session_clicks(rows).items()}


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows back in the import format (CSV), for the stack's importer."""
    names = list(dict.fromkeys(k for row in rows for k in row if k != "_at"))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if k != "_at"})


def knobs(text: str) -> dict[str, float]:
    """ "max_per_category=20,realtime_weight=2" -> {"max_per_category": 20.0, "realtime_weight": 2.0}"""
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"variants: expected KNOB=VALUE[,KNOB=VALUE], got {text!r}")
    return {k.strip(): float(v) for k, v in pairs}


# -- baselines -----------------------------------------------------------------------------------------------------
class Popularity:
    def __init__(self, sessions: dict[str, list[str]]) -> None:
        counts = Counter(item for items in sessions.values() for item in items)
        self.top = [item for item, _n in counts.most_common(2 * N)]

    def predict(self, prefix: list[str], n: int = N) -> list[str]:
        return self.top[:n]


class Transitions:
    """First-order: how often each item followed the last one, popularity after."""

    def __init__(self, sessions: dict[str, list[str]], fill: Popularity) -> None:
        self.next: dict[str, Counter[str]] = defaultdict(Counter)
        for items in sessions.values():
            for a, b in itertools.pairwise(items):
                if a != b:
                    self.next[a][b] += 1
        self.fill = fill

    def predict(self, prefix: list[str], n: int = N) -> list[str]:
        ranked = [item for item, _n in self.next.get(prefix[-1], Counter()).most_common(n)]
        return (ranked + [i for i in self.fill.top if i not in ranked])[:n]


class SessionKnn:
    """V-SKNN: neighbours among the most recent sessions sharing an item, the current session weighted by recency."""

    def __init__(self, sessions: dict[str, list[str]], ends: dict[str, float], k: int = 100, sample: int = 500):
        self.items = {s: set(items) for s, items in sessions.items()}
        self.by_item: dict[str, list[str]] = defaultdict(list)
        for s in sorted(sessions, key=lambda s: ends[s], reverse=True):  # newest first
            for item in self.items[s]:
                self.by_item[item].append(s)
        self.k, self.sample = k, sample

    def predict(self, prefix: list[str], n: int = N) -> list[str]:
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
        return sorted(scores, key=lambda item: -scores[item])[:n]


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
    sources: Counter[str] = field(default_factory=Counter)  # the first source of each answer
    all_sources: Counter[str] = field(default_factory=Counter)  # every source that filled an answer
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def customers_of(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Session -> the customer it belongs to, for the sessions of logged-in shoppers (``id_type`` customer)."""
    found: dict[str, str] = {}
    for row in rows:
        known = str(row.get("id_type") or "customer") == "customer"
        if known and row.get("event_type") == "product_view" and row.get("session_id") and row.get("user_id"):
            found[str(row["session_id"])] = str(row["user_id"])
    return found


def arrivals_of(rows: Iterable[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Session -> (market, referrer) of its first product view: what a storefront knows of a visitor nobody has
    seen before (rows with a ``session_id``)."""
    found: dict[str, tuple[float, str, str]] = {}
    for row in rows:
        session = row.get("session_id")
        if row.get("event_type") == "product_view" and session:
            at = float(row["_at"])
            if session not in found or at < found[session][0]:
                found[str(session)] = (at, str(row.get("market") or ""), str(row.get("referrer") or ""))
    return {session: (market, referrer) for session, (_at, market, referrer) in found.items()}


# the fallback chain's links, asked for a first visit with what the storefront knows: each shape is the list a
# stranger gets when that link comes first (each popular list is long enough to fill the answer alone)
ARRIVAL_SHAPES = {
    "global bestsellers": (False, False),
    "market": (True, False),
    "referrer": (False, True),
    "referrer, then market (as served)": (True, True),
}


def first_clicks(api_url: str, sessions: dict[str, list[str]], arrivals: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The fallback order, scored: each session's first click against the home-page list of a visitor nobody has
    seen, asked with the session's market and referrer in each shape of ``ARRIVAL_SHAPES``; HR@20 and MRR@20 over
    all sessions and over those that arrived from a referrer."""
    shapes = {name: (Scores(), Scores()) for name in ARRIVAL_SHAPES}
    sources: dict[str, Counter[str]] = {name: Counter() for name in ARRIVAL_SHAPES}  # each answer's first source
    for session, items in sessions.items():
        market, referrer = arrivals.get(session, ("", ""))
        for name, (with_market, with_referrer) in ARRIVAL_SHAPES.items():
            query = f"placement=home&n={N}"
            query += f"&market={quote(market)}" if with_market and market else ""
            query += f"&referrer={quote(referrer)}" if with_referrer and referrer else ""
            path = f"/v1/server/users/{quote('first-' + session)}/recommendations?id_type=anonymous&{query}"
            status, body = call(api_url, "GET", path, signed=True)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body}")
            served = [entry["item_id"] for entry in body.get("items", [])]
            sources[name][str(body.get("source", "?"))] += 1
            every, referred = shapes[name]
            every.add(served, items[0])
            if referrer:
                referred.add(served, items[0])
    return {
        name: {
            "hr20": round(every.hr, 4),
            "mrr20": round(every.mrr, 4),
            "referred_hr20": round(referred.hr, 4),
            "referred_mrr20": round(referred.mrr, 4),
            "sources": dict(sources[name]),
        }
        for name, (every, referred) in shapes.items()
    } | {"sessions": len(sessions), "referred": next(iter(shapes.values()))[1].count}


def _post(api_url: str, event: dict[str, Any]) -> None:
    status, body = call(api_url, "POST", "/v1/server/events", {"events": [event]}, signed=True)
    if status != 200 or body.get("rejected"):
        raise RuntimeError(f"POST /v1/server/events answered {status}: {body}")


def _consent(who: dict[str, str], event_id: str) -> dict[str, Any]:
    at = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    return {"event_id": event_id, "event_type": "consent", "occurred_at": at, "granted": ["personalisation"], **who}


def replay_known_session(
    api_url: str, customer: str, items: list[str], out: Replay, department: dict[str, str] | None = None
) -> list[tuple[list[str], list[str], str]]:
    """A known shopper's held-out session: per click, the customer's product-page list asked with the page's
    context (the product on screen, the earlier views newest first) and no event sent, so the arms of a run all
    see the same profile and precomputed list."""
    path = f"/v1/server/users/{quote(customer)}/recommendations?id_type=customer&placement=product&n={N}"
    return [_ask(api_url, path + _context(items, t), items, t, out, department) for t in range(len(items) - 1)]


def _context(items: list[str], t: int) -> str:
    """The page's context at click ``t``: the product on screen, the session's earlier views newest first."""
    earlier = list(dict.fromkeys(reversed(items[:t])))[:5]
    return f"&item={quote(items[t])}" + (f"&recent={quote(','.join(earlier))}" if earlier else "")


def _ask(
    api_url: str, path: str, items: list[str], t: int, out: Replay, department: dict[str, str] | None
) -> tuple[list[str], list[str], str]:
    """One product-page list, scored against the next click: (prefix, served list, next click)."""
    started = time.perf_counter()
    status, body = call(api_url, "GET", path, signed=True)
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body}")
    served = [entry["item_id"] for entry in body.get("items", [])]
    target = items[t + 1]
    with out.lock:
        out.latencies_ms.append(elapsed)
        out.sources.update({str(body.get("source", "?")): 1})
        out.all_sources.update(str(source) for source in body.get("sources", []))
        out.served.add(served, target)
        if target not in items[: t + 1]:
            out.unseen.add(served, target)
        out.departments.append(len({(department or {}).get(i, "") for i in served}))
    return items[: t + 1], served, target


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
    _post(api_url, _consent({"anonymous_id": visitor}, f"{visitor}-consent"))
    predictions = []
    for t, item in enumerate(items[:-1]):
        view = {"event_id": f"{visitor}-{t}", "event_type": "product_view", "item_id": item}
        at = datetime.now(UTC).isoformat()
        _post(api_url, {**view, "occurred_at": at, "anonymous_id": visitor, "session_id": visitor})
        if think > 0:
            time.sleep(think)
        elif not context:
            assert stack.poller
            stack.poller.wait_idle(30)
        path = f"/v1/server/users/{quote(visitor)}/recommendations?id_type=anonymous&placement=product&n={N}"
        predictions.append(_ask(api_url, path + (_context(items, t) if context else ""), items, t, out, department))
    return predictions


@dataclass(frozen=True)
class ReplayOptions:
    test_days: float = 2.0  # the newest days, held out for the replay
    sessions: int = 200  # held-out sessions replayed (2+ views each)
    think: float = 1.0  # seconds between a view and the request (0: until the stream has applied it)
    visitors: int = 8  # sessions replayed at once
    variants: tuple[str, ...] = ()  # blend knobs, each replayed as its own arm: "max_per_category=20,..."
    context: bool = False  # also replay with the page's context in each request and no wait
    # known shoppers instead: the held-out sessions of customers (history trained on, a precomputed list each),
    # asked as the customer with the page's context and no events, so every arm sees the same profile
    known: bool = False
    hyperparameters: dict[str, str] = field(default_factory=lambda: {"budget": "quick"})


def replay_store(
    events: Path, items: Path | None, options: ReplayOptions, log: Any = print, progress: bool = True
) -> dict[str, Any]:
    """Split, import, train, replay, score beside the baselines; the figures (what the bench prints as JSON)."""
    started = time.time()
    variants = {"default": {}, **{v: knobs(v) for v in options.variants}}
    if options.context:
        variants["context"] = {}
    rows = load_events(events)
    if not rows:
        raise ValueError(f"{events}: no events with a readable timestamp")
    cutoff = max(float(r["_at"]) for r in rows) - options.test_days * 86400
    train_rows = [r for r in rows if float(r["_at"]) < cutoff]
    recent_rows = [r for r in rows if float(r["_at"]) >= cutoff]
    owners = customers_of(recent_rows) if options.known else {}
    held_out = {
        s: seen for s, seen in sessions_of(recent_rows).items() if len(seen) >= 2 and (not options.known or s in owners)
    }
    if not held_out:
        raise ValueError(f"{events}: no session of 2+ product views in the last {options.test_days:g} days")
    train_sessions = sessions_of(train_rows)
    replayed = dict(sorted(held_out.items())[: options.sessions])
    log(
        f"events: {len(rows)}; training {len(train_rows)} events, {len(train_sessions)} sessions; "
        f"held out {len(held_out)} sessions with 2+ views, replaying {len(replayed)}"
    )
    department: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="shopwise-replay-"))
    history = work / "history.csv"
    write_rows(history, train_rows)
    before = dict(os.environ)  # this process's settings: the replay's own stack changes them, and they come back
    os.environ["SHOPWISE_HOME"] = str(work / "home")
    (work / "home").mkdir()
    stack = LocalStack(work / "home", free_port(), free_port())
    arms: dict[str, Replay] = {}
    predictions: list[tuple[list[str], list[str], str]] = []
    arrivals: dict[str, Any] = {}
    try:
        stack.start_endpoint()
        resources = stack.create_resources()
        api_url = stack.start_functions()
        if items is not None:
            import_items(items, resources.tables["items"], resources.tables["features"], False)
            department = {
                str(r["item_id"]): str(r.get("category", "")).split(">")[0]
                for _line, r in read_rows(items)
                if not isinstance(r, BadRow) and r.get("item_id")
            }
        import_events(history, resources.archive_bucket, load_pseudonymiser(resources.pseudonym_key_secret), False)
        result = run_pipeline(
            resources.archive_bucket,
            resources.artifacts_bucket,
            work / "jobs",
            hyperparameters=options.hyperparameters,
            load_function=stack.functions["load"],
            registry_function=stack.functions["registry"],
            export_function=stack.functions["export_catalog"],
        )
        log(f"trained and loaded {result.model_version}")
        if options.known:  # each customer's consent once, before every arm: the arms share the same profiles
            for customer in sorted({owners[session] for session in replayed}):
                _post(api_url, _consent({"customer_id": customer}, f"replay-consent-{customer}"))
            assert stack.poller
            stack.poller.wait_idle(120)
        arrivals = first_clicks(api_url, replayed, arrivals_of(recent_rows))
        for n, (name, params) in enumerate(variants.items()):
            # every visitor in one arm: an experiment of one variant on the product placement, no holdout
            experiment = {"name": "replay", "salt": "replay", "holdout": 0, "placements": ["product"]}
            put_experiments(
                resources.tables["config"],
                json.dumps([{**experiment, "variants": [{"name": f"v{n}", "weight": 1, "params": params}]}]),
            )
            arms[name] = out = Replay()
            in_request = name == "context"  # the page's context, asked at once: no think time, no wait
            think = 0.0 if in_request else options.think
            with ThreadPoolExecutor(max_workers=options.visitors) as pool:
                jobs = [
                    pool.submit(replay_known_session, api_url, owners[s], seen, out, department)
                    if options.known
                    else pool.submit(
                        replay_session, api_url, stack, s, seen, think, out, f"v{n}", department, in_request
                    )
                    for s, seen in replayed.items()
                ]
                for job in tqdm(jobs, desc=f"replay {name}", unit="session", disable=not progress):
                    done = job.result()
                    if n == 0:
                        predictions += done
    finally:
        stack.close()
        os.environ.clear()
        os.environ.update(before)
        reconnect()
        get_settings.cache_clear()
    figures = _figures(arms, predictions, train_rows, train_sessions, replayed, options, time.time() - started)
    return {**figures, "first_click": arrivals}


def _figures(
    arms: dict[str, Replay],
    predictions: list[tuple[list[str], list[str], str]],
    train_rows: list[dict[str, Any]],
    train_sessions: dict[str, list[str]],
    replayed: dict[str, list[str]],
    options: ReplayOptions,
    seconds: float,
) -> dict[str, Any]:
    out = arms["default"]
    ends = {session: clicks[-1][0] for session, clicks in session_clicks(train_rows).items()}
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
    latencies = sorted(out.latencies_ms)
    table = [
        ("shopwise as served", out.served, out.unseen),
        *((f"  served, {name}", arm.served, arm.unseen) for name, arm in arms.items() if name != "default"),
        *((name, s, fresh[name]) for name, s in scores.items()),
    ]
    return {
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
        "served_all_sources": dict(out.all_sources),
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
        "table": [[name, round(s.hr, 4), round(s.mrr, 4), round(u.hr, 4), round(u.mrr, 4)] for name, s, u in table],
        "unseen_predictions": out.unseen.count,
        "serve_p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
        "think_s": options.think,
        "seconds": round(seconds, 1),
    }


def format_table(figures: dict[str, Any]) -> str:
    lines = [
        f"{'what is served':30} {'HR@20':>7} {'MRR@20':>7}   {'on clicks not viewed yet':>24}"
        f"   ({figures['predictions']} predictions, {figures['unseen_predictions']} not viewed yet)"
    ]
    for name, hr, mrr, unseen_hr, unseen_mrr in figures["table"]:
        lines.append(f"{name:30} {hr:7.3f} {mrr:7.3f}   {unseen_hr:11.3f} {unseen_mrr:11.3f}")
    first = figures.get("first_click")
    if first:
        lines.append(
            f"\nfirst click of a visitor nobody has seen ({first['sessions']} sessions, {first['referred']} from a "
            f"referrer): the fallback chain's first link"
        )
        lines.append(f"{'link first':36} {'HR@20':>7} {'MRR@20':>7}   {'arrived from a referrer':>24}")
        for name in ARRIVAL_SHAPES:
            f = first[name]
            lines.append(
                f"{name:36} {f['hr20']:7.3f} {f['mrr20']:7.3f}   {f['referred_hr20']:11.3f} {f['referred_mrr20']:11.3f}"
            )
    return "\n".join(lines)
