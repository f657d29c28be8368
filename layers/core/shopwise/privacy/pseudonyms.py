"""Pseudonymisation: customer ids, emails and device ids become keyed hashes before they reach the stream.

HMAC-SHA256 under a secret key (Secrets Manager in AWS, generated for the local stack), truncated to 128 bits and
hex encoded. The same id always gives the same pseudonym under one key, so profiles join up, while nobody without
the key can test a guessed email against the data. A raw email is never stored or logged: the collector drops it
after hashing. Rotating the key splits every profile from its history, so the key is not rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import TYPE_CHECKING, Any, TypeVar

from shopwise.dal.secrets import read_secret
from shopwise.keys import customer_alias

if TYPE_CHECKING:  # the event schemas are imported when an event is pseudonymised, not to look a shopper up
    from shopwise.events import EventBase

E = TypeVar("E", bound="EventBase")

KEY_BYTES = 32


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonymisation key must be at least 16 bytes")
        self._key = key

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
        keys = {str(v): decode_key(str(k)) for v, k in dict(doc["keys"]).items()}
        current = str(doc["current"])
        if current not in keys:
            raise ValueError(f"the pseudonymisation secret's current key {current!r} is not among its keys")
        return current, keys
    return "k1", {"k1": decode_key(text)}


def load_pseudonymiser(secret_id: str) -> Pseudonymiser:
    """The current key from Secrets Manager (cached, see shopwise.dal.secrets): what new events are keyed with."""
    if not secret_id:
        raise ValueError("no pseudonymisation key configured (PSEUDONYM_KEY_SECRET)")
    current, keys = key_versions(read_secret(secret_id))
    return Pseudonymiser(keys[current])


def load_pseudonymisers(secret_id: str) -> list[Pseudonymiser]:
    """Every key version the secret still holds, the current first: what finds a shopper by id (an erasure) when
    some of their data was keyed before a rotation."""
    if not secret_id:
        raise ValueError("no pseudonymisation key configured (PSEUDONYM_KEY_SECRET)")
    current, keys = key_versions(read_secret(secret_id))
    return [Pseudonymiser(keys[current]), *(Pseudonymiser(k) for v, k in sorted(keys.items()) if v != current)]
