"""The store's side of the API, played locally: its servers sign their requests with IAM credentials (SigV4, the
local ones) and mint shopper tokens for its shoppers' browsers with the stack's token key — what a store's backend
does against a deployed stack with its own role (``ServerApiPolicy``, ``TokenKeyPolicy``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from shopwise.access.tokens import SHOPPER_TTL_SECONDS, TokenKeys, mint
from shopwise.dal.secrets import read_secret
from shopwise.settings import get_settings
from shopwise_local.sigv4 import signed_headers


def token_keys() -> TokenKeys:
    return TokenKeys.parse(read_secret(get_settings().shopper_token_secret))


def shopper_token(customer: str = "", visitor: str = "", ttl: int = SHOPPER_TTL_SECONDS) -> str:
    """A token for a browser acting for this customer (and/or visitor), as the store's backend mints one."""
    return mint(token_keys(), visitor=visitor, customer=customer, ttl=ttl)


def call(
    api_url: str, method: str, path: str, body: Any = None, token: str = "", signed: bool = False, timeout: float = 30
) -> tuple[int, Any]:
    """One API call: as a browser (``token``), as the store's servers (``signed``), or with no credential."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if signed:
        headers = signed_headers(method, f"{api_url}{path}", data or b"", headers)
    request = urllib.request.Request(f"{api_url}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
