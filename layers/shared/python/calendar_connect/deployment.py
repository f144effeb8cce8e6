"""What one container builds once and every request reuses: settings, storage, providers and their sessions, cipher.

`reset()` forgets all of it, and every per-container cache of the layer's that depends on the settings or
the environment."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import credentials, oauth_client, provider_session
from .credentials import ClientCredentials, CredentialsUnreadable, resolve, stored_credentials
from .dal import Storage
from .provider_session import ProviderSession, ProviderUnusable, Unusable, open_session
from .providers import Provider, load_providers
from .settings import Settings, get_settings
from .token_cipher import TokenCipher, cipher_from_settings


@dataclass
class Deployment:
    settings: Settings
    # One per provider, built on first use (never before a SnapStart snapshot: each holds a client secret).
    _sessions: dict[str, ProviderSession] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.settings)

    @cached_property
    def providers(self) -> dict[str, Provider]:
        return load_providers(self.settings.providers_file)

    @cached_property
    def cipher(self) -> TokenCipher:
        settings = self.settings
        timeouts = (settings.storage_connect_timeout, settings.storage_read_timeout)
        return cipher_from_settings(settings.token_kms_key_id, settings.local_token_key, timeouts)

    def oauth(self, provider_id: str) -> ProviderSession:
        """The provider's session, or ProviderUnusable saying why there is none, checked in this order: unknown,
        not OAuth, credentials unreadable, not configured (no OAuth client here), discovery failed."""
        return self.session(*self.oauth_client(provider_id))

    def oauth_client(self, provider_id: str) -> tuple[Provider, ClientCredentials]:
        """The provider's entry and its OAuth client in force, without any network call to the provider: the first
        four of oauth()'s checks, for a caller with a check of its own to make before discovery.

        The credentials in force are read on every call (Powertools keeps them 5 minutes), once per flow."""
        entry = self.providers.get(provider_id)
        if entry is None:
            raise ProviderUnusable(Unusable.UNKNOWN, provider_id)
        if not entry.connects_by_oauth:
            raise ProviderUnusable(Unusable.NOT_OAUTH, provider_id, entry)
        client = resolve(entry, self._stored_credentials(entry))
        if client is None:
            raise ProviderUnusable(Unusable.NOT_CONFIGURED, provider_id, entry)
        return entry, client

    def session(self, entry: Provider, client: ClientCredentials) -> ProviderSession:
        """The entry's session with this client: built (discovery, once per container) only when there is none or
        the client differs from its own, so a rotated secret lands as soon as it is read."""
        session = self._sessions.get(entry.id)
        if session is None or session.client != client:
            session = self._sessions[entry.id] = open_session(entry, client)
        return session

    def _stored_credentials(self, entry: Provider | None = None) -> Mapping[str, Any]:
        try:
            return stored_credentials(self.settings.client_secrets_id)
        except CredentialsUnreadable as error:
            raise ProviderUnusable(Unusable.CREDENTIALS_UNREADABLE, entry.id if entry else None, entry) from error

    def offered_providers(self) -> list[Provider]:
        """The providers list: every provider a client can use here (OAuth ones only with credentials);
        ProviderUnusable(CREDENTIALS_UNREADABLE) when the client-secrets secret cannot be read."""
        stored = self._stored_credentials()
        return [p for p in self.providers.values() if not p.connects_by_oauth or resolve(p, stored) is not None]


_current: Deployment | None = None


def current() -> Deployment:
    global _current
    if _current is None:
        _current = Deployment(get_settings())
    return _current


def reset() -> None:
    """Forget every container cache that depends on settings or the environment (tests and the bench change it between
    cases): the deployment with its providers and sessions, the settings, the secrets reader and what it read, the
    provider HTTP client and discovered metadata, the encoded authorization URLs. The TLS context (certificates only)
    and the webhook sender's client (fixed settings) stay."""
    global _current
    _current = None
    get_settings.cache_clear()
    credentials.reset()
    oauth_client.reset()
    provider_session.reset()


def prime() -> None:
    """Before a SnapStart snapshot: set up, as a first request would, what every restored copy may share, opening no
    connection and generating nothing unique: settings, the provider configuration, the DynamoDB client (its service
    model and each operation's first call: aws_priming), the token cipher (its KMS client and operations, no data key),
    the provider HTTP client (its TLS context), the Secrets Manager reader's client (no secret), every model's
    validators, and the modules a request imports on first use. No provider session: each holds a client secret,
    which no snapshot may."""
    from pydantic import BaseModel

    from . import api_models, aws_priming, records

    here = current()
    _ = here.providers, here.storage  # cached properties: built by reading them
    here.cipher.prime()
    oauth_client.http_client()
    credentials.prime(here.settings.client_secrets_id)
    for module in (records, api_models):
        for model in vars(module).values():
            if isinstance(model, type) and issubclass(model, BaseModel) and model.__module__ == module.__name__:
                model.model_rebuild()
    # Last: an import after it (cryptography's, say) registers ABCs, which empties the isinstance caches it filled.
    aws_priming.prime(here.storage.client, aws_priming.storage_calls(here.settings))


def after_restore() -> None:
    """After a SnapStart restore: re-create what no two copies of one snapshot may share."""
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
