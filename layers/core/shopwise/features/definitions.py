"""Feature definitions: every feature's name, entity, update rule and decay, defined once.

The stream updater, the training data set builder, serving and monitoring all use these functions, so a feature
means the same thing everywhere. Each entity's state is a plain JSON document; folding events into it is a pure
function that does not depend on the order the events arrive in (they are applied in occurred_at order, and the
stored forms — maxima, sums, decayed sums re-based to the newest time, logs bounded by time — commute), so a
shuffled or re-batched stream converges on the same features.

Entities and their keys in the feature store:
  profile#<profile id>   a shopper (see ``shopwise.features.identity``): recency, frequency, monetary, affinity, cart, consent
  session#<session id>   one visit: items, categories, referrer, the first page views
  item#<item id>         views, cart adds and purchases in hourly buckets (daily past 24 h): 1 h / 24 h / 7 d windows
                         and a trend

Popularity per category and market is not kept per event: the batch jobs compute it from the archive into the
lists' slot tables (``popular#category:<c>``, ``popular#market:<m>``), which is what serving falls back on. A
per-event segment row was written by every batch of every shard (a hot row) and read by nobody.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shopwise.keys import contact_id

if TYPE_CHECKING:
    from shopwise.events import Event

# The event schemas (pydantic) are imported by the folds that need them, not by readers of stored features:
# serving reads profiles on every request and must not pay for building the schemas at cold start.

# Bounded recent-item lists per interaction kind, newest first.
RECENT_LIMIT = 20
INTERACTION_KINDS = ("view", "cart", "purchase")
# Weight of each interaction kind in training, popularity and real-time blending: purchase > cart > view.
KIND_WEIGHTS: dict[str, float] = {"view": 1.0, "cart": 2.0, "purchase": 4.0}

HOUR = 3600.0
DAY = 24 * HOUR
AFFINITY_HALF_LIFE = 14 * DAY
AFFINITY_LIMIT = 30
CART_LOG_LIMIT = 100
# the newest product views, repeats included ([at, item]): repeated views of one item (browse abandonment)
VIEW_LOG_LIMIT = 20
CONSENT_LOG_LIMIT = 32
# the shopper's newest sessions (ids): what an erasure deletes with the profile (sessions expire after 30 days)
SESSION_LOG_LIMIT = 64
SESSION_FIRST_VIEWS = 3
ITEM_WINDOW_HOURS = 7 * 24
# hourly buckets this far behind the item's newest event, daily before that: the 24 h window stays exact for a day
# after the newest event; the 7 d window counts its oldest day whole
ITEM_HOURLY_HOURS = 48
WINDOWS = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY}
PERSONALISATION = "personalisation"
MARKETING = "marketing"  # emails and other campaigns


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    entity: str
    rule: str
    decay: str = "none"


# The catalogue of features: README, monitoring and the tests read it; the code below implements each rule.
FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("recent_viewed", "profile", f"newest {RECENT_LIMIT} distinct items viewed, with time", "bounded"),
    FeatureSpec("recent_carted", "profile", f"newest {RECENT_LIMIT} distinct items added to cart", "bounded"),
    FeatureSpec("recent_purchased", "profile", f"newest {RECENT_LIMIT} distinct items bought", "bounded"),
    FeatureSpec(
        "category_affinity", "profile", "sum of kind weights per category", f"half-life {AFFINITY_HALF_LIFE / DAY:g} d"
    ),
    FeatureSpec("view_log", "profile", f"newest {VIEW_LOG_LIMIT} product views, repeats kept", "bounded"),
    FeatureSpec("cart", "profile", "adds minus removes per item, emptied by a purchase of the item", "none"),
    FeatureSpec("last_purchase_at", "profile", "time of the newest purchase (recency)"),
    FeatureSpec("orders", "profile", "purchase events (frequency)"),
    FeatureSpec("revenue", "profile", "sum of purchase revenue (monetary)"),
    FeatureSpec("market", "profile", "market of the newest event"),
    FeatureSpec("consent", "profile", "grant/revoke history per scope; personalisation gates every profile feature"),
    FeatureSpec("sessions", "profile", f"newest {SESSION_LOG_LIMIT} session ids (what an erasure deletes)", "bounded"),
    FeatureSpec("session_items", "session", f"newest {RECENT_LIMIT} items of the session", "bounded"),
    FeatureSpec("session_categories", "session", "interactions per category in the session"),
    FeatureSpec("session_referrer", "session", "referrer of the session's first event"),
    FeatureSpec("first_page_views", "session", f"the first {SESSION_FIRST_VIEWS} items viewed in the session"),
    FeatureSpec("views_1h/24h/7d", "item", "views in the window ending now (hourly buckets)", "window"),
    FeatureSpec("carts_1h/24h/7d", "item", "cart adds in the window ending now", "window"),
    FeatureSpec("purchases_1h/24h/7d", "item", "units bought in the window ending now", "window"),
    FeatureSpec("trending", "item", "weighted 24 h activity over the 7 d daily mean (1 = steady)", "window"),
    FeatureSpec(
        "popular_items",
        "segment",
        "sum of kind weights per item, per category and market: computed by the batch jobs, not per event",
        "the trained popularity's half-life",
    ),
)


def _decay(value: float, elapsed: float, half_life: float) -> float:
    return value * math.pow(2.0, -elapsed / half_life) if elapsed > 0 else value


def _decayed_add(pair: list[float] | None, weight: float, at: float, half_life: float) -> list[float]:
    """Add ``weight`` at time ``at`` to a decayed sum stored as [value, as_of]; the result is re-based to the newer
    of the two times, so additions commute."""
    if not pair:
        return [weight, at]
    value, as_of = float(pair[0]), float(pair[1])
    if at >= as_of:
        return [_decay(value, at - as_of, half_life) + weight, at]
    return [value + _decay(weight, as_of - at, half_life), as_of]


def decayed_value(pair: list[float], now: float, half_life: float) -> float:
    return _decay(float(pair[0]), now - float(pair[1]), half_life)


def _newest_at(pairs: Iterable[list[Any]]) -> dict[str, float]:
    """[key, at] pairs -> key: its newest time."""
    newest: dict[str, float] = {}
    for key, at in pairs:
        newest[str(key)] = max(float(at), newest.get(str(key), 0.0))
    return newest


def _bounded_recent(pairs: dict[str, float], limit: int) -> list[list[Any]]:
    return [[item, at] for item, at in sorted(pairs.items(), key=lambda p: (-p[1], p[0]))[:limit]]


def _by_time(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


def consented_at(log: Iterable[list[Any]], at: float, scope: str = PERSONALISATION) -> bool:
    """The consent rule, defined once (the feature store, serving, campaigns and training use it): ``scope`` is
    granted at time ``at`` when the newest grant or revoke of it at or before ``at`` is a grant — entries
    ``[at, event_id, scope, granted]`` ordered by time, then event id; nothing before ``at``: not granted."""
    state = False
    for entry_at, _event_id, entry_scope, granted in sorted(log, key=lambda e: (e[0], e[1])):
        if entry_scope == scope and entry_at <= at:
            state = bool(granted)
    return state


def reachable(profile_id: str, data: dict[str, Any], at: float) -> bool:
    """Whether a campaign may write to this profile document as of ``at``: a contact a marketing tool can address
    (an email or a customer id among its ids) and both grants, marketing and personalisation — read from the stored
    document without building its features (it is asked on every profile write)."""
    log = (data.get("features") or {}).get("consent") or []
    at = max([at, *(float(entry[0]) for entry in log)])  # a consent newer than the newest interaction counts
    return bool(
        contact_id([str(a) for a in data.get("aliases", [])] + [profile_id])
        and consented_at(log, at, MARKETING)
        and consented_at(log, at, PERSONALISATION)
    )


@dataclass(frozen=True)
class Context:
    """What folding needs besides the events: the catalog category of each item touched."""

    categories: dict[str, str] = field(default_factory=dict)

    def category(self, item_id: str) -> str | None:
        return self.categories.get(item_id)


# ----------------------------------------------------------------------------------------------------------- profile
@dataclass
class ProfileFeatures:
    recent: dict[str, list[list[Any]]] = field(default_factory=lambda: {k: [] for k in INTERACTION_KINDS})
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in INTERACTION_KINDS})
    affinity: dict[str, list[float]] = field(default_factory=dict)  # category -> [decayed value, as_of]
    cart_log: list[list[Any]] = field(default_factory=list)  # [at, event_id, item_id, quantity delta | None]
    view_log: list[list[Any]] = field(default_factory=list)  # [at, item_id], newest VIEW_LOG_LIMIT, repeats kept
    orders: int = 0
    revenue: float = 0.0
    last_purchase_at: float = 0.0
    first_event_at: float = 0.0
    last_event_at: float = 0.0
    market: list[Any] = field(default_factory=list)  # [market, at]
    consent: list[list[Any]] = field(default_factory=list)  # [at, event_id, scope, granted]
    sessions: list[list[Any]] = field(default_factory=list)  # [session id, newest at], newest SESSION_LOG_LIMIT

    def to_json(self) -> dict[str, Any]:
        """The stored form: ``dataclasses.asdict``'s (containers copied, two levels deep as they are), written out —
        asdict walks every value through ``copy.deepcopy``, a tenth of the updater's CPU."""
        return {
            "recent": {kind: [list(p) for p in picks] for kind, picks in self.recent.items()},
            "counts": dict(self.counts),
            "affinity": {category: list(pair) for category, pair in self.affinity.items()},
            "cart_log": [list(e) for e in self.cart_log],
            "view_log": [list(e) for e in self.view_log],
            "orders": self.orders,
            "revenue": round(self.revenue, 6),
            "last_purchase_at": self.last_purchase_at,
            "first_event_at": self.first_event_at,
            "last_event_at": self.last_event_at,
            "market": list(self.market),
            "consent": [list(e) for e in self.consent],
            "sessions": [list(e) for e in self.sessions],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ProfileFeatures:
        if not data:
            return cls()
        return cls(
            recent={k: [list(p) for p in data.get("recent", {}).get(k, [])] for k in INTERACTION_KINDS},
            counts={k: int(data.get("counts", {}).get(k, 0)) for k in INTERACTION_KINDS},
            affinity={str(k): [float(v[0]), float(v[1])] for k, v in data.get("affinity", {}).items()},
            cart_log=[list(e) for e in data.get("cart_log", [])],
            view_log=[list(e) for e in data.get("view_log", [])],
            orders=int(data.get("orders", 0)),
            revenue=float(data.get("revenue", 0.0)),
            last_purchase_at=float(data.get("last_purchase_at", 0.0)),
            first_event_at=float(data.get("first_event_at", 0.0)),
            last_event_at=float(data.get("last_event_at", 0.0)),
            market=list(data.get("market", [])),
            consent=[list(e) for e in data.get("consent", [])],
            sessions=[list(e) for e in data.get("sessions", [])],
        )

    def view_counts(self, since: float) -> dict[str, int]:
        """How often each item was viewed since ``since``, within the newest VIEW_LOG_LIMIT views."""
        counts: dict[str, int] = {}
        for at, item in self.view_log:
            if float(at) >= since:
                counts[str(item)] = counts.get(str(item), 0) + 1
        return counts

    def recent_items(self, kind: str) -> list[str]:
        return [str(pair[0]) for pair in self.recent.get(kind, [])]

    def consented(self, at: float, scope: str = PERSONALISATION) -> bool:
        """Whether ``scope`` was granted at time ``at`` (``consented_at``)."""
        return consented_at(self.consent, at, scope)

    def current_cart(self) -> dict[str, int]:
        """Items in the cart now: the cart log replayed in time order; a purchase of an item empties its line."""
        cart: dict[str, int] = {}
        for _at, _event_id, item_id, delta in sorted(self.cart_log, key=lambda e: (e[0], e[1])):
            cart[item_id] = 0 if delta is None else max(0, cart.get(item_id, 0) + int(delta))
        return {item: quantity for item, quantity in cart.items() if quantity > 0}

    def top_categories(self, now: float, n: int = 5) -> list[tuple[str, float]]:
        scored = [(c, decayed_value(p, now, AFFINITY_HALF_LIFE)) for c, p in self.affinity.items()]
        return sorted(scored, key=lambda p: (-p[1], p[0]))[:n]

    def describe(self, now: float) -> dict[str, Any]:
        """The named features of FEATURES as of ``now`` (what monitoring and training read)."""
        return {
            "recent_viewed": self.recent_items("view"),
            "recent_carted": self.recent_items("cart"),
            "recent_purchased": self.recent_items("purchase"),
            "category_affinity": dict(self.top_categories(now, AFFINITY_LIMIT)),
            "cart": self.current_cart(),
            "last_purchase_at": self.last_purchase_at or None,
            "days_since_purchase": (now - self.last_purchase_at) / DAY if self.last_purchase_at else None,
            "orders": self.orders,
            "revenue": round(self.revenue, 2),
            "market": self.market[0] if self.market else None,
            "personalisation": self.consented(now),
        }


def apply_consent(state: ProfileFeatures, events: Iterable[Event]) -> ProfileFeatures:
    """Add the consent events to the consent history (kept apart so the gate can see a batch's consents first)."""
    from shopwise.events import Consent

    log = {(e[0], e[1], e[2]): e for e in state.consent}
    for event in events:
        if isinstance(event, Consent):
            at = event.occurred_at.timestamp()
            for scope in event.granted:
                log[(at, event.event_id, scope)] = [at, event.event_id, scope, True]
            for scope in event.revoked:
                log[(at, event.event_id, scope)] = [at, event.event_id, scope, False]
    state.consent = sorted(log.values(), key=lambda e: (e[0], e[1], e[2]))[-CONSENT_LOG_LIMIT:]
    return state


def apply_to_profile(state: ProfileFeatures, events: Iterable[Event], context: Context) -> ProfileFeatures:
    """Fold events into a profile, in occurred_at order. Interactions count only where the shopper had granted
    personalisation at the time they happened (consent events in the same batch included)."""
    from shopwise.events import AddToCart, Consent, Purchase, RemoveFromCart, interaction_items

    events = _by_time(events)
    state = apply_consent(state, events)
    recent = {k: {str(p[0]): float(p[1]) for p in state.recent.get(k, [])} for k in INTERACTION_KINDS}
    cart_log = {(e[0], e[1], e[2]): e for e in state.cart_log}
    view_log = {(float(e[0]), str(e[1])): e for e in state.view_log}
    sessions = {str(s): float(at) for s, at in state.sessions}
    for event in events:
        at = event.occurred_at.timestamp()
        if isinstance(event, Consent) or not state.consented(at):
            continue
        pairs = interaction_items(event)
        if not pairs and not isinstance(event, RemoveFromCart):
            continue
        for item_id, kind in pairs:
            recent[kind][item_id] = max(at, recent[kind].get(item_id, 0.0))
            if kind == "view":
                view_log[(at, item_id)] = [at, item_id]
            state.counts[kind] = state.counts.get(kind, 0) + 1
            category = context.category(item_id)
            if category:
                state.affinity[category] = _decayed_add(
                    state.affinity.get(category), KIND_WEIGHTS[kind], at, AFFINITY_HALF_LIFE
                )
        if isinstance(event, AddToCart):
            cart_log[(at, event.event_id, event.item_id)] = [at, event.event_id, event.item_id, event.quantity]
        elif isinstance(event, RemoveFromCart):
            cart_log[(at, event.event_id, event.item_id)] = [at, event.event_id, event.item_id, -event.quantity]
        elif isinstance(event, Purchase):
            for line in event.items:
                cart_log[(at, event.event_id, line.item_id)] = [at, event.event_id, line.item_id, None]
            state.orders += 1
            state.revenue += (
                event.revenue if event.revenue is not None else sum(li.unit_price * li.quantity for li in event.items)
            )
            state.last_purchase_at = max(state.last_purchase_at, at)
        state.first_event_at = min(state.first_event_at or at, at)
        state.last_event_at = max(state.last_event_at, at)
        if event.session_id:
            sessions[event.session_id] = max(at, sessions.get(event.session_id, 0.0))
        if event.market and (not state.market or at >= float(state.market[1])):
            state.market = [event.market, at]
    state.recent = {kind: _bounded_recent(seen, RECENT_LIMIT) for kind, seen in recent.items()}
    state.cart_log = sorted(cart_log.values(), key=lambda e: (e[0], e[1], e[2]))[-CART_LOG_LIMIT:]
    state.view_log = _newest_views(view_log.values())
    state.sessions = _bounded_recent(sessions, SESSION_LOG_LIMIT)
    state.affinity = _bounded_decayed(state.affinity, AFFINITY_LIMIT, AFFINITY_HALF_LIFE)
    return state


def _newest_views(entries: Iterable[list[Any]]) -> list[list[Any]]:
    """The newest VIEW_LOG_LIMIT views: a union then a cut by time, so any order of folds and merges agrees."""
    unique = {(float(e[0]), str(e[1])): [float(e[0]), str(e[1])] for e in entries}
    return [unique[k] for k in sorted(unique)[-VIEW_LOG_LIMIT:]]


def _bounded_decayed(scores: dict[str, list[float]], limit: int, half_life: float) -> dict[str, list[float]]:
    if len(scores) <= limit:
        return scores
    now = max(float(p[1]) for p in scores.values())
    keep = sorted(scores, key=lambda k: (-decayed_value(scores[k], now, half_life), k))[:limit]
    return {k: scores[k] for k in keep}


def merge_profiles(a: ProfileFeatures, b: ProfileFeatures) -> ProfileFeatures:
    """Two profiles of one person (identity stitching): a commutative merge, so merges in any order agree."""
    recent = {
        kind: _bounded_recent(_newest_at(a.recent.get(kind, []) + b.recent.get(kind, [])), RECENT_LIMIT)
        for kind in INTERACTION_KINDS
    }
    affinity = dict(a.affinity)
    for category, pair in b.affinity.items():
        mine = affinity.get(category)
        affinity[category] = _decayed_add(mine, float(pair[0]), float(pair[1]), AFFINITY_HALF_LIFE) if mine else pair
    firsts = [t for t in (a.first_event_at, b.first_event_at) if t]
    markets = [m for m in (a.market, b.market) if m]
    return ProfileFeatures(
        recent=recent,
        counts={k: a.counts.get(k, 0) + b.counts.get(k, 0) for k in INTERACTION_KINDS},
        affinity=_bounded_decayed(affinity, AFFINITY_LIMIT, AFFINITY_HALF_LIFE),
        cart_log=sorted(
            {(e[0], e[1], e[2]): e for e in a.cart_log + b.cart_log}.values(), key=lambda e: (e[0], e[1], e[2])
        )[-CART_LOG_LIMIT:],
        view_log=_newest_views(a.view_log + b.view_log),
        orders=a.orders + b.orders,
        revenue=a.revenue + b.revenue,
        last_purchase_at=max(a.last_purchase_at, b.last_purchase_at),
        first_event_at=min(firsts) if firsts else 0.0,
        last_event_at=max(a.last_event_at, b.last_event_at),
        market=max(markets, key=lambda m: (float(m[1]), str(m[0]))) if markets else [],
        consent=sorted(
            {(e[0], e[1], e[2]): e for e in a.consent + b.consent}.values(), key=lambda e: (e[0], e[1], e[2])
        )[-CONSENT_LOG_LIMIT:],
        sessions=_bounded_recent(_newest_at(a.sessions + b.sessions), SESSION_LOG_LIMIT),
    )


# ----------------------------------------------------------------------------------------------------------- session
@dataclass
class SessionFeatures:
    profile_id: str = ""
    started_at: float = 0.0
    last_at: float = 0.0
    referrer: list[Any] = field(default_factory=list)  # [at, referrer] of the first event that had one
    page_views: int = 0
    first_views: list[list[Any]] = field(default_factory=list)  # [at, item] the first views, oldest first
    items: list[list[Any]] = field(default_factory=list)  # [item, at] newest first
    categories: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored form: ``dataclasses.asdict``'s, written out (see ``ProfileFeatures.to_json``)."""
        return {
            "profile_id": self.profile_id,
            "started_at": self.started_at,
            "last_at": self.last_at,
            "referrer": list(self.referrer),
            "page_views": self.page_views,
            "first_views": [list(e) for e in self.first_views],
            "items": [list(e) for e in self.items],
            "categories": dict(self.categories),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SessionFeatures:
        if not data:
            return cls()
        return cls(
            profile_id=str(data.get("profile_id", "")),
            started_at=float(data.get("started_at", 0.0)),
            last_at=float(data.get("last_at", 0.0)),
            referrer=list(data.get("referrer", [])),
            page_views=int(data.get("page_views", 0)),
            first_views=[list(p) for p in data.get("first_views", [])],
            items=[list(p) for p in data.get("items", [])],
            categories={str(k): int(v) for k, v in data.get("categories", {}).items()},
        )


def apply_to_session(state: SessionFeatures, events: Iterable[Event], context: Context) -> SessionFeatures:
    from shopwise.events import Click, ProductView, interaction_items

    items = {str(p[0]): float(p[1]) for p in state.items}
    first_views = {(float(p[0]), str(p[1])) for p in state.first_views}
    for event in _by_time(events):
        at = event.occurred_at.timestamp()
        if not state.last_at or at >= state.last_at:
            state.profile_id = event.profile_id
        state.started_at = min(state.started_at or at, at)
        state.last_at = max(state.last_at, at)
        if event.referrer and (not state.referrer or at < float(state.referrer[0])):
            state.referrer = [at, event.referrer]
        for item_id, _kind in interaction_items(event):
            items[item_id] = max(at, items.get(item_id, 0.0))
            category = context.category(item_id)
            if category:
                state.categories[category] = state.categories.get(category, 0) + 1
        if isinstance(event, ProductView | Click):
            state.page_views += 1
            first_views.add((at, event.item_id))
    state.items = _bounded_recent(items, RECENT_LIMIT)
    state.first_views = [[at, item] for at, item in sorted(first_views)[:SESSION_FIRST_VIEWS]]
    return state


# -------------------------------------------------------------------------------------------------------------- item
@dataclass
class ItemFeatures:
    """Counts per time bucket: hourly for the ITEM_HOURLY_HOURS before the newest event, daily before that, nothing
    older than ITEM_WINDOW_HOURS. A bucket starts on the hour (a daily one at midnight UTC); stored by its hour number
    since the epoch, its counts without trailing zeros. An hour falls into its day once it is more than
    ITEM_HOURLY_HOURS behind the newest event, whatever the order the events came in, so folds still commute; the
    document stays about 1 KB however busy the item (at most 48 + 6 buckets)."""

    buckets: dict[int, list[int]] = field(default_factory=dict)  # bucket start (epoch s) -> [views, carts, purchases]

    def to_json(self) -> dict[str, Any]:
        return {"buckets": {str(start // int(HOUR)): _trimmed(c) for start, c in sorted(self.buckets.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ItemFeatures:
        if not data:
            return cls()
        buckets = {}
        for key, counts in data.get("buckets", {}).items():
            number = int(key)
            start = number * int(HOUR) if number < 10**8 else number  # hour numbers; epoch seconds (older rows)
            buckets[start] = [*(int(x) for x in counts), 0, 0, 0][:3]
        return cls(buckets=buckets)

    @classmethod
    def merged(cls, parts: Iterable[ItemFeatures]) -> ItemFeatures:
        """One item's features from its parts (``shopwise.keys.item_part_key``): the counts summed per bucket under
        the fold's own roll-up, so the parts merged equal one document that took every event."""
        buckets = [(start, counts) for part in parts for start, counts in part.buckets.items()]
        return cls(buckets=_rolled(buckets) if buckets else {})

    def _span(self, start: int) -> float:
        """How long the bucket starting at ``start`` is: a day, once its hours have been folded into it."""
        newest = max(self.buckets) if self.buckets else start
        return DAY if start % DAY == 0 and start <= newest - ITEM_HOURLY_HOURS * HOUR else HOUR

    def windows(self, now: float) -> dict[str, float]:
        """views/carts/purchases in the 1 h, 24 h and 7 d windows ending at ``now`` (a daily bucket counts when it
        overlaps the window), and the trending score."""
        out: dict[str, float] = {}
        for name, span in WINDOWS.items():
            totals = [0, 0, 0]
            for start, counts in self.buckets.items():
                if now - span < start + self._span(start) and start <= now:
                    totals = [t + c for t, c in zip(totals, counts, strict=True)]
            for kind, total in zip(("views", "carts", "purchases"), totals, strict=True):
                out[f"{kind}_{name}"] = total
        weight = (KIND_WEIGHTS["view"], KIND_WEIGHTS["cart"], KIND_WEIGHTS["purchase"])
        day = sum(w * out[f"{k}_24h"] for w, k in zip(weight, ("views", "carts", "purchases"), strict=True))
        week = sum(w * out[f"{k}_7d"] for w, k in zip(weight, ("views", "carts", "purchases"), strict=True))
        out["trending"] = round((day + 1.0) / (week / 7.0 + 1.0), 6)
        return out


def apply_to_item(state: ItemFeatures, item_id: str, events: Iterable[Event]) -> ItemFeatures:
    from shopwise.events import interaction_items

    hourly: dict[int, list[int]] = {}
    for event in _by_time(events):
        hour = int(event.occurred_at.timestamp() // HOUR * HOUR)
        for touched, kind in interaction_items(event):
            if touched != item_id:
                continue
            counts = hourly.setdefault(hour, [0, 0, 0])
            counts[INTERACTION_KINDS.index(kind)] += _units(event, item_id) if kind == "purchase" else 1
    if not hourly and not state.buckets:
        return state
    state.buckets = _rolled([*state.buckets.items(), *hourly.items()])
    return state


def _rolled(buckets: list[tuple[int, list[int]]]) -> dict[int, list[int]]:
    """Buckets summed, hours more than ITEM_HOURLY_HOURS behind the newest folded into their days, and what is older
    than ITEM_WINDOW_HOURS dropped: the one rule of an item's document, for a fold and for a merge of parts."""
    newest = max(start for start, _counts in buckets)
    merged: dict[int, list[int]] = {}
    for start, counts in buckets:
        if start <= newest - ITEM_HOURLY_HOURS * HOUR:
            start = int(start // DAY * DAY)
        if start <= newest - ITEM_WINDOW_HOURS * HOUR:
            continue
        merged[start] = [a + b for a, b in zip(merged.get(start, [0, 0, 0]), counts, strict=True)]
    return merged


def _trimmed(counts: list[int]) -> list[int]:
    out = list(counts)
    while out and out[-1] == 0:
        out.pop()
    return out


def _units(event: Event, item_id: str) -> int:
    from shopwise.events import Purchase

    if isinstance(event, Purchase):
        return sum(line.quantity for line in event.items if line.item_id == item_id)
    return 1
