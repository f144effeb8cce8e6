"""Tokens at rest: AES-256-GCM bound to the connection id."""

from __future__ import annotations

import base64
import os

import pytest

from calendar_connect.records import TokenSet
from calendar_connect.token_cipher import DecryptionError, LocalKeySource, TokenCipher

TOKENS = TokenSet(access_token="access-plain", refresh_token="refresh-plain", expires_at=1_900_000_000)


@pytest.fixture
def cipher():
    return TokenCipher(LocalKeySource(base64.b64encode(os.urandom(32)).decode()))


def test_round_trip_and_no_plaintext(cipher):
    blob = cipher.encrypt("conn-1", TOKENS)
    assert b"access-plain" not in blob and b"refresh-plain" not in blob
    assert cipher.decrypt("conn-1", blob) == TOKENS
    assert cipher.encrypt("conn-1", TOKENS) != blob  # a fresh nonce each time


def test_another_connection_id_does_not_decrypt(cipher):
    with pytest.raises(DecryptionError):
        cipher.decrypt("conn-2", cipher.encrypt("conn-1", TOKENS))


def test_tampering_and_another_key_are_detected(cipher):
    blob = bytearray(cipher.encrypt("conn-1", TOKENS))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError):
        cipher.decrypt("conn-1", bytes(blob))
    other = TokenCipher(LocalKeySource(base64.b64encode(os.urandom(32)).decode()))
    with pytest.raises(DecryptionError):
        other.decrypt("conn-1", cipher.encrypt("conn-1", TOKENS))
    with pytest.raises(DecryptionError):
        cipher.decrypt("conn-1", b"\x02garbage")


def test_key_must_be_256_bits():
    with pytest.raises(ValueError):
        LocalKeySource(base64.b64encode(os.urandom(16)).decode())
