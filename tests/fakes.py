"""An in-memory feature store for unit tests of the updater: the read / write / transact primitives of
``shopwise.features.identity.Store``, with versions, and no conflicts."""

from __future__ import annotations

from dataclasses import replace

from shopwise.dal.feature_store import Doc


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
