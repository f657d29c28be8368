"""Blinded aliases: how an erasure names a shopper once the shopper is gone.

A tombstone (``erased#<blinded alias>`` in the feature store, expiring after ``TOMBSTONE_DAYS``) tells the stream
updater that an alias was erased at a time: its events from before then, still in flight or retried, are dropped.
The jobs and the purge match records against the same blinded names. Blinding is a one-way digest of an alias that
is itself a pseudonym (a keyed hash) or a random visitor id, so a tombstone, a receipt or a purge plan holds nothing
that names anybody, and a scan for the shopper's ids or pseudonyms finds nothing of them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from shopwise.keys import ANONYMOUS, CUSTOMER, DEVICE, EMAIL, tombstone_key

TOMBSTONE_DAYS = 15  # longer than the stream keeps records (1 day) and the failure queue keeps them (14 days)
# the fields of an event (as archived) that carry an alias, and the alias kind of each
ALIAS_FIELDS = {"anonymous_id": ANONYMOUS, "customer_id": CUSTOMER, "device_id": DEVICE, "email_hash": EMAIL}
KINDS = (ANONYMOUS, CUSTOMER, DEVICE, EMAIL)
# anything that may be an id in free text (a log line, a queue message, a CSV row): runs of id characters
_TOKEN = re.compile(r"[A-Za-z0-9_.@+=-]{6,}")
# an alias field of an event's JSON: "customer_id":"<value>" (the value as JSON writes an id: no quote, no escape)
_ALIAS_FIELD = re.compile(r'"(' + "|".join(ALIAS_FIELDS) + r')"\s*:\s*"([^"\\]*)"')


class Reader(Protocol):
    def read(self, keys: list[str]) -> Mapping[str, Any]: ...


def blind(alias: str) -> str:
    """An alias ("c:<pseudonym>", "a:<visitor id>", ...) as a tombstone, a receipt or a job may hold it."""
    return hashlib.sha256(f"shopwise-erased\x00{alias}".encode()).hexdigest()[:32]


def event_aliases(event: Mapping[str, Any]) -> list[str]:
    """Every alias an event (a JSON object, as archived or queued) names (a rekey event's older ones too)."""
    found = [f"{kind}:{event[name]}" for name, kind in ALIAS_FIELDS.items() if event.get(name)]
    previous = event.get("previous")
    return found + [str(a) for a in previous] if isinstance(previous, list) else found


def event_time(event: Mapping[str, Any]) -> float | None:
    """When an event (a JSON object, as archived or queued) happened, as the erasure rule reads it (None: unknown)."""
    return _timestamp(event.get("occurred_at"))


class Targets:
    """The blinded aliases of the erasures a job must skip or purge (each with when it was erased), and the tests
    it applies to records. An event is the shopper's if it names an erased alias and happened before that erasure
    (what the alias sent afterwards is a new shopper's, kept only with fresh consent); anything else that names an
    erased alias — a list row, a log line, a model's user index — is the shopper's whenever it was written."""

    def __init__(self, erased_at: Mapping[str, float]) -> None:
        self.erased_at = dict(erased_at)

    def __bool__(self) -> bool:
        return bool(self.erased_at)

    def __len__(self) -> int:
        return len(self.erased_at)

    def alias(self, alias: str) -> bool:
        return blind(alias) in self.erased_at

    def event(self, event: Mapping[str, Any]) -> bool:
        return self.named(event_aliases(event), event_time(event))

    def named(self, aliases: Iterable[str], at: float | None) -> bool:
        """Whether an event that names these aliases and happened at ``at`` (None: unknown) is a target's."""
        for alias in aliases:
            erased = self.erased_at.get(blind(alias))
            if erased is not None and (at is None or at <= erased):
                return True
        return False

    def text(self, text: str) -> bool:
        """Whether free text names an erased shopper: any id-like token, as an alias ("c:..." or "a:...") or as a
        bare id of any kind (a queue message holds the event's JSON; a log line holds keys like profile#c:...)."""
        if not self.erased_at:
            return False
        for token in _TOKEN.findall(text.replace(":", " : ")):
            if any(blind(f"{kind}:{token}") in self.erased_at for kind in KINDS):
                return True
        return False

    def line(self, line: bytes | str) -> bool:
        """A JSON line: an event by its alias fields and time; a delivery-failure record (Firehose's) by the record
        it carries; anything else as text."""
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        fields = _ALIAS_FIELD.findall(text)
        # an event (the archive's bulk) is parsed only if one of its alias fields names a target
        if (
            fields
            and "rawData" not in text
            and '"previous"' not in text
            and not any(blind(f"{ALIAS_FIELDS[name]}:{value}") in self.erased_at for name, value in fields)
        ):
            return False
        try:
            record = json.loads(text)
        except ValueError:
            return self.text(text)
        if isinstance(record, dict):
            if any(name in record for name in ALIAS_FIELDS):
                return self.event(record)
            raw = record.get("rawData")
            if isinstance(raw, str):
                try:
                    return self.line(base64.b64decode(raw, validate=True))
                except ValueError:
                    pass
        return self.text(text)


def _timestamp(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def targets_of(pending: Iterable[Mapping[str, Any]]) -> Targets:
    """The targets of pending erasures (``shopwise.dal.erasures.pending``): an alias erased twice counts from the
    later erasure."""
    erased_at: dict[str, float] = {}
    for record in pending:
        for target in record.get("targets", []):
            erased_at[str(target)] = max(float(record["erased_at"]), erased_at.get(str(target), 0.0))
    return Targets(erased_at)


def tombstones(store: Reader, aliases: Iterable[str]) -> dict[str, float]:
    """alias -> when it was erased, for those of ``aliases`` that were (one batched read)."""
    keys = {tombstone_key(blind(a)): a for a in aliases}
    if not keys:
        return {}
    found = store.read(list(keys))
    return {
        keys[k]: float(doc.data.get("erased_at", 0.0))
        for k, doc in found.items()
        if getattr(doc, "version", 0) and k in keys
    }
