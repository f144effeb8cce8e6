"""One provider session per container (issue 13.1): built once per provider, rebuilt only when the credentials in
force change, the credentials read once per flow; one failure (ProviderUnusable) mapped at each call site in the
order the flow has always checked; and one reset that forgets every container cache."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from calendar_connect import credentials, deployment, oauth_client, provider_session
from calendar_connect.dialects import Dialect
from calendar_connect.provider_session import ProviderUnusable, Unusable
from calendar_connect.settings import get_settings
from tests.integration.test_callback import callback, connected, failed, start, tokens_for
from tests.support.lambda_runtime import invoke, load_event
from tests.support.provider_server import Answer

pytestmark = pytest.mark.usefixtures("example_client")
DISCOVERY = "/generic/.well-known/openid-configuration"


@pytest.fixture
def credential_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each read of the client-secrets secret's JSON, counted where the deployment reads it (the real reader)."""
    reads: list[str] = []
    real: Callable[[str], Any] = deployment.stored_credentials

    def counted(secrets_id: str) -> Any:
        reads.append(secrets_id)
        return real(secrets_id)

    monkeypatch.setattr(deployment, "stored_credentials", counted)
    yield reads


def test_the_session_is_built_once_per_container_and_provider(provider_server):
    # Given a container that used the generic provider (found by issuer discovery) twice
    here = deployment.current()
    first = here.oauth("generic")
    # Then it is one session, its endpoints discovered once, its client the one configured
    assert here.oauth("generic") is first
    assert len(provider_server.requests_to(DISCOVERY)) == 1
    assert first.provider.token_endpoint == provider_server.generic_issuer() + "/token"
    assert first.client.client_secret == "generic-test-client-secret"
    # And each provider has its own
    assert here.oauth("google") is not first and here.oauth("google") is here.oauth("google")


def test_a_rotated_secret_makes_a_new_session_without_discovering_again(provider_server, monkeypatch):
    here = deployment.current()
    before = here.oauth("generic")
    # When the client secret in force changes (here the environment's; the secret's reader keeps it 5 minutes)
    monkeypatch.setenv("GENERIC_CLIENT_SECRET", "rotated-generic-secret")
    after = here.oauth("generic")
    # Then the next use has a session with the new secret, and the issuer's metadata was not fetched again
    assert after is not before and after.client.client_secret == "rotated-generic-secret"
    assert after.provider == before.provider
    assert len(provider_server.requests_to(DISCOVERY)) == 1


def test_the_credentials_are_read_once_per_connect_flow(credential_reads, provider_server):
    # When a person connects: initiate, then the provider's redirect back
    attempt = start("google", Dialect.WIX)
    assert len(credential_reads) == 1
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    assert connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)
    # Then each request read the credentials in force once
    assert len(credential_reads) == 2


@pytest.mark.parametrize(
    ("provider_id", "reason"),
    [
        ("nobody", Unusable.UNKNOWN),
        ("apple", Unusable.NOT_OAUTH),
    ],
)
def test_one_failure_says_why_and_names_the_entry_when_there_is_one(provider_id, reason):
    with pytest.raises(ProviderUnusable) as raised:
        deployment.current().oauth(provider_id)
    assert raised.value.reason is reason
    assert (raised.value.provider is None) == (reason is Unusable.UNKNOWN)


def test_a_provider_without_a_client_is_not_configured_and_a_dead_issuer_fails_discovery(monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET")
    with pytest.raises(ProviderUnusable) as raised:
        deployment.current().oauth("google")
    assert raised.value.reason is Unusable.NOT_CONFIGURED
    # A generic provider whose issuer does not answer: nothing listens on the discard port
    dead = tmp_path / "dead-issuer.yaml"
    dead.write_text(yaml.safe_dump({"generic": {"issuer": "http://127.0.0.1:9/generic"}}))
    monkeypatch.setenv("PROVIDERS_FILE", f"{get_settings().providers_file},{dead}")
    deployment.reset()
    with pytest.raises(ProviderUnusable) as raised:
        deployment.current().oauth("generic")
    assert raised.value.reason is Unusable.DISCOVERY_FAILED and raised.value.provider is not None


def test_the_callback_still_reads_the_providers_answer_before_it_needs_the_client(monkeypatch, provider_server):
    # Given two attempts, and then Google's client removed from the deployment while the people are at Google
    denied, granted = start("google", Dialect.WIX), start("google", Dialect.WIX, schedule="schedule-43")
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET")
    deployment.reset()
    # When one person declines: the outcome says so, as the provider said it
    assert failed(callback({"state": denied.state, "error": "access_denied"}), Dialect.WIX) == (
        "reject",
        "access_denied",
    )
    # And the other's code is never redeemed: the provider cannot be used
    assert failed(callback({"state": granted.state, "code": "c"}), Dialect.WIX) == ("internal", "provider_error")
    assert provider_server.requests_to("/google/token") == []


def test_one_reset_forgets_every_container_cache(provider_server, tmp_path, monkeypatch):
    # Given a container that used everything it keeps: settings, providers (one read from this file), the generic
    # provider's session (its metadata discovered), the provider HTTP client, an encoded authorization URL, and the
    # secrets reader
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(yaml.safe_dump({"google": {"name": "Google, before"}}))
    monkeypatch.setenv("PROVIDERS_FILE", f"{get_settings().providers_file},{renamed}")
    deployment.reset()
    assert deployment.current().providers["google"].name == "Google, before"
    start("generic", Dialect.WIX)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    credentials.prime("arn:aws:secretsmanager:us-east-1:000000000000:secret:cc")
    settings, http = get_settings(), oauth_client.http_client()
    assert provider_session._query_template.cache_info().currsize > 0 and credentials._provider is not None
    assert len(provider_server.requests_to(DISCOVERY)) == 1
    # When the one reset runs, the provider file having changed meanwhile (same path)
    renamed.write_text(yaml.safe_dump({"google": {"name": "Google, after"}}))
    deployment.reset()
    # Then nothing of before is kept
    assert get_settings() is not settings
    assert credentials._provider is None
    assert oauth_client.http_client() is not http
    assert provider_session._query_template.cache_info().currsize == 0
    here = deployment.current()
    assert here.providers["google"].name == "Google, after"
    here.oauth("generic")
    assert len(provider_server.requests_to(DISCOVERY)) == 2


def test_priming_builds_no_session_and_reads_no_secret(credential_reads):
    # Given a container primed as before a SnapStart snapshot
    deployment.reset()
    deployment.prime()
    # Then no provider session exists and no client secret was read: none may be in a snapshot
    assert deployment.current()._sessions == {}
    assert credential_reads == []


def test_the_start_hop_of_a_provider_whose_client_was_removed_goes_home_with_the_failure(monkeypatch, provider_server):
    from tests.integration.test_browser_binding import hop

    # Given an attempt through the start hop, and Google's client removed before the person opens the link
    monkeypatch.setenv("BROWSER_BINDING", "true")
    deployment.reset()
    attempt = start("google", Dialect.WIX)
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET")
    deployment.reset()
    # When the browser opens it
    answer = hop(attempt.state)
    # Then it goes back to the website with the failure, never to Google with an unusable (empty) client id
    assert failed(answer, Dialect.WIX) == ("internal", "provider_error")


def test_a_refused_return_url_is_answered_before_any_call_to_the_provider(provider_server):
    # Given a provider found by issuer discovery, not yet discovered in this container
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps(
        {"providerId": "generic", "scheduleId": "staff-1", "redirectUrl": "https://elsewhere.example/back"}
    )
    # When a client asks to start with a return URL outside its prefixes
    answer = invoke("InitiateFunction", event)
    # Then it is the 403, and the provider's metadata was not fetched for it
    assert answer["statusCode"] == 403
    assert provider_server.requests_to(DISCOVERY) == []
