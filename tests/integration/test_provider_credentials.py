"""Whether a provider is configured is decided in one place (credentials.resolve): a provider without an OAuth
client in this deployment is left out of the providers list and answers 428 PROVIDER_NOT_CONFIGURED (issue 11.4);
client ids and secrets come from the one Secrets Manager secret or from the environment (issue 12.5)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from calendar_connect import deployment
from tests.support.lambda_runtime import invoke, json_body, load_event
from tests.support.secrets_manager import SecretsManagerEndpoint

pytestmark = pytest.mark.usefixtures("example_client")
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:calendar-connect-clients-AbCdEf"


def pending_count(dynamodb: Any) -> int:
    return dynamodb.client().scan(TableName="PendingAuthorizationsTable", Select="COUNT", ConsistentRead=True)["Count"]


def listed() -> set[str]:
    answer = invoke("InitiateFunction", load_event("providers-list.json"))
    assert answer["statusCode"] == 200
    return {p["providerId"] for p in json_body(answer)["providers"]}


def wix_initiate(provider_id: str) -> dict[str, Any]:
    event = load_event("initiate-wix.json")
    body = json.loads(event["body"])
    event["body"] = json.dumps({**body, "providerId": provider_id})
    return invoke("InitiateFunction", event)


def assert_not_configured(answer: dict[str, Any]) -> None:
    assert answer["statusCode"] == 428, answer["body"]
    body = json_body(answer)
    assert body["details"]["applicationError"]["code"] == "PROVIDER_NOT_CONFIGURED"
    assert "client_id=" not in answer["body"]


@pytest.fixture
def without_env_clients(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The template's deployment as it was: Google and Microsoft with no client id and no secret."""
    for name in ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "MICROSOFT_CLIENT_ID", "MICROSOFT_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    deployment.reset()


@pytest.fixture
def secrets_manager(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsManagerEndpoint]:
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    endpoint = SecretsManagerEndpoint().start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.endpoint)
    monkeypatch.setenv("CLIENT_SECRETS_ID", SECRET_ARN)
    DEFAULT_PROVIDERS.pop("secrets", None)  # its boto3 client was built for another endpoint
    parameters.clear_caches()
    deployment.reset()
    yield endpoint
    DEFAULT_PROVIDERS.pop("secrets", None)
    parameters.clear_caches()
    endpoint.stop()


def test_providers_without_a_client_are_not_listed(without_env_clients):
    # Given Google and Microsoft without client ids; When the providers are listed
    providers = listed()
    # Then only those that can work are: the credentials-only Apple and the configured generic provider
    assert providers == {"apple", "generic"}


def test_initiate_for_a_provider_without_a_client_is_428_and_stores_nothing(without_env_clients, dynamodb):
    before = pending_count(dynamodb)
    # Wix dialect, by provider id
    assert_not_configured(wix_initiate("google"))
    # TeamUp dialect, by calendar_source (MSFT)
    assert_not_configured(invoke("InitiateFunction", load_event("initiate-teamup-json.json")))
    assert pending_count(dynamodb) == before


def test_a_client_id_without_its_secret_is_not_configured(environment, monkeypatch):
    # Given Google's client id but no client secret anywhere
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET")
    deployment.reset()
    # Then Google is not offered (the flow could never finish) and initiate says why
    assert "google" not in listed()
    assert "microsoft" in listed()
    assert_not_configured(wix_initiate("google"))


def test_client_id_and_secret_from_the_secrets_manager_secret(without_env_clients, secrets_manager, provider_server):
    # Given the one secret naming Google's client (and nothing in the environment)
    secrets_manager.secrets[SECRET_ARN] = json.dumps(
        {"google": {"client_id": "from-secret.apps.googleusercontent.com", "client_secret": "s3cr3t-from-sm"}}
    )
    # Then Google is listed and its authorization URL carries that client id
    assert listed() == {"apple", "generic", "google"}
    answer = wix_initiate("google")
    assert answer["statusCode"] == 200, answer["body"]
    url = json_body(answer)["oauthUrl"]
    assert parse_qs(urlsplit(url).query)["client_id"] == ["from-secret.apps.googleusercontent.com"]
    # And the secret is read once per container, not per request
    assert secrets_manager.requests == ["secretsmanager.GetSecretValue"]
    # And the client secret it names is the one the token endpoint will receive
    google = deployment.current().oauth("google")
    assert google.client.client_secret == "s3cr3t-from-sm"
    assert "s3cr3t" not in repr(google)


def test_the_older_secret_shape_still_gives_the_client_secret(without_env_clients, secrets_manager, monkeypatch):
    # Given the secret in its first shape, provider id -> client secret, and the client id from the environment
    secrets_manager.secrets[SECRET_ARN] = json.dumps({"google": "older-shape-secret"})
    monkeypatch.setenv("GOOGLE_CLIENT_ID", "env-client.apps.googleusercontent.com")
    deployment.reset()
    google = deployment.current().oauth("google")
    assert google.provider.client_id == "env-client.apps.googleusercontent.com"
    assert google.client.client_secret == "older-shape-secret"
    # But without a client id anywhere, that shape alone does not configure Microsoft
    secrets_manager.secrets[SECRET_ARN] = json.dumps({"google": "older-shape-secret", "microsoft": "ms-secret"})
    assert "microsoft" not in listed()


def test_an_unreadable_secret_is_503_not_500(without_env_clients, secrets_manager):
    # Given a deployment whose secret does not exist (or cannot be read)
    answer = wix_initiate("google")
    assert answer["statusCode"] == 503, answer["body"]
    assert json_body(answer)["details"]["applicationError"]["code"] == "UNAVAILABLE"
    assert invoke("InitiateFunction", load_event("providers-list.json"))["statusCode"] == 503
