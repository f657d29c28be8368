"""Secrets Manager reads, cached per process for five minutes (a Lambda's cold start pays for the call)."""

from __future__ import annotations

import time

CACHE_SECONDS = 300.0
_CACHE: dict[str, tuple[float, str]] = {}


def read_secret(secret_id: str, fresh: bool = False) -> str:
    """The secret's string, cached for five minutes (``fresh``: read it now)."""
    if not secret_id:
        raise ValueError("no secret configured: the function's environment names none")
    cached = _CACHE.get(secret_id)
    if cached and not fresh and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    from shopwise.dal.aws import client

    value = str(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
    _CACHE[secret_id] = (time.monotonic(), value)
    return value


def write_secret(secret_id: str, value: str) -> None:
    """A new version of the secret, current from now on (functions pick it up within ``CACHE_SECONDS``)."""
    from shopwise.dal.aws import client

    client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=value)
    _CACHE.pop(secret_id, None)
