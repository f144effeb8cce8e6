"""The functions' environment for running them in this process: template.yaml's variables, pointed at local servers.

The tests (tests/conftest.py) and the benchmark (bench/stack.py) both run the handlers against DynamoDB Local
and the local token server (tests/support/provider_server.py); what differs between them is a parameter here.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from local.dynamodb import LOCAL_CREDENTIALS
from local.template import functions, load_template, resolve_environment
from tests.support.provider_server import ProviderServer

PUBLIC_BASE_URL = "https://calendar-connect.example.org"


def write_providers_file(path: Path, server: ProviderServer, more: Mapping[str, Any] | None = None) -> Path:
    """A PROVIDERS_FILE: Google's and Microsoft's endpoints on the local token server, then `more` providers."""
    base = server.base_url
    entries: dict[str, Any] = {
        "google": {
            "token_endpoint": f"{base}/google/token",
            "revocation_endpoint": f"{base}/google/revoke",
            "userinfo_endpoint": f"{base}/google/userinfo",
        },
        "microsoft": {"token_endpoint": f"{base}/microsoft/token", "userinfo_endpoint": f"{base}/microsoft/me"},
        **(more or {}),
    }
    path.write_text(yaml.safe_dump(entries))
    return path


def function_environment(
    *,
    dynamodb_endpoint: str,
    providers_file: Path,
    google_client_id: str,
    google_client_secret: str,
    microsoft_client_id: str,
    microsoft_client_secret: str,
    log_level: str,
    extra: Mapping[str, str] | None = None,
    public_base_url: str = PUBLIC_BASE_URL,
    browser_binding: bool = False,
    tracing: bool = False,
    metrics: bool = False,
) -> dict[str, str]:
    """Every function's variables from template.yaml, then DynamoDB Local's endpoint and credentials, a fresh
    local token key (no KMS), the providers file, the OAuth clients, and `extra` (e.g. another client's secret)."""
    env: dict[str, str] = {}
    for function in functions(load_template()).values():
        env.update(resolve_environment(function, {}))
    env.update(
        {
            "DYNAMODB_ENDPOINT": dynamodb_endpoint,
            "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": LOCAL_CREDENTIALS["region_name"],
            "AWS_REGION": LOCAL_CREDENTIALS["region_name"],
            "PUBLIC_BASE_URL": public_base_url,
            "LOCAL_TOKEN_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "TOKEN_KMS_KEY_ID": "",
            "PROVIDERS_FILE": str(providers_file),
            "GOOGLE_CLIENT_ID": google_client_id,
            "GOOGLE_CLIENT_SECRET": google_client_secret,
            "MICROSOFT_CLIENT_ID": microsoft_client_id,
            "MICROSOFT_CLIENT_SECRET": microsoft_client_secret,
            **(extra or {}),
            "BROWSER_BINDING": "true" if browser_binding else "false",
            "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
            "POWERTOOLS_METRICS_DISABLED": "false" if metrics else "true",
            "POWERTOOLS_LOG_LEVEL": log_level,
        }
    )
    return env
