"""Secrets kept only as their hash: API keys, states and browser-binding tokens are stored as a SHA-256.

Each has at least 256 random bits, so a fast hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
