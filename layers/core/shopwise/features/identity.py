"""Identity stitching: the cookies, devices, emails and account logins of one person become one profile.

Alias keys: "a:<anonymous id>", "c:<customer pseudonym>", "d:<device pseudonym>", "e:<email pseudonym>". Profiles
are stored under the alias that created them ("c:" or "a:"). An identify event links its aliases: their profiles
are merged into one survivor — the customer profile if there is one, else the smallest key — so whatever order
the links arrive in, a person ends on the same profile with the same features (``merge_profiles`` commutes). The
merged profile becomes a tombstone pointing at the survivor, and alias rows point every alias at it — the aliases
the merged profile had gathered too, so chains stay one hop long — and later events and reads under any alias land
on the survivor. The survivor keeps the merged profile's high-water marks (per shard and source), so a retried
record that a merge re-routes is judged by the mark of the source that sent it; and each source's ``released``
marks (which consents its held events were checked against), so the merged consents release what they now cover.

Two different customers are never merged (a shared device or email links to the first customer only): that is a
household, not a person.
"""

from __future__ import annotations

from typing import Protocol

from shopwise.dal.feature_store import Conflict, Doc
from shopwise.features.definitions import ProfileFeatures, merge_profiles
from shopwise.keys import alias_key, can_own_profile, is_customer, key_id, profile_key
from shopwise.retry import backoff

MAX_HOPS = 64  # a longer chain (or a cycle) leaves its aliases unresolved: only their events are retried
MAX_CONFLICT_RETRIES = 8
ALIAS_LIMIT = 32


class Store(Protocol):
    def read(self, keys: list[str]) -> dict[str, Doc]: ...

    def write(self, doc: Doc) -> None: ...

    def transact(self, docs: list[Doc]) -> None: ...

    def put_unconditional(self, docs: list[Doc]) -> dict[str, str]: ...


def rank(profile_id: str) -> tuple[int, str]:
    """The survivor of a merge is the smallest: customers first, then by key."""
    return (0 if is_customer(profile_id) else 1, profile_id)


def resolve(store: Store, aliases: list[str]) -> tuple[dict[str, str], dict[str, Doc]]:
    """Alias -> the live profile id it belongs to now ("" for a device or email nobody has linked yet, or a chain
    that does not end within MAX_HOPS), and the live profiles' documents as read on the way (keyed by profile key),
    so callers need not read them again."""
    rows = store.read([alias_key(a) for a in aliases])
    target = {a: str(rows[alias_key(a)].data.get("profile") or (a if can_own_profile(a) else "")) for a in aliases}
    live: dict[str, Doc] = {}
    for _ in range(MAX_HOPS):
        profiles = store.read([profile_key(t) for t in {t for t in target.values() if t}])
        live.update({k: doc for k, doc in profiles.items() if not doc.merged_into})
        moved = {key_id(k): doc.merged_into for k, doc in profiles.items() if doc.merged_into}
        if not moved:
            return target, live
        target = {a: moved.get(t, t) for a, t in target.items()}
    stuck = {a for a, t in target.items() if profile_key(t) not in live}
    return {a: "" if a in stuck else t for a, t in target.items()}, live


def link(store: Store, aliases: list[str], rekeyed: frozenset[str] = frozenset()) -> str:
    """Merge the profiles of these aliases into one and point every alias at it. Idempotent; returns the survivor.
    ``rekeyed``: aliases of the same ids under an older pseudonymisation key (a rotation) — never the survivor, and
    merged even when they are customers (they are the same customer)."""
    for attempt in range(MAX_CONFLICT_RETRIES):
        target, docs = resolve(store, aliases)
        old = {target[a] for a in rekeyed if target.get(a)}
        live = sorted({t for t in target.values() if t}, key=lambda t: (t in old, *rank(t)))
        survivor = live[0]
        # never merge two customers (other customer profiles stay apart and keep their aliases) — unless one is the
        # other under an older key
        absorbed = [t for t in live[1:] if not is_customer(t) or t in old] if is_customer(survivor) else live[1:]
        main = docs[profile_key(survivor)]  # a merge racing ours fails the versions in the transaction below
        features = ProfileFeatures.from_json(main.data.get("features"))
        known = list(main.data.get("aliases", []))
        released = dict(main.data.get("released") or {})
        writes = [main]
        for other in absorbed:
            doc = docs[profile_key(other)]
            features = merge_profiles(features, ProfileFeatures.from_json(doc.data.get("features")))
            main.hwm = merge_marks(main.hwm, doc.hwm)
            released.update(doc.data.get("released") or {})  # per source: one source is on one profile at a time
            known += [*alias_ids(doc), other]
            # a tombstone pointing onwards (it lists itself whether or not it had been written before the merge)
            doc.data, doc.merged_into = {"aliases": sorted({*alias_ids(doc), other})}, survivor
            writes.append(doc)
        repoint = [
            a for a in aliases if target[a] != survivor and (target[a] in absorbed or not target[a]) and a != survivor
        ]
        known = sorted(set(known + [a for a in aliases if target[a] in (survivor, "") or a in repoint]) - {""})
        if not absorbed and not repoint and set(known) <= set(main.data.get("aliases", [])):
            return survivor  # already linked: nothing to write
        main.data = {**main.data, "features": features.to_json(), "aliases": known[-ALIAS_LIMIT:]}
        if released:
            main.data["released"] = released
        # every alias the merged profiles had gathered points at the survivor directly: no chains
        gathered = [a for other in absorbed for a in alias_ids(docs[profile_key(other)]) if a not in (survivor, "")]
        alias_rows = store.read([alias_key(a) for a in dict.fromkeys(repoint + absorbed + gathered)])
        for row in alias_rows.values():
            row.data = {"profile": survivor}
            writes.append(row)
        try:
            store.transact(writes)
            return survivor
        except Conflict:
            backoff(attempt)
    raise RuntimeError(f"gave up linking {sorted(aliases)} after {MAX_CONFLICT_RETRIES} write conflicts")


def merge_marks(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    """High-water marks of two documents of one person: per mark, the higher sequence number."""
    return {k: max(a.get(k, "0"), b.get(k, "0"), key=int) for k in {*a, *b}}


def alias_ids(doc: Doc) -> list[str]:
    return [str(a) for a in doc.data.get("aliases", [])]
