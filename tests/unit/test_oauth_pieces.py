"""Pure pieces of the OAuth flow: ID token checks, token answers, API keys."""

from __future__ import annotations

import time

import pytest

from calendar_connect.api_clients import hash_key, new_api_key
from calendar_connect.connect_flow import connection_id_for
from calendar_connect.oauth_client import ProviderCallFailed, id_token_claims, token_set_fields
from calendar_connect.providers import load_providers
from tests.support.provider_server import unsigned_jwt


@pytest.fixture
def google(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLIENT_ID", "client-1")
    return load_providers()["google"]


def claims(**overrides):
    base = {
        "iss": "https://accounts.google.com",
        "aud": "client-1",
        "sub": "s",
        "nonce": "n",
        "exp": int(time.time()) + 600,
    }
    return unsigned_jwt({**base, **overrides})


def test_id_token_checks(google):
    assert id_token_claims(claims(), google, "n")["sub"] == "s"
    assert id_token_claims(claims(aud=["other", "client-1"]), google, "n")["sub"] == "s"
    for bad in (claims(iss="https://evil"), claims(aud="other"), claims(nonce="x"), claims(exp=1), "not.a.jwt!", "x"):
        with pytest.raises(ProviderCallFailed):
            id_token_claims(bad, google, "n")


def test_token_answer_fields():
    fields = token_set_fields({"access_token": "a", "expires_in": "120"}, now=1000)
    assert fields == {"access_token": "a", "refresh_token": None, "expires_at": 1120, "token_type": "Bearer"}
    with pytest.raises(ProviderCallFailed):
        token_set_fields({"access_token": "a", "expires_in": []}, now=0)


def test_api_keys_are_random_and_hashed():
    client_id, key = new_api_key()
    _, other = new_api_key()
    assert key.startswith(f"cc_{client_id}_") and key != other
    assert len(key.removeprefix(f"cc_{client_id}_")) == 43  # 256 bits, base64url (may itself hold "_")
    assert hash_key(key) != key and len(hash_key(key)) == 64


def test_connection_ids_are_stable_per_account_and_schedule():
    a = connection_id_for("c", "google", "s", "acct")
    assert a == connection_id_for("c", "google", "s", "acct")
    assert (
        len(
            {
                a,
                connection_id_for("c", "google", "s2", "acct"),
                connection_id_for("c2", "google", "s", "acct"),
                connection_id_for("c", "microsoft", "s", "acct"),
                connection_id_for("c", "google", "s", "b"),
            }
        )
        == 5
    )
