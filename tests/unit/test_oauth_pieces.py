"""Pure pieces of the OAuth flow: ID token checks, token answers, API keys."""

from __future__ import annotations

import time

import pytest

from calendar_connect.api_clients import new_api_key
from calendar_connect.connect_flow import connection_id_for
from calendar_connect.oauth_client import ProviderCallFailed, id_token_claims, token_set_fields
from calendar_connect.providers import load_providers
from calendar_connect.secret_hashes import hash_secret
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
    assert hash_secret(key) != key and len(hash_secret(key)) == 64


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


@pytest.mark.parametrize(
    ("endpoint", "extra", "verifier", "nonce"),
    [
        (
            "https://accounts.example.com/o/oauth2/v2/auth",
            {"access_type": "offline", "prompt": "consent"},
            "v" * 64,
            "n1",
        ),
        ("https://login.example.com/common/oauth2/v2.0/authorize?p=b2c_1 signin&x=", {}, None, None),
        # A provider entry may override a standard parameter: it keeps its place, with the entry's value.
        ("https://idp.example.com/auth", {"scope": "openid calendar", "response_mode": "query"}, "w" * 43, None),
    ],
)
def test_authorization_urls_are_encoded_as_a_whole_url_would_be(google, endpoint, extra, verifier, nonce):
    # Given a provider whose URL's fixed part is encoded once and cached, and two attempts with it
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

    from calendar_connect.dialects import Dialect
    from calendar_connect.provider_session import authorization_params, authorization_url
    from calendar_connect.records import PendingAuthorization

    provider = google.model_copy(
        update={"authorization_endpoint": endpoint, "authorization_params": extra, "client_id": "id/with space+&"}
    )
    for state in ("first-state_AZ-09", "second/state+?&="):
        pending = PendingAuthorization(
            stateHash="h",
            providerId=provider.id,
            clientId="c",
            scheduleId="s",
            returnUrl="https://booking.example.com/x",
            dialect=Dialect.WIX,
            redirectUri="https://cc.example.org/oauth2/callback?a=b c",
            codeVerifier=verifier,
            nonce=nonce,
            createdAt=1,
            expiresAt=2,
        )
        # When its URL is built
        url = authorization_url(provider, pending, state)
        # Then it is exactly the endpoint's own query, then every parameter in order, each encoded, as when the
        # whole URL was encoded per request
        params = authorization_params(provider, pending, state)
        assert list(params)[:5] == ["response_type", "client_id", "redirect_uri", "scope", "state"]
        assert ("code_challenge" in params) == bool(verifier) and params.get("nonce") == nonce
        assert {k: params[k] for k in extra} == extra
        parts = urlsplit(endpoint)
        query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
        expected = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), ""))
        assert url == expected
