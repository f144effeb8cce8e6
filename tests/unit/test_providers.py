"""Providers as configuration: built-ins, overrides, error mapping, issuer matching, scopes."""

from __future__ import annotations

import pytest

from calendar_connect.providers import load_providers


@pytest.fixture
def providers(monkeypatch):
    monkeypatch.delenv("MICROSOFT_TENANT", raising=False)
    return load_providers()


def test_built_ins(providers):
    assert set(providers) == {"google", "microsoft", "apple"}
    google, microsoft, apple = providers["google"], providers["microsoft"], providers["apple"]
    assert google.revocation_endpoint == "https://oauth2.googleapis.com/revoke"
    assert google.required_scopes == ["https://www.googleapis.com/auth/calendar"]
    assert microsoft.revocation_endpoint is None
    assert microsoft.authorization_endpoint == "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    assert microsoft.authorization_params == {"prompt": "select_account"}
    assert not apple.connects_by_oauth


def test_a_file_overrides_fields_and_adds_providers(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_ID", "acme-client")
    extra = tmp_path / "providers.yaml"
    extra.write_text(
        "google:\n  timeout_seconds: 120\n"
        "acme:\n  name: Acme\n  calendar_type: ACME\n  issuer: https://id.acme.test\n  discovery: true\n"
        "  client_id: ${ACME_ID}\n  pkce: false\n"
    )
    providers = load_providers(str(extra))
    assert providers["google"].timeout_seconds == 120
    assert providers["google"].token_endpoint == "https://oauth2.googleapis.com/token"  # untouched fields kept
    assert providers["acme"].client_id == "acme-client"
    assert providers["acme"].pkce is False


def test_an_entry_without_endpoints_or_discovery_is_refused(tmp_path):
    extra = tmp_path / "bad.yaml"
    extra.write_text("broken:\n  name: B\n  calendar_type: X\n")
    with pytest.raises(ValueError, match="authorization_endpoint"):
        load_providers(str(extra))


@pytest.mark.parametrize(
    ("error", "description", "expected"),
    [
        ("access_denied", "", ("reject", "access_denied")),
        ("access_denied", "AADSTS65004: declined", ("reject", "access_denied")),
        ("access_denied", "AADSTS99999: unknown", ("internal", "provider_error")),
        ("consent_required", "AADSTS65002", ("reject", "consent_required")),
        ("consent_required", "AADSTS65001: needs admin", ("unsupported", "admin_consent_required")),
        ("invalid_request", "AADSTS50020: guest", ("unsupported", "account_type_not_supported")),
        ("temporarily_unavailable", "", ("internal", "provider_error")),
    ],
)
def test_microsoft_error_mapping(providers, error, description, expected):
    failure = providers["microsoft"].map_authorization_error(error, description)
    assert (failure.error, failure.reason) == expected


def test_issuer_matching(providers):
    google, microsoft = providers["google"], providers["microsoft"]
    assert google.issuer_matches("https://accounts.google.com")
    assert not google.issuer_matches("https://accounts.google.com.evil")
    tid = "9188040d-6c67-4c5b-b112-36a304b66dad"
    assert microsoft.issuer_matches(f"https://login.microsoftonline.com/{tid}/v2.0", {"tid": tid})
    assert not microsoft.issuer_matches(f"https://login.microsoftonline.com/{tid}/v2.0", {"tid": "other"})
    assert not microsoft.issuer_matches("https://login.microsoftonline.com/a/b/v2.0")


def test_granted_scopes(providers):
    microsoft = providers["microsoft"]
    granted = microsoft.granted_scopes("https://graph.microsoft.com/calendars.readwrite openid")
    assert microsoft.missing_required_scopes(granted) == []
    assert microsoft.missing_required_scopes(microsoft.granted_scopes("Calendars.Read openid")) == [
        "Calendars.ReadWrite"
    ]


def test_credentials_resolve_in_one_place(providers):
    from calendar_connect.credentials import resolve

    google, apple = providers["google"], providers["apple"]
    # The secret's current shape: client id and secret together
    found = resolve(google, {"google": {"client_id": "id-1", "client_secret": "s-1"}}, environ={})
    assert (found.client_id, found.client_secret) == ("id-1", "s-1")
    assert "s-1" not in repr(found)
    # Its first shape: the secret only; the client id from the entry (or nothing: not configured)
    assert resolve(google, {"google": "s-2"}, environ={}) is None
    with_id = google.model_copy(update={"client_id": "id-3"})
    assert resolve(with_id, {"google": "s-2"}, environ={}).client_secret == "s-2"
    # The environment, as the local runner configures providers
    assert resolve(with_id, {}, environ={"GOOGLE_CLIENT_SECRET": "s-4"}).client_secret == "s-4"
    # A client id alone, or nothing, is not configured
    assert resolve(with_id, {}, environ={}) is None
    assert resolve(google, {"google": {"client_secret": "s-5"}}, environ={}) is None
    # A public client ("none") needs no secret
    public = with_id.model_copy(update={"token_endpoint_auth_method": "none"})
    assert resolve(public, {}, environ={}).client_secret is None
    assert resolve(apple, {}, environ={}) is None  # no OAuth client; the list offers it for its credentials


def test_keepalive_defaults_to_a_week_and_a_file_can_change_it(tmp_path, providers):
    # Given the built-ins and a deployment file that shortens one provider's keep-alive
    extra = tmp_path / "providers.yaml"
    extra.write_text("google:\n  keepalive_seconds: 86400\n")
    # Then every built-in keeps its refresh token alive weekly unless told otherwise
    assert {p.keepalive_seconds for p in providers.values()} == {604800}
    assert load_providers(str(extra))["google"].keepalive_seconds == 86400


def test_a_keepalive_of_zero_is_refused(tmp_path):
    extra = tmp_path / "providers.yaml"
    extra.write_text("google:\n  keepalive_seconds: 0\n")
    with pytest.raises(ValueError, match="keepalive_seconds"):
        load_providers(str(extra))


def test_the_next_keepalive_falls_between_80_and_90_percent_and_is_spread(providers):
    # Given a week-long keep-alive; When many connections used at the same second are scheduled
    google = providers["google"]
    due = [google.next_keepalive_at(1_000_000) - 1_000_000 for _ in range(200)]
    # Then each comes due before the provider's limit with a tenth of it left for retries, and they do not
    # all come due in the same hourly run
    assert all(0.8 * 604800 <= d <= 0.9 * 604800 for d in due)
    assert len({d // 3600 for d in due}) > 10
