"""Pseudonymisation: customer ids, emails and device ids become keyed hashes before they reach the stream.

HMAC-SHA256 under a secret key (Secrets Manager in AWS, generated for the local stack), truncated to 128 bits and
hex encoded. The same id always gives the same pseudonym under one key, so profiles join up, while nobody without
the key can test a guessed email against the data. A raw email is never stored or logged: the collector drops it
after hashing.

The key is versioned (``key_versions``): rotating it (``shopwise keys rotate``) adds a new current key and keeps
the older ones. While they are held, the collector writes beside each event with a customer id (and each identify
event with an email or a device) a ``rekey`` event naming the aliases those ids had under the older keys, and the
updater moves the profile they hold to the new alias: a shopper keeps their profile across a rotation from their
next visit on. An erasure looks a shopper up under every key held.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import TYPE_CHECKING, Any, TypeVar

from shopwise.dal.secrets import read_secret
from shopwise.keys import customer_alias, device_alias, email_alias

if TYPE_CHECKING:  # the event schemas are imported when an event is pseudonymised, not to look a shopper up
    from shopwise.events import EventBase, Rekey

E = TypeVar("E", bound="EventBase")

KEY_BYTES = 32


class Pseudonymiser:
    """Pseudonyms under the current key; ``previous``: the keys before it, still held while a rotation runs."""

    def __init__(self, key: bytes, previous: tuple[Pseudonymiser, ...] = ()) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonymisation key must be at least 16 bytes")
        self._key = key
        self.previous = previous

    def token(self, kind: str, value: str) -> str:
        digest = hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()
        return digest[:16].hex()

    def customer(self, customer_id: str) -> str:
        return self.token("customer", customer_id.strip())

    def email(self, email: str) -> str:
        return self.token("email", email.strip().lower())

    def device(self, device_id: str) -> str:
        return self.token("device", device_id.strip())

    def customer_profile(self, customer_id: str) -> str:
        """The profile key of a customer as the storefront knows them (serving looks shoppers up by this)."""
        return customer_alias(self.customer(customer_id))

    def apply(self, event: E) -> E:
        """The event with its personal ids replaced by pseudonyms (idempotent: a pseudonymised event is returned
        as it is)."""
        from shopwise.events import Identify

        if event.pseudonymised:
            return event
        update: dict[str, Any] = {"pseudonymised": True}
        if event.customer_id:
            update["customer_id"] = self.customer(event.customer_id)
        if isinstance(event, Identify):
            if event.email:
                update["email"] = None
                update["email_hash"] = self.email(event.email)
            if event.device_id:
                update["device_id"] = self.device(event.device_id)
        return event.model_copy(update=update)

    def rekey(self, event: EventBase) -> Rekey | None:
        """While older keys are held: a rekey event naming the aliases the event's raw ids had under them (the
        event itself is pseudonymised with the current key by ``apply``). None without older keys or ids to key."""
        from shopwise.events import Identify, Rekey

        if not self.previous or event.pseudonymised:
            return None
        previous: list[str] = []
        for old in self.previous:
            if event.customer_id:
                previous.append(customer_alias(old.customer(event.customer_id)))
            if isinstance(event, Identify) and event.email:
                previous.append(email_alias(old.email(event.email)))
            if isinstance(event, Identify) and event.device_id:
                previous.append(device_alias(old.device(event.device_id)))
        if not previous:
            return None
        current = self.apply(event)
        return Rekey(
            event_id=f"rekey-{event.event_id}"[:128],
            event_type="rekey",
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            anonymous_id=current.anonymous_id,
            customer_id=current.customer_id,
            origin=event.origin,
            pseudonymised=True,
            previous=list(dict.fromkeys(previous))[:16],
        )


def new_key() -> str:
    """A fresh key, as the secret string stored in Secrets Manager (base64)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def decode_key(secret: str) -> bytes:
    try:
        key = base64.b64decode(secret, validate=True)
    except ValueError:
        key = secret.encode()
    return key


def key_versions(secret: str) -> tuple[str, dict[str, bytes]]:
    """The secret's keys by version and the current one. A versioned secret is JSON,
    ``{"current": "k2", "keys": {"k1": "<base64>", "k2": "<base64>"}}``; a bare key (every stack made before keys
    were versioned) is version "k1"."""
    text = secret.strip()
    if text.startswith("{"):
        doc = json.loads(text)
        versions = dict(doc["keys"]) if "keys" in doc else {v: k for v, k in doc.items() if v != "current"}
        keys = {str(v): decode_key(str(k)) for v, k in versions.items()}
        current = str(doc["current"])
        if current not in keys:
            raise ValueError(f"the pseudonymisation secret's current key {current!r} is not among its keys")
        return current, keys
    return "k1", {"k1": decode_key(text)}


def rotated(secret: str) -> tuple[str, str]:
    """The secret with a new key, made current; the older keys stay (the rekey events and erasures need them).
    Returns (the new secret string, the new version)."""
    _current, keys = key_versions(secret)
    version = f"k{max(int(v[1:]) for v in keys if v[1:].isdigit()) + 1}"
    encoded = {v: base64.b64encode(k).decode() for v, k in keys.items()}
    return json.dumps({"current": version, "keys": {**encoded, version: new_key()}}), version


def load_pseudonymiser(secret_id: str) -> Pseudonymiser:
    """The current key from Secrets Manager (cached, see shopwise.dal.secrets): what new events are keyed with."""
    if not secret_id:
        raise ValueError("no pseudonymisation key configured (PSEUDONYM_KEY_SECRET)")
    current, keys = key_versions(read_secret(secret_id))
    older = tuple(Pseudonymiser(k) for v, k in sorted(keys.items()) if v != current)
    return Pseudonymiser(keys[current], older)


def load_pseudonymisers(secret_id: str) -> list[Pseudonymiser]:
    """Every key version the secret still holds, the current first: what finds a shopper by id (an erasure) when
    some of their data was keyed before a rotation."""
    if not secret_id:
        raise ValueError("no pseudonymisation key configured (PSEUDONYM_KEY_SECRET)")
    current, keys = key_versions(read_secret(secret_id))
    return [Pseudonymiser(keys[current]), *(Pseudonymiser(k) for v, k in sorted(keys.items()) if v != current)]
