"""Benchmark: an email campaign run (``shopwise.campaigns.runs.run_campaign``, what the campaigns function runs on
its schedule) over a growing number of reachable profiles, in-process against the local endpoint (moto server, its
own process), and its extrapolation to the design envelope against the function's limits (15 minutes, its memory).

    .venv/bin/python tests/bench/bench_campaigns.py [--profiles 5000,20000,60000] [--templates 1000]

The profiles are real feature documents: ``--templates`` shoppers replay the OTTO sample's sessions (views, cart
adds, orders; ../shared/data/otto-sample, CC BY 4.0) over the last 9 days with a customer id and both grants,
through the real updater (``update_features``), and their documents are copied under new ids up to each size (the
reach index entry with them, as the updater writes it). Every profile gets a list of 50 picks, and the model a
popular list, written as the load writes them. Each campaign then runs as of now, its holdout included and its
cap not (every run finds the same members), and for each size and campaign the bench records wall time, this
process's CPU (the run's own: decoding the documents, the rules, the blend a recipient), its peak Python
allocations (tracemalloc, in a second run), the profiles read, the members, the recipients and the bytes of the
run's export files.

The envelope (``bench_scale``: 10 M shoppers) holds ``active_share_window`` (a week) of them active and
``reachable_share`` of those reachable, the cost model's assumptions (``shopwise_local.costs``): what a run of
the campaign with the longest lookback reads. CPU and memory grow with the profiles read and the members, fitted
on these sizes (CPU a profile and a recipient; memory a profile read and a member); the wall time adds the BatchGetItem round trips
(the profiles, then the recipients' lists, 100 a call) at a range of assumed latencies — the local endpoint's are
not AWS's — to the run's CPU slowed to the function's share of a vCPU. The final line is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))

from bench_load import LAMBDA_MB_PER_VCPU, synthetic_catalog  # noqa: E402
from bench_scale import ENVELOPE_SHOPPERS  # noqa: E402
from bench_update import consent, otto_event, otto_sessions  # noqa: E402

from shopwise import config  # noqa: E402
from shopwise.campaigns.rules import CAMPAIGNS  # noqa: E402
from shopwise.campaigns.runs import run_campaign  # noqa: E402
from shopwise.catalog.items import CatalogItem  # noqa: E402
from shopwise.dal.aws import client  # noqa: E402
from shopwise.dal.batch import batch_write  # noqa: E402
from shopwise.dal.catalog import categories, put_items  # noqa: E402
from shopwise.dal.feature_store import Doc, FeatureStore  # noqa: E402
from shopwise.dal.ledger import EventLedger  # noqa: E402
from shopwise.dal.objects import object_size  # noqa: E402
from shopwise.dal.recommendations import RecommendationRow, activate  # noqa: E402
from shopwise.dal.serving_read import Tables  # noqa: E402
from shopwise.events import parse_event  # noqa: E402
from shopwise.ingestion.update_features import Delivery, update_features  # noqa: E402
from shopwise.keys import POPULAR_KEY, PROFILE_PREFIX, user_key  # noqa: E402
from shopwise.lifecycle.loading import load_rows  # noqa: E402
from shopwise.picks import StoredPick  # noqa: E402
from shopwise_local.costs import Assumptions  # noqa: E402
from shopwise_local.stack import scratch_stack  # noqa: E402

ROUND_TRIPS_MS = (10.0, 25.0, 50.0)  # a 100-item BatchGetItem in AWS: assumed, each shown
LAMBDA_SECONDS = 900


def template_events(shoppers: int, items: list[str], now: datetime) -> list[dict[str, Any]]:
    """OTTO sessions, one a shopper (a customer who granted both scopes), squeezed into the last 9 days (the
    post-purchase campaign writes a week after an order); the sample's products mapped onto the simulated
    catalog's."""
    rng = random.Random(7)
    sessions = otto_sessions()
    mapped: dict[int, str] = {}
    out: list[dict[str, Any]] = []
    for shopper in range(shoppers):
        session = sessions[shopper % len(sessions)]
        who = {"customer_id": f"cust-{shopper}"}
        start = now - timedelta(days=9) + timedelta(seconds=rng.randrange(9 * 86400 - 7200))
        first = session[0]["ts"]
        out.append(consent(f"consent-{shopper}", start - timedelta(seconds=1), who, ("personalisation", "marketing")))
        for k, raw in enumerate(session[:60]):
            at = min(start + timedelta(seconds=(raw["ts"] - first) / 1000 / 200), now - timedelta(minutes=1))
            item = mapped.setdefault(raw["aid"], items[len(mapped) % len(items)])
            ids = (f"ev-{shopper}-{k}", f"s-{shopper}", f"o-{shopper}-{k}")
            out.append(otto_event(raw, at, *ids, item, who))
    return out


def templates(resources: Any, shoppers: int, now: datetime) -> list[Doc]:
    """The template shoppers' profile documents, written by the real updater (batches of 100 deliveries)."""
    tables = resources.tables
    catalog = synthetic_catalog()
    put_items(
        tables["items"],
        [CatalogItem(item_id=i, title=t, category=c) for i, t, c in catalog[["item_id", "title", "category"]].values],
    )
    events = template_events(shoppers, catalog["item_id"].tolist(), now)
    store, ledger = FeatureStore(tables["features"]), EventLedger(tables["ledger"])
    lookup = lambda ids: categories(tables["items"], ids)  # noqa: E731
    for start in range(0, len(events), 100):
        deliveries = [
            Delivery(parse_event(raw), str(10**20 + start + n), "shardId-000000000000")
            for n, raw in enumerate(events[start : start + 100])
        ]
        outcome = update_features(deliveries, store, ledger, lookup)
        if outcome.failed:
            raise RuntimeError(f"template events failed: {list(outcome.failed.items())[:3]}")
    docs = []
    pages = client("dynamodb").get_paginator("scan").paginate(TableName=tables["features"])
    for page in pages:  # the bench's own look at what the updater wrote, not a path the product takes
        for item in page["Items"]:
            doc = Doc.from_item(item)
            if doc.key.startswith(PROFILE_PREFIX) and not doc.merged_into and "reach" in item:
                docs.append(doc)
    if not docs:
        raise RuntimeError("the updater wrote no reachable profile: the template events are wrong")
    return docs


def copies(docs: list[Doc], start: int, count: int) -> list[Doc]:
    """``count`` profiles from the templates in turn, each under ids of its own (its key and aliases: the same
    prefixes, a new hexadecimal part)."""
    out = []
    for n in range(start, start + count):
        doc = docs[n % len(docs)]
        text = json.dumps(doc.data)
        old = doc.key[len(PROFILE_PREFIX) :]
        for alias in {old, *(str(a) for a in doc.data.get("aliases", []))}:
            kind, _, value = alias.rpartition(":")
            text = text.replace(value, f"{n:0{len(value)}x}"[-len(value) :])
        kind, _, value = old.rpartition(":")
        key = f"{PROFILE_PREFIX}{kind}:{f'{n:0{len(value)}x}'[-len(value) :]}"
        out.append(replace(doc, key=key, data=json.loads(text), version=0))
    return out


def lists_for(docs: list[Doc], items: list[str], version: str) -> list[RecommendationRow]:
    rng = random.Random(11)
    return [
        RecommendationRow(
            user_key(doc.key[len(PROFILE_PREFIX) :]),
            [StoredPick(i, round(1.0 / (r + 1), 6), category="Any>Thing") for r, i in enumerate(rng.sample(items, 50))],
            version,
        )
        for doc in docs
    ]


def run_all(tables: Tables, bucket: str, profiles: int) -> list[dict[str, Any]]:
    """Each campaign run twice as of now, with no cap (``cap_days`` 0: the second run and the next size find
    everybody again): timed, then under tracemalloc for its peak (which slows what it traces)."""
    rows = []
    for configured in CAMPAIGNS:
        spec = replace(configured, cap_days=0.0)
        wall, cpu = time.perf_counter(), time.process_time()
        report = run_campaign(spec, tables, bucket, publish=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        tracemalloc.start()
        again = run_campaign(spec, tables, bucket, publish=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert (again.profiles, again.in_segment, again.recipients) == (
            report.profiles,
            report.in_segment,
            report.recipients,
        ), (report, again)
        rows.append(
            {
                "campaign": spec.name,
                "profiles": profiles,
                "read": report.profiles,
                "members": report.in_segment,
                "recipients": report.recipients,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "peak_mb": round(peak / 1e6, 1),
                "export_bytes": sum(object_size(bucket, key) for key in report.keys.values()),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def fit(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Least squares over every run: CPU = a x profiles read + b x recipients; peak memory = c x profiles read +
    d x members + a floor; the export's bytes a recipient."""
    import numpy as np

    a = np.array([[r["read"], r["recipients"]] for r in rows], dtype=float)
    cpu = np.linalg.lstsq(a, np.array([r["cpu_s"] for r in rows]), rcond=None)[0]
    m = np.array([[r["read"], r["members"], 1.0] for r in rows], dtype=float)
    mem = np.linalg.lstsq(m, np.array([r["peak_mb"] for r in rows]), rcond=None)[0]
    return {
        "cpu_us_per_profile": round(float(cpu[0]) * 1e6, 1),
        "cpu_us_per_recipient": round(float(cpu[1]) * 1e6, 1),
        "kb_per_profile_read": round(float(mem[0]) * 1e3, 3),
        "kb_per_member": round(float(mem[1]) * 1e3, 2),
        "floor_mb": round(float(mem[2]), 1),
        "export_bytes_per_recipient": round(
            sum(r["export_bytes"] for r in rows) / max(sum(r["recipients"] for r in rows), 1)
        ),
    }


def envelope(per: dict[str, float], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each campaign's run at the envelope: the longest-lookback run reads a week's active reachable shoppers, and
    every run's profiles read, members and recipients scale from the largest size by the same factor."""
    assume = Assumptions()
    week = ENVELOPE_SHOPPERS * assume.active_share_window * assume.reachable_share
    largest = max(r["profiles"] for r in rows)
    at = [r for r in rows if r["profiles"] == largest]
    factor = week / max(r["read"] for r in at)
    memory = config.environment("prod").lambda_memory_mb
    out = []
    for r in at:
        read, members, recipients = r["read"] * factor, r["members"] * factor, r["recipients"] * factor
        cpu_s = read * per["cpu_us_per_profile"] / 1e6 + recipients * per["cpu_us_per_recipient"] / 1e6
        peak_mb = per["floor_mb"] + read * per["kb_per_profile_read"] / 1e3 + members * per["kb_per_member"] / 1e3
        calls = read / 100 + recipients / 100  # the profiles 100 a call, then the recipients' own lists 100 a call
        function_cpu_s = cpu_s * max(1.0, LAMBDA_MB_PER_VCPU / memory)  # the function's share of a vCPU
        out.append(
            {
                "campaign": r["campaign"],
                "profiles_read": round(read),
                "members": round(members),
                "recipients": round(recipients),
                "cpu_minutes": round(cpu_s / 60, 1),
                "peak_mb": round(peak_mb),
                "export_mb": round(recipients * per["export_bytes_per_recipient"] / 1e6),
                "function_mb": memory,
                "wall_minutes_by_round_trip": {
                    f"{ms:g} ms": round((function_cpu_s + calls * ms / 1e3) / 60, 1) for ms in ROUND_TRIPS_MS
                },
            }
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="5000,20000,60000", help="reachable profiles, one size after another")
    parser.add_argument("--templates", type=int, default=1000, help="shoppers replayed through the updater")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.profiles.split(","))
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    with scratch_stack() as resources:
        t = resources.tables
        tables = Tables(resources.lists_stem, t["features"], t["config"], t["items"], t["ledger"])
        started = time.perf_counter()
        docs = templates(resources, args.templates, now)
        print(f"{len(docs)} reachable template profiles in {time.perf_counter() - started:.0f} s", flush=True)
        items = synthetic_catalog()["item_id"].tolist()
        profiles = list(docs)
        for size in sizes:
            more = copies(docs, len(profiles), size - len(profiles)) if size > len(profiles) else []
            batch_write(t["features"], (d.to_item() for d in more))
            profiles += more
            version = f"bench-campaigns-{size}"  # a version a size: each loaded into the standby slot, then served
            popular = RecommendationRow(POPULAR_KEY, [StoredPick(i, 1.0) for i in items[:50]], version)
            load_rows(
                [popular, *lists_for(profiles, items, version)],
                version,
                resources.lists_stem,
                t["config"],
                7,
                resources.artifacts_bucket,
                timeout_s=3600,
            )
            activate(t["config"], version)
            rows += run_all(tables, resources.artifacts_bucket, size)
    per = fit(rows)
    at = envelope(per, rows)
    print(
        f"{'campaign':20} {'profiles':>9} {'read':>7} {'members':>8} {'recipients':>10} {'wall s':>7} {'CPU s':>6} {'peak MB':>8}"
    )
    for r in rows:
        print(
            f"{r['campaign']:20} {r['profiles']:9,} {r['read']:7,} {r['members']:8,} {r['recipients']:10,} "
            f"{r['wall_s']:7} {r['cpu_s']:6} {r['peak_mb']:8}"
        )
    print(
        f"a run's CPU: {per['cpu_us_per_profile']} µs a profile read + {per['cpu_us_per_recipient']} µs a recipient; "
        f"peak {per['floor_mb']} MB + {per['kb_per_profile_read']} KB a profile read + {per['kb_per_member']} KB a "
        f"member; {per['export_bytes_per_recipient']:,} bytes of export files a recipient"
    )
    print(
        f"at the envelope (the longest lookback reads a week's active reachable shoppers, "
        f"{max(e['profiles_read'] for e in at):,}; the function stops at {LAMBDA_SECONDS // 60} min):"
    )
    for e in at:
        print(
            f"  {e['campaign']:20} {e['profiles_read']:,} read, {e['members']:,} members, {e['recipients']:,} "
            f"recipients: {e['cpu_minutes']} CPU min here, peak {e['peak_mb']:,} MB of {e['function_mb']:,}, "
            f"{e['export_mb']:,} MB of files in /tmp; wall "
            + ", ".join(f"{m} min at {rt}" for rt, m in e["wall_minutes_by_round_trip"].items())
        )
    print(json.dumps({"runs": rows, "per": per, "envelope": at}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
