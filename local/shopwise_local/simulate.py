"""`shopwise simulate`: a synthetic store whose ground truth is known, for the demo, the tests and the benchmarks.

The world (all draws from one seeded generator, so the same options give the same files byte for byte):
- a catalog of ``items`` products in 8 departments x 4 categories, 40 brands (each at home in one or two
  departments), log-normal prices per department, a latent quality; 15% of the products launch during the period;
- shoppers with a latent taste (a sparse Dirichlet over the 32 categories and a liking for a few brands), a price
  sensitivity, an activity rate and a market; half of them have an account, and only part of their sessions are
  logged in, so 40-60% of sessions are anonymous (a visitor cookie id, one per shopper and device);
- sessions as funnels: views of products picked by utility (taste + brand + quality - price sensitivity x log price
  + Gumbel noise) within one or two categories of the shopper's taste, some carted, some carts bought;
- a taste drift at ``drift_day``: three categories come into season for everyone and 30% of shoppers redraw half of
  their taste.

Files (the bulk-import formats of ``shopwise import``): ``items.csv``, ``events.csv`` and ``truth.json`` (options,
counts, the drift, the anonymous share).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from shopwise_local.movielens import ConvertedDataset

DEPARTMENTS = {
    "Shoes": ["Running", "Boots", "Sandals", "Sneakers"],
    "Apparel": ["Jackets", "Shirts", "Dresses", "Jeans"],
    "Electronics": ["Phones", "Headphones", "Cameras", "Laptops"],
    "Home": ["Kitchen", "Bedding", "Lighting", "Decor"],
    "Beauty": ["Skincare", "Fragrance", "Makeup", "Haircare"],
    "Sports": ["Cycling", "Yoga", "Camping", "Fitness"],
    "Toys": ["Puzzles", "Building", "Dolls", "Outdoor"],
    "Books": ["Fiction", "Cooking", "Travel", "Science"],
}
PRICE_MEDIAN = {
    "Shoes": 90,
    "Apparel": 60,
    "Electronics": 300,
    "Home": 45,
    "Beauty": 30,
    "Sports": 70,
    "Toys": 25,
    "Books": 18,
}
ADJECTIVES = [
    "classic",
    "urban",
    "pro",
    "lite",
    "organic",
    "vintage",
    "smart",
    "essential",
    "premium",
    "compact",
    "bold",
    "soft",
    "ultra",
    "everyday",
    "eco",
    "signature",
]
MARKETS = (["NZ", "AU", "US"], [0.5, 0.3, 0.2])
# where a session comes from, by the department it is about (the rest: a search engine, or typed in)
REFERRERS = {
    "Beauty": "https://www.instagram.com/",
    "Apparel": "https://www.instagram.com/",
    "Home": "https://www.pinterest.com/",
}
REFERRED_SHARE = 0.5  # of sessions about such a department
SEARCH_SHARE = 0.2  # of the other sessions: https://www.google.com/
REFERRER_COLUMN = 11  # of the events.csv row
CONSENT_SHARE = 0.85  # of shoppers grant personalisation at the consent banner
MARKETING_SHARE = 0.6  # of those also grant marketing (the emails)


@dataclass(frozen=True)
class SimulationOptions:
    shoppers: int = 2000
    days: int = 60
    seed: int = 7
    items: int = 1500
    start: str = "2026-09-01"
    drift_day: int | None = None  # default: two thirds of the way through
    account_share: float = 0.6
    sessions_per_day: float = 0.15

    def validate(self) -> None:
        if self.shoppers < 1 or self.days < 1 or self.items < 32:
            raise ValueError("need shoppers >= 1, days >= 1 and items >= 32")


@dataclass
class Catalog:
    ids: list[str]
    category: np.ndarray  # leaf category index 0..31
    brand: np.ndarray
    price: np.ndarray
    quality: np.ndarray
    launch_day: np.ndarray  # < 0: on sale before the period starts
    leaf_names: list[str]


def _catalog(rng: np.random.Generator, o: SimulationOptions) -> tuple[Catalog, list[dict[str, Any]]]:
    departments = list(DEPARTMENTS)
    leaves = [f"{d}>{c}" for d in departments for c in DEPARTMENTS[d]]
    brand_home = [rng.choice(len(departments), size=rng.integers(1, 3), replace=False) for _ in range(40)]
    brand_names = [f"Brand{chr(65 + b % 26)}{b // 26 or ''}" for b in range(40)]
    # category sizes vary (Zipf-like), every category has at least a few products
    sizes = rng.dirichlet(np.full(len(leaves), 2.0)) * (o.items - 3 * len(leaves))
    counts = np.floor(sizes).astype(int) + 3
    counts[: o.items - counts.sum()] += 1
    category = np.repeat(np.arange(len(leaves)), counts)[: o.items]
    rng.shuffle(category)
    brand = np.empty(o.items, dtype=int)
    for i, leaf in enumerate(category):
        dept = leaf // 4
        at_home = [b for b in range(40) if dept in brand_home[b]]
        brand[i] = rng.choice(at_home) if at_home else rng.integers(40)
    median = np.array([PRICE_MEDIAN[departments[leaf // 4]] for leaf in category], dtype=float)
    price = np.round(median * rng.lognormal(0.0, 0.5, o.items), 2) + 0.99
    quality = rng.normal(0.0, 1.0, o.items)
    launch_day = np.where(rng.random(o.items) < 0.15, rng.integers(1, o.days, o.items), -1)
    ids = [f"p{i:05d}" for i in range(o.items)]
    start = datetime.fromisoformat(o.start).replace(tzinfo=UTC)
    rows = []
    for i in range(o.items):
        leaf = leaves[category[i]]
        noun = leaf.split(">")[1].rstrip("s").lower()
        title = f"{brand_names[brand[i]]} {ADJECTIVES[rng.integers(len(ADJECTIVES))]} {noun} {rng.integers(100, 999)}"
        created = start + timedelta(days=int(launch_day[i])) if launch_day[i] >= 0 else start - timedelta(days=365)
        rows.append(
            {
                "item_id": ids[i],
                "title": title,
                "category": leaf,
                "price": f"{price[i]:.2f}",
                "brand": brand_names[brand[i]],
                "in_stock": "true",
                "created_at": created.isoformat(),
            }
        )
    return Catalog(ids, category, brand, price, quality, launch_day, leaves), rows


def simulate(options: SimulationOptions, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Write items.csv, events.csv and truth.json into ``out_dir``; return the truth document."""
    o = options
    o.validate()
    rng = np.random.default_rng(o.seed)
    referrals = np.random.default_rng(o.seed + 1)  # its own stream: the shoppers' behaviour is the same with or without
    consents = np.random.default_rng(o.seed + 2)  # likewise: who grants what at the consent banner
    catalog, item_rows = _catalog(rng, o)
    drift_day = o.drift_day if o.drift_day is not None else (2 * o.days) // 3
    n_leaves = len(catalog.leaf_names)
    in_season = rng.choice(n_leaves, size=3, replace=False)
    start = datetime.fromisoformat(o.start).replace(tzinfo=UTC)
    by_category = [np.flatnonzero(catalog.category == c) for c in range(n_leaves)]

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "items.csv").open("w", newline="") as handle:
        item_writer = csv.DictWriter(handle, fieldnames=list(item_rows[0]))
        item_writer.writeheader()
        item_writer.writerows(item_rows)

    counts = {
        "sessions": 0,
        "anonymous_sessions": 0,
        "events": 0,
        "product_view": 0,
        "add_to_cart": 0,
        "purchase": 0,
        "consent": 0,
        "drifted_shoppers": 0,
        "consenting_shoppers": 0,
    }
    fields = [
        "event_id",
        "user_id",
        "id_type",
        "item_id",
        "timestamp",
        "event_type",
        "price",
        "quantity",
        "session_id",
        "market",
        "order_id",
        "referrer",
        "granted",
    ]
    with (out_dir / "events.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        assert fields[REFERRER_COLUMN] == "referrer"
        for shopper in tqdm(range(o.shoppers), desc="simulate shoppers", unit="shopper", disable=not progress):
            taste = rng.dirichlet(np.full(n_leaves, 0.15))
            later_taste = taste
            if rng.random() < 0.3:
                later_taste = 0.5 * taste + 0.5 * rng.dirichlet(np.full(n_leaves, 0.15))
                counts["drifted_shoppers"] += 1
            season = np.ones(n_leaves)
            season[in_season] = 3.0
            later_taste = later_taste * season / (later_taste * season).sum()
            brand_love = np.zeros(40)
            brand_love[rng.choice(40, size=3, replace=False)] = rng.uniform(0.5, 1.5, 3)
            sensitivity = rng.lognormal(-0.5, 0.5)
            rate = o.sessions_per_day * rng.lognormal(0.0, 0.8)
            market = MARKETS[0][rng.choice(3, p=MARKETS[1])]
            has_account = rng.random() < o.account_share
            login_share = rng.uniform(0.6, 1.0) if has_account else 0.0
            devices = int(rng.integers(1, 3))
            n_sessions = rng.poisson(rate * o.days)
            # the consent banner: most shoppers grant personalisation (some marketing too), on each id's first visit
            grants = ["personalisation"] if consents.random() < CONSENT_SHARE else []
            if grants and consents.random() < MARKETING_SHARE:
                grants.append("marketing")
            counts["consenting_shoppers"] += bool(grants)
            first_seen: dict[tuple[str, str], datetime] = {}  # each id's first visit: when it meets the banner
            for s in range(n_sessions):
                day = float(rng.uniform(0, o.days))
                now = start + timedelta(days=day)
                tastes = later_taste if day >= drift_day else taste
                logged_in = rng.random() < login_share
                user_id, id_type = (
                    (f"cust-{shopper:06d}", "customer")
                    if logged_in
                    else (f"anon-{shopper:06d}-{rng.integers(devices)}", "anonymous")
                )
                session_id = f"s-{shopper:06d}-{s}"
                if grants:
                    first_seen[(user_id, id_type)] = min(first_seen.get((user_id, id_type), now), now)
                counts["sessions"] += 1
                counts["anonymous_sessions"] += not logged_in
                cart: list[int] = []
                chosen = rng.choice(n_leaves, size=int(rng.integers(1, 3)), p=tastes)
                department = catalog.leaf_names[chosen[0]].split(">")[0]
                draw = referrals.random()
                referrer = (
                    REFERRERS[department]
                    if department in REFERRERS and draw < REFERRED_SHARE
                    else "https://www.google.com/"
                    if draw > 1.0 - SEARCH_SHARE
                    else ""
                )
                for category in chosen:
                    pool = by_category[category]
                    pool = pool[catalog.launch_day[pool] <= day]
                    if not len(pool):
                        continue
                    utility = (
                        brand_love[catalog.brand[pool]]
                        + catalog.quality[pool]
                        - sensitivity
                        * np.log(catalog.price[pool] / PRICE_MEDIAN[catalog.leaf_names[category].split(">")[0]])
                    )
                    for _ in range(min(int(rng.geometric(0.3)), len(pool))):
                        pick = int(pool[np.argmax(utility + rng.gumbel(size=len(pool)))])
                        now += timedelta(seconds=float(rng.uniform(20, 120)))
                        row = _row(counts, user_id, id_type, catalog, pick, now, "product_view", session_id, market)
                        row[REFERRER_COLUMN] = referrer
                        writer.writerow(row)
                        referrer = ""  # the session's first event carries it
                        if rng.random() < 1.0 / (1.0 + np.exp(-(utility[pool == pick][0] - 3.0))):
                            now += timedelta(seconds=float(rng.uniform(5, 60)))
                            writer.writerow(
                                _row(counts, user_id, id_type, catalog, pick, now, "add_to_cart", session_id, market)
                            )
                            cart.append(pick)
                if cart and rng.random() < 0.45:
                    now += timedelta(seconds=float(rng.uniform(60, 300)))
                    order = f"o-{shopper:06d}-{s}"
                    for pick in dict.fromkeys(cart):
                        writer.writerow(
                            _row(counts, user_id, id_type, catalog, pick, now, "purchase", session_id, market, order)
                        )
            for (user_id, id_type), at in sorted(first_seen.items()):
                writer.writerow(_consent_row(counts, user_id, id_type, at - timedelta(seconds=1), grants))
    truth = {
        "options": asdict(o),
        "drift_day": drift_day,
        "in_season": [catalog.leaf_names[c] for c in in_season],
        "counts": counts,
        "anonymous_session_share": round(counts["anonymous_sessions"] / max(counts["sessions"], 1), 4),
        "launched_items": int((catalog.launch_day >= 0).sum()),
        "end": (start + timedelta(days=o.days)).isoformat(),
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth


def _consent_row(counts: dict[str, int], user_id: str, id_type: str, at: datetime, grants: list[str]) -> list[Any]:
    counts["events"] += 1
    counts["consent"] += 1
    at_text = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        f"sim-{counts['events']}",
        user_id,
        id_type,
        "",
        at_text,
        "consent",
        "",
        "",
        "",
        "",
        "",
        "",
        " ".join(grants),
    ]


def _row(
    counts: dict[str, int],
    user_id: str,
    id_type: str,
    catalog: Catalog,
    item: int,
    at: datetime,
    kind: str,
    session_id: str,
    market: str,
    order_id: str = "",
) -> list[Any]:
    counts["events"] += 1
    counts[kind] += 1
    return [
        f"sim-{counts['events']}",
        user_id,
        id_type,
        catalog.ids[item],
        at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        kind,
        f"{catalog.price[item]:.2f}",
        1,
        session_id,
        market,
        order_id,
        "",  # referrer: the session's first event only
        "",  # granted: consent rows only
    ]


def demo_dataset(
    target: Path,
    shoppers: int = 2000,
    days: int = 60,
    replay_max: int = 1500,
    progress: bool = True,
    items: int = 1500,
) -> ConvertedDataset:
    """The demo's store: a simulation that ends at today's midnight (UTC), the newest ``replay_max`` events split
    off for replay through the API, the rest as history for the bulk import."""
    today = datetime.now(UTC).date()
    options = SimulationOptions(
        shoppers=shoppers, days=days, seed=7, items=items, start=(today - timedelta(days=days)).isoformat()
    )
    simulate(options, target, progress=progress)
    events = target / "events.csv"
    with events.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = sorted(reader, key=lambda r: r[header.index("timestamp")])
    history, replay = rows[:-replay_max], rows[-replay_max:]
    for name, chunk in (("history.csv", history), ("replay.csv", replay)):
        with (target / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(chunk)
    return ConvertedDataset(
        items=target / "items.csv",
        history=target / "history.csv",
        replay=target / "replay.csv",
        items_count=options.items,
        history_count=len(history),
        replay_count=len(replay),
    )
