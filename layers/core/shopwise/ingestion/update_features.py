"""Update features: fold a batch of events into the feature store, exactly once, one write per touched entity.

An event is its source (the alias that sent it) and its id. Exactly once rests on two marks, neither bounded by a
count of other shoppers' events:
- the event ledger (``shopwise.dal.ledger``): one row per source and event id for ``config.DEDUP_HOURS``. A client's
  retry of an event (a new stream record with the same id) finds the row and is a duplicate, however many events came
  between; the stream retrying the same record (same shard and sequence number) is not.
- per-entity high-water marks: the highest sequence number each document has applied per shard (per shard and
  source for profiles, so that marks survive identity merges). A batch the stream retries after some of its writes
  landed re-applies nothing.

0. Events of an erased alias (``shopwise.privacy.tombstones``) from before its erasure are dropped: they were in
   flight, or retried, when the shopper was erased. What the alias sends afterwards starts a new profile, which
   holds nothing personal until the shopper consents again (the consent history was erased with the rest).
1. Each event is looked up in the ledger (one batched read): duplicates stop here; new events get their row.
2. Identify events link aliases (shopwise.features.identity); merges commute with everything else.
3. Every event is resolved to its live profile; the profile's consent (with the batch's own consent events) decides,
   by the event's time, whether it may feed the profile and the session, or only the item aggregates. An event not
   covered yet waits in its ledger row (``held``): a consent that arrives later, or a merge that brings one, and
   covers it by time folds it in — once: the profile's ``released`` marks say, per source, which consent entries
   its held events were checked against.
   The ledger rows are written (one batched write) before any feature.
4. The events are grouped per entity — profile, session, item — and each group becomes one read (batched) and one
   write: events in occurred_at order, minus those the entity has applied already (its marks). Profiles, sessions
   and items' shared parts: a conditional PutItem each. A stream record feeds its shard's part of an item instead
   (``shopwise.keys.item_part_key``), which no one else writes: parts go 25 a BatchWriteItem, with no condition.
   A consenting shopper's profile also gets its serving view (``shopwise.serving.view``): the real-time
   candidates of what the shopper just did, read from the precomputed rows once per batch.
5. A conflicting write re-reads and re-applies that entity alone; an entity that still fails is reported with its
   reason, and the records that touch it are retried by the stream (re-applying the others is a no-op).
6. The ledger row of an event whose record failed gets ``done``: the entities that have applied it (exact, since the
   shard waits while the stream retries the batch). Written on the failure path alone (and when a retry or a replay
   then succeeds): the cost of a clean event stays one ledger row.

REPLAYS. Once the stream gives up on a record (its retries or its age exhausted) and moves on, the entities it
touches apply later records of the shard, and their high-water marks no longer say whether they have this one.
A replay (``shopwise failures replay``: ``via`` "failed" or "archive") is therefore judged by the ledger row's
``done`` instead, and raises no mark: it is applied to the entities not in ``done``, which then grows to all of
them, so a second replay applies nothing. A replay folds an item's shared part, never a shard's part (whose one
writer is the stream's updater); a replayed record whose row has no ``done`` (its record did not fail, or its batch
died) gets one from the marks first, an item's read on the shard's part. A replayed record the ledger has no row for
was never claimed (a poison record, a batch that died before its claims) and is applied everywhere; an archive copy
without a failed row is left alone (it was applied, or its row expired long after it was).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any, Protocol

from shopwise import config
from shopwise.dal.feature_store import Conflict, Doc
from shopwise.dal.ledger import Claim, event_digest
from shopwise.events import Consent, Event, Identify, Rekey, RemoveFromCart, interaction_items, parse_event, to_record
from shopwise.features.definitions import (
    Context,
    ItemFeatures,
    ProfileFeatures,
    SessionFeatures,
    apply_consent,
    apply_to_item,
    apply_to_profile,
    apply_to_session,
    consented_at,
)
from shopwise.features.identity import Store, link, resolve
from shopwise.keys import (
    anonymous_alias,
    entity_key,
    entity_of,
    is_item_part,
    item_key,
    item_part_key,
    key_id,
    profile_key,
    session_key,
    shard_number,
)
from shopwise.picks import StoredPick
from shopwise.privacy.tombstones import tombstones
from shopwise.retry import backoff
from shopwise.serving.view import batch_view_keys, serving_view

SESSION_TTL_SECONDS = 30 * 86400
MAX_CONFLICT_RETRIES = 8
WRITERS = 8
PARTS_PER_CALL = 25  # items' parts folded and written together: one BatchWriteItem call

Categories = Callable[[Iterable[str]], dict[str, str]]
# recommendations-table keys -> their stored lists (absent keys left out): what the serving views are made of
RowReader = Callable[[list[str]], dict[str, list[StoredPick]]]


class Ledger(Protocol):
    """The event ledger's operations (``shopwise.dal.ledger.EventLedger``)."""

    def read(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Claim]: ...

    def record(self, claims: list[Claim]) -> None: ...

    def held(self, sources: Iterable[str], now: float | None = None) -> list[Claim]: ...


def event_key(event: Event) -> str:
    """An event's identity, as the outcome reports it: its source and its id."""
    return f"{event.profile_id} {event.event_id}"


@dataclass(frozen=True)
class Delivery:
    """One event as the stream delivered it: the record's sequence number and shard make a retry recognisable.
    ``riders``: held events that a consent now covers, carried by this delivery (folded with it, exactly when it is),
    gathered for the sources ``checked``.
    ``via``: how it came — "" the stream; "failed" a replay of a record that failed (re-read from the stream by its
    coordinates, or a poison record's data: see REPLAYS); "archive" the archive's copy of an event, applied only
    if its ledger row says it failed. ``done``: for replays, the entities that have applied it (its ledger row)."""

    event: Event
    record_id: str = ""
    shard: str = ""
    riders: tuple[Event, ...] = ()
    checked: tuple[str, ...] = ()
    via: str = ""
    done: frozenset[str] | None = None

    @cached_property
    def sequence(self) -> int:
        return int(self.record_id) if self.record_id.isdigit() else 0

    @cached_property
    def claim_key(self) -> tuple[str, str]:
        """The event's row in the ledger: (source, digest of its id)."""
        return (self.event.profile_id, event_digest(self.event.event_id))


@dataclass
class UpdateOutcome:
    deliveries: int = 0
    applied: int = 0  # new to at least one entity
    duplicates: int = 0  # every entity it goes to had applied it already
    unrouted: int = 0  # feeds no entity (a search, an impression, an interaction without consent and without items)
    held: int = 0  # not covered by a consent at its time: waits in the ledger (it fed the item aggregates)
    released: int = 0  # held events a consent of this batch covers: folded into their profiles and sessions
    erased: int = 0  # sent by an erased alias before its erasure: dropped
    entities: int = 0  # distinct entities the batch touched
    entity_writes: int = 0  # conditional writes that landed
    conflicts: int = 0
    merges: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # entity key -> reason
    views_skipped: str = ""  # why this batch left the serving views as they were (their rows could not be read)
    failed_records: set[str] = field(default_factory=set)  # record ids to hand back to the stream for a retry
    # event_key -> applied / duplicate / unrouted / held / released / retry / erased: what became of each delivery,
    # and of each held event a consent released (tests and audits)
    by_event: dict[str, str] = field(default_factory=dict)


class Moved(Exception):
    """The profile was merged into another while we were writing it: retry the records (they will re-resolve)."""


def update_features(
    deliveries: list[Delivery],
    store: Store,
    ledger: Ledger,
    categories: Categories,
    now: float | None = None,
    rows: RowReader | None = None,
) -> UpdateOutcome:
    now = time.time() if now is None else now
    outcome = UpdateOutcome(deliveries=len(deliveries))
    lock = threading.Lock()
    failed: set[tuple[str, str]] = set()  # the claim keys of the deliveries that failed somewhere

    def fail(key: str, reason: str, group: Iterable[Delivery]) -> None:
        with lock:
            outcome.failed[key] = reason
            outcome.failed_records.update(d.record_id for d in group if d.record_id)
            failed.update(d.claim_key for d in group)

    # 0. what erased shoppers sent before their erasure (one read of the batch's aliases' tombstones)
    erased_at = tombstones(store, sorted({a for d in deliveries for a in _aliases(d.event)}))
    if erased_at:
        kept = []
        for d in deliveries:
            at = d.event.occurred_at.timestamp()
            if any(at <= erased_at.get(a, -1.0) for a in _aliases(d.event)):
                outcome.erased += 1
                outcome.by_event[event_key(d.event)] = "erased"
            else:
                kept.append(d)
        deliveries = kept

    # 1. the ledger: a client's repeat of an event is a duplicate; the stream's retry of a record is not
    deliveries, claims, known = _claim(deliveries, ledger, now, outcome)

    # 2. links: logins, and during a key rotation the move from the older keys' aliases to the current ones
    for d in sorted((d for d in deliveries if isinstance(d.event, Identify | Rekey)), key=_order):
        assert isinstance(d.event, Identify | Rekey)
        try:
            rekeyed = frozenset(d.event.previous) if isinstance(d.event, Rekey) else frozenset()
            link(store, d.event.aliases(), rekeyed)
            outcome.merges += 1
        except Exception as exc:  # reported per record; the rest of the batch goes on
            fail(f"alias#{d.event.profile_id}", _reason(exc), [d])

    # 3. resolve and gate by the events' times; hold what no consent covers yet, release what a consent now covers
    resolved, profiles = resolve(store, sorted({d.event.profile_id for d in deliveries}))
    context = Context(categories({item for d in deliveries for item, _ in interaction_items(d.event)}))
    groups: dict[str, list[Delivery]] = defaultdict(list)
    by_profile: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        profile_id = resolved.get(d.event.profile_id, "")
        if not profile_id:  # its alias chain could not be followed: this record alone is retried
            fail(f"alias#{d.event.profile_id}", "identity chain could not be resolved", [d])
            continue
        by_profile[profile_id].append(d)
    in_batch = {d.claim_key for d in deliveries}
    held: set[tuple[str, str]] = set()
    carriers: list[Delivery] = []
    for profile_id, mine in by_profile.items():
        doc = profiles[profile_key(profile_id)]
        gate = apply_consent(ProfileFeatures.from_json(doc.data.get("features")), [d.event for d in mine])
        riders, checked = _riders(mine, ledger, doc, gate.consent, in_batch, now)
        for d in mine:
            consented = gate.consented(d.event.occurred_at.timestamp())
            keys = _route(d.event, profile_id, consented, context)
            if not consented and _route(d.event, profile_id, True, context) != keys:
                held.add(d.claim_key)  # (a stream retry's row holds it already)
                if d.claim_key in claims:
                    claims[d.claim_key] = replace(claims[d.claim_key], held=to_record(d.event))
                    outcome.held += 1
            # the first delivery the profile takes carries them (or the last one, a login say, taken for them)
            if checked and (profile_key(profile_id) in keys or d is mine[-1]):
                keys = list(dict.fromkeys([*keys, profile_key(profile_id)]))
                d = replace(d, riders=riders, checked=checked)
                outcome.released += len(riders)
                carriers.append(d)
                keys += [session_key(s) for s in sorted({str(r.session_id) for r in riders if _feeds_session(r)})]
                checked = ()
            for key in dict.fromkeys(_writer_key(k, d) for k in keys):
                if not groups[key] or groups[key][-1] is not d:
                    groups[key].append(d)
    if claims:  # before any feature: a retry of these records finds them as the same records
        ledger.record(list(claims.values()))
    carried = {i for group in groups.values() for d in group for r in d.riders for i, _ in interaction_items(r)}
    if carried - set(context.categories):  # the released events' items need their categories too
        context = Context({**context.categories, **categories(carried - set(context.categories))})

    # 4. one read per 100 entities, one write per entity (items' parts: 25 a call)
    marks_judged = _marks_judged(groups)
    docs = {**profiles, **store.read([k for k in [*groups, *marks_judged] if k not in profiles])}
    if marks_judged:
        accounted = _accounted_by_marks(groups, docs)
        groups = {key: [accounted.get(d.claim_key, d) for d in group] for key, group in groups.items()}
        deliveries = [accounted.get(d.claim_key, d) for d in deliveries]
    outcome.entities = len(groups)
    view_rows = None
    if rows:
        try:
            view_rows = _view_rows(docs, groups, context, rows)
        except Exception as exc:  # the views are a convenience: features land, the stored views stay as they were
            outcome.views_skipped = _reason(exc)
    fresh_keys: set[tuple[str, str]] = set()  # (a delivery may be replaced by its rider-carrying copy: by claim)
    applied: dict[str, set[tuple[str, str]]] = {}  # entity key -> the claim keys it applied in this batch

    def landed(key: str, fresh: list[Delivery]) -> None:
        with lock:
            fresh_keys.update(d.claim_key for d in fresh)
            applied[key] = {d.claim_key for d in fresh}

    def apply(key: str) -> None:
        group = groups[key]
        try:
            fresh, docs[key] = _apply_entity(store, key, docs[key], group, context, outcome, lock, view_rows)
        except Exception as exc:
            fail(key, _reason(exc), group)
            return
        landed(key, fresh)

    def apply_parts(keys: list[str]) -> None:
        """Items' parts of this batch's shard (one writer: ours): folded, then written 25 a call, no condition."""
        written: list[tuple[str, list[Delivery], Doc]] = []
        for key in keys:
            doc = docs[key]
            if doc.error:
                fail(key, doc.error, groups[key])
            elif fresh := _fresh(doc, groups[key]):
                written.append((key, fresh, _fold(doc, fresh, context)))
        try:
            unwritten = store.put_unconditional([doc for _key, _fresh, doc in written])
        except Exception as exc:
            unwritten = {key: _reason(exc) for key, _fresh, _doc in written}
        for key, fresh, doc in written:
            if key in unwritten:
                fail(key, unwritten[key], groups[key])
                continue
            docs[key] = doc
            landed(key, fresh)
            with lock:
                outcome.entity_writes += 1

    parts = [k for k in groups if is_item_part(k)]
    tasks: list[Callable[[], None]] = [partial(apply, k) for k in groups if not is_item_part(k)]
    tasks += [partial(apply_parts, parts[n : n + PARTS_PER_CALL]) for n in range(0, len(parts), PARTS_PER_CALL)]
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(lambda task: task(), tasks))
    # 6. what failed (or was replayed, or failed before) is accounted for per entity in its ledger row
    accounts = _accounts(deliveries, groups, {**known, **claims}, docs, applied, failed, now)
    if accounts:
        ledger.record(accounts)

    routed = {d.claim_key for group in groups.values() for d in group}
    for d in deliveries:
        if d.record_id in outcome.failed_records:
            status = "retry"
        elif d.claim_key in fresh_keys or isinstance(d.event, Identify | Rekey):  # their work is the link
            status = "applied"
        elif d.claim_key in routed:
            status = "duplicate"
        else:
            status = "unrouted"
        if status == "applied":
            outcome.applied += 1
        elif status == "duplicate":
            outcome.duplicates += 1
        elif status == "unrouted":
            outcome.unrouted += 1
        if d.claim_key in held and status in ("applied", "unrouted"):
            status = "held"  # (it fed the item aggregates): waiting in the ledger for a consent
        if outcome.by_event.get(event_key(d.event)) != "applied":
            outcome.by_event[event_key(d.event)] = status
    for carrier in carriers:
        if carrier.claim_key in fresh_keys:
            outcome.by_event.update(dict.fromkeys(map(event_key, carrier.riders), "released"))
    return outcome


def _claim(
    deliveries: list[Delivery], ledger: Ledger, now: float, outcome: UpdateOutcome
) -> tuple[list[Delivery], dict[tuple[str, str], Claim], dict[tuple[str, str], Claim]]:
    """The deliveries to go on with (new events, the stream's retries of records seen before, replays of failed
    ones), the ledger rows to write for the new ones, and the rows found. A repeat of a known event — by the client,
    with a new record — stops here, and so does the archive's copy of an event that did not fail."""
    known = ledger.read([d.claim_key for d in deliveries])
    expires_at = int(now + config.DEDUP_HOURS * 3600)
    claims: dict[tuple[str, str], Claim] = {}
    kept: list[Delivery] = []
    taken: set[tuple[str, str]] = set()
    for d in deliveries:
        key, row = d.claim_key, known.get(d.claim_key)
        if key in taken:
            go = None
        elif d.via and row is not None and row.done is not None:
            go = replace(d, done=row.done)  # a replay of a failed event: its row says where it is applied
        elif row is not None and row.same_record(d.shard, d.record_id):
            go = d  # the stream retrying this record: the entities' marks say what it applied
        elif row is None and d.via != "archive":
            claims[key] = Claim(key[0], key[1], d.shard, d.record_id, expires_at)
            go = replace(d, done=frozenset()) if d.via else d  # a replay never claimed: applied nowhere yet
        else:
            go = None
        if go is None:
            outcome.duplicates += 1
            outcome.by_event.setdefault(event_key(d.event), "duplicate")
        else:
            kept.append(go)
            taken.add(key)
    return kept, claims, known


def _accounts(
    deliveries: list[Delivery],
    groups: dict[str, list[Delivery]],
    rows: dict[tuple[str, str], Claim],
    docs: dict[str, Doc],
    applied: dict[str, set[tuple[str, str]]],
    failed: set[tuple[str, str]],
    now: float,
) -> list[Claim]:
    """Step 6: the ledger rows to rewrite with ``done`` — of the events that failed in this batch, were replayed, or
    had failed before — each kept while the failure queue keeps records. ``docs``: each entity as written, or as
    read if its write failed."""
    routes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, group in groups.items():
        for d in group:
            routes[d.claim_key].append(key)
    keep_until = int(now + config.FAILURE_QUEUE_DAYS * 86400)
    accounts = []
    for d in deliveries:
        row = rows.get(d.claim_key)
        if row is None or not (d.claim_key in failed or d.via or row.done is not None):
            continue
        done = {_done_as(k) for k in routes[d.claim_key] if d.claim_key in applied.get(k, ()) or _has(docs[k], d)}
        accounts.append(replace(row, done=frozenset(done), expires_at=max(row.expires_at, keep_until)))
    return accounts


def _riders(
    mine: list[Delivery],
    ledger: Ledger,
    doc: Doc,
    after: list[list[Any]],
    in_batch: set[tuple[str, str]],
    now: float,
) -> tuple[tuple[Event, ...], tuple[str, ...]]:
    """The held events a profile's consent log ``after`` (with the batch's consents) newly covers, and the sources
    looked at. A source is looked at when the log has entries its held events were not yet checked against
    (``released`` in the profile: per source, the log entries seen) — a consent of the batch, or a merge that
    brought another alias's consents: one ledger Query per such source, once."""
    if not any(entry[3] for entry in after):  # nothing granted: nothing can be covered
        return (), ()
    seen, ids = _seen(doc), {_entry_id(e) for e in after}
    sources = sorted({*map(str, doc.data.get("aliases", [])), *(d.event.profile_id for d in mine)})
    stale = tuple(s for s in sources if not ids <= set(seen.get(s, ())))
    if not stale:
        return (), ()
    riders = []
    for claim in ledger.held(stale, now):
        if claim.key in in_batch or claim.held is None:
            continue
        event = parse_event(claim.held)
        if _newly_covered(_seen_log(after, seen.get(claim.source, ())), after, event):
            riders.append(event)
    return tuple(sorted(riders, key=lambda e: (e.occurred_at, e.event_id))), stale


def _entry_id(entry: list[Any]) -> str:
    """A consent log entry's identity (its time, event id and scope), short."""
    return event_digest(f"{entry[0]}|{entry[1]}|{entry[2]}")


def _seen(doc: Doc) -> dict[str, list[str]]:
    """Per source, the consent log entries its held events have been checked against (``_riders``)."""
    return {str(k): list(v) for k, v in dict(doc.data.get("released") or {}).items()}


def _seen_log(log: list[list[Any]], seen: Iterable[str]) -> list[list[Any]]:
    """The part of a consent log a source's held events were checked against: what already covered them."""
    ids = set(seen)
    return [e for e in log if _entry_id(e) in ids]


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
    """The entities an event feeds. Without personalisation consent: only the item aggregates. (Popularity per
    category and market is computed by the batch jobs from the archive, not per event: see FEATURES.)"""
    pairs = interaction_items(event)
    keys: list[str] = []
    if isinstance(event, Consent) or (consented and (pairs or isinstance(event, RemoveFromCart))):
        keys.append(profile_key(profile_id))
    if consented and _feeds_session(event):
        keys.append(session_key(str(event.session_id)))
    for item_id, _kind in pairs:
        keys.append(item_key(item_id))
    return list(dict.fromkeys(keys))


def _feeds_session(event: Event) -> bool:
    """Whether an event (consented) feeds its session: one with items, or the session's referrer."""
    return bool(event.session_id and (interaction_items(event) or event.referrer))


def _writer_key(key: str, d: Delivery) -> str:
    """The document a delivery writes for an entity: a stream record feeds its shard's part of an item (that shard's
    updater is the part's one writer, so parts need no condition and go 25 a call); a replay or a backfill feeds the
    item's shared part (conditional writes, as profiles and sessions have)."""
    if entity_of(key) == "item" and d.shard and not d.via:
        return item_part_key(key_id(key), d.shard)
    return key


def _marks_judged(groups: dict[str, list[Delivery]]) -> list[str]:
    """The items' parts whose marks judge a replay that goes to the items' shared parts: a replayed stream record
    whose ledger row has no account (its record did not fail; or its batch's last attempt crashed) was applied, or
    not, where the stream applies it — the shard's part, which holds the marks."""
    return [
        _marks_doc(key, d)
        for key, group in groups.items()
        if entity_of(key) == "item"
        for d in group
        if _unaccounted(d)
    ]


def _unaccounted(d: Delivery) -> bool:
    """A replayed stream record whose ledger row has no ``done``: the marks say where it was applied."""
    return bool(d.via and d.done is None and d.shard)


def _accounted_by_marks(groups: dict[str, list[Delivery]], docs: dict[str, Doc]) -> dict[tuple[str, str], Delivery]:
    """Each replay that has no account, given one from the marks (``done``: the entities whose marks — on the
    shard's part, for an item — say they applied it), so that it is judged, and accounted, as a replay with an
    account is."""
    routes: dict[tuple[str, str], list[str]] = defaultdict(list)
    unaccounted: dict[tuple[str, str], Delivery] = {}
    for key, group in groups.items():
        for d in group:
            routes[d.claim_key].append(key)
            if _unaccounted(d):
                unaccounted[d.claim_key] = d
    return {
        claim: replace(d, done=frozenset(_done_as(k) for k in routes[claim] if _has(docs[_marks_doc(k, d)], d)))
        for claim, d in unaccounted.items()
    }


def _marks_doc(key: str, d: Delivery) -> str:
    """Where the marks a stream record is judged by are: its shard's part for an item, else the entity's document."""
    return item_part_key(key_id(key), d.shard) if entity_of(key) == "item" and not is_item_part(key) else key


def _mark(entity: str, d: Delivery) -> str:
    """The high-water mark a delivery counts against: per shard, and per source on profiles — a merged profile
    keeps each source's mark, so a record re-routed by a merge is judged by the mark of the source that sent it."""
    shard = shard_number(d.shard)
    return f"{shard}/{d.event.profile_id}" if entity == "profile" else shard


def _done_as(key: str) -> str:
    """How ``done`` names an entity: the profile as "profile" — whichever key the shopper's profile has now, it
    holds what the profiles merged into it held — an item by the item's key, whichever part took the event (a
    replay goes to the shared part), the others by their keys."""
    return "profile" if entity_of(key) == "profile" else entity_key(key)


def _has(doc: Doc, d: Delivery) -> bool:
    """Whether this entity has applied the delivery: a replay by its ledger row, a stream record by the marks."""
    if d.done is not None:
        return _done_as(doc.key) in d.done
    return bool(d.shard and d.sequence and d.sequence <= int(doc.hwm.get(_mark(entity_of(doc.key), d), "0")))


def _fresh(doc: Doc, group: list[Delivery]) -> list[Delivery]:
    """The deliveries this entity has not applied yet."""
    return [d for d in group if not _has(doc, d)]


def _apply_entity(
    store: Store,
    key: str,
    doc: Doc,
    group: list[Delivery],
    context: Context,
    outcome: UpdateOutcome,
    lock: threading.Lock,
    view_rows: dict[str, list[StoredPick]] | None = None,
) -> tuple[list[Delivery], Doc]:
    """Fold the group's fresh deliveries into the entity: the ones applied, and the document as written (or as read,
    if nothing was new)."""
    for attempt in range(MAX_CONFLICT_RETRIES):
        if doc.error:
            raise ValueError(doc.error)
        if doc.merged_into:
            raise Moved(f"{key} was merged into {doc.merged_into}")
        fresh = _fresh(doc, group)
        if not fresh:
            return [], doc
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
        return fresh, updated
    raise RuntimeError(f"{key}: gave up after {MAX_CONFLICT_RETRIES} write conflicts")


def _view_rows(
    docs: dict[str, Doc], groups: dict[str, list[Delivery]], context: Context, rows: RowReader
) -> dict[str, list[StoredPick]]:
    """One read of every row the touched profiles' serving views may need once their batch is folded in."""
    keys: list[str] = []
    for key, group in groups.items():
        if entity_of(key) != "profile" or docs[key].error:
            continue
        items = [item for d in group for e in (d.event, *d.riders) for item, _kind in interaction_items(e)]
        categories = {c for c in map(context.category, items) if c}
        keys += batch_view_keys(ProfileFeatures.from_json(docs[key].data.get("features")), items, categories)
    return rows(list(dict.fromkeys(keys))) if keys else {}


def _newly_covered(before: list[list[Any]], after: list[list[Any]], event: Event) -> bool:
    """A held event that the consent log ``after`` covers at its time and ``before`` did not: it has not been folded
    yet, and now may be. (At the gate, against the profile as read for the batch: which riders a consent carries,
    to the sessions too; at the fold, against the document as read for the write: which of them the profile takes.)"""
    at = event.occurred_at.timestamp()
    return consented_at(after, at) and not consented_at(before, at)


def _released(doc: Doc, stored: ProfileFeatures, fresh: list[Delivery]) -> tuple[list[Event], dict[str, list[str]]]:
    """The riders of the fresh deliveries the profile takes, and its ``released`` marks after them: judged against
    the document as read, so a conflict's re-read, or a retried batch, folds each of them once."""
    after = apply_consent(ProfileFeatures(consent=list(stored.consent)), [d.event for d in fresh]).consent
    seen = _seen(doc)
    riders = {event_key(r): r for d in fresh for r in d.riders}
    taken = [r for r in riders.values() if _newly_covered(_seen_log(after, seen.get(r.profile_id, ())), after, r)]
    ids = sorted(_entry_id(e) for e in after)
    checked = {s for d in fresh for s in d.checked}
    aliases = {*map(str, doc.data.get("aliases", [])), *checked}
    marks = {s: v for s, v in seen.items() if s in aliases}  # aliases a merge or an erasure took away drop out
    marks.update(dict.fromkeys(checked, ids))
    return taken, marks


def _fold(
    doc: Doc, fresh: list[Delivery], context: Context, view_rows: dict[str, list[StoredPick]] | None = None
) -> Doc:
    """The document with the fresh deliveries applied and their marks raised (a new Doc: the read one stays)."""
    entity, name = entity_of(doc.key), key_id(doc.key)
    events = [d.event for d in fresh]
    data = dict(doc.data)
    expires_at = doc.expires_at
    if entity == "profile":
        stored = ProfileFeatures.from_json(data.get("features"))
        released, seen = _released(doc, stored, fresh)  # before the fold below changes ``stored``
        profile = apply_to_profile(stored, events + released, context)
        data["features"] = profile.to_json()
        if seen:
            data["released"] = seen
        data.setdefault("aliases", [name])
        if view_rows is not None:
            view = serving_view(profile, view_rows)
            if view["items"]:
                data["serving"] = view
            else:
                data.pop("serving", None)
    elif entity == "session":
        riders = [r for d in fresh for r in d.riders if r.session_id == name and _feeds_session(r)]
        riders = list({event_key(r): r for r in riders}.values())
        # a delivery carrying riders is in their sessions too: its own event goes to its own session only
        mine = [e for e in events if e.session_id == name and not isinstance(e, Consent)] + riders
        session = apply_to_session(SessionFeatures.from_json(data), mine, context)
        data = session.to_json()
        expires_at = int(session.last_at + SESSION_TTL_SECONDS)
    elif entity == "item":
        data = apply_to_item(ItemFeatures.from_json(data), name, events).to_json()
    else:
        raise ValueError(f"no fold for entity {entity!r} ({doc.key})")
    hwm = dict(doc.hwm)
    for d in fresh:
        mark = _mark(entity, d)
        if not d.via and d.shard and d.sequence > int(hwm.get(mark, "0")):  # a replay raises no mark: see REPLAYS
            hwm[mark] = str(d.sequence)
    return replace(doc, data=data, hwm=hwm, expires_at=expires_at)
