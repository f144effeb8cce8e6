"""What the benchmark runs against: DynamoDB Local, the local token server, and a function's environment."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from local.dynamodb import LOCAL_CREDENTIALS, DynamoDBLocal
from local.template import ROOT, functions, load_template, resolve_environment
from tests.support.provider_server import ProviderServer

GOOGLE_CLIENT_ID = "1234567890-bench.apps.googleusercontent.com"
LAYER_PATH = ROOT / "layers" / "shared" / "python"


@dataclass
class Stack:
    dynamodb: DynamoDBLocal
    provider: ProviderServer
    env: dict[str, str]

    def child_env(self) -> dict[str, str]:
        """A fresh interpreter's environment: the functions' variables, the layer on the path as /opt/python."""
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")}
        return {**keep, **self.env, "PYTHONPATH": os.pathsep.join([str(LAYER_PATH), str(ROOT)])}


def _environment(dynamodb: DynamoDBLocal, provider: ProviderServer, directory: Path) -> dict[str, str]:
    """As tests/conftest.py: template.yaml's variables, pointed at the local servers; tracing and metrics off."""
    providers_file = directory / "providers.bench.yaml"
    base = provider.base_url
    providers_file.write_text(
        yaml.safe_dump(
            {
                "google": {
                    "token_endpoint": f"{base}/google/token",
                    "revocation_endpoint": f"{base}/google/revoke",
                    "userinfo_endpoint": f"{base}/google/userinfo",
                },
                "microsoft": {"token_endpoint": f"{base}/microsoft/token", "userinfo_endpoint": f"{base}/microsoft/me"},
            }
        )
    )
    env: dict[str, str] = {}
    for function in functions(load_template()).values():
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
            "PROVIDERS_FILE": str(providers_file),
            "GOOGLE_CLIENT_ID": GOOGLE_CLIENT_ID,
            "GOOGLE_CLIENT_SECRET": "google-bench-client-secret",
            "MICROSOFT_CLIENT_ID": "6731de76-14a6-49ae-97bc-6eba6914391e",
            "MICROSOFT_CLIENT_SECRET": "microsoft-bench-client-secret",
            "BROWSER_BINDING": "false",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    return env


@contextmanager
def local_stack() -> Iterator[Stack]:
    """Start DynamoDB Local (tables from template.yaml) and the token server; this process gets their environment."""
    with tempfile.TemporaryDirectory(prefix="cc-bench-") as directory, DynamoDBLocal() as dynamodb:
        dynamodb.create_tables()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per token request otherwise
        provider = ProviderServer().start()
        try:
            env = _environment(dynamodb, provider, Path(directory))
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                from calendar_connect import deployment, oauth_client

                deployment.reset()
                oauth_client.reset_caches()
                _register_event_client()
                yield Stack(dynamodb, provider, env)
            finally:
                os.environ.clear()
                os.environ.update(saved)
        finally:
            provider.stop()


def _register_event_client() -> None:
    """The API client whose key the files in events/ carry."""
    from calendar_connect import deployment
    from calendar_connect.api_clients import register_client
    from tests.support.lambda_runtime import EXAMPLE_API_KEY, EXAMPLE_PREFIX

    register_client(deployment.current().storage.api_clients, "bench", [EXAMPLE_PREFIX], api_key=EXAMPLE_API_KEY)
