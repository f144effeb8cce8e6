"""One provider as this container uses it: entry, discovered endpoints and OAuth client resolved once, and the OAuth
calls made with them (authorization URL, code exchange, account identification, refresh, revocation)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from . import oauth_client
from .credentials import ClientCredentials
from .oauth_client import ProviderCallFailed
from .observability import logger
from .providers import Provider
from .records import PendingAuthorization, TokenSet


class Unusable(Enum):
    """Why a provider cannot be used here, in the order Deployment.oauth finds out."""

    UNKNOWN = "unknown provider"
    NOT_OAUTH = "does not connect by OAuth"
    CREDENTIALS_UNREADABLE = "the client-secrets secret could not be read"
    NOT_CONFIGURED = "no OAuth client configured here"
    DISCOVERY_FAILED = "the issuer's metadata could not be fetched"


class ProviderUnusable(Exception):
    """The one way of failing to get a provider session. `provider` is the entry, when the id names one."""

    def __init__(self, reason: Unusable, provider_id: str | None = None, provider: Provider | None = None) -> None:
        super().__init__(f"{provider_id or 'providers'}: {reason.value}")
        self.reason = reason
        self.provider_id = provider_id
        self.provider = provider


def open_session(entry: Provider, client: ClientCredentials) -> ProviderSession:
    """The entry's missing endpoints from its issuer's metadata (fetched once per container), its client id the one
    in force; DISCOVERY_FAILED when the metadata cannot be had."""
    try:
        provider = oauth_client.with_discovered_endpoints(entry)
    except oauth_client.DiscoveryFailed as error:
        raise ProviderUnusable(Unusable.DISCOVERY_FAILED, entry.id, entry) from error
    if provider.client_id != client.client_id:
        provider = provider.model_copy(update={"client_id": client.client_id})
    return ProviderSession(provider, client)


@dataclass(frozen=True)
class ProviderSession:
    """A usable provider. A call that reaches the provider fails one way: ProviderCallFailed (revocation: False)."""

    provider: Provider  # the entry, with the client id in force and its endpoints complete
    client: ClientCredentials  # Deployment.oauth compares it with the credentials in force: a rotation makes a new one

    @property
    def _secret(self) -> str | None:
        return self.client.client_secret

    @property
    def revokes(self) -> bool:
        return bool(self.provider.revocation_endpoint)

    def authorization_url(self, pending: PendingAuthorization, state: str) -> str:
        return authorization_url(self.provider, pending, state)

    def exchange_code(self, code: str, pending: PendingAuthorization, now: int) -> tuple[TokenSet, dict[str, Any]]:
        """The attempt's code for tokens, and the token endpoint's whole answer (ID token, granted scope)."""
        provider, secret = self.provider, self._secret
        answer = oauth_client.exchange_code(provider, secret, code, pending.redirectUri, pending.codeVerifier)
        return TokenSet(**oauth_client.token_set_fields(answer, now)), answer

    def granted_scopes(self, answer: dict[str, Any], redirect_scope: str | None) -> list[str]:
        """RFC 6749 5.1: the token answer's scope, else the redirect's; neither: the scopes asked for."""
        scope = answer.get("scope") if isinstance(answer.get("scope"), str) else redirect_scope
        return self.provider.granted_scopes(scope) if scope is not None else list(self.provider.scopes)

    def identify(self, answer: dict[str, Any], tokens: TokenSet, nonce: str | None) -> tuple[str, str | None]:
        """The external account and its e-mail: ID token claims when there is one, else the userinfo endpoint.

        An ID token without an e-mail claim leaves the e-mail to userinfo (OIDC Core 5.4), best effort.
        """
        provider = self.provider
        id_token = answer.get("id_token")
        from_id_token = isinstance(id_token, str) and bool(id_token)
        if isinstance(id_token, str) and id_token:
            claims = oauth_client.id_token_claims(id_token, provider, nonce)
            id_fields = provider.account_id_claims
        else:
            claims = oauth_client.fetch_userinfo(provider, tokens.access_token)
            id_fields = provider.userinfo_account_id_fields
        parts = [claims.get(name) for name in id_fields]
        if not parts or not all(isinstance(p, str) and p for p in parts):
            raise ProviderCallFailed("no account id")
        email = self._email(claims)
        if email is None and from_id_token and provider.userinfo_endpoint:
            try:
                userinfo = oauth_client.fetch_userinfo(provider, tokens.access_token)
            except ProviderCallFailed as error:
                logger.info("no e-mail from userinfo", extra={"cause": error.reason})
            else:
                if self._same_account(claims, userinfo):
                    email = self._email(userinfo)
        return ":".join(str(p) for p in parts), email

    def _same_account(self, id_claims: dict, userinfo: dict) -> bool:
        """OIDC Core 5.3.2: userinfo about another subject than the ID token's must not be used. An OpenID userinfo
        answer has `sub`; another (Microsoft Graph's /me) names the account by its own fields, found in the ID token."""
        if "sub" in userinfo:
            return userinfo["sub"] == id_claims.get("sub")
        own = [userinfo.get(name) for name in self.provider.userinfo_account_id_fields]
        known = {id_claims.get(name) for name in self.provider.account_id_claims}
        return bool(own) and all(isinstance(v, str) and v and v in known for v in own)

    def _email(self, claims: dict) -> str | None:
        names = self.provider.email_claims
        return next((claims[n] for n in names if isinstance(claims.get(n), str) and claims[n]), None)

    def refresh(self, refresh_token: str, now: int) -> TokenSet:
        """New tokens for a refresh token; ProviderCallFailed with oauth_error "invalid_grant" when it is dead."""
        answer = oauth_client.refresh(self.provider, self._secret, refresh_token)
        return TokenSet(**oauth_client.token_set_fields(answer, now))

    def revoke(self, token: str, hint: str = "refresh_token") -> bool | None:
        """RFC 7009. None: the provider has no revocation endpoint; False: it did not confirm."""
        return oauth_client.revoke(self.provider, self._secret, token, hint)

    def revoke_quietly(self, tokens: TokenSet) -> None:
        """Tokens we will not keep: the refresh token, and the access token when that was not confirmed."""
        for token, hint in ((tokens.refresh_token, "refresh_token"), (tokens.access_token, "access_token")):
            if token and self.revoke(token, hint) is not False:
                return


# --- the authorization URL ---------------------------------------------------------------------------------------

# Per attempt only these change; the rest of an authorization URL is encoded once per container.
_PER_ATTEMPT = frozenset({"state", "code_challenge", "nonce"})


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _query_pieces(url: str, items: tuple[tuple[str, str | None], ...]) -> tuple[str, tuple[str | None, ...]]:
    """`url` without its query, and the query's pieces in order: its own parameters, then `items`, each encoded;
    None for an item whose value is None (a place kept for a value given later)."""
    parts = urlsplit(url)
    pieces: list[str | None] = [urlencode([pair], quote_via=quote) for pair in parse_qsl(parts.query, True)]
    pieces += [None if value is None else urlencode([(key, value)], quote_via=quote) for key, value in items]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), tuple(pieces)


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` after its own query parameters, encoded as the authorization URL is."""
    base, pieces = _query_pieces(url, tuple(params.items()))
    query = "&".join(piece for piece in pieces if piece is not None)
    return f"{base}?{query}" if query else base


# The pieces of one provider's URLs without their per-attempt values, which never enter the cache.
_query_template = lru_cache(maxsize=64)(_query_pieces)


def reset() -> None:
    """Forget the encoded authorization URL templates (deployment.reset)."""
    _query_template.cache_clear()


def authorization_params(provider: Provider, pending: PendingAuthorization, state: str) -> dict[str, str]:
    """The authorization request's parameters, in order; a provider entry's own parameters last (or in place)."""
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": pending.redirectUri,
        "scope": " ".join(provider.scopes),
        "state": state,
    }
    if pending.codeVerifier:
        params.update(code_challenge=_s256(pending.codeVerifier), code_challenge_method="S256")
    if pending.nonce:
        params["nonce"] = pending.nonce
    params.update(provider.authorization_params)
    return params


def authorization_url(provider: Provider, pending: PendingAuthorization, state: str) -> str:
    """The provider's authorization URL; built from the stored attempt, which never holds the state itself."""
    params = authorization_params(provider, pending, state)
    assert provider.authorization_endpoint
    base, pieces = _query_template(
        provider.authorization_endpoint,
        tuple((key, None if key in _PER_ATTEMPT else value) for key, value in params.items()),
    )
    per_attempt = iter(urlencode([(key, params[key])], quote_via=quote) for key in params if key in _PER_ATTEMPT)
    return base + "?" + "&".join(piece if piece is not None else next(per_attempt) for piece in pieces)
