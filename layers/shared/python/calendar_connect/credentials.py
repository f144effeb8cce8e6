"""Each provider's OAuth client (id and secret) in this deployment, and so whether the provider is configured.

Two sources, the first that names a value wins:
- the one Secrets Manager secret (CLIENT_SECRETS_ID, AWS): JSON mapping a provider id (or the entry's
  `client_secret.secrets_manager_key`) to `{"client_id": "...", "client_secret": "..."}`; the older shape
  `{"google": "<client secret>"}` still gives the secret, the client id then comes from the entry;
- the provider's entry (providers.yaml, PROVIDERS_FILE; `${VAR}` reads the environment): `client_id`, and
  `client_secret: {env: VAR}`, which is how the local runner and a developer's shell configure providers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .providers import Provider

# The secret is read again at most every 5 minutes per container, so a rotation or a new provider lands soon.
SECRET_MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str | None = field(repr=False)  # None: the provider authenticates no client ("none")


class CredentialsUnreadable(Exception):
    """The client-secrets secret is unreachable, denied, missing, or not a JSON object; never carries its value."""


_provider: Any = None


def _secrets_provider() -> Any:
    """Powertools' Secrets Manager reader with short timeouts and one attempt (aws_calls): a hanging Secrets
    Manager costs one read timeout, not botocore's default minute."""
    global _provider
    if _provider is None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        from .aws_calls import client_config
        from .settings import get_settings

        settings = get_settings()
        _provider = SecretsProvider(
            boto_config=client_config(settings.storage_connect_timeout, settings.storage_read_timeout)
        )
    return _provider


def reset() -> None:
    """Forget the container's secrets reader and what it cached (deployment.reset)."""
    global _provider
    _provider = None


def prime(secrets_id: str) -> None:
    """Before a SnapStart snapshot: the secrets reader and its client, no secret read (none may be in the snapshot)."""
    if secrets_id:
        _secrets_provider()


def drop_connections() -> None:
    """After a SnapStart restore: close the reader's pooled connections (the client and its model stay)."""
    if _provider is not None:
        _provider.client.close()


def stored_credentials(secrets_id: str) -> Mapping[str, Any]:
    """The client-secrets secret's JSON (cached by Powertools); empty where the deployment names none."""
    if not secrets_id:
        return {}
    from aws_lambda_powertools.utilities import parameters

    try:
        values = _secrets_provider().get(secrets_id, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as error:
        # Unreachable, denied, missing, or not JSON: said without the value.
        raise CredentialsUnreadable("the client-secrets secret could not be read") from error
    if not isinstance(values, Mapping):
        raise CredentialsUnreadable("the client-secrets secret is not a JSON object of provider ids")
    return values


def resolve(
    provider: Provider, stored: Mapping[str, Any], environ: Mapping[str, str] = os.environ
) -> ClientCredentials | None:
    """The provider's OAuth client, or None when it has none here: the one test of "configured"."""
    entry = stored.get(provider.client_secret.secrets_manager_key or provider.id)
    if isinstance(entry, Mapping):
        client_id = str(entry.get("client_id") or "") or provider.client_id
        secret = str(entry.get("client_secret") or "") or None
    else:
        client_id = provider.client_id
        secret = str(entry) if isinstance(entry, str | int) and str(entry) else None
    if secret is None and provider.client_secret.env:
        secret = environ.get(provider.client_secret.env) or None
    if not client_id or (secret is None and provider.token_endpoint_auth_method != "none"):
        return None
    return ClientCredentials(client_id, secret)
