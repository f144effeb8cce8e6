"""Talking to a provider over HTTP (httpx): discovery, code exchange, refresh, revocation, userinfo."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import deadline
from .providers import Provider
from .settings import get_settings

if TYPE_CHECKING:
    import httpx

# httpx is imported where it is first needed: most management requests never talk to a provider, and a
# cold start that does not import it is ~15 ms shorter (docs/performance.md).


class ProviderCallFailed(Exception):
    """The provider answered with an error, malformed data, or not at all. Never carries token values."""

    def __init__(self, reason: str, oauth_error: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.oauth_error = oauth_error


class DiscoveryFailed(Exception):
    """The issuer's metadata could not be fetched, or does not name the endpoints the entry leaves out."""


_http: httpx.Client | None = None
_tls: ssl.SSLContext | None = None
_http_lock = threading.Lock()
_discovered: dict[str, dict[str, Any]] = {}


def http_client() -> httpx.Client:
    """One pooled client per container, timeouts well inside the Lambda's. No retries: a code is redeemed once."""
    global _http, _tls
    import httpx

    with _http_lock:
        if _http is None:
            from .observability import tracer

            tracer.patch(["httpx"])  # X-Ray subsegments for provider calls (a no-op when tracing is disabled)
            settings = get_settings()
            # Built once (loading the CA bundle is most of a client's cost) and kept by a new client after a
            # SnapStart restore: it holds certificates only, no session and no random state.
            _tls = _tls or httpx.create_ssl_context()
            _http = httpx.Client(
                verify=_tls,
                timeout=httpx.Timeout(settings.http_read_timeout, connect=settings.http_connect_timeout),
                follow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": "calendar-connect/1"},
            )
        return _http


def drop_connections() -> None:
    """Close the pooled provider connections; the next call makes a new HTTP client, with the TLS context kept."""
    global _http
    with _http_lock:
        if _http is not None:
            _http.close()
        _http = None


_LEAST_CALL_SECONDS = 0.1  # below this, a provider call is not even started


def _timeout() -> httpx.Timeout:
    """The configured timeouts cut to the invocation's deadline: connect, write and pool wait a quarter of what is
    left at most, read the rest, so that the whole call ends before the deadline."""
    import httpx

    left = deadline.remaining()
    if left < _LEAST_CALL_SECONDS:
        raise httpx.TimeoutException("the invocation's deadline leaves no time for this call")
    settings = get_settings()
    short = min(settings.http_connect_timeout, left / 4)
    return httpx.Timeout(min(settings.http_read_timeout, left - 3 * short), connect=short, write=short, pool=short)


def reset() -> None:
    """Forget the container's HTTP client and discovered metadata (deployment.reset)."""
    drop_connections()
    _discovered.clear()


def with_discovered_endpoints(provider: Provider) -> Provider:
    """Endpoints missing from the entry come from the issuer's metadata, fetched once per container."""
    if not provider.discovery or not provider.issuer:
        return provider
    if provider.issuer not in _discovered:
        import httpx

        url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            answer = http_client().get(url, timeout=_timeout())
            answer.raise_for_status()
            metadata = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise DiscoveryFailed(f"discovery failed for {provider.id}") from error
        if not isinstance(metadata, dict) or metadata.get("issuer") != provider.issuer:
            raise DiscoveryFailed(f"discovery for {provider.id}: issuer mismatch")
        _discovered[provider.issuer] = metadata
    metadata = _discovered[provider.issuer]
    updates = {
        name: metadata.get(name)
        for name in ("authorization_endpoint", "token_endpoint", "revocation_endpoint", "userinfo_endpoint")
        if not getattr(provider, name) and metadata.get(name)
    }
    if not (provider.authorization_endpoint or updates.get("authorization_endpoint")) or not (
        provider.token_endpoint or updates.get("token_endpoint")
    ):
        raise DiscoveryFailed(f"discovery for {provider.id}: endpoints missing")
    return provider.model_copy(update=updates)


def _authenticated(
    provider: Provider, secret: str | None, form: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Form and headers with the client's authentication as the provider wants it."""
    headers: dict[str, str] = {}
    form = dict(form)
    if provider.token_endpoint_auth_method == "client_secret_basic" and secret is not None:
        # RFC 6749 2.3.1: form-urlencode id and secret before base64.
        pair = f"{quote(provider.client_id, safe='')}:{quote(secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form["client_id"] = provider.client_id
        if secret is not None:
            form["client_secret"] = secret
    return form, headers


def _token_request(provider: Provider, secret: str | None, form: dict[str, str]) -> dict[str, Any]:
    assert provider.token_endpoint
    form, headers = _authenticated(provider, secret, form)
    import httpx

    try:
        answer = http_client().post(provider.token_endpoint, data=form, headers=headers, timeout=_timeout())
    except httpx.TimeoutException as error:
        raise ProviderCallFailed("timeout") from error
    except httpx.HTTPError as error:
        raise ProviderCallFailed("unreachable") from error
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code >= 400 or not isinstance(body, dict) or "error" in body:
        oauth_error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
        raise ProviderCallFailed(f"status {answer.status_code}", oauth_error)
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise ProviderCallFailed("no access_token in answer")
    return body


def token_set_fields(body: dict[str, Any], now: int) -> dict[str, Any]:
    expires_in = body.get("expires_in", 3600)
    try:
        expires_in = int(expires_in)
    except (TypeError, ValueError) as error:
        raise ProviderCallFailed("malformed expires_in") from error
    refresh = body.get("refresh_token")
    return {
        "access_token": body["access_token"],
        "refresh_token": refresh if isinstance(refresh, str) and refresh else None,
        "expires_at": now + max(expires_in, 0),
        "token_type": str(body.get("token_type") or "Bearer"),
    }


def exchange_code(
    provider: Provider, secret: str | None, code: str, redirect_uri: str, code_verifier: str | None
) -> dict[str, Any]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier:
        form["code_verifier"] = code_verifier
    return _token_request(provider, secret, form)


def refresh(provider: Provider, secret: str | None, refresh_token: str) -> dict[str, Any]:
    return _token_request(provider, secret, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def revoke(provider: Provider, secret: str | None, token: str, hint: str = "refresh_token") -> bool | None:
    """RFC 7009. None: the provider has no revocation endpoint; False: it did not confirm."""
    if not provider.revocation_endpoint:
        return None
    form, headers = _authenticated(provider, secret, {"token": token, "token_type_hint": hint})
    import httpx

    try:
        answer = http_client().post(provider.revocation_endpoint, data=form, headers=headers, timeout=_timeout())
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


def fetch_userinfo(provider: Provider, access_token: str) -> dict[str, Any]:
    if not provider.userinfo_endpoint:
        raise ProviderCallFailed("no userinfo endpoint")
    import httpx

    try:
        answer = http_client().get(
            provider.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}, timeout=_timeout()
        )
        body = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        raise ProviderCallFailed("userinfo failed") from error
    if answer.status_code != 200 or not isinstance(body, dict):
        raise ProviderCallFailed(f"userinfo status {answer.status_code}")
    return body


def id_token_claims(id_token: str, provider: Provider, nonce: str | None, now: int | None = None) -> dict[str, Any]:
    """Claims of an ID token received straight from the token endpoint over TLS.

    OIDC Core 3.1.3.7 lets the TLS channel stand for the signature here; issuer, audience, expiry
    and nonce are still checked.
    """
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as error:
        raise ProviderCallFailed("malformed id_token") from error
    if not isinstance(claims, dict):
        raise ProviderCallFailed("malformed id_token")
    now = int(time.time()) if now is None else now
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if provider.issuer and not provider.issuer_matches(str(claims.get("iss", "")), claims):
        raise ProviderCallFailed("id_token issuer")
    if provider.client_id not in audiences:
        raise ProviderCallFailed("id_token audience")
    if isinstance(claims.get("exp"), (int, float)) and claims["exp"] < now - 300:
        raise ProviderCallFailed("id_token expired")
    if nonce is not None and claims.get("nonce") != nonce:
        raise ProviderCallFailed("id_token nonce")
    return claims
