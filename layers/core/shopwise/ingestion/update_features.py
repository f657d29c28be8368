"""Update features: fold a batch of events into the feature store, exactly once, one write per touched entity.

0. Events of an erased alias (``shopwise.privacy.tombstones``) from before its erasure are dropped: they were in
   flight, or retried, when the shopper was erased. What the alias sends afterwards starts a new profile, which
   holds nothing personal until the shopper consents again (the consent history was erased with the rest).
1. Identify events link aliases first (shopwise.features.identity); merges commute with everything else.
2. Every event is resolved to its live profile; the profile's consent (with the batch's own consent events)
   decides whether the event may feed the profile and the session, or only the anonymous aggregates.
3. The events are grouped per entity — profile, session, item, category, market — and each group becomes one
   read (batched) and one conditional write: events in occurred_at order, minus those the entity has applied
   already (its ledger of event digests, and its per-shard sequence high-water mark).
   A consenting shopper's profile also gets its serving view (``shopwise.serving.view``): the real-time
   candidates of what the shopper just did, read from the precomputed rows once per batch.
4. A conflicting write re-reads and re-applies that entity alone; an entity that still fails is reported with its
   reason, and the records that touch it are retried by the stream (re-applying the others is a no-op).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from shopwise.dal.feature_store import Conflict, Doc
from shopwise.events import Consent, Event, Identify, Rekey, RemoveFromCart, interaction_items
from shopwise.features.definitions import (
    Context,
    ItemFeatures,
    ProfileFeatures,
    SegmentFeatures,
    SessionFeatures,
    apply_consent,
    apply_to_item,
    apply_to_profile,
    apply_to_segment,
    apply_to_session,
)
from shopwise.features.identity import LEDGER_LIMIT_PROFILE, Store, link, resolve
from shopwise.keys import (
    anonymous_alias,
    category_key,
    entity_of,
    item_key,
    key_id,
    market_key,
    profile_key,
    session_key,
)
from shopwise.picks import StoredPick
from shopwise.privacy.tombstones import tombstones
from shopwise.retry import backoff
from shopwise.serving.view import batch_view_keys, serving_view

LEDGER_LIMITS = {"profile": LEDGER_LIMIT_PROFILE, "session": 256, "item": 2048, "segment": 4096}
SESSION_TTL_SECONDS = 30 * 86400
MAX_CONFLICT_RETRIES = 8
WRITERS = 8

Categories = Callable[[Iterable[str]], dict[str, str]]
# recommendations-table keys -> their stored lists (absent keys left out): what the serving views are made of
RowReader = Callable[[list[str]], dict[str, list[StoredPick]]]


def digest(event_id: str) -> str:
    """A short stable id of an event (12 characters): what the ledgers hold."""
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=9).digest()).decode()


@dataclass(frozen=True)
class Delivery:
    """One event as the stream delivered it: the record's sequence number and shard make a retry recognisable."""

    event: Event
    record_id: str = ""
    shard: str = ""

    @property
    def sequence(self) -> int:
        return int(self.record_id) if self.record_id.isdigit() else 0


@dataclass
class UpdateOutcome:
    deliveries: int = 0
    applied: int = 0  # new to at least one entity
    duplicates: int = 0  # every entity it goes to had applied it already
    unrouted: int = 0  # feeds no entity (a search, an impression, an interaction without consent and without items)
    erased: int = 0  # sent by an erased alias before its erasure: dropped
    entities: int = 0  # distinct entities the batch touched
    entity_writes: int = 0  # conditional writes that landed
    conflicts: int = 0
    merges: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # entity key -> reason
    views_skipped: str = ""  # why this batch left the serving views as they were (their rows could not be read)
    failed_records: set[str] = field(default_factory=set)  # record ids to hand back to the stream for a retry
    # event id -> applied / duplicate / unrouted / retry: what became of each delivery (tests and audits)
    by_event: dict[str, str] = field(default_factory=dict)


class Moved(Exception):
    """The profile was merged into another while we were writing it: retry the records (they will re-resolve)."""


def update_features(
    deliveries: list[Delivery],
    store: Store,
    categories: Categories,
    now: float | None = None,
    rows: RowReader | None = None,
) -> UpdateOutcome:
    outcome = UpdateOutcome(deliveries=len(deliveries))
    lock = threading.Lock()

    def fail(key: str, reason: str, group: Iterable[Delivery]) -> None:
        with lock:
            outcome.failed[key] = reason
            outcome.failed_records.update(d.record_id for d in group if d.record_id)

    # 0. what erased shoppers sent before their erasure (one read of the batch's aliases' tombstones)
    erased_at = tombstones(store, sorted({a for d in deliveries for a in _aliases(d.event)}))
    if erased_at:
        kept = []
        for d in deliveries:
            at = d.event.occurred_at.timestamp()
            if any(at <= erased_at.get(a, -1.0) for a in _aliases(d.event)):
                outcome.erased += 1
                outcome.by_event[d.event.event_id] = "erased"
            else:
                kept.append(d)
        deliveries = kept

    # 1. links: logins, and during a key rotation the move from the older keys' aliases to the current ones
    for d in sorted((d for d in deliveries if isinstance(d.event, Identify | Rekey)), key=_order):
        assert isinstance(d.event, Identify | Rekey)
        try:
            rekeyed = frozenset(d.event.previous) if isinstance(d.event, Rekey) else frozenset()
            link(store, d.event.aliases(), rekeyed)
            outcome.merges += 1
        except Exception as exc:  # reported per record; the rest of the batch goes on
            fail(f"alias#{d.event.profile_id}", _reason(exc), [d])

    # 2. resolve and gate
    resolved, profiles = resolve(store, sorted({d.event.profile_id for d in deliveries}))
    context = Context(categories({item for d in deliveries for item, _ in interaction_items(d.event)}))
    groups: dict[str, list[Delivery]] = defaultdict(list)
    by_profile: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_profile[resolved[d.event.profile_id]].append(d)
    for profile_id, mine in by_profile.items():
        stored = ProfileFeatures.from_json(profiles[profile_key(profile_id)].data.get("features"))
        gate = apply_consent(stored, [d.event for d in mine])
        for d in mine:
            for key in _route(d.event, profile_id, gate.consented(d.event.occurred_at.timestamp()), context):
                if not groups[key] or groups[key][-1] is not d:
                    groups[key].append(d)

    # 3. one read per 100 entities, one conditional write per entity
    docs = {**profiles, **store.read([k for k in groups if k not in profiles])}
    outcome.entities = len(groups)
    view_rows = None
    if rows:
        try:
            view_rows = _view_rows(docs, groups, context, rows)
        except Exception as exc:  # the views are a convenience: features land, the stored views stay as they were
            outcome.views_skipped = _reason(exc)
    fresh_ids: set[int] = set()

    def apply(key: str) -> None:
        group = groups[key]
        try:
            fresh = _apply_entity(store, key, docs[key], group, context, outcome, lock, view_rows)
        except Exception as exc:
            fail(key, _reason(exc), group)
            return
        with lock:
            fresh_ids.update(id(d) for d in fresh)

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(apply, list(groups)))

    routed = {id(d) for group in groups.values() for d in group}
    for d in deliveries:
        if d.record_id in outcome.failed_records:
            status = "retry"
        elif id(d) in fresh_ids or isinstance(d.event, Identify | Rekey):  # their work is the link
            status = "applied"
        elif id(d) in routed:
            status = "duplicate"
        else:
            status = "unrouted"
        if status == "applied":
            outcome.applied += 1
        elif status == "duplicate":
            outcome.duplicates += 1
        elif status == "unrouted":
            outcome.unrouted += 1
        if outcome.by_event.get(d.event.event_id) != "applied":
            outcome.by_event[d.event.event_id] = status
    return outcome


def _aliases(event: Event) -> list[str]:
    """Every alias of the person an event names: its profile, its visitor cookie beside a customer id, what an
    identify event links."""
    found = event.aliases() if isinstance(event, Identify | Rekey) else [event.profile_id]
    if event.anonymous_id:
        found.append(anonymous_alias(str(event.anonymous_id)))
    return list(dict.fromkeys(found))


def _order(d: Delivery) -> tuple[Any, ...]:
    return (d.event.occurred_at, d.event.event_id)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _route(event: Event, profile_id: str, consented: bool, context: Context) -> list[str]:
    """The entities an event feeds. Without personalisation consent: only the anonymous aggregates."""
    pairs = interaction_items(event)
    keys: list[str] = []
    if isinstance(event, Consent) or (consented and (pairs or isinstance(event, RemoveFromCart))):
        keys.append(profile_key(profile_id))
    if consented and event.session_id and (pairs or event.referrer):
        keys.append(session_key(event.session_id))
    for item_id, _kind in pairs:
        keys.append(item_key(item_id))
        category = context.category(item_id)
        if category:
            keys.append(category_key(category))
    if event.market and pairs:
        keys.append(market_key(event.market))
    return list(dict.fromkeys(keys))


def _fresh(doc: Doc, group: list[Delivery]) -> list[Delivery]:
    """The deliveries this entity has not applied yet, each event once."""
    seen = set(doc.ledger)
    fresh = []
    for d in group:
        hwm = int(doc.hwm.get(d.shard, "0")) if d.shard else 0
        if d.shard and d.sequence and d.sequence <= hwm:
            continue
        tag = digest(d.event.event_id)
        if tag not in seen:
            seen.add(tag)
            fresh.append(d)
    return fresh


def _apply_entity(
    store: Store,
    key: str,
    doc: Doc,
    group: list[Delivery],
    context: Context,
    outcome: UpdateOutcome,
    lock: threading.Lock,
    view_rows: dict[str, list[StoredPick]] | None = None,
) -> list[Delivery]:
    for attempt in range(MAX_CONFLICT_RETRIES):
        if doc.error:
            raise ValueError(doc.error)
        if doc.merged_into:
            raise Moved(f"{key} was merged into {doc.merged_into}")
        fresh = _fresh(doc, group)
        if not fresh:
            return []
        updated = _fold(doc, fresh, context, view_rows)
        try:
            store.write(updated)
        except Conflict:
            with lock:
                outcome.conflicts += 1
            backoff(attempt)
            doc = store.read([key])[key]
            continue
        with lock:
            outcome.entity_writes += 1
        return fresh
    raise RuntimeError(f"{key}: gave up after {MAX_CONFLICT_RETRIES} write conflicts")


def _view_rows(
    docs: dict[str, Doc], groups: dict[str, list[Delivery]], context: Context, rows: RowReader
) -> dict[str, list[StoredPick]]:
    """One read of every row the touched profiles' serving views may need once their batch is folded in."""
    keys: list[str] = []
    for key, group in groups.items():
        if entity_of(key) != "profile" or docs[key].error:
            continue
        items = [item for d in group for item, _kind in interaction_items(d.event)]
        categories = {c for c in map(context.category, items) if c}
        keys += batch_view_keys(ProfileFeatures.from_json(docs[key].data.get("features")), items, categories)
    return rows(list(dict.fromkeys(keys))) if keys else {}


def _fold(
    doc: Doc, fresh: list[Delivery], context: Context, view_rows: dict[str, list[StoredPick]] | None = None
) -> Doc:
    """The document with the fresh deliveries applied and remembered (a new Doc: the read one stays as read)."""
    entity, name = entity_of(doc.key), key_id(doc.key)
    events = [d.event for d in fresh]
    data = dict(doc.data)
    expires_at = doc.expires_at
    if entity == "profile":
        profile = apply_to_profile(ProfileFeatures.from_json(data.get("features")), events, context)
        data["features"] = profile.to_json()
        data.setdefault("aliases", [name])
        if view_rows is not None:
            view = serving_view(profile, view_rows)
            if view["items"]:
                data["serving"] = view
            else:
                data.pop("serving", None)
    elif entity == "session":
        session = apply_to_session(SessionFeatures.from_json(data), events, context)
        data = session.to_json()
        expires_at = int(session.last_at + SESSION_TTL_SECONDS)
    elif entity == "item":
        data = apply_to_item(ItemFeatures.from_json(data), name, events).to_json()
    elif entity == "segment":
        dimension, value = name.split(":", 1)
        triples = [
            (item_id, kind, e.occurred_at.timestamp())
            for e in events
            for item_id, kind in interaction_items(e)
            if dimension == "market" or context.category(item_id) == value
        ]
        data = apply_to_segment(SegmentFeatures.from_json(data), triples).to_json()
    else:
        raise ValueError(f"no fold for entity {entity!r} ({doc.key})")
    ledger = (doc.ledger + [digest(e.event_id) for e in events])[-LEDGER_LIMITS[entity] :]
    hwm = dict(doc.hwm)
    for d in fresh:
        if d.shard and d.sequence > int(hwm.get(d.shard, "0")):
            hwm[d.shard] = str(d.sequence)
    return replace(doc, data=data, ledger=ledger, hwm=hwm, expires_at=expires_at)
