"""Using a connection: read, list, disconnect, and a valid access token on demand.

StorageUnavailable propagates: the API answers it as 503 UNAVAILABLE in one place.
"""

from __future__ import annotations

import time

from .dal import decode_cursor, encode_cursor
from .deployment import Deployment
from .errors import FailedPrecondition, Internal, InvalidArgument, NotFound, StorageUnavailable, Unavailable
from .models import (
    AccessTokenResponse,
    ApiClient,
    ConnectionRecord,
    ConnectionsPage,
    ConnectionStatus,
    DisconnectResponse,
    TokenSet,
    iso,
)
from .oauth_client import (
    ProviderCallFailed,
    ProviderConfigurationError,
    client_secret,
    refresh,
    revoke,
    token_set_fields,
    with_discovered_endpoints,
)
from .observability import logger
from .providers import Provider
from .token_cipher import DecryptionError

REFRESH_MARGIN_SECONDS = 300  # refresh when the token expires within 5 minutes
_LEASE_SECONDS = 30
_WAIT_SECONDS = 20.0


def get_owned(deployment: Deployment, client: ApiClient, connection_id: str) -> ConnectionRecord:
    """Another client's connection is as unknown as one that does not exist."""
    record = deployment.storage.connections.get(connection_id)
    if record is None or record.clientId != client.clientId:
        raise NotFound("Unknown connection")
    return record


def list_connections(
    deployment: Deployment, client: ApiClient, schedule_id: str, cursor: str | None
) -> ConnectionsPage:
    start = None
    if cursor:
        try:
            start = decode_cursor(cursor)
        except ValueError:
            raise InvalidArgument.for_field("cursor", "not a cursor this API returned") from None
        if start["scheduleId"]["S"] != schedule_id or not start["listKey"]["S"].startswith(f"{client.clientId}#"):
            raise InvalidArgument.for_field("cursor", "belongs to another listing")
    records, last_key = deployment.storage.connections.list_for_schedule(
        client.clientId, schedule_id, deployment.settings.page_size, start
    )
    return ConnectionsPage(connections=[r.public() for r in records], nextCursor=encode_cursor(last_key))


def _provider(deployment: Deployment, record: ConnectionRecord) -> tuple[Provider, str | None]:
    provider = deployment.provider(record.providerId)
    if provider is None:
        raise Internal("The connection's provider is no longer configured")
    try:
        provider = with_discovered_endpoints(provider)
        return provider, client_secret(provider, deployment.settings.client_secrets_id)
    except ProviderConfigurationError:
        logger.exception("provider misconfigured")
        raise Unavailable("The provider cannot be reached as configured") from None


def _tokens(deployment: Deployment, record: ConnectionRecord) -> TokenSet | None:
    if record.tokens is None:
        return None
    try:
        return deployment.cipher.decrypt(record.connectionId, record.tokens)
    except DecryptionError:
        logger.error("stored tokens do not decrypt", extra={"connectionId": record.connectionId})
        raise Internal("The connection's tokens cannot be read") from None
    except StorageUnavailable:
        raise Unavailable() from None


def disconnect(
    deployment: Deployment, client: ApiClient, connection_id: str, now: int | None = None
) -> DisconnectResponse:
    """Revoke at the provider where it can, erase the tokens, keep the connection as DISCONNECTED."""
    while True:
        record = get_owned(deployment, client, connection_id)
        if record.status is ConnectionStatus.DISCONNECTED:
            return DisconnectResponse(connection=record.public(), revokedAtProvider=record.revokedAtProvider)
        tokens = _tokens(deployment, record)
        revoked: bool | None = None
        provider = deployment.provider(record.providerId)
        if provider is not None and tokens is not None:
            provider, secret = _provider(deployment, record)
            token = tokens.refresh_token or tokens.access_token
            revoked = revoke(provider, secret, token, "refresh_token" if tokens.refresh_token else "access_token")
            if revoked is False:
                logger.warning("revocation failed at the provider", extra={"providerId": provider.id})
        elif provider is not None and provider.revocation_endpoint:
            revoked = False  # nothing left to revoke with (REAUTH_REQUIRED erased it)
        stamp = iso(int(time.time()) if now is None else now)
        updated = deployment.storage.connections.mark_disconnected(connection_id, record.version, stamp, revoked)
        if updated is not None:
            logger.info("connection disconnected", extra={"connectionId": connection_id, "revoked": revoked})
            return DisconnectResponse(connection=updated.public(), revokedAtProvider=revoked)
        # Changed under us (a refresh or reconnect): read it again.


def access_token(deployment: Deployment, client: ApiClient, connection_id: str) -> AccessTokenResponse:
    """A token valid for at least 5 more minutes; one refresh at the provider however many ask at once."""
    deadline = time.monotonic() + _WAIT_SECONDS
    delay = 0.05
    connections = deployment.storage.connections
    while True:
        now = int(time.time())
        record = get_owned(deployment, client, connection_id)
        if record.status is ConnectionStatus.DISCONNECTED:
            raise FailedPrecondition("The connection is disconnected", application_code="DISCONNECTED")
        if record.status is ConnectionStatus.REAUTH_REQUIRED:
            raise FailedPrecondition(
                "The provider no longer honours this connection; the person must connect again",
                application_code="REAUTH_REQUIRED",
            )
        tokens = _tokens(deployment, record)
        if tokens is None:
            raise Internal("The connection has no tokens")
        if tokens.expires_at - now > REFRESH_MARGIN_SECONDS:
            return AccessTokenResponse(accessToken=tokens.access_token, expiresAt=iso(tokens.expires_at))
        leased = record.refreshLeaseUntil is None or record.refreshLeaseUntil < now
        if leased and connections.acquire_refresh_lease(connection_id, record.version, now, now + _LEASE_SECONDS):
            return _refresh(deployment, record, tokens, now)
        # Someone else is refreshing: wait for the new version, then read it.
        if time.monotonic() > deadline:
            raise Unavailable("The token refresh is taking too long; try again", retry_after=2)
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _refresh(deployment: Deployment, record: ConnectionRecord, tokens: TokenSet, now: int) -> AccessTokenResponse:
    connections = deployment.storage.connections
    provider, secret = _provider(deployment, record)
    if not tokens.refresh_token:
        raise Internal("The connection has no refresh token")
    try:
        body = refresh(provider, secret, tokens.refresh_token)
        fresh = TokenSet(**token_set_fields(body, now))
    except ProviderCallFailed as error:
        if error.oauth_error == "invalid_grant":
            connections.mark_reauth_required(record.connectionId, record.version, iso(now))
            logger.info("refresh token no longer honoured", extra={"connectionId": record.connectionId})
            raise FailedPrecondition(
                "The provider no longer honours this connection; the person must connect again",
                application_code="REAUTH_REQUIRED",
            ) from None
        connections.release_refresh_lease(record.connectionId, record.version)
        logger.warning("refresh failed", extra={"cause": error.reason, "oauthError": error.oauth_error})
        raise Unavailable("The provider did not refresh the token; try again shortly") from None
    if not fresh.refresh_token:
        fresh = fresh.model_copy(update={"refresh_token": tokens.refresh_token})  # not rotated: keep the old one
    stored = connections.store_refreshed_tokens(
        record.connectionId,
        record.version,
        deployment.cipher.encrypt(record.connectionId, fresh),
        fresh.expires_at,
        iso(now),
    )
    if stored is None:
        logger.warning("connection changed during refresh", extra={"connectionId": record.connectionId})
    return AccessTokenResponse(accessToken=fresh.access_token, expiresAt=iso(fresh.expires_at))
