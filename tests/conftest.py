"""Shared fixtures: the servers a test session owns (DynamoDB Local, a provider), and a deployment's environment."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calendar_connect import deployment, oauth_client
from calendar_connect.api_clients import register_client
from calendar_connect.dal import Storage
from local.dynamodb import LOCAL_CREDENTIALS, DynamoDBLocal
from local.template import functions, load_template, resolve_environment
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


def providers_file(directory: Path, server: ProviderServer) -> Path:
    """Google, Microsoft and a generic OIDC provider, their endpoints on the local provider server."""
    base = server.base_url
    entries: dict[str, Any] = {
        "google": {
            "token_endpoint": f"{base}/google/token",
            "revocation_endpoint": f"{base}/google/revoke",
            "userinfo_endpoint": f"{base}/google/userinfo",
        },
        "microsoft": {"token_endpoint": f"{base}/microsoft/token", "userinfo_endpoint": f"{base}/microsoft/me"},
        "generic": {
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
        },
    }
    path = directory / "providers.test.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


@pytest.fixture
def environment(
    dynamodb: DynamoDBLocal, provider_server: ProviderServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The functions' environment from template.yaml, pointed at this session's local servers."""
    provider_server.reset()
    template = load_template()
    env: dict[str, str] = {}
    for function in functions(template).values():
        env.update(resolve_environment(function, {}))
    env.update(
        {
            "DYNAMODB_ENDPOINT": dynamodb.endpoint,
            "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": LOCAL_CREDENTIALS["region_name"],
            "AWS_REGION": LOCAL_CREDENTIALS["region_name"],
            "PUBLIC_BASE_URL": "https://calendar-connect.example.org",
            "LOCAL_TOKEN_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "TOKEN_KMS_KEY_ID": "",
            "PROVIDERS_FILE": str(providers_file(tmp_path, provider_server)),
            "GOOGLE_CLIENT_ID": "1234567890-test.apps.googleusercontent.com",
            "GOOGLE_CLIENT_SECRET": "google-test-client-secret",
            "MICROSOFT_CLIENT_ID": MICROSOFT_CLIENT_ID,
            "MICROSOFT_CLIENT_SECRET": "microsoft-test-client-secret",
            "GENERIC_CLIENT_SECRET": "generic-test-client-secret",
            "BROWSER_BINDING": "false",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    deployment.reset()
    oauth_client.reset_caches()
    yield env
    deployment.reset()
    oauth_client.reset_caches()


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
