"""Erasure: a shopper's data removed from every store, with a receipt.

At once (``erase``, the erase function behind ``DELETE /v1/users/{id}`` and ``shopwise erase``): every alias of the
person is found through stitching (the profile lists them: cookies, customer, email, device, and the profiles merged
into it); the profiles, alias rows, sessions, the recommendation rows of both slots and the campaign cap rows are
deleted, and the person's rows in the event ledger; a tombstone per alias (blinded) makes the stream updater drop any event of it from before the erasure that
is still in flight, and records the erasure for the jobs (``privacy/erasures/<id>.json``): training and the load skip
the person from this moment.

Then the purge job (``shopwise_jobs.purge``, daily, and ``shopwise erasures purge``) rewrites what S3 holds — the
event archive, model folders (the user index, the history rows, the feature snapshot), batch-transform outputs,
campaign exports, their old versions — and scrubs the failure queue, once nothing of the erasure can still be in
flight (the stream keeps records 24 hours). The receipt records when each store finished.

Aliases are never stored in a receipt or a tombstone: only blinded (a keyed-free SHA-256 of the alias — a pseudonym
or a random visitor id, never a raw identifier), and the blinded list is dropped from the receipt once the purge is
done.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from shopwise.campaigns.rules import CAMPAIGNS
from shopwise.dal import erasures as records
from shopwise.dal.batch import batch_delete, batch_write, get_many, pk
from shopwise.dal.feature_store import Doc, FeatureStore
from shopwise.dal.ledger import EventLedger
from shopwise.dal.recommendations import erase_lists
from shopwise.dal.serving_read import Tables
from shopwise.features.definitions import ProfileFeatures
from shopwise.features.identity import resolve
from shopwise.keys import (
    CUSTOMER,
    EMAIL,
    ID_TYPES,
    alias_key,
    anonymous_alias,
    can_own_profile,
    customer_alias,
    device_alias,
    email_alias,
    id_kind,
    profile_key,
    sent_key,
    session_key,
    tombstone_key,
    user_key,
)
from shopwise.privacy.pseudonyms import Pseudonymiser
from shopwise.privacy.tombstones import TOMBSTONE_DAYS, blind

STORES = (
    "feature_store",
    "event_ledger",
    "recommendations",
    "campaign_caps",
    "archive",
    "artifacts",
    "failure_queue",
)


@dataclass
class Erasure:
    """The receipt of one erasure: what was removed where, and when each store finished — no identity."""

    erasure_id: str
    requested_at: float
    requested_by: str
    aliases: int = 0  # aliases of the person found through stitching
    profiles: int = 0  # profile rows deleted (the live one and those merged into it)
    sessions: int = 0  # session rows deleted
    rows_deleted: dict[str, int] = field(default_factory=dict)
    stores: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(STORES))  # store -> finished at
    purge: dict[str, int] = field(default_factory=dict)  # what the purge job removed: events, objects, messages
    targets: list[str] = field(default_factory=list)  # blinded aliases, until the purge is done

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def aliases_of(id_type: str, raw_id: str, pseudonymisers: list[Pseudonymiser]) -> list[str]:
    """The alias keys a store's id of a shopper becomes, under every pseudonymisation key still in use (a shopper
    not seen since a rotation is still known by the old key's pseudonym)."""
    raw_id = raw_id.strip()
    if not raw_id:
        raise ValueError("an empty id names nobody")
    if id_type == "anonymous":  # a visitor id is random, never pseudonymised
        return [anonymous_alias(raw_id)]
    make = {
        "customer": (customer_alias, "customer"),
        "email": (email_alias, "email"),
        "device": (device_alias, "device"),
    }
    if id_type not in make:
        raise ValueError(f"unknown id type {id_type!r}: one of {', '.join(ID_TYPES)}")
    alias, kind = make[id_type]
    return list(dict.fromkeys(alias(getattr(p, kind)(raw_id)) for p in pseudonymisers))


@dataclass(frozen=True)
class Person:
    aliases: frozenset[str]  # every alias key (a:, c:, d:, e:) of the person
    profiles: frozenset[str]  # every profile id: the live one and those merged into it
    sessions: frozenset[str]
    since: float  # the person's first event the profiles know of (0: unknown): the purge reads the archive from there


def person(store: FeatureStore, aliases: list[str]) -> Person:
    """Everyone these aliases are, through stitching: the live profiles they resolve to, and every alias and merged
    profile those profiles list."""
    targets, docs = resolve(store, aliases)
    found = set(aliases) | {t for t in targets.values() if t}
    for doc in docs.values():
        found |= {str(a) for a in doc.data.get("aliases", [])}
    profiles = {a for a in found if can_own_profile(a)}
    # the merged profiles resolve did not read (a merged profile's tombstone lists its own aliases too)
    stored = {**docs, **store.read([profile_key(p) for p in profiles if profile_key(p) not in docs])}
    for doc in stored.values():
        found |= {str(a) for a in doc.data.get("aliases", [])}
    profiles = {a for a in found if can_own_profile(a)}
    sessions: set[str] = set()
    firsts = []
    for doc in stored.values():
        features = ProfileFeatures.from_json(doc.data.get("features"))
        sessions |= {str(s) for s, _at in features.sessions}
        firsts.append(features.first_event_at)
    # a visitor who never consented has no profile: nothing says when they started, the purge reads everything
    since = min(firsts) if firsts and all(firsts) else 0.0
    return Person(frozenset(found), frozenset(profiles), frozenset(sessions), since)


def erase(aliases: list[str], tables: Tables, bucket: str, requested_by: str, now: float | None = None) -> Erasure:
    """Remove the person these aliases name from the online stores at once; record the erasure for the jobs and the
    purge. Idempotent: erasing someone already erased finds nothing more, and the receipt says so."""
    now = time.time() if now is None else now
    who = person(FeatureStore(tables.features), aliases)
    receipt = Erasure(f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{uuid.uuid4().hex[:8]}", now, requested_by)
    receipt.aliases = len(who.aliases)
    # first what the jobs and the updater need (a failure later leaves the person findable, and a retry finishes)
    receipt.targets = sorted({blind(a) for a in who.aliases})
    expires = int(now + TOMBSTONE_DAYS * 86400)
    batch_write(
        tables.features,
        (Doc(tombstone_key(t), {"erased_at": now}, expires_at=expires).to_item() for t in receipt.targets),
    )
    pending = {"erasure_id": receipt.erasure_id, "erased_at": now, "since": who.since, "targets": receipt.targets}
    records.put_pending(bucket, receipt.erasure_id, pending)
    # then the rows, the ones that lead to the person (aliases, profiles) last
    contacts = [a for a in who.aliases if id_kind(a) in (CUSTOMER, EMAIL)]
    # the lists: from each slot's table, and held for a load whose import is in flight
    lists = [user_key(p) for p in sorted(who.profiles)]
    receipt.rows_deleted["recommendations"] = erase_lists(tables.lists, tables.config, lists, now) if lists else 0
    receipt.stores["recommendations"] = time.time()
    candidates = {
        "campaign_caps": (tables.features, [sent_key(c.name, r) for c in CAMPAIGNS for r in contacts]),
        "feature_store": (
            tables.features,
            [session_key(s) for s in who.sessions]
            + [profile_key(p) for p in who.profiles]
            + [alias_key(a) for a in who.aliases],
        ),
    }
    for store, (table, keys) in candidates.items():  # what exists, so the receipt counts rows, not guesses
        present = {item["pk"]["S"] for item in get_many(table, [pk(k) for k in keys], projection="pk", consistent=True)}
        receipt.rows_deleted[store] = batch_delete(table, [pk(k) for k in keys if k in present])
        receipt.stores[store] = time.time()
        if store == "feature_store":
            receipt.profiles = sum(profile_key(p) in present for p in who.profiles)
            receipt.sessions = sum(session_key(s) in present for s in who.sessions)
    if tables.ledger:  # the person's event ids, and the events that wait there for a consent
        receipt.rows_deleted["event_ledger"] = EventLedger(tables.ledger).forget(who.aliases)
        receipt.stores["event_ledger"] = time.time()
    records.put(tables.config, receipt.erasure_id, receipt.to_json())
    return receipt
