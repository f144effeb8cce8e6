"""What one container builds once and every request reuses: settings, storage, providers, cipher."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

from . import credentials
from .credentials import ClientCredentials, resolve, stored_credentials
from .dal import Storage
from .oauth_client import ProviderConfigurationError
from .providers import Provider, get_providers
from .settings import Settings, get_settings
from .token_cipher import TokenCipher, cipher_from_settings


@dataclass
class Deployment:
    settings: Settings

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.settings)

    @cached_property
    def providers(self) -> dict[str, Provider]:
        return get_providers(self.settings.providers_file)

    @cached_property
    def cipher(self) -> TokenCipher:
        settings = self.settings
        timeouts = (settings.storage_connect_timeout, settings.storage_read_timeout)
        return cipher_from_settings(settings.token_kms_key_id, settings.local_token_key, timeouts)

    def credentials(self, provider: Provider) -> ClientCredentials | None:
        """The provider's OAuth client here; None: not configured (left out of the list, 428 at initiate)."""
        return resolve(provider, stored_credentials(self.settings.client_secrets_id))

    def provider(self, provider_id: str) -> Provider | None:
        """The provider's entry, its client id the one this deployment configures ("" where none)."""
        provider = self.providers.get(provider_id)
        if provider is None or not provider.connects_by_oauth:
            return provider
        found = self.credentials(provider)
        client_id = found.client_id if found else ""
        return provider if client_id == provider.client_id else provider.model_copy(update={"client_id": client_id})

    def client_secret(self, provider: Provider) -> str | None:
        found = self.credentials(provider)
        if found is None:
            raise ProviderConfigurationError(f"no OAuth client configured for {provider.id}")
        return found.client_secret

    def offered_providers(self) -> list[Provider]:
        """The providers list: every provider a client can use here (OAuth ones only with credentials)."""
        stored = stored_credentials(self.settings.client_secrets_id)
        return [p for p in self.providers.values() if not p.connects_by_oauth or resolve(p, stored) is not None]


_current: Deployment | None = None


def current() -> Deployment:
    global _current
    if _current is None:
        _current = Deployment(get_settings())
    return _current


def reset() -> None:
    """Forget the container's state (tests change the environment between cases)."""
    global _current
    _current = None
    get_settings.cache_clear()
    credentials.reset()


def prime() -> None:
    """Before a SnapStart snapshot: set up, as a first request would, what every restored copy may share, opening no
    connection and generating nothing unique: settings, the provider configuration, the DynamoDB client (its service
    model and each operation's first call: aws_priming), the token cipher (its KMS client and operations, no data key),
    the provider HTTP client (its TLS context), the Secrets Manager reader's client (no secret), every model's
    validators, and the modules a request imports on first use."""
    from pydantic import BaseModel

    from . import aws_priming, models, oauth_client

    here = current()
    _ = here.providers, here.storage  # cached properties: built by reading them
    here.cipher.prime()
    oauth_client.http_client()
    credentials.prime(here.settings.client_secrets_id)
    for model in vars(models).values():
        if isinstance(model, type) and issubclass(model, BaseModel) and model.__module__ == models.__name__:
            model.model_rebuild()
    # Last: an import after it (cryptography's, say) registers ABCs, which empties the isinstance caches it filled.
    aws_priming.prime(here.storage.client, aws_priming.storage_calls(here.settings))


def after_restore() -> None:
    """After a SnapStart restore: re-create what no two copies of one snapshot may share."""
    from . import oauth_client

    # The random module's state (aws_calls' backoff jitter, keep-alive jitter, X-Ray ids) would repeat in every copy.
    random.seed()
    here = _current
    if here is not None:
        made = vars(here)  # only what init made: a cached_property not yet read is not there
        if "storage" in made:
            here.storage.client.close()  # its pooled connections; the client and its model stay
        if "cipher" in made:
            here.cipher.renew_data_key()
    oauth_client.drop_connections()
    credentials.drop_connections()
