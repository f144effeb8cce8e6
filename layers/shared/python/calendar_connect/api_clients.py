"""API clients: keys are `cc_<clientId>_<secret>`; only a SHA-256 of the whole key is stored.

The secret part has 256 random bits, so a fast hash is enough (secret_hashes); the comparison is constant-time all
the same.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time

from .dal import ApiClients
from .errors import Unauthenticated
from .records import ApiClient
from .return_urls import validate_prefix
from .secret_hashes import hash_secret
from .timestamps import iso

_KEY = re.compile(r"^cc_([A-Za-z0-9]{8,32})_([A-Za-z0-9_\-]{43})$")
_SCHEMES = ("bearer", "token")


def new_api_key(client_id: str | None = None) -> tuple[str, str]:
    """A fresh (client id, API key)."""
    client_id = client_id or secrets.token_hex(8)
    return client_id, f"cc_{client_id}_{secrets.token_urlsafe(32)}"


def register_client(
    store: ApiClients, name: str, prefixes: list[str], api_key: str | None = None
) -> tuple[ApiClient, str]:
    """Store a new client; answers it with its key, which is shown once and never stored."""
    if api_key is None:
        _, api_key = new_api_key()
    match = _KEY.match(api_key)
    if not match:
        raise ValueError("an API key looks like cc_<8-32 letters or digits>_<43 url-safe characters>")
    client = ApiClient(
        clientId=match.group(1),
        name=name,
        keyHash=hash_secret(api_key),
        allowedReturnUrlPrefixes=[validate_prefix(p) for p in prefixes],
        createdAt=iso(time.time()),
    )
    store.put(client)
    return client, api_key


def authenticate(store: ApiClients, authorization: str | None) -> ApiClient:
    """The API client behind an `Authorization: Bearer|Token <key>` header, or Unauthenticated."""
    scheme, _, api_key = (authorization or "").strip().partition(" ")
    if scheme.lower() not in _SCHEMES or not api_key:
        raise Unauthenticated("Missing API key: send Authorization: Bearer <api key>")
    match = _KEY.match(api_key.strip())
    client = store.get(match.group(1)) if match else None
    presented = hash_secret(api_key.strip())
    expected = client.keyHash if client else hash_secret("no such client")
    if not hmac.compare_digest(presented, expected) or client is None or client.revoked:
        raise Unauthenticated("Unknown or revoked API key")
    return client
