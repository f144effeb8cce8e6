"""Shared fixtures: the servers a test session owns (DynamoDB Local, a provider), and a deployment's environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calendar_connect import deployment
from calendar_connect.api_clients import register_client
from calendar_connect.dal import Storage
from local.dynamodb import DynamoDBLocal
from tests.support.environment import function_environment, write_providers_file
from tests.support.lambda_runtime import EXAMPLE_API_KEY, EXAMPLE_PREFIX
from tests.support.provider_server import ProviderServer

GOOGLE_CLIENT_ID = "1234567890-test.apps.googleusercontent.com"
MICROSOFT_CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
GENERIC_CLIENT_ID = "generic-client"


@pytest.fixture(scope="session")
def dynamodb() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as database:
        database.create_tables()
        yield database


@pytest.fixture(scope="session")
def provider_server() -> Iterator[ProviderServer]:
    server = ProviderServer().start()
    yield server
    server.stop()


def generic_provider(server: ProviderServer) -> dict[str, Any]:
    """A generic OIDC provider found by issuer discovery on the local provider server."""
    return {
        "name": "Generic OIDC",
        "calendar_type": "CALDAV",
        "issuer": server.generic_issuer(),
        "discovery": True,
        "scopes": ["openid", "email", "calendar"],
        "required_scopes": ["calendar"],
        "token_endpoint_auth_method": "client_secret_basic",
        "timeout_seconds": 300,
        "client_id": GENERIC_CLIENT_ID,
        "client_secret": {"env": "GENERIC_CLIENT_SECRET"},
    }


@pytest.fixture
def environment(
    dynamodb: DynamoDBLocal, provider_server: ProviderServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The functions' environment from template.yaml, pointed at this session's local servers.

    Google, Microsoft and a generic OIDC provider, their endpoints on the local provider server.
    """
    provider_server.reset()
    providers = write_providers_file(
        tmp_path / "providers.test.yaml", provider_server, {"generic": generic_provider(provider_server)}
    )
    env = function_environment(
        dynamodb_endpoint=dynamodb.endpoint,
        providers_file=providers,
        google_client_id=GOOGLE_CLIENT_ID,
        google_client_secret="google-test-client-secret",
        microsoft_client_id=MICROSOFT_CLIENT_ID,
        microsoft_client_secret="microsoft-test-client-secret",
        extra={"GENERIC_CLIENT_SECRET": "generic-test-client-secret"},
        log_level="INFO",
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    deployment.reset()
    yield env
    deployment.reset()


@pytest.fixture
def storage(environment: dict[str, str]) -> Storage:
    return deployment.current().storage


@pytest.fixture
def api_client(storage: Storage) -> tuple[Any, str]:
    """A fresh API client allowed to return to booking.example.com/calendar/, with its key."""
    return register_client(storage.api_clients, "test site", [EXAMPLE_PREFIX])


@pytest.fixture
def example_client(storage: Storage) -> Any:
    """The client whose key the files in events/ carry (registered once per DynamoDB session)."""
    existing = storage.api_clients.get("example01")
    if existing:
        return existing
    client, _ = register_client(storage.api_clients, "event files", [EXAMPLE_PREFIX], api_key=EXAMPLE_API_KEY)
    return client


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def log_lines() -> Iterator[Any]:
    """Every log line written during the test, formatted as in production (JSON, with extras)."""
    import io
    import logging

    from calendar_connect.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    targets = [logger._logger, logging.getLogger()]
    for target in targets:
        target.addHandler(handler)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    yield lambda: stream.getvalue()
    logging.getLogger().setLevel(root_level)
    for target in targets:
        target.removeHandler(handler)
