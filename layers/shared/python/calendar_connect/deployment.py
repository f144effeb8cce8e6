"""What one container builds once and every request reuses: settings, storage, providers, cipher."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .dal import Storage
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

    def provider(self, provider_id: str) -> Provider | None:
        return self.providers.get(provider_id)


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
