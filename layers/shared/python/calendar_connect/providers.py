"""Providers are configuration: one YAML entry each, read by one generic OAuth flow."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import AuthorizationFailure

BUILT_IN_FILE = Path(__file__).with_name("providers.yaml")
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_KEEPALIVE_MARGIN = 0.1  # of keepalive_seconds: kept for retries, and again for jitter
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ClientSecretSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    env: str | None = None  # an environment variable (the local runner)
    # The key of this provider's client in the secret named by CLIENT_SECRETS_ID (AWS); default: the provider id.
    secrets_manager_key: str | None = None


class Provider(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    calendar_type: str
    calendar_source: str | None = None
    connect_methods: list[Literal["OAUTH", "CREDENTIALS"]] = ["OAUTH"]
    issuer: str | None = None
    # Fill missing endpoints from the issuer's /.well-known/openid-configuration.
    discovery: bool = False
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    scopes: list[str] = []
    required_scopes: list[str] = []
    granted_scope_prefixes: list[str] = []
    authorization_params: dict[str, str] = {}
    token_endpoint_auth_method: Literal["client_secret_post", "client_secret_basic", "none"] = "client_secret_post"
    pkce: bool = True
    timeout_seconds: int = Field(default=600, ge=60, le=3600)
    # The keep-alive job exercises the refresh token at least this often (Google and Microsoft expire unused ones).
    keepalive_seconds: int = Field(default=604800, ge=1)
    client_id: str = ""  # usually from the secret or ${VAR}; a provider session carries the one in force
    client_secret: ClientSecretSource = ClientSecretSource()
    account_id_claims: list[str] = ["sub"]
    # Fields naming the account in the userinfo answer, when the token response has no ID token.
    userinfo_account_id_fields: list[str] = ["sub"]
    email_claims: list[str] = ["email"]
    error_code_pattern: str | None = None
    error_codes: dict[str, tuple[str, str]] = {}

    @model_validator(mode="after")
    def _oauth_needs_endpoints(self) -> Provider:
        if self.connects_by_oauth and not self.discovery:
            missing = [n for n in ("authorization_endpoint", "token_endpoint") if not getattr(self, n)]
            if missing:
                raise ValueError(f"provider {self.id}: {', '.join(missing)} required (or discovery: true)")
        if self.discovery and not self.issuer:
            raise ValueError(f"provider {self.id}: discovery needs an issuer")
        return self

    @property
    def connects_by_oauth(self) -> bool:
        return "OAUTH" in self.connect_methods

    @property
    def uses_openid(self) -> bool:
        return "openid" in self.scopes

    @property
    def may_revoke(self) -> bool:
        """Whether revocation can be offered at all: an endpoint in the entry, or one discovery may find."""
        return bool(self.revocation_endpoint or self.discovery)

    def issuer_matches(self, issuer: str, claims: dict | None = None) -> bool:
        """RFC 9207 / ID token `iss` check; `{claim}` placeholders (Microsoft's `{tid}`) match that claim."""
        if not self.issuer:
            return False
        if "{" not in self.issuer:
            return issuer == self.issuer
        pattern = re.escape(self.issuer)
        for name in re.findall(r"\\\{(\w+)\\\}", pattern):
            value = (claims or {}).get(name)
            replacement = re.escape(str(value)) if value else r"[^/]+"
            pattern = pattern.replace(rf"\{{{name}\}}", replacement)
        return re.fullmatch(pattern, issuer) is not None

    def next_keepalive_at(self, used_at: int) -> int:
        """When a refresh token used at `used_at` must next be exercised: 80-90% of keepalive_seconds later.

        The last 10% leaves room for the next runs to retry a transient failure before the provider's limit;
        the random 10% before it spreads a cohort connected together over many runs."""
        window = self.keepalive_seconds * _KEEPALIVE_MARGIN
        return used_at + int(self.keepalive_seconds - 2 * window + secrets.randbelow(int(window) + 1))

    def granted_scopes(self, scope: str) -> list[str]:
        granted = []
        for item in scope.split():
            for prefix in self.granted_scope_prefixes:
                if item.startswith(prefix):
                    item = item[len(prefix) :]
                    break
            granted.append(item)
        return granted

    def missing_required_scopes(self, granted: list[str]) -> list[str]:
        have = {s.lower() for s in granted}
        return [s for s in self.required_scopes if s.lower() not in have]

    def map_authorization_error(self, error: str, description: str) -> AuthorizationFailure:
        """The contract's table from a provider's `error` / `error_description` to error and reason."""
        codes = re.findall(self.error_code_pattern, description) if self.error_code_pattern else []
        for code in codes:
            if code in self.error_codes:
                outcome, reason = self.error_codes[code]
                return AuthorizationFailure(outcome, reason)
        if error == "access_denied" and not codes:
            return AuthorizationFailure("reject", "access_denied")
        if error == "consent_required":
            return AuthorizationFailure("reject", "consent_required")
        return AuthorizationFailure("internal", "provider_error")


def _expand(value: object) -> object:
    if isinstance(value, str):
        return _ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def _read(path: Path) -> dict[str, dict]:
    # libyaml's safe loader where PyYAML has it (its wheels do): parses the built-in file ~10x faster.
    document = yaml.load(path.read_text(), Loader=_SAFE_LOADER) or {}  # noqa: S506 - a safe loader
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise ValueError(f"{path}: expected a mapping of provider id to provider entry")
    return document


def load_providers(extra_files: str = "") -> dict[str, Provider]:
    entries = _read(BUILT_IN_FILE)
    for name in filter(None, (p.strip() for p in extra_files.split(","))):
        for provider_id, entry in _read(Path(name)).items():
            entries[provider_id] = {**entries.get(provider_id, {}), **entry}
    return {pid: Provider.model_validate({**_expand(entry), "id": pid}) for pid, entry in entries.items()}  # type: ignore[dict-item]
