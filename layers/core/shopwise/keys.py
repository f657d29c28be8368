"""Every key layout, in one place: profile ids and aliases, the feature store's entities, the recommendations
table's rows, the config table's rows and the campaign cap rows. Writers and readers (the stream updater, serving,
the batch jobs, the CDK app's IAM conditions) all build keys here."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

from shopwise.config import ACTIVITY_SHARDS

# --------------------------------------------------------------------------------------------- profile ids, aliases
# A profile id (and an alias) is "<kind>:<id>": a customer pseudonym, an anonymous visitor id (a cookie), a device
# pseudonym or an email pseudonym. Profiles are owned by customer and anonymous ids (``shopwise.features.identity``).
CUSTOMER = "c"
ANONYMOUS = "a"
DEVICE = "d"
EMAIL = "e"


# what a store names a shopper by (an erasure request, the API's id_type): its account id, a visitor cookie id, an
# email address, a device id
ID_TYPES = ("customer", "anonymous", "email", "device")


def customer_alias(pseudonym: str) -> str:
    return f"{CUSTOMER}:{pseudonym}"


def anonymous_alias(visitor: str) -> str:
    return f"{ANONYMOUS}:{visitor}"


def device_alias(pseudonym: str) -> str:
    return f"{DEVICE}:{pseudonym}"


def email_alias(pseudonym: str) -> str:
    return f"{EMAIL}:{pseudonym}"


def id_kind(profile: str) -> str:
    """ "c", "a", "d" or "e"."""
    return profile.partition(":")[0]


def id_value(profile: str) -> str:
    return profile.partition(":")[2]


def is_customer(profile: str) -> bool:
    return id_kind(profile) == CUSTOMER


def can_own_profile(alias: str) -> bool:
    """Customer and anonymous ids own profiles; devices and emails only point at one."""
    return id_kind(alias) in (CUSTOMER, ANONYMOUS)


# ---------------------------------------------------------------------------------------------------- feature store
# One table, one document per entity (``shopwise.features.definitions``).
def profile_key(profile: str) -> str:
    return f"profile#{profile}"


def session_key(session_id: str) -> str:
    return f"session#{session_id}"


def alias_key(alias: str) -> str:
    return f"alias#{alias}"


PROFILE_PREFIX = profile_key("")


def activity_key(doc_key: str, at: float) -> str:
    """A live document's entry in the activity index: its kind (profile, item), the UTC day of its newest event and
    a shard of the document."""
    day = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
    return f"{entity_of(doc_key)}#{day}#{zlib.crc32(doc_key.encode()) % ACTIVITY_SHARDS}"


REACH = "reach"  # the reach index's entity: profiles a campaign may write to


def reach_key(doc_key: str, at: float) -> str:
    """A reachable profile's entry in the reach index: like its activity entry (the day of its newest event, a
    shard), under the entity ``reach``."""
    day = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
    return f"{REACH}#{day}#{zlib.crc32(doc_key.encode()) % ACTIVITY_SHARDS}"


def contact_id(aliases: list[str]) -> str:
    """The pseudonymised contact a marketing tool can address: an email if one is linked, else the customer."""
    emails = sorted(a for a in aliases if id_kind(a) == EMAIL)
    customers = sorted(a for a in aliases if id_kind(a) == CUSTOMER)
    return (emails or customers or [""])[0]


def activity_keys(entity: str, since: float, until: float) -> list[str]:
    """Every activity-index partition of one kind of document for the days from ``since`` to ``until`` (UTC)."""
    first = datetime.fromtimestamp(since, UTC).date()
    last = datetime.fromtimestamp(until, UTC).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [f"{entity}#{day:%Y-%m-%d}#{shard}" for day in days for shard in range(ACTIVITY_SHARDS)]


# the catalog's out-of-stock item ids, one string set kept by the catalog writers (so serving reads stock with the
# shopper's features, in one round trip)
UNAVAILABLE_KEY = "catalog#unavailable"
OUT_OF_STOCK = "out_of_stock"


def sent_key(campaign: str, recipient: str) -> str:
    """A campaign's frequency-cap row for one recipient (feature store, expires after the campaign's cap)."""
    return f"{SENT_PREFIX}{campaign}#{recipient}"


SENT_PREFIX = "sent#"


def tombstone_key(blinded: str) -> str:
    """An erased alias (blinded: ``shopwise.privacy.erasure.blind``): events it sent before its erasure are dropped."""
    return f"erased#{blinded}"


def entity_of(key: str) -> str:
    """'profile', 'session', 'item', 'segment', 'alias' or 'sent' (an item's part is an 'item')."""
    return key.split("#", 1)[0].split("@", 1)[0]


def key_id(key: str) -> str:
    return key.split("#", 1)[1]


# -------------------------------------------------------------------------------------------- the lists' slot tables
def popular_key(segment: str) -> str:
    """A popular list: "global", "category:<category path>", "market:<market>" or "referrer:<source>"."""
    return f"popular#{segment}"


POPULAR_KEY = popular_key("global")


def referrer_source(referrer: str) -> str:
    """Where a visit came from, as a segment name: the referring URL's host without "www." ("instagram.com"), or
    the value itself lower-cased when it is not a URL ("newsletter"); "" for none."""
    value = referrer.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].split(":", 1)[0]
    return value.removeprefix("www.")[:128]


def user_key(profile: str) -> str:
    return f"user#{profile}"


USER_PREFIX = user_key("")


def item_key(item_id: str) -> str:
    """An item's precomputed similar items (the lists' slot tables) and its features (feature store)."""
    return f"item#{item_id}"


def item_part_key(item_id: str, shard: str) -> str:
    """One stream shard's part of an item's features (feature store): the shard's updater is its one writer, so it
    is written without a condition, 25 a BatchWriteItem call. ``item_key`` is the item's shared part: what replays
    and the backfill fold, with conditional writes. An item's features are its parts merged
    (``ItemFeatures.merged``)."""
    return f"item@{shard_number(shard)}#{item_id}"


def is_item_part(key: str) -> bool:
    return key.startswith("item@")


def entity_key(key: str) -> str:
    """The entity a document belongs to: an item's part -> the item's key; any other key is its own entity."""
    return item_key(key_id(key)) if is_item_part(key) else key


def shard_number(shard: str) -> str:
    """A Kinesis shard id's number ("shardId-000000000003" -> "3"): how marks and item parts name a shard."""
    return shard.removeprefix("shardId-").lstrip("0") or "0"


def next_key(item_id: str) -> str:
    """What shoppers went on to after this item within a session (the sequential model's rules)."""
    return f"next#{item_id}"


SLOTS = ("a", "b")


def slot_key(slot: str, key: str) -> str:
    """A recommendations row in one of the two slots (``shopwise.dal.recommendations``)."""
    return f"{slot}/{key}"


# ----------------------------------------------------------------------------------------------------- config table
ACTIVE_MODEL_KEY = "active_model"  # which version serves from which slot (the pointer)
HELD_ERASURES_KEY = "held_erasures"  # erased shoppers' list keys, held for the load in flight (dal.recommendations)
EXPERIMENTS_KEY = "experiments"  # the A/B experiments, one JSON list
MODEL_PREFIX = "model#"
ERASURE_PREFIX = "erasure#"


def erasure_key(erasure_id: str) -> str:
    """An erasure's receipt: what was removed where and when, without the identity."""
    return f"{ERASURE_PREFIX}{erasure_id}"


def model_key(version: str) -> str:
    """A model version's registry record."""
    return f"{MODEL_PREFIX}{version}"
