"""The store's token keys, as the request path holds them: read from Secrets Manager once per execution environment
(no network call on the request path after that), and read again only when a token names a key this environment
does not hold yet (a rotation: at most once a minute)."""

from __future__ import annotations

import time

from shopwise.access.tokens import TokenKeys
from shopwise.dal.secrets import read_secret

RELOAD_AFTER_SECONDS = 60.0


class KeySource:
    """The token keys of one secret (``SHOPPER_TOKEN_SECRET``)."""

    def __init__(self, secret_id: str) -> None:
        self.secret_id = secret_id
        self._keys: TokenKeys | None = None
        self._read_at = 0.0

    def keys(self) -> TokenKeys:
        if self._keys is None:
            self._load()
        assert self._keys is not None
        return self._keys

    def reload(self) -> TokenKeys:
        """Read the secret again (a token named a key not held here), unless that was done within the minute."""
        if time.monotonic() - self._read_at >= RELOAD_AFTER_SECONDS:
            self._load(fresh=True)
        return self.keys()

    def _load(self, fresh: bool = False) -> None:
        if not self.secret_id:
            raise ValueError("no shopper-token key configured (SHOPPER_TOKEN_SECRET)")
        self._keys = TokenKeys.parse(read_secret(self.secret_id, fresh=fresh))
        self._read_at = time.monotonic()


class FixedKeys(KeySource):
    """Keys given directly (tests, the local CLI minting tokens)."""

    def __init__(self, keys: TokenKeys) -> None:
        self._keys = keys
        self._read_at = time.monotonic()
        self.secret_id = ""

    def reload(self) -> TokenKeys:
        return self.keys()


_sources: dict[str, KeySource] = {}


def key_source(secret_id: str) -> KeySource:
    """The execution environment's key source for this secret."""
    if secret_id not in _sources:
        _sources[secret_id] = KeySource(secret_id)
    return _sources[secret_id]
