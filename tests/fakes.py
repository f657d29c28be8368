"""In-memory stand-ins for unit tests of the updater: the feature store's read / write / transact primitives
(``shopwise.features.identity.Store``, with versions, and no conflicts) and the event ledger's
(``shopwise.ingestion.update_features.Ledger``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace

from shopwise.dal.feature_store import Doc
from shopwise.dal.ledger import Claim


class MemoryStore:
    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}

    def read(self, keys: list[str]) -> dict[str, Doc]:
        return {k: replace(self.docs[k]) if k in self.docs else Doc(k) for k in keys}

    def write(self, doc: Doc) -> None:
        self.docs[doc.key] = replace(doc, version=doc.version + 1)

    def transact(self, docs: list[Doc]) -> None:
        for doc in docs:
            self.write(doc)

    def put_unconditional(self, docs: list[Doc]) -> dict[str, str]:
        unwritten = {}
        for doc in docs:
            try:
                self.write(doc)
            except Exception as exc:  # a subclass's injected failure: this one is left out, the others written
                unwritten[doc.key] = str(exc)
                continue
            doc.version += 1
        return unwritten


class MemoryLedger:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Claim] = {}

    def read(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Claim]:
        return {k: self.rows[k] for k in keys if k in self.rows}

    def record(self, claims: list[Claim]) -> None:
        self.rows.update({c.key: c for c in claims})

    def held(self, sources: Iterable[str], now: float | None = None) -> list[Claim]:
        now = time.time() if now is None else now
        wanted = set(sources)
        return [c for c in self.rows.values() if c.source in wanted and c.held is not None and c.expires_at > now]
